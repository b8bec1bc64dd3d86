package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/password"
	"github.com/duebridge/duebridge/store"
)

// Device passwords: /setup gives each device its own random password. It is
// random, not chosen, so nothing is gained by a slow hash: it is checked with
// HMAC-SHA256 under a server key (like GitHub's and Apple's app-specific
// tokens), which costs microseconds. That is what makes a restart cheap: a
// phone's first poll after it costs what a cached login costs, where the
// user's own (argon2id) password costs ~100 ms of CPU.
//
// A password is "dbp-<id>-<secret>": id (64 bits) is not secret and finds the
// stored row, secret is 160 random bits. The store keeps only the HMAC of
// both under the key in kv[deviceKeyName]; the key never leaves the store.

const (
	deviceKeyName = "device_password_key"
	// deviceFlushInterval: last use is kept in memory and written at most
	// this often, so a poll never costs a write.
	deviceFlushInterval = 5 * time.Minute
	// deviceUseGrain: a use is written only when the stored last use is at
	// least this old, so last use is kept to the hour. Writing every use
	// each flush rewrote every polling phone's row every five minutes:
	// at 44,440 phones a 0.6 s transaction holding the single writer (a
	// webhook waited behind it), ~13 s at a million.
	deviceUseGrain = time.Hour
	// deviceFlushChunk bounds the rows one flush transaction writes, so a
	// flush holds the writer for milliseconds at a time, not seconds.
	deviceFlushChunk = 500
	// deviceRevocationPoll is how often runDevices looks for revocations
	// made by another process (the CLI, another node).
	deviceRevocationPoll = 5 * time.Second
	// maxDeviceNameBytes bounds a device's name.
	maxDeviceNameBytes = 100
)

// ErrTooManyDevices is returned by IssueDevicePassword when the user already
// has limits.devices_per_user device passwords.
var ErrTooManyDevices = errors.New("too many device passwords; revoke one first")

// ErrNoDevice is returned by RevokeDevicePassword when the user has no
// device password with that id. It matches store.ErrNotFound too.
var ErrNoDevice = fmt.Errorf("no such device password: %w", store.ErrNotFound)

// ErrDeviceName is returned for an unusable device name.
var ErrDeviceName = errors.New("device name must be 1 to 100 characters of printable text")

// Device is a device password as listed: no secret, no hash.
type Device struct {
	ID       string
	User     string
	Name     string
	Created  time.Time
	LastUsed time.Time // zero: never
}

// devices is the service's device-password state: the key, the last uses
// not yet written, and how far revocations have been handed to the hub.
type devices struct {
	s *Service

	keyMu sync.Mutex
	key   []byte // nil until loaded

	mu      sync.Mutex
	pending map[string]time.Time // id → last use not yet flushed

	// poll is deviceRevocationPoll (tests shorten it).
	poll time.Duration

	revMu   sync.Mutex
	revSeen int64
	revInit bool

	dummy [32]byte // compared against when no row matches

	// rows remembers the store rows of device passwords that logged in
	// (id → user and hash), so a phone's repeated logins read no store.
	// An entry only ever accepts: anything else takes the full path. It
	// goes when the device is revoked here, when runDevices sees another
	// process's revocation, and limits.device_cache_ttl after it was read.
	rowsMu sync.Mutex
	rows   map[string]deviceRow
	// evictions counts evictions; a login that read the store before one
	// does not remember what it read (the row may be the revoked one).
	evictions uint64

	checks *prometheus.CounterVec // result
	cache  *prometheus.CounterVec // result: hit|miss
	// The counters every login touches, looked up once.
	checksOK, checksRefused, cacheHit, cacheMiss prometheus.Counter
}

// deviceRow is a remembered store row.
type deviceRow struct {
	user string
	hash [32]byte
	read time.Time // when it was read from the store
	// used is the last use the store has (as read, or as this process
	// wrote it since): a use within deviceUseGrain of it is not written.
	used time.Time
}

func newDevices(s *Service) *devices {
	d := &devices{s: s, pending: map[string]time.Time{}, poll: deviceRevocationPoll, rows: map[string]deviceRow{}}
	rand.Read(d.dummy[:])
	d.checks = register(s, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_device_password_checks_total",
		Help: "Device password checks (HMAC-SHA256, microseconds each), by result (ok|refused).",
	}, []string{"result"}))
	d.cache = register(s, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_device_password_cache_total",
		Help: "Device password checks answered from remembered rows (hit) or by reading the store (miss).",
	}, []string{"result"}))
	d.checksOK, d.checksRefused = d.checks.WithLabelValues("ok"), d.checks.WithLabelValues("refused")
	d.cacheHit, d.cacheMiss = d.cache.WithLabelValues("hit"), d.cache.WithLabelValues("miss")
	register(s, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "duebridge_device_password_cache_entries",
		Help: "Device password rows remembered in memory (at most limits.device_cache_entries).",
	}, func() float64 {
		d.rowsMu.Lock()
		defer d.rowsMu.Unlock()
		return float64(len(d.rows))
	}))
	return d
}

// remembered returns id's row if it is remembered and was read less than
// ttl ago, and the eviction count to hand to remember after a store read.
func (d *devices) remembered(id string, now time.Time, ttl time.Duration) (deviceRow, bool, uint64) {
	d.rowsMu.Lock()
	defer d.rowsMu.Unlock()
	r, ok := d.rows[id]
	return r, ok && now.Sub(r.read) < ttl, d.evictions
}

// remember keeps a row read at read, unless an eviction happened since the
// read began (evictions then): the row may be one revoked meanwhile. At the
// bound an arbitrary entry makes room (map order is random); a forgotten
// row only costs a store read.
func (d *devices) remember(id string, row deviceRow, evictions uint64, entries int) {
	d.rowsMu.Lock()
	defer d.rowsMu.Unlock()
	if d.evictions != evictions {
		return
	}
	if _, ok := d.rows[id]; !ok {
		for k := range d.rows {
			if len(d.rows) < entries {
				break
			}
			delete(d.rows, k)
		}
	}
	d.rows[id] = row
}

// forget evicts device ids (revoked ones).
func (d *devices) forget(ids ...string) {
	d.rowsMu.Lock()
	defer d.rowsMu.Unlock()
	d.evictions++
	for _, id := range ids {
		delete(d.rows, id)
	}
}

// forgetExpired drops rows read longer than the expiry ago, so the memory
// and the entries gauge follow the devices actually in use.
func (d *devices) forgetExpired() {
	ttl := limitsOf(d.s.Config()).deviceRowTTL
	now := d.s.Now()
	d.rowsMu.Lock()
	defer d.rowsMu.Unlock()
	for id, r := range d.rows {
		if now.Sub(r.read) >= ttl {
			delete(d.rows, id)
		}
	}
}

// serverKey loads the HMAC key, creating it on first use (once per database).
func (d *devices) serverKey(ctx context.Context) ([]byte, error) {
	d.keyMu.Lock()
	defer d.keyMu.Unlock()
	if d.key != nil {
		return d.key, nil
	}
	// Read first: the key exists after the first start, and the first
	// login after a restart should not queue for the writer (behind the
	// start's re-render batches or the scheduler's replan).
	var v string
	err := d.s.st.View(ctx, func(tx store.Tx) error {
		var err error
		if v, err = tx.Get(deviceKeyName); errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err == nil && v == "" {
		err = d.s.st.Update(ctx, func(tx store.Tx) error {
			var err error
			v, err = tx.Get(deviceKeyName)
			if errors.Is(err, store.ErrNotFound) {
				k := make([]byte, 32)
				rand.Read(k)
				v = hex.EncodeToString(k)
				err = tx.Set(deviceKeyName, v)
			}
			return err
		})
	}
	var key []byte
	if err == nil {
		key, err = hex.DecodeString(v)
		if err == nil && len(key) < 32 {
			err = errors.New("key too short")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("load device password key: %w", err)
	}
	d.key = key
	return key, nil
}

func deviceMAC(key []byte, id, secret string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("duebridge device password v1\x00"))
	m.Write([]byte(id))
	m.Write([]byte{0})
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// verify is the device step of a login.
//
// A login whose ID is remembered (rows) with the same user and an equal
// HMAC is accepted without reading the store: that is every poll of a phone
// after its first within limits.device_cache_ttl. Anything else (an ID not
// remembered, or remembered but with another user or secret, or expired)
// takes the full path: one store read by ID (a password of another shape
// reads a non-existent ID) and the HMAC compared in constant time, whether
// or not the ID exists or belongs to the user. So every refusal costs the
// same (a map lookup, one HMAC, two constant-time compares and the store
// read), and a remembered row never refuses nor accepts by itself what the
// store would refuse, except a device revoked by another process sharing
// the store until runDevices sees it (deviceRevocationPoll) and at most
// limits.device_cache_ttl if that is missed.
func (d *devices) verify(ctx context.Context, user, pw string) bool {
	id, secret, shaped := password.ParseDevice(pw)
	if !shaped {
		id, secret = "", pw // reads no row; the HMAC below still runs
	}
	key, err := d.serverKey(ctx)
	if key == nil {
		key = d.dummy[:]
	}
	mac := deviceMAC(key, id, secret)
	lim := limitsOf(d.s.Config())
	entries, ttl := lim.deviceRows, lim.deviceRowTTL
	now := d.s.Now()
	// "" is never remembered: the lookup keeps every refusal's cost alike.
	hit, fresh, evictions := d.remembered(id, now, ttl)
	want := d.dummy[:]
	if fresh {
		want = hit.hash[:]
	}
	if subtle.ConstantTimeCompare(mac, want) == 1 && fresh && err == nil && hit.user == user {
		d.cacheHit.Inc()
		d.used(id, hit.used, now)
		return true
	}
	d.cacheMiss.Inc()

	var row *store.DevicePassword
	if err == nil {
		// One SELECT: a Read, without a transaction around it (every
		// phone's first poll after a restart comes this way).
		err = d.s.st.Read(ctx, func(tx store.Tx) error {
			var err error
			row, err = tx.DevicePassword(id)
			return err
		})
	}
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		d.s.log.Error("device password check", "err", err)
	}
	want = d.dummy[:]
	if row != nil {
		want = row.Hash
	}
	match := subtle.ConstantTimeCompare(mac, want) == 1
	ok := shaped && row != nil && match && row.User == user
	if !ok {
		d.checksRefused.Inc()
		return false
	}
	if len(row.Hash) == len(deviceRow{}.hash) {
		r := deviceRow{user: row.User, read: now, used: row.LastUsed}
		copy(r.hash[:], row.Hash)
		d.remember(id, r, evictions, entries)
	}
	d.used(id, row.LastUsed, now)
	return true
}

// used counts a successful check and notes the device's last use at now,
// unless the store's (stored) is within deviceUseGrain of it.
func (d *devices) used(id string, stored, now time.Time) {
	d.checksOK.Inc()
	if now.Sub(stored) < deviceUseGrain {
		return
	}
	d.mu.Lock()
	d.pending[id] = now
	d.mu.Unlock()
}

// IssueDevicePassword makes a new password for one of user's devices and
// returns it; it is not stored anywhere and cannot be shown again.
func (s *Service) IssueDevicePassword(ctx context.Context, user, name string) (Device, string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > maxDeviceNameBytes || !utf8.ValidString(name) || strings.ContainsFunc(name, isControl) {
		return Device{}, "", ErrDeviceName
	}
	if s.Config().User(user) == nil {
		return Device{}, "", fmt.Errorf("issue device password: no user %q", user)
	}
	key, err := s.devices.serverKey(ctx)
	if err != nil {
		return Device{}, "", err
	}
	id, secret, pw := password.NewDevice()
	limit := limitsOf(s.Config()).devices
	row := store.DevicePassword{ID: id, User: user, Name: name, Hash: deviceMAC(key, id, secret)}
	err = s.st.Update(ctx, func(tx store.Tx) error {
		have, err := tx.DevicePasswords(user)
		if err != nil {
			return err
		}
		if len(have) >= limit {
			return ErrTooManyDevices
		}
		row.Created = tx.Now()
		return tx.AddDevicePassword(&row)
	})
	if err != nil {
		if errors.Is(err, ErrTooManyDevices) {
			return Device{}, "", err
		}
		return Device{}, "", fmt.Errorf("issue device password for %s: %w", user, err)
	}
	s.log.Info("device password issued", "user", user, "device", id, "name", name)
	return Device{ID: id, User: user, Name: name, Created: row.Created}, pw, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// Devices lists user's device passwords ("" = every user's), with last use
// as this process knows it (including uses not yet written).
func (s *Service) Devices(ctx context.Context, user string) ([]Device, error) {
	var rows []store.DevicePassword
	err := s.st.View(ctx, func(tx store.Tx) error {
		var err error
		rows, err = tx.DevicePasswords(user)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list device passwords: %w", err)
	}
	d := s.devices
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Device, len(rows))
	for i, r := range rows {
		out[i] = Device{ID: r.ID, User: r.User, Name: r.Name, Created: r.Created, LastUsed: r.LastUsed}
		if t, ok := d.pending[r.ID]; ok && t.After(r.LastUsed) {
			out[i].LastUsed = t
		}
	}
	return out, nil
}

// RevokeDevicePassword deletes one of user's device passwords: it stops
// working at once, and the user's IMAP sessions are closed (the IMAP server
// closes a user's sessions on EventCredentials; the other devices log in
// again on their own). Other processes sharing the store do the same, and
// forget the remembered row: on PostgreSQL at once (the revocation is
// announced, and replayed from the log after a listener gap), otherwise
// within deviceRevocationPoll (runDevices).
// ErrNoDevice if there is none.
func (s *Service) RevokeDevicePassword(ctx context.Context, user, id string) error {
	if err := s.markRevocations(ctx); err != nil {
		return fmt.Errorf("revoke device password: %w", err)
	}
	err := s.st.Update(ctx, func(tx store.Tx) error { return tx.RevokeDevicePassword(user, id) })
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return ErrNoDevice
		}
		return fmt.Errorf("revoke device password: %w", err)
	}
	s.log.Info("device password revoked", "user", user, "device", id)
	s.devices.forget(id)
	s.devices.mu.Lock()
	delete(s.devices.pending, id)
	s.devices.mu.Unlock()
	return s.publishRevocations(ctx)
}

// markRevocations notes, once, where the revocation log ends: revocations
// from before that ended the sessions of a process that is gone.
func (s *Service) markRevocations(ctx context.Context) error {
	d := s.devices
	d.revMu.Lock()
	defer d.revMu.Unlock()
	if d.revInit {
		return nil
	}
	return s.st.View(ctx, func(tx store.Tx) error {
		last, err := tx.LastDeviceRevocation()
		if err == nil {
			d.revSeen, d.revInit = last, true
		}
		return err
	})
}

// publishRevocations hands revocations made since markRevocations (by this
// process or another) to the hub, once each.
func (s *Service) publishRevocations(ctx context.Context) error {
	if err := s.markRevocations(ctx); err != nil {
		return err
	}
	d := s.devices
	d.revMu.Lock()
	defer d.revMu.Unlock()
	for {
		var revs []store.DeviceRevocation
		err := s.st.View(ctx, func(tx store.Tx) error {
			var err error
			revs, err = tx.DeviceRevocations(d.revSeen, 1000)
			return err
		})
		if err != nil {
			return err
		}
		if len(revs) == 0 {
			return nil
		}
		events := make([]store.Event, 0, len(revs))
		ids := make([]string, 0, len(revs))
		for _, r := range revs {
			events = append(events, store.Event{Kind: EventCredentials, User: r.User})
			ids = append(ids, r.DeviceID)
			d.revSeen = r.Seq
		}
		// Revoked by another process: not remembered here any more.
		d.forget(ids...)
		s.hub.Publish(events)
	}
}

// flushDeviceUses writes the last uses gathered since the previous flush,
// deviceFlushChunk to a transaction, and notes them in the remembered rows
// so that uses within the grain after them are not gathered again.
func (s *Service) flushDeviceUses(ctx context.Context) error {
	d := s.devices
	d.mu.Lock()
	used := d.pending
	d.pending = map[string]time.Time{}
	d.mu.Unlock()
	chunk := make(map[string]time.Time, min(len(used), deviceFlushChunk))
	write := func() error {
		if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.TouchDevicePasswords(chunk) }); err != nil {
			return err
		}
		d.rowsMu.Lock()
		for id, t := range chunk {
			if r, ok := d.rows[id]; ok && t.After(r.used) {
				r.used = t
				d.rows[id] = r
			}
			delete(used, id)
		}
		d.rowsMu.Unlock()
		clear(chunk)
		return nil
	}
	var err error
	for id, t := range used {
		chunk[id] = t
		if len(chunk) == deviceFlushChunk {
			if err = write(); err != nil {
				break
			}
		}
	}
	if err == nil && len(chunk) > 0 {
		err = write()
	}
	if err != nil {
		// Put back what was not written (unless newer uses came in) for
		// the next flush.
		d.mu.Lock()
		for id, t := range used {
			if t.After(d.pending[id]) {
				d.pending[id] = t
			}
		}
		d.mu.Unlock()
		return fmt.Errorf("record device last use: %w", err)
	}
	return nil
}

// runDevices writes device last-use times every few minutes (and once more
// on the way out), and ends the sessions of device passwords revoked by
// other processes sharing the store. It returns when ctx is done.
func (s *Service) runDevices(ctx context.Context) error {
	// The mark for revocations is set now, so that one made by the CLI
	// after start-up is published.
	if err := s.markRevocations(ctx); err != nil {
		s.log.Error("device revocations", "err", err)
	}
	flush := time.NewTicker(deviceFlushInterval)
	defer flush.Stop()
	poll := time.NewTicker(s.devices.poll)
	defer poll.Stop()
	// A revocation announced by another process, or a resync (this
	// process's PostgreSQL listener reconnected, so announcements may be
	// lost), replays the revocation log at once; the poll covers a process
	// that announces nothing (the CLI on SQLite).
	announced := s.hub.Subscribe("", store.EventDevice)
	defer announced.Close()
	for {
		select {
		case <-ctx.Done():
			// The context is done; a short one of its own writes the rest.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := s.flushDeviceUses(fctx); err != nil {
				s.log.Error("device last use on shutdown", "err", err)
			}
			return nil
		case <-flush.C:
			if err := s.flushDeviceUses(ctx); err != nil {
				s.log.Error("device last use", "err", err)
			}
		case <-poll.C:
			if err := s.publishRevocations(ctx); err != nil {
				s.log.Error("device revocations", "err", err)
			}
			s.devices.forgetExpired()
		case <-announced.C:
			announced.Lagged() // the replay reads the whole log anyway
			if err := s.publishRevocations(ctx); err != nil {
				s.log.Error("device revocations", "err", err)
			}
		}
	}
}
