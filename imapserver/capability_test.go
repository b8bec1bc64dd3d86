package imapserver_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/duebridge/duebridge/bridge"
	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// TestIDAdvertisedAndMessagesUntouched: ID is in the capability list before
// and at login, and the rewrite never touches message data after login (a
// task about IMAP can mention the very words the rewrite looks for).
func TestIDAdvertisedAndMessagesUntouched(t *testing.T) {
	ts := newTestServer(t, Options{})
	in := task("CAP-1", "Fix CAPABILITY IMAP4rev1 parsing", "alice")
	in.Description = "The server says * CAPABILITY IMAP4rev1 AUTH=PLAIN and nothing else."
	testsvc.Ingest(t, ts.svc, in)

	c := ts.dial(t, nil)
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.Cap("ID")) {
		t.Fatalf("ID not advertised before login: %v", caps)
	}
	if err := c.Login("alice", testsvc.Password("alice")).Wait(); err != nil {
		t.Fatal(err)
	}
	if !c.Caps().Has(imap.Cap("ID")) {
		t.Errorf("ID not in the login answer's capabilities: %v", c.Caps())
	}
	mustSelect(t, c, "INBOX")
	msgs, err := c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("fetch: %v (%d messages)", err, len(msgs))
	}
	var stored []byte
	testsvc.Store(t, ts.svc).View(context.Background(), func(tx store.Tx) error {
		m, err := tx.MessageData("alice", bridge.Inbox, 1)
		if err == nil {
			stored = m.Data
		}
		return err
	})
	var got []byte
	for _, b := range msgs[0].BodySection {
		got = b.Bytes
	}
	if !bytes.Equal(got, stored) || !bytes.Contains(stored, []byte("CAPABILITY IMAP4rev1")) {
		t.Fatalf("message bytes changed on the wire (%d vs %d bytes)", len(got), len(stored))
	}
}
