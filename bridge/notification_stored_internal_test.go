package bridge

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// TestNotificationIsARenderOfTheStoredTask: a webhook's notification is
// byte for byte what render.NotificationMail gives for the task as stored,
// at the transaction's time and revision, for a moved due date (after the
// assignment's mail). It pins what any change to where or when the mail is
// rendered in the ingest must keep.
func TestNotificationIsARenderOfTheStoredTask(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	s := sqliteService(t, c.DataDir, c)
	in := groupTask("T-1", "alice")
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{in}); err != nil {
		t.Fatal(err)
	}
	oldDue := in.Due
	in.Due = store.When{Time: in.Due.Time.Add(24 * time.Hour)}
	in.Version = 2
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{in}); err != nil {
		t.Fatal(err)
	}
	var msgs []store.Message
	var task *store.Task
	if err := s.st.View(ctx, func(tx store.Tx) (err error) {
		if task, err = tx.Task("tracker", "T-1"); err != nil {
			return err
		}
		list, err := tx.Messages("alice", Inbox)
		if err != nil {
			return err
		}
		uids := make([]uint32, len(list))
		for i, m := range list {
			uids[i] = m.UID
		}
		msgs, err = tx.MessagesData("alice", Inbox, uids)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("alice's INBOX holds %d mails, want 2 (assigned, due changed)", len(msgs))
	}
	u := c.User("alice")
	last := msgs[1]
	want, err := render.NotificationMail(render.MailInput{Event: render.MailDueChanged, Task: task, OldDue: oldDue, User: u,
		From: c.Mail.From, Host: c.HTTP.PublicURL.Hostname(), Date: last.InternalDate, Seq: last.ModSeq,
		Urgent: render.IsUrgent(task, render.UserLocation(u), last.InternalDate)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(last.Data, want) {
		t.Errorf("due-changed mail differs from a render of the stored task:\n%s\nwant:\n%s", last.Data, want)
	}
	if !bytes.Contains(msgs[0].Data, []byte("X-Duebridge-Event: "+string(render.MailAssigned))) {
		t.Errorf("first mail is not the assignment:\n%s", msgs[0].Data)
	}
}
