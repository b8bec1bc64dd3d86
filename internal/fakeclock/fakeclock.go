// Package fakeclock is a clock.Clock on a virtual time line, for tests:
// time stands still until Advance or Set moves it, and timers fire when it
// passes their deadline. It lives outside production code on purpose; the
// import-rule test lets only tests import it.
package fakeclock

import (
	"sort"
	"sync"
	"time"

	"github.com/duebridge/duebridge/internal/clock"
)

// Clock is a clock.Clock for tests: time stands still until Advance or Set
// moves it, and timers fire when it passes their deadline. Pass its Now as
// the service's and the store's clock so everything shares virtual time.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
	// changed is closed and replaced whenever a timer is armed or stopped,
	// so WaitForTimers can block without polling.
	changed chan struct{}
}

// New returns a fake clock reading t.
func New(t time.Time) *Clock {
	return &Clock{now: t, timers: map[*fakeTimer]struct{}{}, changed: make(chan struct{})}
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves time forward by d and fires the timers that became due, in
// deadline order.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves time to t (never backwards) and fires the timers that became due.
func (c *Clock) Set(t time.Time) {
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

func (c *Clock) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Timers returns the number of armed timers.
func (c *Clock) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// WaitForTimers blocks until at least n timers are armed or the timeout
// (real time) passes, and reports whether they were. A test calls it to know
// that a loop has finished its pass and is waiting before it advances time.
func (c *Clock) WaitForTimers(n int, timeout time.Duration) bool {
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
func (c *Clock) NewTimer(d time.Duration) clock.Timer {
	ft := &fakeTimer{clock: c, c: make(chan time.Time, 1)}
	ft.Reset(d)
	return ft
}

// After returns a channel that receives the fake time once d has passed.
func (c *Clock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }

type fakeTimer struct {
	clock *Clock
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
