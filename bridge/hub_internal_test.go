package bridge

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/store"
)

// A resync (the PostgreSQL listener reconnected, so other processes'
// events may be lost) reaches every subscriber whatever its user and kind
// filter, marks it lagged, and the IMAP backend turns it into one
// EventLagged, on which the server refreshes every open mailbox.
func TestHubResyncReachesEverySubscriber(t *testing.T) {
	svc := deviceService(t, t.TempDir(), nil)
	hub := svc.hub
	mail := hub.Subscribe("alice", store.EventMail)
	defer mail.Close()
	outbox := hub.Subscribe("", store.EventOutbox)
	defer outbox.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	imapEvents := svc.IMAP().Subscribe(ctx)

	hub.Publish([]store.Event{{Kind: store.EventResync}})
	for name, sub := range map[string]interface {
		Lagged() bool
	}{"alice's mail": mail, "the outbox": outbox} {
		if !sub.Lagged() {
			t.Errorf("%s subscription is not marked lagged after a resync", name)
		}
	}
	for _, c := range []<-chan store.Event{mail.C, outbox.C} {
		select {
		case e := <-c:
			if e.Kind != store.EventResync {
				t.Errorf("got %+v, want the resync", e)
			}
		default:
			t.Error("a subscriber was not woken by the resync")
		}
	}
	select {
	case e := <-imapEvents:
		if e.Kind != imapserver.EventLagged {
			t.Errorf("IMAP backend sent %+v, want EventLagged", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("IMAP backend sent nothing for a resync")
	}
	select {
	case e := <-imapEvents:
		t.Errorf("IMAP backend sent a second event %+v for one resync", e)
	case <-time.After(50 * time.Millisecond):
	}
}

// TestHubRoutesByUserAndKind: an event reaches the subscribers of its user
// and those of every user, each filtered by kind, in commit order; a closed
// subscription gets nothing.
func TestHubRoutesByUserAndKind(t *testing.T) {
	h := newHub()
	aliceMail := h.Subscribe("alice", store.EventMail)
	aliceAll := h.Subscribe("alice", "")
	bob := h.Subscribe("bob", "")
	everyMail := h.Subscribe("", store.EventMail)
	everything := h.Subscribe("", "")
	closed := h.Subscribe("alice", "")
	closed.Close()
	h.Publish([]store.Event{
		{Kind: store.EventMail, User: "alice", Name: "1"},
		{Kind: store.EventCalendar, User: "alice", Name: "2"},
		{Kind: store.EventMail, User: "carol", Name: "3"},
		{Kind: store.EventOutbox, Name: "4"},
		{Kind: store.EventMail, User: "alice", Name: "5"},
	})
	drain := func(s *subscription) string {
		var got string
		for {
			select {
			case e := <-s.C:
				got += e.Name
			default:
				return got
			}
		}
	}
	for name, c := range map[string]struct {
		s    *subscription
		want string
	}{
		"alice's mail": {aliceMail, "15"}, "alice's all": {aliceAll, "125"}, "bob's": {bob, ""},
		"every user's mail": {everyMail, "135"}, "everything": {everything, "12345"}, "closed": {closed, ""},
	} {
		if got := drain(c.s); got != c.want {
			t.Errorf("%s subscription got events %q, want %q", name, got, c.want)
		}
	}
}

// BenchmarkHubPublish is one webhook's events (mail and two lists of one
// user) published while 100,000 sessions of other users idle: the
// committing writer waits for it.
func BenchmarkHubPublish(b *testing.B) {
	h := newHub()
	for i := range 100_000 {
		defer h.Subscribe(fmt.Sprintf("user%06d", i), "").Close()
	}
	mine := h.Subscribe("alice", "")
	defer mine.Close()
	events := []store.Event{
		{Kind: store.EventMail, User: "alice", Name: "INBOX"},
		{Kind: store.EventCalendar, User: "alice", Name: "todos"},
		{Kind: store.EventCalendar, User: "alice", Name: "deadlines"},
	}
	for b.Loop() {
		h.Publish(events)
		for range len(events) {
			<-mine.C
		}
	}
}
