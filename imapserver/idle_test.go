package imapserver_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// A session idling on INBOX hears of a notification the webhook path
// stored, as soon as the transaction has committed.
func TestIdleReceivesIngestedMail(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	u := newUpdates()
	c := ts.login(t, "alice", u.options())
	mustSelect(t, c, "INBOX")
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"T-1", "T-2", "T-3"} {
		start := time.Now()
		testsvc.Ingest(t, ts.svc, task(id, "Task "+id, "alice"))
		n := uint32(i + 1)
		u.wait(t, "EXISTS", func(u *updates) bool { return slices.Contains(u.exists, n) })
		t.Logf("EXISTS %d after %v", n, time.Since(start))
	}
	// A batch of two in one transaction: both announced, counts in order.
	testsvc.Ingest(t, ts.svc, task("T-4", "Four", "alice"), task("T-5", "Five", "alice"))
	u.wait(t, "EXISTS 5", func(u *updates) bool { return slices.Contains(u.exists, 5) })
	if !slices.IsSorted(u.exists) {
		t.Errorf("EXISTS went down: %v", u.exists)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	idle.Wait()
}

// An update queued after DONE's OK and before the next IDLE is announced as
// soon as that IDLE starts, not with the next change.
func TestIdleAnnouncesUpdateQueuedBetweenDoneAndIdle(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	rc.send("1 LOGIN alice alice-pw", "2 SELECT INBOX")
	rc.expect(`^2 OK \[READ-WRITE\]`)
	rc.send("3 IDLE")
	rc.next(`^\+ idling`)
	rc.send("DONE")
	rc.next(`^3 OK IDLE completed`)

	testsvc.Ingest(t, ts.svc, task("T-1", "Between", "alice"))
	// Wait until the server has queued it for this session (the refresh
	// runs after the commit, on the event loop).
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ts.srv.OpenMessages("alice", Inbox) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new message never reached the mailbox state")
		}
		time.Sleep(time.Millisecond)
	}
	rc.send("4 IDLE")
	rc.next(`^\+ idling`)
	rc.next(`^\* 1 EXISTS$`)
	rc.send("DONE")
	rc.next(`^4 OK IDLE completed`)
}

// Two sessions of one user see each other's flag changes and expunges; the
// session that made a change is not told twice.
func TestSessionsSeeEachOthersChanges(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "One", "alice"), task("T-2", "Two", "alice"), task("T-3", "Three", "alice"))

	ua, ub := newUpdates(), newUpdates()
	a := ts.login(t, "alice", ua.options())
	b := ts.login(t, "alice", ub.options())
	mustSelect(t, a, "INBOX")
	mustSelect(t, b, "INBOX")

	idle, err := a.Idle()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged, imap.FlagSeen}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	ua.wait(t, "FETCH FLAGS of message 2", func(u *updates) bool {
		return slices.Contains(u.fetch, `2 2 [\Flagged \Seen]`)
	})
	if err := b.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	ua.wait(t, "EXPUNGE 1", func(u *updates) bool { return slices.Contains(u.expunge, 1) })
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	idle.Wait()

	// Not idling: the changes come with the next command.
	if err := a.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{imap.FlagAnswered}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	ub.wait(t, "FETCH FLAGS of UID 3 on NOOP", func(u *updates) bool {
		return slices.ContainsFunc(u.fetch, func(s string) bool { return strings.HasSuffix(s, ` 3 [\Answered]`) })
	})

	// Sequence numbers agree afterwards.
	ma, err := a.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if fmtMsgs(ma) != fmtMsgs(mb) || len(ma) != 2 || ma[0].UID != 2 || ma[1].UID != 3 {
		t.Errorf("the sessions disagree:\na: %s\nb: %s", fmtMsgs(ma), fmtMsgs(mb))
	}
	// b made the flag change on UID 2 silently and must not have been told
	// about it as if someone else had.
	ub.mu.Lock()
	defer ub.mu.Unlock()
	if slices.ContainsFunc(ub.fetch, func(s string) bool { return strings.HasSuffix(s, ` 2 [\Flagged \Seen]`) }) {
		t.Errorf("the session that stored the flags got them echoed: %q", ub.fetch)
	}
}

// One user never sees another's mail: not in their INBOX, not by name, not
// while idling.
func TestUserIsolation(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "Secret for alice", "alice"))

	ub := newUpdates()
	b := ts.login(t, "bob", ub.options())
	if d := mustSelect(t, b, "INBOX"); d.NumMessages != 0 {
		t.Fatalf("bob's INBOX has %d messages", d.NumMessages)
	}
	for _, name := range []string{"alice/INBOX", "../alice/INBOX", "alice"} {
		if _, err := b.Select(name, nil).Wait(); err == nil {
			t.Errorf("bob selected %q", name)
		}
		mustSelect(t, b, "INBOX")
	}
	list, err := b.List("", "*", nil).Collect()
	if err != nil || len(list) != 2 {
		t.Errorf("bob's LIST: %+v %v", list, err)
	}
	idle, err := b.Idle()
	if err != nil {
		t.Fatal(err)
	}
	testsvc.Ingest(t, ts.svc, task("T-2", "Also for alice", "alice"))
	testsvc.Ingest(t, ts.svc, task("T-3", "For bob", "bob"))
	ub.wait(t, "bob's own mail", func(u *updates) bool { return slices.Contains(u.exists, 1) })
	idle.Close()
	idle.Wait()
	msgs, err := b.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "Assigned to you: For bob" {
		t.Errorf("bob's messages: %s %v", fmtMsgs(msgs), err)
	}
	if ub.exists[len(ub.exists)-1] != 1 {
		t.Errorf("bob was told of %v messages", ub.exists)
	}
	search, err := b.UIDSearch(&imap.SearchCriteria{Text: []string{"alice"}}, nil).Wait()
	if err != nil || len(search.AllUIDs()) != 0 {
		t.Errorf("bob's search for alice: %v %v", search.AllUIDs(), err)
	}
}
