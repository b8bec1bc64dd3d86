// Package clock is the one Clock type: the interface the service, the store
// and the background loops read time and wait through, and the system
// implementation. The virtual-time fake for tests is internal/fakeclock.
package clock

import "time"

// Clock is duebridge's one source of time, made once (in serve, or by a
// test) and handed to bridge.Options.Clock: the service reads it, hands it
// to the store it opens for transaction timestamps, and its background
// loops wait on its timers, so a test that swaps it moves everything
// together.
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

// System returns a Clock that reads now (time.Now if nil) and waits with
// real timers: the wall clock, or a shifted wall clock for tests that move
// the date but still wait in real time. Virtual time is internal/fakeclock.
func System(now func() time.Time) Clock {
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
