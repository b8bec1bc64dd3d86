package tlsutil

import (
	"sync"
	"sync/atomic"
	"time"
)

// fileCheck spaces out the checks of a file that rarely changes (the
// certificate pair, the ticket key file): at most one per interval, made
// by whichever handshake comes first; interval < 0 never checks by itself.
type fileCheck struct {
	interval  time.Duration
	now       func() time.Time
	lastCheck atomic.Int64 // unix nanoseconds of the last check started
}

// lockDue takes mu for a check that is due and reports true; it reports
// false, without mu, when none is due or another caller is checking: the
// other handshakes go on with what they have instead of queueing behind
// file I/O.
func (c *fileCheck) lockDue(mu *sync.Mutex) bool {
	if c.interval < 0 {
		return false
	}
	now := c.now().UnixNano()
	if now-c.lastCheck.Load() < int64(c.interval) {
		return false
	}
	if !mu.TryLock() {
		return false
	}
	if now-c.lastCheck.Load() < int64(c.interval) {
		mu.Unlock()
		return false
	}
	c.lastCheck.Store(now)
	return true
}

// started records that a check starts now (at load, or forced).
func (c *fileCheck) started() { c.lastCheck.Store(c.now().UnixNano()) }
