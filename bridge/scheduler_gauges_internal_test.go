package bridge

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// TestAlertGaugesAreOneCount: a /metrics scrape counts the alert schedules
// once for both gauges (two gauge functions counted the table twice, the
// scrape's largest cost on a big node), and the figures are right.
func TestAlertGaugesAreOneCount(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	c.User("alice").Notify = config.NotifyBoth // alert mails: the ingest plans a schedule
	var cs *alertCountingStore
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		cs = &alertCountingStore{Store: st}
		return cs
	})
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-1", "alice"), groupTask("T-2", "alice")}); err != nil {
		t.Fatal(err)
	}
	var wantTotal, wantArmed int64
	if err := s.st.View(ctx, func(tx store.Tx) (err error) { wantTotal, wantArmed, err = tx.CountAlerts(); return err }); err != nil {
		t.Fatal(err)
	}
	if wantTotal != 2 || wantArmed == 0 {
		t.Fatalf("the ingest planned %d schedules, %d armed; want 2, armed", wantTotal, wantArmed)
	}
	cs.counts.Store(0)
	mfs, err := s.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if n := mf.GetName(); n == "duebridge_alerts" || n == "duebridge_alerts_armed" {
			got[n] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	if got["duebridge_alerts"] != float64(wantTotal) || got["duebridge_alerts_armed"] != float64(wantArmed) {
		t.Errorf("gauges %v, want duebridge_alerts %d and duebridge_alerts_armed %d", got, wantTotal, wantArmed)
	}
	if n := cs.counts.Load(); n != 1 {
		t.Errorf("a scrape counted the alert schedules %d times, want once", n)
	}
}

// alertCountingStore counts CountAlerts calls in Views and Reads.
type alertCountingStore struct {
	store.Store
	counts atomic.Int64
}

type alertCountingTx struct {
	store.Tx
	counts *atomic.Int64
}

func (t alertCountingTx) CountAlerts() (int64, int64, error) {
	t.counts.Add(1)
	return t.Tx.CountAlerts()
}

func (c *alertCountingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	return c.Store.View(ctx, func(tx store.Tx) error { return fn(alertCountingTx{tx, &c.counts}) })
}

func (c *alertCountingStore) Read(ctx context.Context, fn func(store.Tx) error) error {
	return c.Store.Read(ctx, func(tx store.Tx) error { return fn(alertCountingTx{tx, &c.counts}) })
}
