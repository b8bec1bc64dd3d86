package submission

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// dialFrom connects from a chosen loopback address (127.0.0.0/8 is all
// local on Linux), so tests can play several clients.
func dialFrom(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// firstLine reads one reply line within 5 s ("EOF" if the server closed).
func firstLine(t *testing.T, c net.Conn, r *bufio.Reader) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	l, err := r.ReadString('\n')
	if err != nil {
		return "EOF: " + err.Error()
	}
	return strings.TrimSpace(l)
}

// A connection that never authenticates is closed at the authentication
// deadline however often it sends a command: each command's own deadline
// used to replace the greeting's, so a NOOP every few minutes kept an
// anonymous connection (and its slot) forever.
func TestUnauthenticatedSessionHasATotalDeadline(t *testing.T) {
	t.Parallel()
	addr := start(t, Options{AuthTimeout: 300 * time.Millisecond}, false)
	c := dialFrom(t, addr, "127.0.0.1")
	r := bufio.NewReader(c)
	if l := firstLine(t, c, r); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("greeting %q", l)
	}
	limit := time.Now().Add(5 * time.Second)
	for time.Now().Before(limit) {
		io.WriteString(c, "NOOP\r\n")
		l := firstLine(t, c, r)
		if strings.HasPrefix(l, "250 ") {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !strings.HasPrefix(l, "421 4.7.0 Authentication time limit") {
			t.Fatalf("got %q, want the 421 for the authentication time limit", l)
		}
		if l := firstLine(t, c, r); !strings.HasPrefix(l, "EOF") {
			t.Fatalf("after the 421: %q, want the connection closed", l)
		}
		return
	}
	t.Fatal("an unauthenticated client sending NOOPs is still connected after 5 s (limit 300 ms)")
}

// An authenticated session is not bound by the authentication deadline.
func TestAuthenticatedSessionOutlivesAuthDeadline(t *testing.T) {
	t.Parallel()
	addr := start(t, Options{AuthTimeout: 300 * time.Millisecond}, false)
	c := dialFrom(t, addr, "127.0.0.1")
	r := bufio.NewReader(c)
	firstLine(t, c, r)
	io.WriteString(c, "HELO x\r\n")
	firstLine(t, c, r)
	io.WriteString(c, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice\x00alice-pw"))+"\r\n")
	if l := firstLine(t, c, r); !strings.HasPrefix(l, "235 ") {
		t.Fatalf("AUTH: %q", l)
	}
	time.Sleep(500 * time.Millisecond)
	io.WriteString(c, "NOOP\r\n")
	if l := firstLine(t, c, r); !strings.HasPrefix(l, "250 ") {
		t.Fatalf("NOOP after the auth deadline, authenticated: %q", l)
	}
}

// Unauthenticated connections have their own cap, in all and per client
// address: one address holding its share leaves room for other clients,
// and a connection that logs in frees its unauthenticated slot.
func TestUnauthenticatedCaps(t *testing.T) {
	t.Parallel()
	addr := start(t, Options{MaxUnauth: 3, MaxUnauthPerAddress: 2, MaxConns: 5}, false)
	open := func(from string) (net.Conn, *bufio.Reader, string) {
		c := dialFrom(t, addr, from)
		r := bufio.NewReader(c)
		return c, r, firstLine(t, c, r)
	}
	// An attacker at .1 takes its two slots; a third from .1 is refused.
	a1, _, l1 := open("127.0.0.1")
	_, _, l2 := open("127.0.0.1")
	if !strings.HasPrefix(l1, "220 ") || !strings.HasPrefix(l2, "220 ") {
		t.Fatalf("first two connections: %q, %q", l1, l2)
	}
	if _, _, l := open("127.0.0.1"); !strings.HasPrefix(l, "421 ") {
		t.Fatalf("third unauthenticated connection from one address: %q, want 421", l)
	}
	// Another client still gets in.
	b, br, l := open("127.0.0.2")
	if !strings.HasPrefix(l, "220 ") {
		t.Fatalf("a second client while the first holds its share: %q, want 220", l)
	}
	// The total cap (3) is reached now.
	if _, _, l := open("127.0.0.3"); !strings.HasPrefix(l, "421 ") {
		t.Fatalf("fourth unauthenticated connection: %q, want 421", l)
	}
	// b logs in, which frees its unauthenticated slot for someone else.
	io.WriteString(b, "HELO x\r\n")
	firstLine(t, b, br)
	io.WriteString(b, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00bob\x00bob-pw"))+"\r\n")
	if l := firstLine(t, b, br); !strings.HasPrefix(l, "235 ") {
		t.Fatalf("AUTH: %q", l)
	}
	if _, _, l := open("127.0.0.3"); !strings.HasPrefix(l, "220 ") {
		t.Fatalf("after a login freed a slot: %q, want 220", l)
	}
	// Closing one of .1's connections frees its slot too.
	a1.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, r, l := open("127.0.0.4")
		if strings.HasPrefix(l, "220 ") {
			break
		}
		c.Close()
		_ = r
		if time.Now().After(deadline) {
			t.Fatalf("a closed connection's slot never came back: %q", l)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Over the cap on port 465 the refusal needs a TLS handshake. It ran in
// the accept loop without a deadline: one silent TCP connection stalled the
// listener, and nobody else got even a refusal.
func TestSilentConnectionOverCapDoesNotStallTLSListener(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := devTLS(t)
	addr := start(t, Options{TLSConfig: serverTLS, MaxUnauth: 1, MaxConns: 1}, true)
	dialFrom(t, addr, "127.0.0.1") // holds the one slot, says nothing
	time.Sleep(50 * time.Millisecond)
	dialFrom(t, addr, "127.0.0.2") // over the cap, says nothing
	time.Sleep(50 * time.Millisecond)
	raw := dialFrom(t, addr, "127.0.0.3")
	raw.SetDeadline(time.Now().Add(3 * time.Second))
	c := tls.Client(raw, clientTLS)
	if err := c.Handshake(); err != nil {
		t.Fatalf("TLS handshake of a third client while a silent one waits for its refusal: %v", err)
	}
	if l := firstLine(t, c, bufio.NewReader(c)); !strings.HasPrefix(l, "421 ") {
		t.Fatalf("third client: %q, want 421", l)
	}
}
