package bridge

import (
	"context"
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
