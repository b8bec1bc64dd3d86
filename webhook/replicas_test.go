package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// replicaEnvs returns two tracker worlds for kind whose services, as two
// replicas behind a balancer, share one fresh PostgreSQL schema
// (TEST_DUEBRIDGE_POSTGRES; skipped without it) and one clock.
func replicaEnvs(t *testing.T, kind string) (a, b *trackerEnv) {
	t.Helper()
	source := testsvc.PostgresSource(t, "replay")
	proto := newTrackerEnv(t, kind) // the configuration, clock and samples
	open := func() *trackerEnv {
		svc := testsvc.Open(t, proto.svc.Config(), bridge.Options{Clock: clock.System(proto.clock.Now)}, func(o store.Options) (store.Store, error) {
			return store.Open(context.Background(), store.Postgres, source, o)
		})
		mux := http.NewServeMux()
		mux.Handle("POST /hooks/{source}", NewHandler(svc, Options{}))
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		e := *proto
		e.svc, e.srv = svc, srv
		return &e
	}
	return open(), open()
}

// TestReplayWindowSharedByReplicas: a tracker's redelivery that lands on
// another replica is answered as a replay (2xx, nothing accepted) and
// changes nothing.
func TestReplayWindowSharedByReplicas(t *testing.T) {
	t.Parallel()
	s := trackerSamples[0] // github
	a, b := replicaEnvs(t, s.kind)
	if r := a.mustPost(delivery{file: s.good, id: "delivery-1"}, 200); func() int { n, _ := r.counts(); return n }() != 1 {
		t.Fatalf("first copy: %s, want the task stored", r.raw)
	}
	before := b.snapshot()
	r := b.mustPost(delivery{file: s.good, id: "delivery-1"}, 200)
	if msg, _ := r.body["skipped"].(string); !strings.Contains(msg, "already handled") {
		t.Errorf("redelivery through the other replica: %s, want a skip naming the repeated delivery", r.raw)
	}
	if b.snapshot() != before {
		t.Error("the redelivery changed the store")
	}
	if got := b.metric("duebridge_webhook_deliveries_total", map[string]string{"source": s.kind, "result": "duplicate"}); got != 1 {
		t.Errorf("duplicate deliveries counted %v on the second replica, want 1", got)
	}
	// A new delivery id is still applied (by the ordering rule: ignored).
	r = b.mustPost(delivery{file: s.good, id: "delivery-2"}, 200)
	if acc, ign := r.counts(); acc != 0 || ign != 1 {
		t.Errorf("same event under a new id: %s, want accepted 0 ignored 1", r.raw)
	}
}
