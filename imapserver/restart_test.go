package imapserver_test

import (
	"net"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// Flags, expunges and moves persist, UIDVALIDITY stays and UIDs only grow
// across a restart (server and store closed, the store reopened).
func TestStateSurvivesRestart(t *testing.T) {
	t.Parallel()
	cfg := testsvc.Config(t)
	r := openReopenable(t, cfg)

	srv := New(r.svc.IMAP(), Options{Logger: testLogger(t)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	ts := &testServer{srv: srv, svc: r.svc, addr: ln.Addr().String()}
	testsvc.Ingest(t, r.svc, task("T-1", "One", "alice"), task("T-2", "Two", "alice"), task("T-3", "Three", "alice"))

	c := ts.login(t, "alice", nil)
	before := mustSelect(t, c, "INBOX")
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen, imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Move(imap.UIDSetNum(3), "Trash").Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	srv.Close()
	r.close(t)

	r.open(t)
	ts = serve(t, r.svc, Options{})
	testsvc.Ingest(t, r.svc, task("T-4", "Four", "alice"))
	c = ts.login(t, "alice", nil)
	after := mustSelect(t, c, "INBOX")
	if after.UIDValidity != before.UIDValidity {
		t.Errorf("UIDVALIDITY changed across the restart: %d, then %d", before.UIDValidity, after.UIDValidity)
	}
	if after.NumMessages != 2 || after.UIDNext != 5 {
		t.Errorf("after restart: %d messages, UIDNEXT %d; want 2, 5", after.NumMessages, after.UIDNext)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("FETCH: %v %v", fmtMsgs(msgs), err)
	}
	if msgs[0].UID != 1 || !slices.Equal(msgs[0].Flags, []imap.Flag{imap.FlagFlagged, imap.FlagSeen}) {
		t.Errorf("UID 1 after restart: %s", fmtMsgs(msgs[:1]))
	}
	if msgs[1].UID != 4 || len(msgs[1].Flags) != 0 {
		t.Errorf("new message after restart: %s", fmtMsgs(msgs[1:]))
	}
	trash := mustSelect(t, c, "Trash")
	if trash.NumMessages != 1 {
		t.Errorf("Trash after restart: %d messages", trash.NumMessages)
	}
}
