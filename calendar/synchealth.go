package calendar

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/metricsreg"
)

// Sync health answers "why does Ana's phone not show the new deadline?":
// per user and device (User-Agent) it remembers when the device last polled
// and synced each collection, how (full, incremental, token reset), and up
// to which revision. It lives in memory: it describes the running process,
// costs no write per poll (SQLite serialises writers, and phones poll every
// few minutes), and starts empty after a restart, which the JSON says.
// It keeps the Limits.SyncHealthUsers users seen most recently, in a
// recency list (a poll moves its user to the front: O(1), no allocation),
// and forgets the least recent one with its metric series, so a million
// phones cost what the bound allows, not a record and a series each.

// Sync kinds.
const (
	syncFull        = "full"        // sync-collection with an empty token
	syncIncremental = "incremental" // sync-collection with a valid token
	syncReset       = "token_reset" // a token we could not honour: 403, the client starts over
	syncPoll        = "poll"        // PROPFIND of getctag / sync-token
	syncQuery       = "query"       // calendar-query (older clients' full fetch)
	syncMultiget    = "multiget"    // calendar-multiget
)

const (
	maxDevicesPerUser = 16
	maxUserAgentLen   = 200
	// DefaultSyncHealthUsers is how many users' sync health is kept when
	// Limits.SyncHealthUsers is zero: ~1.1 KB each with ten lists and one
	// phone (0.7 KB the record, 0.4 KB its last-sync series), so ~115 MB
	// at the bound.
	DefaultSyncHealthUsers = 100000
)

// kinds indexes the per-device counters; 0 means none.
var kinds = [...]string{"", syncFull, syncIncremental, syncReset, syncPoll, syncQuery, syncMultiget}

const kindPoll = 4

func kindIndex(kind string) uint8 {
	for i := 1; i < len(kinds); i++ {
		if kinds[i] == kind {
			return uint8(i)
		}
	}
	return 0
}

// collSync is one device's view of one collection. Times are Unix
// nanoseconds (0 = never), not time.Time: a third of the size, and a
// million phones keep ten of these each.
type collSync struct {
	name     string
	lastSync int64
	poll     int64
	seq      int64 // the revision the device's sync token now names
	changes  int32
	kind     uint8
}

type device struct {
	ua, client                               string
	firstSeen, lastSeen, lastSync, lastReset int64
	lastKind                                 uint8
	counts                                   [len(kinds)]int32
	colls                                    []collSync
}

// coll returns d's record of name, adding it; hint is where it is
// expected (a home poll lists collections in the same order each time), so
// a repeated poll finds each in one comparison; mu must be held.
func (h *syncHealth) coll(d *device, name string, hint int) *collSync {
	if hint < len(d.colls) && d.colls[hint].name == name {
		return &d.colls[hint]
	}
	for i := range d.colls {
		if d.colls[i].name == name {
			return &d.colls[i]
		}
	}
	// Interned: the members of a project share its lists' names.
	d.colls = append(d.colls, collSync{name: intern(name)})
	return &d.colls[len(d.colls)-1]
}

// userHealth is one user's devices, linked into the recency list.
type userHealth struct {
	name       string
	devs       []device
	prev, next *userHealth // toward the most / least recently seen
}

type syncHealth struct {
	now     func() time.Time
	started time.Time
	// limit is the most users kept (Limits.SyncHealthUsers, read when a
	// new user arrives, so a reload applies).
	limit func() int

	mu    sync.Mutex
	users map[string]*userHealth
	// head is the user seen most recently, tail the one seen least
	// recently: the next forgotten.
	head, tail *userHealth

	syncs     *prometheus.CounterVec
	polls     prometheus.Counter // syncs{kind="poll"}, looked up once
	lastSync  *prometheus.GaugeVec
	kept      prometheus.Gauge
	evictions prometheus.Counter
}

func newSyncHealth(reg prometheus.Registerer, now func() time.Time, limit func() int) *syncHealth {
	h := &syncHealth{now: now, started: now(), limit: limit, users: map[string]*userHealth{}}
	h.syncs = metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_caldav_syncs_total",
		Help: "CalDAV sync requests by kind: full, incremental, token_reset, poll, query, multiget.",
	}, []string{"kind"}))
	h.polls = h.syncs.WithLabelValues(syncPoll)
	h.lastSync = metricsreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "duebridge_caldav_last_sync_timestamp_seconds",
		Help: "When a user's devices of a client family last synced (sync-collection or calendar-query), Unix time; only users whose sync health is kept (limits.sync_health_users).",
	}, []string{"user", "client"}))
	h.kept = metricsreg.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "duebridge_caldav_sync_health_users",
		Help: "Users whose CalDAV sync health is kept in memory (at most limits.sync_health_users).",
	}))
	h.evictions = metricsreg.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duebridge_caldav_sync_health_evictions_total",
		Help: "Users whose sync health was forgotten to keep within limits.sync_health_users (the least recently seen first).",
	}))
	return h
}

// families are the values clientFamily returns: an evicted user's series
// are deleted for each.
var families = [...]string{"ios", "macos", "davx5", "thunderbird", "vdirsyncer", "python", "go", "other"}

// clientFamily keeps the metric label bounded: a few known clients, else "other".
func clientFamily(ua string) string {
	l := strings.ToLower(ua)
	switch {
	case strings.Contains(l, "ios/") || strings.Contains(l, "iphone") || strings.Contains(l, "ipad"):
		return "ios"
	case strings.Contains(l, "macos") || strings.Contains(l, "mac os") || strings.Contains(l, "mac+os") || strings.Contains(l, "darwin"):
		return "macos"
	case strings.Contains(l, "davx5") || strings.Contains(l, "davdroid"):
		return "davx5"
	case strings.Contains(l, "thunderbird"):
		return "thunderbird"
	case strings.Contains(l, "vdirsyncer"):
		return "vdirsyncer"
	case strings.Contains(l, "python"):
		return "python"
	case strings.Contains(l, "go-http-client"):
		return "go"
	}
	return "other"
}

// user returns the record of name, creating it (and forgetting the least
// recently seen users past the limit), and makes it the most recent; mu
// must be held.
func (h *syncHealth) user(name string) *userHealth {
	u := h.users[name]
	if u == nil {
		limit := h.limitNow()
		for len(h.users) >= limit && h.tail != nil {
			h.evict(h.tail)
		}
		u = &userHealth{name: name}
		h.users[name] = u
		h.kept.Set(float64(len(h.users)))
	} else if h.head == u {
		return u
	} else {
		h.unlink(u)
	}
	u.next = h.head
	if h.head != nil {
		h.head.prev = u
	}
	h.head = u
	if h.tail == nil {
		h.tail = u
	}
	return u
}

func (h *syncHealth) unlink(u *userHealth) {
	if u.prev != nil {
		u.prev.next = u.next
	} else {
		h.head = u.next
	}
	if u.next != nil {
		u.next.prev = u.prev
	} else {
		h.tail = u.prev
	}
	u.prev, u.next = nil, nil
}

// evict forgets u and its metric series; mu must be held (so a sync
// cannot set a series again between the two).
func (h *syncHealth) evict(u *userHealth) {
	h.unlink(u)
	delete(h.users, u.name)
	for _, f := range families {
		h.lastSync.DeleteLabelValues(u.name, f)
	}
	h.kept.Set(float64(len(h.users)))
	h.evictions.Inc()
}

// limitNow is the bound in force.
func (h *syncHealth) limitNow() int {
	if n := h.limit(); n > 0 {
		return n
	}
	return DefaultSyncHealthUsers
}

// intern returns the one shared copy of s: phones of one model and OS
// share a User-Agent, a project's members its collection names. The
// unique package copies s (it may be a slice of a header or a path) and
// drops the copy when no record holds it.
func intern(s string) string { return unique.Make(s).Value() }

// device returns the record of (user, ua), creating it; mu must be held.
func (h *syncHealth) device(user, ua string, now int64) *device {
	if len(ua) > maxUserAgentLen {
		ua = ua[:maxUserAgentLen]
	}
	u := h.user(user)
	var d *device
	for i := range u.devs {
		if u.devs[i].ua == ua {
			d = &u.devs[i]
			break
		}
	}
	if d == nil {
		if len(u.devs) >= maxDevicesPerUser {
			// Forget the device seen least recently: an authenticated
			// client inventing User-Agents cannot grow this without bound.
			oldest := 0
			for i := range u.devs {
				if u.devs[i].lastSeen < u.devs[oldest].lastSeen {
					oldest = i
				}
			}
			u.devs[oldest] = u.devs[len(u.devs)-1]
			u.devs = u.devs[:len(u.devs)-1]
		}
		ua = intern(ua)
		u.devs = append(u.devs, device{ua: ua, client: clientFamily(ua), firstSeen: now})
		d = &u.devs[len(u.devs)-1]
	}
	d.lastSeen = now
	return d
}

// poll records PROPFINDs that read the ctags or sync tokens of colls (a
// home poll reads them all): one clock reading, lock and device lookup
// for the lot, not one per list.
func (h *syncHealth) poll(user, ua string, colls ...Collection) {
	if len(colls) == 0 {
		return
	}
	now := h.now().UnixNano()
	h.mu.Lock()
	d := h.device(user, ua, now)
	d.counts[kindPoll] += int32(len(colls))
	if d.colls == nil {
		// The first home poll lists them all: one allocation of the right size.
		d.colls = make([]collSync, 0, len(colls))
	}
	for i := range colls {
		h.coll(d, colls[i].Name, i).poll = now
	}
	h.mu.Unlock()
	h.polls.Add(float64(len(colls)))
}

// synced records a sync of coll ("" for the home or a multiget) that left
// the device at revision seq with n changes reported.
func (h *syncHealth) synced(user, ua, coll, kind string, seq int64, n int) {
	t := h.now()
	now := t.UnixNano()
	k := kindIndex(kind)
	h.mu.Lock()
	d := h.device(user, ua, now)
	d.counts[k]++
	switch kind {
	case syncMultiget:
		// A fetch after a sync, not a sync: counted, but it must not hide
		// how the device last synced.
		h.mu.Unlock()
		h.syncs.WithLabelValues(kind).Inc()
		return
	case syncReset:
		d.lastReset = now
	default:
		d.lastSync, d.lastKind = now, k
	}
	if coll != "" {
		cs := h.coll(d, coll, 0)
		cs.kind = k
		if kind != syncReset {
			cs.lastSync, cs.seq, cs.changes = now, seq, int32(min(n, math.MaxInt32))
		}
	}
	if kind != syncReset {
		// Under mu: an eviction deletes the user's series under it too,
		// so none outlives its user.
		h.lastSync.WithLabelValues(user, d.client).Set(float64(t.Unix()))
	}
	h.mu.Unlock()
	h.syncs.WithLabelValues(kind).Inc()
}

// Report types of the admin endpoint.
type syncReport struct {
	// Since is when this process started remembering.
	Since time.Time        `json:"since"`
	Note  string           `json:"note"`
	Users []userSyncReport `json:"users"`
}

type userSyncReport struct {
	User        string            `json:"user"`
	Collections []collStateReport `json:"collections"`
	Devices     []deviceReport    `json:"devices"`
}

type collStateReport struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name"`
	Kind        string `json:"kind"`
	Seq         int64  `json:"seq"`
}

type deviceReport struct {
	deviceJSON
	// Behind lists collections whose content changed after the device's
	// last sync of them, with the revision the device has and the current one.
	Behind []behindReport `json:"behind"`
}

// deviceJSON and collJSON are a device's record as the endpoint shows it.
type deviceJSON struct {
	UserAgent   string               `json:"user_agent"`
	Client      string               `json:"client"`
	FirstSeen   time.Time            `json:"first_seen"`
	LastSeen    time.Time            `json:"last_seen"`
	LastSync    time.Time            `json:"last_sync,omitzero"`
	LastKind    string               `json:"last_sync_kind,omitempty"`
	LastReset   time.Time            `json:"last_token_reset,omitzero"`
	Counts      map[string]int       `json:"counts"`
	Collections map[string]*collJSON `json:"collections"`
}

type collJSON struct {
	LastSync time.Time `json:"last_sync"`
	Kind     string    `json:"kind"`
	// Seq is the revision the device's sync token now names.
	Seq     int64     `json:"token_seq"`
	Changes int       `json:"changes"`
	Poll    time.Time `json:"last_poll,omitzero"`
}

// at turns a remembered Unix-nanosecond time back into the clock's time
// (its location too, so the JSON reads as before); 0 is the zero time.
func (h *syncHealth) at(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).In(h.started.Location())
}

// json copies d for the report; h.mu must be held.
func (h *syncHealth) json(d *device) deviceJSON {
	j := deviceJSON{UserAgent: d.ua, Client: d.client, FirstSeen: h.at(d.firstSeen), LastSeen: h.at(d.lastSeen),
		LastSync: h.at(d.lastSync), LastKind: kinds[d.lastKind], LastReset: h.at(d.lastReset),
		Counts: map[string]int{}, Collections: make(map[string]*collJSON, len(d.colls))}
	for k, n := range d.counts {
		if k != 0 && n != 0 {
			j.Counts[kinds[k]] = int(n)
		}
	}
	for _, c := range d.colls {
		j.Collections[c.name] = &collJSON{LastSync: h.at(c.lastSync), Kind: kinds[c.kind], Seq: c.seq,
			Changes: int(c.changes), Poll: h.at(c.poll)}
	}
	return j
}

type behindReport struct {
	Collection string `json:"collection"`
	DeviceSeq  int64  `json:"device_seq"`
	CurrentSeq int64  `json:"current_seq"`
}

// report builds the JSON for the given users, reading their collections'
// current revisions from the store.
func (h *syncHealth) report(ctx context.Context, be Backend, users []string) (*syncReport, error) {
	rep := &syncReport{Since: h.started, Users: []userSyncReport{},
		Note: fmt.Sprintf("kept in memory since the process started, for the %d users seen most recently (limits.sync_health_users); a device missing here has not synced since, or its user was forgotten", h.limitNow())}
	for _, name := range users {
		colls, err := be.Collections(ctx, name)
		if err != nil {
			return nil, err
		}
		ur := userSyncReport{User: name, Collections: []collStateReport{}, Devices: []deviceReport{}}
		seqs := map[string]int64{}
		for _, c := range colls {
			ur.Collections = append(ur.Collections, collStateReport{Name: c.Name, DisplayName: c.DisplayName, Kind: kindName(c), Seq: c.Seq})
			seqs[c.Name] = c.Seq
		}
		h.mu.Lock()
		var devs []device
		if u := h.users[name]; u != nil {
			devs = u.devs
		}
		for i := range devs {
			dr := deviceReport{deviceJSON: h.json(&devs[i]), Behind: []behindReport{}}
			for k, v := range dr.Collections {
				if cur, ok := seqs[k]; ok && !v.LastSync.IsZero() && cur > v.Seq {
					dr.Behind = append(dr.Behind, behindReport{Collection: k, DeviceSeq: v.Seq, CurrentSeq: cur})
				}
			}
			slices.SortFunc(dr.Behind, func(a, b behindReport) int { return strings.Compare(a.Collection, b.Collection) })
			ur.Devices = append(ur.Devices, dr)
		}
		h.mu.Unlock()
		slices.SortFunc(ur.Devices, func(a, b deviceReport) int { return b.LastSeen.Compare(a.LastSeen) })
		rep.Users = append(rep.Users, ur)
	}
	return rep, nil
}

// kindName is a collection's kind in the report: "todos" or "events".
func kindName(c Collection) string {
	if c.Todos {
		return "todos"
	}
	return "events"
}

// serveSyncHealth is GET /admin/sync: the caller's own devices, or every
// user's when Options.IsAdmin says the caller is an admin (?user=NAME
// narrows it to one user).
func (h *Handler) serveSyncHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	u, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	users := []string{u.Name}
	if h.opts.IsAdmin != nil && h.opts.IsAdmin(u.Name) {
		users = users[:0]
		want := r.URL.Query().Get("user")
		for _, name := range h.be.Users() {
			if want == "" || name == want {
				users = append(users, name)
			}
		}
	}
	rep, err := h.health.report(r.Context(), h.be, users)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(rep)
}
