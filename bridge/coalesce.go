package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// Mail coalescing. Ticking a reminder on and off on a phone flips the task's
// status each time, and each flip used to mail every other assignee. Instead
// a done/reopened mail caused by a phone waits mail.coalesce_window after the
// first flip; the scheduler then writes one mail with the task's state at
// that moment, or none if the state is back where it began.
//
// The waiting mails are kept in the store (one kv value, written in the
// completion's own transaction), and the scheduler removes an entry in the
// transaction that writes its mail: a restart neither loses nor repeats one.
// All writes are serialized by the store, so read-modify-write of the one
// value is safe; the list holds only the last few minutes of flips.

// kvFlips is the store key of the waiting flip mails (JSON []pendingFlip).
const kvFlips = "mail.flips"

// pendingFlip is one user's waiting done/reopened mail about one task.
type pendingFlip struct {
	User   string `json:"user"`
	Source string `json:"source"`
	TaskID string `json:"task"`
	// WasDone is the task's state before the first flip of the window.
	WasDone bool      `json:"was_done"`
	At      time.Time `json:"at"` // when the mail is written
}

func (p pendingFlip) is(user, source, id string) bool {
	return p.User == user && p.Source == source && p.TaskID == id
}

func loadFlips(tx store.Tx) ([]pendingFlip, error) {
	v, err := tx.Get(kvFlips)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read waiting flip mails: %w", err)
	}
	return decodeFlips(v)
}

// decodeFlips decodes the stored waiting flip mails ("": none).
func decodeFlips(v string) ([]pendingFlip, error) {
	if v == "" {
		return nil, nil
	}
	var out []pendingFlip
	if err := json.Unmarshal([]byte(v), &out); err != nil {
		return nil, fmt.Errorf("decode waiting flip mails: %w", err)
	}
	return out, nil
}

func saveFlips(tx store.Tx, flips []pendingFlip) error {
	b, err := json.Marshal(flips)
	if err != nil {
		return err
	}
	if len(flips) == 0 {
		b = nil
	}
	return tx.Set(kvFlips, string(b))
}

// coalesces reports whether the mail ev about a change made by actor waits
// for the window instead of going out now.
func (w *writer) coalesces(ev render.MailEvent, actor string) bool {
	return actor != "" && (ev == render.MailDone || ev == render.MailReopened) && w.cfg.Mail.CoalesceWindow > 0
}

// deferFlip records (or keeps) the waiting mail of u about t, whose status
// changed from old's.
func (w *writer) deferFlip(u *config.User, t, old *store.Task) error {
	flips, err := loadFlips(w.tx)
	if err != nil {
		return err
	}
	if slices.ContainsFunc(flips, func(p pendingFlip) bool { return p.is(u.Name, t.Source, t.ID) }) {
		return nil // the window's first flip set the state to compare with and the time
	}
	flips = append(flips, pendingFlip{User: u.Name, Source: t.Source, TaskID: t.ID,
		WasDone: old.Status == "done", At: w.tx.Now().Add(w.cfg.Mail.CoalesceWindow).UTC()})
	if err := saveFlips(w.tx, flips); err != nil {
		return err
	}
	w.noFlips = false
	// Wake the scheduler so it plans the delivery.
	w.tx.Emit(store.Event{Kind: store.EventAlert})
	return nil
}

// dropFlip forgets u's waiting mail about t: a mail written now about the
// task states its current state, so the waiting one has nothing to add.
func (w *writer) dropFlip(user string, t *store.Task) error {
	if w.noFlips {
		return nil // the common case: one read per transaction
	}
	flips, err := loadFlips(w.tx)
	if err != nil {
		return err
	}
	n := len(flips)
	if n == 0 {
		w.noFlips = true
		return nil
	}
	if flips = slices.DeleteFunc(flips, func(p pendingFlip) bool { return p.is(user, t.Source, t.ID) }); len(flips) == n {
		return nil
	}
	return saveFlips(w.tx, flips)
}

// deliverFlips writes the waiting flip mails whose time has come, in one
// transaction, and returns when the next one is due (zero if none waits).
func (sc *scheduler) deliverFlips(ctx context.Context, cfg *config.Config, now time.Time) (time.Time, error) {
	var next time.Time
	var unsent int
	// Read first, as fireBatch does: write only when a flip mail is due.
	var due bool
	if err := sc.s.st.View(ctx, func(tx store.Tx) error {
		flips, err := loadFlips(tx)
		for _, p := range flips {
			if !p.At.After(now) {
				due = true
			} else if next.IsZero() || p.At.Before(next) {
				next = p.At
			}
		}
		return err
	}); err != nil {
		return time.Time{}, fmt.Errorf("deliver coalesced mails: %w", err)
	}
	if !due {
		return next, nil
	}
	err := sc.s.st.Update(ctx, func(tx store.Tx) error {
		next, unsent = time.Time{}, 0 // a retried transaction starts again
		flips, err := loadFlips(tx)
		if err != nil || len(flips) == 0 {
			return err
		}
		w := sc.s.newWriter(tx, cfg)
		var kept []pendingFlip
		for _, p := range flips {
			if p.At.After(now) {
				kept = append(kept, p)
				if next.IsZero() || p.At.Before(next) {
					next = p.At
				}
				continue
			}
			sent, err := w.flipMail(p)
			if err != nil {
				return err
			}
			if !sent {
				unsent++
			}
		}
		if len(kept) == len(flips) {
			return nil
		}
		return saveFlips(tx, kept)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("deliver coalesced mails: %w", err)
	}
	sc.flipsUnsent.Add(float64(unsent))
	return next, nil
}

// flipMail writes the one mail of a finished window: about the state the
// task is in now, if that differs from the state before the window. It
// reports whether it wrote one.
func (w *writer) flipMail(p pendingFlip) (bool, error) {
	u := w.cfg.User(p.User)
	t, err := w.tx.Task(p.Source, p.TaskID)
	if errors.Is(err, store.ErrNotFound) || u == nil {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	done := t.Status == "done"
	if t.Deleted || !slices.Contains(t.Assignees, u.Name) || done == p.WasDone ||
		(t.Status != "done" && !t.Open()) {
		return false, nil // gone, unassigned, back as it was, or cancelled (mailed as such)
	}
	ev := render.MailReopened
	if done {
		ev = render.MailDone
	}
	return true, w.notify(u, ev, t, nil)
}
