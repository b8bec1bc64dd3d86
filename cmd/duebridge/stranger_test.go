package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// serveReady runs serve on cfg and returns the bound addresses and the service.
func serveReady(t *testing.T, cfg *config.Config, o serveOptions) (Addrs, *bridge.Service) {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	type up struct {
		a   Addrs
		svc *bridge.Service
	}
	ready := make(chan up, 1)
	o.Opened = func(svc *bridge.Service, st store.Store) { testsvc.Track(t, svc, st) }
	inner := o.Ready
	o.Ready = func(a Addrs, svc *bridge.Service) {
		if inner != nil {
			inner(a, svc)
		}
		ready <- up{a, svc}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	rerendered := untilRerendered(&o)
	go func() { done <- serve(ctx, cfg, o) }()
	select {
	case u := <-ready:
		rerendered(t) // tests read what the start re-renders
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		return u.a, u.svc
	case err := <-done:
		cancel()
		t.Fatalf("serve ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve not ready")
	}
	return Addrs{}, nil
}

func loadConfig(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCheckConfigPrint(t *testing.T) {
	path := writeConfig(t, t.TempDir(), "alice")
	t.Setenv("DUEBRIDGE_LIMITS_LOCKOUT_WINDOW", "1h")
	t.Setenv("DUEBRIDGE_HTTP_LISTN", "0.0.0.0:1")
	var out, errOut bytes.Buffer
	cmd := rootCmd()
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs([]string{"check-config", "--config", path, "--print"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, re := range []string{
		`(?m)^limits\.lockout_window +1h0m0s +\(env DUEBRIDGE_LIMITS_LOCKOUT_WINDOW\)$`,
		`(?m)^http\.listen +127\.0\.0\.1:0 +\(file\)$`,
		`(?m)^limits\.lockout_failures +10 +\(default\)$`,
		`(?m)^users\[0\]: name=alice email=alice@example\.com password_hash=\$2a\$04\$\*\*\* `,
		`(?m)^sources\[0\]: name=tracker kind=generic secret=\*\*\* `,
		`: OK \(1 user, 1 source, store sqlite\)`,
	} {
		if !regexpMatch(re, s) {
			t.Errorf("output lacks %s:\n%s", re, s)
		}
	}
	if strings.Contains(s, secret) {
		t.Errorf("the webhook secret is printed:\n%s", s)
	}
	if !strings.Contains(errOut.String(), "warning: environment variable DUEBRIDGE_HTTP_LISTN ignored") {
		t.Errorf("no warning for a misspelt variable: %q", errOut.String())
	}
}

// The banner names both the public URL and the address actually listened
// on when they differ.
func TestBannerPublicURLAndListenAddress(t *testing.T) {
	cfg := loadConfig(t, writeConfig(t, t.TempDir(), "alice"))
	var out bytes.Buffer
	a, _ := serveReady(t, cfg, serveOptions{Ready: func(a Addrs, svc *bridge.Service) { printReady(&out, cfg)(a, svc) }})
	s := out.String()
	for _, want := range []string{
		"Public:   http://duebridge.test  (http.public_url",
		"Listens:  http://" + a.HTTP.String() + "  (http.listen)",
		"CalDAV:   http://duebridge.test/.well-known/caldav",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("banner lacks %q:\n%s", want, s)
		}
	}
}

// Durations are logged as "1s", not as nanoseconds.
func TestLogDurationsReadable(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	newLogger(f, false).Info("retry", "delay", time.Second)
	f.Close()
	b, _ := os.ReadFile(f.Name())
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if m["delay"] != "1s" {
		t.Errorf("delay logged as %v: %s", m["delay"], b)
	}
}

func TestForwardedClient(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	for _, c := range []struct {
		peer, xff, fwd, want string
	}{
		{peer: "10.1.2.3:5000", xff: "203.0.113.5", want: "203.0.113.5"},
		{peer: "10.1.2.3:5000", xff: "198.51.100.1, 203.0.113.5, 10.9.9.9", want: "203.0.113.5"}, // left of the first untrusted hop is the client's own claim
		{peer: "192.0.2.1:5000", xff: "203.0.113.5", want: ""},                                   // not a trusted proxy: header ignored
		{peer: "10.1.2.3:5000", want: ""},
		{peer: "[::1]:80", fwd: `for="[2001:db8::7]:4711";proto=https, for=10.0.0.2`, want: "2001:db8::7"},
		{peer: "10.1.2.3:5000", fwd: "for=_hidden", want: ""},
		{peer: "10.1.2.3:5000", xff: "10.0.0.1", want: ""}, // only proxies in the chain
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if c.fwd != "" {
			r.Header.Set("Forwarded", c.fwd)
		}
		ip, ok := forwardedClient(r, trusted)
		got := ""
		if ok {
			got = ip.String()
		}
		if got != c.want {
			t.Errorf("peer %s xff %q fwd %q: %q, want %q", c.peer, c.xff, c.fwd, got, c.want)
		}
	}
}

// Behind a reverse proxy (a real httputil.ReverseProxy on loopback), ten
// failures from one client lock that client, not everyone behind the proxy.
func TestLockoutBehindTrustedProxy(t *testing.T) {
	path := writeConfig(t, t.TempDir(), "alice", "bob")
	appendConfig(t, path, "limits:\n  login_failure_delay: 1ms\n  lockout_failures: 3\n")
	t.Setenv("DUEBRIDGE_HTTP_TRUSTED_PROXIES", "127.0.0.1/32")
	cfg := loadConfig(t, path)
	a, _ := serveReady(t, cfg, serveOptions{})
	backend, _ := url.Parse("http://" + a.HTTP.String())
	proxy := httptest.NewServer(httputil.NewSingleHostReverseProxy(backend))
	defer proxy.Close()

	setup := func(client, user, pw string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", proxy.URL+"/setup", nil)
		req.SetBasicAuth(user, pw)
		// An outer proxy names the client; ours (loopback, trusted) appends itself.
		req.Header.Set("X-Forwarded-For", client)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i := range 3 {
		if code := setup("203.0.113.66", "bob", fmt.Sprintf("guess-%d", i)); code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, code)
		}
	}
	if code := setup("203.0.113.66", "alice", "alice-pw"); code != http.StatusTooManyRequests {
		t.Errorf("the guessing client is not locked: %d", code)
	}
	if code := setup("198.51.100.20", "alice", "alice-pw"); code != http.StatusOK {
		t.Errorf("another client behind the same proxy is refused: %d", code)
	}
}

// imapGreeting dials addr, sends header (if any) and returns the first line.
func imapDial(t *testing.T, addr string, header []byte) (net.Conn, *bufio.Reader, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if header != nil {
		if _, err := c.Write(header); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	return c, br, line
}

func imapLogin(t *testing.T, c net.Conn, br *bufio.Reader, user, pw string) string {
	t.Helper()
	fmt.Fprintf(c, "a LOGIN %s %s\r\n", user, pw)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "a ") {
			return line
		}
	}
}

func proxyHeader(t *testing.T, version byte, src string, dst net.Addr) []byte {
	t.Helper()
	h := &proxyproto.Header{Version: version, Command: proxyproto.PROXY, TransportProtocol: proxyproto.TCPv4,
		SourceAddr: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), DestinationAddr: dst}
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// PROXY protocol on IMAP: the header names the client (v1 and v2), lock-outs
// count that client, a connection without a header is dropped, and a silent
// connection does not hold up the others.
func TestIMAPProxyProtocol(t *testing.T) {
	path := writeConfig(t, t.TempDir(), "alice", "bob")
	appendConfig(t, path, "limits:\n  login_failure_delay: 1ms\n  lockout_failures: 3\n")
	t.Setenv("DUEBRIDGE_IMAP_PROXY_PROTOCOL", "true")
	cfg := loadConfig(t, path)
	a, _ := serveReady(t, cfg, serveOptions{})
	imap := a.IMAP.String()

	// A silent connection first: it must not block the accept loop.
	silent, err := net.Dial("tcp", imap)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()

	for i := range 3 {
		c, br, greet := imapDial(t, imap, proxyHeader(t, 1, "203.0.113.66:5000", a.IMAP))
		if !strings.HasPrefix(greet, "* OK") {
			t.Fatalf("greeting after a v1 header: %q", greet)
		}
		if res := imapLogin(t, c, br, "bob", fmt.Sprintf("guess-%d", i)); !strings.HasPrefix(res, "a NO") {
			t.Fatalf("guess %d: %q", i, res)
		}
	}
	c, br, _ := imapDial(t, imap, proxyHeader(t, 2, "203.0.113.66:5001", a.IMAP))
	if res := imapLogin(t, c, br, "alice", "alice-pw"); !strings.HasPrefix(res, "a NO") {
		t.Errorf("the guessing client (v2 header) is not locked: %q", res)
	}
	c, br, _ = imapDial(t, imap, proxyHeader(t, 2, "198.51.100.20:5000", a.IMAP))
	if res := imapLogin(t, c, br, "alice", "alice-pw"); !strings.HasPrefix(res, "a OK") {
		t.Errorf("another client through the same proxy: %q", res)
	}
	// No header: dropped without a greeting.
	_, _, greet := imapDial(t, imap, []byte("a LOGIN alice alice-pw\r\n"))
	if greet != "" {
		t.Errorf("a connection without a PROXY header was served: %q", greet)
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// PROXY protocol on the submission listener: greeted after a header,
// dropped without one; peers outside http.trusted_proxies are refused.
func TestSubmissionProxyProtocol(t *testing.T) {
	path := writeConfig(t, t.TempDir(), "alice")
	appendConfig(t, path, "submission:\n  listen: 127.0.0.1:0\n  proxy_protocol: true\n")
	cfg := loadConfig(t, path)
	a, _ := serveReady(t, cfg, serveOptions{})
	sub := a.Submission.String()
	if _, _, greet := imapDial(t, sub, proxyHeader(t, 2, "203.0.113.9:1234", a.Submission)); !strings.HasPrefix(greet, "220 ") {
		t.Errorf("greeting after a v2 header: %q", greet)
	}
	if _, _, greet := imapDial(t, sub, []byte("EHLO x\r\n")); greet != "" {
		t.Errorf("served without a PROXY header: %q", greet)
	}

	t.Setenv("DUEBRIDGE_HTTP_TRUSTED_PROXIES", "192.0.2.0/24") // not loopback
	t.Setenv("DUEBRIDGE_DATA_DIR", t.TempDir())                // a second server, its own store
	cfg = loadConfig(t, path)
	a, _ = serveReady(t, cfg, serveOptions{})
	if _, _, greet := imapDial(t, a.Submission.String(), proxyHeader(t, 1, "203.0.113.9:1234", a.Submission)); greet != "" {
		t.Errorf("a peer outside http.trusted_proxies was served: %q", greet)
	}
}
