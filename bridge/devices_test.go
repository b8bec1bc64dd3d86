package bridge_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// TestDevicePasswordIssueUseRevoke: a device password is long and random,
// stored only as a hash, logs its user in without a password hash check,
// nobody else, and stops working (and ends the user's sessions) when
// revoked. The user's own password keeps working.
func TestDevicePasswordIssueUseRevoke(t *testing.T) {
	ctx := context.Background()
	svc, clock, _ := authWorld(t)
	dev, pw, err := svc.IssueDevicePassword(ctx, "alice", "  Alice's iPhone ")
	if err != nil {
		t.Fatal(err)
	}
	if dev.Name != "Alice's iPhone" || dev.User != "alice" || dev.ID == "" || !strings.Contains(pw, dev.ID) {
		t.Fatalf("issued %+v, %q", dev, pw)
	}
	// 32 base32 characters of secret: 160 bits.
	if i := strings.LastIndexByte(pw, '-'); len(pw)-i-1 < 26 {
		t.Fatalf("password %q has a secret under 128 bits", pw)
	}
	_, pw2, _ := svc.IssueDevicePassword(ctx, "alice", "iPad")
	if pw2 == pw {
		t.Fatal("two devices got the same password")
	}
	// Only a hash is stored.
	testsvc.Store(t, svc).View(ctx, func(tx store.Tx) error {
		rows, err := tx.DevicePasswords("")
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			secret := pw[strings.LastIndexByte(pw, '-')+1:]
			if strings.Contains(string(r.Hash), secret) || len(r.Hash) != 32 {
				t.Fatalf("stored %x for %s", r.Hash, r.ID)
			}
		}
		return nil
	})

	hashChecks := func() float64 {
		return testsvc.Metric(t, svc, "duebridge_password_hash_checks_total")
	}
	before := hashChecks()
	clock.Advance(time.Minute)
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	if got := hashChecks() - before; got != 0 {
		t.Fatalf("device password logins ran %v password hash checks, want 0", got)
	}
	mustFail(t, svc, "bob", pw, "192.0.2.2:1", bridge.ErrBadCredentials)
	mustLogin(t, svc, "alice", testsvc.Password("alice"), "192.0.2.1:1")

	list, err := svc.Devices(ctx, "alice")
	if err != nil || len(list) != 2 {
		t.Fatalf("devices: %+v, %v", list, err)
	}
	// Both were issued at the same instant: find them by ID.
	if list[0].ID != dev.ID {
		list[0], list[1] = list[1], list[0]
	}
	if list[0].ID != dev.ID || !list[0].LastUsed.Equal(clock.Now()) || !list[1].LastUsed.IsZero() {
		t.Fatalf("devices: %+v; want %s used at %v, the other never", list, dev.ID, clock.Now())
	}
	if other, _ := svc.Devices(ctx, "bob"); len(other) != 0 {
		t.Fatalf("bob sees devices %+v", other)
	}

	// The IMAP backend forwards credential events to the server, which
	// ends the user's sessions.
	subCtx, unsubscribe := context.WithCancel(ctx)
	defer unsubscribe()
	events := svc.IMAP().Subscribe(subCtx)
	if err := svc.RevokeDevicePassword(ctx, "bob", dev.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob revoking alice's device: %v, want ErrNotFound", err)
	}
	if err := svc.RevokeDevicePassword(ctx, "alice", dev.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e.Kind != imapserver.EventCredentials || e.User != "alice" {
			t.Fatalf("revocation published %+v, want EventCredentials for alice", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("revocation did not publish EventCredentials for alice (her IMAP sessions stay open)")
	}
	mustFail(t, svc, "alice", pw, "192.0.2.1:1", bridge.ErrBadCredentials)
	mustLogin(t, svc, "alice", pw2, "192.0.2.1:1")
	if list, _ := svc.Devices(ctx, "alice"); len(list) != 1 || list[0].Name != "iPad" || list[0].ID == dev.ID {
		t.Fatalf("after revoking: %+v", list)
	}
}

func TestDevicePasswordLimitsAndNames(t *testing.T) {
	ctx := context.Background()
	cfg := testsvc.Config(t)
	cfg.Limits.DevicesPerUser = 2
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	for _, bad := range []string{"", "   ", strings.Repeat("x", 101), "tab\there", "\xff"} {
		if _, _, err := svc.IssueDevicePassword(ctx, "alice", bad); !errors.Is(err, bridge.ErrDeviceName) {
			t.Errorf("name %q: %v, want ErrDeviceName", bad, err)
		}
	}
	for i := range 2 {
		if _, _, err := svc.IssueDevicePassword(ctx, "alice", "phone "+string(rune('a'+i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := svc.IssueDevicePassword(ctx, "alice", "third"); !errors.Is(err, bridge.ErrTooManyDevices) {
		t.Fatalf("third device: %v, want ErrTooManyDevices", err)
	}
	if _, _, err := svc.IssueDevicePassword(ctx, "bob", "phone"); err != nil {
		t.Fatalf("bob's first device: %v", err)
	}
	if _, _, err := svc.IssueDevicePassword(ctx, "mallory", "phone"); err == nil {
		t.Fatal("a device password for an unknown user")
	}
}

// TestDeviceLastUseIsCoalesced: polls record last use in memory; the store
// is written when Run flushes (every few minutes, and on the way out),
// not once per poll.
func TestDeviceLastUseIsCoalesced(t *testing.T) {
	ctx := context.Background()
	svc, clock, _ := authWorld(t)
	dev, pw, err := svc.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	stored := func() time.Time {
		var at time.Time
		testsvc.Store(t, svc).View(ctx, func(tx store.Tx) error {
			d, err := tx.DevicePassword(dev.ID)
			if err != nil {
				t.Fatal(err)
			}
			at = d.LastUsed
			return nil
		})
		return at
	}
	for range 20 {
		clock.Advance(time.Second)
		mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	}
	if at := stored(); !at.IsZero() {
		t.Fatalf("a poll wrote last use (%v) to the store", at)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- svc.Run(runCtx) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if at := stored(); !at.Equal(clock.Now()) {
		t.Fatalf("stored last use %v after the flush, want %v", at, clock.Now())
	}
}

// deviceCache reads duebridge_device_password_cache_total{result}.
func deviceCache(t *testing.T, svc *bridge.Service, result string) float64 {
	t.Helper()
	return testsvc.Metric(t, svc, "duebridge_device_password_cache_total", "result", result)
}

// cacheCounts checks how many device checks were answered from memory (hits)
// and from the store (misses) since the last want.
type cacheCounts struct {
	t          *testing.T
	svc        *bridge.Service
	hits, miss float64
}

func (c *cacheCounts) want(what string, hits, misses float64) {
	c.t.Helper()
	h, m := deviceCache(c.t, c.svc, "hit"), deviceCache(c.t, c.svc, "miss")
	if h-c.hits != hits || m-c.miss != misses {
		c.t.Errorf("%s: %v hits and %v misses, want %v and %v", what, h-c.hits, m-c.miss, hits, misses)
	}
	c.hits, c.miss = h, m
}

// TestDeviceRowsRemembered: after a device's first login its row answers
// the next ones from memory; a wrong secret for that ID, or its password
// under another name, is refused by the full path (a store read); the row
// is read again limits.device_cache_ttl after it was read; revoking the
// device refuses it at once.
func TestDeviceRowsRemembered(t *testing.T) {
	ctx := context.Background()
	svc, clock, _ := authWorld(t)
	// Longer than an iPhone's 15-minute poll, so a returning poll hits.
	ttl := svc.Config().Limits.DeviceCacheTTL
	if ttl != 20*time.Minute {
		t.Fatalf("limits.device_cache_ttl defaults to %v, want 20m", ttl)
	}
	dev, pw, err := svc.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	c := &cacheCounts{t: t, svc: svc}
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	c.want("first login", 0, 1)
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	c.want("warm logins", 2, 0)
	if n := testsvc.Metric(t, svc, "duebridge_device_password_cache_entries"); n != 1 {
		t.Errorf("%v rows remembered, want 1", n)
	}

	wrong := pw[:len(pw)-1] + "a"
	if wrong == pw {
		wrong = pw[:len(pw)-1] + "b"
	}
	mustFail(t, svc, "alice", wrong, "192.0.2.9:1", bridge.ErrBadCredentials)
	c.want("wrong secret for a remembered ID", 0, 1)
	mustFail(t, svc, "bob", pw, "192.0.2.9:1", bridge.ErrBadCredentials)
	c.want("alice's device password for bob", 0, 1)
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	c.want("the right one after the refusals", 1, 0)

	// The expiry counts from the store read, not from the last use.
	clock.Advance(ttl - time.Second)
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	c.want("just before the expiry", 1, 0)
	clock.Advance(time.Second)
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	c.want("at the expiry", 0, 1)
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	c.want("after the new read", 1, 0)

	if err := svc.RevokeDevicePassword(ctx, "alice", dev.ID); err != nil {
		t.Fatal(err)
	}
	mustFail(t, svc, "alice", pw, "192.0.2.1:1", bridge.ErrBadCredentials)
	c.want("revoked", 0, 1)
}

// TestDeviceOfRemovedUserRefused: a user removed from the config is
// refused at once, though the device's row is remembered (and stays in the
// store).
func TestDeviceOfRemovedUserRefused(t *testing.T) {
	ctx := context.Background()
	svc, _, _ := authWorld(t)
	_, pw, err := svc.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	mustLogin(t, svc, "alice", pw, "192.0.2.1:1")
	if h := deviceCache(t, svc, "hit"); h != 1 {
		t.Fatalf("%v hits, want 1 (the row is remembered)", h)
	}
	cfg := *svc.Config()
	cfg.Users = slices.DeleteFunc(slices.Clone(cfg.Users), func(u config.User) bool { return u.Name == "alice" })
	svc.SetConfig(ctx, &cfg)
	mustFail(t, svc, "alice", pw, "192.0.2.1:1", bridge.ErrBadCredentials)
}

// TestDeviceRevokedElsewhereExpires: a device revoked by another process
// sharing the store (the CLI) is refused here once the revocation poll
// has seen it, and, were that missed, limits.device_cache_ttl after its
// row was read.
func TestDeviceRevokedElsewhereExpires(t *testing.T) {
	ctx := context.Background()
	cfg := testsvc.Config(t)
	cfg.Limits.LoginFailureDelay = 0
	cfg.Limits.DeviceCacheTTL = 30 * time.Second
	clock := fakeclock.New(time.Now().Truncate(time.Second))
	server := testsvc.New(t, testsvc.Options{Config: cfg, Clock: clock})
	cli := testsvc.New(t, testsvc.Options{Config: cfg, Clock: clock}) // the same data_dir
	dev, pw, err := server.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, server, "alice", pw, "192.0.2.1:1")
	if err := cli.RevokeDevicePassword(ctx, "alice", dev.ID); err != nil {
		t.Fatal(err)
	}
	// No revocation poll runs here: only the expiry ends the row. Until
	// then the remembered row answers (the documented window, which the
	// poll normally cuts to a few seconds).
	clock.Advance(29 * time.Second)
	mustLogin(t, server, "alice", pw, "192.0.2.1:1")
	clock.Advance(time.Second)
	mustFail(t, server, "alice", pw, "192.0.2.1:1", bridge.ErrBadCredentials)

	// With the poll, at once.
	dev2, pw2, err := server.IssueDevicePassword(ctx, "alice", "tablet")
	if err != nil {
		t.Fatal(err)
	}
	if err := bridge.PollRevocations(ctx, server); err != nil { // marks the log's end
		t.Fatal(err)
	}
	mustLogin(t, server, "alice", pw2, "192.0.2.1:1")
	if err := cli.RevokeDevicePassword(ctx, "alice", dev2.ID); err != nil {
		t.Fatal(err)
	}
	if err := bridge.PollRevocations(ctx, server); err != nil {
		t.Fatal(err)
	}
	mustFail(t, server, "alice", pw2, "192.0.2.1:1", bridge.ErrBadCredentials)
}

// TestDeviceRevokedOnAnotherReplica: with PostgreSQL, a device revoked on
// one replica is evicted on the other by its revocation poll (the one that
// ends the user's IMAP sessions there).
func TestDeviceRevokedOnAnotherReplica(t *testing.T) {
	ctx := context.Background()
	a, b, _ := replicaPair(t)
	if err := bridge.PollRevocations(ctx, b); err != nil { // b is running: it has marked the log's end
		t.Fatal(err)
	}
	dev, pw, err := a.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	mustLogin(t, b, "alice", pw, "192.0.2.1:1")
	mustLogin(t, b, "alice", pw, "192.0.2.1:1")
	if h := deviceCache(t, b, "hit"); h != 1 {
		t.Fatalf("replica b: %v hits, want 1 (the row is remembered)", h)
	}
	sub, cancel := context.WithCancel(ctx)
	defer cancel()
	events := b.IMAP().Subscribe(sub)
	if err := a.RevokeDevicePassword(ctx, "alice", dev.ID); err != nil {
		t.Fatal(err)
	}
	mustFail(t, a, "alice", pw, "192.0.2.1:1", bridge.ErrBadCredentials)
	if err := bridge.PollRevocations(ctx, b); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e.Kind != imapserver.EventCredentials || e.User != "alice" {
			t.Fatalf("replica b published %+v, want EventCredentials for alice", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("replica b did not end alice's IMAP sessions")
	}
	mustFail(t, b, "alice", pw, "192.0.2.1:1", bridge.ErrBadCredentials)
}
