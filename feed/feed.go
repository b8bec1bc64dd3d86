// Package feed serves each user's deadlines as one iCalendar file at a secret
// URL, /feeds/<token>.ics, for calendar apps that subscribe to a URL (Google
// Calendar, Outlook, Android, an iPhone without an account set-up).
//
// The token is the only credential: it is 256 random bits, the server keeps
// only a keyed hash of it, and it can be revoked. Polling is cheap: the ETag
// is computed from the revision numbers of the user's deadline calendars, so
// an unchanged feed costs one small read and a 304.
package feed

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Path is the route pattern of the feed.
const Path = "/feeds/{file}"

// TokenLen is the length of a token: 32 random bytes, base64url without padding.
const TokenLen = 43

// ProdID names duebridge in the feed.
const ProdID = "-//duebridge//feed//EN"

// Backend is what the handler needs from the core, in the feed's terms.
type Backend interface {
	// FeedOwner returns the user a token belongs to; ok is false for an
	// unknown or revoked token or a user no longer configured.
	FeedOwner(ctx context.Context, token string) (user string, ok bool, err error)
	// FeedVersion returns a string that changes whenever the user's deadlines
	// (of project; "" = all projects) change. It decides 304s, so it is cheap.
	FeedVersion(ctx context.Context, user, project string) (string, error)
	// FeedObjects returns the deadline objects (each a VCALENDAR with one
	// VEVENT), the version they were read at, and their latest change.
	FeedObjects(ctx context.Context, user, project string) (objs [][]byte, version string, modified time.Time, err error)
}

// Options configure the handler. Zero values are fine.
type Options struct {
	Logger *slog.Logger
	// Refresh is how often clients are asked to poll (REFRESH-INTERVAL,
	// X-PUBLISHED-TTL); nil or a zero result means one hour.
	Refresh func() time.Duration
}

// Handler serves GET and HEAD of Path.
type Handler struct {
	b   Backend
	log *slog.Logger
	ref func() time.Duration
}

// NewHandler returns the feed handler.
func NewHandler(b Backend, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Refresh == nil {
		o.Refresh = func() time.Duration { return 0 }
	}
	return &Handler{b: b, log: o.Logger, ref: o.Refresh}
}

// ValidToken reports whether s has a token's shape (length and alphabet).
func ValidToken(s string) bool {
	if len(s) != TokenLen {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "a feed is read with GET", http.StatusMethodNotAllowed)
		return
	}
	// The URL is a credential: keep it out of Referer headers of any page
	// a calendar app might open from here.
	w.Header().Set("Referrer-Policy", "no-referrer")
	token, ok := strings.CutSuffix(r.PathValue("file"), ".ics")
	if !ok || !ValidToken(token) {
		http.Error(w, "no such feed", http.StatusNotFound)
		return
	}
	ctx := r.Context()
	user, ok, err := h.b.FeedOwner(ctx, token)
	if err != nil {
		h.fail(w, "look up feed token", err)
		return
	}
	if !ok {
		// Unknown and revoked tokens look the same: not found.
		http.Error(w, "no such feed", http.StatusNotFound)
		return
	}
	project := r.URL.Query().Get("project")
	refresh := h.ref()
	if refresh <= 0 {
		refresh = time.Hour
	}
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		v, err := h.b.FeedVersion(ctx, user, project)
		if err != nil {
			h.fail(w, "read feed version", err)
			return
		}
		if etag := etagOf(v, project, refresh); matches(inm, etag) {
			h.cacheHeaders(w, etag)
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	objs, v, modified, err := h.b.FeedObjects(ctx, user, project)
	if err != nil {
		h.fail(w, "read feed", err)
		return
	}
	body := Render(objs, calName(project), refresh, h.log)
	etag := etagOf(v, project, refresh)
	h.cacheHeaders(w, etag)
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Content-Disposition", `inline; filename="deadlines.ics"`)
	// ServeContent answers If-Modified-Since and HEAD from these.
	http.ServeContent(w, r, "", modified, bytes.NewReader(body))
}

func (h *Handler) cacheHeaders(w http.ResponseWriter, etag string) {
	w.Header().Set("ETag", etag)
	// The URL is secret: no shared cache keeps it. no-cache makes clients
	// revalidate, which the ETag turns into a 304.
	w.Header().Set("Cache-Control", "private, no-cache")
}

func (h *Handler) fail(w http.ResponseWriter, doing string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	h.log.Error("feed: "+doing, "err", err)
	http.Error(w, "feed unavailable, try again later", http.StatusServiceUnavailable)
}

// etagOf mixes everything that shapes the body into the version.
func etagOf(version, project string, refresh time.Duration) string {
	sum := sha256.Sum256([]byte(version + "\x00" + project + "\x00" + refresh.String() + "\x00" + ProdID))
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}

// matches implements If-None-Match's weak comparison over a list.
func matches(header, etag string) bool {
	for part := range strings.SplitSeq(header, ",") {
		part = strings.TrimPrefix(strings.TrimSpace(part), "W/")
		if part == "*" || part == etag {
			return true
		}
	}
	return false
}

func calName(project string) string {
	if project == "" {
		return "Deadlines"
	}
	return "Deadlines: " + project
}

// Render joins the VEVENTs of objs into one VCALENDAR. The objects are
// duebridge's own renderings (folded, CRLF, UTC or DATE values, no
// VTIMEZONE), so their VEVENT blocks are copied as they are; an object
// without one is skipped and logged.
func Render(objs [][]byte, name string, refresh time.Duration, log *slog.Logger) []byte {
	if log == nil {
		log = slog.Default()
	}
	var b bytes.Buffer
	b.Grow(256 + len(objs)*512)
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:" + ProdID + "\r\nCALSCALE:GREGORIAN\r\nMETHOD:PUBLISH\r\n")
	esc := escapeText(name)
	// NAME (RFC 7986) and X-WR-CALNAME (Google, Outlook, Apple) name it;
	// REFRESH-INTERVAL (RFC 7986) and X-PUBLISHED-TTL (Outlook) ask for a
	// polling period. Google ignores both and polls on its own schedule.
	b.WriteString(fold("NAME:" + esc))
	b.WriteString(fold("X-WR-CALNAME:" + esc))
	dur := icalDuration(refresh)
	b.WriteString("REFRESH-INTERVAL;VALUE=DURATION:" + dur + "\r\n")
	b.WriteString("X-PUBLISHED-TTL:" + dur + "\r\n")
	for _, o := range objs {
		ev, ok := vevent(o)
		if !ok {
			log.Warn("feed: stored deadline object without a VEVENT; left out", "bytes", len(o))
			continue
		}
		b.Write(ev)
	}
	b.WriteString("END:VCALENDAR\r\n")
	return b.Bytes()
}

// vevent returns the lines from BEGIN:VEVENT to END:VEVENT, both included.
func vevent(obj []byte) ([]byte, bool) {
	begin := bytes.Index(obj, []byte("\r\nBEGIN:VEVENT\r\n"))
	end := bytes.LastIndex(obj, []byte("\r\nEND:VEVENT\r\n"))
	if begin < 0 || end < begin {
		return nil, false
	}
	return obj[begin+2 : end+len("\r\nEND:VEVENT\r\n")], true
}

// icalDuration formats d (whole minutes) as an RFC 5545 duration.
func icalDuration(d time.Duration) string {
	m := int64(d / time.Minute)
	if m < 1 {
		m = 1
	}
	if m%(24*60) == 0 {
		return fmt.Sprintf("P%dD", m/(24*60))
	}
	if m%60 == 0 {
		return fmt.Sprintf("PT%dH", m/60)
	}
	return fmt.Sprintf("PT%dM", m)
}

// escapeText escapes a TEXT value (RFC 5545 §3.3.11).
func escapeText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, ";", `\;`, ",", `\,`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`)
	return r.Replace(s)
}

// fold ends a content line, folding it at 75 octets without splitting a
// UTF-8 sequence.
func fold(line string) string {
	var b strings.Builder
	limit := 75
	for len(line) > limit {
		cut := limit
		for cut > 0 && line[cut]&0xC0 == 0x80 {
			cut--
		}
		b.WriteString(line[:cut])
		b.WriteString("\r\n ")
		line = line[cut:]
		limit = 74
	}
	b.WriteString(line)
	b.WriteString("\r\n")
	return b.String()
}
