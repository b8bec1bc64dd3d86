package tlsutil

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A ticket key file (tls.ticket_keys_file) holds session ticket keys that
// outlive the process and are shared by every replica, as nginx's
// ssl_session_ticket_key and HAProxy's tls-ticket-keys do: a phone whose
// poll lands on another replica, or on this one after a restart, resumes
// instead of making a full handshake.
//
// Format: one key a line, the standard base64 of 32 random bytes; blank
// lines and lines starting with # are ignored. The first key seals new
// tickets, every key opens them. The file holds secrets, so it must not be
// readable by group or others.
//
// The file's keys seal TLS 1.3 tickets only. A TLS 1.3 resumption
// (psk_dhe_ke, the only mode crypto/tls offers) makes a fresh ECDHE
// exchange, so a stolen ticket key does not decrypt recorded traffic; a
// TLS 1.2 ticket carries the master secret itself, so a stolen key would.
// TLS 1.2 sessions stay with the in-memory keys of TicketKeys.

// ticketKeyLen is the length of one key in the file: an AES-256-GCM key.
const ticketKeyLen = 32

// fileTicketAAD is bound into every ticket sealed with a file key (after
// the key id), so such a ticket never opens as anything but a TLS 1.3
// ticket of a file key.
const fileTicketAAD = "duebridge ticket key file, TLS 1.3"

// TicketKeyID is the 4-byte id a ticket carries for key: derived from the
// key (SHA-256 with a label, so the id says nothing about the AES key), so
// that every replica reading the same file gives a key the same id.
func TicketKeyID(key []byte) uint32 {
	h := sha256.New()
	h.Write([]byte("duebridge ticket key id\x00"))
	h.Write(key)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// TicketFileOptions adjusts a TicketKeyFile; the zero value is usable.
type TicketFileOptions struct {
	// CheckInterval: at most this often a handshake looks whether the file
	// changed (its identity, size, mode and modification time); it is read
	// only when they did. Zero: DefaultCheckInterval; negative: never (then
	// only Reload does).
	CheckInterval time.Duration
	// Logger reports reloads and refused contents (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock for the check interval (default time.Now).
	Now func() time.Time
	// OnError is called once for every change of the file that could not
	// be used (the previous keys stay); for a metric.
	OnError func(error)
}

// TicketKeyFile serves the keys of a ticket key file and picks up changes
// at most once per check interval, keeping the previous keys when the new
// content is unusable. Safe for concurrent use.
type TicketKeyFile struct {
	path      string
	log       *slog.Logger
	onError   func(error)
	fileCheck // interval, clock, last check

	cur atomic.Pointer[fileKeySet]

	mu      sync.Mutex // serialises checks; guards seen, seenErr
	seen    fs.FileInfo
	seenErr error
}

type fileKeySet struct {
	keys []ticketKey // the sealing key first
	sum  [sha256.Size]byte
}

// OpenTicketKeyFile reads the ticket key file at path. It fails, naming the
// file (and the line), when the file is missing, unreadable, readable by
// group or others, or holds no valid key.
func OpenTicketKeyFile(path string, o TicketFileOptions) (*TicketKeyFile, error) {
	f := &TicketKeyFile{path: path, log: o.Logger, onError: o.OnError, fileCheck: fileCheck{interval: o.CheckInterval, now: o.Now}}
	if f.interval == 0 {
		f.interval = DefaultCheckInterval
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	if f.now == nil {
		f.now = time.Now
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	set, err := f.read(fi)
	if err != nil {
		return nil, err
	}
	f.cur.Store(set)
	f.seen = fi
	f.started()
	f.log.Info("TLS session ticket keys loaded", "ticket_keys_file", path, "keys", len(set.keys),
		"sealing_key_id", fmt.Sprintf("%08x", set.keys[0].id))
	return f, nil
}

// Path is the file's path.
func (f *TicketKeyFile) Path() string { return f.path }

// IDs returns the ids of the keys in use, the sealing key's first.
func (f *TicketKeyFile) IDs() []uint32 {
	var ids []uint32
	for _, k := range f.cur.Load().keys {
		ids = append(ids, k.id)
	}
	return ids
}

// Reload reads the file now, changed or not, and switches to its keys when
// they are usable; otherwise the previous keys stay and the error (naming
// the file) is returned, neither logged nor counted.
func (f *TicketKeyFile) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started()
	fi, err := os.Stat(f.path)
	f.seen, f.seenErr = fi, err
	if err != nil {
		return err
	}
	set, err := f.read(fi)
	if err != nil {
		return err
	}
	f.swap(set)
	return nil
}

// keys returns the keys in use, first looking (at most once per check
// interval) whether the file changed.
func (f *TicketKeyFile) keys() []ticketKey {
	f.maybeCheck()
	return f.cur.Load().keys
}

func (f *TicketKeyFile) maybeCheck() {
	if !f.lockDue(&f.mu) {
		return
	}
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if sameInfo(fi, f.seen) && sameErr(err, f.seenErr) {
		return
	}
	f.seen, f.seenErr = fi, err
	if err == nil {
		var set *fileKeySet
		if set, err = f.read(fi); err == nil {
			f.swap(set)
			return
		}
	}
	// Reported once per change of the file: the next check sees the
	// same state and stays quiet until someone fixes it.
	f.log.Error("TLS session ticket key file changed but cannot be used; keeping the previous keys",
		"ticket_keys_file", f.path, "error", err)
	if f.onError != nil {
		f.onError(err)
	}
}

func (f *TicketKeyFile) swap(set *fileKeySet) {
	if old := f.cur.Load(); old != nil && old.sum == set.sum {
		return
	}
	f.cur.Store(set)
	f.log.Info("TLS session ticket keys reloaded", "ticket_keys_file", f.path, "keys", len(set.keys),
		"sealing_key_id", fmt.Sprintf("%08x", set.keys[0].id))
}

// read checks the mode in fi, then reads and parses the file.
func (f *TicketKeyFile) read(fi fs.FileInfo) (*fileKeySet, error) {
	if err := checkSecretMode(f.path, fi); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	if old := f.cur.Load(); old != nil && old.sum == sum {
		return old, nil
	}
	raw, err := ParseTicketKeys(data)
	if err != nil {
		return nil, &fs.PathError{Op: "read ticket keys", Path: f.path, Err: err}
	}
	set := &fileKeySet{sum: sum}
	for _, k := range raw {
		set.keys = append(set.keys, newTicketKey(TicketKeyID(k[:]), k[:], time.Time{}))
	}
	return set, nil
}

// checkSecretMode refuses a file that group or others may read or write, as
// ssh does for a private key.
func checkSecretMode(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return &fs.PathError{Op: "read ticket keys", Path: path, Err: errors.New("not a regular file")}
	}
	if runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		return &fs.PathError{Op: "read ticket keys", Path: path,
			Err: fmt.Errorf("mode %04o lets group or others read it; it holds secrets: chmod 600 %s", fi.Mode().Perm(), path)}
	}
	return nil
}

// ParseTicketKeys parses the content of a ticket key file: the keys in
// file order. An error names the line.
func ParseTicketKeys(data []byte) ([][ticketKeyLen]byte, error) {
	var keys [][ticketKeyLen]byte
	seen := map[[ticketKeyLen]byte]int{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64: %v", n, err)
		}
		if len(b) != ticketKeyLen {
			return nil, fmt.Errorf("line %d: key is %d bytes, want %d (base64 of 32 random bytes: duebridge ticket-keys rotate makes them)", n, len(b), ticketKeyLen)
		}
		k := [ticketKeyLen]byte(b)
		if first, dup := seen[k]; dup {
			return nil, fmt.Errorf("line %d: the same key as line %d", n, first)
		}
		seen[k] = n
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys (one base64 key a line; duebridge ticket-keys rotate makes them)")
	}
	return keys, nil
}

// RotateTicketKeyFile puts a new random key first in the ticket key file at
// path, keeping at most keep of the keys already there (the newest, which
// come first), and writes it atomically with mode 0600; a missing file is
// created with the one key. An existing file that is unusable (bad content,
// readable by others) is left alone and the error returned. It returns the
// ids of the keys now in the file, the new sealing key's first. Comments in
// the old file are not kept.
func RotateTicketKeyFile(path string, keep int) ([]uint32, error) {
	if keep < 0 {
		return nil, fmt.Errorf("keep %d: must be 0 or more", keep)
	}
	var old [][ticketKeyLen]byte
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, err
	default:
		if err := checkSecretMode(path, fi); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if old, err = ParseTicketKeys(data); err != nil {
			return nil, &fs.PathError{Op: "read ticket keys", Path: path, Err: err}
		}
	}
	var k [ticketKeyLen]byte
	rand.Read(k[:])
	keys := append([][ticketKeyLen]byte{k}, old[:min(keep, len(old))]...)

	var b strings.Builder
	b.WriteString("# duebridge TLS session ticket keys (tls.ticket_keys_file), written by\n")
	b.WriteString("# `duebridge ticket-keys rotate`. The first key seals new tickets, every\n")
	b.WriteString("# key opens them. Secret: keep this file mode 0600.\n")
	ids := make([]uint32, 0, len(keys))
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k[:]))
		b.WriteByte('\n')
		ids = append(ids, TicketKeyID(k[:]))
	}
	if err := writeFileAtomic(path, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	return ids, nil
}

func newTicketKey(id uint32, raw []byte, created time.Time) ticketKey {
	block, err := aes.NewCipher(raw)
	if err != nil {
		panic(err) // callers pass 32 bytes
	}
	aead, _ := cipher.NewGCM(block)
	return ticketKey{id: id, aead: aead, created: created}
}
