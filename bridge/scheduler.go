package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// scheduler is the deadline engine: it writes the "due soon" mail at each
// lead time before a task's due instant and the "overdue" mail at the due
// instant, for users whose notify setting asks for mail (for the others the
// VALARMs on the CalDAV objects carry the same lead times and render.DueInstant),
// and the opt-in daily digest. It also writes the done/reopened mails that
// waited out their coalescing window (coalesce.go).
//
// State lives in the store, one store.Alert per user and task, armed and
// disarmed by ingest and completion in the transaction that changes the
// task (writer.syncAlert). Each alert instant is covered at most once: the
// mail and the new Covered mark are written in one transaction, so a
// restart, a crash or a config reload neither repeats nor skips one. After
// downtime, or at the end of quiet hours, every instant that has passed is
// collapsed into one mail per task, about the latest of them.
//
// A tick reads only the schedules whose FireAt has come (an index), so its
// cost follows the work due, not the number of tasks waiting. Between ticks
// Run sleeps on a timer until the earliest FireAt, and wakes early on an
// EventAlert (a task was armed) or after MaxSleep (to see config reloads).
type scheduler struct {
	s        *Service
	clock    clock.Clock
	batch    int
	maxSleep time.Duration

	// Owned by the goroutine that calls Tick (Run's).
	lastCfg    *config.Config
	backfilled bool

	held        prometheus.Counter
	flipsUnsent prometheus.Counter
	tickDur     prometheus.Histogram
	checks      prometheus.Counter
}

// schedulerOptions for newScheduler. Zero values are fine.
type schedulerOptions struct {
	// BatchSize is how many schedules one transaction handles; 0 means 256.
	BatchSize int
	// MaxSleep bounds how long Run waits between ticks, which is how soon a
	// config reload takes effect; 0 means one minute.
	MaxSleep time.Duration
}

// Keys in the store's kv table.
const (
	kvAlertBackfill = "alerts.backfill"    // "done" once pre-existing tasks are armed
	kvAlertPlan     = "alerts.plan."       // + user: fingerprint of the settings alerts derive from
	kvDigestSent    = "alerts.digest.day." // + user: local date of the last digest slot handled
)

const (
	// catchUpGrace: a due-soon mail written later than this after its
	// instant (downtime, quiet hours) states the time actually left instead
	// of the configured lead time.
	catchUpGrace = time.Minute
	// retryDelay after a failed tick (store unreachable).
	retryDelay = 30 * time.Second
	// digestLimit caps the tasks listed in one digest.
	digestLimit = 100
	// digestScan caps the schedules read to build one digest.
	digestScan = 5000
)

// newScheduler builds the scheduler and registers its metrics; it starts
// nothing.
func newScheduler(s *Service, o schedulerOptions) *scheduler {
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	if o.MaxSleep <= 0 {
		o.MaxSleep = time.Minute
	}
	sc := &scheduler{s: s, clock: s.clock, batch: o.BatchSize, maxSleep: o.MaxSleep}
	sc.held = register(s, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duebridge_alerts_held_total", Help: "Alert mails postponed to the end of a user's quiet hours.",
	}))
	sc.flipsUnsent = register(s, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duebridge_mail_flips_unsent_total",
		Help: "Done/reopened mails from phone flips not sent: the task ended the coalescing window as it began it, or a newer mail replaced it.",
	}))
	sc.tickDur = register(s, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "duebridge_scheduler_tick_seconds", Help: "Duration of one scheduler pass over the due alerts.",
		Buckets: []float64{.0005, .001, .005, .01, .05, .1, .5, 1, 5, 30},
	}))
	sc.checks = register(s, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duebridge_scheduler_checks_total",
		Help: "Scheduler wake-ups on a change with nothing due before its timer: one read instead of a pass (duebridge_scheduler_tick_seconds counts the passes).",
	}))
	register(s, &alertsCollector{st: s.st})
	return sc
}

// alertsCollector reports duebridge_alerts and duebridge_alerts_armed
// from one count per scrape (two gauge functions counted the table twice).
type alertsCollector struct{ st store.Store }

var (
	alertsDesc = prometheus.NewDesc("duebridge_alerts",
		"Alert schedules: open tasks with a due time, per assigned user.", nil, nil)
	alertsArmedDesc = prometheus.NewDesc("duebridge_alerts_armed",
		"Alert schedules with an alert mail still to come.", nil, nil)
)

func (c *alertsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- alertsDesc
	ch <- alertsArmedDesc
}

func (c *alertsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var total, armed int64
	if err := c.st.View(ctx, func(tx store.Tx) (err error) {
		total, armed, err = tx.CountAlerts()
		return err
	}); err != nil {
		// Absent rather than an invalid metric: that would fail the whole
		// scrape, and a zero would claim there are no schedules.
		return
	}
	ch <- prometheus.MustNewConstMetric(alertsDesc, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(alertsArmedDesc, prometheus.GaugeValue, float64(armed))
}

// Run ticks until ctx is done.
//
// Every new task with a due time sends an event (its schedule was armed),
// but ingest has planned the schedule already, so the event mostly asks
// only whether the timer must fire sooner: one read answers that, where a
// full pass was three read transactions per webhook, at the very moment
// IMAP pushes the webhook's mail.
func (sc *scheduler) Run(ctx context.Context) error {
	sub := sc.s.hub.Subscribe("", store.EventAlert)
	defer sub.Close()
	timer := sc.clock.NewTimer(0)
	defer timer.Stop()
	var wakeAt time.Time // when the timer fires; zero until the first pass
	for {
		byEvent := false
		select {
		case <-ctx.Done():
			return nil
		case <-sub.C:
			byEvent = true
		case <-timer.C():
		}
		// Events only say "look again"; a lag mark says the same.
		sub.Lagged()
		if byEvent && !wakeAt.IsZero() && sc.s.Config() == sc.lastCfg {
			at, ok, err := sc.nextWork(ctx)
			if now := sc.clock.Now(); err == nil && (!ok || at.After(now)) {
				if ok && at.Before(wakeAt) {
					wakeAt = at
					timer.Reset(at.Sub(now))
				}
				sc.checks.Inc()
				continue
			}
		}
		next, err := sc.Tick(ctx)
		if ctx.Err() != nil {
			return nil
		}
		wait := sc.maxSleep
		if err != nil {
			sc.s.log.Error("scheduler tick", "err", err)
			wait = retryDelay
		} else if !next.IsZero() {
			wait = min(max(next.Sub(sc.clock.Now()), 0), sc.maxSleep)
		}
		wakeAt = sc.clock.Now().Add(wait)
		timer.Reset(wait)
	}
}

// nextWork returns the earliest instant an alert schedule or a waiting
// flip mail needs a pass (ok false: none), in one statement outside a
// transaction: it runs after every webhook that arms a schedule, where a
// View of two statements cost more in BEGIN and ROLLBACK than its reads.
// The digests' and the config's checks are in the timer Run keeps.
func (sc *scheduler) nextWork(ctx context.Context) (at time.Time, ok bool, err error) {
	var v string
	err = sc.s.st.Read(ctx, func(tx store.Tx) error {
		var err error
		at, ok, v, err = tx.NextAlertAndValue(kvFlips)
		return err
	})
	if err != nil {
		return time.Time{}, false, err
	}
	flips, err := decodeFlips(v)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("waiting flip mails: %w", err)
	}
	for _, p := range flips {
		if !ok || p.At.Before(at) {
			at, ok = p.At, true
		}
	}
	return at, ok, nil
}

// Tick makes one pass: it arms tasks stored before the deadline engine
// existed (once), hands schedules back for planning when the settings they
// derive from changed, writes every alert and digest mail that is due now,
// and returns when the next one is (zero if none is planned). Run calls it;
// tests that drive virtual time call it directly. It must not be called
// concurrently.
func (sc *scheduler) Tick(ctx context.Context) (time.Time, error) {
	start := time.Now()
	defer func() { sc.tickDur.Observe(time.Since(start).Seconds()) }()
	cfg := sc.s.Config()
	if !sc.backfilled {
		if err := sc.backfill(ctx, cfg); err != nil {
			return time.Time{}, err
		}
		sc.backfilled = true
	}
	now := sc.clock.Now()
	if cfg != sc.lastCfg {
		if err := sc.replan(ctx, cfg, now); err != nil {
			return time.Time{}, err
		}
		sc.lastCfg = cfg
	}
	for {
		n, err := sc.fireBatch(ctx, cfg, now)
		if err != nil {
			return time.Time{}, err
		}
		if n < sc.batch {
			break
		}
	}
	next, err := sc.digests(ctx, cfg, now)
	if err != nil {
		return time.Time{}, err
	}
	flipAt, err := sc.deliverFlips(ctx, cfg, now) // coalesce.go
	if err != nil {
		return time.Time{}, err
	}
	if !flipAt.IsZero() && (next.IsZero() || flipAt.Before(next)) {
		next = flipAt
	}
	err = sc.s.st.View(ctx, func(tx store.Tx) error {
		at, ok, err := tx.NextAlert()
		if ok && (next.IsZero() || at.Before(next)) {
			next = at
		}
		return err
	})
	return next, err
}

// backfill arms schedules for open tasks that were stored before this
// version, in batches; instants before now count as covered, so an upgrade
// sends no stale reminders.
func (sc *scheduler) backfill(ctx context.Context, cfg *config.Config) error {
	var done bool
	if err := sc.s.st.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(kvAlertBackfill)
		done = v == "done"
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	}); err != nil {
		return fmt.Errorf("read alert backfill mark: %w", err)
	}
	if done {
		return nil
	}
	var afterSource, afterID string
	for {
		var n int
		err := sc.s.st.Update(ctx, func(tx store.Tx) error {
			tasks, err := tx.OpenTasksWithDue(afterSource, afterID, 1000)
			if err != nil {
				return err
			}
			n = len(tasks)
			w := sc.s.newWriter(tx, cfg)
			for i := range tasks {
				t := &tasks[i]
				afterSource, afterID = t.Source, t.ID
				for _, name := range t.Assignees {
					u := cfg.User(name)
					if u == nil {
						continue
					}
					hidden, err := hiddenFor(tx, name, t)
					if err != nil {
						return err
					}
					if err := w.syncAlert(u, t, !hidden && t.Status != "cancelled"); err != nil {
						return err
					}
				}
			}
			if n == 0 {
				return tx.Set(kvAlertBackfill, "done")
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("arm alerts of stored tasks: %w", err)
		}
		if n == 0 {
			return nil
		}
	}
}

func hiddenFor(tx store.Tx, user string, t *store.Task) (bool, error) {
	ut, err := tx.UserTask(user, t.Source, t.ID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return ut.Hidden, nil
}

// alertFingerprint is everything a user's alert instants and their hold
// depend on. When it differs from the one stored, the user's schedules are
// re-planned (after a reload, or a config edited while duebridge was down).
func alertFingerprint(cfg *config.Config, u *config.User) string {
	var b strings.Builder
	fmt.Fprintf(&b, "notify=%s;tz=%s;default=%v", u.Notify, render.UserLocation(u), cfg.LeadTimesFor(u, nil))
	for i := range cfg.Sources {
		fmt.Fprintf(&b, ";%s=%v", cfg.Sources[i].Name, cfg.LeadTimesFor(u, &cfg.Sources[i]))
	}
	if q := u.QuietHours; q != nil {
		fmt.Fprintf(&b, ";quiet=%v-%v,%t", q.Start, q.End, q.AllowUrgent)
	}
	return b.String()
}

// updateInBatches runs fn on every item, n items to a write transaction
// (one commit per item held the single writer for minutes at a million
// users); an error names the item it stopped at, as label gives it.
func updateInBatches[T any](ctx context.Context, st store.Store, items []T, n int, label func(T) string, fn func(store.Tx, T) error) error {
	for len(items) > 0 {
		batch := items[:min(len(items), n)]
		items = items[len(batch):]
		var at T
		err := st.Update(ctx, func(tx store.Tx) error {
			for _, it := range batch {
				at = it
				if err := fn(tx, it); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("%s: %w", label(at), err)
		}
	}
	return nil
}

// replanBatch is how many users' schedules one replan write transaction
// re-plans.
const replanBatch = 500

// replan hands the schedules of users whose alert settings changed back to
// the fire pass, and drops the schedules of users no longer configured.
// The stored fingerprints are read in one read transaction and only the
// users whose settings changed are written, replanBatch to a transaction:
// one write transaction per user made every start and every reload of a
// 100,000-user config cost 100,000 commits on the store's single writer.
func (sc *scheduler) replan(ctx context.Context, cfg *config.Config, now time.Time) error {
	names := make([]string, len(cfg.Users))
	fps := make([]string, len(cfg.Users))
	var changed []int
	// Every stored fingerprint in one statement: one read per user made a
	// restart with a million users spend ~30 s here before the first alert.
	stored := map[string]string{}
	err := sc.s.st.Read(ctx, func(tx store.Tx) error {
		return tx.GetPrefix(kvAlertPlan, func(k, v string) error {
			stored[k[len(kvAlertPlan):]] = v
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("re-plan alerts: read alert settings: %w", err)
	}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		names[i], fps[i] = u.Name, alertFingerprint(cfg, u)
		if stored[u.Name] != fps[i] {
			changed = append(changed, i)
		}
	}
	stored = nil
	err = updateInBatches(ctx, sc.s.st, changed, replanBatch, func(i int) string { return names[i] }, func(tx store.Tx, i int) error {
		name := names[i]
		// Read again inside the write: another writer may have
		// planned this user since the read above.
		old, err := tx.Get(kvAlertPlan + name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if old == fps[i] {
			return nil
		}
		n, err := tx.ReplanAlerts(name, now)
		if err != nil {
			return err
		}
		if old != "" {
			sc.s.log.Info("alert settings changed; re-planning", "user", name, "schedules", n)
		}
		return tx.Set(kvAlertPlan+name, fps[i])
	})
	if err != nil {
		return fmt.Errorf("re-plan alerts of %w", err)
	}
	return sc.s.st.Update(ctx, func(tx store.Tx) error { return tx.PruneAlerts(names) })
}

// fireBatch handles up to one batch of due schedules in one transaction and
// returns how many it read.
func (sc *scheduler) fireBatch(ctx context.Context, cfg *config.Config, now time.Time) (int, error) {
	// Read first: a tick runs after every task change, and mostly finds
	// nothing due; an empty write transaction still takes the single
	// writer's turn from the webhooks queued behind it.
	var due bool
	if err := sc.s.st.View(ctx, func(tx store.Tx) error {
		first, err := tx.DueAlerts(now, 1)
		due = len(first) > 0
		return err
	}); err != nil {
		return 0, fmt.Errorf("fire alerts: %w", err)
	}
	if !due {
		return 0, nil
	}
	var n int
	err := sc.s.st.Update(ctx, func(tx store.Tx) error {
		due, err := tx.DueAlerts(now, sc.batch)
		if err != nil {
			return err
		}
		n = len(due)
		p := &firePass{sc: sc, tx: tx, cfg: cfg, now: now, inbox: map[string]bool{}}
		for i := range due {
			if err := p.fire(&due[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("fire alerts: %w", err)
	}
	return n, nil
}

// firePass is one transaction of the fire pass.
type firePass struct {
	sc    *scheduler
	tx    store.Tx
	cfg   *config.Config
	now   time.Time
	inbox map[string]bool // users whose INBOX this pass created (appendToInbox)
}

// fire brings one due schedule up to date: it checks that the alert still
// applies, writes at most one mail (about the latest instant that has
// passed) unless quiet hours hold it, and plans the next FireAt.
func (p *firePass) fire(a *store.Alert) error {
	tx, now := p.tx, p.now
	u := p.cfg.User(a.User)
	t, err := tx.Task(a.Source, a.TaskID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && u == nil) {
		return tx.DisarmAlert(a.User, a.Source, a.TaskID)
	}
	if err != nil {
		return err
	}
	// Ingest disarms in the transaction that closes or moves the task; this
	// re-check covers writers that change a task without going through it.
	hidden, err := hiddenFor(tx, u.Name, t)
	if err != nil {
		return err
	}
	if !t.Open() || t.Due.IsZero() || hidden || !slices.Contains(t.Assignees, u.Name) {
		return tx.DisarmAlert(a.User, a.Source, a.TaskID)
	}
	if t.Due != a.Due {
		_, err := tx.ArmAlert(a.User, a.Source, a.TaskID, t.Due)
		return err
	}

	loc := render.UserLocation(u)
	due := render.DueInstant(t.Due, loc)
	instants := alertInstants(p.cfg, u, p.cfg.Source(t.Source), due)
	var first, latest time.Time
	for _, at := range instants {
		if at.After(a.Covered) && !at.After(now) {
			if first.IsZero() {
				first = at
			}
			latest = at
		}
	}
	if !latest.IsZero() {
		urgent := render.Urgency(t, due, now) >= render.UrgentScore
		if end, quiet := quietUntil(u, now); quiet && !(urgent && u.QuietHours.AllowUrgent) {
			a.AlertAt, a.FireAt = first, end
			p.sc.held.Inc()
			return tx.UpdateAlert(a)
		}
		if err := p.alertMail(u, t, due, latest, urgent); err != nil {
			return err
		}
		a.Covered = now
	}
	a.AlertAt, a.FireAt = time.Time{}, time.Time{}
	for _, at := range instants {
		if at.After(a.Covered) {
			a.AlertAt, a.FireAt = at, at
			break
		}
	}
	return tx.UpdateAlert(a)
}

// alertInstants returns the instants at which a user is mailed about a task
// due at due: one per lead time (the same list the VALARMs use) and the due
// instant itself, ascending. None for users whose alerts are VALARMs only.
func alertInstants(cfg *config.Config, u *config.User, src *config.Source, due time.Time) []time.Time {
	if u.Notify != config.NotifyMail && u.Notify != config.NotifyBoth {
		return nil
	}
	leads := cfg.LeadTimesFor(u, src)
	out := make([]time.Time, 0, len(leads)+1)
	for _, lead := range leads {
		out = append(out, due.Add(-lead))
	}
	out = append(out, due)
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return slices.CompactFunc(out, func(a, b time.Time) bool { return a.Equal(b) })
}

// alertMail writes the due-soon or overdue mail for the instant at.
func (p *firePass) alertMail(u *config.User, t *store.Task, due, at time.Time, urgent bool) error {
	ev, lead := render.MailOverdue, time.Duration(0)
	if at.Before(due) {
		ev, lead = render.MailDueSoon, due.Sub(at)
		if p.now.Sub(at) > catchUpGrace {
			// Late (downtime, quiet hours): say how long is actually left.
			lead = max(due.Sub(p.now).Truncate(time.Minute), time.Minute)
		}
	}
	in := render.MailInput{Event: ev, Task: t, User: u, Lead: lead, Urgent: urgent}
	if err := p.fill(&in); err != nil {
		return err
	}
	data, err := render.NotificationMail(in)
	if err != nil {
		return fmt.Errorf("render %s mail for %s: %w", ev, u.Name, err)
	}
	return p.append(u, t.Source, t.ID, render.MessageID(in), data, urgent, ev)
}

// fill sets the parts of a render.MailInput every scheduler mail shares.
func (p *firePass) fill(in *render.MailInput) error {
	seq, err := p.tx.Seq()
	if err != nil {
		return err
	}
	in.From, in.Host, in.Date, in.Seq = p.cfg.Mail.From, p.cfg.HTTP.PublicURL.Hostname(), p.now, seq
	return nil
}

func (p *firePass) append(u *config.User, source, taskID, msgID string, data []byte, urgent bool, ev render.MailEvent) error {
	var flags []string
	if urgent {
		flags = []string{`\Flagged`}
	}
	msg := &store.Message{User: u.Name, Mailbox: Inbox, Data: data, Flags: flags, InternalDate: p.now,
		MessageID: msgID, Source: source, TaskID: taskID}
	if err := appendToInbox(p.tx, p.inbox, msg); err != nil {
		return err
	}
	p.sc.s.metrics.Mails.WithLabelValues(string(ev)).Inc()
	return nil
}

// syncAlert keeps a user's alert schedule of t in step with the task, in the
// writer's transaction: armed while the task is open, has a due time and is
// visible to the user; a moved due time re-arms it; anything else disarms.
//
// A schedule it arms afresh is planned here too, as the fire pass would
// plan it: its FireAt is its first alert instant. Left to the scheduler
// (FireAt = now), every new task cost a second write transaction and fsync
// right after the webhook's, which took the single writer from the next
// webhook and was most of the scheduler's CPU under load.
func (w *writer) syncAlert(u *config.User, t *store.Task, visible bool) error {
	if !visible || !t.Open() || t.Due.IsZero() {
		return w.tx.DisarmAlert(u.Name, t.Source, t.ID)
	}
	// Armed and planned in one statement: a new schedule covers every
	// instant before this transaction's time, and its first alert instant
	// after that is when the scheduler must look at it (one due at this
	// very instant is FireAt = now: the fire pass sends it). No instant
	// left: FireAt stays zero. A schedule for the same due time is kept.
	now := w.tx.Now()
	a := store.Alert{User: u.Name, Source: t.Source, TaskID: t.ID, Due: t.Due, Covered: now.Add(-time.Nanosecond)}
	due := render.DueInstant(t.Due, render.UserLocation(u))
	for _, at := range alertInstants(w.cfg, u, w.cfg.Source(t.Source), due) {
		if at.After(a.Covered) {
			a.AlertAt, a.FireAt = at, at
			break
		}
	}
	_, err := w.tx.ArmPlannedAlert(&a)
	return err
}
