package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/duebridge/duebridge/admin"
	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/feed"
	"github.com/duebridge/duebridge/internal/metricsreg"
	"github.com/duebridge/duebridge/setup"
	"github.com/duebridge/duebridge/webhook"
)

// routes is the HTTP surface in one readable list.
func routes(svc *bridge.Service, log *slog.Logger, setupOpts setup.Options) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", retryAfter(webhook.NewHandler(svc, webhook.Options{Logger: log})))
	cal := calendar.NewHandler(svc.CalDAV(), calendar.Options{Logger: log, IsAdmin: func(name string) bool {
		u := svc.Config().User(name)
		return u != nil && u.Admin
	}})
	mux.Handle(calendar.WellKnownPath, cal)
	mux.Handle(calendar.Prefix, cal)
	mux.Handle("PROPFIND /{$}", cal) // iOS walks from the bare host
	mux.Handle("OPTIONS /{$}", cal)
	mux.Handle("GET "+calendar.SyncHealthPath, cal)
	mux.Handle("GET "+feed.Path, feed.NewHandler(svc, feed.Options{Logger: log,
		Refresh: func() time.Duration { return svc.Config().Feeds.Refresh }}))
	setupHandler := setup.NewHandler(svc, setupOpts)
	mux.Handle("GET "+setup.PagePath, setupHandler)
	mux.Handle("GET "+setup.ProfilePath, setupHandler)
	mux.Handle("POST "+setup.DevicesPath, setupHandler)
	mux.Handle("POST "+setup.RevokePath, setupHandler)
	mux.Handle("POST "+setup.FeedPath, setupHandler)
	mux.Handle("POST "+setup.FeedRevokePath, setupHandler)
	for _, p := range setup.Typed { // "/setup/", "/": redirected to the page
		mux.Handle(p, setupHandler)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	replica := replicaName(svc)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		writeReadiness(w, replica, svc.Ready(ctx))
	})
	adm := adminPage(svc, cal, replica, log)
	mux.Handle("GET "+admin.Path, adm)
	mux.Handle("POST "+admin.RetryPath, adm)
	reg := svc.Registry()
	mux.Handle("GET /metrics", adminOrLoopback(svc, promhttp.HandlerFor(metricsreg.WithReplica(reg, replica), promhttp.HandlerOpts{Registry: reg})))
	return instrument(limitBodies(mux, svc), reg)
}

// methodLabels are the request methods the request metrics name; any other
// is counted as "other". HTTP lets a client send any token as a method, and
// each one was a new series in /metrics.
var methodLabels = map[string]string{}

func init() {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH",
		"PROPFIND", "PROPPATCH", "REPORT", "MKCALENDAR", "MKCOL", "MOVE", "COPY", "LOCK", "UNLOCK", "ACL"} {
		methodLabels[m] = m
	}
}

// instrument counts requests by route pattern and status. next ends in
// the mux, which names the route it chose in r.Pattern ("" when none
// matched).
func instrument(next http.Handler, reg *prometheus.Registry) http.Handler {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"route", "method", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "duebridge_http_request_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
	}, []string{"route"})
	reg.MustRegister(requests, duration)
	type key struct {
		route, method string
		code          int
	}
	type series struct {
		requests prometheus.Counter
		duration prometheus.Observer
	}
	// The series of each route, method and status, looked up once: the
	// label lookups (hashing, the vectors' locks) are not paid per request.
	// Bounded by routes × methodLabels × the statuses handlers answer.
	var known sync.Map // key → series
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		k := key{route: r.Pattern, method: methodLabels[r.Method], code: sw.code}
		if k.route == "" || r.Method == http.MethodConnect {
			// Nothing matched (for CONNECT the mux names the path).
			k.route = "unmatched"
		}
		if k.method == "" {
			k.method = "other"
		}
		s, ok := known.Load(k)
		if !ok {
			s, _ = known.LoadOrStore(k, series{requests.WithLabelValues(k.route, k.method, strconv.Itoa(k.code)), duration.WithLabelValues(k.route)})
		}
		s.(series).requests.Inc()
		s.(series).duration.Observe(time.Since(start).Seconds())
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// adminOrLoopback guards /metrics: its labels name users, so only a local
// scraper or an admin user (users[].admin, HTTP Basic) may read it.
func adminOrLoopback(svc *bridge.Service, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
				next.ServeHTTP(w, r)
				return
			}
		}
		name, pw, ok := r.BasicAuth()
		if ok {
			u, err := svc.AuthenticateFrom(r.Context(), "metrics", name, pw, r.RemoteAddr)
			if err == nil && u.Admin {
				next.ServeHTTP(w, r)
				return
			}
			if err == nil {
				http.Error(w, "metrics are for admin users (users[].admin)", http.StatusForbidden)
				return
			}
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="duebridge metrics", charset="UTF-8"`)
		http.Error(w, "metrics need an admin login or a loopback client", http.StatusUnauthorized)
	})
}

// replicaName is the replica label of this process's metrics and readiness:
// config key instance, else host name and HTTP port, which tells apart
// several processes on one host as well as one process on several hosts.
func replicaName(svc *bridge.Service) string {
	cfg := svc.Config()
	if cfg.Instance != "" {
		return cfg.Instance
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "localhost"
	}
	_, port, err := net.SplitHostPort(cfg.HTTP.Listen)
	if err != nil {
		return host
	}
	return net.JoinHostPort(host, port)
}

// readyRetry is the Retry-After of a refusal while the store is away: a
// PostgreSQL restart or fail-over takes seconds.
const readyRetry = "5"

// writeReadiness answers /readyz: 200 or 503, with a JSON body naming the
// replica and the reasons, so an operator (or the balancer's log) sees why.
func writeReadiness(w http.ResponseWriter, replica string, why []string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body := struct {
		Ready   bool     `json:"ready"`
		Replica string   `json:"replica"`
		Reasons []string `json:"reasons"`
	}{len(why) == 0, replica, why}
	if body.Reasons == nil {
		body.Reasons = []string{}
	}
	if !body.Ready {
		w.Header().Set("Retry-After", readyRetry)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	json.NewEncoder(w).Encode(body)
}

// retryAfter adds Retry-After to a 503 that has none: a tracker told when
// to retry backs off instead of hammering a replica whose database is
// restarting, and retries instead of dropping the update.
func retryAfter(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(&retryAfterWriter{ResponseWriter: w}, r)
	})
}

type retryAfterWriter struct{ http.ResponseWriter }

func (w *retryAfterWriter) WriteHeader(code int) {
	if code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", readyRetry)
	}
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *retryAfterWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
