package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// TestPostgresCrossProcessEvents: two stores on one database stand for two
// duebridge processes; a commit in one reaches the other's OnCommit, and a
// process never hears its own commits twice.
func TestPostgresCrossProcessEvents(t *testing.T) {
	b := postgresBackend(t)
	source := b.newSource(t)
	type sink struct {
		mu     sync.Mutex
		events []store.Event
	}
	open := func(s *sink) store.Store {
		st, err := store.Open(context.Background(), store.Postgres, source, store.Options{OnCommit: func(ev []store.Event) {
			s.mu.Lock()
			s.events = append(s.events, ev...)
			s.mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	var a, bSink sink
	stA, _ := open(&a), open(&bSink)
	count := func(s *sink, kind store.EventKind, user string) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, e := range s.events {
			if e.Kind == kind && e.User == user {
				n++
			}
		}
		return n
	}
	// The listener connects asynchronously; retry the first commit until B hears one.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; count(&bSink, store.EventMail, "alice") == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("process B never heard process A's commit")
		}
		err := stA.Update(context.Background(), func(tx store.Tx) error {
			if _, err := tx.EnsureMailbox("alice", "INBOX", ""); err != nil {
				return err
			}
			return tx.AppendMessage(&store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: x\r\n\r\nx")})
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A big transaction is split into several notifications, all delivered.
	err := stA.Update(context.Background(), func(tx store.Tx) error {
		for i := 0; i < 500; i++ {
			tx.Emit(store.Event{Kind: store.EventCalendar, User: "bob", Name: "a-rather-long-collection-name-to-fill-the-payload-" + string(rune('a'+i%26))})
		}
		_, err := tx.Seq()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for count(&bSink, store.EventCalendar, "bob") < 500 {
		if time.Now().After(deadline) {
			t.Fatalf("B heard %d of 500 events", count(&bSink, store.EventCalendar, "bob"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := count(&a, store.EventCalendar, "bob"); n != 500 {
		t.Fatalf("A got its own events %d times, want exactly once each (500)", n)
	}
}
