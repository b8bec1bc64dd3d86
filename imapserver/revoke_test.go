package imapserver_test

import (
	"context"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/duebridge/duebridge/config"
	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestCredentialChangeEndsSessions: revoking a password (an app password of
// a lost phone, say) ends that user's open IMAP sessions at once; other
// users' sessions stay.
func TestCredentialChangeEndsSessions(t *testing.T) {
	ts := newTestServer(t, Options{})
	alice := ts.login(t, "alice", nil)
	mustSelect(t, alice, "INBOX")
	bob := ts.login(t, "bob", nil)
	mustSelect(t, bob, "INBOX")

	cfg := *ts.svc.Config()
	cfg.Users = append([]config.User(nil), cfg.Users...)
	cfg.Users[0].PasswordHash = cfg.Users[1].PasswordHash // alice's password changed
	ts.svc.SetConfig(context.Background(), &cfg)

	deadline := time.Now().Add(5 * time.Second)
	for alice.Noop().Wait() == nil {
		if time.Now().After(deadline) {
			t.Fatal("alice's session survived a password change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := bob.Noop().Wait(); err != nil {
		t.Fatalf("bob's session ended too: %v", err)
	}
	// The old password no longer logs in.
	c, err := imapclient.DialInsecure(ts.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", testsvc.Password("alice")).Wait(); err == nil {
		t.Fatal("the old password still works")
	}
}
