package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

type retentionWorld struct {
	t     *testing.T
	clock *fakeclock.Clock
	svc   *bridge.Service
}

func newRetentionWorld(t *testing.T, edit func(*config.Config)) *retentionWorld {
	cfg := testsvc.Config(t)
	if edit != nil {
		edit(cfg)
	}
	w := &retentionWorld{t: t, clock: fakeclock.New(t0)}
	w.svc = testsvc.New(t, testsvc.Options{Config: cfg, Clock: w.clock, Service: bridge.Options{RetentionBatch: 3}})
	return w
}

func (w *retentionWorld) run() bridge.Removed {
	w.t.Helper()
	got, err := w.svc.RetentionPass(context.Background())
	if err != nil {
		w.t.Fatalf("retention at %s: %v", w.clock.Now(), err)
	}
	return got
}

func (w *retentionWorld) count(user, mailbox string) uint32 {
	w.t.Helper()
	var n uint32
	if err := testsvc.Store(w.t, w.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		n, err = tx.CountMessages(user, mailbox)
		return err
	}); err != nil {
		w.t.Fatal(err)
	}
	return n
}

func (w *retentionWorld) metric(kind string) float64 {
	w.t.Helper()
	mfs, err := w.svc.Registry().Gather()
	if err != nil {
		w.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "duebridge_retention_removed_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	w.t.Fatalf("no duebridge_retention_removed_total{kind=%q}", kind)
	return 0
}

// TestRetentionInbox: INBOX mails leave after retention.mail_days, in
// batches, with an EXPUNGE bookkeeping (MODSEQ) like IMAP's own; the
// mailbox's UIDs are not reused.
func TestRetentionInbox(t *testing.T) {
	t.Parallel()
	w := newRetentionWorld(t, func(c *config.Config) { c.Retention.MailDays = 10 })
	for i := range 7 { // 7 mails, batches of 3: three transactions
		testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-" + string(rune('a'+i)), Title: "task", Assignees: []string{"alice"}, UpdatedAt: w.clock.Now()})
	}
	w.clock.Advance(5 * 24 * time.Hour)
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-new", Title: "newer", Assignees: []string{"alice"}, UpdatedAt: w.clock.Now()})
	if n := w.count("alice", bridge.Inbox); n != 8 {
		t.Fatalf("INBOX has %d mails, want 8", n)
	}
	var before *store.Mailbox
	testsvc.Store(t, w.svc).View(context.Background(), func(tx store.Tx) error { before, _ = tx.Mailbox("alice", bridge.Inbox); return nil })

	if got := w.run(); len(got) != 0 {
		t.Errorf("day 5: removed %v", got)
	}
	w.clock.Advance(5*24*time.Hour + time.Minute) // the first 7 are 10 days and a minute old
	if got := w.run(); got[bridge.RetainInbox] != 7 {
		t.Errorf("day 10: removed %v, want 7 inbox", got)
	}
	if n := w.count("alice", bridge.Inbox); n != 1 {
		t.Errorf("INBOX has %d mails after retention, want 1", n)
	}
	if m := w.metric(bridge.RetainInbox); m != 7 {
		t.Errorf("metric inbox = %v", m)
	}
	var after *store.Mailbox
	testsvc.Store(t, w.svc).View(context.Background(), func(tx store.Tx) error { after, _ = tx.Mailbox("alice", bridge.Inbox); return nil })
	if after.ModSeq <= before.ModSeq || after.UIDNext != before.UIDNext || after.UIDValidity != before.UIDValidity {
		t.Errorf("mailbox before %+v after %+v: MODSEQ must rise, UIDNEXT and UIDVALIDITY stay", before, after)
	}
}

// TestRetentionOff: 0 keeps everything for ever.
func TestRetentionOff(t *testing.T) {
	t.Parallel()
	w := newRetentionWorld(t, func(c *config.Config) { c.Retention = config.Retention{} })
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-1", Title: "task", Assignees: []string{"alice"}, UpdatedAt: w.clock.Now()})
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-1", Deleted: true, UpdatedAt: w.clock.Now()})
	w.clock.Advance(20 * 365 * 24 * time.Hour)
	if got := w.run(); len(got) != 0 {
		t.Errorf("retention off removed %v", got)
	}
	if n := w.count("alice", bridge.Inbox); n == 0 {
		t.Error("INBOX emptied with retention off")
	}
}

// TestRetentionTrash counts from when a mail entered Trash, not from its
// arrival: a year-old mail moved to Trash today stays trash_days.
func TestRetentionTrash(t *testing.T) {
	t.Parallel()
	w := newRetentionWorld(t, func(c *config.Config) { c.Retention.MailDays = 0; c.Retention.TrashDays = 30 })
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-1", Title: "task", Assignees: []string{"alice"}, UpdatedAt: w.clock.Now()})
	w.clock.Advance(365 * 24 * time.Hour)
	w.run() // a pass before the move: nothing in Trash yet
	ctx := context.Background()
	err := testsvc.Store(t, w.svc).Update(ctx, func(tx store.Tx) error {
		if _, err := tx.EnsureMailbox("alice", "Trash", store.TrashUse); err != nil {
			return err
		}
		uids, err := tx.MessageUIDs("alice", bridge.Inbox)
		if err != nil {
			return err
		}
		_, _, err = tx.CopyMessages("alice", bridge.Inbox, "Trash", uids, true)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(time.Hour)
	if got := w.run(); len(got) != 0 || w.count("alice", "Trash") != 1 {
		t.Fatalf("just moved: removed %v, Trash has %d", got, w.count("alice", "Trash"))
	}
	w.clock.Advance(29 * 24 * time.Hour)
	if got := w.run(); len(got) != 0 {
		t.Errorf("29 days in Trash: removed %v", got)
	}
	w.clock.Advance(24*time.Hour + time.Minute)
	if got := w.run(); got[bridge.RetainTrash] != 1 || w.count("alice", "Trash") != 0 {
		t.Errorf("30 days in Trash: removed %v, Trash has %d", got, w.count("alice", "Trash"))
	}
	if m := w.metric(bridge.RetainTrash); m != 1 {
		t.Errorf("metric trash = %v", m)
	}
}

// TestRetentionTombstones: deleted objects and tasks are forgotten after
// tombstone_days, and sync tokens from before the newest forgotten
// tombstone become unanswerable (MinSeq), so phones resync in full.
func TestRetentionTombstones(t *testing.T) {
	t.Parallel()
	w := newRetentionWorld(t, func(c *config.Config) { c.Retention.MailDays = 0; c.Retention.TombstoneDays = 400 })
	ctx := context.Background()
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-1", Title: "gone soon", Assignees: []string{"alice"}, UpdatedAt: w.clock.Now()})
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-2", Title: "stays", Assignees: []string{"alice"}, UpdatedAt: w.clock.Now()})
	w.clock.Advance(time.Hour)
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-1", Deleted: true, UpdatedAt: w.clock.Now()})
	var tombs []store.Object
	var colls []store.Collection
	testsvc.Store(t, w.svc).View(ctx, func(tx store.Tx) error {
		colls, _ = tx.Collections("alice")
		for _, c := range colls {
			ch, _ := tx.Changes("alice", c.Name, 0)
			for _, o := range ch {
				if o.Deleted {
					tombs = append(tombs, o)
				}
			}
		}
		return nil
	})
	if len(tombs) == 0 {
		t.Fatal("deleting T-1 left no tombstone")
	}
	w.clock.Advance(399 * 24 * time.Hour)
	if got := w.run(); len(got) != 0 {
		t.Errorf("399 days: removed %v", got)
	}
	w.clock.Advance(24*time.Hour + time.Minute)
	got := w.run()
	if got[bridge.RetainObjectTombstone] != len(tombs) || got[bridge.RetainTaskTombstone] != 1 {
		t.Errorf("400 days: removed %v, want %d object tombstones and 1 task", got, len(tombs))
	}
	testsvc.Store(t, w.svc).View(ctx, func(tx store.Tx) error {
		if _, err := tx.Task("tracker", "T-1"); err == nil {
			t.Error("deleted task T-1 still stored")
		}
		if _, err := tx.Task("tracker", "T-2"); err != nil {
			t.Errorf("live task T-2: %v", err)
		}
		for _, tb := range tombs {
			c, err := tx.Collection("alice", tb.Collection)
			if err != nil {
				t.Fatal(err)
			}
			if c.MinSeq < tb.Seq {
				t.Errorf("collection %s MinSeq %d below the pruned tombstone's revision %d: old tokens would miss the deletion", c.Name, c.MinSeq, tb.Seq)
			}
			ch, _ := tx.Changes("alice", tb.Collection, 0)
			for _, o := range ch {
				if o.Deleted {
					t.Errorf("tombstone %s kept", o.Name)
				}
			}
		}
		return nil
	})
}

// TestRetentionRunsOnTheClock: Run makes a pass at start and then every
// Interval of the injected clock.
func TestRetentionRunsOnTheClock(t *testing.T) {
	t.Parallel()
	w := newRetentionWorld(t, func(c *config.Config) { c.Retention.MailDays = 1 })
	testsvc.Ingest(t, w.svc, bridge.TaskInput{ID: "T-1", Title: "task", Assignees: []string{"alice"}, UpdatedAt: w.clock.Now()})
	runWorker(t, w.svc)
	if !w.clock.WaitForTimers(runTimers, 5*time.Second) {
		t.Fatal("Run armed no timer")
	}
	w.clock.Advance(25 * time.Hour) // past the mail's age and the interval
	// Advance fired the timer; Run re-arms it only after the pass, so an
	// armed timer means the pass is over. No polling, no sleeps.
	if !w.clock.WaitForTimers(runTimers, 5*time.Second) {
		t.Fatal("Run did not re-arm after the interval's pass")
	}
	if n := w.count("alice", bridge.Inbox); n != 0 {
		t.Fatalf("%d mails left after the interval's pass; want the day-old one expunged", n)
	}
}
