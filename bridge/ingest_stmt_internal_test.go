package bridge

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// mailboxLookups counts the mailbox look-ups (EnsureMailbox, Mailbox) of
// the write transactions a service runs.
type mailboxLookups struct {
	store.Store
	n atomic.Int64
}

func (m *mailboxLookups) Update(ctx context.Context, fn func(store.Tx) error) error {
	return m.Store.Update(ctx, func(tx store.Tx) error { return fn(&mailboxLookupsTx{Tx: tx, n: &m.n}) })
}

type mailboxLookupsTx struct {
	store.Tx
	n *atomic.Int64
}

func (t *mailboxLookupsTx) EnsureMailbox(user, name, specialUse string) (*store.Mailbox, error) {
	t.n.Add(1)
	return t.Tx.EnsureMailbox(user, name, specialUse)
}

func (t *mailboxLookupsTx) Mailbox(user, name string) (*store.Mailbox, error) {
	t.n.Add(1)
	return t.Tx.Mailbox(user, name)
}

// TestIngestMailLooksUpNoMailbox: a new-task webhook's notification mail is
// appended to the user's INBOX without looking the mailbox up first (one
// statement fewer in the single writer's turn); the INBOX is still created
// for the user's first mail, alone or in a group.
func TestIngestMailLooksUpNoMailbox(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	var ml *mailboxLookups
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		ml = &mailboxLookups{Store: st}
		return ml
	})
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-1", "alice")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-2", "bob"), groupTask("T-3", "bob")}); err != nil {
		t.Fatal(err)
	}
	before := ml.n.Load()
	for _, id := range []string{"T-4", "T-5"} {
		if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask(id, "alice")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := ml.n.Load() - before; n != 0 {
		t.Errorf("2 new-task webhooks for a user with an INBOX looked a mailbox up %d times, want 0", n)
	}
	err := s.st.View(ctx, func(tx store.Tx) error {
		for user, want := range map[string]uint32{"alice": 3, "bob": 2} {
			n, err := tx.CountMessages(user, Inbox)
			if err != nil {
				return err
			}
			if n != want {
				t.Errorf("%s's INBOX holds %d mails, want %d", user, n, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// scheduleCalls counts, per method, the calls a service's write
// transactions make to the store methods a new task's schedule, flip
// mails and collections go through.
type scheduleCalls struct {
	store.Store
	mu    sync.Mutex
	calls map[string]int
}

func (c *scheduleCalls) note(m string) {
	c.mu.Lock()
	c.calls[m]++
	c.mu.Unlock()
}

func (c *scheduleCalls) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = map[string]int{}
	return out
}

func (c *scheduleCalls) Update(ctx context.Context, fn func(store.Tx) error) error {
	return c.Store.Update(ctx, func(tx store.Tx) error { return fn(&scheduleCallsTx{Tx: tx, c: c}) })
}

type scheduleCallsTx struct {
	store.Tx
	c *scheduleCalls
}

func (t *scheduleCallsTx) Get(key string) (string, error) {
	t.c.note("Get " + key)
	return t.Tx.Get(key)
}

func (t *scheduleCallsTx) ArmAlert(user, source, taskID string, due store.When) (bool, error) {
	t.c.note("ArmAlert")
	return t.Tx.ArmAlert(user, source, taskID, due)
}

func (t *scheduleCallsTx) ArmPlannedAlert(a *store.Alert) (bool, error) {
	t.c.note("ArmPlannedAlert")
	return t.Tx.ArmPlannedAlert(a)
}

func (t *scheduleCallsTx) Collections(user string) ([]store.Collection, error) {
	t.c.note("Collections")
	return t.Tx.Collections(user)
}

func (t *scheduleCallsTx) CollectionsNamed(user string, names []string) ([]store.Collection, error) {
	t.c.note("CollectionsNamed")
	return t.Tx.CollectionsNamed(user, names)
}

func (t *scheduleCallsTx) UpdateAlert(a *store.Alert) error {
	t.c.note("UpdateAlert")
	return t.Tx.UpdateAlert(a)
}

// TestNewTaskScheduleIsOneWrite: a new-task webhook arms and plans its
// alert schedule in one statement and reads no waiting flip mails (a task
// the transaction created cannot have one), two statements fewer in the
// single writer's turn; the schedule is the one arming and planning apart
// stored (FireAt = the first lead time), and an existing task still drops
// its waiting flip mail.
func TestNewTaskScheduleIsOneWrite(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	c.User("alice").Notify = config.NotifyBoth
	var sc *scheduleCalls
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		sc = &scheduleCalls{Store: st, calls: map[string]int{}}
		return sc
	})
	in := groupTask("T-1", "alice")
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{in}); err != nil {
		t.Fatal(err)
	}
	if got, want := sc.take(), map[string]int{"ArmPlannedAlert": 1, "CollectionsNamed": 1, "Collections": 1}; !maps.Equal(got, want) {
		t.Errorf("a new task's transaction called %v, want %v", got, want)
	}
	var next time.Time
	var due []store.Alert
	err := s.st.View(ctx, func(tx store.Tx) (err error) {
		if due, err = tx.DueAlerts(s.Now(), 10); err != nil {
			return err
		}
		next, _, err = tx.NextAlert()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := in.Due.Time.Add(-24 * time.Hour); len(due) != 0 || !next.Equal(want) {
		t.Errorf("after the ingest: %d schedules due, next FireAt %s; want none due, next %s (the 24h lead time)", len(due), next, want)
	}

	// The task exists now: a change of it reads the waiting flip mails.
	in.Title, in.Version = "Renamed", 2
	in.Assignees = []string{"alice", "bob"}
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{in}); err != nil {
		t.Fatal(err)
	}
	if got := sc.take(); got["Get "+kvFlips] != 1 {
		t.Errorf("a stored task newly assigned to bob read the waiting flip mails %d times, want 1 (calls %v)", got["Get "+kvFlips], got)
	}
}

// TestNewTaskReadsItsProjectsCollections: a webhook for a project the user
// has lists for reads those two collections, not the user's every one
// (twenty rows for ten projects, inside the single writer's turn); a new
// project still reads them all (its colour and place depend on them), and
// every task lands in its project's two collections.
func TestNewTaskReadsItsProjectsCollections(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	var sc *scheduleCalls
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		sc = &scheduleCalls{Store: st, calls: map[string]int{}}
		return sc
	})
	task := func(id, project string) TaskInput {
		in := groupTask(id, "alice")
		in.Project = project
		return in
	}
	for p := range 10 {
		if _, err := s.Ingest(ctx, "tracker", []TaskInput{task(fmt.Sprint("P", p), fmt.Sprint("Project ", p))}); err != nil {
			t.Fatal(err)
		}
	}
	sc.take()
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{task("T-1", "Project 3")}); err != nil {
		t.Fatal(err)
	}
	if got := sc.take(); got["Collections"] != 0 || got["CollectionsNamed"] != 1 {
		t.Errorf("a task of an existing project: %d full collection lists, %d reads by name; want 0 and 1", got["Collections"], got["CollectionsNamed"])
	}
	// A batch over two known projects and a new one.
	batch := []TaskInput{task("T-2", "Project 4"), task("T-3", "Project 11"), task("T-4", "Project 4")}
	if _, err := s.Ingest(ctx, "tracker", batch); err != nil {
		t.Fatal(err)
	}
	if got := sc.take(); got["Collections"] != 1 {
		t.Errorf("a batch with a new project listed the collections %d times, want 1", got["Collections"])
	}
	err := s.st.View(ctx, func(tx store.Tx) error {
		colls, err := tx.Collections("alice")
		if err != nil {
			return err
		}
		if len(colls) != 22 {
			t.Errorf("alice has %d collections, want 22 (11 projects)", len(colls))
		}
		for _, in := range append(batch, task("T-1", "Project 3")) {
			todos, events := render.CollectionNames(in.Project)
			for _, coll := range []string{todos, events} {
				if _, err := tx.Object("alice", coll, render.ObjectName("tracker", in.ID)); err != nil {
					t.Errorf("%s in %s: %v", in.ID, coll, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
