package tlsutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// logBuffer collects log output from concurrent handshakes.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func testLogger(buf *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve runs a TLS listener on 127.0.0.1:0 that completes handshakes, sends
// "ok" and closes. It returns the address.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				c.Write([]byte("ok"))
			}()
		}
	}()
	return ln.Addr().String()
}

func caPool(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(readOne(t, filepath.Join(dir, CACertFileName)))
	return pool
}

// dial handshakes with addr, verifying against roots, and returns the
// server certificate's serial and the negotiated state.
func dial(addr string, cfg *tls.Config) (*big.Int, tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "ok" {
		return nil, tls.ConnectionState{}, errors.Join(errors.New("no ok from server"), err)
	}
	st := c.ConnectionState()
	return st.PeerCertificates[0].SerialNumber, st, nil
}

func mustSerial(t *testing.T, addr string, cfg *tls.Config) *big.Int {
	t.Helper()
	s, _, err := dial(addr, cfg)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return s
}

type fixture struct {
	dir    string
	res    *DevCertResult
	r      *Reloader
	logs   *logBuffer
	addr   string
	client *tls.Config
}

func newFixture(t *testing.T, opts ...ReloaderOption) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), logs: &logBuffer{}}
	f.res = mustDevCert(t, []string{"duebridge.lan", "127.0.0.1"}, f.dir, time.Time{})
	opts = append([]ReloaderOption{WithCheckInterval(0), WithLogger(testLogger(f.logs))}, opts...)
	r, err := NewReloader(f.res.ServerCertFile, f.res.ServerKeyFile, opts...)
	if err != nil {
		t.Fatal(err)
	}
	r.settle = 0 // report failures at once; the tests replace files deliberately
	f.r = r
	f.addr = serve(t, r.TLSConfig())
	f.client = &tls.Config{RootCAs: caPool(t, f.dir), ServerName: "duebridge.lan"}
	return f
}

func TestReloaderServesAndPicksUpNewCertificate(t *testing.T) {
	f := newFixture(t)
	first := f.res.Leaf.SerialNumber
	if got := mustSerial(t, f.addr, f.client); got.Cmp(first) != 0 {
		t.Fatalf("served serial %X, want %X", got, first)
	}
	if f.r.Leaf().SerialNumber.Cmp(first) != 0 {
		t.Error("Leaf() is not the served certificate")
	}
	if root := f.r.Root(); root == nil || !root.Equal(f.res.CA) {
		t.Error("Root() is not the CA from server.crt")
	}
	// The IP SAN verifies too (ServerName taken from the address).
	if _, st, err := dial(f.addr, &tls.Config{RootCAs: f.client.RootCAs}); err != nil {
		t.Errorf("handshake by IP address: %v", err)
	} else if st.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(st.Version))
	}

	// New certificate from the same CA, written over the files while serving.
	res2 := mustDevCert(t, []string{"duebridge.lan", "127.0.0.1"}, f.dir, time.Time{})
	if got := mustSerial(t, f.addr, f.client); got.Cmp(res2.Leaf.SerialNumber) != 0 {
		t.Fatalf("after replacement served %X, want new serial %X", got, res2.Leaf.SerialNumber)
	}
	if f.r.Leaf().SerialNumber.Cmp(res2.Leaf.SerialNumber) != 0 {
		t.Error("Leaf() not updated")
	}
	if !strings.Contains(f.logs.String(), "TLS certificate loaded") {
		t.Errorf("no reload logged:\n%s", f.logs)
	}
}

func TestReloaderKeepsOldCertificateOnBrokenReplacement(t *testing.T) {
	f := newFixture(t)
	old := f.res.Leaf.SerialNumber
	certPEM, _ := os.ReadFile(f.res.ServerCertFile)
	keyPEM, _ := os.ReadFile(f.res.ServerKeyFile)

	// A second pair from another directory, to mix up.
	other := mustDevCert(t, []string{"duebridge.lan"}, t.TempDir(), time.Time{})
	otherKey, _ := os.ReadFile(other.ServerKeyFile)
	expired := mustDevCert(t, []string{"duebridge.lan"}, t.TempDir(), time.Now().Add(-3*365*24*time.Hour))
	expiredCert, _ := os.ReadFile(expired.ServerCertFile)
	expiredKey, _ := os.ReadFile(expired.ServerKeyFile)

	cases := []struct {
		name      string
		cert, key []byte
		logWant   string
		errFile   string
	}{
		{"garbage certificate", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), keyPEM, "parse certificate", f.res.ServerCertFile},
		{"empty certificate", nil, keyPEM, "no PEM CERTIFICATE", f.res.ServerCertFile},
		{"truncated key", certPEM, keyPEM[:len(keyPEM)/2], "parse private key", f.res.ServerKeyFile},
		{"key of another certificate", certPEM, otherKey, "does not belong", f.res.ServerKeyFile},
		{"expired certificate", expiredCert, expiredKey, "expired", f.res.ServerCertFile},
		{"certificate removed", nil, keyPEM, "no such file", f.res.ServerCertFile},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.logs.String())
			if tc.name == "certificate removed" {
				os.Remove(f.res.ServerCertFile)
			} else {
				writeFileAtomic(f.res.ServerCertFile, tc.cert, 0o644)
			}
			writeFileAtomic(f.res.ServerKeyFile, tc.key, 0o600)

			if got := mustSerial(t, f.addr, f.client); got.Cmp(old) != 0 {
				t.Fatalf("served %X after a broken replacement, want the old %X", got, old)
			}
			if f.r.Leaf().SerialNumber.Cmp(old) != 0 {
				t.Error("Leaf() changed to a broken certificate")
			}
			logs := f.logs.String()[before:]
			if !strings.Contains(logs, "keeping the previous certificate") || !strings.Contains(logs, tc.logWant) {
				t.Errorf("log does not report the refused files (want %q):\n%s", tc.logWant, logs)
			}
			// Logged once per change, not on every handshake.
			mustSerial(t, f.addr, f.client)
			if n := strings.Count(f.logs.String()[before:], "keeping the previous certificate"); n != 1 {
				t.Errorf("failure logged %d times, want once", n)
			}
			// Reload reports the problem with the file's name.
			err := f.r.Reload()
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Path != tc.errFile {
				t.Errorf("Reload() = %v, want a PathError for %s", err, tc.errFile)
			}
		})
	}

	// Good files again: picked up without a restart.
	writeFileAtomic(f.res.ServerCertFile, certPEM, 0o644)
	writeFileAtomic(f.res.ServerKeyFile, keyPEM, 0o600)
	fresh := mustDevCert(t, []string{"duebridge.lan", "127.0.0.1"}, f.dir, time.Time{})
	if got := mustSerial(t, f.addr, f.client); got.Cmp(fresh.Leaf.SerialNumber) != 0 {
		t.Fatalf("after repair served %X, want %X", got, fresh.Leaf.SerialNumber)
	}
}

func TestReloaderSettlesBeforeReporting(t *testing.T) {
	f := newFixture(t)
	f.r.settle = time.Hour // every file counts as "just written"
	old := f.res.Leaf.SerialNumber
	os.WriteFile(f.res.ServerCertFile, []byte("half a file"), 0o644)
	// The file system stamps with the kernel's clock; the reloader compares
	// with its own, which .ci/future.sh moves. Stamp with the latter.
	now := time.Now()
	os.Chtimes(f.res.ServerCertFile, now, now)
	if got := mustSerial(t, f.addr, f.client); got.Cmp(old) != 0 {
		t.Fatalf("served %X, want the old %X", got, old)
	}
	if strings.Contains(f.logs.String(), "keeping the previous certificate") {
		t.Error("a file still being written was reported as broken")
	}
	// The writer finishes: the pair is tried again even though it was
	// seen broken before.
	fresh := mustDevCert(t, []string{"duebridge.lan", "127.0.0.1"}, f.dir, time.Time{})
	if got := mustSerial(t, f.addr, f.client); got.Cmp(fresh.Leaf.SerialNumber) != 0 {
		t.Fatalf("served %X, want %X", got, fresh.Leaf.SerialNumber)
	}
}

func TestReloaderCheckInterval(t *testing.T) {
	f := newFixture(t, WithCheckInterval(time.Hour))
	old := f.res.Leaf.SerialNumber
	mustDevCert(t, []string{"duebridge.lan", "127.0.0.1"}, f.dir, time.Time{})
	if got := mustSerial(t, f.addr, f.client); got.Cmp(old) != 0 {
		t.Fatalf("files re-read before the check interval passed")
	}
	if err := f.r.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := mustSerial(t, f.addr, f.client); got.Cmp(old) == 0 {
		t.Fatal("Reload did not switch certificates")
	}
}

func TestReloaderRun(t *testing.T) {
	f := newFixture(t, WithCheckInterval(10*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.r.Run(ctx) }()

	fresh := mustDevCert(t, []string{"duebridge.lan", "127.0.0.1"}, f.dir, time.Time{})
	deadline := time.Now().Add(5 * time.Second)
	for f.r.Leaf().SerialNumber.Cmp(fresh.Leaf.SerialNumber) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("Run did not pick up the new files")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v", err)
	}
}

func TestReloaderConcurrentHandshakesDuringReplacement(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, _, err := dial(f.addr, f.client); err != nil {
					errs <- err
					return
				}
				_ = f.r.Leaf().NotAfter
			}
		}()
	}
	var last *DevCertResult
	for i := 0; i < 5; i++ {
		last = mustDevCert(t, []string{"duebridge.lan", "127.0.0.1"}, f.dir, time.Time{})
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("handshake during replacement: %v", err)
	}
	if got := mustSerial(t, f.addr, f.client); got.Cmp(last.Leaf.SerialNumber) != 0 {
		t.Errorf("served %X, want the last certificate %X", got, last.Leaf.SerialNumber)
	}
}

func TestNewReloaderErrors(t *testing.T) {
	dir := t.TempDir()
	res := mustDevCert(t, []string{"a.lan"}, dir, time.Time{})
	other := mustDevCert(t, []string{"a.lan"}, t.TempDir(), time.Time{})
	missing := filepath.Join(dir, "nope.crt")

	var pe *fs.PathError
	if _, err := NewReloader(missing, res.ServerKeyFile); !errors.As(err, &pe) || pe.Path != missing {
		t.Errorf("missing cert: %v", err)
	}
	if _, err := NewReloader(res.ServerCertFile, other.ServerKeyFile); !errors.As(err, &pe) || pe.Path != other.ServerKeyFile {
		t.Errorf("mismatched key: %v", err)
	}
	if _, err := NewReloader(res.CACertFile, res.CAKeyFile); err == nil || !strings.Contains(err.Error(), "CA") {
		t.Errorf("CA as server certificate: %v", err)
	}
	if _, err := NewReloader("", ""); err == nil {
		t.Error("empty file names accepted")
	}

	// An expired certificate still starts the server, with a warning.
	exp := mustDevCert(t, []string{"a.lan"}, t.TempDir(), time.Now().Add(-3*365*24*time.Hour))
	logs := &logBuffer{}
	r, err := NewReloader(exp.ServerCertFile, exp.ServerKeyFile, WithLogger(testLogger(logs)))
	if err != nil {
		t.Fatalf("expired certificate refused at start: %v", err)
	}
	if r.Leaf() == nil || !strings.Contains(logs.String(), "expired") {
		t.Errorf("expired certificate not warned about:\n%s", logs)
	}
}

func TestServerConfigProtocols(t *testing.T) {
	f := newFixture(t)

	old := f.client.Clone()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	if _, _, err := dial(f.addr, old); err == nil || !strings.Contains(err.Error(), "protocol version") {
		t.Errorf("TLS 1.1 client: err = %v, want the server to refuse the protocol version", err)
	}

	cbc := f.client.Clone()
	cbc.MaxVersion = tls.VersionTLS12
	cbc.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA}
	if _, _, err := dial(f.addr, cbc); err == nil {
		t.Error("TLS 1.2 client offering only CBC suites was accepted")
	}

	tls12 := f.client.Clone()
	tls12.MaxVersion = tls.VersionTLS12
	_, st, err := dial(f.addr, tls12)
	if err != nil {
		t.Fatalf("TLS 1.2 client refused: %v", err)
	}
	if st.Version != tls.VersionTLS12 {
		t.Errorf("negotiated %s", tls.VersionName(st.Version))
	}
	for _, id := range CipherSuitesTLS12() {
		cs := cipherSuiteByID(id)
		if cs == nil || cs.Insecure || !strings.Contains(cs.Name, "ECDHE") ||
			!(strings.Contains(cs.Name, "GCM") || strings.Contains(cs.Name, "CHACHA20_POLY1305")) {
			t.Errorf("suite %#04x is not an ECDHE AEAD suite", id)
		}
	}
	if st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 &&
		st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 &&
		st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 {
		t.Errorf("negotiated %s", tls.CipherSuiteName(st.CipherSuite))
	}

	cfg := ServerConfig(nil)
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %#x", cfg.MinVersion)
	}
}

func cipherSuiteByID(id uint16) *tls.CipherSuite {
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if cs.ID == id {
			return cs
		}
	}
	return nil
}
