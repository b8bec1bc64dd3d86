package bridge_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// imapClient is a raw IMAP connection that reads line by line.
type imapClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialIMAP(t *testing.T, addr string) *imapClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &imapClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.expect(`^\* OK `)
	return c
}

func (c *imapClient) send(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, "%s\r\n", line); err != nil {
		c.t.Fatal(err)
	}
}

// line reads one line within d; the error is the read's (io.EOF: closed).
func (c *imapClient) line(d time.Duration) (string, error) {
	c.conn.SetReadDeadline(time.Now().Add(d))
	l, err := c.r.ReadString('\n')
	return strings.TrimRight(l, "\r\n"), err
}

// expect reads lines until one matches re, within 15 s.
func (c *imapClient) expect(re string) string {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, err := c.line(time.Until(deadline))
		if err != nil {
			c.t.Fatalf("waiting for %q: %v", re, err)
		}
		if regexp.MustCompile(re).MatchString(l) {
			return l
		}
	}
}

// TestPostgresListenerGapReplayed: two replicas on one PostgreSQL schema.
// On replica B, bob idles on his INBOX and alice's phone is logged in with a
// device password. B's LISTEN connection is killed, and while B is not
// listening replica A appends a message for bob and revokes alice's device:
// both announcements are lost. Once B listens again it replays the gap: bob
// gets EXISTS, alice's session is ended and her device password no longer
// logs in on B (B had remembered its row). B's revocation poll is an hour,
// so only the announcement and its replay can do that.
func TestPostgresListenerGapReplayed(t *testing.T) {
	source := testsvc.PostgresSource(t, "hub")
	ctx, cancel := context.WithCancel(context.Background())
	cfg := testsvc.Config(t)
	replica := func() *bridge.Service {
		return testsvc.Open(t, cfg, bridge.Options{}, func(o store.Options) (store.Store, error) {
			return store.Open(ctx, store.Postgres, source, o)
		})
	}
	a, b := replica(), replica()
	bridge.SetDeviceRevocationPoll(b, time.Hour)
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx) }()
	srv := imapserver.New(b.IMAP(), imapserver.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-ran
	})

	appendMail := func(user string) {
		t.Helper()
		err := testsvc.Store(t, a).Update(ctx, func(tx store.Tx) error {
			if _, err := tx.EnsureMailbox(user, bridge.Inbox, ""); err != nil {
				return err
			}
			return tx.AppendMessage(&store.Message{User: user, Mailbox: bridge.Inbox, Data: []byte("Subject: x\r\n\r\nx")})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	appendMail("bob")
	dev, pw, err := a.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		t.Fatal(err)
	}

	bob := dialIMAP(t, ln.Addr().String())
	bob.send("1 LOGIN bob " + testsvc.Password("bob"))
	bob.expect(`^1 OK`)
	bob.send("2 SELECT INBOX")
	bob.expect(`^2 OK \[READ-WRITE\]`)
	bob.send("3 IDLE")
	bob.expect(`^\+ `)
	alice := dialIMAP(t, ln.Addr().String())
	alice.send("1 LOGIN alice " + pw)
	alice.expect(`^1 OK`)
	alice.send("2 SELECT INBOX")
	alice.expect(`^2 OK`)
	alice.send("3 IDLE")
	alice.expect(`^\+ `)

	// B listens: a commit on A reaches bob through B. (Retried: the
	// listener connects asynchronously.)
	exists := 1
	for n := 0; ; n++ {
		appendMail("bob")
		exists++
		if l, err := bob.line(time.Second); err == nil {
			if !regexp.MustCompile(`^\* \d+ EXISTS$`).MatchString(l) {
				t.Fatalf("got %q, want an EXISTS", l)
			}
			break
		}
		if n > 10 {
			t.Fatal("replica B never heard replica A")
		}
	}
	if got := testsvc.Metric(t, b, "duebridge_event_resyncs_total", "reason", "reconnect"); got != 0 {
		t.Fatalf("%v resyncs before any reconnect", got)
	}

	// Kill the listeners (A's too: they share the query text) and commit
	// on A once they are gone, well before B listens again (100 ms later
	// at the earliest).
	testsvc.KillListeners(t, source)
	appendMail("bob")
	exists++
	if err := a.RevokeDevicePassword(ctx, "alice", dev.ID); err != nil {
		t.Fatal(err)
	}

	bob.expect(fmt.Sprintf(`^\* %d EXISTS$`, exists))
	for deadline := time.Now().Add(15 * time.Second); ; {
		l, err := alice.line(time.Until(deadline))
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("alice's session on B is still open after her device was revoked on A")
			}
			break // closed
		}
		if strings.HasPrefix(l, "* BYE") {
			break
		}
	}
	// B remembered the device's row from the login: it is forgotten too.
	again := dialIMAP(t, ln.Addr().String())
	again.send("1 LOGIN alice " + pw)
	again.expect(`^1 NO`)
	if got := testsvc.Metric(t, b, "duebridge_event_resyncs_total", "reason", "reconnect"); got != 1 {
		t.Errorf("B counted %v resyncs after one reconnect, want 1", got)
	}
	bob.send("DONE")
	bob.expect(`^3 OK`)
}
