package calendar

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/metricsreg"
)

// Sync health answers "why does Ana's phone not show the new deadline?":
// per user and device (User-Agent) it remembers when the device last polled
// and synced each collection, how (full, incremental, token reset), and up
// to which revision. It lives in memory: it describes the running process,
// costs no write per poll (SQLite serialises writers, and phones poll every
// few minutes), and starts empty after a restart, which the JSON says.

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
)

type collSync struct {
	LastSync time.Time `json:"last_sync"`
	Kind     string    `json:"kind"`
	// Seq is the revision the device's sync token now names.
	Seq     int64     `json:"token_seq"`
	Changes int       `json:"changes"`
	Poll    time.Time `json:"last_poll,omitzero"`
}

type device struct {
	UserAgent   string               `json:"user_agent"`
	Client      string               `json:"client"`
	FirstSeen   time.Time            `json:"first_seen"`
	LastSeen    time.Time            `json:"last_seen"`
	LastSync    time.Time            `json:"last_sync,omitzero"`
	LastKind    string               `json:"last_sync_kind,omitempty"`
	LastReset   time.Time            `json:"last_token_reset,omitzero"`
	Counts      map[string]int       `json:"counts"`
	Collections map[string]*collSync `json:"collections"`
}

type syncHealth struct {
	now     func() time.Time
	started time.Time

	mu    sync.Mutex
	users map[string]map[string]*device

	syncs    *prometheus.CounterVec
	polls    prometheus.Counter // syncs{kind="poll"}, looked up once
	lastSync *prometheus.GaugeVec
}

func newSyncHealth(reg prometheus.Registerer, now func() time.Time) *syncHealth {
	h := &syncHealth{now: now, started: now(), users: map[string]map[string]*device{}}
	h.syncs = metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_caldav_syncs_total",
		Help: "CalDAV sync requests by kind: full, incremental, token_reset, poll, query, multiget.",
	}, []string{"kind"}))
	h.polls = h.syncs.WithLabelValues(syncPoll)
	h.lastSync = metricsreg.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "duebridge_caldav_last_sync_timestamp_seconds",
		Help: "When a user's devices of a client family last synced (sync-collection or calendar-query), Unix time.",
	}, []string{"user", "client"}))
	return h
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

// device returns the record of (user, ua), creating it; mu must be held.
func (h *syncHealth) device(user, ua string, now time.Time) *device {
	if len(ua) > maxUserAgentLen {
		ua = ua[:maxUserAgentLen]
	}
	devs := h.users[user]
	if devs == nil {
		devs = map[string]*device{}
		h.users[user] = devs
	}
	d := devs[ua]
	if d == nil {
		if len(devs) >= maxDevicesPerUser {
			// Forget the device seen least recently: an authenticated
			// client inventing User-Agents cannot grow this without bound.
			var oldest string
			var at time.Time
			for k, v := range devs {
				if oldest == "" || v.LastSeen.Before(at) {
					oldest, at = k, v.LastSeen
				}
			}
			delete(devs, oldest)
		}
		d = &device{UserAgent: ua, Client: clientFamily(ua), FirstSeen: now,
			Counts: map[string]int{}, Collections: map[string]*collSync{}}
		devs[ua] = d
	}
	d.LastSeen = now
	return d
}

// poll records PROPFINDs that read the ctags or sync tokens of colls (a
// home poll reads them all): one clock reading, lock and device lookup
// for the lot, not one per list.
func (h *syncHealth) poll(user, ua string, colls ...Collection) {
	if len(colls) == 0 {
		return
	}
	now := h.now()
	h.mu.Lock()
	d := h.device(user, ua, now)
	d.Counts[syncPoll] += len(colls)
	for i := range colls {
		cs := d.Collections[colls[i].Name]
		if cs == nil {
			cs = &collSync{}
			d.Collections[colls[i].Name] = cs
		}
		cs.Poll = now
	}
	h.mu.Unlock()
	h.polls.Add(float64(len(colls)))
}

// synced records a sync of coll ("" for the home or a multiget) that left
// the device at revision seq with n changes reported.
func (h *syncHealth) synced(user, ua, coll, kind string, seq int64, n int) {
	now := h.now()
	h.mu.Lock()
	d := h.device(user, ua, now)
	d.Counts[kind]++
	switch kind {
	case syncMultiget:
		// A fetch after a sync, not a sync: counted, but it must not hide
		// how the device last synced.
		h.mu.Unlock()
		h.syncs.WithLabelValues(kind).Inc()
		return
	case syncReset:
		d.LastReset = now
	default:
		d.LastSync, d.LastKind = now, kind
	}
	if coll != "" {
		cs := d.Collections[coll]
		if cs == nil {
			cs = &collSync{}
			d.Collections[coll] = cs
		}
		cs.Kind = kind
		if kind != syncReset {
			cs.LastSync, cs.Seq, cs.Changes = now, seq, n
		}
	}
	client := d.Client
	h.mu.Unlock()
	h.syncs.WithLabelValues(kind).Inc()
	if kind != syncReset {
		h.lastSync.WithLabelValues(user, client).Set(float64(now.Unix()))
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
	device
	// Behind lists collections whose content changed after the device's
	// last sync of them, with the revision the device has and the current one.
	Behind []behindReport `json:"behind"`
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
		Note: "kept in memory since the process started; a device missing here has not synced since"}
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
		for _, d := range h.users[name] {
			dr := deviceReport{device: *d, Behind: []behindReport{}}
			dr.Counts = maps.Clone(d.Counts)
			dr.Collections = map[string]*collSync{}
			for k, v := range d.Collections {
				cp := *v
				dr.Collections[k] = &cp
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
