package submission

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/metricsreg"
)

// metrics are the submission listener's collectors, on the service's
// registry.
type metrics struct {
	unauth       prometheus.Gauge
	sessions     prometheus.Gauge
	refused      prometheus.Counter
	authTimeouts prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
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
	m.unauth = metricsreg.Register(reg, m.unauth)
	m.sessions = metricsreg.Register(reg, m.sessions)
	m.refused = metricsreg.Register(reg, m.refused)
	m.authTimeouts = metricsreg.Register(reg, m.authTimeouts)
	return m
}
