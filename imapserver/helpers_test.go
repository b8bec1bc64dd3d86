package imapserver_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// testServer is a real server on 127.0.0.1:0 over a real service.
type testServer struct {
	srv  *Server
	svc  *bridge.Service
	addr string
}

// serve starts a server for svc; t.Cleanup closes it.
func serve(t testing.TB, svc *bridge.Service, opts Options) *testServer {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	srv := New(svc.IMAP(), opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &testServer{srv: srv, svc: svc, addr: ln.Addr().String()}
}

// newTestServer is serve on a fresh testsvc service.
func newTestServer(t testing.TB, opts Options) *testServer {
	t.Helper()
	return serve(t, testsvc.New(t, testsvc.Options{}), opts)
}

// testLogger discards logs unless DUEBRIDGE_TEST_LOG is set.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("DUEBRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// dial connects a go-imap client; t.Cleanup closes it.
func (ts *testServer) dial(t testing.TB, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(ts.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login dials and logs user in.
func (ts *testServer) login(t testing.TB, user string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c := ts.dial(t, opts)
	if err := c.Login(user, testsvc.Password(user)).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// task is a minimal task assigned to users.
func task(id, title string, users ...string) bridge.TaskInput {
	return bridge.TaskInput{
		ID: id, Title: title, Assignees: users, Project: "Release",
		URL:       "https://tracker.example.com/" + id,
		Due:       store.When{Time: time.Now().UTC().Add(14 * 24 * time.Hour).Truncate(time.Hour)},
		UpdatedAt: time.Now().UTC(),
	}
}

// mustSelect selects a mailbox.
func mustSelect(t testing.TB, c *imapclient.Client, name string) *imap.SelectData {
	t.Helper()
	d, err := c.Select(name, nil).Wait()
	if err != nil {
		t.Fatalf("SELECT %s: %v", name, err)
	}
	return d
}

// updates collects unilateral data a client receives.
type updates struct {
	mu      sync.Mutex
	exists  []uint32
	expunge []uint32
	fetch   []string // "seq uid flags"
	ch      chan struct{}
}

func newUpdates() *updates { return &updates{ch: make(chan struct{}, 1000)} }

func (u *updates) options() *imapclient.Options {
	return &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				u.mu.Lock()
				u.exists = append(u.exists, *d.NumMessages)
				u.mu.Unlock()
				u.ch <- struct{}{}
			}
		},
		Expunge: func(seq uint32) {
			u.mu.Lock()
			u.expunge = append(u.expunge, seq)
			u.mu.Unlock()
			u.ch <- struct{}{}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.fetch = append(u.fetch, fmt.Sprintf("%d %d %v", buf.SeqNum, buf.UID, buf.Flags))
			u.mu.Unlock()
			u.ch <- struct{}{}
		},
	}}
}

// wait waits until cond holds (checked after every update) or fails.
func (u *updates) wait(t testing.TB, what string, cond func(u *updates) bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		u.mu.Lock()
		ok := cond(u)
		u.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-u.ch:
		case <-deadline:
			u.mu.Lock()
			defer u.mu.Unlock()
			t.Fatalf("timed out waiting for %s; exists=%v expunge=%v fetch=%q", what, u.exists, u.expunge, u.fetch)
		}
	}
}

// rawConn is a raw IMAP connection for exact transcripts.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex
}

func (ts *testServer) raw(t testing.TB) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

// send writes s as one packet (CRLF added after every line).
func (rc *rawConn) send(lines ...string) {
	rc.t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l + "\r\n")
	}
	if _, err := io.WriteString(rc.c, b.String()); err != nil {
		rc.t.Fatalf("send %q: %v", lines, err)
	}
}

// line reads one line (without CRLF), failing after timeout.
func (rc *rawConn) line(timeout time.Duration) (string, error) {
	rc.c.SetReadDeadline(time.Now().Add(timeout))
	s, err := rc.r.ReadString('\n')
	return strings.TrimRight(s, "\r\n"), err
}

// expect reads lines until one matches re, failing on a tagged NO/BAD/BYE
// that is not the match, or on timeout. It returns the matching line.
func (rc *rawConn) expect(re string) string {
	rc.t.Helper()
	rx := regexp.MustCompile(re)
	for {
		l, err := rc.line(5 * time.Second)
		if err != nil {
			rc.t.Fatalf("waiting for %q: %v", re, err)
		}
		if rx.MatchString(l) {
			return l
		}
	}
}

// next reads the very next line and checks it against re.
func (rc *rawConn) next(re string) string {
	rc.t.Helper()
	l, err := rc.line(5 * time.Second)
	if err != nil {
		rc.t.Fatalf("waiting for %q: %v", re, err)
	}
	if !regexp.MustCompile(re).MatchString(l) {
		rc.t.Fatalf("got %q, want a line matching %q", l, re)
	}
	return l
}

// reopenable is a service whose store can be closed and reopened on the
// same data directory (a restart).
type reopenable struct {
	cfg *config.Config
	st  store.Store
	svc *bridge.Service
}

func openReopenable(t testing.TB, cfg *config.Config) *reopenable {
	t.Helper()
	r := &reopenable{cfg: cfg}
	r.open(t)
	t.Cleanup(func() {
		if r.st != nil {
			r.st.Close()
		}
	})
	return r
}

func (r *reopenable) open(t testing.TB) {
	t.Helper()
	svc, err := bridge.New(func(o store.Options) (store.Store, error) {
		st, err := store.Open(context.Background(), store.SQLite, r.cfg.DataDir, o)
		r.st = st
		return st, err
	}, r.cfg, bridge.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	r.svc = svc
}

func (r *reopenable) close(t testing.TB) {
	t.Helper()
	if err := r.st.Close(); err != nil {
		t.Fatal(err)
	}
	r.st = nil
}
