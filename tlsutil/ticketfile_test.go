package tlsutil_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/tlsutil"
)

// ticketCache is a client session cache that remembers the last ticket
// received, so a test can see which key id sealed it.
type ticketCache struct {
	tls.ClientSessionCache
	mu     sync.Mutex
	ticket []byte
}

func newTicketCache() *ticketCache {
	return &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(8)}
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		if ticket, _, err := cs.ResumptionState(); err == nil {
			c.mu.Lock()
			c.ticket = ticket
			c.mu.Unlock()
		}
	}
	c.ClientSessionCache.Put(key, cs)
}

// keyID is the id of the key that sealed the last ticket received.
func (c *ticketCache) keyID() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return binary.BigEndian.Uint32(c.ticket)
}

func (c *ticketCache) lastTicket() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ticket)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fileServer is one server process: its own TicketKeys (in-memory keys of
// its own) reading the ticket key file, on a clone of base.
type fileServer struct {
	addr string
	file *tlsutil.TicketKeyFile
	conf *tls.Config
}

func newFileServer(t *testing.T, base *tls.Config, path string, o tlsutil.TicketFileOptions) *fileServer {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quiet
	}
	f, err := tlsutil.OpenTicketKeyFile(path, o)
	if err != nil {
		t.Fatal(err)
	}
	keys := tlsutil.NewTicketKeys(0, -1, nil)
	keys.UseFile(f)
	conf := base.Clone()
	keys.Install(conf)
	return &fileServer{addr: ticketServer(t, conf), file: f, conf: conf}
}

func ticketClient(pool *x509.CertPool, version uint16) (*tls.Config, *ticketCache) {
	cache := newTicketCache()
	return &tls.Config{RootCAs: pool, ServerName: "tasks.example.com", MaxVersion: version, ClientSessionCache: cache}, cache
}

func rotate(t *testing.T, path string, keep int) []uint32 {
	t.Helper()
	ids, err := tlsutil.RotateTicketKeyFile(path, keep)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestTicketFileSharedByReplicasAndRestarts: two servers reading one ticket
// key file resume each other's TLS 1.3 tickets, and so does a server
// started afresh on the file (a restart). TLS 1.2 tickets never use the
// file's keys: they resume on the process that issued them only.
func TestTicketFileSharedByReplicasAndRestarts(t *testing.T) {
	pool, base := ticketWorld(t)
	path := filepath.Join(t.TempDir(), "ticket.keys")
	ids := rotate(t, path, 3)
	a := newFileServer(t, base, path, tlsutil.TicketFileOptions{})
	b := newFileServer(t, base, path, tlsutil.TicketFileOptions{})

	c, cache := ticketClient(pool, tls.VersionTLS13)
	if dial(t, a.addr, c) {
		t.Fatal("first connection resumed")
	}
	if cache.keyID() != ids[0] {
		t.Errorf("TLS 1.3 ticket sealed with key %08x, want the file's first key %08x", cache.keyID(), ids[0])
	}
	if !dial(t, b.addr, c) {
		t.Fatal("TLS 1.3: a ticket from replica A did not resume on replica B")
	}
	c2, _ := ticketClient(pool, tls.VersionTLS13)
	dial(t, a.addr, c2)
	restarted := newFileServer(t, base, path, tlsutil.TicketFileOptions{})
	if !dial(t, restarted.addr, c2) {
		t.Fatal("TLS 1.3: a ticket from before a restart did not resume")
	}

	c12, cache12 := ticketClient(pool, tls.VersionTLS12)
	dial(t, a.addr, c12)
	if slices.Contains(a.file.IDs(), cache12.keyID()) {
		t.Fatalf("TLS 1.2 ticket sealed with the file's key %08x", cache12.keyID())
	}
	ticket12 := cache12.lastTicket()
	if !dial(t, a.addr, c12) {
		t.Fatal("TLS 1.2: a returning client did not resume on the same process")
	}
	c12b, _ := ticketClient(pool, tls.VersionTLS12)
	dial(t, a.addr, c12b)
	if dial(t, b.addr, c12b) {
		t.Fatal("TLS 1.2: a ticket from replica A resumed on replica B")
	}
	c12c, _ := ticketClient(pool, tls.VersionTLS12)
	dial(t, a.addr, c12c)
	if dial(t, newFileServer(t, base, path, tlsutil.TicketFileOptions{}).addr, c12c) {
		t.Fatal("TLS 1.2: a ticket resumed after a restart")
	}

	// Whatever a client sends, a file key never opens a ticket in a TLS
	// 1.2 handshake (crypto/tls passes the negotiated version), and a
	// TLS 1.2 ticket never opens in a TLS 1.3 one.
	c13, cache13 := ticketClient(pool, tls.VersionTLS13)
	dial(t, a.addr, c13)
	ticket13 := cache13.lastTicket()
	if ss, err := a.conf.UnwrapSession(ticket13, tls.ConnectionState{Version: tls.VersionTLS12}); ss != nil || err != nil {
		t.Errorf("a file-key ticket opened in a TLS 1.2 handshake: %v, %v", ss, err)
	}
	if ss, err := a.conf.UnwrapSession(ticket13, tls.ConnectionState{Version: tls.VersionTLS13}); ss == nil || err != nil {
		t.Errorf("a file-key ticket did not open in a TLS 1.3 handshake: %v", err)
	}
	if ss, _ := b.conf.UnwrapSession(ticket12, tls.ConnectionState{Version: tls.VersionTLS13}); ss != nil {
		t.Error("replica B opened replica A's TLS 1.2 ticket")
	}
}

// TestTicketFileRotation: after `ticket-keys rotate` a server seals new
// tickets with the new first key (once its check interval has passed) and
// still opens tickets of the kept keys; a ticket whose key left the file
// gets a full handshake, not an error.
func TestTicketFileRotation(t *testing.T) {
	pool, base := ticketWorld(t)
	path := filepath.Join(t.TempDir(), "ticket.keys")
	first := rotate(t, path, 1)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := newFileServer(t, base, path, tlsutil.TicketFileOptions{CheckInterval: time.Minute, Now: clk.Now})

	old, oldCache := ticketClient(pool, tls.VersionTLS13)
	dial(t, s.addr, old)
	if oldCache.keyID() != first[0] {
		t.Fatalf("ticket sealed with %08x, want %08x", oldCache.keyID(), first[0])
	}
	old2, _ := ticketClient(pool, tls.VersionTLS13)
	dial(t, s.addr, old2)

	second := rotate(t, path, 1)
	if len(second) != 2 || second[1] != first[0] {
		t.Fatalf("after rotation the file holds %08x, want a new key then %08x", second, first[0])
	}
	// Within the check interval the server has not looked yet.
	c, cache := ticketClient(pool, tls.VersionTLS13)
	dial(t, s.addr, c)
	if cache.keyID() != first[0] {
		t.Fatalf("before the check: sealed with %08x, want the old key %08x", cache.keyID(), first[0])
	}
	clk.Advance(time.Minute)
	c, cache = ticketClient(pool, tls.VersionTLS13)
	dial(t, s.addr, c)
	if cache.keyID() != second[0] {
		t.Fatalf("after the check: sealed with %08x, want the new first key %08x", cache.keyID(), second[0])
	}
	if !slices.Equal(s.file.IDs(), second) {
		t.Fatalf("server uses keys %08x, want %08x", s.file.IDs(), second)
	}
	if !dial(t, s.addr, old) {
		t.Fatal("a ticket of the kept old key did not resume")
	}
	// The next rotation (keep 1) drops the first key: its tickets get a
	// full handshake.
	third := rotate(t, path, 1)
	clk.Advance(time.Minute)
	if dial(t, s.addr, old2) {
		t.Fatal("a ticket of a key no longer in the file resumed")
	}
	if !dial(t, s.addr, c) {
		t.Fatal("a ticket of the second key (still in the file) did not resume")
	}
	if !slices.Equal(s.file.IDs(), third) {
		t.Fatalf("server uses keys %08x, want %08x", s.file.IDs(), third)
	}
}

// TestTicketFileRefused: a missing, malformed or group/other-readable file
// is refused with an error naming the file and the problem; a bad change
// keeps the previous keys, is logged and counted once.
func TestTicketFileRefused(t *testing.T) {
	dir := t.TempDir()
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct {
		name, content string
		mode          os.FileMode
		want          string
	}{
		{"group-readable", key + "\n", 0o640, "mode 0640 lets group or others read it"},
		{"world-readable", key + "\n", 0o604, "mode 0604"},
		{"not base64", "# keys\n\n" + key + "\nnot*base64\n", 0o600, "line 4: not base64"},
		{"short key", key + "\n" + short + "\n", 0o600, "line 2: key is 16 bytes, want 32"},
		{"duplicate", key + "\n#\n" + key + "\n", 0o600, "line 3: the same key as line 1"},
		{"empty", "# nothing yet\n\n", 0o600, "no keys"},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(path, tc.mode) // past the umask
		_, err := tlsutil.OpenTicketKeyFile(path, tlsutil.TicketFileOptions{Logger: quiet})
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s and %q", tc.name, err, path, tc.want)
		}
	}
	missing := filepath.Join(dir, "missing")
	if _, err := tlsutil.OpenTicketKeyFile(missing, tlsutil.TicketFileOptions{}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}

	// A bad change keeps the keys in use.
	pool, base := ticketWorld(t)
	path := filepath.Join(dir, "ticket.keys")
	ids := rotate(t, path, 3)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	var reported []error
	var mu sync.Mutex
	s := newFileServer(t, base, path, tlsutil.TicketFileOptions{CheckInterval: time.Minute, Now: clk.Now,
		OnError: func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() }})
	c, cache := ticketClient(pool, tls.VersionTLS13)
	dial(t, s.addr, c)
	writeAtomic(t, path, "garbage\n", 0o600)
	clk.Advance(time.Minute)
	if !dial(t, s.addr, c) {
		t.Fatal("after a bad change, a ticket of the previous keys did not resume")
	}
	if cache.keyID() != ids[0] || !slices.Equal(s.file.IDs(), ids) {
		t.Fatalf("after a bad change the keys are %08x (sealed with %08x), want %08x", s.file.IDs(), cache.keyID(), ids)
	}
	clk.Advance(time.Minute)
	dial(t, s.addr, c) // the same bad file again: not reported again
	mu.Lock()
	if len(reported) != 1 || !strings.Contains(reported[0].Error(), "line 1: not base64") {
		t.Errorf("reported %v, want the one bad change (line 1)", reported)
	}
	mu.Unlock()
	if err := s.file.Reload(); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Reload of a bad file: %v", err)
	}
	// A bad mode on a change is refused the same way.
	writeAtomic(t, path, key+"\n", 0o644)
	if err := s.file.Reload(); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Errorf("Reload of a world-readable file: %v", err)
	}
	if !slices.Equal(s.file.IDs(), ids) {
		t.Errorf("keys changed to %08x after refused reloads", s.file.IDs())
	}
	// Fixed: the next check takes the new keys.
	writeAtomic(t, path, key+"\n", 0o600)
	clk.Advance(time.Minute)
	dial(t, s.addr, c)
	if want := []uint32{tlsutil.TicketKeyID(make([]byte, 32))}; !slices.Equal(s.file.IDs(), want) {
		t.Errorf("after the fix the keys are %08x, want %08x", s.file.IDs(), want)
	}
}

// TestRotateTicketKeyFile: rotate creates the file 0600 with one key, puts
// each new key first and keeps at most keep older ones, and leaves an
// unusable file alone.
func TestRotateTicketKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ticket.keys")
	var all []uint32
	for i := range 5 {
		ids := rotate(t, path, 2)
		all = append([]uint32{ids[0]}, all...)
		if want := all[:min(len(all), 3)]; !slices.Equal(ids, want) {
			t.Fatalf("rotation %d: ids %08x, want %08x", i, ids, want)
		}
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("rotation %d: %v mode %v", i, err, fi.Mode())
		}
		f, err := tlsutil.OpenTicketKeyFile(path, tlsutil.TicketFileOptions{Logger: quiet})
		if err != nil || !slices.Equal(f.IDs(), ids) {
			t.Fatalf("rotation %d: the file reads back as %v, %v", i, f, err)
		}
	}
	if _, err := tlsutil.RotateTicketKeyFile(path, -1); err == nil {
		t.Error("keep -1 accepted")
	}
	os.Chmod(path, 0o644)
	before, _ := os.ReadFile(path)
	if _, err := tlsutil.RotateTicketKeyFile(path, 2); err == nil || !strings.Contains(err.Error(), "mode 0644") {
		t.Errorf("rotate of a world-readable file: %v", err)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a refused rotation changed the file")
	}
}

func writeAtomic(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
