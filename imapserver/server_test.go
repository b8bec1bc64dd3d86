package imapserver_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	cfg := testsvc.Config(t)
	cfg.Limits.LoginFailureDelay = 100 * time.Millisecond
	ts := serve(t, testsvc.New(t, testsvc.Options{Config: cfg}), Options{})

	t.Run("good", func(t *testing.T) {
		c := ts.login(t, "alice", nil)
		// go-imap v2.0.0-beta.9's client ends a command's Wait before it
		// records the state the command changed (completeCommand), so
		// State right after Login can still say "not authenticated". The
		// reader goroutine has recorded it once it reads the next reply.
		if err := c.Noop().Wait(); err != nil {
			t.Fatalf("NOOP after login: %v", err)
		}
		if c.State() != imap.ConnStateAuthenticated {
			t.Errorf("state after login: %v", c.State())
		}
		caps := c.Caps()
		for _, want := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIdle, imap.CapMove, imap.CapNamespace, imap.CapUIDPlus, imap.CapSpecialUse} {
			if !caps.Has(want) {
				t.Errorf("capability %s missing after login: %v", want, caps)
			}
		}
	})
	t.Run("bad password", func(t *testing.T) {
		c := ts.dial(t, nil)
		start := time.Now()
		err := c.Login("alice", "wrong").Wait()
		var ie *imap.Error
		if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("login with a wrong password: got %v, want NO [AUTHENTICATIONFAILED]", err)
		}
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Errorf("failed login answered after %v, want the 100ms failure delay", d)
		}
		if err := c.Login("alice", testsvc.Password("alice")).Wait(); err != nil {
			t.Errorf("login after one failure: %v", err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		c := ts.dial(t, nil)
		if err := c.Login("mallory", "x").Wait(); err == nil {
			t.Fatal("unknown user logged in")
		}
	})
	t.Run("closed after three failures", func(t *testing.T) {
		c := ts.dial(t, nil)
		for i := range 3 {
			if err := c.Login("bob", "wrong").Wait(); err == nil {
				t.Fatalf("attempt %d logged in", i)
			}
		}
		select {
		case <-c.Closed():
		case <-time.After(5 * time.Second):
			t.Fatal("connection still open after three failed logins")
		}
	})
}

func TestMailboxesAndList(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	c := ts.login(t, "alice", nil)
	list, err := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range list {
		got = append(got, l.Mailbox+" "+attrs(l.Attrs))
	}
	want := []string{`INBOX \HasNoChildren`, `Trash \HasNoChildren \Trash`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("LIST: got %q, want %q", got, want)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Prefix != "" || ns.Personal[0].Delim != '/' {
		t.Errorf("NAMESPACE: %+v, %v", ns, err)
	}
	for _, cmd := range []struct {
		name string
		err  error
	}{
		{"CREATE Drafts", c.Create("Drafts", nil).Wait()},
		{"DELETE Trash", c.Delete("Trash").Wait()},
		{"RENAME", c.Rename("Trash", "Bin", nil).Wait()},
	} {
		var ie *imap.Error
		if !errors.As(cmd.err, &ie) || ie.Type != imap.StatusResponseTypeNo {
			t.Errorf("%s: got %v, want NO", cmd.name, cmd.err)
		}
	}
	if err := c.Subscribe("INBOX").Wait(); err != nil {
		t.Errorf("SUBSCRIBE INBOX: %v", err)
	}
	if _, err := c.Select("Nope", nil).Wait(); err == nil {
		t.Error("SELECT of a missing mailbox succeeded")
	}
	d := mustSelect(t, c, "inbox")
	if d.UIDValidity == 0 || d.UIDNext != 1 || d.NumMessages != 0 {
		t.Errorf("SELECT of an empty INBOX: %+v", d)
	}
}

func attrs(as []imap.MailboxAttr) string {
	var s []string
	for _, a := range as {
		s = append(s, string(a))
	}
	return strings.Join(s, " ")
}
