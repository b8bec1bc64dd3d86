package bridge

import (
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
)

// This file holds the deadline engine's time handling: the clock seam that
// lets tests run in virtual time (the fake lives in internal/fakeclock, out
// of production code), and every calendar computation in a user's
// zone (quiet hours, digest times). render.DueInstant, which defines what an all-day
// due date means, lives with the rendering in ical.go because the VALARMs and
// the reminder mails must share it.

// Clock is the service's one source of time (Options.Clock): Service.Now,
// and the timers of the scheduler, the retention job and the callback worker
// all read it, so a test that swaps it moves everything together.
type Clock interface {
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now.
	NewTimer(d time.Duration) Timer
	// After is NewTimer(d).C() for one-off waits.
	After(d time.Duration) <-chan time.Time
}

// Timer is the part of *time.Timer a loop needs.
type Timer interface {
	C() <-chan time.Time
	// Stop prevents the timer from firing; it reports whether it was armed.
	Stop() bool
	// Reset re-arms the timer to fire d from now. Since Go 1.23 a reset
	// timer never delivers a stale value, so no draining is needed.
	Reset(d time.Duration) bool
}

// SystemClock returns a Clock that reads now (time.Now if nil) and waits with
// real timers: the wall clock, or a shifted wall clock for tests that move
// the date but still wait in real time. Virtual time is internal/fakeclock.
func SystemClock(now func() time.Time) Clock {
	if now == nil {
		now = time.Now
	}
	return systemClock{now: now}
}

type systemClock struct{ now func() time.Time }

func (c systemClock) Now() time.Time { return c.now() }

func (c systemClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

func (c systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// clockOn returns the instant of a local time of day (an offset from local
// midnight, as the config stores HH:MM) on the date of day in loc. It goes
// through time.Date, not midnight plus a duration, so 07:00 stays 07:00 on
// the days daylight saving time starts or ends.
func clockOn(day time.Time, offset time.Duration, loc *time.Location) time.Time {
	y, m, d := day.In(loc).Date()
	return time.Date(y, m, d, int(offset/time.Hour), int(offset%time.Hour/time.Minute), 0, 0, loc)
}

// timeOfDay is how far t is into its local day, read from the wall clock.
func timeOfDay(t time.Time, loc *time.Location) time.Duration {
	h, m, s := t.In(loc).Clock()
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second
}

// QuietUntil reports whether now falls inside the user's quiet hours and, if
// so, when they end. A window whose end is before its start wraps midnight
// (22:00-07:00).
func QuietUntil(u *config.User, now time.Time) (time.Time, bool) {
	if u == nil || u.QuietHours == nil {
		return time.Time{}, false
	}
	q, loc := u.QuietHours, render.UserLocation(u)
	tod := timeOfDay(now, loc)
	switch {
	case q.Start < q.End && tod >= q.Start && tod < q.End:
		return clockOn(now, q.End, loc), true
	case q.Start > q.End && tod >= q.Start:
		return clockOn(now.In(loc).AddDate(0, 0, 1), q.End, loc), true
	case q.Start > q.End && tod < q.End:
		return clockOn(now, q.End, loc), true
	}
	return time.Time{}, false
}

// digestSlot returns the most recent time at or before now at which the
// user's daily digest was due, and that slot's local date (the key that
// makes each day's digest go out once).
func digestSlot(u *config.User, now time.Time) (time.Time, string) {
	loc := render.UserLocation(u)
	slot := clockOn(now, u.DigestAt, loc)
	if slot.After(now) {
		slot = clockOn(now.In(loc).AddDate(0, 0, -1), u.DigestAt, loc)
	}
	return slot, slot.In(loc).Format(time.DateOnly)
}

// nextDigestSlot returns the first digest time after now.
func nextDigestSlot(u *config.User, now time.Time) time.Time {
	loc := render.UserLocation(u)
	slot := clockOn(now, u.DigestAt, loc)
	if !slot.After(now) {
		slot = clockOn(now.In(loc).AddDate(0, 0, 1), u.DigestAt, loc)
	}
	return slot
}
