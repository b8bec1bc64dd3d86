package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/metricsreg"
)

// tracker is one task system's side of the bridge: how it signs its
// webhooks, what it calls a delivery, how its events map to task records,
// and how its API closes and reopens an issue. Implementations are
// stateless; per-request state travels in a *mapping.
type tracker interface {
	// verify authenticates the request exactly as the tracker documents it.
	// The error text is sent back with the 401, so it names what is wrong
	// without revealing anything about the secret. A *bridge.FieldError
	// instead means the signed body lacks what the check needs: a 400.
	verify(secret string, h http.Header, body []byte, now time.Time) error
	// deliveryID is the tracker's id for this delivery, stable across its
	// retries and redeliveries ("" if the request carries none).
	deliveryID(h http.Header) string
	// tasks maps the delivery to task records. When the event carries
	// nothing for us, it returns no tasks and a reason. A payload that is
	// not what the tracker documents yields a *bridge.FieldError. ctx
	// bounds the reads of an event that concerns tasks already stored.
	tasks(ctx context.Context, m *mapping, h http.Header, body []byte) (tasks []bridge.TaskInput, skip string, err error)
	// setStatus closes (done) or reopens the issue behind a task id.
	setStatus(ctx context.Context, api *apiClient, id string, done bool) error
	// defaultAPI is the public API base used when the source sets no api_url
	// ("" if the tracker has no public default).
	defaultAPI() string
}

// trackers maps each of config.TrackerKinds to its adapter; the kinds are
// declared there, once (TestTrackerKindsHaveAdapters keeps the two in
// step). Sources of kind config.KindGeneric take the contract's own format.
var trackers = map[string]tracker{
	config.KindGitHub:  github{},
	config.KindGitLab:  gitlab{},
	config.KindJira:    jira{},
	config.KindLinear:  linear{},
	config.KindForgejo: gitea{brand: "Forgejo"},
	config.KindGitea:   gitea{brand: "Gitea"},
}

// trackerState is what the tracker adapters share across requests: the
// record of recent deliveries and their metrics.
type trackerState struct {
	tasks      *prometheus.CounterVec // source, result: the core's count, which the handler adds "rejected" to
	unknown    *prometheus.CounterVec // source
	deliveries *prometheus.CounterVec // source, result
}

func newTrackerState(reg *prometheus.Registry) *trackerState {
	// Several handlers may share one registry (tests, and a handler rebuilt
	// on the same service): metricsreg.Register shares their counters.
	return &trackerState{
		// The core registers this one (accepted, ignored) with the same
		// description, so Register returns the core's counter.
		tasks: metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_webhook_tasks_total", Help: "Task records received over webhooks, by source and result.",
		}, []string{"source", "result"})),
		unknown: metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_webhook_unknown_assignees_total",
			Help: "Tracker assignees that no user claims in users[].identities, by source. They are left out of the task.",
		}, []string{"source"})),
		deliveries: metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_webhook_deliveries_total",
			Help: "Authenticated tracker deliveries, by source and result (ingested|skipped|duplicate).",
		}, []string{"source", "result"})),
	}
}

// replayed answers a redelivery (the tracker's retry or a "redeliver"
// click) or a replay: the first copy was applied, so this one was not, and
// a 2xx keeps the tracker from marking the hook as failing.
func (h *Handler) replayed(w http.ResponseWriter, st *trackerState, source, id string, log *slog.Logger) {
	st.deliveries.WithLabelValues(source, "duplicate").Inc()
	log.Info("webhook delivery already handled; ignored")
	writeJSON(w, http.StatusOK, trackerReply{Skipped: "delivery " + id + " was already handled"})
}

// trackerReply is the 200 body for a tracker delivery: the contract's
// counts, plus why nothing was stored when an event was skipped.
type trackerReply struct {
	bridge.Result
	Skipped string `json:"skipped,omitempty"`
}

// serveTracker handles an authenticated-or-not delivery from a tracker of
// a known kind, after the shared checks (source, Content-Type, body size).
func (h *Handler) serveTracker(w http.ResponseWriter, r *http.Request, cfg *config.Config, src *config.Source, tr tracker, body []byte) {
	st := h.trackers
	now := h.core.Now()
	if err := tr.verify(src.Secret, r.Header, body, now); err != nil {
		var fe *bridge.FieldError
		if errors.As(err, &fe) {
			h.fail(w, r, src.Name, http.StatusBadRequest, errorBody{Error: fe.Error(), Field: fe.Field})
			return
		}
		h.fail(w, r, src.Name, http.StatusUnauthorized, errorBody{Error: err.Error()})
		return
	}
	id := tr.deliveryID(r.Header)
	log := h.log.With("source", src.Name, "kind", src.Kind, "delivery", id)
	m := newMapping(cfg, src, now, h.core)
	ctx := context.WithoutCancel(r.Context())
	tasks, skip, err := tr.tasks(ctx, m, r.Header, body)
	if err != nil {
		var fe *bridge.FieldError
		if errors.As(err, &fe) {
			h.fail(w, r, src.Name, http.StatusBadRequest, errorBody{Error: fe.Error(), Field: fe.Field})
			return
		}
		log.Error("webhook mapping failed", "err", err)
		h.fail(w, r, src.Name, http.StatusServiceUnavailable, errorBody{Error: "could not read the store; retry later"})
		return
	}
	d := m.delivery(tasks)
	if id != "" {
		d.Keys = []string{id}
	}
	if len(tasks) == 0 {
		// Remembered too, so a redelivery is answered as one. A skipped
		// event stores nothing else.
		_, err := h.core.IngestDelivery(ctx, src.Name, bridge.Delivery{Keys: d.Keys})
		if errors.Is(err, bridge.ErrReplayed) {
			h.replayed(w, st, src.Name, id, log)
			return
		}
		if err != nil {
			log.Error("webhook store failed", "err", err)
			h.fail(w, r, src.Name, http.StatusServiceUnavailable, errorBody{Error: "could not store the update; retry later"})
			return
		}
		st.deliveries.WithLabelValues(src.Name, "skipped").Inc()
		log.Debug("webhook event skipped", "reason", skip)
		writeJSON(w, http.StatusOK, trackerReply{Skipped: skip})
		return
	}
	res, replayed, ok := h.ingest(w, r, src.Name, d, nil)
	if !ok {
		return // not remembered as seen: the tracker's retry must be applied
	}
	if replayed {
		h.replayed(w, st, src.Name, id, log)
		return
	}
	st.deliveries.WithLabelValues(src.Name, "ingested").Inc()
	for _, login := range m.unknown {
		st.unknown.WithLabelValues(src.Name).Inc()
		log.Info("tracker assignee is not mapped to a user; left out (add it to users[].identities."+src.Kind+")", "assignee", login)
	}
	log.Debug("webhook stored", "accepted", res.Accepted, "ignored", res.Ignored)
	writeJSON(w, http.StatusOK, trackerReply{Result: res})
}

// mapping is the per-request state an adapter maps with: who is who,
// which labels name projects, and what it has seen that nobody claims.
type mapping struct {
	src   *config.Source
	users map[string]string // lower-cased tracker identity → user name
	now   time.Time
	// stored reads tasks already stored, for events that concern them
	// (GitHub's milestone events).
	stored groupReader
	// unknown lists the assignees no user claims, for metrics and the log.
	unknown []string
	// index and members: the group index this delivery updates, and where
	// each of its tasks is now, by task id (GitHub's milestones). They are
	// stored with the tasks, in the same transaction.
	index   bridge.GroupIndex
	members map[string]bridge.Membership
	// lim bounds the records the adapter makes.
	lim bridge.FieldLimits
}

// groupReader is the part of Ingester an adapter reads stored tasks with.
type groupReader interface {
	GroupTasks(ctx context.Context, source string, idx bridge.GroupIndex, group string) ([]bridge.TaskInput, error)
}

func newMapping(cfg *config.Config, src *config.Source, now time.Time, stored groupReader) *mapping {
	m := &mapping{src: src, users: map[string]string{}, now: now, stored: stored, members: map[string]bridge.Membership{},
		lim: bridge.FieldLimitsOf(cfg)}
	for _, u := range cfg.Users {
		if id := strings.TrimSpace(u.Identities[src.Kind]); id != "" {
			m.users[strings.ToLower(id)] = u.Name
		}
	}
	return m
}

// member records the group (id, "" for none) a task record puts its task
// in; the record's time says whether it is the stored one.
func (m *mapping) member(task, group string, at time.Time) {
	m.members[task] = bridge.Membership{Task: task, Group: group, At: at}
}

// delivery is what the core stores for the mapped tasks: them, and the
// group index updates they bring, in task id order.
func (m *mapping) delivery(tasks []bridge.TaskInput) bridge.Delivery {
	d := bridge.Delivery{Tasks: tasks}
	if len(m.members) == 0 {
		return d
	}
	d.Index = m.index
	for _, id := range slices.Sorted(maps.Keys(m.members)) {
		d.Members = append(d.Members, m.members[id])
	}
	return d
}

// user returns the user claiming any of an assignee's identifiers (login,
// account id, email: whichever the tracker sends). Tracker logins and
// emails compare case-insensitively; ids are case-free anyway. An assignee
// no user claims is recorded as unknown under its first identifier.
func (m *mapping) user(ids ...string) (string, bool) {
	first := ""
	for _, id := range ids {
		if id == "" {
			continue
		}
		if first == "" {
			first = id
		}
		if name, ok := m.users[strings.ToLower(id)]; ok {
			return name, true
		}
	}
	if first != "" && !slices.Contains(m.unknown, first) {
		m.unknown = append(m.unknown, first)
	}
	return "", false
}

// addAssignee appends the user behind ids to list, once.
func (m *mapping) addAssignee(list []string, ids ...string) []string {
	if name, ok := m.user(ids...); ok && !slices.Contains(list, name) {
		list = append(list, name)
	}
	return list
}

// project picks the project for a task: the first label that
// sources[].label_projects maps, else the tracker's own grouping
// (repository, project, team).
func (m *mapping) project(labels []string, fallback string) string {
	for _, l := range labels {
		if p, ok := m.src.LabelProjects[strings.ToLower(strings.TrimSpace(l))]; ok && p != "" {
			return p
		}
	}
	return fallback
}

// priorityFromLabels reads the conventions teams use on trackers without a
// priority field (GitHub, GitLab): "priority: high", "priority::urgent",
// "P0".."P3". The first match wins; "" when no label says.
func priorityFromLabels(labels []string) string {
	for _, l := range labels {
		l = strings.ToLower(strings.TrimSpace(l))
		switch l {
		case "p0":
			return "urgent"
		case "p1":
			return "high"
		case "p2":
			return "normal"
		case "p3", "p4":
			return "low"
		}
		rest, ok := strings.CutPrefix(l, "priority")
		if !ok {
			continue
		}
		rest = strings.TrimLeft(rest, ":/ -_")
		if p := priorityWord(rest); p != "" {
			return p
		}
	}
	return ""
}

// priorityWord maps the words trackers use for priorities onto ours.
func priorityWord(w string) string {
	switch strings.ToLower(strings.TrimSpace(w)) {
	case "urgent", "critical", "highest", "blocker", "p0":
		return "urgent"
	case "high", "major", "p1":
		return "high"
	case "normal", "medium", "p2":
		return "normal"
	case "low", "lowest", "minor", "trivial", "p3", "p4":
		return "low"
	}
	return ""
}

// clip shortens s to at most n bytes on a rune boundary: a tracker may
// allow longer text than a task record, and a long issue body must not
// turn a good delivery into a 400.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// finish applies the limits every task record has, so that what the
// tracker allows never fails Validate.
func (m *mapping) finish(in bridge.TaskInput) bridge.TaskInput {
	lim := m.lim
	in.Title = clip(strings.TrimSpace(in.Title), lim.TitleBytes)
	in.Description = clip(in.Description, lim.DescriptionBytes)
	in.Project = clip(in.Project, bridge.MaxProjectLen)
	if len(in.URL) > lim.URLBytes {
		in.URL = ""
	}
	var labels []string
	for _, l := range in.Labels {
		if l = clip(l, lim.LabelBytes); l != "" && len(labels) < lim.Labels {
			labels = append(labels, l)
		}
	}
	if in.Labels != nil {
		in.Labels = labels
	}
	if len(in.Assignees) > bridge.MaxAssignees {
		in.Assignees = in.Assignees[:bridge.MaxAssignees]
	}
	return in
}

// deleteTime is when a delete takes effect for ordering. Trackers do not
// bump an issue's updated_at when deleting it, so a late "edited" delivery
// carrying the same updated_at would otherwise tie with the delete and
// resurrect the task; the receive time (or the tracker's own event time,
// whichever is later) orders the delete after everything sent before it.
func deleteTime(updated time.Time, now time.Time) time.Time {
	if updated.After(now) {
		return updated
	}
	return now.UTC()
}

// fieldErr is a payload problem naming the field in the tracker's terms.
func fieldErr(field, format string, a ...any) *bridge.FieldError {
	return &bridge.FieldError{Index: -1, Field: field, Reason: fmt.Sprintf(format, a...)}
}

func missing(field string) *bridge.FieldError { return fieldErr(field, "required") }

// decodeJSON unmarshals a tracker payload. Unknown fields are fine: the
// trackers add fields all the time. Wrong types name the field's path.
func decodeJSON(body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return fieldErr("body", "must be a JSON object, not %s", te.Value)
			}
			return fieldErr(te.Field, "must be a %s, not %s", jsonKind(te.Type.String()), te.Value)
		}
		return fieldErr("body", "malformed JSON: %s", jsonReason(err))
	}
	return nil
}

func jsonKind(goType string) string {
	goType = strings.TrimPrefix(goType, "*")
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "array"
	case goType == "string":
		return "string"
	case goType == "bool":
		return "boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "float"):
		return "number"
	case strings.HasPrefix(goType, "map["), strings.Contains(goType, "."):
		return "object"
	}
	return goType
}

// trackerTimeLayouts are the date-time spellings the trackers use:
// RFC 3339 (GitHub, Linear, GitLab today), GitLab's older
// "2013-12-03 17:15:43 UTC", and Jira's "2026-11-23T10:00:00.000+0000".
var trackerTimeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05 MST",
	"2006-01-02 15:04:05 -0700",
	"2006-01-02T15:04:05.000-0700",
	"2006-01-02T15:04:05-0700",
}

// parseTime reads a tracker timestamp (UTC result).
func parseTime(field, s string) (time.Time, error) {
	for _, layout := range trackerTimeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fieldErr(field, "not a date-time: %q", s)
}

// requiredTime reads a timestamp that orders deliveries: without it a late
// delivery could move a task back, so it is required.
func requiredTime(field string, s *string) (time.Time, error) {
	if s == nil || *s == "" {
		return time.Time{}, missing(field)
	}
	return parseTime(field, *s)
}

// parseDate reads a date without time ("2026-12-01") as an all-day When.
func parseDate(field string, s *string) (bridge.When, error) {
	if s == nil || *s == "" {
		return bridge.When{}, nil
	}
	d, err := time.Parse("2006-01-02", *s)
	if err != nil {
		return bridge.When{}, fieldErr(field, "not a date (YYYY-MM-DD): %q", *s)
	}
	return bridge.When{Time: d, AllDay: true}, nil
}

// str dereferences an optional string.
func str(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
