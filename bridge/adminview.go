package bridge

import (
	"context"
	"fmt"

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
