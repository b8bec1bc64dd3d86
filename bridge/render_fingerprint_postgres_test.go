package bridge_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// writeCounting is a store counting its write transactions.
type writeCounting struct {
	store.Store
	n *atomic.Int64
}

func (w writeCounting) Update(ctx context.Context, fn func(store.Tx) error) error {
	w.n.Add(1)
	return w.Store.Update(ctx, fn)
}

// Replicas on PostgreSQL share the render fingerprints: a replica
// restarted with the edited file re-renders alice while the other still
// runs the old file; the other's reload then re-renders to the same bytes
// (nothing written), and its restart with the same file has nothing to do.
func TestRenderFingerprintsAcrossReplicasPostgres(t *testing.T) {
	source := testsvc.PostgresSource(t, "renderfp")
	ctx := context.Background()
	clk := fakeclock.New(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC))
	// start is a replica's start: the store, then the start-up re-renders
	// serve runs before its listeners open.
	start := func(cfg *config.Config) (*bridge.Service, *atomic.Int64) {
		writes := &atomic.Int64{}
		svc := testsvc.Open(t, cfg, bridge.Options{Clock: clk, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, func(o store.Options) (store.Store, error) {
			st, err := store.Open(ctx, store.Postgres, source, o)
			return writeCounting{st, writes}, err
		})
		if _, err := svc.RerenderIfStale(ctx); err != nil {
			t.Fatal(err)
		}
		if err := svc.RerenderChangedUsers(ctx); err != nil {
			t.Fatal(err)
		}
		return svc, writes
	}
	reminder := func(svc *bridge.Service) *store.Object {
		t.Helper()
		var out *store.Object
		err := testsvc.Store(t, svc).View(ctx, func(tx store.Tx) error {
			objs, err := tx.ObjectsForTaskUser("tracker", "T-1", "alice", []string{"task-tracker-T-1@duebridge"})
			if err != nil || len(objs) != 1 {
				t.Fatalf("alice's reminder of T-1: %v, %v", objs, err)
			}
			out, err = tx.Object("alice", objs[0].Collection, objs[0].Name)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	c := testsvc.Config(t)
	a, _ := start(c)
	due := clk.Now().Add(48 * time.Hour)
	testsvc.Ingest(t, a, bridge.TaskInput{ID: "T-1", Title: "Report", Assignees: []string{"alice"}, Due: store.When{Time: due}})

	edited := *c
	edited.Users = slices.Clone(c.Users)
	edited.Users[0].LeadTimes = []time.Duration{3 * time.Hour} // alice
	b, _ := start(&edited)
	got := reminder(b)
	want := "TRIGGER;VALUE=DATE-TIME:" + due.Add(-3*time.Hour).UTC().Format("20060102T150405Z")
	if strings.Count(string(got.Data), "TRIGGER") != 1 || !strings.Contains(string(got.Data), want) {
		t.Fatalf("replica restarted with alice's lead time 3h: her reminder, want the one trigger %s:\n%s", want, got.Data)
	}

	a.SetConfig(ctx, &edited)
	if again := reminder(a); again.Seq != got.Seq {
		t.Errorf("the other replica's reload rewrote alice's reminder (revision %d -> %d), want it left as the restart made it", got.Seq, again.Seq)
	}
	_, writes := start(&edited)
	if n := writes.Load(); n != 0 {
		t.Errorf("a replica's restart with the file the others run opened %d write transactions, want none", n)
	}
}
