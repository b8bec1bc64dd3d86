// Package bridge is duebridge's core: the rules that hold whatever the
// protocol — ingesting task updates, rendering tasks to iCalendar and mail,
// completions from phones, authentication, the change hub and the deadline
// scheduler. Protocol adapters (calendar, imapserver, webhook) import it;
// it imports none of them.
package bridge

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// Options for New. Zero values are fine.
type Options struct {
	// Logger; if nil, slog.Default() is used.
	Logger *slog.Logger
	// Clock is the one clock of the service: Now, the store's timestamps
	// (pass its Now to store.Options) and the timers of the scheduler, the
	// retention job and the callback worker. If nil, the wall clock. Tests
	// pass internal/fakeclock to run everything in virtual time.
	Clock Clock
	// Metrics; if nil, metrics are collected but not registered anywhere.
	Metrics *Metrics
}

// Service is the core shared by all adapters.
type Service struct {
	st      store.Store
	hub     *Hub
	cfg     atomic.Pointer[config.Config]
	log     *slog.Logger
	clock   Clock
	auth    *authenticator
	devices *devices
	metrics *Metrics
	ingests ingestGroup // group commit of concurrent ingests (ingest.go)
}

// New builds the service; it starts nothing. The store must have been opened
// with OnCommit wired to the returned service's Hub().Publish (see
// OpenStore), so that writers publish after commit.
func New(st store.Store, hub *Hub, cfg *config.Config, o Options) *Service {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = SystemClock(nil)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics()
	}
	s := &Service{st: st, hub: hub, log: o.Logger, clock: o.Clock, metrics: o.Metrics}
	s.cfg.Store(cfg)
	s.devices = newDevices(s)
	s.auth = newAuthenticator(s)
	return s
}

// Store returns the store.
func (s *Service) Store() store.Store { return s.st }

// Hub returns the change hub.
func (s *Service) Hub() *Hub { return s.hub }

// Logger returns the service's logger.
func (s *Service) Logger() *slog.Logger { return s.log }

// Metrics returns the service's metrics.
func (s *Service) Metrics() *Metrics { return s.metrics }

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
		if err := s.rerenderChanged(ctx, old, c); err != nil {
			s.log.Error("re-render after config change", "err", err)
		}
	}
}

// EventCredentials is published (in process, never stored) for a user whose
// password, app passwords or account changed or went away; servers holding
// long-lived sessions of that user close them.
const EventCredentials store.EventKind = "credentials"

func sameCredentials(a, b *config.User) bool {
	return a.PasswordHash == b.PasswordHash && slices.Equal(a.AppPasswords, b.AppPasswords)
}
