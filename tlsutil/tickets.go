package tlsutil

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"sync"
	"time"
)

// Session tickets let a returning client (a phone polling every few
// minutes, one TLS connection per poll) resume: the server skips the
// certificate signature and the client its verification. crypto/tls does
// tickets by default, but with a key per tls.Config, so the HTTPS, IMAPS
// and submission listeners (clones of one Config) could not resume each
// other's tickets, and its rotation is implicit. TicketKeys makes it
// explicit: one set of keys for every Config it is installed on, a new key
// every rotate interval, the previous ones kept for decryption for keep
// intervals more. Keys live in memory only: a restart costs each phone
// one full handshake, and a stolen disk yields no ticket key. With a
// ticket key file (UseFile) TLS 1.3 tickets use the file's keys instead,
// which survive restarts and are shared by replicas (see ticketfile.go).

// Defaults for NewTicketKeys: a ticket is resumable for 18 to 24 hours,
// well beyond iOS's polling intervals.
const (
	DefaultTicketRotate = 6 * time.Hour
	DefaultTicketKeep   = 3
)

// TicketKeys encrypts and decrypts session tickets for every tls.Config it
// is installed on. Safe for concurrent use.
type TicketKeys struct {
	rotate time.Duration
	keep   int
	now    func() time.Time

	// file, when set, seals and opens TLS 1.3 tickets.
	file *TicketKeyFile

	mu    sync.Mutex
	keys  []ticketKey // newest first
	next  uint32
	force bool // Rotate was called
}

type ticketKey struct {
	id      uint32
	aead    cipher.AEAD
	created time.Time
}

// NewTicketKeys returns keys that rotate every rotate (<= 0: the default)
// and keep keep older keys for decryption (< 0: the default). now is the
// clock (nil: time.Now).
func NewTicketKeys(rotate time.Duration, keep int, now func() time.Time) *TicketKeys {
	if rotate <= 0 {
		rotate = DefaultTicketRotate
	}
	if keep < 0 {
		keep = DefaultTicketKeep
	}
	if now == nil {
		now = time.Now
	}
	return &TicketKeys{rotate: rotate, keep: keep, now: now}
}

// UseFile makes the keys of f seal TLS 1.3 tickets and open them (besides
// the in-memory keys); TLS 1.2 tickets stay with the in-memory keys and
// never open with f's keys. Call it before Install.
func (k *TicketKeys) UseFile(f *TicketKeyFile) { k.file = f }

// Install makes c (and Configs cloned from it afterwards) use these keys
// for session tickets, in TLS 1.2 and 1.3.
func (k *TicketKeys) Install(c *tls.Config) {
	c.SessionTicketsDisabled = false
	c.WrapSession = k.wrap
	c.UnwrapSession = k.unwrap
}

// current returns the key new tickets are sealed with, rotating (and
// dropping keys past the window) when it is due. Rotation is lazy: no
// goroutine, and an idle server makes no keys.
func (k *TicketKeys) current() ticketKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	k.expireLocked(now)
	if len(k.keys) == 0 || now.Sub(k.keys[0].created) >= k.rotate || k.force {
		k.force = false
		var raw [32]byte
		rand.Read(raw[:])
		k.next++
		k.keys = append([]ticketKey{newTicketKey(k.next, raw[:], now)}, k.keys...)
		k.expireLocked(now)
	}
	return k.keys[0]
}

// expireLocked drops keys older than (keep+1) rotate intervals, and all but
// the newest keep+1: a ticket is resumable for at most that long.
func (k *TicketKeys) expireLocked(now time.Time) {
	maxAge := time.Duration(k.keep+1) * k.rotate
	for i := range k.keys {
		if i > k.keep || now.Sub(k.keys[i].created) >= maxAge {
			k.keys = k.keys[:i]
			return
		}
	}
}

// Rotate makes a new key for new tickets now; the old ones still decrypt
// within their window. (It does not touch a ticket key file's keys.)
func (k *TicketKeys) Rotate() {
	k.mu.Lock()
	k.force = true
	k.mu.Unlock()
	k.current()
}

// memoryKeys returns the in-memory keys within the window. The slice's
// elements are never written after it is returned (current prepends into a
// new array, expireLocked only shortens), so it is read without the lock.
func (k *TicketKeys) memoryKeys() []ticketKey {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expireLocked(k.now())
	return k.keys
}

// ticket layout: key id (4 bytes) | GCM nonce | sealed session state. The
// id is the additional data, followed by fileTicketAAD for a file key.
func (k *TicketKeys) wrap(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
	state, err := ss.Bytes()
	if err != nil {
		return nil, err
	}
	// cs.Version is the negotiated version: crypto/tls sets it from the
	// ClientHello before either handshake calls WrapSession/UnwrapSession.
	var key ticketKey
	var label string
	if k.file != nil && cs.Version == tls.VersionTLS13 {
		key, label = k.file.keys()[0], fileTicketAAD
	} else {
		key = k.current()
	}
	out := make([]byte, 4, 4+key.aead.NonceSize()+len(state)+key.aead.Overhead())
	binary.BigEndian.PutUint32(out, key.id)
	nonce := make([]byte, key.aead.NonceSize())
	rand.Read(nonce)
	out = append(out, nonce...)
	return key.aead.Seal(out, nonce, state, append(out[:4:4], label...)), nil
}

// unwrap returns (nil, nil) for a ticket it cannot open (an old key, a
// restart, garbage): crypto/tls then does a full handshake. A file key
// opens only in a TLS 1.3 handshake, and only tickets sealed as such.
func (k *TicketKeys) unwrap(ticket []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
	if len(ticket) < 4 {
		return nil, nil
	}
	id := binary.BigEndian.Uint32(ticket)
	// Ids of file keys and in-memory keys may collide (1 in 2^32 per
	// pair): try every key with the id; the AEAD tells which one sealed it.
	if k.file != nil && cs.Version == tls.VersionTLS13 {
		if ss := open(k.file.keys(), id, ticket, fileTicketAAD); ss != nil {
			return ss, nil
		}
	}
	return open(k.memoryKeys(), id, ticket, ""), nil
}

func open(keys []ticketKey, id uint32, ticket []byte, label string) *tls.SessionState {
	for _, key := range keys {
		if key.id != id || len(ticket) < 4+key.aead.NonceSize() {
			continue
		}
		nonce := ticket[4 : 4+key.aead.NonceSize()]
		state, err := key.aead.Open(nil, nonce, ticket[4+key.aead.NonceSize():], append(ticket[:4:4], label...))
		if err != nil {
			continue
		}
		if ss, err := tls.ParseSessionState(state); err == nil {
			return ss
		}
	}
	return nil
}
