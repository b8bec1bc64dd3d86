package bridge

import (
	"bytes"
	"context"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// TestMailRenderedBesideObjectsIsTheSameMail: a single webhook's
// notification is rendered while the task's objects are written
// (startMail); what is stored is byte for byte what render.NotificationMail
// gives for the task as stored, at the transaction's time and revision,
// for a new task (assigned) and a moved due date.
func TestMailRenderedBesideObjectsIsTheSameMail(t *testing.T) {
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

// TestStartRendersOnce: a started render runs exactly once, on the helper
// goroutine or, when that has not begun, on the caller's, and the caller
// gets its result either way; in batch mode it is the render itself.
func TestStartRendersOnce(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("start renders inline with one core")
	}
	w := &writer{s: &Service{}}
	var runs atomic.Int64
	for i := range 2000 {
		want := []byte{byte(i)}
		get := w.start(func() ([][]byte, error) {
			runs.Add(1)
			return [][]byte{want}, nil
		})
		if i%2 == 1 {
			runtime.Gosched() // give the helper a chance to take it
		}
		out, err := get()
		if err != nil || len(out) != 1 || !bytes.Equal(out[0], want) {
			t.Fatalf("render %d: got %v, %v", i, out, err)
		}
	}
	// Whoever rendered did so before get returned.
	if n := runs.Load(); n != 2000 {
		t.Errorf("2000 renders ran %d times", n)
	}
	w.batch = true
	calls := 0
	get := w.start(func() ([][]byte, error) { calls++; return nil, nil })
	if calls != 0 {
		t.Error("batch mode rendered at start")
	}
	get()
	if calls != 1 {
		t.Errorf("batch mode: %d renders, want 1", calls)
	}
}
