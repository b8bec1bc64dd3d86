package calendar

import (
	"cmp"
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
	// Limits.SyncHealthUsers is zero: ~0.5 KB each with ten lists and one
	// phone (its last-sync series is read from the record), so ~52 MB at
	// the bound.
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

// stamp is a remembered time to the second: seconds after the second the
// record started (syncHealth.epoch), plus one, so 0 means never. A quarter
// of a time.Time, half of Unix nanoseconds: a million phones keep a dozen
// each, and a poll's time needs no finer grain than the second.
type stamp uint32

// collSync is one device's view of one collection (32 bytes: a million
// phones keep ten each).
type collSync struct {
	name           unique.Handle[string] // interned: a project's members share its lists' names
	seq            int64                 // the revision the device's sync token now names
	lastSync, poll stamp
	changes        int32
	kind           uint8
}

type device struct {
	ua                                       unique.Handle[string] // interned: phones of one model and OS share it
	colls                                    []collSync
	firstSeen, lastSeen, lastSync, lastReset stamp
	counts                                   [len(kinds)]int32
	client                                   uint8 // index in families
	lastKind                                 uint8
}

// coll returns d's record of name, adding it; hint is where it is
// expected (a home poll lists collections in the same order each time), so
// a repeated poll finds each in one comparison; mu must be held.
func (h *syncHealth) coll(d *device, name string, hint int) *collSync {
	if hint < len(d.colls) && d.colls[hint].name.Value() == name {
		return &d.colls[hint]
	}
	for i := range d.colls {
		if d.colls[i].name.Value() == name {
			return &d.colls[i]
		}
	}
	d.colls = append(d.colls, collSync{name: unique.Make(name)})
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
	epoch   int64 // started in Unix seconds: stamps count from it
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
	kept      prometheus.Gauge
	evictions prometheus.Counter
}

func newSyncHealth(reg prometheus.Registerer, now func() time.Time, limit func() int) *syncHealth {
	started := now()
	h := &syncHealth{now: now, started: started, epoch: started.Unix(), limit: limit, users: map[string]*userHealth{}}
	h.syncs = metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_caldav_syncs_total",
		Help: "CalDAV sync requests by kind: full, incremental, token_reset, poll, query, multiget.",
	}, []string{"kind"}))
	h.polls = h.syncs.WithLabelValues(syncPoll)
	metricsreg.Register(reg, &lastSyncMetric{desc: prometheus.NewDesc("duebridge_caldav_last_sync_timestamp_seconds",
		"When a user's devices of a client family last synced (sync-collection or calendar-query), Unix time; only users whose sync health is kept (limits.sync_health_users).",
		[]string{"user", "client"}, nil)}).add(h)
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

// families are the values clientFamily returns; a device keeps its
// family's index.
var families = [...]string{"ios", "macos", "davx5", "thunderbird", "vdirsyncer", "python", "go", "other"}

// familyIndex is f's index in families.
func familyIndex(f string) uint8 {
	for i := range families {
		if families[i] == f {
			return uint8(i)
		}
	}
	return uint8(len(families) - 1)
}

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

// evict forgets u, and so its last-sync series; mu must be held.
func (h *syncHealth) evict(u *userHealth) {
	h.unlink(u)
	delete(h.users, u.name)
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

// stamp turns the clock's t into a stamp (a time before the record
// started counts as its start).
func (h *syncHealth) stamp(t time.Time) stamp {
	s := t.Unix() - h.epoch
	return stamp(min(max(s, 0), math.MaxUint32-1) + 1)
}

// device returns the record of (user, ua), creating it; mu must be held.
func (h *syncHealth) device(user, ua string, now stamp) *device {
	if len(ua) > maxUserAgentLen {
		ua = ua[:maxUserAgentLen]
	}
	u := h.user(user)
	var d *device
	for i := range u.devs {
		if u.devs[i].ua.Value() == ua {
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
		// Interned: the unique package copies ua (a slice of the request's
		// header) once for every phone that sends it, and drops the copy
		// when no record holds it.
		u.devs = append(u.devs, device{ua: unique.Make(ua), client: familyIndex(clientFamily(ua)), firstSeen: now})
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
	now := h.stamp(h.now())
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
	now := h.stamp(h.now())
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
	h.mu.Unlock()
	h.syncs.WithLabelValues(kind).Inc()
}

// lastSyncMetric is duebridge_caldav_last_sync_timestamp_seconds, read
// from the records when scraped: per user and client family the last sync
// of its devices. A gauge series kept per user cost ~420 bytes each, more
// than the rest of a user's record; reading the records costs only the
// scrape. Servers built on one registry share it (metricsreg), so it
// reads the records of each.
type lastSyncMetric struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	hs   []*syncHealth
}

func (m *lastSyncMetric) add(h *syncHealth) {
	m.mu.Lock()
	m.hs = append(m.hs, h)
	m.mu.Unlock()
}

func (m *lastSyncMetric) Describe(ch chan<- *prometheus.Desc) { ch <- m.desc }

func (m *lastSyncMetric) Collect(ch chan<- prometheus.Metric) {
	type series struct {
		user   string
		client uint8
		at     int64
	}
	var rows []series
	m.mu.Lock()
	hs := slices.Clone(m.hs)
	m.mu.Unlock()
	for _, h := range hs {
		h.mu.Lock()
		rows = slices.Grow(rows, len(h.users))
		for u := h.head; u != nil; u = u.next {
			var last [len(families)]stamp
			for i := range u.devs {
				last[u.devs[i].client] = max(last[u.devs[i].client], u.devs[i].lastSync)
			}
			for f, s := range last {
				if s != 0 {
					rows = append(rows, series{u.name, uint8(f), h.at(s).Unix()})
				}
			}
		}
		h.mu.Unlock()
	}
	if len(hs) > 1 {
		// One series per user and family: the latest of the servers'.
		slices.SortFunc(rows, func(a, b series) int {
			return cmp.Or(strings.Compare(a.user, b.user), cmp.Compare(a.client, b.client), cmp.Compare(b.at, a.at))
		})
		rows = slices.CompactFunc(rows, func(a, b series) bool { return a.user == b.user && a.client == b.client })
	}
	// Sent after the locks are dropped: polls do not wait for the scraper.
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(m.desc, prometheus.GaugeValue, float64(r.at), r.user, families[r.client])
	}
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

// at turns a stamp back into the clock's time (its location too, so the
// JSON reads as before); 0 is the zero time.
func (h *syncHealth) at(s stamp) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(h.epoch+int64(s)-1, 0).In(h.started.Location())
}

// json copies d for the report; h.mu must be held.
func (h *syncHealth) json(d *device) deviceJSON {
	j := deviceJSON{UserAgent: d.ua.Value(), Client: families[d.client], FirstSeen: h.at(d.firstSeen), LastSeen: h.at(d.lastSeen),
		LastSync: h.at(d.lastSync), LastKind: kinds[d.lastKind], LastReset: h.at(d.lastReset),
		Counts: map[string]int{}, Collections: make(map[string]*collJSON, len(d.colls))}
	for k, n := range d.counts {
		if k != 0 && n != 0 {
			j.Counts[kinds[k]] = int(n)
		}
	}
	for _, c := range d.colls {
		j.Collections[c.name.Value()] = &collJSON{LastSync: h.at(c.lastSync), Kind: kinds[c.kind], Seq: c.seq,
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
		// Most recent first; times are kept to the second, so devices seen
		// in the same second keep one order (by User-Agent).
		slices.SortFunc(ur.Devices, func(a, b deviceReport) int {
			return cmp.Or(b.LastSeen.Compare(a.LastSeen), strings.Compare(a.UserAgent, b.UserAgent))
		})
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
