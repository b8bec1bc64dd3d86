package store_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// testMailboxChanges: MailboxChanges answers in one Read what Mailbox,
// ChangedMessages and CountMessages answer in a View, for a view before
// and after appends, a flag change and an expunge, on an empty mailbox and
// one still at the view's MODSEQ; a missing mailbox is ErrNotFound.
func testMailboxChanges(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		_, err := tx.EnsureMailbox("alice", "INBOX", "")
		return err
	})
	// want is what the three statements of a View answer.
	want := func(mboxSince, msgSince int64) (*store.Mailbox, []store.Message, uint32) {
		var (
			mb    *store.Mailbox
			msgs  []store.Message
			count uint32
		)
		e.view(func(tx store.Tx) (err error) {
			if mb, err = tx.Mailbox("alice", "INBOX"); err != nil || mb.ModSeq == mboxSince {
				return err
			}
			if msgs, err = tx.ChangedMessages("alice", "INBOX", msgSince); err != nil {
				return err
			}
			count, err = tx.CountMessages("alice", "INBOX")
			return err
		})
		return mb, msgs, count
	}
	compare := func(what string, mboxSince, msgSince int64) {
		t.Helper()
		var (
			mb    *store.Mailbox
			msgs  []store.Message
			count uint32
		)
		err := e.s.Read(t.Context(), func(tx store.Tx) (err error) {
			mb, msgs, count, err = tx.MailboxChanges("alice", "INBOX", mboxSince, msgSince)
			return err
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		wmb, wmsgs, wcount := want(mboxSince, msgSince)
		for i := range msgs {
			msgs[i].InternalDate = msgs[i].InternalDate.UTC()
		}
		for i := range wmsgs {
			wmsgs[i].InternalDate = wmsgs[i].InternalDate.UTC()
		}
		if !reflect.DeepEqual(mb, wmb) || !reflect.DeepEqual(msgs, wmsgs) || count != wcount {
			t.Errorf("%s: MailboxChanges = %+v, %+v, %d; the View's reads = %+v, %+v, %d", what, mb, msgs, count, wmb, wmsgs, wcount)
		}
	}
	compare("empty mailbox, nothing known", -1, 0)
	compare("empty mailbox, unchanged", 0, 0)

	var uids []uint32
	for range 5 {
		e.update(func(tx store.Tx) error {
			m := &store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: x\r\n\r\nbody\r\n"), Flags: []string{`\Flagged`}}
			uids = append(uids, 0)
			err := tx.AppendMessage(m)
			uids[len(uids)-1] = m.UID
			return err
		})
	}
	mb := e.mailbox("alice", "INBOX")
	compare("five mails, nothing known", -1, 0)
	compare("unchanged since the view", mb.ModSeq, mb.ModSeq)
	compare("the last two new", mb.ModSeq-2, mb.ModSeq-2)

	e.update(func(tx store.Tx) error {
		_, err := tx.SetFlags("alice", "INBOX", uids[1:2], []string{`\Seen`, `\Answered`})
		return err
	})
	compare("one flag change", mb.ModSeq, mb.ModSeq)
	e.update(func(tx store.Tx) error { return tx.Expunge("alice", "INBOX", uids[:2]) })
	compare("after an expunge", mb.ModSeq, mb.ModSeq)
	compare("after an expunge, nothing known", -1, 0)

	err := e.s.Read(t.Context(), func(tx store.Tx) error {
		_, _, _, err := tx.MailboxChanges("alice", "Nope", -1, 0)
		return err
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a missing mailbox: %v, want ErrNotFound", err)
	}
}
