package store_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// TestStatementsPreparedOncePerConnection: a short transaction spent as
// long preparing its SQL as running it, so statements are kept prepared on
// the pool's connections across transactions.
func TestStatementsPreparedOncePerConnection(t *testing.T) {
	s, d := openCounting(t, store.Options{})
	view := func() {
		t.Helper()
		if err := s.View(t.Context(), func(tx store.Tx) error {
			_, err := tx.DevicePassword("no-such-device")
			if err == store.ErrNotFound {
				err = nil
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	view() // first use: prepared for this transaction, and for later ones
	store.WaitPrepared(s)
	before := d.prepares.Load()
	const views = 50
	for range views {
		view()
	}
	// At most one preparation per pool connection; before, one per View.
	if n := d.prepares.Load() - before; n > 8 {
		t.Errorf("%d Views prepared their statement %d times; want it kept prepared per connection", views, n)
	}
}

// TestPreparingWithEveryConnectionBusy: preparing a new statement for
// later transactions must not wait for a free connection while holding one
// (with all of them held, none comes).
func TestPreparingWithEveryConnectionBusy(t *testing.T) {
	s, err := store.Open(t.Context(), store.SQLite, filepath.Join(t.TempDir(), "duebridge.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const readers = 8 // the SQLite pool's size
	var started, release sync.WaitGroup
	started.Add(readers)
	release.Add(1)
	errs := make(chan error, readers)
	for range readers {
		go func() {
			errs <- s.View(t.Context(), func(tx store.Tx) error {
				started.Done()
				release.Wait() // every connection is now held
				_, err := tx.DevicePasswords("anna")
				return err
			})
		}()
	}
	started.Wait()
	release.Done()
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestCtagsAdvancedInOneStatement: a new task touches its Reminders list and
// its deadlines calendar; their ctags advance in one UPDATE per user (it was
// one per collection), and every touched collection still advances and is
// announced.
func TestCtagsAdvancedInOneStatement(t *testing.T) {
	var events []store.Event
	s, d := openCounting(t, store.Options{OnCommit: func(es []store.Event) { events = append(events, es...) }})
	colls := [][2]string{{"alice", "todos"}, {"alice", "deadlines"}, {"bob", "todos"}}
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		for _, c := range colls {
			if _, err := tx.EnsureCollection(&store.Collection{User: c[0], Name: c[1], Kind: store.KindTodos}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	store.WaitPrepared(s)
	for round := range 3 {
		before := d.ctagExecs.Load()
		events = nil
		if err := s.Update(t.Context(), func(tx store.Tx) error {
			for _, c := range colls {
				o := store.Object{User: c[0], Collection: c[1], Name: fmt.Sprintf("t%d.ics", round), UID: fmt.Sprintf("t%d", round),
					ETag: "e", Data: []byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")}
				if err := tx.PutObject(&o); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		store.WaitPrepared(s)
		if round == 0 {
			continue // the statements' first use may run before they are kept prepared
		}
		if n := d.ctagExecs.Load() - before; n != 2 {
			t.Errorf("round %d: %d ctag UPDATEs for 3 collections of 2 users; want 2", round, n)
		}
		var seqs []int64
		if err := s.View(t.Context(), func(tx store.Tx) error {
			for _, c := range colls {
				got, err := tx.Collection(c[0], c[1])
				if err != nil {
					return err
				}
				seqs = append(seqs, got.Seq)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if seqs[0] != seqs[1] || seqs[1] != seqs[2] || seqs[0] == 0 {
			t.Errorf("round %d: collection seqs %v; want all advanced to the transaction's", round, seqs)
		}
		var announced []string
		for _, e := range events {
			if e.Kind == store.EventCalendar {
				announced = append(announced, e.User+"/"+e.Name)
			}
		}
		if want := []string{"alice/deadlines", "alice/todos", "bob/todos"}; !slices.Equal(announced, want) {
			t.Errorf("round %d: calendar events %v; want %v", round, announced, want)
		}
	}
}
