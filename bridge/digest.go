package bridge

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// digests writes the daily digest of every user who opted in and whose slot
// has come, and returns the next slot of any of them (zero if nobody takes
// a digest). Each slot is handled once: its local date is stored with the
// mail. After downtime only the latest missed slot is sent; a user seen for
// the first time starts with the next slot rather than one already past.
// digestBatch bounds the users whose digests one write transaction sends
// or whose first sighting it records.
const digestBatch = 100

func (sc *scheduler) digests(ctx context.Context, cfg *config.Config, now time.Time) (time.Time, error) {
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	// Most ticks find nothing to do: decide on one read of every user's
	// last digest date (one statement, not one per user: a tick with a
	// million digest users), and take the write lock only to send or to
	// record a first sighting.
	anyDigest := false
	for i := range cfg.Users {
		anyDigest = anyDigest || cfg.Users[i].Digest
	}
	sent := map[string]string{}
	if anyDigest {
		err := sc.s.st.Read(ctx, func(tx store.Tx) error {
			return tx.GetPrefix(kvDigestSent, func(k, v string) error {
				sent[k[len(kvDigestSent):]] = v
				return nil
			})
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("digests: read the last sent: %w", err)
		}
	}
	type due struct {
		u    *config.User
		slot time.Time
		day  string
	}
	var pending []due
	for i := range cfg.Users {
		u := &cfg.Users[i]
		if !u.Digest {
			continue
		}
		slot, day := digestSlot(u, now)
		last := sent[u.Name]
		if last != "" && last >= day { // dates in ISO form compare as strings
			earliest(nextDigestSlot(u, now))
			continue
		}
		if end, quiet := quietUntil(u, now); quiet && last != "" {
			earliest(end)
			continue
		}
		pending = append(pending, due{u, slot, day})
		earliest(nextDigestSlot(u, now))
	}
	// digestBatch users to a write transaction: a first start with a
	// million digest users records a million first sightings, and a slot
	// shared by everyone sends that many digests at once; one commit each
	// would hold the single writer from the webhooks for minutes.
	err := updateInBatches(ctx, sc.s.st, pending, digestBatch, func(d due) string { return d.u.Name }, func(tx store.Tx, d due) error {
		// Re-read inside the write transaction: the mark and the mail are
		// written together, so a slot is never sent twice.
		cur, err := tx.Get(kvDigestSent + d.u.Name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// First sighting: start with the next slot, not one past.
			return tx.Set(kvDigestSent+d.u.Name, d.day)
		case err != nil:
			return err
		case cur >= d.day:
			return nil
		}
		if err := sc.writeDigest(tx, cfg, d.u, d.slot, now); err != nil {
			return err
		}
		return tx.Set(kvDigestSent+d.u.Name, d.day)
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("digest of %w", err)
	}
	return next, nil
}

// writeDigest lists the user's open tasks due before the next slot (overdue
// ones included), most urgent first, in one mail; nothing is written when
// there is nothing to list.
func (sc *scheduler) writeDigest(tx store.Tx, cfg *config.Config, u *config.User, slot, now time.Time) error {
	loc := render.UserLocation(u)
	until := nextDigestSlot(u, slot)
	// The stored due time of an all-day task is midnight UTC, up to a day
	// away from the instant it means in the user's zone: read a day more and
	// decide on render.DueInstant.
	tasks, err := tx.AlertTasks(u.Name, until.Add(24*time.Hour), digestScan)
	if err != nil {
		return err
	}
	var list []*store.Task
	for i := range tasks {
		t := &tasks[i]
		if t.Open() && render.DueInstant(t.Due, loc).Before(until) {
			list = append(list, t)
		}
	}
	if len(list) == 0 {
		return nil
	}
	ranked := render.RankByUrgency(list, loc, now)
	in := render.DigestInput{User: u, Day: slot.In(loc), Until: until, Tasks: ranked, Truncated: len(tasks) == digestScan}
	if len(ranked) > digestLimit {
		in.Tasks, in.More = ranked[:digestLimit], len(ranked)-digestLimit
	}
	p := &firePass{sc: sc, tx: tx, cfg: cfg, now: now, inbox: map[string]bool{}}
	var mi render.MailInput
	if err := p.fill(&mi); err != nil {
		return err
	}
	in.From, in.Host, in.Date = mi.From, mi.Host, mi.Date
	data, err := render.DigestMail(in)
	if err != nil {
		return fmt.Errorf("render digest for %s: %w", u.Name, err)
	}
	return p.append(u, "", "", render.DigestMessageID(in), data, in.Urgent(), render.MailDigest)
}
