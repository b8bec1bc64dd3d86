package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/duebridge/duebridge/internal/metricsreg"
	"github.com/duebridge/duebridge/store"
)

// coreMetrics are the core's Prometheus collectors. Adapters register their own
// collectors on Registry. A fresh registry per Service keeps tests independent.
type coreMetrics struct {
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

// newMetrics creates the collectors and registers them on reg; a nil reg is
// a new registry with the Go and process collectors.
func newMetrics(reg *prometheus.Registry) *coreMetrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := &coreMetrics{
		Registry: reg,
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
	m.ClientPropsDropped = metricsreg.Register(reg, m.ClientPropsDropped)
	m.WebhookTasks = metricsreg.Register(reg, m.WebhookTasks)
	m.StoreLatency = metricsreg.Register(reg, m.StoreLatency)
	m.LoginFailures = metricsreg.Register(reg, m.LoginFailures)
	m.LoginCache = metricsreg.Register(reg, m.LoginCache)
	m.Mails = metricsreg.Register(reg, m.Mails)
	m.HashChecks = metricsreg.Register(reg, m.HashChecks)
	return m
}

// walReporter is the SQLite store's report on its write-ahead log.
type walReporter interface{ WALStats() store.WALStats }

// registerWALMetrics exports the SQLite store's write-ahead log: its length
// (bounded by limits.sqlite_wal_mb) and how often it was started over.
func (s *Service) registerWALMetrics(st store.Store) {
	w, ok := st.(walReporter)
	if !ok {
		return
	}
	register(s, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "duebridge_store_wal_bytes",
		Help: "SQLite write-ahead log length at the last checkpoint (limits.sqlite_wal_mb bounds it).",
	}, func() float64 { return float64(w.WALStats().Bytes) }))
	register(s, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "duebridge_store_wal_restarts_total",
		Help: "Times the SQLite write-ahead log passed limits.sqlite_wal_mb and was started over.",
	}, func() float64 { return float64(w.WALStats().Restarts) }))
}

// register adds c to the service's registry, or returns the collector
// registered there before under its name (see metricsreg.Register).
func register[C prometheus.Collector](s *Service, c C) C {
	return metricsreg.Register(s.metrics.Registry, c)
}
