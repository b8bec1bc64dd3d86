package bridge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// replicaPair returns two services, as two replicas would be, on one fresh
// PostgreSQL schema (TEST_DUEBRIDGE_POSTGRES; skipped without it), sharing
// a clock.
func replicaPair(t *testing.T) (a, b *bridge.Service, clock *fakeclock.Clock) {
	t.Helper()
	source := testsvc.PostgresSource(t, "lockout")
	clock = fakeclock.New(time.Now().Truncate(time.Second))
	cfg := testsvc.Config(t)
	cfg.Limits.LoginFailureDelay = 0
	cfg.Limits.LockoutFailures = 4
	cfg.Limits.LockoutWindow = 15 * time.Minute
	open := func() *bridge.Service {
		var st store.Store
		svc, err := bridge.New(func(o store.Options) (store.Store, error) {
			var err error
			st, err = store.Open(context.Background(), store.Postgres, source, o)
			return st, err
		}, cfg, bridge.Options{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		testsvc.Track(t, svc, st)
		return svc
	}
	return open(), open(), clock
}

// Behind a balancer each guess may land on another replica: the failures
// count together, so N replicas give an attacker the guesses of one, and a
// lock started on one replica is honoured by the other.
func TestLockoutsSharedBetweenReplicas(t *testing.T) {
	a, b, clock := replicaPair(t)
	// Four distinct guesses at bob's password, alternating replicas and
	// addresses (a botnet): two each, which alone would lock neither.
	mustFail(t, a, "bob", "guess-1", "198.51.100.1:1", bridge.ErrBadCredentials)
	mustFail(t, b, "bob", "guess-2", "198.51.100.2:1", bridge.ErrBadCredentials)
	mustFail(t, a, "bob", "guess-3", "198.51.100.3:1", bridge.ErrBadCredentials)
	mustFail(t, b, "bob", "guess-4", "198.51.100.4:1", bridge.ErrBadCredentials)
	// The name is locked on both, even for the right password from elsewhere.
	mustFail(t, a, "bob", testsvc.Password("bob"), "203.0.113.9:1", bridge.ErrLockedOut)
	mustFail(t, b, "bob", testsvc.Password("bob"), "203.0.113.9:1", bridge.ErrLockedOut)

	// Trust is shared too: alice logged in from her home on replica a; her
	// address is locked by someone else's guesses there, and replica b
	// still lets her in.
	const home = "192.0.2.50:1"
	mustLogin(t, a, "alice", testsvc.Password("alice"), home)
	for i := range 4 {
		svc := []*bridge.Service{a, b}[i%2]
		mustFail(t, svc, fmt.Sprintf("guest%d", i), "x", fmt.Sprintf("192.0.2.50:%d", 100+i), bridge.ErrBadCredentials)
	}
	mustFail(t, b, "carol", testsvc.Password("carol"), home, bridge.ErrLockedOut)
	mustLogin(t, b, "alice", testsvc.Password("alice"), home)

	// The lock ends on both when the window has passed.
	clock.Advance(16 * time.Minute)
	mustLogin(t, a, "bob", testsvc.Password("bob"), "203.0.113.9:1")
	mustLogin(t, b, "bob", testsvc.Password("bob"), "203.0.113.10:1")
}

// With the database away the process's own records carry on: guesses are
// still counted and locked, never let through unchecked.
func TestLockoutsWhenDatabaseAway(t *testing.T) {
	a, _, _ := replicaPair(t)
	testsvc.Store(t, a).Close()
	for i := range 4 {
		mustFail(t, a, "bob", fmt.Sprintf("guess-%d", i), fmt.Sprintf("198.51.100.%d:1", i), bridge.ErrBadCredentials)
	}
	mustFail(t, a, "bob", testsvc.Password("bob"), "203.0.113.9:1", bridge.ErrLockedOut)
}
