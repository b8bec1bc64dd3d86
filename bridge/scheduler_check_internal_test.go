package bridge

import (
	"context"
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// TestSchedulerCheckIsOneRead: the scheduler's check after an arm event
// (nextWork, once per webhook that arms a schedule) is one statement
// outside a transaction, not a View of two, and still answers the earlier
// of the next alert and the next waiting flip mail.
func TestSchedulerCheckIsOneRead(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	c.User("alice").Notify = config.NotifyBoth // alert mails: the ingest plans a schedule
	var rv *readsAndViews
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		rv = &readsAndViews{Store: st}
		return rv
	})
	check := func(what string, want time.Time, wantOK bool) {
		t.Helper()
		rv.reads.Store(0)
		rv.views.Store(0)
		at, ok, err := s.sched.nextWork(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r, v := rv.reads.Load(), rv.views.Load(); r != 1 || v != 0 {
			t.Errorf("%s: %d Reads and %d Views, want 1 and 0", what, r, v)
		}
		if ok != wantOK || !at.Equal(want) {
			t.Errorf("%s: next work %v (%v), want %v (%v)", what, at, ok, want, wantOK)
		}
	}
	check("nothing planned", time.Time{}, false)

	in := groupTask("T-1", "alice")
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{in}); err != nil {
		t.Fatal(err)
	}
	var alert time.Time
	if err := s.st.View(ctx, func(tx store.Tx) (err error) { alert, _, err = tx.NextAlert(); return err }); err != nil {
		t.Fatal(err)
	}
	if alert.IsZero() {
		t.Fatal("the ingest planned no alert")
	}
	check("an alert planned", alert, true)

	flipAt := alert.Add(-time.Hour).Truncate(time.Second)
	if err := s.st.Update(ctx, func(tx store.Tx) error {
		return saveFlips(tx, []pendingFlip{{User: "alice", Source: "tracker", TaskID: "T-1", At: flipAt}})
	}); err != nil {
		t.Fatal(err)
	}
	check("a flip mail waiting before the alert", flipAt, true)
	if err := s.st.Update(ctx, func(tx store.Tx) error { return saveFlips(tx, nil) }); err != nil {
		t.Fatal(err)
	}
	check("the flip mails written", alert, true)
}
