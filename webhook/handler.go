// Package webhook receives task records from task systems: POST
// /hooks/{source}, signed with HMAC-SHA256, one task or a batch, stored in one
// transaction before the 200 is sent. Sources of one of config.TrackerKinds
// take that tracker's own webhooks instead (adapter.go). The package sees
// the core through Ingester only and writes nothing itself.
package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/trace"
	"strconv"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/prometheus/client_golang/prometheus"
)

// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the raw body>".
const SignatureHeader = bridge.SignatureHeader

// Ingester is the core as the webhook handler sees it: the configuration
// (sources, users' tracker identities, limits), the time, the core's
// metrics, and the two store operations a delivery needs. *bridge.Service
// implements it; the handler writes nothing itself.
type Ingester interface {
	// Config is the configuration snapshot a request is handled with.
	Config() *config.Config
	Now() time.Time
	// Registry is the core's metrics registry, which the handler's metrics
	// join (task records refused join the core's count of those accepted).
	Registry() *prometheus.Registry
	// IngestDelivery stores a delivery's task records and group index
	// updates in one transaction; a *bridge.FieldError names a bad record.
	IngestDelivery(ctx context.Context, source string, d bridge.Delivery) (bridge.Result, error)
	// GroupTasks reads the stored tasks a group index lists in a group.
	GroupTasks(ctx context.Context, source string, idx bridge.GroupIndex, group string) ([]bridge.TaskInput, error)
}

var _ Ingester = (*bridge.Service)(nil)

// Handler serves POST /hooks/{source}.
type Handler struct {
	core     Ingester
	log      *slog.Logger
	trackers *trackerState // sources of the config.TrackerKinds
}

// Options for NewHandler. Zero values are fine.
type Options struct {
	// Logger; if nil, slog.Default().
	Logger *slog.Logger
}

// NewHandler returns the webhook handler. It expects the {source} path
// value set by the mux pattern "POST /hooks/{source}".
func NewHandler(core Ingester, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Handler{core: core, log: o.Logger, trackers: newTrackerState(core.Registry())}
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
	Index *int   `json:"index,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (h *Handler) fail(w http.ResponseWriter, r *http.Request, source string, status int, body errorBody) {
	h.trackers.tasks.WithLabelValues(metricSource(h.core.Config(), source), "rejected").Inc()
	h.log.Info("webhook refused", "source", source, "status", status, "error", body.Error, "field", body.Field, "remote", r.RemoteAddr)
	writeJSON(w, status, body)
}

// metricSource keeps label cardinality bounded: unknown names are folded.
func metricSource(cfg *config.Config, name string) string {
	if cfg.Source(name) == nil {
		return "unknown"
	}
	return name
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A runtime/trace task and region per request: `go tool trace` then
	// splits a webhook's time into running, waiting and syscalls (fsync),
	// with the store's regions inside it (bench/README: webhook to phone).
	ctx, task := trace.NewTask(r.Context(), "webhook")
	defer task.End()
	defer trace.StartRegion(ctx, "webhook").End()
	r = r.WithContext(ctx)
	cfg := h.core.Config() // one snapshot for the whole request
	name := r.PathValue("source")
	src := cfg.Source(name)
	if src == nil {
		h.fail(w, r, name, http.StatusNotFound, errorBody{Error: fmt.Sprintf("unknown source %q", name)})
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			h.fail(w, r, name, http.StatusUnsupportedMediaType, errorBody{Error: fmt.Sprintf("Content-Type must be application/json, not %q", ct)})
			return
		}
	}
	limit := cfg.Limits.WebhookBodyBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.fail(w, r, name, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("body larger than %d bytes (limits.webhook_body_bytes)", limit)})
			return
		}
		h.fail(w, r, name, http.StatusBadRequest, errorBody{Error: "reading body: " + err.Error()})
		return
	}
	if tr, ok := trackers[src.Kind]; ok {
		h.serveTracker(w, r, cfg, src, tr, body)
		return
	}
	ts := r.Header.Get(TimestampHeader)
	if msg := verifyAt(src, r.Header.Get(SignatureHeader), ts, body, h.core.Now(), timestampWindow(cfg)); msg != "" {
		h.fail(w, r, name, http.StatusUnauthorized, errorBody{Error: msg})
		return
	}
	units, err := decodeRequest(r.Header, body)
	if err != nil {
		var fe *bridge.FieldError
		if errors.As(err, &fe) {
			h.fail(w, r, name, http.StatusBadRequest, fieldErrorBody(fe))
			return
		}
		h.fail(w, r, name, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	// A timestamped request is remembered by its signature for the
	// bridge's replay window: a copy replayed within it is answered 200 and
	// not applied again. So is a CloudEvent by its source and id, which its
	// sender keeps when it sends the event again. The record is in the
	// store, shared by every replica.
	d := bridge.Delivery{}
	if ts != "" {
		d.Keys = []string{"signed:" + r.Header.Get(SignatureHeader)}
	}
	var origin []int // each record's index for error replies
	for _, u := range units {
		for i := range u.tasks {
			if u.index >= 0 { // a batch of events: the event's index
				origin = append(origin, u.index)
			} else {
				origin = append(origin, i)
			}
			d.TaskKeys = append(d.TaskKeys, u.key)
		}
		d.Tasks = append(d.Tasks, u.tasks...)
	}
	res, replayed, ok := h.ingest(w, r, name, d, func(fe *bridge.FieldError) {
		if fe.Index >= 0 && fe.Index < len(origin) {
			fe.Index = origin[fe.Index]
		}
	})
	if !ok {
		return
	}
	if replayed {
		h.log.Info("webhook request already handled; ignored", "source", name)
		writeJSON(w, http.StatusOK, bridge.Result{Ignored: res.Ignored})
		return
	}
	h.log.Debug("webhook stored", "source", name, "accepted", res.Accepted, "ignored", res.Ignored)
	writeJSON(w, http.StatusOK, res)
}

// ingest stores a delivery; the core validates its records, so a bad field
// becomes a 400 naming it (with its place in a batch) and a store failure
// a 503. It reports whether the delivery was already handled (nothing was
// stored) and whether the request is answered 2xx.
// remap, if set, turns a refused record's index into the one the sender
// knows it by.
func (h *Handler) ingest(w http.ResponseWriter, r *http.Request, source string, d bridge.Delivery, remap func(*bridge.FieldError)) (res bridge.Result, replayed, ok bool) {
	// The client going away must not abort a commit half-way through the
	// response path: detach from the request's cancellation.
	res, err := h.core.IngestDelivery(context.WithoutCancel(r.Context()), source, d)
	if err == nil {
		return res, false, true
	}
	if errors.Is(err, bridge.ErrReplayed) {
		return res, true, true
	}
	var fe *bridge.FieldError
	if errors.As(err, &fe) {
		if remap != nil {
			remap(fe)
		}
		h.fail(w, r, source, http.StatusBadRequest, fieldErrorBody(fe))
		return res, false, false
	}
	h.log.Error("webhook store failed", "source", source, "err", err)
	h.fail(w, r, source, http.StatusServiceUnavailable, errorBody{Error: "could not store the update; retry later"})
	return res, false, false
}

func fieldErrorBody(fe *bridge.FieldError) errorBody {
	eb := errorBody{Error: fe.Error(), Field: fe.Field}
	if fe.Index >= 0 {
		i := fe.Index
		eb.Index = &i
	}
	return eb
}

// verify checks "sha256=<hex>" against the body in constant time, as
// GitHub's and Jira's signatures are checked. It returns "" when the
// signature is good, else what is wrong.
func verify(secret, header string, body []byte) string {
	if err := verifyHubSignature(SignatureHeader, secret, header, body); err != nil {
		return err.Error()
	}
	return ""
}

// TimestampHeader carries the Unix time (seconds) a generic webhook was
// sent. With it, the signature covers "<timestamp>.<body>" and the request
// is refused outside limits.webhook_timestamp_window, as Stripe, Slack and
// Linear do; without it the body-only signature is accepted unless the
// source sets require_timestamp.
const TimestampHeader = "X-Duebridge-Timestamp"

func timestampWindow(cfg *config.Config) time.Duration {
	if w := cfg.Limits.WebhookTimestampWindow; w > 0 {
		return w
	}
	return 5 * time.Minute
}

// verifyAt checks a generic webhook's signature, with the timestamp when
// one is sent. It returns "" when good, else what is wrong.
func verifyAt(src *config.Source, sig, ts string, body []byte, now time.Time, window time.Duration) string {
	if ts == "" {
		if src.RequireTimestamp {
			return "missing " + TimestampHeader + " (this source requires signed timestamps)"
		}
		return verify(src.Secret, sig, body)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return TimestampHeader + " is not a Unix time in seconds"
	}
	// Check the signature before the time, so an unsigned request learns
	// nothing about the server's clock.
	signedBody := make([]byte, 0, len(ts)+1+len(body))
	signedBody = append(append(append(signedBody, ts...), '.'), body...)
	if msg := verify(src.Secret, sig, signedBody); msg != "" {
		return msg + " (with " + TimestampHeader + " the signature covers \"<timestamp>.<body>\")"
	}
	if d := now.Sub(time.Unix(sec, 0)); d > window || d < -window {
		return fmt.Sprintf("%s is %v from the server's time, more than %v (limits.webhook_timestamp_window)", TimestampHeader, d.Round(time.Second), window)
	}
	return ""
}

// SignAt returns the TimestampHeader and SignatureHeader values for body
// sent at t (for clients and tests).
func SignAt(secret string, t time.Time, body []byte) (timestamp, signature string) {
	ts := strconv.FormatInt(t.Unix(), 10)
	return ts, bridge.Sign(secret, append([]byte(ts+"."), body...))
}

// Sign returns the header value for body under secret (for clients and
// tests); the rule lives in bridge, which signs callbacks the same way.
func Sign(secret string, body []byte) string { return bridge.Sign(secret, body) }
