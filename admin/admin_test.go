package admin_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/admin"
	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/webhook"
)

type env struct {
	t   *testing.T
	svc *bridge.Service
	srv *httptest.Server
}

// newEnv serves the admin page and the CalDAV handler (whose sync health the
// page shows) on 127.0.0.1:0; alice is the admin, bob and carol are not.
func newEnv(t *testing.T) *env {
	cfg := testsvc.Config(t)
	cfg.Users[0].Admin = true
	cfg.Limits.LoginFailureDelay = time.Millisecond
	cfg.Limits.LockoutFailures = 3
	cfg.Limits.LockoutWindow = time.Minute
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cal := calendar.NewHandler(svc.CalDAV(), calendar.Options{Logger: log})
	mux := http.NewServeMux()
	mux.Handle(calendar.Prefix, cal)
	adm := admin.New(admin.Deps{
		Auth: svc, Sync: cal, Queues: svc, Sources: svc, Lockouts: svc, Devices: svc, Users: svc.CalDAV().Users,
		Ready: func(ctx context.Context) []string {
			if err := testsvc.Store(t, svc).Ping(ctx); err != nil {
				return []string{"store unreachable: " + err.Error()}
			}
			return nil
		},
		Metrics: svc.Registry(), Version: "v9.8.7-test", Replica: "r1", Logger: log,
	})
	mux.Handle("GET "+admin.Path, adm)
	mux.Handle("POST "+admin.RetryPath, adm)
	mux.Handle("POST /hooks/{source}", webhook.NewHandler(svc, webhook.Options{Logger: log}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, svc: svc, srv: srv}
}

func (e *env) get(user, pw string) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+admin.Path, nil)
	if user != "" {
		req.SetBasicAuth(user, pw)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// sync makes user's device (ua) run a full sync-collection of its first
// collection, so the sync health knows it.
func (e *env) sync(user, ua string) {
	e.t.Helper()
	colls, err := e.svc.CalDAV().Collections(context.Background(), user)
	if err != nil || len(colls) == 0 {
		e.t.Fatalf("%s's collections: %v %v", user, colls, err)
	}
	body := `<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`
	req, _ := http.NewRequest("REPORT", e.srv.URL+"/dav/"+user+"/calendars/"+colls[0].Name+"/", strings.NewReader(body))
	req.SetBasicAuth(user, testsvc.Password(user))
	req.Header.Set("Content-Type", "application/xml")
	req.Header.Set("User-Agent", ua)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		e.t.Fatalf("sync-collection of %s: %d", user, resp.StatusCode)
	}
}

func TestAdminPage(t *testing.T) {
	e := newEnv(t)
	due := store.When{Time: time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second)}
	testsvc.Ingest(t, e.svc,
		bridge.TaskInput{ID: "A-1", Title: "Ship it", Project: "Apollo", Assignees: []string{"alice"}, Due: due, Status: "open"},
		bridge.TaskInput{ID: "B-1", Title: "Bob's secret task", Project: "Zeus", Assignees: []string{"bob"}, Due: due, Status: "open"})
	const aliceUA = "iOS/18.1 (22B83) dataaccessd/1.0 alice-phone"
	const bobUA = "macOS/15.1 (24B83) CalendarAgent/1000 bob-mac"
	e.sync("alice", aliceUA)
	e.sync("bob", bobUA)
	if _, err := e.svc.RetentionPass(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, devicePW, err := e.svc.IssueDevicePassword(context.Background(), "bob", "bob's iPad")
	if err != nil {
		t.Fatal(err)
	}

	resp, page := e.get("alice", testsvc.Password("alice"))
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("admin: %d %s", resp.StatusCode, page)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") || strings.Contains(page, "<script") {
		t.Errorf("CSP %q, or the page has a script", csp)
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q", resp.Header.Get("Cache-Control"))
	}
	for _, want := range []string{
		`id="ready" class="ok"`, "v9.8.7-test",
		"<th>Alert schedules</th><td>2</td>",
		"<th>Completion callbacks pending</th><td>0</td>",
		"<h3>alice</h3>", "<h3>bob</h3>", "<h3>carol</h3>",
		aliceUA, bobUA,
		"<tr><td>bob</td><td>bob&#39;s iPad</td>", // device passwords: who and which device
	} {
		if !strings.Contains(page, want) {
			t.Errorf("admin page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, devicePW) || strings.Contains(page, devicePW[len(devicePW)-20:]) {
		t.Error("the admin page shows a device password")
	}
	if m := regexp.MustCompile(`Last pass completed: (\S+);`).FindStringSubmatch(page); m == nil || m[1] == "never" {
		t.Errorf("retention ran, page says %v", m)
	}

	// Not an admin: 403, and nothing of anyone's data, own or other.
	resp, body := e.get("bob", testsvc.Password("bob"))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("bob: %d, want 403", resp.StatusCode)
	}
	for _, secret := range []string{aliceUA, bobUA, "alice", "Ship it", "Bob's secret", "v9.8.7-test", "iPad"} {
		if strings.Contains(body, secret) {
			t.Errorf("bob's 403 shows %q: %s", secret, body)
		}
	}

	// Anonymous and wrong password: 401 with a challenge, no data.
	for _, c := range []struct{ user, pw string }{{"", ""}, {"alice", "wrong"}} {
		resp, body := e.get(c.user, c.pw)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || strings.Contains(body, aliceUA) {
			t.Errorf("login %q: %d %q %s", c.user, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}

	// Writes are refused.
	r, err := e.srv.Client().Post(e.srv.URL+admin.Path, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", r.StatusCode)
	}
}

// TestAdminLockout: the page shares the core's lock-out: after
// limits.lockout_failures wrong passwords, even the right one gets 429.
func TestAdminLockout(t *testing.T) {
	e := newEnv(t)
	for i := range 3 { // distinct passwords: a repeated attempt counts once
		e.get("alice", "wrong"+strconv.Itoa(i))
	}
	resp, body := e.get("alice", testsvc.Password("alice"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || strings.Contains(body, "<h3>") {
		t.Fatalf("after 3 failures: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
}

// TestAdminNotReady: with the store gone the page still answers, says not
// ready and why, and names what it could not read.
func TestAdminNotReady(t *testing.T) {
	e := newEnv(t)
	e.get("alice", testsvc.Password("alice")) // the login is cached; the store is not needed for it
	testsvc.Store(t, e.svc).Close()
	resp, page := e.get("alice", testsvc.Password("alice"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin with the store closed: %d %s", resp.StatusCode, page)
	}
	for _, want := range []string{`id="ready" class="bad"`, "store unreachable", "Could not read the queues"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q:\n%s", want, page)
		}
	}
}

// post sends the retry button's POST; site is the Sec-Fetch-Site a browser sends.
func (e *env) post(user, pw, site string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+admin.RetryPath, nil)
	req.SetBasicAuth(user, pw)
	req.Header.Set("Sec-Fetch-Site", site)
	c := *e.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// dueNow lists the event ids of callbacks due now.
func (e *env) dueNow() []string {
	e.t.Helper()
	var ids []string
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		cs, err := tx.DueCallbacks(e.svc.Now(), 100)
		for _, c := range cs {
			ids = append(ids, c.EventID)
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// failing queues a callback for source that failed attempts times with
// lastErr and waits until next.
func (e *env) failing(source, eventID, lastErr string, next time.Time) {
	e.t.Helper()
	err := testsvc.Store(e.t, e.svc).Update(context.Background(), func(tx store.Tx) error {
		c := &store.Callback{EventID: eventID, Source: source, TaskID: "T-" + eventID, Body: []byte(`{}`)}
		if err := tx.EnqueueCallback(c); err != nil {
			return err
		}
		return tx.MarkFailed(c.ID, 3, next, lastErr)
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestAdminRetryCallbacks: the button makes failing callbacks due now, for
// an admin's same-origin POST only.
func TestAdminRetryCallbacks(t *testing.T) {
	e := newEnv(t)
	src := e.svc.Config().Sources[0].Name
	e.failing(src, "ev-late", "callback answered 502 Bad Gateway", e.svc.Now().Add(time.Hour))
	// Claimed right now (being delivered): a retry would send it twice.
	e.failing(src, "ev-claimed", "callback answered 500", e.svc.Now().Add(time.Minute))
	if due := e.dueNow(); len(due) != 0 {
		t.Fatalf("due before the retry: %v", due)
	}
	for _, c := range []struct {
		user, site string
		want       int
	}{
		{"alice", "cross-site", http.StatusForbidden},
		{"bob", "same-origin", http.StatusForbidden},
		{"alice", "", http.StatusUnauthorized}, // wrong password below
	} {
		pw := testsvc.Password(c.user)
		if c.want == http.StatusUnauthorized {
			pw = "wrong"
		}
		if resp := e.post(c.user, pw, c.site); resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.user, c.site, resp.StatusCode, c.want)
		}
	}
	if due := e.dueNow(); len(due) != 0 {
		t.Fatalf("refused POSTs changed the outbox: due %v", due)
	}
	resp := e.post("alice", testsvc.Password("alice"), "same-origin")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != admin.Path+"?retried=1" {
		t.Fatalf("retry: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if due := e.dueNow(); len(due) != 1 || due[0] != "ev-late" {
		t.Errorf("due after the retry: %v, want [ev-late]", due)
	}
	_, page := e.get("alice", testsvc.Password("alice"))
	if !strings.Contains(page, `<form id="retry" method="post" action="/admin/retry-callbacks">`) {
		t.Errorf("page lacks the retry button:\n%s", page)
	}
	if r, err := e.srv.Client().Get(e.srv.URL + admin.RetryPath); err == nil {
		r.Body.Close()
		if r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("GET %s: %d", admin.RetryPath, r.StatusCode)
		}
	}
}

// hook sends a webhook delivery for source "tracker", signed with sig.
func (e *env) hook(body []byte, sig string) int {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+"/hooks/tracker", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.SignatureHeader, sig)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestAdminSources: per source the last delivery, the accepted and
// rejected records, and the callback queue with its last error.
func TestAdminSources(t *testing.T) {
	e := newEnv(t)
	due := store.When{Time: time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)}
	body := testsvc.JSON(t, map[string]any{"id": "S-1", "title": "Sourced", "assignees": []string{"alice"},
		"due": due.Time.Format(time.RFC3339), "version": 1})
	if got := e.hook(body, webhook.Sign(testsvc.Secret, body)); got != http.StatusOK {
		t.Fatalf("signed delivery: %d", got)
	}
	if got := e.hook(body, webhook.Sign("wrong-secret", body)); got/100 != 4 {
		t.Fatalf("badly signed delivery: %d", got)
	}
	e.failing("tracker", "ev-1", "callback answered 502 Bad Gateway", e.svc.Now().Add(time.Hour))
	e.failing("gone", "ev-2", "source \"gone\" is no longer configured", e.svc.Now().Add(time.Hour))
	err := testsvc.Store(t, e.svc).Update(context.Background(), func(tx store.Tx) error {
		c := &store.Callback{EventID: "ev-3", Source: "tracker", TaskID: "S-1", Body: []byte(`{}`)}
		if err := tx.EnqueueCallback(c); err != nil {
			return err
		}
		return tx.MarkDelivered(c.ID, e.svc.Now())
	})
	if err != nil {
		t.Fatal(err)
	}

	resp, page := e.get("alice", testsvc.Password("alice"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin: %d %s", resp.StatusCode, page)
	}
	row := regexp.MustCompile(`(?s)<tr><td>tracker</td>\s*<td>(\S+)</td>\s*<td>(.*?)</td>\s*<td>(.*?)</td></tr>`).FindStringSubmatch(page)
	if row == nil {
		t.Fatalf("no row for tracker:\n%s", page)
	}
	if _, err := time.Parse(time.RFC3339, row[1]); err != nil {
		t.Errorf("tracker's last delivery %q", row[1])
	}
	if !strings.Contains(row[2], "1 accepted") || !strings.Contains(row[2], `class="bad">1 rejected`) {
		t.Errorf("tracker's records: %s", row[2])
	}
	if !strings.Contains(row[3], "1 pending") || !strings.Contains(row[3], `class="bad">1 failing`) ||
		!strings.Contains(row[3], "502 Bad Gateway") || strings.Contains(row[3], "last delivered never") {
		t.Errorf("tracker's callbacks: %s", row[3])
	}
	if !strings.Contains(page, `<tr><td>gone <span class="muted">(no longer configured)</span></td>`) ||
		!strings.Contains(page, "1 pending") {
		t.Errorf("page lacks the unconfigured source with queued callbacks:\n%s", page)
	}
}

// TestAdminLockoutsNow: the page lists the lock-outs in force.
func TestAdminLockoutsNow(t *testing.T) {
	e := newEnv(t)
	// alice logs in first: her address is then trusted, so the lock that
	// bob's guesses put on 127.0.0.1 does not shut her out.
	if _, page := e.get("alice", testsvc.Password("alice")); !strings.Contains(page, `<p id="lockouts" class="ok">None.</p>`) {
		t.Fatalf("no lock-outs yet, page says:\n%s", page)
	}
	for i := range 3 {
		e.get("bob", "wrong"+strconv.Itoa(i))
	}
	resp, page := e.get("alice", testsvc.Password("alice"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin: %d %s", resp.StatusCode, page)
	}
	m := regexp.MustCompile(`<tr><td>user <code>bob</code></td><td>(\S+)</td></tr>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("page lacks bob's lock-out:\n%s", page)
	}
	until, err := time.Parse(time.RFC3339, m[1])
	if err != nil || until.Before(e.svc.Now()) || until.After(e.svc.Now().Add(time.Minute+time.Second)) {
		t.Errorf("bob locked until %q (%v), want within limits.lockout_window from now", m[1], err)
	}
	if strings.Contains(page, "user <code>alice</code>") {
		t.Errorf("alice shown locked:\n%s", page)
	}
}
