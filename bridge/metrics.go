package bridge

import (
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	dto "github.com/prometheus/client_model/go"

	"github.com/duebridge/duebridge/internal/metricsreg"
)

// Metrics are the core's Prometheus collectors. Adapters register their own
// collectors on Registry. A fresh registry per Service keeps tests independent.
type Metrics struct {
	Registry *prometheus.Registry

	WebhookTasks  *prometheus.CounterVec   // source, result: accepted|ignored|rejected
	StoreLatency  *prometheus.HistogramVec // op
	LoginFailures *prometheus.CounterVec   // protocol
	LoginCache    *prometheus.CounterVec   // result: hit|miss
	HashChecks    prometheus.Counter       // bcrypt/argon2id verifications run
	Mails         *prometheus.CounterVec   // event
	// ClientPropsDropped counts client X- properties not kept because
	// they went over limits.client_props_bytes.
	ClientPropsDropped prometheus.Counter
}

// NewMetrics creates the collectors on a new registry, with Go and process
// collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		WebhookTasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_webhook_tasks_total", Help: "Task records received over webhooks, by source and result.",
		}, []string{"source", "result"}),
		StoreLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "duebridge_store_seconds", Help: "Store transaction latency, commit included, by operation.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
		LoginFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_login_failures_total", Help: "Failed logins, by protocol.",
		}, []string{"protocol"}),
		HashChecks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_password_hash_checks_total", Help: "Password hash verifications run (each costs tens of milliseconds of CPU).",
		}),
		LoginCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_login_cache_total", Help: "Password verifications answered from the cache (hit) or by hashing (miss).",
		}, []string{"result"}),
		Mails: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_notification_mails_total", Help: "Notification mails stored, by event.",
		}, []string{"event"}),
		ClientPropsDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_client_props_dropped_total", Help: "Client X- properties not kept because they went over limits.client_props_bytes.",
		}),
	}
	m.Registry.MustRegister(m.ClientPropsDropped, m.WebhookTasks, m.StoreLatency, m.LoginFailures, m.LoginCache, m.Mails, m.HashChecks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Register adds c to reg, or returns the collector registered before under
// the same name: a handler, server, scheduler or worker built again on the
// same registry (a restart in-process, tests) shares its metrics. A nil reg
// registers nothing. Any other refusal (two different collectors under one
// name) is a programming error every test run meets at construction, so it
// panics rather than leaving a metric that is never exported.
func Register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if reg == nil {
		return c // a typed nil must not reach the interface
	}
	return metricsreg.Register(reg, c)
}

// register adds c to the service's registry (see Register).
func register[C prometheus.Collector](s *Service, c C) C { return Register(s.metrics.Registry, c) }

// WithReplica returns g with the label replica=name on every sample, so the
// series of several processes behind one balancer stay apart. (Not
// "instance": Prometheus sets that one itself from the scrape target and
// would rename ours to exported_instance.)
func WithReplica(g prometheus.Gatherer, name string) prometheus.Gatherer {
	lname, lvalue := "replica", name
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		for _, mf := range mfs {
			for _, m := range mf.Metric {
				m.Label = append(m.Label, &dto.LabelPair{Name: &lname, Value: &lvalue})
				// Label pairs must stay sorted by name for the exposition.
				slices.SortFunc(m.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
			}
		}
		return mfs, err
	})
}
