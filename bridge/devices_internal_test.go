package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/password"
	"github.com/duebridge/duebridge/store"
)

// deviceService is a real service on a temporary SQLite store.
func deviceService(t testing.TB, dir string, users []config.User) *Service {
	t.Helper()
	return sqliteService(t, dir, &config.Config{Users: users})
}

// sqliteService is a real service on a SQLite store in dir, closed with
// the test; wrap, if given, wraps the store the service sees.
func sqliteService(t testing.TB, dir string, cfg *config.Config, wrap ...func(store.Store) store.Store) *Service {
	t.Helper()
	return sqliteServiceAt(t, dir, cfg, nil, wrap...)
}

// sqliteServiceAt is sqliteService on clk (the system clock if nil).
func sqliteServiceAt(t testing.TB, dir string, cfg *config.Config, clk clock.Clock, wrap ...func(store.Store) store.Store) *Service {
	t.Helper()
	s, err := New(func(o store.Options) (store.Store, error) {
		st, err := store.Open(context.Background(), store.SQLite, dir, o)
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { st.Close() })
		for _, w := range wrap {
			st = w(st)
		}
		return st, nil
	}, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDeviceRefusalCostsWhatEveryRefusalCosts: a refused login runs the
// same checks, in the same order, whether the password is shaped like a
// device password (a guessed one, another user's, a revoked one) or not,
// and whether the name exists. The right device password costs the device
// step alone: no hash check.
func TestDeviceRefusalCostsWhatEveryRefusalCosts(t *testing.T) {
	ctx := context.Background()
	s := deviceService(t, t.TempDir(), []config.User{
		{Name: "alice", PasswordHash: cheapArgon(t, "alice-pw", 64)},
		{Name: "bob", PasswordHash: cheapBcrypt(t, "bob-pw", 4)},
	})
	alicePW := issue(t, s, "alice", "phone")
	bobPW := issue(t, s, "bob", "phone")
	d, revoked, err := s.IssueDevicePassword(ctx, "alice", "old phone")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeDevicePassword(ctx, "alice", d.ID); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seq []string
	a := s.auth
	a.verifyHash = func(hash, pw string) bool {
		mu.Lock()
		seq = append(seq, password.Shape(hash))
		mu.Unlock()
		return password.Verify(hash, pw)
	}
	a.verifyDevice = func(ctx context.Context, name, pw string) bool {
		mu.Lock()
		seq = append(seq, "hmac-sha256")
		mu.Unlock()
		return s.devices.verify(ctx, name, pw)
	}
	run := func(name, pw string) (bool, []string) {
		seq = nil
		_, err := s.AuthenticateFrom(ctx, "test", name, pw, "")
		return err == nil, slices.Clone(seq)
	}
	_, want := run("nobody", "guess")
	if !slices.Contains(want, "hmac-sha256") || len(want) < 2 {
		t.Fatalf("an unknown name checked %v; want the device step and the hash plan", want)
	}
	guess := "dbp-aaaaaaaaaaaaa-" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	for _, c := range []struct{ name, pw string }{
		{"alice", "wrong"}, {"bob", "wrong"}, {"alice", guess}, {"nobody", guess},
		{"alice", bobPW}, {"nobody", alicePW}, {"alice", revoked}, {"alice", otherLast(alicePW)},
	} {
		ok, got := run(c.name, c.pw)
		if ok {
			t.Fatalf("%s logged in with %q", c.name, c.pw)
		}
		if !slices.Equal(got, want) {
			t.Errorf("refusing %s with %q checked %v; an unknown name checks %v", c.name, c.pw, got, want)
		}
	}
	if ok, got := run("alice", alicePW); !ok || !slices.Equal(got, []string{"hmac-sha256"}) {
		t.Errorf("alice's device password: ok=%v, checked %v; want the device step alone", ok, got)
	}
	if ok, _ := run("alice", "alice-pw"); !ok {
		t.Error("alice's own password refused")
	}
}

// otherLast returns pw with its last character changed (never to itself:
// a fixed replacement equals the original one time in 32).
func otherLast(pw string) string {
	last := byte('x')
	if pw[len(pw)-1] == last {
		last = 'y'
	}
	return pw[:len(pw)-1] + string(last)
}

func issue(t testing.TB, s *Service, user, name string) string {
	t.Helper()
	_, pw, err := s.IssueDevicePassword(context.Background(), user, name)
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

// TestRevocationInAnotherProcessEndsSessions: a device password revoked by
// another process sharing the store (the CLI) ends the user's sessions in
// this one, through runDevices.
func TestRevocationInAnotherProcessEndsSessions(t *testing.T) {
	dir := t.TempDir()
	users := []config.User{{Name: "alice", PasswordHash: cheapBcrypt(t, "alice-pw", 4)}}
	server := deviceService(t, dir, users)
	server.devices.poll = 10 * time.Millisecond
	cli := deviceService(t, dir, users)
	pw := issue(t, server, "alice", "phone")
	if _, err := server.Authenticate("imap", "alice", pw); err != nil {
		t.Fatal(err)
	}
	sub := server.hub.Subscribe("", EventCredentials)
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		// The first revocation check marks where the log ends.
		server.markRevocations(ctx)
		close(ready)
		done <- server.runDevices(ctx)
	}()
	<-ready
	dev, err := cli.Devices(ctx, "alice")
	if err != nil || len(dev) != 1 {
		t.Fatalf("devices seen by the CLI: %v, %v", dev, err)
	}
	if err := cli.RevokeDevicePassword(ctx, "alice", dev[0].ID); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-sub.C:
		if ev.User != "alice" {
			t.Fatalf("credentials event for %q", ev.User)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server did not end alice's sessions after the CLI revoked her device")
	}
	if _, err := server.Authenticate("imap", "alice", pw); err == nil {
		t.Fatal("revoked device password still works")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkColdLogin compares what a login costs when the cache does not
// know it (a phone's first poll after a restart): a device password
// (HMAC-SHA256) against the user's own argon2id password (RFC 9106
// parameters), and a warm login answered from the cache.
func BenchmarkColdLogin(b *testing.B) {
	ctx := context.Background()
	hash, err := password.Hash("alice-own-password")
	if err != nil {
		b.Fatal(err)
	}
	s := deviceService(b, b.TempDir(), []config.User{{Name: "alice", PasswordHash: hash}})
	devicePW := issue(b, s, "alice", "phone")
	login := func(b *testing.B, pw string) {
		if _, err := s.AuthenticateFrom(ctx, "imap", "alice", pw, "192.0.2.1:1"); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("device-password-cold", func(b *testing.B) {
		for b.Loop() {
			s.auth.reset()
			login(b, devicePW)
		}
	})
	b.Run("argon2id-cold", func(b *testing.B) {
		for b.Loop() {
			s.auth.reset()
			login(b, "alice-own-password")
		}
	})
	b.Run("argon2id-warm", func(b *testing.B) {
		login(b, "alice-own-password")
		for b.Loop() {
			login(b, "alice-own-password")
		}
	})
}

// TestWarmDeviceLoginReadsNoStore: a phone logs in on every poll; after
// its first login its device row is remembered, so the next ones cost one
// HMAC and no store transaction (each read one, its statement prepared
// anew, 6 % of a poll's CPU). A refused login still reads the store.
func TestWarmDeviceLoginReadsNoStore(t *testing.T) {
	ctx := context.Background()
	s, cs := countingService(t, t.TempDir(), &config.Config{Users: []config.User{
		{Name: "alice", PasswordHash: cheapBcrypt(t, "alice-pw", 4)},
		{Name: "bob", PasswordHash: cheapBcrypt(t, "bob-pw", 4)},
	}})
	pw := issue(t, s, "alice", "phone")
	if _, err := s.AuthenticateFrom(ctx, "imap", "alice", pw, "192.0.2.1:1"); err != nil {
		t.Fatal(err)
	}
	reads, writes := cs.views.Load(), cs.updates.Load()
	for range 5 {
		if _, err := s.AuthenticateFrom(ctx, "imap", "alice", pw, "192.0.2.1:1"); err != nil {
			t.Fatal(err)
		}
	}
	if n, w := cs.views.Load()-reads, cs.updates.Load()-writes; n != 0 || w != 0 {
		t.Errorf("5 warm device-password logins opened %d read and %d write transactions, want 0", n, w)
	}
	// A wrong secret for the remembered ID, and the right password under
	// another name, each take the full path: one read, of one statement
	// and without a transaction around it (a Read, as every phone's
	// first login after a restart).
	for _, c := range []struct{ name, pw string }{{"alice", otherLast(pw)}, {"bob", pw}} {
		reads, single := cs.views.Load(), cs.reads.Load()
		if s.devices.verify(ctx, c.name, c.pw) {
			t.Fatalf("%s logged in with %q", c.name, c.pw)
		}
		if n := cs.views.Load() - reads; n != 1 {
			t.Errorf("refusing %s's %q read the store %d times, want 1 (the full path)", c.name, c.pw, n)
		}
		if n := cs.reads.Load() - single; n != 1 {
			t.Errorf("refusing %s's %q: %d Reads, want its one read a Read (no transaction)", c.name, c.pw, n)
		}
	}
}

// TestDeviceRowsBounded: past limits.device_cache_entries a new row takes
// the place of another; every device still logs in.
func TestDeviceRowsBounded(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{Users: []config.User{{Name: "alice", PasswordHash: cheapBcrypt(t, "alice-pw", 4)}}}
	cfg.Limits.DeviceCacheEntries = 3
	s := sqliteService(t, t.TempDir(), cfg)
	for i := range 8 {
		pw := issue(t, s, "alice", fmt.Sprintf("phone %d", i))
		if !s.devices.verify(ctx, "alice", pw) {
			t.Fatalf("device %d refused", i)
		}
		s.devices.rowsMu.Lock()
		n := len(s.devices.rows)
		s.devices.rowsMu.Unlock()
		if n > 3 {
			t.Fatalf("%d rows remembered, limit 3", n)
		}
	}
}

// TestRevokedWhileCheckedIsNotRemembered: a login that read the row just
// before a revocation on this process committed must not put it back into
// memory after the revocation evicted it.
func TestRevokedWhileCheckedIsNotRemembered(t *testing.T) {
	ctx := context.Background()
	s := deviceService(t, t.TempDir(), []config.User{{Name: "alice", PasswordHash: cheapBcrypt(t, "alice-pw", 4)}})
	d, pw, err := s.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	ttl := limitsOf(s.Config()).deviceRowTTL
	_, _, evictions := s.devices.remembered(d.ID, s.Now(), ttl) // the login starts
	if err := s.RevokeDevicePassword(ctx, "alice", d.ID); err != nil {
		t.Fatal(err)
	}
	s.devices.remember(d.ID, deviceRow{user: "alice", read: s.Now()}, evictions, 10) // and ends
	if _, ok, _ := s.devices.remembered(d.ID, s.Now(), ttl); ok {
		t.Fatal("a row read before its revocation was remembered after it")
	}
	if s.devices.verify(ctx, "alice", pw) {
		t.Fatal("revoked device password accepted")
	}
}

// BenchmarkDeviceCheck is the device step of a login: a remembered row
// (every poll of a phone after its first within limits.device_cache_ttl),
// the store read every check paid before rows were remembered (the row
// forgotten before each check), and a refusal (a wrong secret for a
// remembered ID), which always pays the store read.
func BenchmarkDeviceCheck(b *testing.B) {
	ctx := context.Background()
	s := deviceService(b, b.TempDir(), []config.User{{Name: "alice", PasswordHash: "x"}})
	dev, pw, err := s.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		b.Fatal(err)
	}
	check := func(b *testing.B, pw string, want bool) {
		if s.devices.verify(ctx, "alice", pw) != want {
			b.Fatalf("verify(%q) != %v", pw, want)
		}
	}
	b.Run("remembered", func(b *testing.B) {
		b.ReportAllocs()
		check(b, pw, true)
		for b.Loop() {
			check(b, pw, true)
		}
	})
	b.Run("store-read", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			s.devices.forget(dev.ID)
			check(b, pw, true)
		}
	})
	b.Run("refused", func(b *testing.B) {
		b.ReportAllocs()
		check(b, pw, true)
		for b.Loop() {
			check(b, otherLast(pw), false)
		}
	})
}

// TestCodeDefaultsMatchConfig: the limits a config built in code falls back
// to are the configuration's own defaults.
func TestCodeDefaultsMatchConfig(t *testing.T) {
	loaded, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	got, want := limitsOf(&config.Config{}), limitsOf(loaded)
	if got.devices != want.devices || got.deviceRows != want.deviceRows || got.deviceRowTTL != want.deviceRowTTL {
		t.Errorf("defaults for a config built in code %+v, configuration's %+v", got, want)
	}
}

// TestDeviceLastUseToTheHour: a use is written only when the stored last
// use is an hour old or more, so a phone polling every few minutes costs a
// row write an hour, not one every flush; and a flush writes its rows
// deviceFlushChunk to a transaction, so it never holds the writer for long.
func TestDeviceLastUseToTheHour(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(time.Date(2030, 1, 2, 9, 0, 0, 0, time.UTC))
	var cs *countingStore
	s := sqliteServiceAt(t, t.TempDir(), &config.Config{Users: []config.User{{Name: "alice", PasswordHash: cheapArgon(t, "alice-pw", 64)}}},
		clk, func(st store.Store) store.Store {
			cs = &countingStore{Store: st}
			return cs
		})
	pw := issue(t, s, "alice", "phone")
	id, _, _ := password.ParseDevice(pw)
	stored := func() time.Time {
		var at time.Time
		s.st.View(ctx, func(tx store.Tx) error {
			d, err := tx.DevicePassword(id)
			if err != nil {
				t.Fatal(err)
			}
			at = d.LastUsed
			return nil
		})
		return at
	}
	login := func() {
		t.Helper()
		if !s.devices.verify(ctx, "alice", pw) {
			t.Fatal("device password refused")
		}
	}
	flush := func() int64 {
		t.Helper()
		before := cs.updates.Load()
		if err := s.flushDeviceUses(ctx); err != nil {
			t.Fatal(err)
		}
		return cs.updates.Load() - before
	}

	first := clk.Now()
	login()
	if n := flush(); n != 1 || !stored().Equal(first) {
		t.Fatalf("first use: %d writes, stored %v; want 1 write of %v", n, stored(), first)
	}
	for range 59 {
		clk.Advance(time.Minute)
		login()
	}
	if n := flush(); n != 0 || !stored().Equal(first) {
		t.Fatalf("uses within the hour: %d writes, stored %v; want none, %v kept", n, stored(), first)
	}
	clk.Advance(time.Minute)
	login()
	if n := flush(); n != 1 || !stored().Equal(clk.Now()) {
		t.Fatalf("a use an hour later: %d writes, stored %v; want 1 write of %v", n, stored(), clk.Now())
	}

	// 1,001 uses to write: three transactions.
	s.devices.mu.Lock()
	for i := range 2*deviceFlushChunk + 1 {
		s.devices.pending[fmt.Sprintf("%016x", i)] = clk.Now()
	}
	s.devices.mu.Unlock()
	if n := flush(); n != 3 {
		t.Fatalf("%d uses written in %d transactions, want 3", 2*deviceFlushChunk+1, n)
	}
	if n := len(s.devices.pending); n != 0 {
		t.Fatalf("%d uses left after the flush", n)
	}
}
