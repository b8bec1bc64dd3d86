package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// A config with more users than SQLite binds in one statement (32,766)
// failed every scheduler tick ("too many SQL variables" in the prune), so
// no alert was ever sent, and each retry re-planned every user again in
// one write transaction per user. The tick now succeeds, and planning
// 33,000 users takes a few batched write transactions, not one per user;
// a reload that changes nothing writes only the prune.
func TestReplanManyUsers(t *testing.T) {
	if testing.Short() {
		t.Skip("33,000 users")
	}
	ctx := context.Background()
	c := groupConfig(t)
	const n = 33000
	for i := range n {
		name := fmt.Sprintf("u%05d", i)
		c.Users = append(c.Users, config.User{Name: name, Email: name + "@example.com", Notify: config.NotifyAlarms, Location: time.UTC})
	}
	s, cs, gets := countedService(t, c)
	before := cs.updates.Load()
	if _, err := s.SchedulerTick(ctx); err != nil {
		t.Fatalf("tick with %d users: %v", len(c.Users), err)
	}
	// Planning, pruning, the backfill and its mark: well under one a user.
	if got, max := cs.updates.Load()-before, int64(len(c.Users)/replanBatch+10); got > max {
		t.Errorf("first tick opened %d write transactions for %d users, want at most %d", got, len(c.Users), max)
	}
	// A reload that changes no user's alert settings: the prune alone.
	reloaded := *c
	s.SetConfig(ctx, &reloaded)
	before = cs.updates.Load()
	if _, err := s.SchedulerTick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := cs.updates.Load() - before; got > 1 {
		t.Errorf("tick after an unchanged reload opened %d write transactions, want at most 1", got)
	}
	// A restart with the same settings: the stored fingerprints are read in
	// one statement, not one Get per user.
	s2, _, gets := countedService(t, c)
	before = gets.n.Load()
	t0 := time.Now()
	if _, err := s2.SchedulerTick(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("first tick after a restart with %d users: %v", len(c.Users), time.Since(t0)) // reported, not asserted
	if got := gets.n.Load() - before; got > 10 {
		t.Errorf("first tick after a restart with %d unchanged users read %d keys one by one, want at most 10", len(c.Users), got)
	}
}

// countedService is a service on SQLite whose store counts write
// transactions and single-key reads.
func countedService(t *testing.T, c *config.Config) (*Service, *countingStore, *getCounting) {
	var cs *countingStore
	gets := &getCounting{}
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		gets.Store = st
		cs = &countingStore{Store: gets}
		return cs
	})
	return s, cs, gets
}

// getCounting counts the single-key reads (Get) of the transactions run
// on the store.
type getCounting struct {
	store.Store
	n atomic.Int64
}

type getCountingTx struct {
	store.Tx
	n *atomic.Int64
}

func (t getCountingTx) Get(key string) (string, error) {
	t.n.Add(1)
	return t.Tx.Get(key)
}

func (g *getCounting) View(ctx context.Context, fn func(store.Tx) error) error {
	return g.Store.View(ctx, func(tx store.Tx) error { return fn(getCountingTx{tx, &g.n}) })
}

func (g *getCounting) Read(ctx context.Context, fn func(store.Tx) error) error {
	return g.Store.Read(ctx, func(tx store.Tx) error { return fn(getCountingTx{tx, &g.n}) })
}

func (g *getCounting) Update(ctx context.Context, fn func(store.Tx) error) error {
	return g.Store.Update(ctx, func(tx store.Tx) error { return fn(getCountingTx{tx, &g.n}) })
}

// TestDigestsManyUsers: a tick decided each digest user's case on a read
// of its own and wrote each first sighting in a write transaction of its
// own: with a million digest users, a million reads every pass and a
// million commits at the first start.
func TestDigestsManyUsers(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	const n = 2000
	for i := range n {
		name := fmt.Sprintf("d%05d", i)
		c.Users = append(c.Users, config.User{Name: name, Email: name + "@example.com", Notify: config.NotifyAlarms,
			Location: time.UTC, Digest: true, DigestAt: 8 * time.Hour})
	}
	s, cs, gets := countedService(t, c)
	before := cs.updates.Load()
	if _, err := s.SchedulerTick(ctx); err != nil {
		t.Fatal(err)
	}
	if got, max := cs.updates.Load()-before, int64(n/digestBatch+n/replanBatch+10); got > max {
		t.Errorf("first tick with %d digest users: %d write transactions, want at most %d", n, got, max)
	}
	// Every user seen: the next tick has nothing to send and reads the
	// marks in one statement.
	before = gets.n.Load()
	if _, err := s.SchedulerTick(ctx); err != nil {
		t.Fatal(err)
	}
	if got := gets.n.Load() - before; got > 10 {
		t.Errorf("tick with %d digest users and nothing to send: %d single-key reads, want at most 10", n, got)
	}
	var marks int
	if err := s.st.View(ctx, func(tx store.Tx) error {
		return tx.GetPrefix(kvDigestSent, func(string, string) error { marks++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if marks != n {
		t.Errorf("%d first sightings recorded, want %d", marks, n)
	}
}
