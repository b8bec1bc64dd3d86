package bridge_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// The IMAP backend's writes decide on what is committed, not on what a
// session last saw: EXPUNGE removes only messages still \Deleted, and a
// refused login or a missing mailbox comes back as imapserver's errors.
func TestIMAPBackend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	svc := testsvc.New(t, testsvc.Options{})
	now := time.Now().UTC()
	for _, id := range []string{"T-1", "T-2"} {
		testsvc.Ingest(t, svc, bridge.TaskInput{ID: id, Title: id, Project: "Release", Assignees: []string{"alice"},
			UpdatedAt: now, Version: 1})
	}
	b := svc.IMAP()

	if _, err := b.Authenticate(ctx, "alice", "wrong", "127.0.0.1:1"); !errors.Is(err, imapserver.ErrBadCredentials) {
		t.Errorf("wrong password: %v, want ErrBadCredentials", err)
	}
	user, err := b.Authenticate(ctx, "alice", testsvc.Password("alice"), "127.0.0.1:1")
	if err != nil || user != "alice" {
		t.Fatalf("Authenticate = %q, %v", user, err)
	}
	if err := b.EnsureMailboxes(ctx, "alice", []imapserver.MailboxSpec{{Name: imapserver.Inbox}, {Name: imapserver.Trash, SpecialUse: `\Trash`}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Status(ctx, "alice", "Nope"); !errors.Is(err, imapserver.ErrNoMailbox) {
		t.Errorf("Status of a missing mailbox: %v, want ErrNoMailbox", err)
	}
	if _, err := b.Copy(ctx, "alice", imapserver.Inbox, "Nope", []uint32{1}, false); !errors.Is(err, imapserver.ErrNoMailbox) {
		t.Errorf("Copy to a missing mailbox: %v, want ErrNoMailbox", err)
	}

	// Message 1 is \Deleted, message 2 is not: asking to expunge both
	// removes only 1.
	if _, err := b.StoreFlags(ctx, "alice", imapserver.Inbox, []uint32{1}, imapserver.FlagsAdd, []string{`\deleted`}); err != nil {
		t.Fatal(err)
	}
	gone, err := b.Expunge(ctx, "alice", imapserver.Inbox, []uint32{1, 2})
	if err != nil || !slices.Equal(gone, []uint32{1}) {
		t.Fatalf("Expunge = %v, %v; want [1]", gone, err)
	}
	ch, err := b.Changes(ctx, "alice", imapserver.Inbox, imapserver.View{MailboxModSeq: -1})
	if err != nil || len(ch.Messages) != 1 || ch.Messages[0].UID != 2 {
		t.Fatalf("after EXPUNGE: %+v, %v; want message 2 only", ch, err)
	}
	st, err := b.Status(ctx, "alice", imapserver.Inbox)
	if err != nil || st.Messages != 1 || st.UIDNext != 3 {
		t.Errorf("Status = %+v, %v; want 1 message, UIDNEXT 3", st, err)
	}

	res, err := b.Copy(ctx, "alice", imapserver.Inbox, imapserver.Trash, []uint32{2, 7}, true)
	if err != nil || !slices.Equal(res.Source, []uint32{2}) || !slices.Equal(res.Dest, []uint32{1}) || res.UIDValidity == 0 {
		t.Fatalf("Move = %+v, %v; want 2 -> 1", res, err)
	}
	body, err := b.Bodies(ctx, "alice", imapserver.Trash, []uint32{1})
	if err != nil || len(body[1]) == 0 {
		t.Errorf("Bodies after the move: %d bytes, %v", len(body[1]), err)
	}
}
