package calendar

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/emersion/go-ical"
)

// report dispatches REPORT. A report we do not know gets 403 with
// DAV:supported-report (RFC 3253 §3.6), never 412 or 501: iOS silently
// stops syncing a collection after those (go-vikunja/vikunja#2658).
func (h *Handler) report(w http.ResponseWriter, r *http.Request, u *User, t target) {
	body, err := h.readXML(r)
	if err != nil || body == nil {
		http.Error(w, "expected an XML REPORT body", http.StatusBadRequest)
		return
	}
	switch {
	case body.is(nsDAV, "sync-collection") && t.kind == kindCollection:
		h.syncCollection(w, r, u, t, body)
	case body.is(nsDAV, "sync-collection") && t.kind == kindHome:
		h.syncHome(w, r, u, t, body)
	case body.is(nsCalDAV, "calendar-multiget") && (t.kind == kindCollection || t.kind == kindObject || t.kind == kindHome):
		h.multiget(w, r, u, body)
	case body.is(nsCalDAV, "calendar-query") && (t.kind == kindCollection || t.kind == kindObject):
		h.query(w, r, u, t, body)
	case body.is(nsCalDAV, "free-busy-query") && t.kind == kindCollection:
		h.freeBusy(w, r, u, t, body)
	default:
		davError(w, http.StatusForbidden, eSupportedReport,
			fmt.Sprintf("REPORT %s is not supported on this resource", body.XMLName.Local))
	}
}

// reportProps reads the DAV:prop (or allprop/propname) of a REPORT body;
// def is used when the body names none.
func reportProps(body *node, def ...xml.Name) propReq {
	switch {
	case body.child(nsDAV, "prop") != nil:
		return propReq{props: body.child(nsDAV, "prop").names()}
	case body.child(nsDAV, "allprop") != nil:
		return propReq{allProp: true}
	case body.child(nsDAV, "propname") != nil:
		return propReq{propName: true}
	}
	return propReq{props: def}
}

type syncReq struct {
	token string
	level string
	limit int // 0: none
	q     propReq
}

func parseSyncReq(body *node) (syncReq, error) {
	s := syncReq{level: "1", q: reportProps(body, pGetETag)}
	if n := body.child(nsDAV, "sync-token"); n != nil {
		s.token = strings.TrimSpace(n.Text)
	}
	if n := body.child(nsDAV, "sync-level"); n != nil {
		s.level = strings.ToLower(strings.TrimSpace(n.Text))
	}
	if s.level != "1" && s.level != "infinite" {
		return s, fmt.Errorf("bad sync-level %q", s.level)
	}
	if n := body.child(nsDAV, "limit").child(nsDAV, "nresults"); n != nil {
		v, err := strconv.Atoi(strings.TrimSpace(n.Text))
		if err != nil || v < 1 {
			return s, fmt.Errorf("bad nresults %q", n.Text)
		}
		s.limit = v
	}
	return s, nil
}

// syncCollection answers RFC 6578 sync-collection on a calendar
// collection. Its cost follows the number of changes: Backend.Changes
// reads from the token's revision on. Removals are tombstones, answered 404. A token we cannot
// honour (unknown, from another database, older than the kept tombstones)
// gets 403 DAV:valid-sync-token, after which clients start over with an
// empty token. The Depth header is ignored: RFC 6578 wants 0, Apple's
// clients send 1, and refusing them would stop their sync.
func (h *Handler) syncCollection(w http.ResponseWriter, r *http.Request, u *User, t target, body *node) {
	sr, err := parseSyncReq(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	v, err := h.view(r.Context(), u)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	withData := needsData(sr.q)
	var c Collection
	var list []Object
	switch {
	case sr.token == "" && sr.limit == 0:
		c, list, err = h.be.Objects(r.Context(), u.Name, t.coll, withData)
	case sr.token == "":
		// A limited full sync must be resumable, so it goes in
		// revision order like an incremental one.
		c, list, err = h.be.Changes(r.Context(), u.Name, t.coll, FromStart, withData)
	default:
		since, ok := parseToken(v.epoch, sr.token)
		if !ok {
			// Not one of ours: refused like an expired one, if the
			// collection exists.
			if _, err = h.be.Collection(r.Context(), u.Name, t.coll); err == nil {
				err = ErrSyncTokenExpired
			}
			break
		}
		c, list, err = h.be.Changes(r.Context(), u.Name, t.coll, since, withData)
	}
	if errors.Is(err, ErrSyncTokenExpired) {
		h.health.synced(u.Name, r.UserAgent(), t.coll, syncReset, 0, 0)
		h.log.Info("sync token refused; the client will re-sync in full", "user", u.Name, "collection", t.coll,
			"token", sr.token, "ua", r.UserAgent())
		davError(w, http.StatusForbidden, eValidSyncToken, "unknown or expired sync token; sync again with an empty token")
		return
	}
	if h.failed(w, r, err) {
		return
	}
	token := c.Seq
	truncated := false
	if sr.limit > 0 && len(list) > sr.limit {
		list = truncateAtRevision(list, sr.limit)
		token, truncated = list[len(list)-1].Seq, true
	}
	ms := newMultistatus(w, preferMinimal(r))
	for i := range list {
		if h.failedIn(ms, w, r, ms.stopped(r.Context())) {
			return
		}
		o := &list[i]
		if o.Deleted {
			ms.status(objHref(u.Name, c.Name, o.Name), http.StatusNotFound)
			continue
		}
		res := v.object(c, o)
		ms.response(res.href, res.results(sr.q))
	}
	if truncated {
		// RFC 6578 §3.6: the request-URI answered 507 says "there is more".
		ms.status(collHref(u.Name, c.Name), http.StatusInsufficientStorage)
	}
	ms.syncToken(syncToken(v.epoch, token))
	ms.send()
	kind := syncIncremental
	if sr.token == "" {
		kind = syncFull
	}
	h.health.synced(u.Name, r.UserAgent(), c.Name, kind, token, len(list))
}

// truncateAtRevision keeps about n changes, cutting only between
// revisions: the token then names a state the client has wholly seen. A
// single revision larger than n is kept whole.
func truncateAtRevision(list []Object, n int) []Object {
	cut := n
	for cut > 0 && list[cut].Seq == list[cut-1].Seq {
		cut--
	}
	if cut == 0 {
		cut = 1
		for cut < len(list) && list[cut].Seq == list[0].Seq {
			cut++
		}
	}
	return list[:cut]
}

// syncHome answers sync-collection on the calendar home (macOS syncs the
// home to learn which collections changed): the member collections whose
// revision is newer than the token. Collections are never removed.
func (h *Handler) syncHome(w http.ResponseWriter, r *http.Request, u *User, t target, body *node) {
	sr, err := parseSyncReq(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if sr.level != "1" {
		davError(w, http.StatusForbidden, eSyncTraversalSupported, "the calendar home supports sync-level 1 only")
		return
	}
	v, err := h.view(r.Context(), u)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	colls, err := h.be.Collections(r.Context(), u.Name)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	top := maxSeq(colls)
	var since int64
	if sr.token != "" {
		var ok bool
		since, ok = parseToken(v.epoch, sr.token)
		if !ok || since > top {
			h.health.synced(u.Name, r.UserAgent(), "", syncReset, 0, 0)
			davError(w, http.StatusForbidden, eValidSyncToken, "unknown or expired sync token; sync again with an empty token")
			return
		}
	}
	ms := newMultistatus(w, preferMinimal(r))
	n := 0
	for i := range colls {
		if sr.token != "" && colls[i].Seq <= since {
			continue
		}
		n++
		ms.response(collHref(u.Name, colls[i].Name), v.collectionAt(&colls[i]).results(sr.q))
	}
	ms.syncToken(syncToken(v.epoch, top))
	ms.send()
	kind := syncIncremental
	if sr.token == "" {
		kind = syncFull
	}
	h.health.synced(u.Name, r.UserAgent(), "", kind, top, n)
}

// multiget answers calendar-multiget from the stored bytes. Hrefs are
// answered in request order, echoed as sent; anything not one of the
// user's objects is 404. An href repeated (or another spelling of the same
// object) is answered once: each copy would otherwise carry the whole
// object again. More distinct hrefs than limits.multiget_hrefs are refused
// with 403 and DAV:number-of-matches-within-limits (RFC 5323's condition
// for "more than the server will answer"; iOS asks for 50 at a time).
func (h *Handler) multiget(w http.ResponseWriter, r *http.Request, u *User, body *node) {
	q := reportProps(body, pGetETag, pCalendarData)
	var hrefs []string
	var targets []target
	type hrefKey struct{ raw, user, coll, name string }
	seen := map[hrefKey]bool{}
	for _, hn := range body.all(nsDAV, "href") {
		href := strings.TrimSpace(hn.Text)
		ht := hrefTarget(hn.Text)
		key := hrefKey{raw: href}
		if ht.kind == kindObject {
			key = hrefKey{user: ht.user, coll: ht.coll, name: ht.name}
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		hrefs = append(hrefs, href)
		targets = append(targets, ht)
	}
	if limit := h.multigetLimit(); len(hrefs) > limit {
		h.limits.WithLabelValues("multiget_hrefs").Inc()
		h.log.Info("multiget refused: too many hrefs", "user", u.Name, "hrefs", len(hrefs), "limit", limit, "ua", r.UserAgent())
		davError(w, http.StatusForbidden, eNumberOfMatches,
			fmt.Sprintf("calendar-multiget is limited to %d distinct hrefs; ask in smaller batches", limit))
		return
	}
	v, err := h.view(r.Context(), u)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	type found struct {
		coll Collection
		obj  *Object
	}
	out := make([]found, len(hrefs))
	// One read per collection, not one per href; objects the cache holds
	// for the collection's revision in that read are not read again.
	wanted := map[string][]int{} // collection -> indexes into hrefs
	names := map[string][]string{}
	for i, ht := range targets {
		if ht.kind != kindObject || ht.user != u.Name {
			continue
		}
		wanted[ht.coll] = append(wanted[ht.coll], i)
		names[ht.coll] = append(names[ht.coll], ht.name)
	}
	for coll, idx := range wanted {
		var cached []*Object // aligned with idx
		c, objs, err := h.be.ObjectsByName(r.Context(), u.Name, coll, func(seq int64) []string {
			var missing []string
			cached, missing = h.objects.lookup(u.Name, coll, seq, names[coll])
			return missing
		})
		if errors.Is(err, ErrNotFound) {
			continue
		} else if err != nil {
			h.serverError(w, r, err)
			return
		}
		var read map[string]*Object
		if len(objs) > 0 {
			read = make(map[string]*Object, len(objs))
			for j := range objs {
				read[objs[j].Name] = &objs[j]
			}
			h.objects.add(u.Name, coll, c.Seq, objs)
		}
		for k, i := range idx {
			var o *Object
			if k < len(cached) {
				o = cached[k]
			}
			if o == nil {
				o = read[targets[i].name]
			}
			if o != nil {
				out[i] = found{coll: c, obj: o}
			}
		}
	}
	ms := newMultistatus(w, preferMinimal(r))
	for i, href := range hrefs {
		if h.failedIn(ms, w, r, ms.stopped(r.Context())) {
			return // the client went away; stop working for it
		}
		if out[i].obj == nil {
			ms.status(href, http.StatusNotFound)
			continue
		}
		ms.response(href, v.object(out[i].coll, out[i].obj).results(q))
	}
	ms.send()
	h.health.synced(u.Name, r.UserAgent(), "", syncMultiget, 0, len(hrefs))
}

// multigetLimit is limits.multiget_hrefs, or its default when unset.
func (h *Handler) multigetLimit() int {
	if n := h.be.Limits().MultigetHrefs; n > 0 {
		return n
	}
	return DefaultMultigetHrefs
}

// DefaultMultigetHrefs applies when the config sets no limits.multiget_hrefs.
const DefaultMultigetHrefs = 1000

// query answers calendar-query with our own filter evaluation: go-webdav's
// matcher treats every VTODO time-range as a miss.
func (h *Handler) query(w http.ResponseWriter, r *http.Request, u *User, t target, body *node) {
	q := reportProps(body, pGetETag)
	fn := body.child(nsCalDAV, "filter").child(nsCalDAV, "comp-filter")
	if fn == nil {
		davError(w, http.StatusForbidden, xml.Name{Space: nsCalDAV, Local: "valid-filter"}, "calendar-query needs a filter with a comp-filter")
		return
	}
	f, err := parseCompFilter(fn)
	if err != nil {
		davError(w, http.StatusForbidden, xml.Name{Space: nsCalDAV, Local: "valid-filter"}, err.Error())
		return
	}
	depth, err := parseDepth(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	v, err := h.view(r.Context(), u)
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	var c Collection
	var objs []Object
	switch {
	case t.kind == kindObject:
		var o Object
		c, o, err = h.be.Object(r.Context(), u.Name, t.coll, t.name)
		objs = []Object{o}
	default:
		if c, err = h.be.Collection(r.Context(), u.Name, t.coll); err != nil {
			break
		}
		if depth == 0 || !f.mayMatch(component(c)) {
			break // the collection itself is no calendar object
		}
		c, objs, err = h.be.Objects(r.Context(), u.Name, t.coll, true)
	}
	if h.failed(w, r, err) {
		return
	}
	ms := newMultistatus(w, preferMinimal(r))
	n := 0
	steps := h.requestSteps()
	for i := range objs {
		if h.failedIn(ms, w, r, ms.stopped(r.Context())) {
			return // the client went away; stop working for it
		}
		cal, err := ical.NewDecoder(bytes.NewReader(objs[i].Data)).Decode()
		if err != nil {
			h.log.Warn("stored object does not parse; left out of a query", "user", u.Name,
				"collection", c.Name, "name", objs[i].Name, "err", err)
			continue
		}
		ev := h.evaluation(r.Context(), u.Location, &steps)
		ok := f.matchCalendar(cal, ev)
		h.evaluated(ev, u.Name, c.Name, objs[i].Name)
		if !ok {
			continue
		}
		n++
		res := v.object(c, &objs[i])
		ms.response(res.href, res.results(q))
	}
	ms.send()
	h.health.synced(u.Name, r.UserAgent(), c.Name, syncQuery, c.Seq, n)
}
