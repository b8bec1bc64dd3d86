package bridge

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// run is one run of duebridge on a store: a service with the injected
// clock, started as serve starts it, until stop.
type run struct {
	s    *Service
	cs   *countingStore
	gets *getCounting
	stop func()
}

// startRun opens the configured store (SQLite in cfg.DataDir, or
// PostgreSQL) under a service with clk,
// counting its transactions and single-key reads, and runs the start-up
// re-renders serve runs before its listeners open.
func startRun(t *testing.T, cfg *config.Config, clk *fakeclock.Clock) *run {
	t.Helper()
	r := &run{gets: &getCounting{}}
	var raw store.Store
	s, err := New(func(o store.Options) (store.Store, error) {
		st, err := store.Open(context.Background(), cfg.Store, cfg.StoreSource(), o)
		if err != nil {
			return nil, err
		}
		raw, r.gets.Store = st, st
		r.cs = &countingStore{Store: r.gets}
		return r.cs, nil
	}, cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	r.stop = sync.OnceFunc(func() {
		if err := raw.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	t.Cleanup(r.stop)
	ctx := context.Background()
	if _, err := s.RerenderIfStale(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.RerenderChangedUsers(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// without is c without the named user.
func without(c *config.Config, user string) *config.Config {
	n := *c
	n.Users = slices.DeleteFunc(slices.Clone(c.Users), func(u config.User) bool { return u.Name == user })
	return &n
}

// taskObjects is the user's objects (reminder, deadline) of a tracker task,
// with their data.
func taskObjects(t *testing.T, s *Service, user, id string) []store.Object {
	t.Helper()
	var out []store.Object
	err := s.st.View(context.Background(), func(tx store.Tx) error {
		objs, err := tx.ObjectsForTaskUser("tracker", id, user, taskObjectUIDs(id))
		if err != nil {
			return err
		}
		for _, o := range objs {
			full, err := tx.Object(user, o.Collection, o.Name)
			if err != nil {
				return err
			}
			out = append(out, *full)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// triggers are the VALARM triggers of an object, in order.
func triggers(o store.Object) []string {
	var out []string
	for _, line := range strings.Split(string(o.Data), "\r\n") {
		if strings.HasPrefix(line, "TRIGGER") {
			out = append(out, line[strings.LastIndexByte(line, ':')+1:])
		}
	}
	return out
}

func storedRenderFingerprints(t *testing.T, s *Service) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := s.st.View(context.Background(), func(tx store.Tx) error {
		return tx.GetPrefix(kvRenderFP, func(k, v string) error { out[k[len(kvRenderFP):]] = v; return nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// An admin changed alice's lead times in the YAML and restarted: only a
// reload compared old and new settings, so every existing reminder kept
// the old alarms. The start now re-renders her objects from the stored
// fingerprint.
func TestRestartRerendersChangedLeadTimes(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC))
	c := groupConfig(t)
	due := clk.Now().Add(48 * time.Hour)
	first := startRun(t, c, clk)
	if _, err := first.s.Ingest(ctx, "tracker", []TaskInput{{ID: "T-1", Title: "Report", Assignees: []string{"alice", "bob"}, Due: store.When{Time: due}}}); err != nil {
		t.Fatal(err)
	}
	stamp := func(lead time.Duration) string { return due.Add(-lead).UTC().Format("20060102T150405Z") }
	for _, o := range taskObjects(t, first.s, "alice", "T-1") {
		if strings.HasPrefix(o.UID, "task-") && !slices.Equal(triggers(o), []string{stamp(24 * time.Hour), stamp(time.Hour)}) {
			t.Fatalf("first run: alice's reminder has triggers %v, want the default lead times' 24h and 1h", triggers(o))
		}
	}
	bobBefore := taskObjects(t, first.s, "bob", "T-1")
	first.stop()

	clk.Advance(time.Hour)
	second := startRun(t, withLeadTimes(c, "alice", 3*time.Hour), clk)
	objs := taskObjects(t, second.s, "alice", "T-1")
	reminders := 0
	for _, o := range objs {
		got := triggers(o)
		if strings.HasPrefix(o.UID, "task-") {
			reminders++
			if !slices.Equal(got, []string{stamp(3 * time.Hour)}) {
				t.Errorf("after a restart with alice's lead time 3h, her reminder has triggers %v, want [%s]", got, stamp(3*time.Hour))
			}
		} else if len(got) > 0 && !slices.Equal(got, []string{stamp(3 * time.Hour)}) {
			t.Errorf("after a restart with alice's lead time 3h, her %s has triggers %v, want [%s]", o.UID, got, stamp(3*time.Hour))
		}
	}
	if reminders != 1 {
		t.Fatalf("alice has %d reminders of T-1, want 1", reminders)
	}
	// bob's settings did not change: his objects were not written.
	for i, o := range taskObjects(t, second.s, "bob", "T-1") {
		if i >= len(bobBefore) || o.Seq != bobBefore[i].Seq {
			t.Errorf("bob's %s rewritten by a restart that changed only alice", o.UID)
		}
	}
}

// A user added to the YAML while duebridge was stopped never got objects
// for the tasks that already named him; the start now walks the sources'
// tasks for him.
func TestRestartRendersUserAddedWhileStopped(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC))
	c := groupConfig(t)
	first := startRun(t, without(c, "bob"), clk)
	if _, err := first.s.Ingest(ctx, "tracker", []TaskInput{{ID: "T-1", Title: "Report", Assignees: []string{"alice", "bob"},
		Due: store.When{Time: clk.Now().Add(48 * time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	first.stop()

	second := startRun(t, c, clk)
	var kinds []string
	for _, o := range taskObjects(t, second.s, "bob", "T-1") {
		kinds = append(kinds, strings.SplitN(o.UID, "-", 2)[0])
	}
	slices.Sort(kinds)
	if !slices.Equal(kinds, []string{"deadline", "task"}) {
		t.Errorf("bob, added while stopped, has %v objects of T-1, want its deadline and task", kinds)
	}

	// Removed while stopped, the task reassigned to him meanwhile, added
	// back: his fingerprint was cleared, so he is new to the store again.
	second.stop()
	third := startRun(t, without(c, "bob"), clk)
	if _, err := third.s.Ingest(ctx, "tracker", []TaskInput{{ID: "T-2", Title: "Review", Assignees: []string{"bob"},
		Due: store.When{Time: clk.Now().Add(72 * time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
	third.stop()
	fourth := startRun(t, c, clk)
	if got := len(taskObjects(t, fourth.s, "bob", "T-2")); got != 2 {
		t.Errorf("bob, removed and added back while stopped, has %d objects of T-2 (assigned while he was away), want 2", got)
	}
}

// Upgrade rule: the first start of a version keeping fingerprints, on a
// store whose objects an older version made, records the fingerprints and
// re-renders nothing.
func TestRenderFingerprintsUpgrade(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(time.Now()) // seedTasks' dates are relative to time.Now
	c := groupConfig(t)
	for i := range 1200 {
		name := fmt.Sprintf("u%04d", i)
		c.Users = append(c.Users, config.User{Name: name, Email: name + "@example.com", Notify: config.NotifyAlarms, Location: time.UTC})
	}
	// The older version: objects, its render version, no fingerprints.
	older := sqliteService(t, c.DataDir, c)
	seedTasks(t, older, "T", 50, func(i int) []string { return []string{"alice", "bob", fmt.Sprintf("u%04d", i)} })
	if err := older.st.Update(ctx, func(tx store.Tx) error { return tx.Set(renderVersionKey, render.Version) }); err != nil {
		t.Fatal(err)
	}
	seq := maxSeq(t, older)

	r := startRun(t, c, clk)
	if got, want := r.cs.updates.Load(), int64(len(c.Users)/replanBatch+1); got != want {
		t.Errorf("first start after the upgrade opened %d write transactions, want %d (the fingerprints' batches alone)", got, want)
	}
	if got := maxSeq(t, r.s); got != seq {
		t.Errorf("first start after the upgrade wrote objects (revision %d -> %d), want none", seq, got)
	}
	got := storedRenderFingerprints(t, r.s)
	fps := renderFingerprints(c)
	for i, u := range c.Users {
		if got[u.Name] != fps[i] {
			t.Fatalf("after the upgrade %s's fingerprint is %q, want %q", u.Name, got[u.Name], fps[i])
		}
	}
}

// A restart that changed nothing re-renders nothing: it writes no object
// and no fingerprint, and reads every user's fingerprint in one statement
// (not one read per user), whatever the number of users.
func TestUnchangedRestartRerendersNothing(t *testing.T) {
	ctx := context.Background()
	clk := fakeclock.New(time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC))
	c := groupConfig(t)
	for i := range 1200 {
		name := fmt.Sprintf("u%04d", i)
		c.Users = append(c.Users, config.User{Name: name, Email: name + "@example.com", Notify: config.NotifyAlarms, Location: time.UTC})
	}
	first := startRun(t, c, clk)
	var in []TaskInput
	for i := range 50 {
		in = append(in, TaskInput{ID: fmt.Sprintf("T-%d", i), Title: "Task", Assignees: []string{"alice", fmt.Sprintf("u%04d", i)},
			Due: store.When{Time: clk.Now().Add(48 * time.Hour)}})
	}
	if _, err := first.s.Ingest(ctx, "tracker", in); err != nil {
		t.Fatal(err)
	}
	seq := maxSeq(t, first.s)
	first.stop()

	clk.Advance(time.Hour)
	reloaded := *c // an equal config, as a restart loads it again
	second := startRun(t, &reloaded, clk)
	updates, reads, views, gets := second.cs.updates.Load(), second.cs.reads.Load(), second.cs.views.Load(), second.gets.n.Load()
	if updates != 0 {
		t.Errorf("an unchanged restart opened %d write transactions, want none", updates)
	}
	if got := maxSeq(t, second.s); got != seq {
		t.Errorf("an unchanged restart wrote objects (revision %d -> %d)", seq, got)
	}
	// RerenderIfStale's read of the render version, and the fingerprints'
	// one statement.
	if reads != 1 {
		t.Errorf("an unchanged restart with %d users read the fingerprints in %d statements, want 1", len(c.Users), reads)
	}
	if views != 2 || gets != 1 {
		t.Errorf("an unchanged restart: %d reads of the store and %d single-key reads, want 2 and 1 (the render version)", views, gets)
	}
}

// The fingerprint changes with exactly what renderSame compares: adding a
// source without lead times of its own, or reordering sources, changes
// nobody's; notify, time zone and lead times (the user's, the default, a
// source's own) do.
func TestRenderFingerprint(t *testing.T) {
	c := groupConfig(t)
	base := renderFingerprints(c)[0]
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip(err)
	}
	for _, tc := range []struct {
		name string
		edit func(c *config.Config)
		same bool
	}{
		{"unchanged", func(*config.Config) {}, true},
		{"a source without lead times added first", func(c *config.Config) {
			c.Sources = append([]config.Source{{Name: "aaa", Kind: "generic"}}, c.Sources...)
		}, true},
		{"another user's lead times", func(c *config.Config) { c.Users[1].LeadTimes = []time.Duration{time.Hour} }, true},
		{"notify", func(c *config.Config) { c.Users[0].Notify = config.NotifyMail }, false},
		{"time zone", func(c *config.Config) { c.Users[0].Location = berlin }, false},
		{"own lead times", func(c *config.Config) { c.Users[0].LeadTimes = []time.Duration{time.Hour} }, false},
		{"default lead times", func(c *config.Config) { c.Notifications.LeadTimes = []time.Duration{time.Hour} }, false},
		{"a source's lead times", func(c *config.Config) { c.Sources[0].LeadTimes = []time.Duration{time.Hour} }, false},
	} {
		n := *c
		n.Users, n.Sources = slices.Clone(c.Users), slices.Clone(c.Sources)
		tc.edit(&n)
		if got := renderFingerprints(&n)[0]; (got == base) != tc.same {
			t.Errorf("%s: fingerprint %s, before %s; want same=%v", tc.name, got, base, tc.same)
		}
		if got := renderSame(c, &n, &c.Users[0], &n.Users[0]); got != tc.same {
			t.Errorf("%s: renderSame = %v, want %v", tc.name, got, tc.same)
		}
	}
}

// BenchmarkUnchangedStartFingerprints is what a start that changed nothing
// costs with 100,000 users: the fingerprints' one read and the comparison.
func BenchmarkUnchangedStartFingerprints(b *testing.B) {
	ctx := context.Background()
	c := groupConfig(b)
	for i := range 100000 {
		name := fmt.Sprintf("u%06d", i)
		c.Users = append(c.Users, config.User{Name: name, Email: name + "@example.com", Notify: config.NotifyAlarms, Location: time.UTC})
	}
	s := sqliteService(b, c.DataDir, c)
	if err := s.RerenderChangedUsers(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.RerenderChangedUsers(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
