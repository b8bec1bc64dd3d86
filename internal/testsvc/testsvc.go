// Package testsvc builds a real bridge.Service on a temporary SQLite store
// for tests of the adapters. Nothing is mocked.
package testsvc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/clock"
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
	// Clock is the service's and the store's one clock; nil = the wall
	// clock. Pass a *fakeclock.Clock to run timers virtually, or
	// clock.System(now) to move the date only.
	Clock  clock.Clock
	Logger *slog.Logger // nil = discard
	// Service holds further options for bridge.New (batch sizes, the
	// callback client); its Logger and Clock are the fields above.
	Service bridge.Options
}

// New opens a store in a temp dir and returns the service over it; the
// store is closed by t.Cleanup. Store(svc) is that store.
func New(t testing.TB, o Options) *bridge.Service {
	t.Helper()
	if o.Config == nil {
		o.Config = Config(t)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Clock == nil {
		o.Clock = clock.System(nil)
	}
	so := o.Service
	so.Logger, so.Clock = o.Logger, o.Clock
	var st store.Store
	svc, err := bridge.New(func(so store.Options) (store.Store, error) {
		var err error
		st, err = store.Open(context.Background(), store.SQLite, o.Config.DataDir, so)
		return st, err
	}, o.Config, so)
	if err != nil {
		t.Fatal(err)
	}
	Track(t, svc, st)
	t.Cleanup(func() { st.Close() })
	return svc
}

// stores holds the store of each live service New made or Track was told of.
var stores sync.Map // *bridge.Service -> store.Store

// Track records st as the store of svc for Store, until the test ends: for
// services a test builds otherwise (the whole server in cmd's tests).
func Track(t testing.TB, svc *bridge.Service, st store.Store) {
	stores.Store(svc, st)
	t.Cleanup(func() { stores.Delete(svc) })
}

// Store returns the store of svc (see New and Track), which the test owns: tests
// set up and check directly what no protocol shows (alert schedules,
// tombstones, the outbox). It fails the test for a service New did not make.
func Store(t testing.TB, svc *bridge.Service) store.Store {
	t.Helper()
	st, ok := stores.Load(svc)
	if !ok {
		t.Fatal("testsvc.Store: the service was neither made by New nor tracked")
	}
	return st.(store.Store)
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

// Metric reads the value of a counter or gauge from svc's registry: name,
// then label name/value pairs picking one series. Missing is 0.
func Metric(t testing.TB, svc *bridge.Service, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := svc.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// Open builds a service over the store open returns (opened with the
// options bridge.New hands it: a PostgreSQL store, say), closes the store
// when the test ends and tracks it for Store.
func Open(t testing.TB, cfg *config.Config, o bridge.Options, open bridge.OpenStore) *bridge.Service {
	t.Helper()
	var st store.Store
	svc, err := bridge.New(func(so store.Options) (store.Store, error) {
		var err error
		st, err = open(so)
		return st, err
	}, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	Track(t, svc, st)
	return svc
}

// StoreState is what a source's deliveries can change: its tasks and every
// object and mail of the test users.
func StoreState(t testing.TB, svc *bridge.Service, source string) string {
	t.Helper()
	var b strings.Builder
	err := Store(t, svc).View(context.Background(), func(tx store.Tx) error {
		tasks, err := tx.TasksBySource(source, true)
		if err != nil {
			return err
		}
		for _, tk := range tasks {
			fmt.Fprintf(&b, "task %s %s %s v%d seq%d\n", tk.ID, tk.Title, tk.Status, tk.Version, tk.Seq)
		}
		for _, u := range []string{"alice", "bob"} {
			colls, err := tx.Collections(u)
			if err != nil {
				return err
			}
			for _, c := range colls {
				fmt.Fprintf(&b, "coll %s %s %d\n", u, c.Name, c.Seq)
			}
			msgs, err := tx.Messages(u, bridge.Inbox)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "mail %s %d\n", u, len(msgs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
