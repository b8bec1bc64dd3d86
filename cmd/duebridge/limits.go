package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
)

// httpTimeouts bound how long one client can hold an HTTP connection. The
// zero value of a field means its default.
type httpTimeouts struct {
	// ReadHeader bounds the TLS handshake and the request line and headers:
	// a slowloris client that trickles headers is cut off after it.
	ReadHeader time.Duration
	// Read bounds the whole request, body included. A CalDAV PUT is at most
	// limits.ical_object_bytes and a webhook batch limits.webhook_body_bytes;
	// a minute carries either over a slow mobile link.
	Read time.Duration
	// Write bounds handling and writing the answer. It includes the login
	// failure delay (at most 10 s) and a large REPORT over a slow link.
	Write time.Duration
	// Idle is how long a kept-alive connection may wait for its next
	// request; iOS reuses connections between the requests of a sync.
	Idle time.Duration
}

var defaultHTTPTimeouts = httpTimeouts{
	ReadHeader: 10 * time.Second,
	Read:       60 * time.Second,
	Write:      120 * time.Second,
	Idle:       120 * time.Second,
}

// maxHeaderBytes caps request line plus headers (431 beyond). iOS's DAV
// requests carry a few hundred bytes of headers; 64 KiB leaves room for
// large cookies from a proxy in front.
const maxHeaderBytes = 64 << 10

// minBodyCap is the body cap when the configured limits are smaller:
// PROPFIND, REPORT and PROPPATCH bodies are XML of a few KiB (a multiget of
// 50 hrefs is about 10 KiB).
const minBodyCap = 1 << 20

func (t httpTimeouts) withDefaults() httpTimeouts {
	d := defaultHTTPTimeouts
	if t.ReadHeader > 0 {
		d.ReadHeader = t.ReadHeader
	}
	if t.Read > 0 {
		d.Read = t.Read
	}
	if t.Write > 0 {
		d.Write = t.Write
	}
	if t.Idle > 0 {
		d.Idle = t.Idle
	}
	return d
}

// listenHTTP opens the HTTP listener without TCP keep-alive. Every HTTP
// connection already ends within the server's read, write and idle
// timeouts, so keep-alive probes find nothing they would not; turning them
// on cost four setsockopt calls on each accepted connection, and a phone
// opens one per poll. (The mail listeners keep keep-alive: an IMAP IDLE
// session may be silent for many minutes.)
func listenHTTP(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	return lc.Listen(ctx, "tcp", addr)
}

// newHTTPServer is the HTTP server with every limit set.
func newHTTPServer(h http.Handler, log *slog.Logger, t httpTimeouts) *http.Server {
	t = t.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// bodyCap is the largest request body any route accepts.
func bodyCap(c *config.Config) int64 {
	return max(c.Limits.WebhookBodyBytes, c.Limits.ICalObjectBytes, minBodyCap)
}

// limitBodies refuses request bodies larger than any route accepts, before
// a handler reads them: at once with 413 when Content-Length says so, and
// by cutting the body off (http.MaxBytesReader) when it is sent chunked.
// Handlers keep their own tighter limits (the webhook's, the iCalendar
// object size) and their own error bodies; this is the backstop for every
// route, including ones that never expect a body. A refusal is counted
// under the route the request was for: the mux is asked for its pattern,
// which instrument reads from the same request.
func limitBodies(mux *http.ServeMux, svc *bridge.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := bodyCap(svc.Config())
		if r.ContentLength > limit {
			_, r.Pattern = mux.Handler(r)
			msg := fmt.Sprintf("request body larger than %d bytes", limit)
			if strings.HasPrefix(r.URL.Path, "/hooks/") {
				// The webhook contract answers errors in JSON.
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Connection", "close")
				w.WriteHeader(http.StatusRequestEntityTooLarge)
				fmt.Fprintf(w, "{\"error\":%q}\n", msg)
				return
			}
			w.Header().Set("Connection", "close")
			http.Error(w, msg, http.StatusRequestEntityTooLarge)
			return
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		mux.ServeHTTP(w, r)
	})
}
