// Package calendar serves each user's tasks to CalDAV clients (iPhone
// Calendar and Reminders first): per project a read-only deadlines calendar
// of VEVENTs and a writable Reminders list of VTODOs.
//
// The handler answers the whole protocol itself: reads (PROPFIND, REPORT,
// GET) from the stored, folded bytes with the properties iOS needs
// (getctag, sync-token, sync-collection, privileges, colour), and writes
// (PUT, DELETE, PROPPATCH) through the Backend (backend.go), which the core
// (bridge) implements; the rules of a device's write live there.
package calendar

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-ical"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/metricsreg"
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
	// Logger; if nil, slog.Default().
	Logger *slog.Logger
	// IsAdmin reports whether a user may read every user's sync health at
	// /admin/sync. If nil, nobody may: each user sees only their own devices.
	IsAdmin func(user string) bool
}

// Handler serves CalDAV under Prefix, the /.well-known/caldav redirect, a
// PROPFIND on the server root (iOS walks from the bare host) and the sync
// health at /admin/sync. Mount it on exactly those paths.
type Handler struct {
	be     Backend
	log    *slog.Logger
	opts   Options
	epoch  epochCache
	health *syncHealth
	writes *prometheus.CounterVec
	// limits counts requests and objects that hit a limit, by limit.
	limits *prometheus.CounterVec
	// escapes caches objects' XML-escaped calendar-data by ETag.
	escapes *escapeCache
	// objects caches what multiget served, per collection revision.
	objects *objectCache
	// bodies and quotas make a phone's repeated home poll cheap (pollcache.go).
	bodies propBodyCache
	quotas *quotaCache
}

// NewHandler builds the handler over be and registers its metrics on
// be.Registerer(). It starts nothing.
func NewHandler(be Backend, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	reg := be.Registerer()
	h := &Handler{be: be, log: o.Logger.With("component", "caldav"), opts: o, escapes: newEscapeCache(32 << 20),
		objects: newObjectCache(64 << 20), quotas: newQuotaCache()}
	h.health = newSyncHealth(reg, be.Now, func() int { return be.Limits().SyncHealthUsers })
	h.writes = metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_caldav_writes_total",
		Help: "CalDAV writes from devices by outcome (completed, reopened, phone-state, created, updated, deleted, hidden, unchanged, refused-<status>).",
	}, []string{"outcome"}))
	h.limits = metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_caldav_limit_hits_total",
		Help: "CalDAV requests refused or objects cut short by a limit (multiget_hrefs: multiget refused; recurrence_steps: an object's recurrence judged overlapping unexpanded; own_reminders, own_reminder_bytes: a PUT refused with 507).",
	}, []string{"limit"}))
	return h
}

// evaluation starts the filter evaluation of one object for a request;
// shared is the request's step budget (see requestSteps).
func (h *Handler) evaluation(ctx context.Context, loc *time.Location, shared *int) *evaluation {
	ev := newEvaluation(ctx, loc, h.be.Limits().RecurrenceSteps)
	ev.shared = shared
	return ev
}

// requestSteps is a request's recurrence budget, all objects together.
func (h *Handler) requestSteps() int {
	if n := h.be.Limits().RecurrenceStepsPerRequest; n > 0 {
		return n
	}
	return RequestRecurrenceSteps
}

// evaluated counts an object whose recurrence ran out of budget.
func (h *Handler) evaluated(ev *evaluation, user, coll, name string) {
	if ev.exhausted {
		h.limits.WithLabelValues("recurrence_steps").Inc()
		h.log.Info("recurrence not expanded within its budget; counted as matching", "user", user,
			"collection", coll, "name", name, "steps", ev.steps)
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
	if h.log.Enabled(r.Context(), slog.LevelDebug) {
		// Checked first: the arguments of a disabled Debug call are still
		// boxed and kept, ~10 allocations on every request.
		start := time.Now()
		defer func() {
			h.log.Debug("request", "method", r.Method, "path", r.URL.Path, "depth", r.Header.Get("Depth"),
				"status", sw.code, "ua", r.UserAgent(), "ms", time.Since(start).Milliseconds())
		}()
	}
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
	case "MKCOL", "MKCALENDAR":
		// Lists and calendars come from the task system's projects; one
		// the bridge would not fill would only confuse.
		h.writes.WithLabelValues("refused-403").Inc()
		http.Error(sw, "calendars and lists come from the task system", http.StatusForbidden)
	case "COPY", "MOVE":
		http.Error(sw, r.Method+" is not supported", http.StatusNotImplemented)
	default:
		h.methodNotAllowed(sw, r, u, t)
	}
}

// authenticate checks HTTP Basic credentials; without valid ones it answers
// 401 with the challenge iOS waits for before it sends a password.
func (h *Handler) authenticate(w http.ResponseWriter, r *http.Request) (*User, bool) {
	name, pw, ok := r.BasicAuth()
	if ok {
		u, err := h.be.Authenticate(r.Context(), name, pw, r.RemoteAddr)
		if err == nil {
			return u, true
		}
		if errors.Is(err, context.Canceled) {
			return nil, false
		}
		var locked *LockedOutError
		if errors.As(err, &locked) {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(locked.Until.Sub(h.be.Now()).Seconds()))))
		}
	}
	w.Header().Set("WWW-Authenticate", `Basic realm="`+realm+`", charset="UTF-8"`)
	http.Error(w, "authentication required", http.StatusUnauthorized)
	return nil, false
}

// options answers OPTIONS: the DAV classes iOS checks for calendar-access,
// and Allow without PUT and DELETE where writes are refused (old Apple
// clients otherwise retry refused writes forever).
func (h *Handler) options(w http.ResponseWriter, r *http.Request, u *User, t target) {
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
func (h *Handler) allow(ctx context.Context, u *User, t target) (string, error) {
	switch t.kind {
	case kindServerRoot:
		return "OPTIONS, PROPFIND", nil
	case kindRoot, kindPrincipal:
		return "OPTIONS, PROPFIND, REPORT", nil
	case kindHome:
		return "OPTIONS, PROPFIND, REPORT", nil
	}
	var c Collection
	var err error
	if t.kind == kindObject {
		c, _, err = h.be.Object(ctx, u.Name, t.coll, t.name)
	} else {
		c, err = h.be.Collection(ctx, u.Name, t.coll)
	}
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

func (h *Handler) methodNotAllowed(w http.ResponseWriter, r *http.Request, u *User, t target) {
	if allow, err := h.allow(r.Context(), u, t); err == nil {
		w.Header().Set("Allow", allow)
	}
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// get serves an object's stored bytes with its strong ETag; conditional
// requests and HEAD are handled by http.ServeContent.
func (h *Handler) get(w http.ResponseWriter, r *http.Request, u *User, t target) {
	if t.kind != kindObject {
		h.methodNotAllowed(w, r, u, t)
		return
	}
	_, o, err := h.be.Object(r.Context(), u.Name, t.coll, t.name)
	if h.failed(w, r, err) {
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("ETag", o.ETag)
	w.Header().Set("Cache-Control", "private, no-cache")
	http.ServeContent(w, r, "", o.Modified, bytes.NewReader(o.Data))
}

// put reads the body within the size limit (413 beyond it), checks that it
// is iCalendar and hands it to the backend with its exact octets and the
// conditional headers. A new object is 201 with its Location, a replaced
// one 204 (RFC 4918 §9.7.1).
func (h *Handler) put(w http.ResponseWriter, r *http.Request, u *User, t target) {
	if t.kind != kindObject {
		h.methodNotAllowed(w, r, u, t)
		return
	}
	limit := h.be.Limits().ICalObjectBytes
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
	cal, err := decode(body)
	if err != nil {
		h.writes.WithLabelValues("refused-400").Inc()
		davError(w, http.StatusBadRequest, eValidCalendarData, err.Error())
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != ical.MIMEType {
		h.writes.WithLabelValues("refused-400").Inc()
		davError(w, http.StatusBadRequest, eSupportedCalendarData, "the body must be sent as "+ical.MIMEType)
		return
	}
	res, err := h.be.PhonePut(r.Context(), Put{User: u.Name, Collection: t.coll, Name: t.name,
		Data: body, Cal: cal, Cond: conditions(r)})
	if err != nil {
		h.writeError(w, r, u, t, err)
		return
	}
	h.writes.WithLabelValues(res.Outcome).Inc()
	h.log.Info("device write", "method", "PUT", "user", u.Name, "collection", t.coll, "name", t.name,
		"outcome", res.Outcome, "verbatim", res.Verbatim, "ua", r.UserAgent())
	if res.Verbatim {
		// Validators describe the stored representation; when it is not
		// what the client sent, neither ETag nor Last-Modified goes back,
		// so the client fetches the object again.
		w.Header().Set("ETag", `"`+strings.Trim(res.ETag, `"`)+`"`)
		w.Header().Set("Last-Modified", h.be.Now().UTC().Format(http.TimeFormat))
	}
	if !res.Created {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Header().Set("Location", t.href())
	w.WriteHeader(http.StatusCreated)
}

// decode decodes an iCalendar body. go-ical panics on some malformed
// content lines (a parameter with nothing after "=" at the end of a line,
// found by FuzzPhonePut); that is the client's error, not a crash.
func decode(body []byte) (cal *ical.Calendar, err error) {
	defer func() {
		if p := recover(); p != nil {
			cal, err = nil, fmt.Errorf("not iCalendar: malformed content line")
		}
	}()
	cal, err = ical.NewDecoder(bytes.NewReader(body)).Decode()
	if err != nil {
		return nil, fmt.Errorf("not iCalendar: %v", err)
	}
	return cal, nil
}

func (h *Handler) tooLarge(w http.ResponseWriter, limit int64) {
	h.writes.WithLabelValues("refused-413").Inc()
	davError(w, http.StatusRequestEntityTooLarge, eMaxResourceSize,
		fmt.Sprintf("calendar objects are limited to %d bytes", limit))
}

// delete applies an object's DELETE (204): an own reminder goes, a
// task-system task is hidden for this user. Collections, the home and the
// principal cannot be deleted.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request, u *User, t target) {
	if t.kind != kindObject {
		h.writes.WithLabelValues("refused-403").Inc()
		http.Error(w, "lists and calendars come from the task system and cannot be deleted", http.StatusForbidden)
		return
	}
	outcome, err := h.be.PhoneDelete(r.Context(), u.Name, t.coll, t.name, conditions(r))
	if err != nil {
		h.writeError(w, r, u, t, err)
		return
	}
	h.writes.WithLabelValues(outcome).Inc()
	h.log.Info("device write", "method", "DELETE", "user", u.Name, "collection", t.coll, "name", t.name,
		"outcome", outcome, "ua", r.UserAgent())
	w.WriteHeader(http.StatusNoContent)
}

// writeError answers the backend's refusal of a device write and logs it.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, u *User, t target, err error) {
	code, cond, msg := 0, xml.Name{}, ""
	switch {
	case errors.Is(err, ErrPrecondition):
		code, msg = http.StatusPreconditionFailed, "the resource changed; fetch it again"
	case errors.Is(err, ErrReadOnly):
		code, msg = http.StatusForbidden, "read-only: deadlines come from the task system"
	case errors.Is(err, ErrNoCollection) && r.Method == http.MethodPut:
		// RFC 4918 §9.7.1: a PUT whose parent collection is missing is 409.
		code, msg = http.StatusConflict, "no such collection"
	case errors.Is(err, ErrNoCollection), errors.Is(err, ErrNotFound):
		code, msg = http.StatusNotFound, "not found"
	case errors.Is(err, ErrUIDConflict):
		code, cond = http.StatusConflict, eNoUIDConflict
	case errors.Is(err, ErrUnsupportedComponent):
		code, cond = http.StatusConflict, eSupportedCalendarComponent
	case errors.Is(err, ErrInvalidObject):
		code, cond = http.StatusConflict, eValidCalendarObjectResource
	case errors.Is(err, ErrQuotaExceeded):
		code, cond = http.StatusInsufficientStorage, eQuotaNotExceeded
		if qe := (*QuotaError)(nil); errors.As(err, &qe) {
			h.limits.WithLabelValues(qe.Limit).Inc()
		}
	case errors.Is(err, context.Canceled):
		return
	default:
		h.log.Error("device write failed", "method", r.Method, "user", u.Name, "collection", t.coll,
			"name", t.name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.writes.WithLabelValues(fmt.Sprintf("refused-%d", code)).Inc()
	h.log.Info("device write refused", "method", r.Method, "user", u.Name, "collection", t.coll,
		"name", t.name, "status", code, "reason", err.Error(), "ua", r.UserAgent())
	if cond.Local != "" {
		davError(w, code, cond, err.Error())
		return
	}
	http.Error(w, msg, code)
}

// conditions reads If-Match and If-None-Match.
func conditions(r *http.Request) Conditions {
	return Conditions{IfMatch: etagList(r.Header.Values("If-Match")), IfNoneMatch: etagList(r.Header.Values("If-None-Match"))}
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
func (h *Handler) view(ctx context.Context, u *User) (*view, error) {
	epoch, err := h.epoch.get(ctx, h.be)
	if err != nil {
		return nil, err
	}
	v := &view{user: u, limits: h.be.Limits(), epoch: epoch, escapes: h.escapes}
	v.quota = sync.OnceValues(func() (quota, error) {
		used, avail, err := h.be.Quota(ctx, u.Name)
		return quota{used: used, available: avail}, err
	})
	return v, nil
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
	case errors.Is(err, ErrNotFound):
		http.Error(w, "not found", http.StatusNotFound)
	default:
		h.serverError(w, r, err)
	}
	return true
}
