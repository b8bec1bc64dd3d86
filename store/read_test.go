package store_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// TestRead: a Read runs one SELECT, sees what is committed, and refuses a
// second statement and any write, on both databases.
func TestRead(t *testing.T) {
	t.Parallel()
	t.Run(store.SQLite, func(t *testing.T) { t.Parallel(); testRead(t, sqliteBackend()) })
	t.Run(store.Postgres, func(t *testing.T) { t.Parallel(); testRead(t, postgresBackend(t)) })
}

func testRead(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		for _, c := range []store.Collection{
			{User: "alice", Name: "b-todos", Project: "B", Kind: store.KindTodos, DisplayName: "B", Order: 1},
			{User: "alice", Name: "a-events", Project: "A", Kind: store.KindEvents, DisplayName: "A deadlines", Color: "#00FF00"},
			{User: "bob", Name: "c-todos", Project: "C", Kind: store.KindTodos},
		} {
			if _, err := tx.EnsureCollection(&c); err != nil {
				return err
			}
		}
		return nil
	})
	var viewed, read []store.Collection
	e.view(func(tx store.Tx) (err error) { viewed, err = tx.Collections("alice"); return err })
	if err := e.s.Read(t.Context(), func(tx store.Tx) (err error) { read, err = tx.Collections("alice"); return err }); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(read) != 2 || !reflect.DeepEqual(read, viewed) {
		t.Errorf("Collections in a Read:\n got %+v\nwant %+v (as in a View)", read, viewed)
	}

	// A Read after a commit sees it.
	e.update(func(tx store.Tx) error { return tx.SetCollectionProps("alice", "b-todos", "Renamed", "", 1) })
	if err := e.s.Read(t.Context(), func(tx store.Tx) (err error) { read, err = tx.Collections("alice"); return err }); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if len(read) != 2 || read[1].DisplayName != "Renamed" {
		t.Errorf("Read after a commit: %+v, want b-todos renamed", read)
	}

	// A second statement would be another snapshot: refused.
	err := e.s.Read(t.Context(), func(tx store.Tx) error {
		if _, err := tx.Collections("alice"); err != nil {
			return err
		}
		_, err := tx.Collection("alice", "a-events")
		return err
	})
	if !errors.Is(err, store.ErrOneStatement) {
		t.Errorf("two statements in a Read: %v, want ErrOneStatement", err)
	}
	// Nothing would roll a write back: refused, and nothing is stored.
	err = e.s.Read(t.Context(), func(tx store.Tx) error { return tx.Set("k", "v") })
	if err == nil {
		t.Errorf("a write in a Read: no error")
	}
	e.view(func(tx store.Tx) error {
		if _, err := tx.Get("k"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("after a refused write in a Read: Get = %v, want ErrNotFound", err)
		}
		return nil
	})
	// A context already done: nothing runs.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ran := false
	if err := e.s.Read(ctx, func(store.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Errorf("Read with a cancelled context: %v (fn ran: %v), want context.Canceled", err, ran)
	}
}

// TestReadBeginsNoTransaction: a phone poll's collections read spent more
// on BEGIN, ROLLBACK and the watchers of its cancellable context than on
// the query. A Read begins no transaction, and on SQLite its statement
// runs without a context to watch (the request's is checked before).
func TestReadBeginsNoTransaction(t *testing.T) {
	s, d := openCounting(t, store.Options{})
	ctx, cancel := context.WithCancel(t.Context()) // as a request's
	defer cancel()
	read := func() {
		t.Helper()
		if err := s.Read(ctx, func(tx store.Tx) error { _, err := tx.Collections("anna"); return err }); err != nil {
			t.Fatal(err)
		}
	}
	read() // first use: prepared in the background for later ones
	store.WaitPrepared(s)
	begins, queries, cancellable := d.begins.Load(), d.queries.Load(), d.cancellable.Load()
	const reads = 20
	for range reads {
		read()
	}
	if n := d.begins.Load() - begins; n != 0 {
		t.Errorf("%d Reads began %d transactions, want none", reads, n)
	}
	if n := d.queries.Load() - queries; n != reads {
		t.Errorf("%d Reads ran the prepared collections query %d times, want %d", reads, n, reads)
	}
	if n := d.cancellable.Load() - cancellable; n != 0 {
		t.Errorf("%d of %d Reads gave the driver a cancellable context, want none", n, reads)
	}
}
