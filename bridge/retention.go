package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/store"
)

// retention keeps the store from growing for ever (config retention.*):
// INBOX mails older than retention.mail_days, mails that entered Trash more
// than retention.trash_days ago, and calendar objects and tasks deleted
// more than retention.tombstone_days ago are removed. Work is done in small
// batches, each its own transaction, so webhooks and IMAP sessions never
// wait long behind it; mails leave through store.Tx.Expunge, the same
// operation IMAP's EXPUNGE uses, so open sessions (iOS Mail too) see an
// ordinary EXPUNGE or VANISHED. Delivered callbacks are pruned by the
// callback worker (30 days).
type retention struct {
	s        *Service
	clock    clock.Clock
	batch    int
	interval time.Duration

	removed *prometheus.CounterVec
	runs    prometheus.Counter
	failed  prometheus.Counter
	lastRun prometheus.Gauge
	dur     prometheus.Histogram
}

// retentionOptions for newRetention. Zero values are fine.
type retentionOptions struct {
	// BatchSize is how many records one transaction removes; 0 means 200.
	BatchSize int
	// Interval between passes; 0 means one hour.
	Interval time.Duration
}

// retention kinds, the "kind" label of duebridge_retention_removed_total.
const (
	RetainInbox           = "inbox"
	RetainTrash           = "trash"
	RetainObjectTombstone = "object_tombstone"
	RetainTaskTombstone   = "task_tombstone"
)

// retentionBatches bounds the batches of one kind in one pass, so a first
// pass over a large backlog yields to the next pass (an hour later) instead
// of running for hours; 50 x 200 = 10,000 records per kind per pass.
const retentionBatches = 50

// newRetention builds the retention job and registers its metrics; it
// starts nothing.
func newRetention(s *Service, o retentionOptions) *retention {
	if o.BatchSize <= 0 {
		o.BatchSize = 200
	}
	if o.Interval <= 0 {
		o.Interval = time.Hour
	}
	r := &retention{s: s, clock: s.clock, batch: o.BatchSize, interval: o.Interval}
	r.removed = register(s, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_retention_removed_total",
		Help: "Records removed by retention, by kind: inbox and trash mails, calendar object and task tombstones.",
	}, []string{"kind"}))
	for _, k := range []string{RetainInbox, RetainTrash, RetainObjectTombstone, RetainTaskTombstone} {
		r.removed.WithLabelValues(k) // present at 0 from the start
	}
	r.runs = register(s, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duebridge_retention_runs_total", Help: "Retention passes completed.",
	}))
	r.failed = register(s, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duebridge_retention_failures_total", Help: "Retention passes that failed (store errors); the next pass retries.",
	}))
	r.lastRun = register(s, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "duebridge_retention_last_run_timestamp_seconds", Help: "When the last retention pass completed (Unix time).",
	}))
	r.dur = register(s, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "duebridge_retention_pass_seconds", Help: "Duration of one retention pass.",
		Buckets: []float64{.001, .01, .1, 1, 10, 60, 600},
	}))
	return r
}

// Run makes a pass at once and then every Interval until ctx is done.
func (r *retention) Run(ctx context.Context) error {
	timer := r.clock.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C():
		}
		if _, err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.s.log.Error("retention pass", "err", err)
		}
		timer.Reset(r.interval)
	}
}

// Removed counts what one pass removed, by kind.
type Removed map[string]int

// RunOnce makes one retention pass with the current config and returns
// what it removed. It must not be called concurrently.
func (r *retention) RunOnce(ctx context.Context) (Removed, error) {
	start := time.Now()
	cfg := r.s.Config().Retention
	now := r.clock.Now()
	out := Removed{}
	err := r.pass(ctx, now, cfg.MailDays, cfg.TrashDays, cfg.TombstoneDays, out)
	for k, n := range out {
		r.removed.WithLabelValues(k).Add(float64(n))
	}
	if err != nil {
		r.failed.Inc()
		return out, err
	}
	r.runs.Inc()
	r.lastRun.Set(float64(now.Unix()))
	r.dur.Observe(time.Since(start).Seconds())
	if len(out) > 0 {
		r.s.log.Info("retention pass", "removed", map[string]int(out))
	}
	return out, nil
}

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

func (r *retention) pass(ctx context.Context, now time.Time, mailDays, trashDays, tombDays int, out Removed) error {
	st := r.s.st
	if mailDays > 0 {
		err := r.expungeBatches(ctx, out, RetainInbox, func(tx store.Tx) ([]store.MessageRef, error) {
			return store.OldMessages(tx, Inbox, now.Add(-days(mailDays)), r.batch)
		})
		if err != nil {
			return err
		}
	}
	// Trash arrivals are noted even while trash_days is 0, so turning it
	// on later counts from when each mail really went to Trash.
	if err := st.Update(ctx, func(tx store.Tx) error { _, err := store.NoteTrash(tx); return err }); err != nil {
		return fmt.Errorf("retention: %w", err)
	}
	if trashDays > 0 {
		err := r.expungeBatches(ctx, out, RetainTrash, func(tx store.Tx) ([]store.MessageRef, error) {
			return store.OldTrash(tx, now.Add(-days(trashDays)), r.batch)
		})
		if err != nil {
			return err
		}
	}
	if tombDays > 0 {
		before := now.Add(-days(tombDays))
		for kind, prune := range map[string]func(store.Tx, time.Time, int) (int, error){
			RetainObjectTombstone: store.PruneObjectTombstones,
			RetainTaskTombstone:   store.PruneTaskTombstones,
		} {
			for range retentionBatches {
				var n int
				err := st.Update(ctx, func(tx store.Tx) error {
					var err error
					n, err = prune(tx, before, r.batch)
					return err
				})
				if err != nil {
					return fmt.Errorf("retention %s: %w", kind, err)
				}
				if n > 0 {
					out[kind] += n
				}
				if n < r.batch {
					break
				}
			}
		}
	}
	return nil
}

// expungeBatches finds a batch with find and expunges it, mailbox by
// mailbox, in one transaction, until a batch comes back short.
func (r *retention) expungeBatches(ctx context.Context, out Removed, kind string, find func(store.Tx) ([]store.MessageRef, error)) error {
	for range retentionBatches {
		var n int
		err := r.s.st.Update(ctx, func(tx store.Tx) error {
			refs, err := find(tx)
			if err != nil {
				return err
			}
			n = len(refs)
			type box struct{ user, name string }
			byBox := map[box][]uint32{}
			var order []box
			for _, m := range refs {
				b := box{m.User, m.Mailbox}
				if _, ok := byBox[b]; !ok {
					order = append(order, b)
				}
				byBox[b] = append(byBox[b], m.UID)
			}
			for _, b := range order {
				if err := tx.Expunge(b.user, b.name, byBox[b]); err != nil {
					return fmt.Errorf("expunge %s/%s: %w", b.user, b.name, err)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("retention %s: %w", kind, err)
		}
		if n > 0 {
			out[kind] += n
		}
		if n < r.batch {
			return nil
		}
	}
	return nil
}
