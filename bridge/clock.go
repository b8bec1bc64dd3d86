package bridge

import (
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
)

// This file holds the calendar computations in a user's zone (quiet
// hours, digest times). The service's clock is internal/clock's Clock
// (Options.Clock); render.DueInstant, which defines what an all-day due
// date means, lives with the rendering because the VALARMs and the reminder
// mails must share it.

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

// quietUntil reports whether now falls inside the user's quiet hours and, if
// so, when they end. A window whose end is before its start wraps midnight
// (22:00-07:00).
func quietUntil(u *config.User, now time.Time) (time.Time, bool) {
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
