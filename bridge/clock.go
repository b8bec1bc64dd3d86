package bridge

import (
	"sort"
	"sync"
	"time"

	"github.com/duebridge/duebridge/config"
)

// This file holds the deadline engine's time handling: the clock seam that
// lets tests run in virtual time, and every calendar computation in a user's
// zone (quiet hours, digest times). DueInstant, which defines what an all-day
// due date means, lives with the rendering in ical.go because the VALARMs and
// the reminder mails must share it.

// Clock is what the scheduler and the callback worker know of time.
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

// SystemClock returns a Clock that reads now (time.Now if nil) and uses real
// timers. A service built with an injected Options.Now still waits in real
// time with it; tests that want virtual time use a FakeClock for both.
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

// FakeClock is a Clock for tests: time stands still until Advance or Set
// moves it, and timers fire when it passes their deadline. Pass its Now as
// the service's and the store's clock so everything shares virtual time.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
	// changed is closed and replaced whenever a timer is armed or stopped,
	// so WaitForTimers can block without polling.
	changed chan struct{}
}

// NewFakeClock returns a fake clock reading t.
func NewFakeClock(t time.Time) *FakeClock {
	return &FakeClock{now: t, timers: map[*fakeTimer]struct{}{}, changed: make(chan struct{})}
}

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves time forward by d and fires the timers that became due, in
// deadline order.
func (c *FakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves time to t (never backwards) and fires the timers that became due.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	if t.After(c.now) {
		c.now = t
	}
	var due []*fakeTimer
	for ft := range c.timers {
		if !ft.at.After(c.now) {
			due = append(due, ft)
		}
	}
	sort.Slice(due, func(i, j int) bool { return due[i].at.Before(due[j].at) })
	for _, ft := range due {
		delete(c.timers, ft)
		select {
		case ft.c <- c.now:
		default: // a value is already waiting: the reader sees one wake-up
		}
	}
	c.notifyLocked()
	c.mu.Unlock()
}

func (c *FakeClock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Timers returns the number of armed timers.
func (c *FakeClock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitForTimers blocks until at least n timers are armed or the timeout
// (real time) passes, and reports whether they were. A test calls it to know
// that a loop has finished its pass and is waiting before it advances time.
func (c *FakeClock) WaitForTimers(n int, timeout time.Duration) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		ok, ch := len(c.timers) >= n, c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false
		}
	}
}

// NewTimer returns a timer on the fake time line.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	ft := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	ft.Reset(d)
	return ft
}

// After returns a channel that receives the fake time once d has passed.
func (c *FakeClock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }

type fakeTimer struct {
	clock *FakeClock
	at    time.Time
	c     chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	_, armed := c.timers[t]
	delete(c.timers, t)
	c.notifyLocked()
	return armed
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	c := t.clock
	c.mu.Lock()
	_, armed := c.timers[t]
	// As with real timers since Go 1.23: no stale value after a Reset.
	select {
	case <-t.c:
	default:
	}
	t.at = c.now.Add(d)
	if d <= 0 {
		delete(c.timers, t)
		t.c <- c.now
	} else {
		c.timers[t] = struct{}{}
	}
	c.notifyLocked()
	c.mu.Unlock()
	return armed
}

// userLocation is the zone of a user's local times (UTC if unset).
func userLocation(u *config.User) *time.Location {
	if u == nil || u.Location == nil {
		return time.UTC
	}
	return u.Location
}

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
	q, loc := u.QuietHours, userLocation(u)
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
	loc := userLocation(u)
	slot := clockOn(now, u.DigestAt, loc)
	if slot.After(now) {
		slot = clockOn(now.In(loc).AddDate(0, 0, -1), u.DigestAt, loc)
	}
	return slot, slot.In(loc).Format(time.DateOnly)
}

// nextDigestSlot returns the first digest time after now.
func nextDigestSlot(u *config.User, now time.Time) time.Time {
	loc := userLocation(u)
	slot := clockOn(now, u.DigestAt, loc)
	if !slot.After(now) {
		slot = clockOn(now.In(loc).AddDate(0, 0, 1), u.DigestAt, loc)
	}
	return slot
}
