package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/tlsutil"
)

// TestTicketKeysFileAcrossReplicasAndRestart: two serve processes with the
// same tls.ticket_keys_file resume each other's TLS 1.3 sessions, and so
// does a process restarted on it; TLS 1.2 sessions resume only on the
// process that made them.
func TestTicketKeysFileAcrossReplicasAndRestart(t *testing.T) {
	dir := t.TempDir()
	dev, err := tlsutil.DevCert([]string{"localhost", "127.0.0.1"}, filepath.Join(dir, "certs"), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "ticket.keys")
	if out, err := runCLI(t, "ticket-keys", "rotate", "--file", keys); err != nil {
		t.Fatalf("ticket-keys rotate: %v\n%s", err, out)
	}
	replica := func(name string) string {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		path := writeConfig(t, d)
		appendConfig(t, path, fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n  ticket_keys_file: %s\n",
			dev.ServerCertFile, dev.ServerKeyFile, keys))
		return path
	}
	cfgA, cfgB := replica("a"), replica("b")
	pool := x509.NewCertPool()
	pool.AddCert(dev.CA)

	// A phone: one connection per poll, resuming from its ticket.
	phone := func(version uint16) *http.Client {
		return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: version,
				ClientSessionCache: tls.NewLRUClientSessionCache(4)},
		}}
	}
	poll := func(t *testing.T, c *http.Client, base string) bool {
		t.Helper()
		resp, err := c.Get(base + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.TLS.DidResume
	}
	phone13, phone12 := phone(tls.VersionTLS13), phone(tls.VersionTLS12)
	t.Run("replicas", func(t *testing.T) {
		a, b := startWith(t, cfgA, serveOptions{}), startWith(t, cfgB, serveOptions{})
		if poll(t, phone13, a.base) {
			t.Fatal("first poll resumed")
		}
		if !poll(t, phone13, b.base) {
			t.Error("TLS 1.3: a session from replica A did not resume on replica B")
		}
		if !poll(t, phone13, a.base) {
			t.Error("TLS 1.3: a session from replica B did not resume on replica A")
		}
		poll(t, phone12, a.base)
		if !poll(t, phone12, a.base) {
			t.Error("TLS 1.2: a returning phone did not resume on the same replica")
		}
		if poll(t, phone12, b.base) {
			t.Error("TLS 1.2: a session from replica A resumed on replica B")
		}
		poll(t, phone12, a.base) // the ticket to present after the restart
	}) // both replicas stop here
	t.Run("restart", func(t *testing.T) {
		a := startWith(t, cfgA, serveOptions{})
		if !poll(t, phone13, a.base) {
			t.Error("TLS 1.3: a session from before the restart did not resume")
		}
		if poll(t, phone12, a.base) {
			t.Error("TLS 1.2: a session from before the restart resumed")
		}
	})
}

// TestTicketKeysFileRefusedAtStart: a world-readable or malformed ticket
// key file stops serve with an error naming the file and the problem.
func TestTicketKeysFileRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	dev, err := tlsutil.DevCert([]string{"localhost"}, filepath.Join(dir, "certs"), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "ticket.keys")
	path := writeConfig(t, dir)
	appendConfig(t, path, fmt.Sprintf("tls:\n  cert_file: %s\n  key_file: %s\n  ticket_keys_file: %s\n",
		dev.ServerCertFile, dev.ServerKeyFile, keys))
	if _, err := config.Load(path); err == nil || !strings.Contains(err.Error(), "tls.ticket_keys_file") {
		t.Errorf("missing file: config error %v, want one naming tls.ticket_keys_file", err)
	}
	for _, tc := range []struct {
		content string
		mode    os.FileMode
		want    string
	}{
		{"# keys\nnot-a-key\n", 0o600, "line 2: not base64"},
		{"", 0o644, "mode 0644 lets group or others read it"},
	} {
		if err := os.WriteFile(keys, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(keys, tc.mode)
		if tc.mode != 0o600 {
			// rotate refuses it too, rather than quietly fixing the mode
			if _, err := runCLI(t, "ticket-keys", "rotate", "--file", keys); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rotate of a mode %04o file: %v", tc.mode, err)
			}
		}
		cfg, err := config.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		err = serve(t.Context(), cfg, serveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err == nil || !strings.Contains(err.Error(), keys) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("serve: %v, want an error naming %s and %q", err, keys, tc.want)
		}
		// check-config refuses what serve would refuse at start.
		if _, err := runCLI(t, "check-config", "--config", path); err == nil || !strings.Contains(err.Error(), keys) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("check-config: %v, want an error naming %s and %q", err, keys, tc.want)
		}
	}
	os.Remove(keys)
	if _, err := runCLI(t, "ticket-keys", "rotate", "--file", keys); err != nil {
		t.Fatal(err)
	}
	if out, err := runCLI(t, "check-config", "--config", path); err != nil || !strings.Contains(out, "OK") {
		t.Errorf("check-config with a good ticket key file: %v\n%s", err, out)
	}
	// A certificate that does not pair with its key is refused as well.
	if err := os.WriteFile(dev.ServerKeyFile, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := runCLI(t, "check-config", "--config", path); err == nil || !strings.Contains(err.Error(), "tls") {
		t.Errorf("check-config with a broken key file: %v, want a tls error", err)
	}
}

// TestTicketKeysRotateCommand: `ticket-keys rotate` creates the file with
// mode 0600 and one key, then puts each new key first, keeping --keep old
// ones.
func TestTicketKeysRotateCommand(t *testing.T) {
	keys := filepath.Join(t.TempDir(), "ticket.keys")
	if _, err := runCLI(t, "ticket-keys", "rotate"); err == nil || !strings.Contains(err.Error(), "--file") {
		t.Errorf("without --file: %v", err)
	}
	var want []uint32
	for i := range 4 {
		out, err := runCLI(t, "ticket-keys", "rotate", "--file", keys, "--keep", "2")
		if err != nil {
			t.Fatalf("rotate %d: %v\n%s", i, err, out)
		}
		fi, err := os.Stat(keys)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("rotate %d: mode %v, %v; want 0600", i, fi.Mode(), err)
		}
		f, err := tlsutil.OpenTicketKeyFile(keys, tlsutil.TicketFileOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		ids := f.IDs()
		if !slices.Equal(ids[1:], want[:min(len(want), 2)]) {
			t.Fatalf("rotate %d: keys %08x, want a new one before %08x", i, ids, want)
		}
		want = ids
		if !strings.Contains(out, fmt.Sprintf("new key %08x", ids[0])) || !strings.Contains(out, fmt.Sprintf("%d key", len(ids))) {
			t.Errorf("rotate %d: output %q", i, out)
		}
	}
	if len(want) != 3 {
		t.Errorf("after 4 rotations with --keep 2: %d keys, want 3", len(want))
	}
}
