// Package bridge is duebridge's core: the rules that hold whatever the
// protocol — ingesting task updates, completions and edits from phones,
// authentication and device passwords, the change hub, and the background
// loops (deadline scheduler, retention, completion callbacks) that
// Service.Run runs. Rendering is package render; password formats are
// internal/password. Each protocol package declares the narrow interface it
// needs and *Service implements it (calendar.Backend, imapserver.Backend,
// webhook.Ingester, setup.Core...); only bridge writes to the store, which
// New opens with the service's clock and hub and nothing else hands out.
package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Options for New. Zero values are fine.
type Options struct {
	// Logger; if nil, slog.Default() is used.
	Logger *slog.Logger
	// Clock is the one clock of the service: Now, the store's timestamps
	// (New hands it to the store it opens) and the timers of the background
	// loops Run starts. If nil, the wall clock. Tests pass
	// internal/fakeclock to run everything in virtual time.
	Clock clock.Clock
	// Registry receives the core's collectors and those of the background
	// loops; adapters register theirs on Registry(). If nil, a new registry
	// with the Go and process collectors.
	Registry *prometheus.Registry

	// AlertBatch is how many alert schedules one scheduler transaction
	// handles; 0 means 256.
	AlertBatch int
	// AlertMaxSleep bounds how long the scheduler waits between ticks, which
	// is how soon a config reload takes effect; 0 means one minute.
	AlertMaxSleep time.Duration
	// RetentionBatch is how many records one retention transaction removes;
	// 0 means 200.
	RetentionBatch int
	// RetentionInterval is the time between retention passes; 0 means one
	// hour.
	RetentionInterval time.Duration
	// CallbackClient sends completion callbacks; if nil, one with a 15s
	// timeout.
	CallbackClient *http.Client
	// Tracker, if set, is offered every completion first, to close or
	// reopen the issue through the task system's own API; if nil, only the
	// generic callback is sent.
	Tracker TrackerFunc
}

// Service is the core shared by all adapters.
type Service struct {
	st      store.Store
	hub     *hub
	cfg     atomic.Pointer[config.Config]
	log     *slog.Logger
	clock   clock.Clock
	auth    *authenticator
	devices *devices
	metrics *coreMetrics
	ingests ingestGroup // group commit of concurrent ingests (ingest.go)
	// rerenderMu serialises the re-renders of the store's objects: the
	// start's and each reload's (rerender.go).
	rerenderMu sync.Mutex

	// The background loops Run starts.
	sched     *scheduler
	ret       *retention
	callbacks *callbackWorker
}

// OpenStore opens the store the service works on, with the options New
// gives it: commits are published to the service's subscribers and stamped
// with the service's clock. The caller adds what is its own (a Logger),
// keeps the store and closes it after the service is done with it.
type OpenStore func(store.Options) (store.Store, error)

// New opens the store with open and builds the service over it; it starts
// nothing (see Run).
func New(open OpenStore, cfg *config.Config, o Options) (*Service, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = clock.System(nil)
	}
	s := &Service{hub: newHub(), log: o.Logger, clock: o.Clock, metrics: newMetrics(o.Registry)}
	s.hub.register(s)
	st, err := open(store.Options{OnCommit: s.hub.Publish, Clock: s.clock,
		WALRestartBytes: int64(cfg.Limits.SQLiteWALMB) << 20})
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.registerWALMetrics(st)
	s.st = st
	s.cfg.Store(cfg)
	s.devices = newDevices(s)
	s.auth = newAuthenticator(s)
	s.sched = newScheduler(s, schedulerOptions{BatchSize: o.AlertBatch, MaxSleep: o.AlertMaxSleep})
	s.ret = newRetention(s, retentionOptions{BatchSize: o.RetentionBatch, Interval: o.RetentionInterval})
	s.callbacks = newCallbackWorker(s, callbackOptions{Client: o.CallbackClient, Tracker: o.Tracker})
	return s, nil
}

// Run runs the service's background loops until ctx is done: the deadline
// scheduler, retention, completion callbacks and device-password upkeep.
// The first loop to fail ends the others; Run returns that error, or nil
// once ctx is done.
func (s *Service) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	loops := []struct {
		name string
		run  func(context.Context) error
	}{
		{"scheduler", s.sched.Run},
		{"retention", s.ret.Run},
		{"callbacks", s.callbacks.Run},
		{"devices", s.runDevices},
		// The refusal plan of the config started with, made before the
		// first cold login needs it (seconds at a million users).
		{"refusal plan", func(context.Context) error { s.auth.refusalPlan(s.Config()); return nil }},
	}
	errc := make(chan error, len(loops))
	for _, l := range loops {
		go func() {
			err := l.run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", l.name, err)
				cancel()
			}
			errc <- err
		}()
	}
	var first error
	for range loops {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// SchedulerTick makes one pass of the deadline scheduler (alert and digest
// mails due by now) and returns when the next pass is due. Run does this
// on its own; tests and benchmarks call it to step through time.
func (s *Service) SchedulerTick(ctx context.Context) (time.Time, error) { return s.sched.Tick(ctx) }

// RetentionPass makes one retention pass with the current config and
// returns what it removed. Run does this every RetentionInterval. It must
// not run concurrently with itself.
func (s *Service) RetentionPass(ctx context.Context) (Removed, error) { return s.ret.RunOnce(ctx) }

// Ready lists why this process should not get traffic: the store does
// not answer, or (PostgreSQL) the event listener is down, so IMAP IDLE here
// would miss other replicas' commits. Empty: ready.
func (s *Service) Ready(ctx context.Context) []string {
	var why []string
	if err := s.st.Ping(ctx); err != nil {
		why = append(why, "store unreachable: "+err.Error())
	}
	if err := store.EventsReady(s.st); err != nil {
		why = append(why, err.Error())
	}
	return why
}

// Logger returns the service's logger.
func (s *Service) Logger() *slog.Logger { return s.log }

// Registry is the registry of the service's metrics (Options.Registry),
// where adapters register theirs and /metrics gathers from.
func (s *Service) Registry() *prometheus.Registry { return s.metrics.Registry }

// Now reads the service clock (Options.Clock).
func (s *Service) Now() time.Time { return s.clock.Now() }

// Config returns the current configuration snapshot. Read it once per request
// and use that snapshot throughout.
func (s *Service) Config() *config.Config { return s.cfg.Load() }

// SetConfig swaps in a new, already validated configuration. Cached logins
// are dropped, and objects are re-rendered if what they depend on changed.
func (s *Service) SetConfig(ctx context.Context, c *config.Config) {
	old := s.cfg.Swap(c)
	s.auth.reset()
	s.auth.refusalPlan(c) // before the next cold login needs it
	if old != nil {
		// Sessions opened with credentials that are gone (a revoked app
		// password, a changed password, a removed user) must end now, not
		// when the client next reconnects.
		var revoked []store.Event
		for i := range old.Users {
			if u := c.User(old.Users[i].Name); u == nil || !sameCredentials(&old.Users[i], u) {
				revoked = append(revoked, store.Event{Kind: EventCredentials, User: old.Users[i].Name})
			}
		}
		if len(revoked) > 0 {
			s.hub.Publish(revoked)
		}
		s.rerenderAfterReload(ctx, old, c)
	}
}

// EventCredentials is published (in process, never stored) for a user whose
// password, app passwords or account changed or went away; servers holding
// long-lived sessions of that user close them.
const EventCredentials store.EventKind = "credentials"

func sameCredentials(a, b *config.User) bool {
	return a.PasswordHash == b.PasswordHash && slices.Equal(a.AppPasswords, b.AppPasswords)
}
