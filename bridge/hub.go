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
	mu sync.Mutex
	// Subscribers by the user they follow, and those following every user
	// (user ""): a commit's events reach the few sessions of the users they
	// name without a walk over every open IDLE connection (100,000 on a
	// node), which the committing writer would wait for.
	byUser map[string]map[*subscription]struct{}
	all    map[*subscription]struct{}
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
func newHub() *hub {
	return &hub{byUser: map[string]map[*subscription]struct{}{}, all: map[*subscription]struct{}{}}
}

// Subscribe returns a subscription to events of user (all users if "") and
// kind (all kinds if ""). Call Close when done.
func (h *hub) Subscribe(user string, kind store.EventKind) *subscription {
	s := &subscription{hub: h, user: user, kind: kind, C: make(chan store.Event, 64)}
	h.mu.Lock()
	if user == "" {
		h.all[s] = struct{}{}
	} else {
		set := h.byUser[user]
		if set == nil {
			set = map[*subscription]struct{}{}
			h.byUser[user] = set
		}
		set[s] = struct{}{}
	}
	h.mu.Unlock()
	return s
}

// Close ends the subscription. C is not closed (a publisher may race).
func (s *subscription) Close() {
	h := s.hub
	h.mu.Lock()
	if s.user == "" {
		delete(h.all, s)
	} else if set := h.byUser[s.user]; set != nil {
		delete(set, s)
		if len(set) == 0 {
			delete(h.byUser, s.user)
		}
	}
	h.mu.Unlock()
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
	// Events outer, subscribers inner: each subscriber still gets its
	// events in commit order.
	for _, e := range events {
		if e.Kind == store.EventResync {
			// Anything may have changed: mark every subscriber lagged (it
			// must re-read) and wake it with the event itself.
			for s := range h.all {
				s.resync(e)
			}
			for _, set := range h.byUser {
				for s := range set {
					s.resync(e)
				}
			}
			continue
		}
		for s := range h.all {
			s.deliver(e)
		}
		if e.User != "" {
			for s := range h.byUser[e.User] {
				s.deliver(e)
			}
		}
	}
}

// deliver sends e if s follows its kind, or marks s lagged when its buffer
// is full; the hub's lock is held.
func (s *subscription) deliver(e store.Event) {
	if s.kind != "" && s.kind != e.Kind {
		return
	}
	select {
	case s.C <- e:
	default:
		s.markLagged()
	}
}

// resync marks s lagged and wakes it with e; the hub's lock is held.
func (s *subscription) resync(e store.Event) {
	s.markLagged()
	select {
	case s.C <- e:
	default:
	}
}

func (s *subscription) markLagged() {
	s.lagMu.Lock()
	s.lagged = true
	s.lagMu.Unlock()
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
