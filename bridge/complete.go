package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/duebridge/duebridge/store"
)

// CallbackBody is the JSON POSTed to a source's callback_url (contract,
// "Completion callback").
type CallbackBody struct {
	Source    string    `json:"source"`
	ID        string    `json:"id"`
	Status    string    `json:"status"` // done | open
	User      string    `json:"user"`
	ChangedAt time.Time `json:"changed_at"`
	EventID   string    `json:"event_id"`
}

// Complete records that user marked a task done (or not done) on a phone at
// when. See writer.complete.
func (s *Service) Complete(ctx context.Context, user, source, id string, done bool, when time.Time) error {
	cfg := s.Config()
	return s.st.Update(ctx, func(tx store.Tx) error {
		t, err := tx.Task(source, id)
		if err != nil {
			return fmt.Errorf("complete %s/%s: %w", source, id, err)
		}
		if t.Deleted || !slices.Contains(t.Assignees, user) {
			// Only an assignee may close a task; others are told it is not there.
			return fmt.Errorf("complete %s/%s for %s: %w", source, id, user, store.ErrNotFound)
		}
		return s.newWriter(tx, cfg).complete(user, t, done, when)
	})
}

// complete applies a completion (done) or un-completion from user's phone,
// inside the caller's transaction: the task's status changes for everyone,
// SEQUENCE rises, every assignee's objects are re-rendered (the other
// assignees get mail; the user who did it does not), and a callback to the
// task system is queued in the same transaction, so it is durable exactly
// when the change is. Repeating the current state is a no-op. The tracker
// stays in charge: its next newer update overrides this.
func (w *writer) complete(user string, t *store.Task, done bool, when time.Time) error {
	if t.Deleted || done == (t.Status == "done") || (!done && t.Status == "cancelled") {
		return nil
	}
	old := *t
	if when.IsZero() || when.After(w.tx.Now()) {
		when = w.tx.Now()
	}
	status := "open"
	t.CompletedBy, t.CompletedAt = "", time.Time{}
	if done {
		status = "done"
		t.CompletedBy, t.CompletedAt = user, when.UTC()
	}
	t.Status = status
	t.Sequence++
	if err := w.tx.PutTask(t); err != nil {
		return err
	}
	w.tx.Emit(store.Event{Kind: store.EventTask, Source: t.Source, TaskID: t.ID})
	if err := w.syncTask(&old, t, user); err != nil {
		return err
	}
	return w.queueCallback(user, t, status, when)
}

func (w *writer) queueCallback(user string, t *store.Task, status string, when time.Time) error {
	src := w.cfg.Source(t.Source)
	if src == nil || (src.CallbackURL == nil && (src.APIToken == "" || src.Kind == "generic")) {
		return nil // the source did not ask to hear back, by callback or through its API
	}
	eid := make([]byte, 16)
	rand.Read(eid)
	body, err := json.Marshal(CallbackBody{Source: t.Source, ID: t.ID, Status: status, User: user,
		ChangedAt: when.UTC().Truncate(time.Second), EventID: hex.EncodeToString(eid)})
	if err != nil {
		return err
	}
	return w.tx.EnqueueCallback(&store.Callback{EventID: hex.EncodeToString(eid), Source: t.Source, TaskID: t.ID, Body: body})
}

var errNoCallbackURL = errors.New("source has no callback_url")
