package bridge

import (
	"cmp"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/config"
)

// This file holds the login protection AuthenticateFrom applies for every
// protocol: failure counts per user name and per client address in a
// sliding window, the lock-outs they trigger, and the addresses a user is
// known to log in from.

// limits are the login-protection settings of one config snapshot.
type limits struct {
	delay    time.Duration // per recent failure
	failures int           // failures within window that lock; <= 0: never
	window   time.Duration // counting window and lock duration; <= 0: never
	devices  int           // device passwords per user
}

func limitsOf(c *config.Config) limits {
	return limits{delay: c.Limits.LoginFailureDelay, failures: c.Limits.LockoutFailures, window: c.Limits.LockoutWindow,
		devices: cmp.Or(max(c.Limits.DevicesPerUser, 0), defaultDevicesPerUser)}
}

// defaultDevicesPerUser is limits.devices_per_user's default, for configs
// built in code.
const defaultDevicesPerUser = 50

func (l limits) lockout() bool { return l.failures > 0 && l.window > 0 }

const (
	// maxGuardKeys bounds the failure records. Past it, records with
	// nothing left in the window go first, then random ones: under a flood
	// of distinct names or addresses some records are forgotten, never the
	// memory exhausted.
	maxGuardKeys = 50_000
	// maxTrusted bounds the remembered (user, address) pairs the same way.
	maxTrusted = 50_000
)

// guard holds failure records keyed "u\x00<name>" and "c\x00<client>", and
// trusted "<name>\x00<client>" pairs with their expiry.
type guard struct {
	mu      sync.Mutex
	keys    map[string]*failureLog
	trusted map[string]time.Time
}

type failureLog struct {
	times []time.Time // failures within the window, oldest first
	// attempts[i] identifies the password tried at times[i]: a keyed hash
	// (never the password), so a stale device repeating one wrong password
	// counts once, not as a new guess each time. Zero: unknown, always new.
	attempts    []attempt
	lockedUntil time.Time // zero: not locked
}

// attempt is a keyed hash of a tried (name, password) pair; the zero value
// stands for "unknown" and never matches.
type attempt [32]byte

func newGuard() *guard {
	return &guard{keys: map[string]*failureLog{}, trusted: map[string]time.Time{}}
}

// maxKeyName bounds the user name a failure record is kept under. Names
// are at most 64 bytes (config), so no login with a longer one can
// succeed; such names share records by their first 65 bytes instead of
// each holding what an attacker sent (an HTTP header's or an IMAP
// literal's worth, times maxGuardKeys records).
const maxKeyName = 65

func userKey(name string) string {
	if len(name) > maxKeyName {
		name = name[:maxKeyName]
	}
	return "u\x00" + name
}

func clientKeyOf(client string) string { return "c\x00" + client }

// locked reports whether an attempt for name from client is refused now,
// and until when. No lock applies to an address the user logged in from
// successfully (trusted): the password is checked, so the user's own
// devices keep working behind a NAT or proxy shared with whoever caused
// the lock; wrong passwords from there are still slowed by the delay.
func (g *guard) locked(name, client string, now time.Time) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isTrusted(name, client, now) {
		return time.Time{}, false
	}
	var until time.Time
	if client != "" {
		if fl := g.keys[clientKeyOf(client)]; fl != nil && now.Before(fl.lockedUntil) {
			until = fl.lockedUntil
		}
	}
	if fl := g.keys[userKey(name)]; fl != nil && now.Before(fl.lockedUntil) {
		if fl.lockedUntil.After(until) {
			until = fl.lockedUntil
		}
	}
	return until, !until.IsZero()
}

func (g *guard) isTrusted(name, client string, now time.Time) bool {
	if client == "" {
		return false
	}
	exp, ok := g.trusted[name+"\x00"+client]
	return ok && now.Before(exp)
}

type lockEvent struct {
	scope string // "user" or "client"
	key   string
	until time.Time
}

type failureResult struct {
	userFailures, clientFailures int // in the window, this one included
	locks                        []lockEvent
}

// failure records a failed attempt against the user name and the client
// address and starts a lock on either when it reaches lim.failures. The
// same attempt (name and password) within the window counts once.
func (g *guard) failure(name, client string, at attempt, now time.Time, lim limits) failureResult {
	g.mu.Lock()
	defer g.mu.Unlock()
	var r failureResult
	var ev *lockEvent
	r.userFailures, ev = g.record(userKey(name), at, now, lim)
	if ev != nil {
		ev.scope, ev.key = "user", name
		r.locks = append(r.locks, *ev)
	}
	if client != "" {
		r.clientFailures, ev = g.record(clientKeyOf(client), at, now, lim)
		if ev != nil {
			ev.scope, ev.key = "client", client
			r.locks = append(r.locks, *ev)
		}
	}
	return r
}

func (g *guard) record(key string, at attempt, now time.Time, lim limits) (int, *lockEvent) {
	fl := g.keys[key]
	if fl == nil {
		if len(g.keys) >= maxGuardKeys {
			g.prune(now, lim)
		}
		fl = &failureLog{}
		g.keys[key] = fl
	}
	if now.Before(fl.lockedUntil) {
		// Already locked (a trusted address got through a user lock and
		// failed): the lock neither grows nor restarts.
		return max(lim.failures, 1), nil
	}
	fl.lockedUntil = time.Time{}
	keep, keepAt := fl.times[:0], fl.attempts[:0]
	repeat := false
	for i, t := range fl.times {
		if lim.window <= 0 || now.Sub(t) < lim.window {
			keep, keepAt = append(keep, t), append(keepAt, fl.attempts[i])
			repeat = repeat || (at != attempt{} && fl.attempts[i] == at)
		}
	}
	fl.times, fl.attempts = keep, keepAt
	if repeat {
		return len(fl.times), nil // a stale device, not a new guess
	}
	fl.times, fl.attempts = append(fl.times, now), append(fl.attempts, at)
	n := len(fl.times)
	if lim.lockout() && n >= lim.failures {
		fl.lockedUntil = now.Add(lim.window)
		fl.times, fl.attempts = nil, nil // the count starts afresh when the lock ends
		return n, &lockEvent{until: fl.lockedUntil}
	}
	if !lim.lockout() && n > 64 {
		// without lock-outs only the delay needs the count
		fl.times, fl.attempts = fl.times[n-64:], fl.attempts[n-64:]
	}
	return n, nil
}

// success remembers that name logged in from client.
func (g *guard) success(name, client string, now time.Time) {
	if client == "" {
		return
	}
	k := name + "\x00" + client
	g.mu.Lock()
	defer g.mu.Unlock()
	if exp, ok := g.trusted[k]; ok && exp.Sub(now) > trustTTL-time.Hour {
		return // refreshed within the hour; CalDAV logs in on every request
	}
	if _, ok := g.trusted[k]; !ok && len(g.trusted) >= maxTrusted {
		for tk, exp := range g.trusted {
			if !now.Before(exp) {
				delete(g.trusted, tk)
			}
		}
		for tk := range g.trusted { // random order: evict arbitrary pairs
			if len(g.trusted) < maxTrusted*9/10 {
				break
			}
			delete(g.trusted, tk)
		}
	}
	g.trusted[k] = now.Add(trustTTL)
}

// prune drops records that no longer hold a lock or a failure within the
// window; if that is not enough, arbitrary records (map order is random).
func (g *guard) prune(now time.Time, lim limits) {
	for k, fl := range g.keys {
		if now.Before(fl.lockedUntil) {
			continue
		}
		if n := len(fl.times); n == 0 || (lim.window > 0 && now.Sub(fl.times[n-1]) >= lim.window) {
			delete(g.keys, k)
		}
	}
	for k := range g.keys {
		if len(g.keys) < maxGuardKeys*9/10 {
			break
		}
		delete(g.keys, k)
	}
}

// clientKey turns a remote address into the key failures are counted
// under: the IP without port; for IPv6 its /64, since one host or attacker
// usually has a whole /64. Strings that are no IP address are used as
// they are.
func clientKey(remoteAddr string) string {
	if remoteAddr == "" {
		return ""
	}
	host := remoteAddr
	if h, _, err := net.SplitHostPort(remoteAddr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.WithZone("").Unmap()
	if ip.Is6() {
		p, err := ip.Prefix(64)
		if err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// authMetrics are the login-protection collectors beyond the core's
// LoginFailures (failed password checks) and LoginCache.
type authMetrics struct {
	lockouts *prometheus.CounterVec // scope: user|client
	refused  *prometheus.CounterVec // protocol
}

func newAuthMetrics(s *Service) *authMetrics {
	return &authMetrics{
		lockouts: register(s, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_login_lockouts_total",
			Help: "Lock-outs started after repeated login failures, by scope (user name or client address).",
		}, []string{"scope"})),
		refused: register(s, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_login_refused_total",
			Help: "Logins refused without a password check because a lock-out was in force, by protocol.",
		}, []string{"protocol"})),
	}
}
