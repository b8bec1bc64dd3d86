package bridge

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// countingStore is the real store, counting its write and read
// transactions.
type countingStore struct {
	store.Store
	updates atomic.Int64
	views   atomic.Int64 // Views and Reads
	reads   atomic.Int64 // Reads: one statement, no transaction
}

// countingService is a service on SQLite in dir whose store counts its
// transactions.
func countingService(t *testing.T, dir string, cfg *config.Config) (*Service, *countingStore) {
	var cs *countingStore
	s := sqliteService(t, dir, cfg, func(st store.Store) store.Store {
		cs = &countingStore{Store: st}
		return cs
	})
	return s, cs
}

func (c *countingStore) View(ctx context.Context, fn func(store.Tx) error) error {
	c.views.Add(1)
	return c.Store.View(ctx, fn)
}

// Read counts as a view: both read the store.
func (c *countingStore) Read(ctx context.Context, fn func(store.Tx) error) error {
	c.views.Add(1)
	c.reads.Add(1)
	return c.Store.Read(ctx, fn)
}

func (c *countingStore) Update(ctx context.Context, fn func(store.Tx) error) error {
	c.updates.Add(1)
	return c.Store.Update(ctx, fn)
}

// After a restart every client logs in again at once. Each successful
// login from a new address records its (user, address) pair in the shared
// records; one write transaction per login queued them all on the store's
// single writer. Logins that arrive while a write is under way now share
// the next transaction, and every pair is still recorded before its login
// is answered (or after a second, when the login goes on without it).
func TestTrustedLoginsWrittenInBatches(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, store.SQLite, t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cs := &countingStore{Store: st}
	g := newGuard(nil)
	g.shared = cs // the mechanism is the PostgreSQL one; SQLite holds the same tables

	// A long write holds the single writer while the logins arrive.
	held, release := make(chan struct{}), make(chan struct{})
	go st.Update(ctx, func(store.Tx) error {
		close(held)
		<-release
		return nil
	})
	<-held
	now := time.Now()
	const n = 50
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { g.success("alice", fmt.Sprintf("192.0.2.%d", i+1), now) })
	}
	// One batch is being written (waiting for the writer), the other
	// logins wait in the next one (or all are in the first, if the writer
	// goroutine started late).
	deadline := time.Now().Add(trustTimeout)
	for {
		g.mu.Lock()
		pending := 0
		if g.nextTrust != nil {
			pending = len(g.nextTrust.pairs)
		}
		queued := g.writing > 0 && g.writing+pending == n
		g.mu.Unlock()
		if queued {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the logins did not queue for one shared write")
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	for {
		g.mu.Lock()
		busy := g.flushing
		g.mu.Unlock()
		if !busy {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if got := cs.updates.Load(); got > 2 {
		t.Errorf("%d logins took %d write transactions, want at most 2", n, got)
	}
	err = st.View(ctx, func(tx store.Tx) error {
		ltx, err := loginTx(tx)
		if err != nil {
			return err
		}
		for i := range n {
			ok, err := ltx.LoginTrusted("alice", fmt.Sprintf("192.0.2.%d", i+1), now.UnixNano())
			if err != nil {
				return err
			}
			if !ok {
				t.Errorf("pair %d not recorded", i+1)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
