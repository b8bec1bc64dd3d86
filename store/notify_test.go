package store_test

import (
	"context"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// TestPostgresCrossProcessEvents: two stores on one database stand for two
// duebridge processes; a commit in one reaches the other's OnCommit, and a
// process never hears its own commits twice.
func TestPostgresCrossProcessEvents(t *testing.T) {
	b := postgresBackend(t)
	source := b.newSource(t)
	type sink struct {
		mu     sync.Mutex
		events []store.Event
	}
	open := func(s *sink) store.Store {
		st, err := store.Open(context.Background(), store.Postgres, source, store.Options{OnCommit: func(ev []store.Event) {
			s.mu.Lock()
			s.events = append(s.events, ev...)
			s.mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	var a, bSink sink
	stA, _ := open(&a), open(&bSink)
	count := func(s *sink, kind store.EventKind, user string) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		n := 0
		for _, e := range s.events {
			if e.Kind == kind && e.User == user {
				n++
			}
		}
		return n
	}
	// The listener connects asynchronously; retry the first commit until B hears one.
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; count(&bSink, store.EventMail, "alice") == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatal("process B never heard process A's commit")
		}
		err := stA.Update(context.Background(), func(tx store.Tx) error {
			if _, err := tx.EnsureMailbox("alice", "INBOX", ""); err != nil {
				return err
			}
			return tx.AppendMessage(&store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: x\r\n\r\nx")})
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A big transaction is split into several notifications, all delivered.
	err := stA.Update(context.Background(), func(tx store.Tx) error {
		for i := 0; i < 500; i++ {
			tx.Emit(store.Event{Kind: store.EventCalendar, User: "bob", Name: "a-rather-long-collection-name-to-fill-the-payload-" + string(rune('a'+i%26))})
		}
		_, err := tx.Seq()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for count(&bSink, store.EventCalendar, "bob") < 500 {
		if time.Now().After(deadline) {
			t.Fatalf("B heard %d of 500 events", count(&bSink, store.EventCalendar, "bob"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := count(&a, store.EventCalendar, "bob"); n != 500 {
		t.Fatalf("A got its own events %d times, want exactly once each (500)", n)
	}
}

// TestPostgresResyncAfterListenerReconnect: process B's LISTEN connection is
// killed, process A commits while B is not listening (that notification is
// lost), and B, once it listens again, hands its OnCommit one EventResync so
// its readers re-read and see A's commit at once.
func TestPostgresResyncAfterListenerReconnect(t *testing.T) {
	b := postgresBackend(t)
	source := b.newSource(t)
	ctx := context.Background()
	stA, stB, heard := twoProcesses(t, source, source)
	has := func(kind store.EventKind, user string) bool { return heard.has(kind, user, "") }
	appendMail := func(user, subject string) { mustAppend(t, stA, user, "INBOX", subject) }
	waitFor := func(what string, ok func() bool) { t.Helper(); waitUntil(t, what, ok) }
	// B listens once it hears A.
	waitFor("B to hear A", func() bool { appendMail("alice", "first"); return has(store.EventMail, "alice") })
	if has(store.EventResync, "") {
		t.Fatal("a resync on the first LISTEN: nothing can have been missed yet")
	}

	admin := b.raw(t, source)
	var schema string
	if err := admin.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		t.Fatal(err)
	}
	listenQuery := `LISTEN "duebridge_` + schema + `"`
	// A listens too (it has an OnCommit): end both listeners.
	if _, err := admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`, listenQuery); err != nil {
		t.Fatal(err)
	}
	waitFor("the listeners' backends to end", func() bool {
		var n int
		admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity WHERE query = $1`, listenQuery).Scan(&n)
		return n == 0
	})
	appendMail("bob", "in the gap") // B is (most likely) not listening: only the resync tells it

	waitFor("B's resync after it listens again", func() bool { return has(store.EventResync, "") })
	var n uint32
	err := stB.View(ctx, func(tx store.Tx) (err error) {
		n, err = tx.CountMessages("bob", "INBOX")
		return err
	})
	if err != nil || n != 1 {
		t.Fatalf("B re-reads bob's INBOX after the resync: %d messages, %v", n, err)
	}
}

// TestPostgresOversizedEventAnnouncedAsResync: an event too large for a
// NOTIFY payload once JSON-escaped (a mailbox name of 3,000 '<', 18,000
// bytes escaped) does not fail its commit; the other process hears an
// EventResync ("oversized") in its place and re-reads, while the events
// around it still arrive as themselves.
func TestPostgresOversizedEventAnnouncedAsResync(t *testing.T) {
	b := postgresBackend(t)
	source := b.newSource(t)
	ctx := context.Background()
	stA, _, heard := twoProcesses(t, source, source)
	find := heard.has
	appendMail := func(user, mailbox string) error {
		return stA.Update(ctx, func(tx store.Tx) error {
			if _, err := tx.EnsureMailbox(user, mailbox, ""); err != nil {
				return err
			}
			return tx.AppendMessage(&store.Message{User: user, Mailbox: mailbox, Data: []byte("Subject: x\r\n\r\nx")})
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for !find(store.EventMail, "alice", "INBOX") {
		if time.Now().After(deadline) {
			t.Fatal("process B never heard process A's commit")
		}
		if err := appendMail("alice", "INBOX"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	long := strings.Repeat("<", 3000)
	err := stA.Update(ctx, func(tx store.Tx) error {
		tx.Emit(store.Event{Kind: store.EventMail, User: "bob", Name: "before"})
		tx.Emit(store.Event{Kind: store.EventMail, User: "bob", Name: long})
		tx.Emit(store.Event{Kind: store.EventMail, User: "bob", Name: "after"})
		_, err := tx.Seq()
		return err
	})
	if err != nil {
		t.Fatalf("a commit with an event too large for NOTIFY failed: %v", err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for !find(store.EventResync, "", store.ResyncOversized) || !find(store.EventMail, "bob", "before") || !find(store.EventMail, "bob", "after") {
		if time.Now().After(deadline) {
			t.Fatal("B did not hear the resync in place of the oversized event and the events around it")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if find(store.EventMail, "bob", long) {
		t.Fatal("B heard the oversized event itself")
	}
}

// blackHole is a TCP proxy to addr whose Freeze makes every connection open
// at that moment silently swallow what either side sends, without closing
// it: a connection lost to a failover or a dropped route. Connections made
// afterwards work.
type blackHole struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen []*atomic.Bool
	conns  []net.Conn
}

func newBlackHole(t *testing.T, addr string) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &blackHole{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			frozen := new(atomic.Bool)
			h.mu.Lock()
			h.frozen = append(h.frozen, frozen)
			h.conns = append(h.conns, c, u)
			h.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if err != nil {
						dst.Close()
						return
					}
					if !frozen.Load() {
						dst.Write(buf[:n])
					}
				}
			}
			go pipe(u, c)
			go pipe(c, u)
		}
	}()
	return h
}

func (h *blackHole) Freeze() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range h.frozen {
		f.Store(true)
	}
}

// TestPostgresListenerNoticesSilentLoss: process B reaches PostgreSQL
// through a proxy that starts swallowing everything on the connections it
// holds, without closing them (no FIN, no RST: a failover or a dropped
// route). B's listener, quiet, pings its connection, finds it dead, listens
// again on a new one and resyncs, so what A committed meanwhile is seen
// without waiting for TCP keepalive's many minutes. Quiet pings on a
// healthy connection change nothing.
func TestPostgresListenerNoticesSilentLoss(t *testing.T) {
	b := postgresBackend(t)
	source := b.newSource(t)
	// Restored after the stores below are closed (cleanups run last first).
	t.Cleanup(store.SetListenPing(300*time.Millisecond, 500*time.Millisecond))
	u, err := url.Parse(source)
	if err != nil {
		t.Fatal(err)
	}
	hole := newBlackHole(t, u.Host)
	u.Host = hole.ln.Addr().String()
	stA, _, heard := twoProcesses(t, source, u.String())
	has := func(kind store.EventKind, user string) bool { return heard.has(kind, user, "") }
	appendMail := func(user string) { mustAppend(t, stA, user, "INBOX", "x") }
	waitFor := func(what string, ok func() bool) { t.Helper(); waitUntil(t, what, ok) }
	waitFor("B to hear A", func() bool { appendMail("alice"); return has(store.EventMail, "alice") })
	// Several quiet periods (pings) on a healthy connection: no resync, and
	// notifications still arrive.
	time.Sleep(time.Second)
	appendMail("carol")
	waitFor("B to hear A after quiet pings", func() bool { return has(store.EventMail, "carol") })
	if has(store.EventResync, "") {
		t.Fatal("a resync without a lost connection")
	}

	hole.Freeze()
	appendMail("bob") // swallowed on its way to B
	waitFor("B's resync after its listener's connection went silent", func() bool { return has(store.EventResync, "") })
	if has(store.EventMail, "bob") {
		t.Fatal("B heard bob's mail through a frozen connection")
	}
}

// twoProcesses opens two stores on one PostgreSQL database, as two
// replicas would (B through sourceB, which may be a proxy); B's OnCommit
// records what it hears.
func twoProcesses(t *testing.T, sourceA, sourceB string) (stA, stB store.Store, heard *eventLog) {
	t.Helper()
	heard = &eventLog{}
	stA, err := store.Open(t.Context(), store.Postgres, sourceA, store.Options{OnCommit: func([]store.Event) {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stA.Close() })
	stB, err = store.Open(t.Context(), store.Postgres, sourceB, store.Options{OnCommit: heard.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stB.Close() })
	return stA, stB, heard
}

// eventLog is what a process's OnCommit was handed.
type eventLog struct {
	mu     sync.Mutex
	events []store.Event
}

func (l *eventLog) add(ev []store.Event) {
	l.mu.Lock()
	l.events = append(l.events, ev...)
	l.mu.Unlock()
}

// has reports whether an event of kind for user (and name, unless "") was heard.
func (l *eventLog) has(kind store.EventKind, user, name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == kind && e.User == user && (name == "" || e.Name == name) {
			return true
		}
	}
	return false
}

// mustAppend appends a message to user's mailbox (made if missing) through st.
func mustAppend(t *testing.T, st store.Store, user, mailbox, subject string) {
	t.Helper()
	err := st.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.EnsureMailbox(user, mailbox, ""); err != nil {
			return err
		}
		return tx.AppendMessage(&store.Message{User: user, Mailbox: mailbox, Data: []byte("Subject: " + subject + "\r\n\r\nx")})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitUntil polls ok for up to 15 s (another process's notification).
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
