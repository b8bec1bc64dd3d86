package bridge

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/store"
)

// hub fans committed store events out to in-process subscribers (IMAP IDLE
// sessions, CalDAV sync waiters, the scheduler). Delivery never blocks the
// committing writer: each subscriber has a small buffer, and a subscriber
// that falls behind gets a Lagged mark instead of events, after which it must
// re-read the store. Events only say where to look.
//
// A store.EventResync (the PostgreSQL listener reconnected, or a peer's
// announcement was too large to send) reaches every subscriber: each re-reads
// from its own position (IMAP sessions from their MODSEQ, the device loop
// from its place in the revocation log, the scheduler and callback worker
// from the whole schedule), which replays whatever the gap hid.
type hub struct {
	mu   sync.Mutex
	subs map[*subscription]struct{}
	// resyncs counts resyncs by reason (store.Resync*), for the metric.
	resyncs [2]atomic.Uint64
}

// subscription receives events for one user ("" = all users).
type subscription struct {
	hub  *hub
	user string
	kind store.EventKind // "" = all kinds
	C    chan store.Event
	// lagged is set when events were dropped because C was full.
	lagMu  sync.Mutex
	lagged bool
}

// newHub returns an empty hub.
func newHub() *hub { return &hub{subs: map[*subscription]struct{}{}} }

// Subscribe returns a subscription to events of user (all users if "") and
// kind (all kinds if ""). Call Close when done.
func (h *hub) Subscribe(user string, kind store.EventKind) *subscription {
	s := &subscription{hub: h, user: user, kind: kind, C: make(chan store.Event, 64)}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	return s
}

// Close ends the subscription. C is not closed (a publisher may race).
func (s *subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
}

// Lagged reports (and clears) whether events were dropped since the last call.
func (s *subscription) Lagged() bool {
	s.lagMu.Lock()
	defer s.lagMu.Unlock()
	l := s.lagged
	s.lagged = false
	return l
}

// register adds the hub's metric to s's registry.
func (h *hub) register(s *Service) {
	for i, reason := range []string{store.ResyncReconnect, store.ResyncOversized} {
		register(s, prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "duebridge_event_resyncs_total",
			Help:        "Times every subscriber re-read the store because other processes' events may have been missed: the PostgreSQL listener reconnected, or an announcement was too large for NOTIFY.",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(h.resyncs[i].Load()) }))
	}
}

// Publish delivers events, de-duplicated, to matching subscribers.
func (h *hub) Publish(events []store.Event) {
	events = dedupe(events)
	for _, e := range events {
		if e.Kind == store.EventResync {
			i := 0
			if e.Name == store.ResyncOversized {
				i = 1
			}
			h.resyncs[i].Add(1)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		for _, e := range events {
			if e.Kind == store.EventResync {
				// Anything may have changed: mark every subscriber lagged
				// (it must re-read) and wake it with the event itself.
				s.lagMu.Lock()
				s.lagged = true
				s.lagMu.Unlock()
			} else if (s.user != "" && s.user != e.User) || (s.kind != "" && s.kind != e.Kind) {
				continue
			}
			select {
			case s.C <- e:
			default:
				s.lagMu.Lock()
				s.lagged = true
				s.lagMu.Unlock()
			}
		}
	}
}

func dedupe(events []store.Event) []store.Event {
	if len(events) < 2 {
		return events
	}
	type key struct {
		kind         store.EventKind
		user, name   string
		source, task string
	}
	seen := make(map[key]bool, len(events))
	out := events[:0:0]
	for _, e := range events {
		k := key{e.Kind, e.User, e.Name, e.Source, e.TaskID}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	return out
}
