package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// TestWritesShareOneConnection: every write transaction runs on the same
// SQLite connection, so its page cache survives from one write to the next
// (SQLite empties a connection's cache when another connection committed).
// Between writes, reads hold every idle pool connection: a writer taking
// whichever connection is free would have to take another one.
func TestWritesShareOneConnection(t *testing.T) {
	s, d := openCounting(t, store.Options{})
	ctx := context.Background()
	write := func(i int) {
		t.Helper()
		if err := s.Update(ctx, func(tx store.Tx) error {
			return tx.PutTask(&store.Task{Source: "tracker", ID: fmt.Sprintf("T-%d", i), Title: "t", Version: 1})
		}); err != nil {
			t.Fatal(err)
		}
	}
	write(0)
	base := d.writers()
	for i := 1; i <= 5; i++ {
		held := store.IdleConns(s)
		release := make(chan struct{})
		started := make(chan struct{}, held)
		done := make(chan error, held)
		for range held {
			go func() {
				done <- s.View(ctx, func(tx store.Tx) error {
					if _, err := tx.Task("tracker", "T-0"); err != nil {
						return err
					}
					started <- struct{}{}
					<-release
					return nil
				})
			}()
		}
		for range held {
			<-started
		}
		write(i)
		close(release)
		for range held {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
	}
	if n := d.writers(); n != base {
		t.Errorf("write transactions ran on %d connections, want all on the writer's one (%d before)", n, base)
	}
}
