package bridge

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/config"
)

// ErrBadCredentials is returned for an unknown user or a wrong password; the
// two are not told apart.
var ErrBadCredentials = errors.New("invalid user name or password")

// argon2id parameters for new hashes (RFC 9106's second recommended option).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 4
	argonKeyLen  = 32
)

// HashPassword returns an argon2id PHC string for the config.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// VerifyPassword checks pw against a bcrypt or argon2id hash in constant time.
func VerifyPassword(hash, pw string) bool {
	switch {
	case strings.HasPrefix(hash, "$2"):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, pw)
	}
	return false
}

func verifyArgon2id(hash, pw string) bool {
	parts := strings.Split(hash, "$") // "", argon2id, v=19, m=..,t=..,p=.., salt, key
	if len(parts) != 6 {
		return false
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 {
		return false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 || len(want) > 128 {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// authenticator verifies passwords once and then answers from a cache: iOS
// sends Basic credentials with every CalDAV request and logs in to IMAP on
// every poll, and a bcrypt/argon2id check costs 50-150 ms. The cache key is an
// HMAC of user and password under a per-process random key, so the cache
// never holds a password or an offline-crackable hash of one.
type authenticator struct {
	s   *Service
	key []byte

	mu    sync.Mutex
	cache map[[32]byte]cacheEntry
}

type cacheEntry struct {
	user    string
	expires time.Time
}

const authCacheTTL = 10 * time.Minute

func newAuthenticator(s *Service) *authenticator {
	key := make([]byte, 32)
	rand.Read(key)
	return &authenticator{s: s, key: key, cache: map[[32]byte]cacheEntry{}}
}

func (a *authenticator) reset() {
	a.mu.Lock()
	a.cache = map[[32]byte]cacheEntry{}
	a.mu.Unlock()
}

func (a *authenticator) cacheKey(name, pw string) [32]byte {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write([]byte(pw))
	var k [32]byte
	copy(k[:], m.Sum(nil))
	return k
}

// Authenticate checks a user name and password (the main password or one of
// the user's app passwords) against the current config. protocol labels the
// failure metric ("caldav", "imap", ...).
func (s *Service) Authenticate(protocol, name, pw string) (*config.User, error) {
	cfg := s.Config()
	u := cfg.User(name)
	a := s.auth
	key := a.cacheKey(name, pw)
	now := s.now()
	a.mu.Lock()
	e, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(e.expires) && u != nil {
		s.metrics.LoginCache.WithLabelValues("hit").Inc()
		return u, nil
	}
	s.metrics.LoginCache.WithLabelValues("miss").Inc()
	if u == nil || len(pw) == 0 || len(pw) > 1024 {
		// Burn comparable time so unknown users are not told apart by timing.
		VerifyPassword(dummyHash, pw)
		s.metrics.LoginFailures.WithLabelValues(protocol).Inc()
		return nil, ErrBadCredentials
	}
	ok = VerifyPassword(u.PasswordHash, pw)
	for _, ap := range u.AppPasswords {
		if ok {
			break
		}
		ok = VerifyPassword(ap.Hash, pw)
	}
	if !ok {
		s.metrics.LoginFailures.WithLabelValues(protocol).Inc()
		return nil, ErrBadCredentials
	}
	a.mu.Lock()
	if len(a.cache) > 100_000 { // bound memory; a full cache just costs hashing
		a.cache = map[[32]byte]cacheEntry{}
	}
	a.cache[key] = cacheEntry{user: name, expires: now.Add(authCacheTTL)}
	a.mu.Unlock()
	return u, nil
}

// dummyHash is a bcrypt hash of a random string, used to spend the same time
// on unknown users as on known ones.
var dummyHash = func() string {
	b := make([]byte, 16)
	rand.Read(b)
	h, _ := bcrypt.GenerateFromPassword(b, bcrypt.DefaultCost)
	return string(h)
}()
