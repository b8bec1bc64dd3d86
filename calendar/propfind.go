package calendar

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// parsePropReq reads a DAV:propfind body; no body means allprop.
func parsePropReq(body *node) (propReq, error) {
	if body == nil {
		return propReq{allProp: true}, nil
	}
	if !body.is(nsDAV, "propfind") {
		return propReq{}, fmt.Errorf("%w: expected DAV:propfind, got %s", errBadXML, body.XMLName.Local)
	}
	switch {
	case body.child(nsDAV, "prop") != nil:
		return propReq{props: body.child(nsDAV, "prop").names()}.withTags(), nil
	case body.child(nsDAV, "allprop") != nil:
		return propReq{allProp: true, props: body.child(nsDAV, "include").names()}, nil
	case body.child(nsDAV, "propname") != nil:
		return propReq{propName: true}, nil
	}
	return propReq{}, fmt.Errorf("%w: propfind without prop, allprop or propname", errBadXML)
}

// parseDepth reads the Depth header. Infinity (also the default) is
// answered as 1: every level of this tree is listed by its parent, and an
// unbounded walk over all objects of all lists is a denial of service.
func parseDepth(r *http.Request) (int, error) {
	switch strings.ToLower(strings.TrimSpace(r.Header.Get("Depth"))) {
	case "0":
		return 0, nil
	case "1", "infinity", "":
		return 1, nil
	}
	return 0, fmt.Errorf("bad Depth %q", r.Header.Get("Depth"))
}

// propReq reads and parses a PROPFIND body; bodies seen before (every
// iPhone sends the same one on each poll) come from h.bodies.
func (h *Handler) propReq(r *http.Request) (propReq, error) {
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		body, err := h.readXML(r) // logs the body
		if err != nil {
			return propReq{}, err
		}
		return parsePropReq(body)
	}
	// The body is read into a pooled buffer: it is only looked up (the
	// cache keeps its own copy), and io.ReadAll grew a new one 4 times on
	// every poll.
	buf := propReadBuffers.Get().(*[]byte)
	defer propReadBuffers.Put(buf)
	n, err := io.ReadFull(r.Body, (*buf)[:propBodyCacheSize+1])
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil // shorter than the buffer: all of it
	}
	if err != nil {
		return propReq{}, fmt.Errorf("%w: read body: %v", errBadXML, err)
	}
	raw := (*buf)[:n]
	if q, ok := h.bodies.get(raw); ok {
		return q, nil
	}
	// Not seen: the usual reader, over what was read and the rest (read to
	// the end here, before buf goes back to the pool).
	r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(raw), r.Body))
	body, err := h.readXML(r)
	if err != nil {
		return propReq{}, err
	}
	q, err := parsePropReq(body)
	if err == nil {
		h.bodies.put(raw, q)
	}
	return q, err
}

// propReadBuffers hold the start of PROPFIND bodies while they are looked
// up in the handler's propBodyCache.
var propReadBuffers = sync.Pool{New: func() any {
	b := make([]byte, propBodyCacheSize+1)
	return &b
}}

func (h *Handler) propfind(w http.ResponseWriter, r *http.Request, u *User, t target) {
	q, err := h.propReq(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
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
	polled := q.wants(pGetCTag) || q.wants(pSyncToken)
	ms := newMultistatus(w, preferMinimal(r))
	switch t.kind {
	case kindServerRoot, kindRoot:
		ms.props(t.href(), v.root(t.href()), q)
		if depth > 0 {
			// Only the caller's own principal: never a list of users.
			ms.props(principalHref(u.Name), v.principal(), q)
		}
	case kindPrincipal:
		ms.props(t.href(), v.principal(), q)
		if depth > 0 {
			colls, err := h.be.Collections(r.Context(), u.Name)
			if h.failedIn(ms, w, r, err) {
				return
			}
			ms.props(homeHref(u.Name), v.home(maxSeq(colls)), q)
		}
	case kindHome:
		// Reminders falls back to the home set and lists from here
		// (go-vikunja/vikunja#2417), so the home answers at its own path.
		colls, err := h.be.Collections(r.Context(), u.Name)
		if h.failedIn(ms, w, r, err) {
			return
		}
		h.rememberQuota(v, u, colls)
		ms.props(t.href(), v.home(maxSeq(colls)), q)
		if depth > 0 {
			for i := range colls {
				res := v.collectionAt(&colls[i]) // at collHref(u.Name, colls[i].Name)
				ms.props(res.href, res, q)
			}
			if polled {
				h.health.poll(u.Name, r.UserAgent(), colls...)
			}
		}
	case kindCollection:
		var c Collection
		var objs []Object
		var err error
		if depth == 0 {
			c, err = h.be.Collection(r.Context(), u.Name, t.coll)
		} else {
			c, objs, err = h.be.Objects(r.Context(), u.Name, t.coll, needsData(q))
		}
		if h.failedIn(ms, w, r, err) {
			return
		}
		ms.props(t.href(), v.collection(c), q)
		for i := range objs {
			res := v.object(c, &objs[i])
			ms.props(res.href, res, q)
		}
		if polled {
			h.health.poll(u.Name, r.UserAgent(), c)
		}
	case kindObject:
		c, o, err := h.be.Object(r.Context(), u.Name, t.coll, t.name)
		if h.failedIn(ms, w, r, err) {
			return
		}
		res := v.object(c, &o)
		ms.props(res.href, res, q)
	}
	ms.send()
}

// rememberQuota answers v's quota from h.quotas while the user's writable
// lists (colls, read before the quota) are at the same revisions.
func (h *Handler) rememberQuota(v *view, u *User, colls []Collection) {
	load := v.quota
	if load == nil {
		return
	}
	tag := h.quotas.listsTag(colls)
	v.quota = sync.OnceValues(func() (quota, error) {
		if q, ok := h.quotas.get(u.Name, tag, v.limits); ok {
			return q, nil
		}
		q, err := load()
		if err == nil {
			h.quotas.put(u.Name, tag, v.limits, q)
		}
		return q, err
	})
}

func maxSeq(colls []Collection) int64 {
	var m int64
	for _, c := range colls {
		m = max(m, c.Seq)
	}
	return m
}

// patchOp is one property of a PROPPATCH, in document order.
type patchOp struct {
	name  xml.Name
	set   bool
	value string
}

// proppatch lets the user rename, recolour and reorder their own lists and
// calendars (iOS sends calendar-color and calendar-order on its first sync).
// Other properties get 403; as RFC 4918 §9.2 wants, one refusal fails the
// whole request and the rest are answered 424. The answer is always a 207:
// a blanket 501 makes iOS report an error (go-vikunja/vikunja@b487a40).
func (h *Handler) proppatch(w http.ResponseWriter, r *http.Request, u *User, t target) {
	body, err := h.readXML(r)
	if err != nil || body == nil || !body.is(nsDAV, "propertyupdate") {
		http.Error(w, "expected a DAV:propertyupdate body", http.StatusBadRequest)
		return
	}
	var ops []patchOp
	for _, c := range body.Children {
		set := c.is(nsDAV, "set")
		if !set && !c.is(nsDAV, "remove") {
			continue
		}
		for _, p := range c.all(nsDAV, "prop") {
			for _, prop := range p.Children {
				ops = append(ops, patchOp{name: prop.XMLName, set: set, value: strings.TrimSpace(prop.Text)})
			}
		}
	}
	results := make([]propResult, len(ops))
	failed := false
	// edit runs inside the backend's write transaction, perhaps more than
	// once: it starts from the stored properties each time.
	edit := func(p *CollectionProps) bool {
		failed = false
		for i, op := range ops {
			results[i] = propResult{name: op.name, status: http.StatusOK}
			if p == nil || !applyPatch(p, op) {
				results[i].status = http.StatusForbidden
				failed = true
			}
		}
		return !failed && len(ops) > 0
	}
	switch t.kind {
	case kindCollection:
		err = h.be.SetCollectionProps(r.Context(), u.Name, t.coll, edit)
	case kindObject:
		// An object's properties are not writable, if it exists.
		if _, _, err = h.be.Object(r.Context(), u.Name, t.coll, t.name); err == nil {
			edit(nil)
		}
	default:
		edit(nil)
	}
	if h.failed(w, r, err) {
		return
	}
	if failed {
		for i := range results {
			if results[i].status == http.StatusOK {
				results[i].status = http.StatusFailedDependency
			}
		}
	}
	ms := newMultistatus(w, false)
	ms.response(t.href(), results)
	ms.send()
}

// applyPatch applies one operation to c, reporting whether it is allowed.
func applyPatch(c *CollectionProps, op patchOp) bool {
	switch op.name {
	case pDisplayName:
		if !op.set {
			c.DisplayName = "" // the backend restores the default name
			return true
		}
		if op.value == "" || len(op.value) > 256 {
			return false
		}
		c.DisplayName = op.value
		return true
	case pCalendarColor:
		if !op.set {
			c.Color = ""
			return true
		}
		if !validColor(op.value) {
			return false
		}
		c.Color = strings.ToUpper(op.value)
		return true
	case pCalendarOrder:
		if !op.set {
			c.Order = 0
			return true
		}
		n, err := strconv.Atoi(op.value)
		if err != nil {
			return false
		}
		c.Order = n
		return true
	}
	return false
}

// validColor accepts #RRGGBB and Apple's #RRGGBBAA.
func validColor(s string) bool {
	if len(s) != 7 && len(s) != 9 || s[0] != '#' {
		return false
	}
	for _, r := range s[1:] {
		if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
