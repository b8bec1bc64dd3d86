package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"

	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/password"
	"github.com/duebridge/duebridge/internal/testsvc"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// authWorld is a service with lock-outs after 3 failures in 15 minutes and
// no failure delay, on a fake clock, logging into a buffer.
func authWorld(t *testing.T) (*bridge.Service, *fakeclock.Clock, *syncBuffer) {
	t.Helper()
	cfg := testsvc.Config(t)
	cfg.Limits.LoginFailureDelay = 0
	cfg.Limits.LockoutFailures = 3
	cfg.Limits.LockoutWindow = 15 * time.Minute
	clock := fakeclock.New(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC))
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := testsvc.New(t, testsvc.Options{Config: cfg, Clock: clock, Logger: log})
	return svc, clock, logs
}

func login(svc *bridge.Service, name, pw, addr string) error {
	_, err := svc.AuthenticateFrom(context.Background(), "test", name, pw, addr)
	return err
}

func mustLogin(t *testing.T, svc *bridge.Service, name, pw, addr string) {
	t.Helper()
	if err := login(svc, name, pw, addr); err != nil {
		t.Fatalf("login %s from %s: %v, want success", name, addr, err)
	}
}

func mustFail(t *testing.T, svc *bridge.Service, name, pw, addr string, want error) {
	t.Helper()
	err := login(svc, name, pw, addr)
	if !errors.Is(err, want) {
		t.Fatalf("login %s from %s: %v, want %v", name, addr, err, want)
	}
	if !errors.Is(err, bridge.ErrBadCredentials) {
		t.Fatalf("login %s from %s: %v does not match ErrBadCredentials", name, addr, err)
	}
}

func TestAppPasswordsAndRevocation(t *testing.T) {
	svc, _, _ := authWorld(t)
	cfg := *svc.Config()
	h, err := password.Hash("phone-app-pw")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := bcrypt.GenerateFromPassword([]byte("laptop-app-pw"), bcrypt.MinCost)
	cfg.Users = append([]config.User(nil), cfg.Users...)
	cfg.Users[0].AppPasswords = []config.AppPassword{{Name: "phone", Hash: h}, {Name: "laptop", Hash: string(b)}}
	svc.SetConfig(context.Background(), &cfg)

	mustLogin(t, svc, "alice", testsvc.Password("alice"), "192.0.2.1:1000")
	mustLogin(t, svc, "alice", "phone-app-pw", "192.0.2.1:1000")
	mustLogin(t, svc, "alice", "laptop-app-pw", "192.0.2.1:1000")
	mustLogin(t, svc, "alice", "phone-app-pw", "192.0.2.1:1000") // from the cache now
	mustFail(t, svc, "bob", "phone-app-pw", "192.0.2.1:1000", bridge.ErrBadCredentials)

	// Revoke the phone's app password: it stops working at once, although
	// it sits in the verification cache; the other one keeps working.
	revoked := cfg
	revoked.Users = append([]config.User(nil), cfg.Users...)
	revoked.Users[0].AppPasswords = []config.AppPassword{{Name: "laptop", Hash: string(b)}}
	svc.SetConfig(context.Background(), &revoked)
	mustFail(t, svc, "alice", "phone-app-pw", "192.0.2.1:1000", bridge.ErrBadCredentials)
	mustLogin(t, svc, "alice", "laptop-app-pw", "192.0.2.1:1000")
	mustLogin(t, svc, "alice", testsvc.Password("alice"), "192.0.2.1:1000")

	// The wrapper without an address still works.
	if _, err := svc.Authenticate("imap", "alice", testsvc.Password("alice")); err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
}

func TestUserLockoutTriggersAndReleases(t *testing.T) {
	svc, clock, logs := authWorld(t)
	const (
		attacker = "198.51.100.7:4000"
		stranger = "203.0.113.9:5000"
		phone    = "192.0.2.50:6000"
	)
	// alice's phone logged in before the attack.
	mustLogin(t, svc, "alice", testsvc.Password("alice"), phone)

	// Three wrong passwords from varying ports of one address, one of them
	// from another address: the third failure on "alice" locks her name.
	mustFail(t, svc, "alice", "guess-1", attacker, bridge.ErrBadCredentials)
	mustFail(t, svc, "alice", "guess-2", "198.51.100.7:4001", bridge.ErrBadCredentials)
	mustFail(t, svc, "alice", "guess-3", stranger, bridge.ErrBadCredentials)

	// Locked: even the right password is refused, without a check, from
	// any address that has not logged in as alice before...
	err := login(svc, "alice", testsvc.Password("alice"), stranger)
	var le *bridge.LockoutError
	if !errors.As(err, &le) || !errors.Is(err, bridge.ErrLockedOut) {
		t.Fatalf("locked login: %v, want a *LockoutError", err)
	}
	if want := clock.Now().Add(15 * time.Minute); !le.Until.Equal(want) {
		t.Errorf("lock until %v, want %v", le.Until, want)
	}
	if got := le.RetryAfter(clock.Now()); got != 15*time.Minute {
		t.Errorf("RetryAfter = %v, want 15m", got)
	}
	mustFail(t, svc, "alice", testsvc.Password("alice"), "", bridge.ErrLockedOut)
	// ...but her phone keeps working, and other users are not affected.
	mustLogin(t, svc, "alice", testsvc.Password("alice"), "192.0.2.50:6001")
	mustLogin(t, svc, "bob", testsvc.Password("bob"), stranger)

	// Attempts during the lock do not extend it.
	clock.Advance(10 * time.Minute)
	mustFail(t, svc, "alice", "guess-4", stranger, bridge.ErrLockedOut)
	clock.Advance(5*time.Minute - time.Second)
	mustFail(t, svc, "alice", testsvc.Password("alice"), stranger, bridge.ErrLockedOut)
	clock.Advance(time.Second)
	mustLogin(t, svc, "alice", testsvc.Password("alice"), stranger)

	// Failures count within the window only: two now and one after the
	// window has passed do not lock.
	mustFail(t, svc, "alice", "guess-5", stranger, bridge.ErrBadCredentials)
	mustFail(t, svc, "alice", "guess-6", stranger, bridge.ErrBadCredentials)
	clock.Advance(16 * time.Minute)
	mustFail(t, svc, "alice", "guess-7", stranger, bridge.ErrBadCredentials)
	mustLogin(t, svc, "alice", testsvc.Password("alice"), stranger)

	if got := testsvc.Metric(t, svc, "duebridge_login_lockouts_total", "scope", "user"); got != 1 {
		t.Errorf("user lock-outs = %v, want 1", got)
	}
	if got := testsvc.Metric(t, svc, "duebridge_login_refused_total", "protocol", "test"); got != 4 {
		t.Errorf("refused = %v, want 4", got)
	}
	if got := testsvc.Metric(t, svc, "duebridge_login_failures_total", "protocol", "test"); got != 6 {
		t.Errorf("failures = %v, want 6", got)
	}
	out := logs.String()
	if !strings.Contains(out, "login locked out after repeated failures") || !strings.Contains(out, "scope=user") {
		t.Errorf("lock-out not logged:\n%s", out)
	}
	for _, pw := range []string{"guess-1", "guess-4", testsvc.Password("alice")} {
		if strings.Contains(out, pw) {
			t.Errorf("a password (%q) appears in the log:\n%s", pw, out)
		}
	}
}

func TestClientLockout(t *testing.T) {
	svc, clock, _ := authWorld(t)
	const attacker = "[2001:db8:1:2:3::99]:993"
	// Spraying one guess over many names locks the address, whoever the
	// names are (unknown ones count the same).
	mustFail(t, svc, "alice", "spring2026", attacker, bridge.ErrBadCredentials)
	mustFail(t, svc, "bob", "spring2026", attacker, bridge.ErrBadCredentials)
	mustFail(t, svc, "nobody", "spring2026", attacker, bridge.ErrBadCredentials)
	// The whole /64 is locked, for every user.
	mustFail(t, svc, "carol", testsvc.Password("carol"), "[2001:db8:1:2:ffff::1]:1", bridge.ErrLockedOut)
	// Another address is not, and no single user name reached the limit.
	mustLogin(t, svc, "carol", testsvc.Password("carol"), "[2001:db8:1:3::1]:1")
	mustLogin(t, svc, "alice", testsvc.Password("alice"), "192.0.2.1:1")
	clock.Advance(15 * time.Minute)
	mustLogin(t, svc, "carol", testsvc.Password("carol"), attacker)
	if got := testsvc.Metric(t, svc, "duebridge_login_lockouts_total", "scope", "client"); got != 1 {
		t.Errorf("client lock-outs = %v, want 1", got)
	}
}

func TestFailureDelayGrowsAndStopsWithTheClient(t *testing.T) {
	svc, _, _ := authWorld(t)
	cfg := *svc.Config()
	cfg.Limits.LoginFailureDelay = 40 * time.Millisecond
	cfg.Limits.LockoutFailures = 100
	svc.SetConfig(context.Background(), &cfg)

	for i, want := range []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 120 * time.Millisecond} {
		start := time.Now()
		// Distinct passwords: a repeated one counts once (a stale device).
		mustFail(t, svc, "alice", fmt.Sprintf("wrong-%d", i), "192.0.2.9:1", bridge.ErrBadCredentials)
		if got := time.Since(start); got < want {
			t.Errorf("failure %d answered after %v, want at least %v", i+1, got, want)
		}
	}
	// A success is never delayed by the failures.
	start := time.Now()
	mustLogin(t, svc, "bob", testsvc.Password("bob"), "192.0.2.10:1")
	mustLogin(t, svc, "bob", testsvc.Password("bob"), "192.0.2.10:1")
	if got := time.Since(start); got > 2*time.Second {
		t.Errorf("successful logins took %v", got)
	}
	// A client that goes away ends its wait.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := svc.AuthenticateFrom(ctx, "test", "alice", "wrong", "192.0.2.9:1"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled attempt: %v, want context.DeadlineExceeded", err)
	}
}

func TestUnknownUserAndOversizedPassword(t *testing.T) {
	svc, _, _ := authWorld(t)
	mustFail(t, svc, "nobody", "x", "192.0.2.1:1", bridge.ErrBadCredentials)
	mustFail(t, svc, "alice", "", "192.0.2.2:1", bridge.ErrBadCredentials)
	mustFail(t, svc, "alice", strings.Repeat("a", 2000), "192.0.2.3:1", bridge.ErrBadCredentials)
}

// TestLoginCacheOutlastsPollInterval: a phone polling every 15 minutes is
// answered from the cache for hours; the password is checked again after
// authCacheMaxAge (12h) or 20 idle minutes.
func TestLoginCacheOutlastsPollInterval(t *testing.T) {
	svc, clock, _ := authWorld(t)
	ctx := context.Background()
	misses := func() float64 {
		return testsvc.Metric(t, svc, "duebridge_login_cache_total", "result", "miss")
	}
	login := func() {
		t.Helper()
		if _, err := svc.AuthenticateFrom(ctx, "caldav", "alice", testsvc.Password("alice"), "192.0.2.1:1234"); err != nil {
			t.Fatal(err)
		}
	}
	login()
	base := misses()
	for i := 0; i < 40; i++ { // 10 hours of 15-minute polls
		clock.Advance(15 * time.Minute)
		login()
	}
	if got := misses() - base; got != 0 {
		t.Fatalf("%v password checks during 15-minute polling, want 0", got)
	}
	clock.Advance(3 * time.Hour) // past the 12h limit and idle for longer than 20m
	login()
	if got := misses() - base; got != 1 {
		t.Fatalf("%v checks after the cache limit, want 1", got)
	}
}

// TestRefusalCostIsUniform: a refused login costs the same number of hash
// checks for an unknown name, a user without app passwords and a user with
// them, so timing tells none of them apart.
func TestRefusalCostIsUniform(t *testing.T) {
	svc, _, _ := authWorld(t)
	cfg := *svc.Config()
	cfg.Users = append([]config.User(nil), cfg.Users...)
	cfg.Users[0].AppPasswords = []config.AppPassword{{Name: "phone", Hash: cfg.Users[1].PasswordHash}, {Name: "mac", Hash: cfg.Users[2].PasswordHash}}
	svc.SetConfig(context.Background(), &cfg)
	checks := func() float64 {
		return testsvc.Metric(t, svc, "duebridge_password_hash_checks_total")
	}
	cost := func(name string) float64 {
		before := checks()
		if _, err := svc.AuthenticateFrom(context.Background(), "imap", name, "wrong-password", "192.0.2.9:1"); err == nil {
			t.Fatalf("%s logged in with a wrong password", name)
		}
		return checks() - before
	}
	alice, bob, nobody := cost("alice"), cost("bob"), cost("nobody")
	if alice != 3 || bob != 3 || nobody != 3 {
		t.Fatalf("hash checks on refusal: alice (2 app passwords) %v, bob %v, unknown %v; want 3 each", alice, bob, nobody)
	}
}
