package bridge

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/store"
)

// readsAndViews counts the read-only store calls a service makes.
type readsAndViews struct {
	store.Store
	reads, views atomic.Int64
}

func (r *readsAndViews) Read(ctx context.Context, fn func(store.Tx) error) error {
	r.reads.Add(1)
	return r.Store.Read(ctx, fn)
}

func (r *readsAndViews) View(ctx context.Context, fn func(store.Tx) error) error {
	r.views.Add(1)
	return r.Store.View(ctx, fn)
}

// TestPushRefreshIsOneRead: the IMAP refresh after a new mail (each
// webhook's push, once per open mailbox) is one statement outside a
// transaction, not a View of three; an expunge, whose UID list must come
// from the same snapshot as the changes, and a first load still read in
// one View. The
// answers are the ones the View gives (imapserver's tests cover what
// sessions see).
func TestPushRefreshIsOneRead(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	var rv *readsAndViews
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		rv = &readsAndViews{Store: st}
		return rv
	})
	b := s.IMAP()
	for _, id := range []string{"T-1", "T-2"} {
		if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask(id, "alice")}); err != nil {
			t.Fatal(err)
		}
	}
	rv.reads.Store(0)
	rv.views.Store(0)
	first, err := b.Changes(ctx, "alice", Inbox, imapserver.View{MailboxModSeq: -1})
	if err != nil {
		t.Fatal(err)
	}
	// A first load lists every message: a View, as before (one SELECT
	// would repeat the mailbox's columns on every row).
	if r, v := rv.reads.Load(), rv.views.Load(); r != 0 || v != 1 {
		t.Errorf("a first load: %d Reads and %d Views, want 0 and 1", r, v)
	}
	if len(first.Messages) != 2 {
		t.Fatalf("a fresh view: %d messages, want 2", len(first.Messages))
	}
	view := imapserver.View{MailboxModSeq: first.Mailbox.ModSeq, MessageModSeq: first.Mailbox.ModSeq,
		Count: 2, LastUID: first.Messages[1].UID}
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-3", "alice")}); err != nil {
		t.Fatal(err)
	}

	rv.reads.Store(0)
	rv.views.Store(0)
	ch, err := b.Changes(ctx, "alice", Inbox, view)
	if err != nil {
		t.Fatal(err)
	}
	if r, v := rv.reads.Load(), rv.views.Load(); r != 1 || v != 0 {
		t.Errorf("the refresh after a new mail: %d Reads and %d Views, want 1 and 0", r, v)
	}
	if len(ch.Messages) != 1 || ch.Messages[0].UID != first.Messages[1].UID+1 || ch.Listed {
		t.Errorf("the refresh after a new mail: %+v, want the one new message, not listed", ch)
	}

	// An unchanged mailbox: the mailbox row, nothing else.
	same := imapserver.View{MailboxModSeq: ch.Mailbox.ModSeq, MessageModSeq: ch.Mailbox.ModSeq, Count: 3, LastUID: ch.Messages[0].UID}
	if ch, err := b.Changes(ctx, "alice", Inbox, same); err != nil || ch.Messages != nil || ch.Listed {
		t.Errorf("an unchanged mailbox: %+v, %v; want no messages", ch, err)
	}

	// An expunge: the count differs, so the UIDs are listed, in one View.
	gone := []uint32{first.Messages[0].UID}
	if _, err := b.StoreFlags(ctx, "alice", Inbox, gone, imapserver.FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge(ctx, "alice", Inbox, gone); err != nil {
		t.Fatal(err)
	}
	rv.reads.Store(0)
	rv.views.Store(0)
	ch, err = b.Changes(ctx, "alice", Inbox, same)
	if err != nil {
		t.Fatal(err)
	}
	if !ch.Listed || len(ch.UIDs) != 2 || ch.UIDs[0] != first.Messages[1].UID {
		t.Errorf("after an expunge: listed %v, UIDs %v; want the two left", ch.Listed, ch.UIDs)
	}
	if v := rv.views.Load(); v != 1 {
		t.Errorf("the refresh after an expunge: %d Views, want 1", v)
	}
}
