package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// smallResyncBatches makes re-render batches of n tasks for one test (the
// package variables are shared: these tests do not run in parallel).
func smallResyncBatches(t *testing.T, n int, between func()) {
	t.Helper()
	oldN, oldHook := resyncBatch, resyncBetweenBatches
	resyncBatch, resyncBetweenBatches = n, between
	t.Cleanup(func() { resyncBatch, resyncBetweenBatches = oldN, oldHook })
}

// seedTasks ingests n tasks of the tracker source, due in two days, each
// assigned to the users given by assign(i).
func seedTasks(t *testing.T, s *Service, prefix string, n int, assign func(i int) []string) {
	t.Helper()
	due := store.When{Time: time.Now().Add(48 * time.Hour).Truncate(time.Second)}
	var in []TaskInput
	for i := range n {
		in = append(in, TaskInput{ID: fmt.Sprintf("%s-%04d", prefix, i), Title: "Task", Project: fmt.Sprintf("p%d", i%3),
			Assignees: assign(i), Due: due})
		if len(in) == 100 || i == n-1 {
			if _, err := s.Ingest(context.Background(), "tracker", in); err != nil {
				t.Fatal(err)
			}
			in = nil
		}
	}
}

// objectState is every object of the store (tombstones too) with the
// revision that last wrote it.
func objectState(t *testing.T, s *Service) map[string]store.Object {
	t.Helper()
	out := map[string]store.Object{}
	err := s.st.View(context.Background(), func(tx store.Tx) error {
		for i := range s.Config().Users {
			user := s.Config().Users[i].Name
			colls, err := tx.Collections(user)
			if err != nil {
				return err
			}
			for _, c := range colls {
				objs, err := tx.Changes(user, c.Name, 0)
				if err != nil {
					return err
				}
				for _, o := range objs {
					out[user+"/"+c.Name+"/"+o.Name] = o
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rewrittenPerTransaction groups the objects written after revision since
// by the transaction (revision) that wrote them, counting distinct tasks.
func rewrittenPerTransaction(t *testing.T, s *Service, since int64) map[int64]int {
	t.Helper()
	tasks := map[int64]map[string]bool{}
	for _, o := range objectState(t, s) {
		if o.Seq > since && o.Source != "" {
			if tasks[o.Seq] == nil {
				tasks[o.Seq] = map[string]bool{}
			}
			tasks[o.Seq][o.Source+"/"+o.TaskID] = true
		}
	}
	out := map[int64]int{}
	for seq, ts := range tasks {
		out[seq] = len(ts)
	}
	return out
}

func maxSeq(t *testing.T, s *Service) int64 {
	t.Helper()
	var m int64
	for _, o := range objectState(t, s) {
		m = max(m, o.Seq)
	}
	return m
}

// withLeadTimes is c with user's own lead times set (a rendering input:
// the reminders' alarms change).
func withLeadTimes(c *config.Config, user string, lead ...time.Duration) *config.Config {
	n := *c
	n.Users = slices.Clone(c.Users)
	for i := range n.Users {
		if n.Users[i].Name == user {
			n.Users[i].LeadTimes = lead
		}
	}
	return &n
}

// Re-rendering after a reload or a rendering-rules upgrade ran in one
// write transaction per source, holding the store's single writer for
// minutes at a million tasks. It now runs resyncBatch tasks to a write
// transaction, on both paths: the walk over every source's tasks
// (rendering rules changed) and the walk over a changed user's own
// objects (a reload changed one user's lead times).
func TestResyncInBatches(t *testing.T) {
	const n, batch = 400, 25
	for _, tc := range []struct {
		name   string
		resync func(ctx context.Context, s *Service, c *config.Config) error
	}{
		{"rendering rules changed", func(ctx context.Context, s *Service, c *config.Config) error {
			// The new lead times are in place as if the store's objects
			// were rendered by other rules.
			s.cfg.Store(withLeadTimes(c, "alice", 2*time.Hour))
			if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.Set(renderVersionKey, "old") }); err != nil {
				return err
			}
			did, err := s.RerenderIfStale(ctx)
			if err == nil && !did {
				err = errors.New("RerenderIfStale did nothing")
			}
			return err
		}},
		{"a reload changed one user's lead times", func(ctx context.Context, s *Service, c *config.Config) error {
			s.SetConfig(ctx, withLeadTimes(c, "alice", 2*time.Hour))
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := groupConfig(t)
			s, cs, _ := countedService(t, c)
			seedTasks(t, s, "T", n, func(int) []string { return []string{"alice", "bob"} })
			smallResyncBatches(t, batch, nil)
			since := maxSeq(t, s)
			before := cs.updates.Load()
			if err := tc.resync(ctx, s, c); err != nil {
				t.Fatal(err)
			}
			// Each batch and a few more (the test's own write, the
			// version's record, the last, empty page).
			if updates := cs.updates.Load() - before; updates > n/batch+5 {
				t.Errorf("re-rendering %d tasks in batches of %d took %d write transactions, want at most %d", n, batch, updates, n/batch+5)
			}
			per := rewrittenPerTransaction(t, s, since)
			if len(per) < n/batch {
				t.Errorf("%d tasks re-rendered by %d write transactions, want at least %d", n, len(per), n/batch)
			}
			total := 0
			for seq, k := range per {
				total += k
				if k > batch {
					t.Errorf("transaction %d re-rendered %d tasks, want at most %d", seq, k, batch)
				}
			}
			if total != n {
				t.Errorf("%d tasks re-rendered, want all %d of alice's", total, n)
			}
			if got := metricValue(t, s, "duebridge_rerendered_tasks_total"); got < n {
				t.Errorf("duebridge_rerendered_tasks_total = %v, want at least %d", got, n)
			}
		})
	}
}

// Between two batches the single writer is free: a webhook's ingest run
// from the hook between the first two batches commits while the re-render
// is still under way, and its task is rendered with the new config.
func TestResyncLetsOtherWritersIn(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	s, _, _ := countedService(t, c)
	seedTasks(t, s, "T", 300, func(int) []string { return []string{"alice"} })
	calls, ingestedAt := 0, 0
	var ingestErr error
	smallResyncBatches(t, 50, func() {
		calls++
		if calls == 1 {
			// On the caller's goroutine: if the re-render held the
			// writer, this would wait for it forever.
			_, ingestErr = s.Ingest(ctx, "tracker", []TaskInput{{ID: "NEW", Title: "New", Assignees: []string{"alice"},
				Due: store.When{Time: time.Now().Add(48 * time.Hour).Truncate(time.Second)}}})
			ingestedAt = calls
		}
	})
	s.SetConfig(ctx, withLeadTimes(c, "alice", 2*time.Hour))
	if ingestErr != nil {
		t.Fatalf("ingest between two batches: %v", ingestErr)
	}
	if ingestedAt == 0 || calls <= ingestedAt {
		t.Fatalf("the ingest ran after batch %d of a re-render with %d pauses; want it between two batches", ingestedAt, calls)
	}
	// The new task's reminder has the reloaded lead time's alarm (2h),
	// like every other task's.
	err := s.st.View(ctx, func(tx store.Tx) error {
		for _, id := range []string{"NEW", "T-0000", "T-0299"} {
			objs, err := tx.ObjectsForTaskUser("tracker", id, "alice", taskObjectUIDs(id))
			if err != nil {
				return err
			}
			found := false
			for _, o := range objs {
				if strings.HasPrefix(o.UID, "task-") {
					found = true
					full, err := tx.Object("alice", o.Collection, o.Name)
					if err != nil {
						return err
					}
					if !strings.Contains(string(full.Data), "BEGIN:VALARM") || strings.Count(string(full.Data), "BEGIN:VALARM") != 1 {
						t.Errorf("%s: want the one 2h alarm of the reloaded config:\n%s", id, full.Data)
					}
				}
			}
			if !found {
				t.Errorf("%s: no reminder", id)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A re-render stops between batches when its context ends, with the
// error; RerenderIfStale then leaves the render version alone, so the
// next start re-renders again.
func TestResyncStopsBetweenBatches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := groupConfig(t)
	s, cs, _ := countedService(t, c)
	seedTasks(t, s, "T", 200, func(int) []string { return []string{"alice"} })
	if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.Set(renderVersionKey, "old") }); err != nil {
		t.Fatal(err)
	}
	smallResyncBatches(t, 20, cancel)
	before := cs.updates.Load()
	did, err := s.RerenderIfStale(ctx)
	if !errors.Is(err, context.Canceled) || did {
		t.Fatalf("RerenderIfStale cancelled after the first batch = %v, %v; want context.Canceled", did, err)
	}
	if got := cs.updates.Load() - before; got != 1 {
		t.Errorf("%d write transactions after a cancel in the first pause, want the one batch", got)
	}
	var v string
	err = s.st.View(context.Background(), func(tx store.Tx) (err error) { v, err = tx.Get(renderVersionKey); return err })
	if err != nil || v != "old" {
		t.Fatalf("render version after a stopped re-render = %q, %v; want the old one kept", v, err)
	}
	// The next start finishes it.
	smallResyncBatches(t, 20, nil)
	if did, err := s.RerenderIfStale(context.Background()); err != nil || !did {
		t.Fatalf("next start: RerenderIfStale = %v, %v", did, err)
	}
}

// What a reload's batched re-render leaves is what one transaction over
// every task leaves: after it, a re-render of everything in a single
// batch writes no object. The world has lists of three projects, tasks
// with and without a due date, a done, a cancelled, a hidden and a
// deleted task, tasks of several assignees, and a user added by the
// reload whose tasks were waiting for him; the changed user's tasks are
// found through her objects, the added user's by the walk over the
// sources, and the unchanged user's are not re-rendered.
func TestBatchedResyncEqualsOneTransaction(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	s, _, _ := countedService(t, c)
	seedTasks(t, s, "A", 60, func(i int) []string {
		switch i % 4 {
		case 0:
			return []string{"alice"}
		case 1:
			return []string{"alice", "bob"}
		case 2:
			return []string{"bob", "dave"}
		}
		return []string{"alice", "dave", "carol"}
	})
	soon := time.Now().Add(72 * time.Hour).Truncate(time.Second)
	later := time.Now().Add(time.Minute)
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{
		{ID: "nodue", Title: "No due date", Project: "p1", Assignees: []string{"alice"}},
		{ID: "done", Title: "Done", Project: "p2", Assignees: []string{"alice", "dave"}, Status: "done", Due: store.When{Time: soon}},
		{ID: "cancelled", Title: "Cancelled", Assignees: []string{"alice"}, Status: "cancelled", Due: store.When{Time: soon}},
		{ID: "allday", Title: "All day", Assignees: []string{"alice"}, Due: store.When{Time: soon.Truncate(24 * time.Hour), AllDay: true}},
		{ID: "A-0004", Title: "Gone", Assignees: []string{"alice"}, Deleted: true, UpdatedAt: later},
	}); err != nil {
		t.Fatal(err)
	}
	var hidden store.Object
	err := s.st.View(ctx, func(tx store.Tx) error {
		objs, err := tx.ObjectsForTaskUser("tracker", "A-0008", "alice", taskObjectUIDs("A-0008"))
		for _, o := range objs {
			if strings.HasPrefix(o.UID, "task-") {
				hidden = o
			}
		}
		return err
	})
	if err != nil || hidden.Name == "" {
		t.Fatalf("A-0008's reminder: %+v, %v", hidden, err)
	}
	if out, err := s.phoneDelete(ctx, "alice", hidden.Collection, hidden.Name, calendar.Conditions{}); err != nil || out != "hidden" {
		t.Fatalf("hide A-0008: %q, %v", out, err)
	}

	smallResyncBatches(t, 7, nil)
	before := objectState(t, s)
	reloaded := withLeadTimes(c, "alice", 3*time.Hour, 30*time.Minute)
	reloaded.Users = append(reloaded.Users, config.User{Name: "dave", Email: "dave@example.com", Notify: config.NotifyAlarms, Location: time.UTC})
	rendered := metricValue(t, s, "duebridge_rerendered_tasks_total")
	s.SetConfig(ctx, reloaded)
	after := objectState(t, s)
	aliceChanged, daveNew := 0, 0
	for k, o := range after {
		b, had := before[k]
		switch {
		case strings.HasPrefix(k, "alice/") && had && b.ETag != o.ETag:
			aliceChanged++
		case strings.HasPrefix(k, "dave/") && !had && !o.Deleted:
			daveNew++
		case !strings.HasPrefix(k, "alice/") && !strings.HasPrefix(k, "dave/") && (!had || b.Seq != o.Seq):
			t.Errorf("%s rewritten by a reload that changed nothing of its user", k)
		}
	}
	// alice sees 43 of the 60 (one hidden, one deleted), plus nodue, done
	// and allday; the reminders with an open due date (43 and allday)
	// carry her alarms, and change. Deadline events carry none.
	if aliceChanged != 44 {
		t.Errorf("%d of alice's objects re-rendered to new bytes, want 44", aliceChanged)
	}
	// dave: the 30 of the 60 that name him and done, a reminder and a
	// deadline event each.
	if daveNew != 2*31 {
		t.Errorf("%d objects made for dave, want %d", daveNew, 2*31)
	}
	// alice's 46 tasks she sees (found through her reminders) and dave's
	// 31: bob's and carol's are not rendered at all.
	if got := metricValue(t, s, "duebridge_rerendered_tasks_total") - rendered; got != 46+31 {
		t.Errorf("the reload re-rendered %v (task, user) pairs, want 77", got)
	}

	// The same config re-rendered in one transaction changes nothing.
	smallResyncBatches(t, 1<<20, nil)
	seq := maxSeq(t, s)
	if err := s.Resync(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := maxSeq(t, s); got != seq {
		for k, o := range objectState(t, s) {
			if o.Seq > seq {
				t.Errorf("%s rewritten by a one-transaction re-render after the batched one", k)
			}
		}
	}
}

// taskObjectUIDs are the UIDs of a tracker task's reminder and deadline.
func taskObjectUIDs(id string) []string {
	return []string{"task-tracker-" + id + "@duebridge", "deadline-tracker-" + id + "@duebridge"}
}

// metricValue sums the samples of a metric of the service's registry.
func metricValue(t *testing.T, s *Service, name string) float64 {
	t.Helper()
	mfs, err := s.metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
		}
	}
	return sum
}
