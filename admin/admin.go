// Package admin serves /admin: one server-rendered page (no JavaScript)
// with what an operator checks first: readiness and why not, per-user sync
// health, queue depths, the last retention pass and the version. Only
// users with users[].admin may read it; its one write is the button that
// retries failed callbacks now (POST RetryPath).
package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/config"
)

// Path is where the page is served.
const Path = "/admin"

// RetryPath takes the POST of the "retry failed callbacks now" button.
const RetryPath = "/admin/retry-callbacks"

// Authenticator checks a login with the core's lock-out protection
// (bridge.Service.AuthenticateFrom).
type Authenticator interface {
	AuthenticateFrom(ctx context.Context, protocol, name, pw, remoteAddr string) (*config.User, error)
	Now() time.Time
}

// SyncReporter is the sync health /admin/sync serves (calendar.Handler).
type SyncReporter interface {
	SyncReport(ctx context.Context, users []string) (*calendar.SyncReport, error)
}

// QueueReader reads the queue depths (bridge.Service.Queues) and retries
// failed callbacks (bridge.Service.RetryFailedCallbacks).
type QueueReader interface {
	Queues(ctx context.Context) (bridge.Queues, error)
	RetryFailedCallbacks(ctx context.Context) (int, error)
}

// SourceReader reads each source's deliveries and callback queue
// (bridge.Service.Sources).
type SourceReader interface {
	Sources(ctx context.Context) ([]bridge.SourceStatus, error)
}

// LockoutReader lists the login lock-outs in force (bridge.Service.Lockouts).
type LockoutReader interface {
	Lockouts() ([]bridge.Lockout, int)
}

// DeviceLister lists device passwords, "" for every user's
// (bridge.Service.Devices): names and use, never a password or its hash.
type DeviceLister interface {
	Devices(ctx context.Context, user string) ([]bridge.Device, error)
}

// Deps are what the page reads; every field is required.
type Deps struct {
	Auth     Authenticator
	Sync     SyncReporter
	Queues   QueueReader
	Sources  SourceReader
	Lockouts LockoutReader
	Devices  DeviceLister
	Users    func() []string                    // every user's name
	Ready    func(ctx context.Context) []string // why not ready; empty: ready
	Metrics  prometheus.Gatherer                // for duebridge_retention_*
	Version  string
	Replica  string
	Logger   *slog.Logger
}

// Handler serves the admin page.
type Handler struct {
	d Deps
	// csrf refuses the POST when a browser says it comes from another
	// site: the browser sends Basic credentials along with any request.
	csrf *http.CrossOriginProtection
}

// New returns the handler of GET Path and POST RetryPath.
func New(d Deps) *Handler {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return &Handler{d: d, csrf: http.NewCrossOriginProtection()}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if r.URL.Path == RetryPath {
		h.retry(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !h.login(w, r) {
		return
	}
	// A deadline so a stalled store cannot hold the page (and its
	// goroutine) forever; the page then says what it could not read.
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	v := h.view(ctx)
	if n, err := strconv.Atoi(r.URL.Query().Get("retried")); err == nil && n >= 0 {
		v.Retried = &n
	}
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, v); err != nil {
		h.d.Logger.Error("admin page: rendering", "err", err)
		http.Error(w, "the admin page could not be rendered", http.StatusInternalServerError)
		return
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Security-Policy", pageCSP)
	w.Write(buf.Bytes())
}

// retry serves the button: POST only, same-origin only, admins only; it
// answers 303 to the page, which says how many callbacks were made due.
func (h *Handler) retry(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := h.csrf.Check(r); err != nil {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	if !h.login(w, r) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	n, err := h.d.Queues.RetryFailedCallbacks(ctx)
	if err != nil {
		h.d.Logger.Error("admin: retry failed callbacks", "err", err)
		http.Error(w, "could not retry the failed callbacks: the store did not answer", http.StatusServiceUnavailable)
		return
	}
	h.d.Logger.Info("admin: failed callbacks made due now", "count", n)
	http.Redirect(w, r, Path+"?retried="+strconv.Itoa(n), http.StatusSeeOther)
}

// login admits admins; on refusal it has answered: 401 without or with
// wrong credentials, 429 while locked out, 403 for a user who is not an admin.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) bool {
	name, pw, ok := r.BasicAuth()
	if !ok {
		challenge(w)
		return false
	}
	u, err := h.d.Auth.AuthenticateFrom(r.Context(), "admin", name, pw, r.RemoteAddr)
	if err != nil {
		// bridge.LockoutError says when the lock ends.
		var le interface{ RetryAfter(time.Time) time.Duration }
		switch {
		case errors.As(err, &le):
			secs := int(le.RetryAfter(h.d.Auth.Now()) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			http.Error(w, "too many failed logins; try again in "+(time.Duration(secs)*time.Second).String(), http.StatusTooManyRequests)
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// The client went away during the failure delay; nobody reads this.
			http.Error(w, "login not completed", http.StatusRequestTimeout)
		default:
			challenge(w)
		}
		return false
	}
	if !u.Admin {
		http.Error(w, "the admin page is for admin users (users[].admin)", http.StatusForbidden)
		return false
	}
	return true
}

func challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="duebridge admin", charset="UTF-8"`)
	http.Error(w, "log in with an admin user (users[].admin)", http.StatusUnauthorized)
}

type view struct {
	Now           time.Time
	Version       string
	Replica       string
	Ready         bool
	Reasons       []string
	Queues        *bridge.Queues
	QueuesErr     string
	Sources       []bridge.SourceStatus
	SourcesErr    string
	Lockouts      []bridge.Lockout
	LockoutsTotal int // all in force; Lockouts may show fewer
	Retention     retention
	Sync          *calendar.SyncReport
	SyncErr       string
	Devices       []bridge.Device // device passwords, by user
	DevicesErr    string
	Retried       *int // set after the retry button: how many were made due
}

type retention struct {
	LastRun  time.Time // zero: no pass completed since the start
	Runs     float64
	Failures float64
}

// view reads everything the page shows; a part that fails is named on the
// page instead of failing the whole page (an operator opens it because
// something is wrong).
func (h *Handler) view(ctx context.Context) view {
	v := view{Now: h.d.Auth.Now().UTC(), Version: h.d.Version, Replica: h.d.Replica}
	v.Reasons = h.d.Ready(ctx)
	v.Ready = len(v.Reasons) == 0
	if q, err := h.d.Queues.Queues(ctx); err != nil {
		v.QueuesErr = err.Error()
	} else {
		v.Queues = &q
	}
	if src, err := h.d.Sources.Sources(ctx); err != nil {
		v.SourcesErr = err.Error()
	} else {
		v.Sources = src
	}
	if rep, err := h.d.Sync.SyncReport(ctx, h.d.Users()); err != nil {
		v.SyncErr = err.Error()
	} else {
		v.Sync = rep
	}
	if ds, err := h.d.Devices.Devices(ctx, ""); err != nil {
		v.DevicesErr = err.Error()
	} else {
		v.Devices = ds
	}
	v.Lockouts, v.LockoutsTotal = h.d.Lockouts.Lockouts()
	v.Retention = readRetention(h.d.Metrics)
	return v
}

// readRetention takes the retention figures from the metrics the
// retention loop keeps, so the page and the alerts agree.
func readRetention(g prometheus.Gatherer) retention {
	var ret retention
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return ret
	}
	for _, mf := range mfs {
		var val func(*dto.Metric) float64
		var dst *float64
		var last float64
		switch mf.GetName() {
		case "duebridge_retention_last_run_timestamp_seconds":
			val, dst = func(m *dto.Metric) float64 { return m.GetGauge().GetValue() }, &last
		case "duebridge_retention_runs_total":
			val, dst = func(m *dto.Metric) float64 { return m.GetCounter().GetValue() }, &ret.Runs
		case "duebridge_retention_failures_total":
			val, dst = func(m *dto.Metric) float64 { return m.GetCounter().GetValue() }, &ret.Failures
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			*dst += val(m)
		}
		if last > 0 {
			ret.LastRun = time.Unix(int64(last), 0).UTC()
		}
	}
	return ret
}

const pageCSS = `body { font: 16px/1.4 -apple-system, system-ui, sans-serif; margin: 1em; max-width: 60em; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 4px 8px 4px 0; vertical-align: top; border-bottom: 1px solid #ddd; }
.bad { color: #b00020; font-weight: bold; }
.ok { color: #1b5e20; font-weight: bold; }
.muted { color: gray; }
code { overflow-wrap: anywhere; font-size: .9em; }
`

var pageCSP = func() string {
	sum := sha256.Sum256([]byte(pageCSS))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
		"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}()

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

var pageTmpl = template.Must(template.New("admin").Funcs(template.FuncMap{
	"css":  func() template.CSS { return template.CSS(pageCSS) },
	"when": when,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>duebridge admin</title>
<style>{{css}}</style>
</head>
<body>
<h1>duebridge admin</h1>
<p class="muted">Version <code id="version">{{.Version}}</code>, replica <code>{{.Replica}}</code>, as of {{when .Now}}.</p>

<h2>Health</h2>
{{if .Ready}}<p id="ready" class="ok">Ready.</p>{{else}}<p id="ready" class="bad">Not ready:</p>
<ul id="reasons">{{range .Reasons}}<li>{{.}}</li>{{end}}</ul>{{end}}

<h2>Sources</h2>
{{if .SourcesErr}}<p class="bad">Could not read the sources: {{.SourcesErr}}</p>{{else}}<table id="sources">
<tr><th>Source</th><th>Last delivery</th><th>Task records (since the start)</th><th>Callbacks</th></tr>
{{range .Sources}}<tr><td>{{.Name}}{{if not .Configured}} <span class="muted">(no longer configured)</span>{{end}}</td>
<td>{{when .LastChange}}</td>
<td>{{printf "%.0f" .Accepted}} accepted, {{printf "%.0f" .Ignored}} ignored, <span{{if .Rejected}} class="bad"{{end}}>{{printf "%.0f" .Rejected}} rejected</span></td>
<td>{{with .Callbacks}}{{.Pending}} pending, <span{{if .Failing}} class="bad"{{end}}>{{.Failing}} failing</span>; last delivered {{when .LastDelivered}}{{if .LastError}}<br>last error: <code>{{.LastError}}</code>{{end}}{{end}}</td></tr>
{{else}}<tr><td colspan="4" class="muted">No source is configured.</td></tr>{{end}}
</table>{{end}}

<h2>Queues</h2>
{{with .Queues}}<table id="queues">
<tr><th>Completion callbacks pending</th><td>{{.CallbacksPending}}</td></tr>
<tr><th>of which failing</th><td{{if .CallbacksFailing}} class="bad"{{end}}>{{.CallbacksFailing}}</td></tr>
<tr><th>Alert schedules</th><td>{{.Alerts}}</td></tr>
<tr><th>with an alert mail still to come</th><td>{{.AlertsArmed}}</td></tr>
</table>{{else}}<p class="bad">Could not read the queues: {{.QueuesErr}}</p>{{end}}
{{with .Retried}}<p id="retried" class="ok">{{.}} failing callback(s) made due now.</p>{{end}}
<form id="retry" method="post" action="/admin/retry-callbacks"><button type="submit">Retry failed callbacks now</button></form>

<h2>Lock-outs now</h2>
{{if .Lockouts}}<table id="lockouts">
<tr><th>Locked</th><th>Until</th></tr>
{{range .Lockouts}}<tr><td>{{if .User}}user <code>{{.User}}</code>{{else}}address <code>{{.Client}}</code>{{end}}</td><td>{{when .Until}}</td></tr>
{{end}}</table>{{if gt .LockoutsTotal (len .Lockouts)}}<p class="bad">and {{.LockoutsTotal}} in all.</p>{{end}}
{{else}}<p id="lockouts" class="ok">None.</p>{{end}}

<h2>Device passwords</h2>
{{if .DevicesErr}}<p class="bad">Could not read the device passwords: {{.DevicesErr}}</p>{{else if .Devices}}<table id="devices">
<tr><th>User</th><th>Device</th><th>Issued</th><th>Last used</th></tr>
{{range .Devices}}<tr><td>{{.User}}</td><td>{{.Name}}</td><td>{{when .Created}}</td><td>{{when .LastUsed}}</td></tr>
{{end}}</table><p class="muted">Users revoke their own on <code>/setup</code>; operators with <code>duebridge devices revoke</code>.</p>
{{else}}<p id="devices" class="muted">None issued.</p>{{end}}

<h2>Retention</h2>
<p id="retention">Last pass completed: {{when .Retention.LastRun}}; passes {{printf "%.0f" .Retention.Runs}},
failed <span{{if .Retention.Failures}} class="bad"{{end}}>{{printf "%.0f" .Retention.Failures}}</span> (since the start).</p>

<h2>Sync health</h2>
{{with .Sync}}<p class="muted">{{.Note}} (since {{when .Since}}). JSON: <code>/admin/sync</code>.</p>
{{range .Users}}<h3>{{.User}}</h3>
{{if .Devices}}<table>
<tr><th>Device</th><th>Last seen</th><th>Last sync</th><th>Behind</th></tr>
{{range .Devices}}<tr><td>{{.Client}}<br><code>{{.UserAgent}}</code></td><td>{{when .LastSeen}}</td><td>{{when .LastSync}} {{.LastKind}}</td>
<td>{{range .Behind}}<span class="bad">{{.Collection}}: {{.DeviceSeq}} of {{.CurrentSeq}}</span><br>{{else}}up to date{{end}}</td></tr>
{{end}}</table>{{else}}<p class="muted">No device has synced since the start.</p>{{end}}
{{end}}{{else}}<p class="bad">Could not read sync health: {{.SyncErr}}</p>{{end}}
</body>
</html>
`))
