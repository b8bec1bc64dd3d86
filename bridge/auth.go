package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/password"
)

// ErrBadCredentials is returned for an unknown user or a wrong password; the
// two are not told apart. A refusal because of a lock-out matches it too
// (errors.Is), so callers that only know this error still refuse the login.
var ErrBadCredentials = errors.New("invalid user name or password")

// ErrLockedOut matches (errors.Is) the error AuthenticateFrom returns while
// the user name or the client address is locked out; errors.As with a
// *LockoutError gives the time the lock ends.
var ErrLockedOut = errors.New("too many failed logins; try again later")

// LockoutError is the refusal while a lock-out is in force. The password was
// not checked. It does not say whether the user or the address is locked,
// which would tell an attacker which of the two to change.
type LockoutError struct {
	// Until is when the lock ends (by the service clock).
	Until time.Time
}

func (e *LockoutError) Error() string { return ErrLockedOut.Error() }

// Is makes a lock-out match both ErrLockedOut and ErrBadCredentials.
func (e *LockoutError) Is(target error) bool {
	return target == ErrLockedOut || target == ErrBadCredentials
}

// RetryAfter is how long from now the lock lasts, rounded up to a second and
// at least one (for an HTTP Retry-After header).
func (e *LockoutError) RetryAfter(now time.Time) time.Duration {
	d := e.Until.Sub(now)
	if d < time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// authenticator verifies passwords once and then answers from a cache: iOS
// sends Basic credentials with every CalDAV request and logs in to IMAP on
// every poll, and a bcrypt/argon2id check costs 50-150 ms. The cache key is an
// HMAC of user and password under a per-process random key, so the cache
// never holds a password or an offline-crackable hash of one, and looking a
// key up in the map leaks nothing an attacker could use through timing.
//
// It also keeps the login protection (guard) and bounds how many hash
// verifications run at once: an argon2id check takes 64 MiB, so a burst of
// wrong passwords could otherwise exhaust memory. Cache hits bypass that
// bound, so phones that already logged in keep working during an attack.
type authenticator struct {
	s     *Service
	key   []byte
	hashq chan struct{} // semaphore for hash verifications
	guard *guard
	m     *authMetrics

	// verifyHash is password.Verify and verifyDevice the device step
	// (devices.verify); tests see through them which checks a login costs.
	verifyHash   func(hash, pw string) bool
	verifyDevice func(ctx context.Context, name, pw string) bool

	mu      sync.Mutex
	cache   map[[32]byte]cacheEntry
	dummies map[string]string // hash "shape" → dummy hash of that shape

	planMu  sync.Mutex
	planCfg *config.Config // the config plan was made for
	plan    []planStep
}

type cacheEntry struct {
	user    string
	expires time.Time // slides forward on every hit, up to hardLimit
	limit   time.Time // when the entry goes however often it is used
}

const (
	// authCacheTTL is how long an unused verified login is remembered. It
	// must outlast iOS's 15-minute background fetch: at 10 minutes every
	// poll of every phone paid an argon2id check, which capped a 2-core node
	// at ~15 polls/s. Each hit slides it forward, up to authCacheMaxAge
	// after the password was last really checked.
	authCacheTTL    = 20 * time.Minute
	authCacheMaxAge = 12 * time.Hour
	// authCacheMax bounds the cache (one entry per device and password).
	authCacheMax = 500_000
	// maxFailureDelay caps the growing delay on failures (unless
	// limits.login_failure_delay alone is longer), so a client that
	// mistyped a few times is slowed, not timed out.
	maxFailureDelay = 10 * time.Second
	// trustTTL is how long a successful login from an address exempts that
	// address from a lock on the same user name: the user's own phone keeps
	// working while someone elsewhere guesses at the account.
	trustTTL = 7 * 24 * time.Hour
	// maxPasswordBytes: longer "passwords" are refused before hashing;
	// bcrypt ignores bytes past 72 anyway.
	maxPasswordBytes = 1024
)

func newAuthenticator(s *Service) *authenticator {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		// crypto/rand does not fail on supported platforms; a zero key
		// would make cache keys guessable, so do not go on.
		panic(fmt.Sprintf("bridge: read random cache key: %v", err))
	}
	a := &authenticator{
		s:       s,
		key:     key,
		hashq:   make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		guard:   newGuard(s.st),
		m:       newAuthMetrics(s),
		cache:   map[[32]byte]cacheEntry{},
		dummies: map[string]string{},

		verifyHash: password.Verify,
	}
	if s.devices != nil {
		a.verifyDevice = s.devices.verify
	}
	return a
}

// reset drops cached verifications (on a config change: a removed user or
// revoked app password must stop working at once). Lock-outs stay: editing
// the config must not set an attacker free.
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

// Authenticate is AuthenticateFrom without a client address (and without a
// context): only the per-user protection applies. Prefer AuthenticateFrom.
func (s *Service) Authenticate(protocol, name, pw string) (*config.User, error) {
	return s.AuthenticateFrom(context.Background(), protocol, name, pw, "")
}

// AuthenticateFrom checks a user name and password (the main password or one
// of the user's app passwords) against the current config, with the login
// protection every protocol shares:
//
//   - A failed attempt is answered only after a delay that grows with the
//     recent failures of that user name and of that client address
//     (limits.login_failure_delay per failure, at most 10 s unless the
//     configured delay is longer).
//   - limits.lockout_failures failures of one user name, or from one client
//     address, within limits.lockout_window lock it for lockout_window.
//     While locked, attempts are refused with a *LockoutError without
//     checking the password, so guessing makes no progress. A user lock does
//     not apply to addresses the user logged in from successfully in the
//     last 7 days, so the user's own devices keep working.
//
// protocol labels logs and metrics ("caldav", "imap", "smtp", "setup").
// remoteAddr is the client's address as net.Conn.RemoteAddr().String() or
// http.Request.RemoteAddr give it ("ip:port"); IPv6 clients are grouped by
// /64, which is what one attacker typically controls. "" skips the
// per-address protection. The password is never logged. ctx only cuts a
// delay short (the client went away); the attempt has been counted by then.
//
// Errors: ErrBadCredentials, or a *LockoutError (which matches
// ErrBadCredentials and ErrLockedOut), or ctx's error.
func (s *Service) AuthenticateFrom(ctx context.Context, protocol, name, pw, remoteAddr string) (*config.User, error) {
	cfg := s.Config()
	a := s.auth
	lim := limitsOf(cfg)
	client := clientKey(remoteAddr)
	now := s.Now()

	if until, locked := a.guard.locked(name, client, now); locked {
		a.m.refused.WithLabelValues(protocol).Inc()
		s.log.Debug("login refused: locked out", "protocol", protocol, "user", logName(name), "client", client,
			"until", until.UTC().Format(time.RFC3339))
		// The base delay slows clients that retry in a tight loop.
		if err := sleepCtx(ctx, lim.delay); err != nil {
			return nil, err
		}
		return nil, &LockoutError{Until: until}
	}

	u := cfg.User(name)
	// Device passwords never go through this cache: a revoked one must
	// stop at once, and their own check (devices.verify, which remembers
	// store rows it can evict on revocation) costs no more than a lookup.
	shaped := password.IsDevice(pw)
	// The cache key (an HMAC) is made only where it is used: a device
	// password's login that succeeds, every phone's poll, needs none; every
	// refusal makes it once, whatever the password's shape.
	var key [32]byte
	if !shaped {
		key = a.cacheKey(name, pw)
		a.mu.Lock()
		e, ok := a.cache[key]
		ok = ok && now.Before(e.expires) && now.Before(e.limit) && u != nil
		if ok {
			e.expires = now.Add(authCacheTTL)
			a.cache[key] = e
		}
		a.mu.Unlock()
		if ok {
			s.metrics.LoginCache.WithLabelValues("hit").Inc()
			a.guard.success(name, client, now)
			return u, nil
		}
		s.metrics.LoginCache.WithLabelValues("miss").Inc()
	}

	ok, err := a.check(ctx, cfg, u, name, pw)
	if err != nil {
		return nil, err
	}
	now = s.Now() // hashing and queueing took time
	if !ok {
		if shaped {
			key = a.cacheKey(name, pw)
		}
		return nil, a.failed(ctx, protocol, name, client, attempt(key), lim, now)
	}
	a.guard.success(name, client, now)
	if shaped {
		return u, nil
	}
	a.mu.Lock()
	if len(a.cache) >= authCacheMax {
		// Drop what has expired; if that is not enough, start over (a full
		// cache only costs hashing, never a wrong answer).
		for k, e := range a.cache {
			if !now.Before(e.expires) || !now.Before(e.limit) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= authCacheMax {
			a.cache = map[[32]byte]cacheEntry{}
		}
	}
	a.cache[key] = cacheEntry{user: name, expires: now.Add(authCacheTTL), limit: now.Add(authCacheMaxAge)}
	a.mu.Unlock()
	return u, nil
}

// check is a login not answered from the cache: the device step (one HMAC,
// and a store read unless the device's row is remembered; devices.verify),
// and unless that matched,
// the hash plan (verify). Every refusal runs both, whatever the password's
// shape and whether the name exists, so a wrong device password costs what
// any refused login costs. The device step comes first and outside the
// hash semaphore, so phones with device passwords never queue behind
// argon2id checks (a restart storm costs microseconds per phone).
func (a *authenticator) check(ctx context.Context, cfg *config.Config, u *config.User, name, pw string) (bool, error) {
	if a.verifyDevice != nil && a.verifyDevice(ctx, name, pw) && u != nil {
		return true, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return a.verify(ctx, cfg, u, pw)
}

// verify checks pw against u's main and app passwords, at most len(hashq)
// verifications at a time.
//
// A refusal costs the same wall time whoever is asked for: it runs the
// config's refusal plan (refusalPlan), the same sequence of (algorithm,
// cost) checks for an unknown name, a bcrypt user, an argon2id user and a
// user with app passwords. The user's own hashes take the places of dummy
// checks of their shape. Padding to a count was not enough: a bcrypt check
// is ~50 ms cheaper than an argon2id one, so a refused bcrypt user answered
// faster than an unknown name shaped like users[0].
func (a *authenticator) verify(ctx context.Context, cfg *config.Config, u *config.User, pw string) (bool, error) {
	select {
	case a.hashq <- struct{}{}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	defer func() { <-a.hashq }()
	own := map[string][]string{} // shape → the user's hashes of that shape
	if u != nil && len(pw) > 0 && len(pw) <= maxPasswordBytes {
		own[password.Shape(u.PasswordHash)] = append(own[password.Shape(u.PasswordHash)], u.PasswordHash)
		for _, ap := range u.AppPasswords {
			own[password.Shape(ap.Hash)] = append(own[password.Shape(ap.Hash)], ap.Hash)
		}
	}
	for _, step := range a.refusalPlan(cfg) {
		mine := own[step.shape]
		for i := range step.n {
			a.s.metrics.HashChecks.Inc()
			if i < len(mine) {
				if a.verifyHash(mine[i], pw) {
					return true, nil
				}
				continue
			}
			a.verifyHash(a.dummyHash(step.shape), pw)
		}
	}
	return false, nil
}

// refusalPlan is refusalPlan(cfg), made once per config. It walks every
// user's hashes: made for every hash check, as it was, each cold login
// cost that walk, 10-40 s at a million users, so after a restart the
// first polls waited that long and the node kept up with a few cold
// logins a second. SetConfig makes it for a new config up front.
func (a *authenticator) refusalPlan(cfg *config.Config) []planStep {
	a.planMu.Lock()
	defer a.planMu.Unlock()
	if a.planCfg != cfg {
		a.plan, a.planCfg = refusalPlan(cfg), cfg
	}
	return a.plan
}

// planStep is n checks against hashes of one shape.
type planStep struct {
	shape string
	n     int
}

// refusalPlan is what a refused login costs: for every hash shape in the
// config, as many checks as the one user with the most credentials of that
// shape has, in a fixed order (by shape). Every user's credentials fit in
// it, so no user's refusal is cheaper than an unknown name's.
func refusalPlan(cfg *config.Config) []planStep {
	most := map[string]int{}
	shapes := password.ShapeMemo{}
	var count []planStep // this user's credentials by shape, reused
	for i := range cfg.Users {
		u := &cfg.Users[i]
		count = append(count[:0], planStep{shapes.Of(u.PasswordHash), 1})
	next:
		for _, ap := range u.AppPasswords {
			sh := shapes.Of(ap.Hash)
			for j := range count {
				if count[j].shape == sh {
					count[j].n++
					continue next
				}
			}
			count = append(count, planStep{sh, 1})
		}
		for _, c := range count {
			most[c.shape] = max(most[c.shape], c.n)
		}
	}
	if len(most) == 0 {
		most[password.DefaultShape] = 1 // nobody configured: still cost a check
	}
	plan := make([]planStep, 0, len(most))
	for shape, n := range most {
		plan = append(plan, planStep{shape, n})
	}
	slices.SortFunc(plan, func(x, y planStep) int { return strings.Compare(x.shape, y.shape) })
	return plan
}

// failed records a failed attempt, logs and counts it, and waits the delay.
func (a *authenticator) failed(ctx context.Context, protocol, name, client string, at attempt, lim limits, now time.Time) error {
	s := a.s
	r := a.guard.failure(name, client, at, now, lim)
	s.metrics.LoginFailures.WithLabelValues(protocol).Inc()
	delay := lim.delay * time.Duration(max(r.userFailures, r.clientFailures))
	if ceiling := max(lim.delay, maxFailureDelay); delay > ceiling {
		delay = ceiling
	}
	s.log.Warn("login failed", "protocol", protocol, "user", logName(name), "client", client,
		"user_failures", r.userFailures, "client_failures", r.clientFailures, "delay", delay)
	for _, l := range r.locks {
		a.m.lockouts.WithLabelValues(l.scope).Inc()
		s.log.Warn("login locked out after repeated failures", "scope", l.scope, "key", logName(l.key),
			"failures", lim.failures, "window", lim.window, "until", l.until.UTC().Format(time.RFC3339))
	}
	if err := sleepCtx(ctx, delay); err != nil {
		return err
	}
	return ErrBadCredentials
}

// dummyHash returns a hash of a random password of the given shape, made
// once per shape.
func (a *authenticator) dummyHash(shape string) string {
	a.mu.Lock()
	h, ok := a.dummies[shape]
	a.mu.Unlock()
	if ok {
		return h
	}
	h = password.Dummy(shape)
	a.mu.Lock()
	a.dummies[shape] = h
	a.mu.Unlock()
	return h
}

// logName keeps attacker-chosen user names short in logs.
func logName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
