package imapserver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/metricsreg"
)

// metrics are the IMAP server's Prometheus collectors, registered on the
// backend's registerer.
type metrics struct {
	conns      prometheus.Gauge
	sessions   prometheus.Gauge
	idling     prometheus.Gauge
	refreshers prometheus.Gauge
	commands   *prometheus.CounterVec
	timeouts   *prometheus.CounterVec
	limited    prometheus.Counter
	// literals counts literals refused by limits.imap_literal_bytes or the
	// non-synchronising literal cap.
	literals prometheus.Counter
	// keywordLimit counts STOREs refused by a keyword limit, by config key.
	keywordLimit *prometheus.CounterVec
	starttls     prometheus.Counter
	panics       prometheus.Counter
	pushSeconds  prometheus.Histogram
}

// knownCommands bounds the command label: anything else counts as "other".
var knownCommands = map[string]bool{}

func init() {
	for _, c := range []string{"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "LOGIN", "ID", "ENABLE",
		"SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB", "NAMESPACE",
		"STATUS", "APPEND", "IDLE", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY",
		"MOVE", "UID SEARCH", "UID FETCH", "UID STORE", "UID COPY", "UID MOVE", "UID EXPUNGE"} {
		knownCommands[c] = true
	}
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duebridge_imap_connections", Help: "Open IMAP connections.",
		}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duebridge_imap_sessions", Help: "Logged-in IMAP connections.",
		}),
		idling: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duebridge_imap_idling", Help: "IMAP connections in IDLE.",
		}),
		refreshers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "duebridge_imap_mailbox_refreshers", Help: "Mailboxes being brought up to date after store events.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_imap_commands_total", Help: "IMAP commands received, by name.",
		}, []string{"command"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_imap_timeouts_total", Help: "IMAP connections closed by duebridge's timeouts, by kind (login, idle).",
		}, []string{"kind"}),
		limited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_imap_conn_limit_total", Help: "Logins refused by limits.imap_conns_per_user.",
		}),
		literals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_imap_literal_limit_total",
			Help: "Literals refused by limits.imap_literal_bytes (NO [TOOBIG], or BYE when the bytes were already on their way) or by the 4 KiB cap on non-synchronising literals.",
		}),
		keywordLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_imap_keyword_limit_total",
			Help: "STOREs refused by a keyword limit, by limit (imap_keywords_per_message, imap_keywords_per_mailbox, imap_keyword_bytes).",
		}, []string{"limit"}),
		starttls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_imap_starttls_total", Help: "Successful STARTTLS negotiations.",
		}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_imap_refresh_panics_total", Help: "Recovered panics while pushing mailbox changes (a bug).",
		}),
		pushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "duebridge_imap_push_seconds",
			Help:    "From a store event to the change queued for every session of the mailbox.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25},
		}),
	}
	m.conns = metricsreg.Register(reg, m.conns)
	m.sessions = metricsreg.Register(reg, m.sessions)
	m.idling = metricsreg.Register(reg, m.idling)
	m.refreshers = metricsreg.Register(reg, m.refreshers)
	m.commands = metricsreg.Register(reg, m.commands)
	m.timeouts = metricsreg.Register(reg, m.timeouts)
	m.limited = metricsreg.Register(reg, m.limited)
	m.literals = metricsreg.Register(reg, m.literals)
	m.keywordLimit = metricsreg.Register(reg, m.keywordLimit)
	m.starttls = metricsreg.Register(reg, m.starttls)
	m.panics = metricsreg.Register(reg, m.panics)
	m.pushSeconds = metricsreg.Register(reg, m.pushSeconds)
	return m
}

func (m *metrics) command(name string) {
	if !knownCommands[name] {
		name = "other"
	}
	m.commands.WithLabelValues(name).Inc()
}
