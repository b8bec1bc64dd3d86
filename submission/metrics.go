package submission

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the submission listener's collectors, on the service's
// registry.
type metrics struct {
	unauth       prometheus.Gauge
	sessions     prometheus.Gauge
	refused      prometheus.Counter
	authTimeouts prometheus.Counter
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		unauth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duebridge_submission_unauthenticated", Help: "Submission connections that have not authenticated yet.",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duebridge_submission_sessions", Help: "Authenticated submission connections.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_submission_refused_total",
			Help: "Submission connections refused by limits.submission_unauth_conns, limits.submission_unauth_per_address or the session cap.",
		}),
		authTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_submission_auth_timeouts_total",
			Help: "Submission connections closed by limits.submission_auth_timeout.",
		}),
	}
	m.unauth = register(reg, m.unauth)
	m.sessions = register(reg, m.sessions)
	m.refused = register(reg, m.refused)
	m.authTimeouts = register(reg, m.authTimeouts)
	return m
}

// register adds c to reg, or returns the collector already registered under
// its name (a second Server on one service, as in tests, shares them).
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
