package bridge

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"runtime/trace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// TaskInput is one task record from a task system, decoded and typed.
type TaskInput struct {
	ID          string
	Title       string
	Description string
	URL         string
	Project     string
	Assignees   []string // duebridge user names
	Labels      []string
	Start       store.When
	Due         store.When
	Status      string
	Priority    string
	UpdatedAt   time.Time
	Version     int64
	Deleted     bool
}

// FieldError names the field of a task record that is wrong.
type FieldError struct {
	Index  int // position in a batch; -1 for a single object
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	if e.Index >= 0 {
		return fmt.Sprintf("[%d].%s: %s", e.Index, e.Field, e.Reason)
	}
	return e.Field + ": " + e.Reason
}

// Limits on a task record's fields. Title, description, url and labels
// have config keys (FieldLimits); these are their defaults.
const (
	MaxIDLen          = 256
	MaxTitleLen       = 1024
	MaxDescriptionLen = 64 << 10
	MaxURLLen         = 2048
	MaxProjectLen     = 256
	MaxAssignees      = 100
	MaxLabels         = 100
	MaxLabelLen       = 256

	// MinYear and MaxYear bound start, due and updated_at. The store keeps
	// instants as Unix nanoseconds, which end in April 2262: a later date
	// would wrap and, for a due time, leave an alert schedule that never
	// matches its task (the scheduler re-read it on every tick, at once).
	MinYear = 1970
	MaxYear = 2200
)

// FieldLimits are the configurable bounds of a task record
// (limits.task_*). A label is rendered into every assignee's reminder and
// event, so without a per-label bound one 8 MB webhook stored 84 MB.
type FieldLimits struct {
	TitleBytes, DescriptionBytes, URLBytes, LabelBytes, Labels int
}

// DefaultFieldLimits are the limits when the config sets none.
var DefaultFieldLimits = FieldLimits{TitleBytes: MaxTitleLen, DescriptionBytes: MaxDescriptionLen,
	URLBytes: MaxURLLen, LabelBytes: MaxLabelLen, Labels: MaxLabels}

// FieldLimitsOf reads the limits from cfg; an unset (zero) one is the default.
func FieldLimitsOf(cfg *config.Config) FieldLimits {
	l := DefaultFieldLimits
	for _, f := range []struct {
		dst *int
		v   int
	}{{&l.TitleBytes, cfg.Limits.TaskTitleBytes}, {&l.DescriptionBytes, cfg.Limits.TaskDescriptionBytes},
		{&l.URLBytes, cfg.Limits.TaskURLBytes}, {&l.LabelBytes, cfg.Limits.TaskLabelBytes}, {&l.Labels, cfg.Limits.TaskLabels}} {
		if f.v > 0 {
			*f.dst = f.v
		}
	}
	return l
}

// Validate checks a record against DefaultFieldLimits; see ValidateWith.
func (in *TaskInput) Validate() *FieldError { return in.ValidateWith(DefaultFieldLimits) }

// ValidateWith checks a record and fills defaults (status open, priority
// normal). Fields over a limit are refused, naming the limit's config key.
func (in *TaskInput) ValidateWith(lim FieldLimits) *FieldError {
	fe := func(field, format string, a ...any) *FieldError {
		return &FieldError{Index: -1, Field: field, Reason: fmt.Sprintf(format, a...)}
	}
	switch {
	case strings.TrimSpace(in.ID) == "":
		return fe("id", "required")
	case len(in.ID) > MaxIDLen:
		return fe("id", "longer than %d bytes", MaxIDLen)
	case !utf8.ValidString(in.ID) || strings.ContainsFunc(in.ID, unicode.IsControl):
		// The id is the task's identity (object name, UID): it cannot be
		// normalised like text without merging distinct tasks.
		return fe("id", "must be UTF-8 without control characters")
	}
	if !in.Deleted && strings.TrimSpace(in.Title) == "" {
		return fe("title", "required")
	}
	for _, f := range []struct {
		name, v string
		max     int
		key     string
	}{{"title", in.Title, lim.TitleBytes, "limits.task_title_bytes"},
		{"description", in.Description, lim.DescriptionBytes, "limits.task_description_bytes"},
		{"url", in.URL, lim.URLBytes, "limits.task_url_bytes"}, {"project", in.Project, MaxProjectLen, ""}} {
		if len(f.v) > f.max {
			if f.key != "" {
				return fe(f.name, "longer than %d bytes (%s)", f.max, f.key)
			}
			return fe(f.name, "longer than %d bytes", f.max)
		}
		if !utf8.ValidString(f.v) {
			return fe(f.name, "not valid UTF-8")
		}
	}
	if in.URL != "" {
		u, err := url.Parse(in.URL)
		if err != nil || !u.IsAbs() || (u.Scheme != "http" && u.Scheme != "https") {
			return fe("url", "not an absolute http(s) URL")
		}
	}
	if len(in.Assignees) > MaxAssignees {
		return fe("assignees", "more than %d", MaxAssignees)
	}
	for i, a := range in.Assignees {
		if a == "" || len(a) > 256 {
			return fe(fmt.Sprintf("assignees[%d]", i), "empty or too long")
		}
	}
	if len(in.Labels) > lim.Labels {
		return fe("labels", "more than %d (limits.task_labels)", lim.Labels)
	}
	for i, l := range in.Labels {
		if len(l) > lim.LabelBytes {
			return fe(fmt.Sprintf("labels[%d]", i), "longer than %d bytes (limits.task_label_bytes)", lim.LabelBytes)
		}
		if !utf8.ValidString(l) {
			return fe(fmt.Sprintf("labels[%d]", i), "not valid UTF-8")
		}
	}
	switch in.Status {
	case "":
		in.Status = "open"
	case "open", "in_progress", "done", "cancelled":
	default:
		return fe("status", "unknown status %q (want open, in_progress, done or cancelled)", in.Status)
	}
	switch in.Priority {
	case "":
		in.Priority = "normal"
	case "low", "normal", "high", "urgent":
	default:
		return fe("priority", "unknown priority %q (want low, normal, high or urgent)", in.Priority)
	}
	for _, f := range []struct {
		name string
		t    time.Time
	}{{"start", in.Start.Time}, {"due", in.Due.Time}, {"updated_at", in.UpdatedAt}} {
		if !f.t.IsZero() && (f.t.Year() < MinYear || f.t.Year() > MaxYear) {
			return fe(f.name, "year %d out of range (%d-%d)", f.t.Year(), MinYear, MaxYear)
		}
	}
	if !in.Start.IsZero() && !in.Due.IsZero() && in.Start.Time.After(in.Due.Time) {
		return fe("start", "after due")
	}
	if in.Version < 0 {
		return fe("version", "must not be negative")
	}
	return nil
}

// Result counts what an ingest did.
type Result struct {
	Accepted int `json:"accepted"`
	Ignored  int `json:"ignored"`
}

// Ingest applies task records from a source in one transaction: all of them
// or, on error, none. Records older than the stored state (lower version,
// else earlier updated_at) and exact repeats are ignored. When Ingest returns
// nil, the result is durable.
func (s *Service) Ingest(ctx context.Context, source string, inputs []TaskInput) (Result, error) {
	return s.ingest(ctx, source, inputs, nil)
}

// ingest is Ingest with more work for the same transaction: after, when
// not nil, runs once the records are applied (IngestDelivery's index).
func (s *Service) ingest(ctx context.Context, source string, inputs []TaskInput, after func(store.Tx) error) (Result, error) {
	cfg := s.Config()
	if cfg.Source(source) == nil {
		return Result{}, fmt.Errorf("unknown source %q", source)
	}
	lim := FieldLimitsOf(cfg)
	for i := range inputs {
		if fe := inputs[i].ValidateWith(lim); fe != nil {
			fe.Index = i
			if len(inputs) == 1 {
				fe.Index = -1
			}
			return Result{}, fe
		}
	}
	start := time.Now()
	job := &ingestJob{source: source, inputs: inputs, after: after, cfg: cfg, wake: make(chan struct{})}
	s.ingests.do(ctx, job, func(batch []*ingestJob) { s.commitIngests(ctx, batch) })
	s.metrics.StoreLatency.WithLabelValues("ingest").Observe(time.Since(start).Seconds())
	if job.err != nil {
		return Result{}, fmt.Errorf("store tasks from %s: %w", source, job.err)
	}
	res := job.res
	s.metrics.WebhookTasks.WithLabelValues(source, "accepted").Add(float64(res.Accepted))
	s.metrics.WebhookTasks.WithLabelValues(source, "ignored").Add(float64(res.Ignored))
	return res, nil
}

// Group commit. Every ingest is durable before it returns, and on SQLite
// one transaction is one fsync and holds the single writer for its whole
// length. At 100 webhooks/s on a busy disk, webhooks queued behind each
// other's fsync, so the tail of webhook → phone was mostly waiting. Ingests
// that arrive while another one is committing are therefore gathered into
// the next transaction, each in its own savepoint (a refused or replayed
// delivery rolls back alone), and all of them return after that one commit.
// Nothing waits to be grouped: a lone webhook commits at once.

// maxGroupTasks bounds the task records of one group transaction; a larger
// delivery still commits (alone). Small on purpose: one commit's events go
// to each hub subscriber at once, and past its buffer (64) the subscriber
// is marked lagged, which makes IMAP re-read every open mailbox. With 256,
// a backlog of webhooks under CPU starvation grew groups past that, and
// the re-reads deepened the backlog.
const maxGroupTasks = 16

// ingestJob is one ingest call waiting for (or in) a group transaction.
type ingestJob struct {
	source string
	inputs []TaskInput
	after  func(store.Tx) error
	cfg    *config.Config

	res  Result
	err  error
	lead bool          // set before wake: this job's caller commits the next group
	wake chan struct{} // closed once: done, or lead
}

// ingestGroup queues ingests for the one caller at a time that commits
// them (the leader).
type ingestGroup struct {
	mu      sync.Mutex
	pending []*ingestJob
	leading bool
}

// do returns once job is committed (or failed). The first caller to find
// no leader becomes it: it commits what is queued, oldest first, then
// hands the lead to the oldest job still waiting.
func (g *ingestGroup) do(ctx context.Context, job *ingestJob, commit func([]*ingestJob)) {
	g.mu.Lock()
	g.pending = append(g.pending, job)
	if g.leading {
		g.mu.Unlock()
		wait := trace.StartRegion(ctx, "ingest.group-wait") // for go tool trace
		<-job.wake
		wait.End()
		if !job.lead {
			return // committed by another caller's group
		}
		g.mu.Lock()
	}
	g.leading = true
	n, tasks := 0, 0
	for n < len(g.pending) && (n == 0 || tasks+len(g.pending[n].inputs) <= maxGroupTasks) {
		tasks += len(g.pending[n].inputs)
		n++
	}
	batch := slices.Clone(g.pending[:n])
	g.pending = slices.Delete(g.pending, 0, n)
	g.mu.Unlock()

	commit(batch)

	g.mu.Lock()
	var next *ingestJob
	if len(g.pending) > 0 {
		next = g.pending[0]
		next.lead = true
	} else {
		g.leading = false
	}
	g.mu.Unlock()
	if next != nil {
		close(next.wake)
	}
	for _, j := range batch {
		if j != job {
			close(j.wake)
		}
	}
}

// commitIngests stores a group in one transaction. The transaction is
// detached from the leader's cancellation: it carries other callers' work.
func (s *Service) commitIngests(ctx context.Context, batch []*ingestJob) {
	err := s.st.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		if len(batch) == 1 {
			j := batch[0]
			j.res, j.err = s.applyIngest(tx, j)
			return j.err
		}
		// The revision is allocated before the first savepoint, so a
		// rolled-back delivery cannot take it back from the others.
		if _, err := tx.Seq(); err != nil {
			return err
		}
		for _, j := range batch {
			j.err = tx.Savepoint(func() error {
				var err error
				j.res, err = s.applyIngest(tx, j)
				return err
			})
		}
		return nil
	})
	for _, j := range batch {
		if err != nil && j.err == nil {
			j.err = err // the commit failed: nothing of the group is stored
		}
		if j.err != nil {
			j.res = Result{}
		}
	}
}

// applyIngest applies one ingest's records (and its after) in tx.
func (s *Service) applyIngest(tx store.Tx, j *ingestJob) (Result, error) {
	var res Result
	w := s.newWriter(tx, j.cfg)
	w.batch = len(j.inputs) > 1
	for i := range j.inputs {
		applied, err := w.apply(j.source, &j.inputs[i])
		if err != nil {
			return Result{}, err
		}
		if applied {
			res.Accepted++
		} else {
			res.Ignored++
		}
	}
	if err := w.finish(); err != nil {
		return Result{}, err
	}
	if j.after != nil {
		if err := j.after(tx); err != nil {
			return Result{}, err
		}
	}
	return res, nil
}

// newer decides whether an incoming record replaces the stored task.
func newer(in *TaskInput, old *store.Task) bool {
	if in.Version != 0 && old.Version != 0 && in.Version != old.Version {
		return in.Version > old.Version
	}
	if !in.UpdatedAt.IsZero() && !old.UpdatedAt.IsZero() && !in.UpdatedAt.Equal(old.UpdatedAt) {
		if in.Version != 0 && old.Version != 0 {
			// Same version, different timestamps: the version says it is the same state.
			return false
		}
		return in.UpdatedAt.After(old.UpdatedAt)
	}
	// No ordering information (or a tie).
	if old.Deleted {
		// A tombstone gives way only to a newer record: a repeat of the
		// delete changes nothing, and a repeat of the state before it must
		// not bring the task back.
		return false
	}
	return !sameContent(in, old)
}

// ordering is the ordering state after in replaced old: never lower than
// either. A record without a version used to erase the stored one, after
// which a replay of an old version applied again (done → open).
func ordering(old *store.Task, in *TaskInput) (int64, time.Time) {
	v, at := max(old.Version, in.Version), old.UpdatedAt
	if in.UpdatedAt.After(at) {
		at = in.UpdatedAt
	}
	return v, at
}

func sameContent(in *TaskInput, t *store.Task) bool {
	return in.Deleted == t.Deleted && in.Title == t.Title && in.Description == t.Description &&
		in.URL == t.URL && in.Project == t.Project && slices.Equal(in.Assignees, t.Assignees) &&
		slices.Equal(in.Labels, t.Labels) && in.Start == t.Start && in.Due == t.Due &&
		in.Status == t.Status && in.Priority == t.Priority
}

// writer applies changes inside one transaction, caching what it ensured.
type writer struct {
	s   *Service
	tx  store.Tx
	cfg *config.Config
	// colls caches each user's collections by name, as this transaction
	// sees them (read once per user, kept up to date by ensureCollection).
	colls map[string]map[string]store.Collection
	// reserved: names collectionNames picked whose collection is not made
	// yet (batch writes are deferred); they count as taken.
	reserved map[[2]string]bool
	// known: collections read by name (haveNamed) and found in the store.
	known map[[2]string]bool
	// inbox: users whose INBOX this transaction created (appendToInbox).
	inbox map[string]bool
	// created: tasks first stored by this transaction.
	created map[[2]string]bool

	// batch defers rendering: objects and mails are rendered in parallel at
	// finish and written in the order they were asked for. Rendering is pure
	// and was half the CPU of a batch ingest; the store writes stay serial.
	batch   bool
	jobs    []renderJob
	pending map[[2]string]bool // tasks with deferred jobs
	// noFlips: the store holds no waiting flip mail (coalesce.go), known
	// from an earlier read in this transaction.
	noFlips bool
}

type renderJob struct {
	render func() ([][]byte, error)
	write  func([][]byte) error
}

// do renders and writes now, or queues both in batch mode.
func (w *writer) do(render func() ([]byte, error), write func([]byte) error) error {
	return w.doMany(func() ([][]byte, error) {
		data, err := render()
		return [][]byte{data}, err
	}, func(data [][]byte) error { return write(data[0]) })
}

// doMany is do for a render of several outputs written together.
func (w *writer) doMany(render func() ([][]byte, error), write func([][]byte) error) error {
	if !w.batch {
		data, err := render()
		if err != nil {
			return err
		}
		return write(data)
	}
	w.jobs = append(w.jobs, renderJob{render, write})
	return nil
}

// finish renders the queued jobs on all cores and writes them in order.
func (w *writer) finish() error {
	jobs := w.jobs
	w.jobs, w.pending = nil, map[[2]string]bool{}
	if len(jobs) == 0 {
		return nil
	}
	out := make([][][]byte, len(jobs))
	errs := make([]error, len(jobs))
	workers := min(runtime.GOMAXPROCS(0), (len(jobs)+15)/16)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				out[i], errs[i] = jobs[i].render()
			}
		}()
	}
	wg.Wait()
	for i, j := range jobs {
		if errs[i] != nil {
			return errs[i]
		}
		if err := j.write(out[i]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) newWriter(tx store.Tx, cfg *config.Config) *writer {
	return &writer{s: s, tx: tx, cfg: cfg, colls: map[string]map[string]store.Collection{}, reserved: map[[2]string]bool{}, known: map[[2]string]bool{}, inbox: map[string]bool{},
		created: map[[2]string]bool{}, pending: map[[2]string]bool{}}
}

func (w *writer) apply(source string, in *TaskInput) (bool, error) {
	key := [2]string{source, in.ID}
	if w.pending[key] {
		// The same task twice in one batch: its first change must be in the
		// store before the second one reads it.
		if err := w.finish(); err != nil {
			return false, err
		}
	}
	if w.batch {
		w.pending[key] = true
	}
	old, err := w.tx.Task(source, in.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	if old != nil && !newer(in, old) {
		return false, nil
	}
	if old != nil && sameContent(in, old) {
		// Newer but nothing a user sees changed (a tracker touched
		// updated_at): keep the ordering fields, leave objects, ETags and
		// SEQUENCE alone so phones have nothing to re-sync.
		t := *old
		t.Version, t.UpdatedAt = ordering(old, in)
		return true, w.tx.PutTask(&t)
	}
	if old == nil && in.Deleted {
		// A delete of something never seen: remember it so an older update
		// arriving later does not create the task.
		t := &store.Task{Source: source, ID: in.ID, Title: in.Title, Status: "cancelled", Priority: "normal",
			UpdatedAt: in.UpdatedAt, Version: in.Version, Deleted: true}
		return true, w.tx.PutTask(t)
	}
	t := &store.Task{Source: source, ID: in.ID}
	if old != nil {
		cp := *old
		t = &cp
	}
	if in.Deleted && old != nil {
		// A delete may carry only the id: keep the last known content, and
		// the ordering fields it does not carry, as the tombstone that
		// orders later deliveries.
		t.Deleted = true
		if in.Version != 0 {
			t.Version = in.Version
		}
		if !in.UpdatedAt.IsZero() {
			t.UpdatedAt = in.UpdatedAt
		}
		t.Sequence = old.Sequence + 1
		if err := w.tx.PutTask(t); err != nil {
			return false, err
		}
		w.tx.Emit(store.Event{Kind: store.EventTask, Source: source, TaskID: t.ID})
		return true, w.syncTask(old, t, "")
	}
	t.Title, t.Description, t.URL, t.Project = in.Title, in.Description, in.URL, in.Project
	t.Assignees, t.Labels = in.Assignees, in.Labels
	t.Start, t.Due, t.Priority = in.Start, in.Due, in.Priority
	t.Version, t.UpdatedAt = in.Version, in.UpdatedAt
	if old != nil {
		t.Version, t.UpdatedAt = ordering(old, in)
	}
	t.Deleted = in.Deleted
	if t.Status != in.Status {
		t.CompletedBy = "" // the tracker now owns the status again
		t.CompletedAt = time.Time{}
		if in.Status == "done" {
			t.CompletedAt = w.tx.Now()
		}
	}
	t.Status = in.Status
	if old != nil {
		t.Sequence = old.Sequence + 1
		delete(w.created, [2]string{source, t.ID}) // seen twice in one batch
	} else {
		w.created[[2]string{source, t.ID}] = true
	}
	if err := w.tx.PutTask(t); err != nil {
		return false, err
	}
	w.tx.Emit(store.Event{Kind: store.EventTask, Source: source, TaskID: t.ID})
	return true, w.syncTask(old, t, "")
}

// syncTask brings every affected user's objects and mail up to date after a
// task changed from old (nil if new) to t. actor is the user who made the
// change on a phone ("" for the task system); they get no mail about it.
func (w *writer) syncTask(old, t *store.Task, actor string) error {
	users := map[string]bool{}
	if old != nil && !old.Deleted {
		for _, a := range old.Assignees {
			users[a] = true
		}
	}
	for _, a := range t.Assignees {
		users[a] = true
	}
	for name := range users {
		u := w.cfg.User(name)
		if u == nil {
			continue // not one of ours: nothing to show, nothing to mail
		}
		wasAssigned := old != nil && !old.Deleted && slices.Contains(old.Assignees, name)
		isAssigned := !t.Deleted && slices.Contains(t.Assignees, name)
		if err := w.syncObjects(u, t, isAssigned, !wasAssigned); err != nil {
			return err
		}
		if name == actor {
			continue
		}
		if ev, ok := mailEventFor(old, t, wasAssigned, isAssigned); ok {
			if w.coalesces(ev, actor) {
				if err := w.deferFlip(u, t, old); err != nil {
					return err
				}
				continue
			}
			// Only a stored task can have a waiting flip mail (deferFlip
			// records one for a status change): a task this transaction
			// created skips the read of the waiting list.
			if !w.created[[2]string{t.Source, t.ID}] {
				if err := w.dropFlip(name, t); err != nil {
					return err
				}
			}
			if err := w.notify(u, ev, t, old); err != nil {
				return err
			}
		}
	}
	return nil
}

// mailEventFor picks the one notification a change deserves for a user.
func mailEventFor(old, t *store.Task, wasAssigned, isAssigned bool) (render.MailEvent, bool) {
	switch {
	case isAssigned && !wasAssigned:
		if t.Open() {
			return render.MailAssigned, true
		}
	case wasAssigned && t.Deleted:
		return render.MailDeleted, true
	case wasAssigned && !isAssigned:
		return render.MailUnassigned, true
	case isAssigned && old != nil && old.Status != t.Status:
		switch {
		case t.Status == "done":
			return render.MailDone, true
		case t.Status == "cancelled":
			return render.MailCancelled, true
		case !old.Open() && t.Open():
			return render.MailReopened, true
		}
	}
	if isAssigned && wasAssigned && old != nil && old.Due != t.Due && t.Open() {
		return render.MailDueChanged, true
	}
	return "", false
}

// syncObjects writes (or removes) a user's VTODO and VEVENT of a task.
// assigned: the user should see it; fresh: the assignment is new, which
// un-hides a task the user had deleted on the phone.
func (w *writer) syncObjects(u *config.User, t *store.Task, assigned, fresh bool) error {
	todoColl, eventColl, err := w.collectionNames(u.Name, t.Project)
	if err != nil {
		return err
	}
	name := render.ObjectName(t.Source, t.ID)
	// A task first seen in this transaction has no per-user state and no
	// objects yet: skip the lookups (they dominated batch ingest).
	isNew := w.created[[2]string{t.Source, t.ID}]
	var ut *store.UserTask
	if !isNew {
		ut, err = w.tx.UserTask(u.Name, t.Source, t.ID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	if ut != nil && ut.Hidden && assigned && fresh {
		ut.Hidden = false
		if err := w.tx.PutUserTask(ut); err != nil {
			return err
		}
	}
	visible := assigned && t.Status != "cancelled" && (ut == nil || !ut.Hidden)
	// The deadline engine's schedule follows visibility in this same
	// transaction (scheduler.go).
	if err := w.syncAlert(u, t, visible); err != nil {
		return err
	}

	// Objects in other collections (the project was renamed) go away first.
	var existing []store.Object
	if !isNew {
		uids := []string{render.TodoUID(t.Source, t.ID), render.EventUID(t.Source, t.ID)}
		if existing, err = w.tx.ObjectsForTaskUser(t.Source, t.ID, u.Name, uids); err != nil {
			return err
		}
	}
	etags := map[string]string{}
	for _, o := range existing {
		etags[o.Collection] = o.ETag
		keep := visible && ((o.Collection == todoColl) || (o.Collection == eventColl && !t.Due.IsZero()))
		if !keep {
			if err := w.tx.DeleteObject(u.Name, o.Collection, o.Name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
		}
	}
	if !visible {
		return nil
	}
	var phone render.PhoneState
	if ut != nil {
		if phone, err = render.ParsePhoneState(ut.Extra); err != nil {
			w.s.log.Warn("ignoring unreadable phone state", "user", u.Name, "task", t.Source+"/"+t.ID, "err", err)
		}
	}
	src := w.cfg.Source(t.Source)
	in := render.Input{Task: t, User: u, LeadTimes: w.cfg.LeadTimesFor(u, src), Phone: phone}
	withEvent := !t.Due.IsZero()
	evIn := in
	evIn.Phone = render.PhoneState{Bumps: phone.Bumps} // phone alarms belong to the reminder only
	// The VTODO and the VEVENT are rendered together and stored in one
	// statement (store.PutObjects): one fewer in the writer's turn.
	renderBoth := func() ([][]byte, error) {
		todo, err := render.Todo(in)
		if err != nil || !withEvent {
			return [][]byte{todo}, err
		}
		event, err := render.Event(evIn)
		return [][]byte{todo, event}, err
	}
	type part struct{ coll, kind, uid string }
	parts := []part{{todoColl, store.KindTodos, render.TodoUID(t.Source, t.ID)}}
	if withEvent {
		parts = append(parts, part{eventColl, store.KindEvents, render.EventUID(t.Source, t.ID)})
	}
	return w.doMany(renderBoth, func(data [][]byte) error {
		objs := make([]*store.Object, 0, len(parts))
		for i, p := range parts {
			o, err := w.objectToPut(u.Name, p.coll, p.kind, t, name, p.uid, data[i], etags[p.coll])
			if err != nil {
				return err
			}
			if o != nil {
				objs = append(objs, o)
			}
		}
		if len(objs) == 0 {
			return nil
		}
		return w.tx.PutObjects(objs)
	})
}

// objectToPut ensures an object's collection and returns the object to
// store, or nil when its bytes are unchanged (curETag is the stored one, ""
// if none), so render.ETag, ctag and sync token stay still.
func (w *writer) objectToPut(user, coll, kind string, t *store.Task, name, uid string, data []byte, curETag string) (*store.Object, error) {
	if err := w.ensureCollection(user, coll, kind, t.Project); err != nil {
		return nil, err
	}
	etag := render.ETag(data)
	if etag == curETag {
		return nil, nil
	}
	return &store.Object{User: user, Collection: coll, Name: name, UID: uid,
		Source: t.Source, TaskID: t.ID, ETag: etag, Data: data}, nil
}

// userCollections returns a user's collections by name.
func (w *writer) userCollections(user string) (map[string]store.Collection, error) {
	if m, ok := w.colls[user]; ok {
		return m, nil
	}
	list, err := w.tx.Collections(user)
	if err != nil {
		return nil, fmt.Errorf("list collections of %s: %w", user, err)
	}
	m := make(map[string]store.Collection, len(list))
	for _, c := range list {
		m[c.Name] = c
	}
	w.colls[user] = m
	return m, nil
}

// collectionNames returns the names of a project's list and deadlines
// calendar for a user. A collection the user already has for the project
// keeps its name (stores made before render.CollectionNames added hashes keep
// their lists); a new one gets render.CollectionNames, or its hashed form when
// that name already belongs to another project, so two projects never
// share a collection.
func (w *writer) collectionNames(user, project string) (todos, events string, err error) {
	todos, events = render.CollectionNames(project)
	if ok, err := w.haveNamed(user, project, todos, events); ok || err != nil {
		return todos, events, err
	}
	have, err := w.userCollections(user)
	if err != nil {
		return "", "", err
	}
	pick := func(want, kind string) string {
		if c, ok := have[want]; ok && c.Project == project && c.Kind == kind {
			return want
		}
		var own []string
		for name, c := range have {
			if c.Project == project && c.Kind == kind {
				own = append(own, name)
			}
		}
		if len(own) > 0 {
			slices.Sort(own)
			return own[0]
		}
		if _, taken := have[want]; taken {
			ht, he := render.HashedCollectionNames(project)
			want = ht
			if kind == store.KindEvents {
				want = he
			}
		}
		// Reserve the name now: in a batch the collection is made only when
		// the deferred writes run, and another project of the same batch
		// must not pick it meanwhile. ensureCollection replaces the entry.
		if _, ok := have[want]; !ok {
			have[want] = store.Collection{User: user, Name: want, Project: project, Kind: kind}
			w.reserved[[2]string{user, want}] = true
		}
		return want
	}
	return pick(todos, store.KindTodos), pick(events, store.KindEvents), nil
}

// haveNamed reports whether the user has the project's collections under
// their render.CollectionNames, the common case, which the rest of
// collectionNames would also pick. It reads those two rows instead of the
// user's every collection (twenty for ten projects, most of the read's
// cost), unless this transaction has read them all already; what it finds
// is remembered in known, so ensureCollection needs no list either.
func (w *writer) haveNamed(user, project, todos, events string) (bool, error) {
	if _, listed := w.colls[user]; listed {
		return false, nil
	}
	kt, ke := [2]string{user, todos}, [2]string{user, events}
	if w.known[kt] && w.known[ke] {
		return true, nil
	}
	found, err := w.tx.CollectionsNamed(user, []string{todos, events})
	if err != nil {
		return false, err
	}
	n := 0
	for _, c := range found {
		if c.Project == project && ((c.Name == todos && c.Kind == store.KindTodos) || (c.Name == events && c.Kind == store.KindEvents)) {
			w.known[[2]string{user, c.Name}] = true
			n++
		}
	}
	return n == 2, nil
}

// ensureCollection creates a user's collection on first use, with the
// project's colour and the next place in the order (see newCollection); an
// existing one keeps what it has, including the user's own PROPPATCH.
func (w *writer) ensureCollection(user, coll, kind, project string) error {
	if w.known[[2]string{user, coll}] {
		return nil // in the store (haveNamed)
	}
	have, err := w.userCollections(user)
	if err != nil {
		return err
	}
	k := [2]string{user, coll}
	if _, ok := have[coll]; ok && !w.reserved[k] {
		return nil
	}
	var existing []store.Collection
	for name, c := range have {
		if !w.reserved[[2]string{user, name}] { // reserved names are not collections yet
			existing = append(existing, c)
		}
	}
	c := newCollection(user, coll, kind, project, existing)
	if _, err := w.tx.EnsureCollection(c); err != nil {
		return err
	}
	have[coll] = *c
	delete(w.reserved, k)
	return nil
}

// newCollection builds a new collection given the user's existing ones. A
// project's list and deadlines calendar share one colour, so the two are
// recognisably the same project in both apps. The colour starts at
// render.ProjectColor and moves to the next palette colour no other project of the
// user has, so a user's first len(render.Palette) projects never look alike
// (when two hash alike, the second one to arrive moves). The order is after
// every existing collection of the user, so lists keep the order they
// appeared in and no two share a place.
func newCollection(user, coll, kind, project string, existing []store.Collection) *store.Collection {
	todoName, eventName := render.CollectionDisplayNames(project)
	display := todoName
	if kind == store.KindEvents {
		display = eventName
	}
	c := &store.Collection{User: user, Name: coll, Project: project, Kind: kind, DisplayName: display}
	used := map[string]bool{}
	for _, e := range existing {
		c.Order = max(c.Order, e.Order+1)
		if e.Project == project && e.Color != "" && c.Color == "" {
			c.Color = e.Color // the sibling collection's colour, as the user may have set it
		}
		if e.Project != project {
			used[strings.ToUpper(e.Color)] = true
		}
	}
	if c.Color == "" {
		first := render.ProjectColor(project)
		c.Color = render.Palette[first]
		for i := range render.Palette {
			if p := render.Palette[(first+i)%len(render.Palette)]; !used[p] {
				c.Color = p
				break
			}
		}
	}
	return c
}

// Inbox is the name of the mailbox notifications go to.
const Inbox = "INBOX"

// notify stores one notification mail for a user.
func (w *writer) notify(u *config.User, ev render.MailEvent, t, old *store.Task) error {
	seq, err := w.tx.Seq()
	if err != nil {
		return err
	}
	in := render.MailInput{Event: ev, Task: t, User: u, From: w.cfg.Mail.From, Host: w.cfg.HTTP.PublicURL.Hostname(),
		Date: w.tx.Now(), Seq: seq, Urgent: render.IsUrgent(t, render.UserLocation(u), w.tx.Now())} // urgency.go
	if old != nil {
		in.OldDue = old.Due
	}
	mail := func() ([]byte, error) {
		data, err := render.NotificationMail(in)
		if err != nil {
			return nil, fmt.Errorf("render %s mail for %s: %w", ev, u.Name, err)
		}
		return data, nil
	}
	return w.do(mail, func(data []byte) error {
		var flags []string
		if in.Urgent {
			flags = append(flags, `\Flagged`)
		}
		msg := &store.Message{User: u.Name, Mailbox: Inbox, Data: data, Flags: flags, InternalDate: w.tx.Now(),
			MessageID: render.MessageID(in), Source: t.Source, TaskID: t.ID}
		if err := appendToInbox(w.tx, w.inbox, msg); err != nil {
			return err
		}
		w.s.metrics.Mails.WithLabelValues(string(ev)).Inc()
		return nil
	})
}

// appendToInbox appends a mail to its user's INBOX, creating the mailbox
// first only when the append finds none (created: the users whose INBOX
// this transaction made). Only a user's first mail needs it: looking the
// mailbox up before every append was one more statement per mail inside
// the single writer's turn.
func appendToInbox(tx store.Tx, created map[string]bool, msg *store.Message) error {
	err := tx.AppendMessage(msg)
	if !errors.Is(err, store.ErrNotFound) || created[msg.User] {
		return err
	}
	if _, err := tx.EnsureMailbox(msg.User, Inbox, ""); err != nil {
		return err
	}
	created[msg.User] = true
	return tx.AppendMessage(msg)
}
