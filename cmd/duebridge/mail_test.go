package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/smtp"
	"net/textproto"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
)

// The whole program: a signed webhook makes a notification that an IMAP
// client idling on INBOX hears of at once; the submission listener accepts
// the same login and refuses to send.
func TestServeMailEndToEnd(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "alice")
	appendConfig(t, path, "submission:\n  listen: 127.0.0.1:0\n")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, serveOptions{
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready:  func(a Addrs, _ *bridge.Service) { ready <- a },
		})
	}()
	var a Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatalf("serve ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve not ready")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	if a.IMAP == nil || a.Submission == nil || a.IMAPTLS != nil {
		t.Fatalf("addresses: %+v", a)
	}

	exists := make(chan uint32, 10)
	c, err := imapclient.DialInsecure(a.IMAP.String(), &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "alice-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postTask(t, "http://"+a.HTTP.String(), []byte(`{"id":"T-1","title":"Ship it","assignees":["alice"],"due":"`+inDays(30)+`"}`)); code != 200 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	select {
	case n := <-exists:
		if n != 1 {
			t.Errorf("EXISTS %d", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXISTS after the webhook")
	}
	idle.Close()
	idle.Wait()
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "Assigned to you: Ship it" {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}

	s, err := smtp.Dial(a.Submission.String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Auth(smtp.PlainAuth("", "alice", "alice-pw", "127.0.0.1")); err != nil {
		t.Fatalf("submission AUTH: %v", err)
	}
	var te *textproto.Error
	if err := s.Mail("alice@example.com"); !errors.As(err, &te) || te.Code != 550 {
		t.Errorf("MAIL FROM: %v, want 550", err)
	}
}

// inDays is an RFC 3339 due time n days from now, so a test's task is never
// overdue whatever the day it runs.
func inDays(n int) string {
	return time.Now().UTC().AddDate(0, 0, n).Truncate(time.Hour).Format(time.RFC3339)
}
