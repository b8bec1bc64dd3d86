package bridge

import (
	"context"
	"sync/atomic"
	"testing"

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
