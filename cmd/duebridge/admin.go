package main

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/admin"
	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/internal/metricsreg"
)

// adminPage also registers duebridge_ready, so an alert rule can watch
// what /readyz answers (a balancer's probe is not a metric).
//
// adminPage wires the admin page to the core, the sync health the CalDAV
// handler keeps, the readiness /readyz reports and the metrics registry.
func adminPage(svc *bridge.Service, cal *calendar.Handler, replica string, log *slog.Logger) http.Handler {
	bi, ok := debug.ReadBuildInfo()
	b := readBuildInfo(version, bi, ok)
	metricsreg.Register(svc.Registry(), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "duebridge_ready", Help: "1 when /readyz answers ready (store reachable, event listener up), else 0.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if len(svc.Ready(ctx)) > 0 {
			return 0
		}
		return 1
	}))
	v := b.Version + " (" + b.Revision + ")"
	return admin.New(admin.Deps{
		Auth: svc, Sync: cal, Queues: svc, Sources: svc, Lockouts: svc, Devices: svc, Users: svc.CalDAV().Users,
		Ready:   func(ctx context.Context) []string { return svc.Ready(ctx) },
		Metrics: svc.Registry(), Version: v, Replica: replica, Logger: log,
	})
}
