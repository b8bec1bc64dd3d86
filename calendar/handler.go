// Package calendar serves each user's tasks to CalDAV clients (iPhone
// Calendar and Reminders first): per project a read-only deadlines calendar
// of VEVENTs and a writable Reminders list of VTODOs.
//
// It wraps go-webdav's caldav.Handler. Reads (PROPFIND, REPORT, GET) are
// answered here from the stored, folded bytes with the properties iOS needs
// and go-webdav lacks (getctag, sync-token, sync-collection, privileges,
// colour); writes (PUT, DELETE, MKCOL, COPY, MOVE) go through go-webdav to
// the store-backed caldav.Backend in backend.go, whose rules live in
// bridge.PhonePut and bridge.PhoneDelete.
package calendar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"
	"github.com/emersion/go-webdav/caldav"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// Paths outside the DAV tree that the handler also serves.
const (
	WellKnownPath  = "/.well-known/caldav"
	SyncHealthPath = "/admin/sync"
)

// realm is the Basic realm of the challenge.
const realm = "duebridge"

// defaultObjectLimit applies when the config sets no limits.ical_object_bytes.
const defaultObjectLimit = 256 << 10

// Options for NewHandler. Zero values are fine.
type Options struct {
	// Logger; if nil, the service's logger is used.
	Logger *slog.Logger
	// IsAdmin reports whether a user may read every user's sync health at
	// /admin/sync. If nil, nobody may: each user sees only their own devices.
	IsAdmin func(user string) bool
}

// Handler serves CalDAV under Prefix, the /.well-known/caldav redirect, a
// PROPFIND on the server root (iOS walks from the bare host) and the sync
// health at /admin/sync. Mount it on exactly those paths.
type Handler struct {
	svc    *bridge.Service
	log    *slog.Logger
	opts   Options
	dav    *caldav.Handler
	epoch  epochCache
	health *syncHealth
	writes *prometheus.CounterVec
	// limits counts requests and objects that hit a limit, by limit.
	limits *prometheus.CounterVec
	// escapes caches objects' XML-escaped calendar-data by ETag.
	escapes *escapeCache
	// objects caches what multiget served, per collection revision.
	objects *objectCache
}

// NewHandler builds the handler and registers its metrics on the service's
// registry. It starts nothing.
func NewHandler(svc *bridge.Service, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = svc.Logger()
	}
	reg := svc.Metrics().Registry
	h := &Handler{svc: svc, log: o.Logger.With("component", "caldav"), opts: o, escapes: newEscapeCache(32 << 20),
		objects: newObjectCache(64 << 20)}
	h.dav = &caldav.Handler{Backend: &backend{h: h}, Prefix: strings.TrimSuffix(Prefix, "/")}
	h.health = newSyncHealth(reg, svc.Now)
	h.writes = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_caldav_writes_total",
		Help: "CalDAV writes from devices by outcome (completed, reopened, phone-state, created, updated, deleted, hidden, unchanged, refused-<status>).",
	}, []string{"outcome"}))
	h.limits = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_caldav_limit_hits_total",
		Help: "CalDAV requests refused or objects cut short by a limit (multiget_hrefs: multiget refused; recurrence_steps: an object's recurrence judged overlapping unexpanded).",
	}, []string{"limit"}))
	return h
}

// evaluation starts the filter evaluation of one object for a request;
// shared is the request's step budget (see RequestRecurrenceSteps).
func (h *Handler) evaluation(ctx context.Context, loc *time.Location, shared *int) *evaluation {
	ev := newEvaluation(ctx, loc, DefaultRecurrenceSteps)
	ev.shared = shared
	return ev
}

// evaluated counts an object whose recurrence ran out of budget.
func (h *Handler) evaluated(ev *evaluation, user, coll, name string) {
	if ev.exhausted {
		h.limits.WithLabelValues("recurrence_steps").Inc()
		h.log.Info("recurrence not expanded within its budget; counted as matching", "user", user,
			"collection", coll, "name", name, "steps", DefaultRecurrenceSteps)
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	defer func() {
		h.log.Debug("request", "method", r.Method, "path", r.URL.Path, "depth", r.Header.Get("Depth"),
			"status", sw.code, "ua", r.UserAgent(), "ms", time.Since(start).Milliseconds())
	}()
	switch r.URL.Path {
	case WellKnownPath:
		// Anonymous on purpose: iOS follows the redirect without
		// credentials and sends them only after the 401 at the DAV root.
		http.Redirect(sw, r, Prefix, http.StatusMovedPermanently)
		return
	case SyncHealthPath:
		h.serveSyncHealth(sw, r)
		return
	}
	t := parseTarget(r.URL.EscapedPath())
	u, ok := h.authenticate(sw, r)
	if !ok {
		return
	}
	if t.kind == kindUnknown || (t.user != "" && t.user != u.Name) {
		// Another user's paths answer exactly like paths that do not exist.
		http.Error(sw, "not found", http.StatusNotFound)
		return
	}
	if t.kind == kindServerRoot && r.Method != "PROPFIND" && r.Method != http.MethodOptions {
		h.methodNotAllowed(sw, r, u, t)
		return
	}
	switch r.Method {
	case http.MethodOptions:
		h.options(sw, r, u, t)
	case "PROPFIND":
		h.propfind(sw, r, u, t)
	case "PROPPATCH":
		h.proppatch(sw, r, u, t)
	case "REPORT":
		h.report(sw, r, u, t)
	case http.MethodGet, http.MethodHead:
		h.get(sw, r, u, t)
	case http.MethodPut:
		h.put(sw, r, u, t)
	case http.MethodDelete:
		h.delete(sw, r, u, t)
	case "MKCOL", "COPY", "MOVE":
		// go-webdav answers these through the backend: MKCOL is refused
		// (lists come from the task system), COPY and MOVE are 501.
		h.dav.ServeHTTP(sw, r.WithContext(withRequest(r.Context(), &request{user: u, target: t})))
	case "MKCALENDAR":
		http.Error(sw, "calendars and lists come from the task system", http.StatusForbidden)
	default:
		h.methodNotAllowed(sw, r, u, t)
	}
}

// authenticate checks HTTP Basic credentials; without valid ones it answers
// 401 with the challenge iOS waits for before it sends a password.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (*config.User, bool) {
	name, pw, ok := r.BasicAuth()
	if ok {
		cfg := h.svc.Config()
		if strings.Contains(name, "%") && cfg.User(name) == nil {
			// iOS may send a user name with @ URL-encoded (user%40example.com).
			if dec, err := url.PathUnescape(name); err == nil && cfg.User(dec) != nil {
				name = dec
			}
		}
		u, err := h.svc.AuthenticateFrom(r.Context(), "caldav", name, pw, r.RemoteAddr)
		if err == nil {
			return u, true
		}
		if errors.Is(err, context.Canceled) {
			return nil, false
		}
		var locked *bridge.LockoutError
		if errors.As(err, &locked) {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(locked.Until.Sub(h.svc.Now()).Seconds()))))
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
	http.Error(w, "authentication required", http.StatusUnauthorized)
	return nil, false
}

// options answers OPTIONS: the DAV classes iOS checks for calendar-access,
// and Allow without PUT and DELETE where writes are refused (old Apple
// clients otherwise retry refused writes forever).
func (h *Handler) options(w http.ResponseWriter, r *http.Request, u *config.User, t target) {
	allow, err := h.allow(r.Context(), u, t)
	if h.failed(w, r, err) {
		return
	}
	w.Header().Set("DAV", "1, 3, calendar-access")
	w.Header().Set("Allow", allow)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

// allow lists the methods a target accepts.
func (h *Handler) allow(ctx context.Context, u *config.User, t target) (string, error) {
	switch t.kind {
	case kindServerRoot:
		return "OPTIONS, PROPFIND", nil
	case kindRoot, kindPrincipal:
		return "OPTIONS, PROPFIND, REPORT", nil
	case kindHome:
		return "OPTIONS, PROPFIND, REPORT", nil
	}
	var c *store.Collection
	err := h.svc.Store().View(ctx, func(tx store.Tx) error {
		var err error
		if c, err = tx.Collection(u.Name, t.coll); err != nil {
			return err
		}
		if t.kind == kindObject {
			_, err = tx.Object(u.Name, t.coll, t.name)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	switch {
	case t.kind == kindCollection && writable(c):
		return "OPTIONS, PROPFIND, PROPPATCH, REPORT, PUT, DELETE", nil
	case t.kind == kindCollection:
		return "OPTIONS, PROPFIND, PROPPATCH, REPORT", nil
	case writable(c):
		return "OPTIONS, GET, HEAD, PROPFIND, REPORT, PUT, DELETE", nil
	}
	return "OPTIONS, GET, HEAD, PROPFIND, REPORT", nil
}

func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request, u *config.User, t target) {
	if allow, err := h.allow(r.Context(), u, t); err == nil {
		w.Header().Set("Allow", allow)
	}
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// get serves an object's stored bytes with its strong ETag; conditional
// requests and HEAD are handled by http.ServeContent.
func (h *Handler) get(w http.ResponseWriter, r *http.Request, u *config.User, t target) {
	if t.kind != kindObject {
		h.methodNotAllowed(w, r, u, t)
		return
	}
	var o *store.Object
	err := h.svc.Store().View(r.Context(), func(tx store.Tx) error {
		var err error
		o, err = tx.Object(u.Name, t.coll, t.name)
		return err
	})
	if h.failed(w, r, err) {
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("ETag", o.ETag)
	w.Header().Set("Cache-Control", "private, no-cache")
	http.ServeContent(w, r, "", o.Modified, bytes.NewReader(o.Data))
}

// request is what the go-webdav backend needs of the HTTP request it
// cannot see: the user, the parsed target, the exact body and the
// conditional headers. Identity travels in the context, as go-webdav's
// UserPrincipalBackend expects.
type request struct {
	user   *config.User
	target target
	body   []byte
	cond   bridge.Conditions
	ua     string
	// updated: the backend's PUT replaced an existing object.
	updated bool
}

type requestKey struct{}

func withRequest(ctx context.Context, req *request) context.Context {
	return context.WithValue(ctx, requestKey{}, req)
}

func requestFrom(ctx context.Context) (*request, bool) {
	req, ok := ctx.Value(requestKey{}).(*request)
	return req, ok
}

// put reads the body within the size limit (413 beyond it), keeps its
// exact octets for the backend and lets go-webdav parse and dispatch it.
func (h *Handler) put(w http.ResponseWriter, r *http.Request, u *config.User, t target) {
	if t.kind != kindObject {
		h.methodNotAllowed(w, r, u, t)
		return
	}
	limit := h.svc.Config().Limits.ICalObjectBytes
	if limit <= 0 {
		limit = defaultObjectLimit
	}
	if r.ContentLength > limit {
		h.tooLarge(w, limit)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	if int64(len(body)) > limit {
		h.tooLarge(w, limit)
		return
	}
	if err := decodable(body); err != nil {
		// go-webdav would decode it too, and answer 400 for an ordinary
		// error; a panicking one must not reach it.
		h.writes.WithLabelValues("refused-400").Inc()
		davError(w, http.StatusBadRequest, eValidCalendarData, err.Error())
		return
	}
	req := &request{user: u, target: t, body: body, cond: conditions(r), ua: r.UserAgent()}
	r2 := r.WithContext(withRequest(r.Context(), req))
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))
	h.dav.ServeHTTP(&putWriter{ResponseWriter: w, req: req}, r2)
}

// putWriter corrects go-webdav's PUT answer, which is always 201 Created
// (go-webdav v0.7.0 leaves this as a TODO): replacing an existing object
// is 204 No Content (RFC 4918 §9.7.1), without a Location.
type putWriter struct {
	http.ResponseWriter
	req *request
}

func (w *putWriter) WriteHeader(code int) {
	if code == http.StatusCreated && w.req.updated {
		w.Header().Del("Location")
		code = http.StatusNoContent
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *putWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// decodable reports whether body is iCalendar go-ical can decode. go-ical
// panics on some malformed content lines (a parameter with nothing after
// "=" at the end of a line, found by FuzzPhonePut); that is the client's
// error, not a crash.
func decodable(body []byte) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("not iCalendar: malformed content line")
		}
	}()
	if _, err := ical.NewDecoder(bytes.NewReader(body)).Decode(); err != nil {
		return fmt.Errorf("not iCalendar: %v", err)
	}
	return nil
}

func (h *Handler) tooLarge(w http.ResponseWriter, limit int64) {
	h.writes.WithLabelValues("refused-413").Inc()
	davError(w, http.StatusRequestEntityTooLarge, eMaxResourceSize,
		fmt.Sprintf("calendar objects are limited to %d bytes", limit))
}

// delete hands an object's DELETE to go-webdav; collections, the home and
// the principal cannot be deleted.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request, u *config.User, t target) {
	if t.kind != kindObject {
		h.writes.WithLabelValues("refused-403").Inc()
		http.Error(w, "lists and calendars come from the task system and cannot be deleted", http.StatusForbidden)
		return
	}
	req := &request{user: u, target: t, cond: conditions(r), ua: r.UserAgent()}
	h.dav.ServeHTTP(w, r.WithContext(withRequest(r.Context(), req)))
}

// conditions reads If-Match and If-None-Match.
func conditions(r *http.Request) bridge.Conditions {
	return bridge.Conditions{IfMatch: etagList(r.Header.Values("If-Match")), IfNoneMatch: etagList(r.Header.Values("If-None-Match"))}
}

// etagList splits entity-tag lists. A bare token some clients send without
// quotes is quoted, so it can still match.
func etagList(values []string) []string {
	var out []string
	for _, v := range values {
		for len(v) > 0 {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			var tag string
			weak := strings.HasPrefix(v, "W/")
			rest := strings.TrimPrefix(v, "W/")
			if strings.HasPrefix(rest, `"`) {
				end := strings.IndexByte(rest[1:], '"')
				if end < 0 {
					tag, v = rest+`"`, ""
				} else {
					tag, v = rest[:end+2], rest[end+2:]
				}
			} else {
				end := strings.IndexAny(rest, ", \t")
				if end < 0 {
					end = len(rest)
				}
				tag, v = rest[:end], rest[end:]
				if tag != "*" {
					tag = `"` + tag + `"`
				}
			}
			if weak {
				tag = "W/" + tag
			}
			out = append(out, tag)
		}
	}
	return out
}

// serverError logs err and answers 500 without details.
func (h *Handler) serverError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	h.log.Error("caldav request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// readXML reads a request body, logging it at debug level: the exact bodies
// current iOS sends are not all documented (IOS.md §13).
func (h *Handler) readXML(r *http.Request) (*node, error) {
	n, raw, err := readXML(r)
	if h.log.Enabled(r.Context(), slog.LevelDebug) && len(raw) > 0 {
		if len(raw) > 4096 {
			raw = raw[:4096]
		}
		h.log.Debug("request body", "method", r.Method, "path", r.URL.Path, "ua", r.UserAgent(), "body", string(raw))
	}
	return n, err
}

// view returns what property values of a request depend on.
func (h *Handler) view(ctx context.Context, u *config.User) (*view, error) {
	epoch, err := h.epoch.get(ctx, h.svc.Store())
	if err != nil {
		return nil, err
	}
	return &view{user: u, cfg: h.svc.Config(), epoch: epoch, escapes: h.escapes}, nil
}

// statusWriter remembers the status for the request log.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// failed answers a store error, 404 for ErrNotFound (never telling "absent"
// from "not yours") and 500 otherwise, and reports whether there was one.
func (h *Handler) failed(w http.ResponseWriter, r *http.Request, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		http.Error(w, "not found", http.StatusNotFound)
	default:
		h.serverError(w, r, err)
	}
	return true
}

// collections lists a user's collections in a read transaction.
func (h *Handler) collections(ctx context.Context, user string) ([]store.Collection, error) {
	var colls []store.Collection
	err := h.svc.Store().View(ctx, func(tx store.Tx) error {
		var err error
		colls, err = tx.Collections(user)
		return err
	})
	return colls, err
}
