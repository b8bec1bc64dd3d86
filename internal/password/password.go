// Package password holds duebridge's password formats: argon2id (and
// bcrypt) hashes of the passwords in the config, the shape of a hash (so a
// refusal can cost what a real check costs), and the form of the random
// device passwords /setup issues. It is a leaf: no state, no store.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// A device password is "dbp-<id>-<secret>": id (64 bits) is not secret and
// finds the stored row, secret is 160 random bits.
const (
	devicePrefix  = "dbp-"
	deviceIDBytes = 8
	// deviceSecretBytes: 160 bits, beyond guessing online or offline.
	deviceSecretBytes = 20
)

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewDevice returns a new random device password and its two parts.
func NewDevice() (id, secret, pw string) {
	idb := make([]byte, deviceIDBytes)
	sec := make([]byte, deviceSecretBytes)
	rand.Read(idb)
	rand.Read(sec)
	id, secret = strings.ToLower(b32.EncodeToString(idb)), strings.ToLower(b32.EncodeToString(sec))
	return id, secret, devicePrefix + id + "-" + secret
}

// ParseDevice splits a device password; ok is false for anything
// else (a user's own password, say).
func ParseDevice(pw string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(pw, devicePrefix)
	if !found {
		return "", "", false
	}
	id, secret, found = strings.Cut(rest, "-")
	if !found || len(id) != b32.EncodedLen(deviceIDBytes) || len(secret) != b32.EncodedLen(deviceSecretBytes) {
		return "", "", false
	}
	if _, err := b32.DecodeString(strings.ToUpper(id)); err != nil {
		return "", "", false
	}
	if _, err := b32.DecodeString(strings.ToUpper(secret)); err != nil {
		return "", "", false
	}
	return id, secret, true
}

// IsDevice reports whether pw has the form of a device password.
func IsDevice(pw string) bool {
	_, _, ok := ParseDevice(pw)
	return ok
}

// argon2id parameters for new hashes (RFC 9106's second recommended option).
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 4
	argonKeyLen  = 32
)

// Hash returns an argon2id PHC string for the config.
func Hash(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("read salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify checks pw against a bcrypt or argon2id hash in constant time.
func Verify(hash, pw string) bool {
	switch {
	case strings.HasPrefix(hash, "$2"):
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	case strings.HasPrefix(hash, "$argon2id$"):
		return verifyArgon2id(hash, pw)
	}
	return false
}

type argonParams struct {
	m, t uint32
	p    uint8
}

// parseArgon2id splits a PHC string into parameters, salt and key.
func parseArgon2id(hash string) (argonParams, []byte, []byte, bool) {
	var ap argonParams
	parts := strings.Split(hash, "$") // "", argon2id, v=19, m=..,t=..,p=.., salt, key
	if len(parts) != 6 {
		return ap, nil, nil, false
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return ap, nil, nil, false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &ap.m, &ap.t, &ap.p); err != nil ||
		ap.m == 0 || ap.t == 0 || ap.p == 0 || ap.m > 1<<22 {
		return ap, nil, nil, false
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	key, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(key) == 0 || len(key) > 128 {
		return ap, nil, nil, false
	}
	return ap, salt, key, true
}

func verifyArgon2id(hash, pw string) bool {
	ap, salt, want, ok := parseArgon2id(hash)
	if !ok {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, ap.t, ap.m, ap.p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// DefaultShape is bcrypt at the default cost, for hashes of no known shape.
const DefaultShape = "$2a$10$"

// Shape is the algorithm and cost part of a hash: "$2a$12$" or
// "$argon2id$v=19$m=65536,t=3,p=4$".
func Shape(hash string) string {
	if strings.HasPrefix(hash, "$2") {
		if c, err := bcrypt.Cost([]byte(hash)); err == nil {
			return fmt.Sprintf("$2a$%02d$", c)
		}
	}
	if ap, _, _, ok := parseArgon2id(hash); ok {
		return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$", argon2.Version, ap.m, ap.t, ap.p)
	}
	return DefaultShape
}

// ShapeMemo is Shape for many hashes (a config's), parsed once per
// parameter prefix ("$argon2id$v=19$m=65536,t=3,p=4$", "$2a$10$") rather
// than once per hash: a million users' hashes share a few. A malformed
// hash behind a known prefix (config.Load refuses those) can get its
// prefix's shape here; it can match no password anyway.
type ShapeMemo map[string]string

// Of is Shape(hash).
func (m ShapeMemo) Of(hash string) string {
	var prefix string
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		if i := nthIndex(hash, '$', 4); i > 0 {
			prefix = hash[:i+1]
		}
	case strings.HasPrefix(hash, "$2") && len(hash) >= 7:
		prefix = hash[:7]
	}
	if prefix == "" {
		return Shape(hash)
	}
	sh, ok := m[prefix]
	if !ok {
		sh = Shape(hash)
		m[prefix] = sh
	}
	return sh
}

// nthIndex is the index of the n-th (1-based) c in s, or -1.
func nthIndex(s string, c byte, n int) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}

// Dummy returns a hash of a random password with the given shape: checking
// a password against it costs what checking against a real hash of that
// shape costs, so a refusal for an unknown user takes as long as one for a
// wrong password.
func Dummy(shape string) string {
	pw := make([]byte, 16)
	rand.Read(pw)
	if ap, _, _, ok := parseArgon2id(shape + "AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); ok {
		salt := make([]byte, 16)
		rand.Read(salt)
		key := argon2.IDKey(pw, salt, ap.t, ap.m, ap.p, argonKeyLen)
		b64 := base64.RawStdEncoding
		return shape + b64.EncodeToString(salt) + "$" + b64.EncodeToString(key)
	}
	cost := bcrypt.DefaultCost
	fmt.Sscanf(strings.TrimPrefix(shape, "$2a$"), "%d", &cost)
	h, err := bcrypt.GenerateFromPassword(pw, cost)
	if err != nil {
		h, _ = bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)
	}
	return string(h)
}
