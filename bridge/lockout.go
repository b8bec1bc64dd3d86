package bridge

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/duebridge/duebridge/store"

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
	// deviceRows and deviceRowTTL bound the remembered device rows
	// (limits.device_cache_entries, limits.device_cache_ttl).
	deviceRows   int
	deviceRowTTL time.Duration
}

func limitsOf(c *config.Config) limits {
	return limits{delay: c.Limits.LoginFailureDelay, failures: c.Limits.LockoutFailures, window: c.Limits.LockoutWindow,
		devices:      cmp.Or(max(c.Limits.DevicesPerUser, 0), defaultDevicesPerUser),
		deviceRows:   cmp.Or(max(c.Limits.DeviceCacheEntries, 0), defaultDeviceCacheEntries),
		deviceRowTTL: cmp.Or(max(c.Limits.DeviceCacheTTL, 0), defaultDeviceCacheTTL)}
}

// Defaults of limits.devices_per_user, limits.device_cache_entries and
// limits.device_cache_ttl (config/keys.go), for configs built in code.
const (
	defaultDevicesPerUser     = 50
	defaultDeviceCacheEntries = 1_000_000
	defaultDeviceCacheTTL     = 20 * time.Minute
)

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
//
// With a store shared by several processes (PostgreSQL), the records also
// live in the database (store.LoginTx), so N replicas behind a balancer give
// an attacker the guesses of one, not N times as many. The memory records
// stay: they carry on alone while the database is unreachable.
type guard struct {
	mu      sync.Mutex
	keys    map[string]*failureLog
	trusted map[string]time.Time
	shared  store.Store // nil: this process only
	writes  int         // shared failure writes, to prune now and then

	// Trusted pairs bound for the shared records are written in batches,
	// one transaction each, by at most one goroutine at a time (flushing):
	// while one batch is written the next fills, so the logins of a
	// restart's reconnect storm cost a few transactions instead of one
	// each, all queued on the store's single writer.
	nextTrust *trustBatch
	flushing  bool
	writing   int // pairs in the batch being written
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

// newGuard returns a guard that shares its records through st when st is
// shared by several processes (store.SharesLogins); st may be nil.
func newGuard(st store.Store) *guard {
	g := &guard{keys: map[string]*failureLog{}, trusted: map[string]time.Time{}}
	if st != nil && store.SharesLogins(st) {
		g.shared = st
	}
	return g
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
	memUntil, memLocked, trusted := g.lockedMem(name, client, now)
	if trusted || g.shared == nil {
		return memUntil, memLocked
	}
	until, trusted, err := g.lockedShared(name, client, now)
	if err != nil || trusted {
		return memUntil, memLocked && err != nil
	}
	if memUntil.After(until) {
		until = memUntil
	}
	return until, !until.IsZero()
}

// lockedMem is locked on this process's records.
func (g *guard) lockedMem(name, client string, now time.Time) (until time.Time, locked, trusted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isTrusted(name, client, now) {
		return time.Time{}, false, true
	}
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
	return until, !until.IsZero(), false
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
	mem := g.failureMem(name, client, at, now, lim)
	if g.shared == nil {
		return mem
	}
	r, err := g.failureShared(name, client, at, now, lim)
	if err != nil {
		return mem // the database is away: this process's count carries on
	}
	r.userFailures, r.clientFailures = max(r.userFailures, mem.userFailures), max(r.clientFailures, mem.clientFailures)
	return r
}

// failureMem is failure on this process's records.
func (g *guard) failureMem(name, client string, at attempt, now time.Time, lim limits) failureResult {
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
	return fl.add(at, now, lim)
}

// add counts a failure in fl; see failure.
func (fl *failureLog) add(at attempt, now time.Time, lim limits) (int, *lockEvent) {
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
	if g.successMem(name, client, now) && g.shared != nil {
		g.queueTrust(name, client, now.Add(trustTTL))
	}
}

// successMem remembers the pair in memory and reports whether it was new
// or due for a refresh (then the shared record is written too).
func (g *guard) successMem(name, client string, now time.Time) bool {
	k := name + "\x00" + client
	g.mu.Lock()
	defer g.mu.Unlock()
	if exp, ok := g.trusted[k]; ok && exp.Sub(now) > trustTTL-time.Hour {
		return false // refreshed within the hour; CalDAV logs in on every request
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
	return true
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

// sharedTimeout bounds one shared-record transaction: a login must not hang
// on a database that is away (the memory records carry on then).
const sharedTimeout = time.Second

// sharedKey is the database key of a memory key ("u\x00name" -> "u:name").
// Names that PostgreSQL text cannot hold (NUL, invalid UTF-8) go by a hash.
func sharedKey(k string) string {
	scope, rest := k[:1], k[2:]
	if strings.IndexByte(rest, 0) >= 0 || !utf8.ValidString(rest) {
		sum := sha256.Sum256([]byte(rest))
		return scope + "#" + hex.EncodeToString(sum[:])
	}
	return scope + ":" + rest
}

// sharedLog is a failureLog as stored: Unix nanoseconds and hex attempts.
type sharedLog struct {
	Times    []int64  `json:"t,omitempty"`
	Attempts []string `json:"a,omitempty"`
	Locked   int64    `json:"l,omitempty"`
}

func decodeLog(state string) *failureLog {
	var sl sharedLog
	fl := &failureLog{}
	if json.Unmarshal([]byte(state), &sl) != nil || len(sl.Times) != len(sl.Attempts) {
		return fl // unreadable: start afresh rather than fail the login
	}
	for i, t := range sl.Times {
		var at attempt
		hex.Decode(at[:], []byte(sl.Attempts[i]))
		fl.times, fl.attempts = append(fl.times, time.Unix(0, t)), append(fl.attempts, at)
	}
	if sl.Locked != 0 {
		fl.lockedUntil = time.Unix(0, sl.Locked)
	}
	return fl
}

// encodeLog returns fl's state and when it can be dropped.
func encodeLog(fl *failureLog, lim limits) (string, int64) {
	var sl sharedLog
	expires := fl.lockedUntil
	for i, t := range fl.times {
		sl.Times = append(sl.Times, t.UnixNano())
		sl.Attempts = append(sl.Attempts, hex.EncodeToString(fl.attempts[i][:]))
		if end := t.Add(max(lim.window, time.Hour)); end.After(expires) {
			expires = end
		}
	}
	if !fl.lockedUntil.IsZero() {
		sl.Locked = fl.lockedUntil.UnixNano()
	}
	b, _ := json.Marshal(sl)
	return string(b), expires.UnixNano()
}

func loginTx(tx store.Tx) (store.LoginTx, error) {
	ltx, ok := tx.(store.LoginTx)
	if !ok {
		return nil, errors.New("the store keeps no shared login records")
	}
	return ltx, nil
}

// lockedShared is locked on the shared records.
func (g *guard) lockedShared(name, client string, now time.Time) (until time.Time, trusted bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	err = g.shared.View(ctx, func(tx store.Tx) error {
		ltx, err := loginTx(tx)
		if err != nil {
			return err
		}
		if client != "" {
			if trusted, err = ltx.LoginTrusted(name, client, now.UnixNano()); err != nil || trusted {
				return err
			}
		}
		keys := []string{sharedKey(userKey(name))}
		if client != "" {
			keys = append(keys, sharedKey(clientKeyOf(client)))
		}
		recs, err := ltx.LoginRecords(keys, now.UnixNano())
		if err != nil {
			return err
		}
		for _, state := range recs {
			if fl := decodeLog(state); now.Before(fl.lockedUntil) && fl.lockedUntil.After(until) {
				until = fl.lockedUntil
			}
		}
		return nil
	})
	return until, trusted, err
}

// failureShared is failure on the shared records: read with a row lock,
// counted by the same rules as in memory, written back in one transaction,
// so two replicas counting at once both count.
func (g *guard) failureShared(name, client string, at attempt, now time.Time, lim limits) (failureResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	g.mu.Lock()
	g.writes++
	prune := g.writes%256 == 1
	g.mu.Unlock()
	var r failureResult
	err := g.shared.Update(ctx, func(tx store.Tx) error {
		r = failureResult{}
		ltx, err := loginTx(tx)
		if err != nil {
			return err
		}
		if prune {
			if err := ltx.PruneLogins(now.UnixNano()); err != nil {
				return err
			}
		}
		type rec struct{ scope, key, mem string }
		recs := []rec{{"user", name, userKey(name)}}
		if client != "" {
			recs = append(recs, rec{"client", client, clientKeyOf(client)})
		}
		keys := make([]string, len(recs))
		for i, rc := range recs {
			keys[i] = sharedKey(rc.mem)
		}
		states, err := ltx.LoginRecords(keys, now.UnixNano())
		if err != nil {
			return err
		}
		for i, rc := range recs {
			fl := decodeLog(states[keys[i]])
			n, ev := fl.add(at, now, lim)
			if rc.scope == "user" {
				r.userFailures = n
			} else {
				r.clientFailures = n
			}
			if ev != nil {
				ev.scope, ev.key = rc.scope, rc.key
				r.locks = append(r.locks, *ev)
			}
			state, expires := encodeLog(fl, lim)
			if err := ltx.SetLoginRecord(keys[i], state, expires); err != nil {
				return err
			}
		}
		return nil
	})
	return r, err
}

// trustTimeout bounds one batch's write. No login waits for it longer than
// sharedTimeout, so it may wait longer for the writer than a login would.
const trustTimeout = 10 * time.Second

// trustBatch is the pairs of successful logins one shared transaction
// writes; done is closed when it has been written (or has failed).
type trustBatch struct {
	pairs map[[2]string]time.Time
	done  chan struct{}
}

// queueTrust hands a successful login's pair to the shared records' writer,
// starting it if none runs, and waits until its batch is written or
// sharedTimeout has passed: a login answered after that is trusted on
// every replica, as when each wrote its own.
func (g *guard) queueTrust(name, client string, until time.Time) {
	g.mu.Lock()
	if g.nextTrust == nil {
		g.nextTrust = &trustBatch{pairs: map[[2]string]time.Time{}, done: make(chan struct{})}
	}
	b := g.nextTrust
	b.pairs[[2]string{name, client}] = until
	if !g.flushing {
		g.flushing = true
		go g.flushTrust()
	}
	g.mu.Unlock()
	t := time.NewTimer(sharedTimeout)
	defer t.Stop()
	select {
	case <-b.done:
	case <-t.C:
	}
}

// flushTrust writes batches until none is waiting. A failed write only
// costs those pairs on other replicas (they fall back to the lock rules),
// as a lost pair always did.
func (g *guard) flushTrust() {
	for {
		g.mu.Lock()
		b := g.nextTrust
		g.nextTrust = nil
		if b == nil {
			g.flushing = false
		} else {
			g.writing = len(b.pairs)
		}
		g.mu.Unlock()
		if b == nil {
			return
		}
		g.trustShared(b.pairs)
		g.mu.Lock()
		g.writing = 0
		g.mu.Unlock()
		close(b.done)
	}
}

// trustShared records successful logins' pairs in the database, in one
// transaction.
func (g *guard) trustShared(batch map[[2]string]time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), trustTimeout)
	defer cancel()
	g.shared.Update(ctx, func(tx store.Tx) error {
		ltx, err := loginTx(tx)
		if err != nil {
			return err
		}
		for k, until := range batch {
			if err := ltx.TrustLogin(k[0], k[1], until.UnixNano()); err != nil {
				return err
			}
		}
		return nil
	})
}
