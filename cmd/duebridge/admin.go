package main

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/duebridge/duebridge/admin"
	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
)

// adminPage wires the admin page to the core, the sync health the CalDAV
// handler keeps, the readiness /readyz reports and the metrics registry.
func adminPage(svc *bridge.Service, cal *calendar.Handler, replica string, log *slog.Logger) http.Handler {
	bi, ok := debug.ReadBuildInfo()
	b := readBuildInfo(version, bi, ok)
	v := b.Version + " (" + b.Revision + ")"
	return admin.New(admin.Deps{
		Auth: svc, Sync: cal, Queues: svc, Users: svc.CalDAV().Users,
		Ready:   func(ctx context.Context) []string { return readiness(ctx, svc.Store()) },
		Metrics: svc.Metrics().Registry, Version: v, Replica: replica, Logger: log,
	})
}
