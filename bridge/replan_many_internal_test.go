package bridge

import (
	"context"
	"fmt"
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
	var cs *countingStore
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		cs = &countingStore{Store: st}
		return cs
	})
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
}
