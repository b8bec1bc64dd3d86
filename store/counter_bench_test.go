package store_test

import (
	"errors"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// BenchmarkRevisionAndUID: one write transaction's revision bump and one
// mail's UID allocation and append (what every notification costs in the
// single writer's turn), rolled back instead of committed so the disk's
// fsync does not drown the statements' CPU.
func BenchmarkRevisionAndUID(b *testing.B) {
	s, err := store.Open(b.Context(), store.SQLite, b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.Update(b.Context(), func(tx store.Tx) error {
		_, err := tx.EnsureMailbox("alice", "INBOX", "")
		return err
	}); err != nil {
		b.Fatal(err)
	}
	errUndo := errors.New("undo")
	data := []byte("Subject: a notification\r\n\r\nbody\r\n")
	b.ResetTimer()
	for range b.N {
		err := s.Update(b.Context(), func(tx store.Tx) error {
			if _, err := tx.Seq(); err != nil {
				return err
			}
			if err := tx.AppendMessage(&store.Message{User: "alice", Mailbox: "INBOX", Data: data}); err != nil {
				return err
			}
			return errUndo
		})
		if !errors.Is(err, errUndo) {
			b.Fatal(err)
		}
	}
}

// BenchmarkBeginRollback is BenchmarkRevisionAndUID's transaction without
// its statements: what the two cost is the difference.
func BenchmarkBeginRollback(b *testing.B) {
	s, err := store.Open(b.Context(), store.SQLite, b.TempDir(), store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	errUndo := errors.New("undo")
	b.ResetTimer()
	for range b.N {
		if err := s.Update(b.Context(), func(tx store.Tx) error { return errUndo }); !errors.Is(err, errUndo) {
			b.Fatal(err)
		}
	}
}
