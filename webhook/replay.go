package webhook

import (
	"sync"
	"time"
)

// Bounds of the delivery record. GitHub lets an admin redeliver for three
// days, Jira and GitLab retry within hours, Linear's timestamp check closes
// its window after a minute; three days covers all of them. The count cap
// keeps memory bounded (about 100 bytes an entry) whatever the traffic.
const (
	deliveryWindow = 72 * time.Hour
	deliveryMax    = 100_000
)

// deliveryLog remembers the delivery ids handled recently, per source, so
// a redelivered or replayed request is answered 2xx without being applied
// again.
//
// It is in memory on purpose. After a restart a replay of an old delivery
// still cannot move a task back (ingest ignores records older than the
// stored one, and repeats of the stored state are no-ops); the only thing
// the record adds is refusing a repeat of the latest state after the task
// changed on a phone, and the tracker's own next change settles that. A
// durable table would cost a write per delivery for that corner case.
type deliveryLog struct {
	mu     sync.Mutex
	window time.Duration
	max    int
	at     map[string]time.Time
	order  []entry // insertion order, oldest first; a ring in spirit
	head   int     // first live index of order
}

type entry struct {
	key string
	at  time.Time
}

func newDeliveryLog(window time.Duration, max int) *deliveryLog {
	return &deliveryLog{window: window, max: max, at: map[string]time.Time{}}
}

func deliveryKey(source, id string) string { return source + "\x00" + id }

// seen reports whether source's delivery id was handled within the window.
func (l *deliveryLog) seen(source, id string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.expire(now)
	at, ok := l.at[deliveryKey(source, id)]
	return ok && now.Sub(at) < l.window
}

// add records a handled delivery. An empty id (the tracker sent none) is
// not recorded.
func (l *deliveryLog) add(source, id string, now time.Time) {
	if id == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	k := deliveryKey(source, id)
	if _, ok := l.at[k]; ok {
		return // concurrent copies both got through; ingest de-duplicated them
	}
	l.at[k] = now
	l.order = append(l.order, entry{k, now})
	l.expire(now)
}

// expire drops entries older than the window and the oldest beyond max,
// and compacts the queue once its dead prefix dominates.
func (l *deliveryLog) expire(now time.Time) {
	for l.head < len(l.order) {
		e := l.order[l.head]
		if len(l.at) <= l.max && now.Sub(e.at) < l.window {
			break
		}
		delete(l.at, e.key)
		l.order[l.head] = entry{}
		l.head++
	}
	if l.head > 1024 && l.head*2 > len(l.order) {
		l.order = append([]entry(nil), l.order[l.head:]...)
		l.head = 0
	}
}
