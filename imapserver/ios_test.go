package imapserver_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestIOSSequence drives iOS Mail's command sequence (IOS.md §9.1) with
// go-imap's client: ID around LOGIN, NAMESPACE and LIST pipelined, SELECT,
// the UID FETCH of a message list and of a first part, UID SEARCH, STORE,
// delete by MOVE to Trash, EXPUNGE, IDLE.
func TestIOSSequence(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{Version: "9.9"})
	testsvc.Ingest(t, ts.svc, task("T-1", "Ship release 2.1", "alice"))
	in := task("T-2", "Rotate keys", "alice")
	in.Priority = "urgent"
	testsvc.Ingest(t, ts.svc, in)

	u := newUpdates()
	c := ts.dial(t, u.options())
	if _, err := c.Capability().Wait(); err != nil {
		t.Fatal(err)
	}
	id, err := c.ID(&imap.IDData{Name: "com.apple.email.maild", Version: "3818.100.11.2.3", OS: "iOS", OSVersion: "18.0", Vendor: "Apple Inc"}).Wait()
	if err != nil {
		t.Fatalf("pre-auth ID: %v", err)
	}
	if id.Name != "duebridge" || id.Version != "9.9" {
		t.Errorf("ID answer: %+v", id)
	}
	if err := c.Login("alice", "alice-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ID(&imap.IDData{Name: "iPhone Mail", Version: "22C161", OS: "iOS"}).Wait(); err != nil {
		t.Fatalf("ID after login: %v", err)
	}

	// Pipelined: both commands are written before either answer is read.
	nsCmd := c.Namespace()
	listCmd := c.List("", "*", &imap.ListOptions{ReturnSpecialUse: true})
	if _, err := nsCmd.Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := listCmd.Collect()
	if err != nil {
		t.Fatal(err)
	}
	trash := ""
	for _, l := range list {
		if slices.Contains(l.Attrs, imap.MailboxAttrTrash) {
			trash = l.Mailbox
		}
	}
	if trash != "Trash" {
		t.Fatalf("no \\Trash mailbox in LIST: %+v", list)
	}

	sel := mustSelect(t, c, "INBOX")
	if sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity == 0 {
		t.Fatalf("SELECT INBOX: %+v", sel)
	}
	systemFlags := []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}
	if !slices.Equal(sel.Flags, systemFlags) {
		t.Errorf("FLAGS: %v, want %v", sel.Flags, systemFlags)
	}

	headerFields := []string{"Date", "Subject", "From", "To", "Message-ID", "In-Reply-To", "References", "Content-Type", "X-Priority", "Importance"}
	hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: headerFields, Peek: true}
	msgs, err := c.Fetch(imap.UIDSetNum(1, 2), &imap.FetchOptions{
		UID: true, Flags: true, Envelope: true, RFC822Size: true, InternalDate: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{hdr},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("UID FETCH 1:2 returned %d messages", len(msgs))
	}
	m1, m2 := msgs[0], msgs[1]
	if m1.UID != 1 || m1.Envelope.Subject != "Assigned to you: Ship release 2.1" || len(m1.Envelope.InReplyTo) != 1 {
		t.Errorf("message 1: UID %d, envelope %+v", m1.UID, m1.Envelope)
	}
	if !slices.Contains(m2.Flags, imap.FlagFlagged) || !strings.HasPrefix(m2.Envelope.Subject, "[URGENT]") {
		t.Errorf("urgent message: flags %v, subject %q", m2.Flags, m2.Envelope.Subject)
	}
	mp, ok := m1.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
		t.Fatalf("BODYSTRUCTURE: %#v", m1.BodyStructure)
	}
	header := m1.FindBodySection(hdr)
	for _, want := range []string{"Subject: Assigned to you: Ship release 2.1", "In-Reply-To: <task-tracker-T-1@", "Message-Id: <task-tracker-T-1."} {
		if !bytes.Contains(header, []byte(want)) {
			t.Errorf("header fields lack %q:\n%s", want, header)
		}
	}
	if bytes.Contains(header, []byte("X-Duebridge-Event")) {
		t.Errorf("header fields include an unrequested field:\n%s", header)
	}

	part1 := &imap.FetchItemBodySection{Part: []int{1}, Peek: true, Partial: &imap.SectionPartial{Offset: 0, Size: 393216}}
	msgs, err = c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{part1}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("UID FETCH BODY.PEEK[1]<0.393216>: %v, %d messages", err, len(msgs))
	}
	if b := msgs[0].FindBodySection(part1); !bytes.Contains(b, []byte("text/plain")) || !bytes.Contains(b, []byte("text/html")) {
		t.Errorf("part 1 is not the text/HTML alternative:\n%s", b)
	}

	search, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || !slices.Equal(search.AllUIDs(), []imap.UID{1, 2}) {
		t.Fatalf("UID SEARCH UNSEEN: %v, %v", search, err)
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	search, err = c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait()
	if err != nil || !slices.Equal(search.AllUIDs(), []imap.UID{2}) {
		t.Fatalf("UID SEARCH UNSEEN after STORE: %v, %v", search.AllUIDs(), err)
	}

	// Delete the way iOS does with a Trash: UID MOVE.
	moved, err := c.Move(imap.UIDSetNum(1), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if moved.UIDValidity == 0 || moved.DestUIDs.String() != "1" {
		t.Errorf("COPYUID: %+v", moved)
	}
	u.wait(t, "EXPUNGE of the moved message", func(u *updates) bool { return slices.Equal(u.expunge, []uint32{1}) })

	// Delete in place: \Deleted + EXPUNGE.
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	expunged, err := c.Expunge().Collect()
	if err != nil || !slices.Equal(expunged, []uint32{1}) {
		t.Fatalf("EXPUNGE: %v, %v", expunged, err)
	}

	// IDLE, a new notification, DONE.
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Ingest(t, ts.svc, task("T-3", "Write notes", "alice"))
	u.wait(t, "EXISTS during IDLE", func(u *updates) bool { return slices.Contains(u.exists, 1) })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err = c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].UID != 3 || !strings.Contains(msgs[0].Envelope.Subject, "Write notes") {
		t.Fatalf("FETCH after IDLE: %v %v", fmtMsgs(msgs), err)
	}

	// The moved message is in Trash, flags kept.
	tc := ts.login(t, "alice", nil)
	mustSelect(t, tc, "Trash")
	msgs, err = tc.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) || msgs[0].Envelope.Subject != "Assigned to you: Ship release 2.1" {
		t.Fatalf("Trash: %v %v", fmtMsgs(msgs), err)
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
}

func fmtMsgs(msgs []*imapclient.FetchMessageBuffer) string {
	var s []string
	for _, m := range msgs {
		subj := ""
		if m.Envelope != nil {
			subj = m.Envelope.Subject
		}
		s = append(s, fmt.Sprintf("{seq %d uid %d flags %v %q}", m.SeqNum, m.UID, m.Flags, subj))
	}
	return strings.Join(s, " ")
}
