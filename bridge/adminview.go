package bridge

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/duebridge/duebridge/store"
)

// Queues are the depths an operator checks first when phones or trackers
// fall behind: read-only counts for the admin page.
type Queues struct {
	CallbacksPending int   // completion callbacks waiting for delivery
	CallbacksFailing int   // of those, the ones that failed at least once
	Alerts           int64 // alert schedules: open tasks with a due time
	AlertsArmed      int64 // of those, with an alert mail still to come
}

// Queues reads the callback outbox and alert schedule counts in one read
// transaction (the same counts the duebridge_callbacks_* and
// duebridge_alerts* gauges report).
func (s *Service) Queues(ctx context.Context) (Queues, error) {
	var q Queues
	err := s.st.View(ctx, func(tx store.Tx) error {
		var err error
		if q.CallbacksPending, q.CallbacksFailing, err = tx.OutboxCounts(); err != nil {
			return fmt.Errorf("counting the callback outbox: %w", err)
		}
		if q.Alerts, q.AlertsArmed, err = tx.CountAlerts(); err != nil {
			return fmt.Errorf("counting alert schedules: %w", err)
		}
		return nil
	})
	return q, err
}

// SourceStatus is one source on the admin page: what it delivered, what
// was refused, and its completion callbacks.
type SourceStatus struct {
	Name       string
	Configured bool      // false: only queued callbacks remain of it
	LastChange time.Time // when a webhook delivery last changed a task; zero: never
	// Webhook task records since the start, by result (the
	// duebridge_webhook_tasks_total counters).
	Accepted, Ignored, Rejected float64
	Callbacks                   store.SourceOutbox
}

// Sources reads every source's status: the configured ones in config
// order, then any that only have callbacks left. The store part is one
// read transaction.
func (s *Service) Sources(ctx context.Context) ([]SourceStatus, error) {
	var last map[string]time.Time
	var queues []store.SourceOutbox
	err := s.st.View(ctx, func(tx store.Tx) error {
		var err error
		if last, err = tx.LastChanges(); err != nil {
			return err
		}
		queues, err = tx.OutboxBySource()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading the sources' status: %w", err)
	}
	var out []SourceStatus
	idx := map[string]int{}
	for _, src := range s.Config().Sources {
		idx[src.Name] = len(out)
		out = append(out, SourceStatus{Name: src.Name, Configured: true, LastChange: last[src.Name]})
	}
	for _, q := range queues {
		i, ok := idx[q.Source]
		if !ok {
			i = len(out)
			idx[q.Source] = i
			out = append(out, SourceStatus{Name: q.Source, LastChange: last[q.Source]})
		}
		out[i].Callbacks = q
	}
	// Collect reads the existing series only; WithLabelValues would
	// create empty ones.
	ch := make(chan prometheus.Metric, 16)
	go func() { s.metrics.WebhookTasks.Collect(ch); close(ch) }()
	for m := range ch {
		var d dto.Metric
		if m.Write(&d) != nil {
			continue
		}
		var src, result string
		for _, l := range d.GetLabel() {
			switch l.GetName() {
			case "source":
				src = l.GetValue()
			case "result":
				result = l.GetValue()
			}
		}
		i, ok := idx[src]
		if !ok {
			continue
		}
		switch v := d.GetCounter().GetValue(); result {
		case "accepted":
			out[i].Accepted += v
		case "ignored":
			out[i].Ignored += v
		case "rejected":
			out[i].Rejected += v
		}
	}
	return out, nil
}

// Lockout is one login lock-out in force: of a user name or of a client
// address (the host part the guard keys on).
type Lockout struct {
	User   string // set for a user's lock
	Client string // set for an address's lock
	Until  time.Time
}

// maxLockoutsShown bounds the snapshot: in a storm of distinct names the
// page shows the first ones and the count of all.
const maxLockoutsShown = 200

// Lockouts returns the lock-outs this process holds now, soonest-ending
// last (the newest first), at most maxLockoutsShown of them, and how many
// there are in all. With a store shared by replicas (PostgreSQL), locks
// that only another replica's records hold are not listed: each replica's
// page shows its own.
func (s *Service) Lockouts() ([]Lockout, int) {
	now := s.clock.Now()
	g := s.auth.guard
	g.mu.Lock()
	var out []Lockout
	for k, fl := range g.keys {
		if !now.Before(fl.lockedUntil) {
			continue
		}
		l := Lockout{Until: fl.lockedUntil}
		switch {
		case strings.HasPrefix(k, "u\x00"):
			l.User = k[2:]
		case strings.HasPrefix(k, "c\x00"):
			l.Client = k[2:]
		default:
			continue
		}
		out = append(out, l)
	}
	g.mu.Unlock()
	slices.SortFunc(out, func(a, b Lockout) int {
		return cmp.Or(b.Until.Compare(a.Until), cmp.Compare(a.User, b.User), cmp.Compare(a.Client, b.Client))
	})
	n := len(out)
	if n > maxLockoutsShown {
		out = out[:maxLockoutsShown]
	}
	return out, n
}
