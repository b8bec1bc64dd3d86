package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/acme"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/tlsutil"
)

// appendConfig adds YAML (top-level keys writeConfig does not write).
func appendConfig(t testing.TB, path, yaml string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, string(b)+yaml)
}

// tlsWorld is a running server with a dev-cert for 127.0.0.1 and localhost.
type tlsWorld struct {
	*running
	certDir string
	dev     *tlsutil.DevCertResult
	pool    *x509.CertPool
}

// startTLS starts a server with TLS and users (alice and bob if none).
func startTLS(t testing.TB, extraYAML string, users ...string) *tlsWorld {
	t.Helper()
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	dev, err := tlsutil.DevCert([]string{"localhost", "127.0.0.1"}, certDir, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(users) == 0 {
		users = []string{"alice", "bob"}
	}
	path := writeConfig(t, dir, users...)
	appendConfig(t, path, fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n  ca_file: %s\n%s",
		dev.ServerCertFile, dev.ServerKeyFile, dev.CACertFile, extraYAML))
	pool := x509.NewCertPool()
	pool.AddCert(dev.CA)
	return &tlsWorld{running: startWith(t, path, serveOptions{}), certDir: certDir, dev: dev, pool: pool}
}

func (w *tlsWorld) client(conf *tls.Config) *http.Client {
	if conf == nil {
		conf = &tls.Config{RootCAs: w.pool}
	}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{TLSClientConfig: conf, ForceAttemptHTTP2: true}}
}

func (w *tlsWorld) serial(t *testing.T) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", strings.TrimPrefix(w.base, "https://"), &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestHTTPSWithDevCert(t *testing.T) {
	w := startTLS(t, "")
	c := w.client(nil)
	resp, err := c.Get(w.base + "/healthz")
	if err != nil {
		t.Fatalf("GET /healthz over TLS with the dev CA: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("healthz: %d, TLS %+v", resp.StatusCode, resp.TLS)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("protocol %s, want HTTP/2 through ALPN", resp.Proto)
	}

	// The setup page and profile over TLS: login required, no warning.
	resp, err = c.Get(w.base + "/setup")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("setup without login: %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", w.base+"/setup", nil)
	req.SetBasicAuth("alice", "alice-pw")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || bytes.Contains(page, []byte("plain-http-warning")) || !bytes.Contains(page, []byte(tlsutil.Fingerprint(w.dev.CA))) {
		t.Errorf("setup page over TLS: %d\n%s", resp.StatusCode, page)
	}
	req, _ = http.NewRequest("GET", w.base+"/setup/duebridge.mobileconfig", nil)
	req.SetBasicAuth("alice", "alice-pw")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	prof, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-apple-aspen-config" ||
		!bytes.Contains(prof, []byte("com.apple.security.root")) {
		t.Errorf("profile over TLS: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// Refused: a client that does not trust the CA, and TLS 1.1.
	if _, err := w.client(&tls.Config{}).Get(w.base + "/healthz"); err == nil {
		t.Error("a client without the dev CA connected")
	}
	if _, err := w.client(&tls.Config{RootCAs: w.pool, MaxVersion: tls.VersionTLS11}).Get(w.base + "/healthz"); err == nil {
		t.Error("TLS 1.1 accepted")
	}
	// Plain HTTP on the TLS port gets no answer from the application.
	resp, err = http.Get(strings.Replace(w.base, "https://", "http://", 1) + "/healthz")
	if err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain HTTP served on the TLS listener: %s", b)
		}
	}
}

func TestCertificateSwapPickedUpLive(t *testing.T) {
	w := startTLS(t, "")
	before := w.serial(t)
	// dev-cert again into the same directory: same CA, new server
	// certificate, files replaced atomically, as a renewal would.
	if _, err := tlsutil.DevCert([]string{"localhost", "127.0.0.1"}, w.certDir, time.Time{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		after := w.serial(t)
		if after.Cmp(before) != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serving serial %X 30s after the files changed", before)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// The profile now signs/carries from the new files too, and requests work.
	resp, err := w.client(nil).Get(w.base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestHTTPLimitsAndLockout(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "alice", "bob")
	appendConfig(t, path, "limits:\n  webhook_body_bytes: 1000\n  login_failure_delay: 1ms\n  lockout_failures: 3\n  lockout_window: 10m\n")
	wall := struct {
		sync.Mutex
		now time.Time
	}{now: time.Now()}
	now := func() time.Time {
		wall.Lock()
		defer wall.Unlock()
		return wall.now
	}
	r := startWith(t, path, serveOptions{Clock: clock.System(now), HTTPTimeouts: httpTimeouts{ReadHeader: 300 * time.Millisecond, Read: 2 * time.Second}})
	addr := strings.TrimPrefix(r.base, "http://")
	healthy := func(what string) {
		t.Helper()
		if code, body := get(t, r.base+"/healthz"); code != 200 {
			t.Fatalf("healthz after %s: %d %s", what, code, body)
		}
	}

	t.Run("header too large", func(t *testing.T) {
		req, _ := http.NewRequest("GET", r.base+"/healthz", nil)
		req.Header.Set("X-Big", strings.Repeat("x", 80<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("%d, want 431", resp.StatusCode)
		}
		healthy("a large header")
	})

	t.Run("webhook body over its limit", func(t *testing.T) {
		code, body := postTask(t, r.base, bytes.Repeat([]byte(" "), 2000))
		if code != http.StatusRequestEntityTooLarge || !strings.Contains(body, `"error"`) {
			t.Errorf("%d %s, want 413 with a JSON error", code, body)
		}
		healthy("a large webhook body")
	})

	t.Run("body over every route's limit", func(t *testing.T) {
		// Declared too large: refused before anything reads it.
		req, _ := http.NewRequest("GET", r.base+"/setup", io.LimitReader(zeros{}, 2<<20))
		req.ContentLength = 2 << 20
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("declared 2 MiB: %d, want 413", resp.StatusCode)
		}
		// Chunked (no Content-Length): cut off by the readers, never read whole.
		req, _ = http.NewRequest("POST", r.base+"/hooks/tracker", io.MultiReader(strings.NewReader("["), io.LimitReader(zeros{}, 2<<20)))
		req.ContentLength = -1
		resp, err = http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("chunked 2 MiB: %d, want 413", resp.StatusCode)
			}
		}
		healthy("large bodies")
	})

	t.Run("slowloris", func(t *testing.T) {
		// Connections that never finish their headers are closed after
		// ReadHeaderTimeout, and others are served meanwhile.
		var conns []net.Conn
		for i := 0; i < 20; i++ {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
			conns = append(conns, c)
		}
		healthy("slow clients connected")
		for i, c := range conns {
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := bufio.NewReader(c).ReadString('\n')
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("slow connection %d still open after 10s", i)
			}
		}
		healthy("slow clients cut off")
	})

	t.Run("lockout triggers and releases", func(t *testing.T) {
		attacker := clientFrom("127.0.0.2")
		setupAs := func(c *http.Client, user, pw string) int {
			t.Helper()
			req, _ := http.NewRequest("GET", r.base+"/setup", nil)
			req.SetBasicAuth(user, pw)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		for i := 0; i < 3; i++ {
			// Distinct guesses: a repeated wrong password counts once.
			if code := setupAs(attacker, "alice", fmt.Sprintf("guess-%d", i)); code != 401 {
				t.Fatalf("wrong password %d: %d, want 401", i+1, code)
			}
		}
		if code := setupAs(attacker, "bob", "bob-pw"); code != http.StatusTooManyRequests {
			t.Errorf("locked address: %d, want 429", code)
		}
		if code := setupAs(clientFrom("127.0.0.3"), "alice", "alice-pw"); code != http.StatusTooManyRequests {
			t.Errorf("locked user from a new address: %d, want 429", code)
		}
		// Others are served: bob from elsewhere, and every other route.
		if code := setupAs(http.DefaultClient, "bob", "bob-pw"); code != 200 {
			t.Errorf("bob from another address: %d, want 200", code)
		}
		healthy("a lock-out")
		code, body := get(t, r.base+"/metrics")
		body = withoutReplica(body)
		if code != 200 || !strings.Contains(body, `duebridge_login_lockouts_total{scope="user"} 1`) ||
			!strings.Contains(body, `duebridge_login_failures_total{protocol="setup"} 3`) {
			t.Errorf("metrics lack the lock-out:\n%s", grepLines(body, "login"))
		}
		wall.Lock()
		wall.now = wall.now.Add(10*time.Minute + time.Second)
		wall.Unlock()
		if code := setupAs(attacker, "alice", "alice-pw"); code != 200 {
			t.Errorf("after the window: %d, want 200", code)
		}
	})
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

// clientFrom is an HTTP client whose connections come from a given
// loopback address (all of 127/8 is loopback on Linux).
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestACMECertSource(t *testing.T) {
	dir := t.TempDir()
	dev, err := tlsutil.DevCert([]string{"192.168.1.20"}, filepath.Join(dir, "certs"), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{DataDir: dir, HTTP: config.HTTP{Listen: "127.0.0.1:0"}}
	cfg.HTTP.PublicURL = mustURL(t, "https://tasks.example.com")
	cfg.TLS = config.TLS{ACMEHosts: []string{"tasks.example.com"}, CertFile: dev.ServerCertFile, KeyFile: dev.ServerKeyFile}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := newCertSource(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.HTTPNextProtos(); len(got) != 3 || got[2] != acme.ALPNProto {
		t.Errorf("NextProtos %v, want h2, http/1.1 and %s for TLS-ALPN-01", got, acme.ALPNProto)
	}
	// A name that is not an ACME host (a LAN address) gets the file
	// certificate; nothing here talks to an ACME server.
	cert, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: ""})
	if err != nil || !cert.Leaf.Equal(dev.Leaf) {
		t.Errorf("no-SNI handshake: %v", err)
	}
	// ACME alone refuses names outside acme_hosts without asking anyone.
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "", ""
	c, err = newCertSource(cfg, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.example.net"}); err == nil {
		t.Error("ACME manager answered a host outside acme_hosts")
	}
	if c.Certificate() != nil || c.Root() != nil {
		t.Error("ACME source without a served certificate offers one for signing")
	}
	if tc := c.TLSConfig(); tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", tc.MinVersion)
	}
	var none *certSource
	if none.TLSConfig() != nil || none.Certificate() != nil || none.Root() != nil {
		t.Error("nil source is not inert")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
