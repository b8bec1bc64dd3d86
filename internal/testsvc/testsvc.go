// Package testsvc builds a real bridge.Service on a temporary SQLite store
// for tests of the adapters. Nothing is mocked.
package testsvc

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/url"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// Secret is the webhook secret of source "tracker" in Config.
const Secret = "test-secret-123"

// Password returns the password of a test user: "<name>-pw".
func Password(user string) string { return user + "-pw" }

// Config returns a valid config with users alice, bob and carol (password
// Password(name)), source "tracker" (secret Secret), lead times 24h and 1h.
func Config(t testing.TB) *config.Config {
	t.Helper()
	c, err := config.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c.DataDir = t.TempDir()
	c.HTTP.PublicURL, _ = url.Parse("http://duebridge.test")
	for _, name := range []string{"alice", "bob", "carol"} {
		h, err := bcrypt.GenerateFromPassword([]byte(Password(name)), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		c.Users = append(c.Users, config.User{Name: name, Email: name + "@example.com", PasswordHash: string(h),
			Notify: config.NotifyAlarms, Location: time.UTC, DigestAt: 8 * time.Hour})
	}
	c.Sources = append(c.Sources, config.Source{Name: "tracker", Kind: "generic", Secret: Secret})
	return c
}

// Options for New.
type Options struct {
	Config *config.Config // nil = Config(t)
	// Clock is the service's and the store's one clock; nil = Now read
	// with real timers. Pass a *fakeclock.Clock to run timers virtually.
	Clock bridge.Clock
	// Now, when Clock is nil, moves the date only (bridge.SystemClock(Now));
	// nil = time.Now.
	Now    func() time.Time
	Logger *slog.Logger // nil = discard
}

// New opens a store in a temp dir and returns the service; both are closed
// by t.Cleanup.
func New(t testing.TB, o Options) *bridge.Service {
	t.Helper()
	if o.Config == nil {
		o.Config = Config(t)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Clock == nil {
		o.Clock = bridge.SystemClock(o.Now)
	}
	hub := bridge.NewHub()
	st, err := store.Open(context.Background(), store.SQLite, o.Config.DataDir, store.Options{OnCommit: hub.Publish, Now: o.Clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return bridge.New(st, hub, o.Config, bridge.Options{Logger: o.Logger, Clock: o.Clock})
}

// Ingest stores tasks from source "tracker" or fails the test.
func Ingest(t testing.TB, svc *bridge.Service, tasks ...bridge.TaskInput) bridge.Result {
	t.Helper()
	res, err := svc.Ingest(context.Background(), "tracker", tasks)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// JSON marshals v or fails the test.
func JSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
