package imapserver_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/tlsutil"
)

func TestConnectionsPerUser(t *testing.T) {
	t.Parallel()
	cfg := testsvc.Config(t)
	cfg.Limits.IMAPConnsPerUser = 2
	ts := serve(t, testsvc.New(t, testsvc.Options{Config: cfg}), Options{})
	a := ts.login(t, "alice", nil)
	ts.login(t, "alice", nil)
	third := ts.dial(t, nil)
	err := third.Login("alice", "alice-pw").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Code != imap.ResponseCodeLimit {
		t.Fatalf("third login: got %v, want NO [LIMIT]", err)
	}
	ts.login(t, "bob", nil) // other users are not affected
	if err := a.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	// The slot frees when the connection ends.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := third.Login("alice", "alice-pw").Wait()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login after another session left: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIdleTimeoutOutsideIDLE(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{IdleTimeout: 300 * time.Millisecond})
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	rc.send("1 LOGIN alice alice-pw", "2 SELECT INBOX")
	rc.expect(`^2 OK `)
	// IDLE is exempt: stay in it longer than the timeout.
	rc.send("3 IDLE")
	rc.next(`^\+ idling`)
	time.Sleep(600 * time.Millisecond)
	rc.send("DONE")
	rc.next(`^3 OK IDLE completed`)
	// Outside IDLE, silence ends the connection with a BYE.
	start := time.Now()
	rc.next(`^\* BYE Autologout`)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection closed after %v", d)
	}
	if _, err := rc.line(2 * time.Second); err == nil {
		t.Error("connection still open after BYE")
	}
}

func TestLoginTimeout(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{LoginTimeout: 300 * time.Millisecond})
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	// Commands do not extend the time to log in.
	for range 3 {
		rc.send("a NOOP")
		rc.next(`^a OK`)
		time.Sleep(50 * time.Millisecond)
	}
	rc.next(`^\* BYE Login timeout`)
}

// devTLS returns a server TLS config and a client config trusting it.
func devTLS(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	res, err := tlsutil.DevCert([]string{"127.0.0.1", "localhost"}, t.TempDir(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(res.ServerCertFile, res.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(res.CA)
	server = tlsutil.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil })
	return server, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := devTLS(t)
	svc := testsvc.New(t, testsvc.Options{})
	srv := New(svc.IMAP(), Options{TLSConfig: serverTLS, Logger: testLogger(t)})
	srv.SetHandshakeTimeout(500 * time.Millisecond)
	plainLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(plainLn)
	go srv.ServeTLS(tlsLn)
	t.Cleanup(func() { srv.Close() })
	ts := &testServer{srv: srv, svc: svc, addr: plainLn.Addr().String()}

	t.Run("plain port offers STARTTLS and refuses LOGIN before it", func(t *testing.T) {
		rc := ts.raw(t)
		rc.next(`^\* OK \[CAPABILITY IMAP4rev1 ID SASL-IR LITERAL- STARTTLS LOGINDISABLED\] IMAP server ready$`)
		rc.send("1 CAPABILITY")
		rc.next(`^\* CAPABILITY IMAP4rev1 ID SASL-IR LITERAL- STARTTLS LOGINDISABLED$`)
		rc.next(`^1 OK`)
		rc.send("2 LOGIN alice alice-pw")
		rc.next(`^2 NO \[PRIVACYREQUIRED\]`)
		rc.send("3 AUTHENTICATE PLAIN AGFsaWNlAGFsaWNlLXB3")
		rc.next(`^3 NO \[PRIVACYREQUIRED\]`)
	})
	t.Run("STARTTLS, then ID before and after login", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(ts.addr, &imapclient.Options{TLSConfig: clientTLS})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		caps, err := c.Capability().Wait()
		if err != nil {
			t.Fatal(err)
		}
		if !caps.Has("AUTH=PLAIN") || caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) {
			t.Errorf("capabilities after STARTTLS: %v", caps)
		}
		if _, err := c.ID(&imap.IDData{Name: "com.apple.email.maild"}).Wait(); err != nil {
			t.Fatalf("ID after STARTTLS: %v", err)
		}
		if err := c.Login("alice", "alice-pw").Wait(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ID(&imap.IDData{Name: "iPhone Mail"}).Wait(); err != nil {
			t.Fatalf("ID after login: %v", err)
		}
		mustSelect(t, c, "INBOX")
	})
	t.Run("STARTTLS with injected commands", func(t *testing.T) {
		rc := ts.raw(t)
		rc.next(`^\* OK`)
		// Plaintext sent after STARTTLS in the same packet is never run as
		// a command (it breaks the handshake instead).
		rc.send("1 STARTTLS", "2 LOGIN alice alice-pw")
		rc.next(`^1 OK Begin TLS`)
		if l, err := rc.line(2 * time.Second); err == nil {
			t.Errorf("server answered injected plaintext: %q", l)
		}
	})
	t.Run("implicit TLS", func(t *testing.T) {
		c, err := imapclient.DialTLS(tlsLn.Addr().String(), &imapclient.Options{TLSConfig: clientTLS})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if caps := c.Caps(); caps.Has(imap.CapStartTLS) || caps.Has(imap.CapLoginDisabled) {
			t.Errorf("implicit TLS greeting capabilities: %v", caps)
		}
		if _, err := c.ID(nil).Wait(); err != nil {
			t.Fatalf("pre-auth ID: %v", err)
		}
		if err := c.Login("alice", "alice-pw").Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("silent TLS client times out", func(t *testing.T) {
		conn, err := net.Dial("tcp", tlsLn.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// No ClientHello: the server must not hold the connection forever.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1)
		_, err = conn.Read(buf)
		if err == nil || strings.Contains(err.Error(), "timeout") {
			t.Errorf("read from a silent TLS connection: %v, want the server to close it", err)
		}
	})
}

// Lines longer than the wrapper's buffer: a long ID is still answered, a
// long command ending in a literal still gets its "+", a long line goes to
// the library whole.
func TestLongLines(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "Long", "alice"))
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	rc.send(`1 ID ("name" "` + strings.Repeat("x", 3000) + `")`)
	rc.next(`^\* ID `)
	rc.next(`^1 OK ID completed`)
	rc.send("2 LOGIN alice alice-pw", "3 SELECT INBOX")
	rc.expect(`^3 OK `)
	rc.send("4 UID SEARCH " + strings.Repeat("OR SEEN UNSEEN ", 200) + "SUBJECT {4}")
	rc.next(`^\+ `)
	rc.send("Long")
	rc.next(`^\* SEARCH 1$`)
	rc.next(`^4 OK`)
	rc.send("5 UID SEARCH " + strings.Repeat("UNDELETED ", 400))
	rc.next(`^\* SEARCH 1$`)
	rc.next(`^5 OK`)
	rc.send(`6 ID ("name" "` + strings.Repeat("x", 60000) + `")`)
	rc.next(`^\* BYE Command line too long`)
}
