package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/setup"
)

// TestMetricsGuard: /metrics names users in its labels, so from another
// host it needs an admin's login; a local scraper needs none.
func TestMetricsGuard(t *testing.T) {
	cfg := testsvc.Config(t)
	cfg.Users[0].Admin = true // alice
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("metrics")) })
	h := adminOrLoopback(svc, ok)
	cases := []struct {
		name, remote, user string
		want               int
	}{
		{"loopback v4", "127.0.0.1:5000", "", 200},
		{"loopback v6", "[::1]:5000", "", 200},
		{"remote, no login", "192.0.2.7:5000", "", 401},
		{"remote, wrong password", "192.0.2.7:5000", "alice:nope", 401},
		{"remote, not admin", "192.0.2.7:5000", "bob", 403},
		{"remote, admin", "192.0.2.7:5000", "alice", 200},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = c.remote
		switch c.user {
		case "":
		case "alice:nope":
			r.SetBasicAuth("alice", "nope")
		default:
			r.SetBasicAuth(c.user, testsvc.Password(c.user))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d", c.name, w.Code, c.want)
		}
	}
}

func TestFeedURLCommand(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "alice")
	r := start(t, cfgPath)
	due := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second)
	body := fmt.Sprintf(`{"id":"F-1","title":"Ship it","project":"Apollo","assignees":["alice"],"due":%q}`, due.Format(time.RFC3339))
	if code, resp := postTask(t, r.base, []byte(body)); code != http.StatusOK {
		t.Fatalf("post task: %d %s", code, resp)
	}
	run := func(args ...string) string {
		t.Helper()
		var out bytes.Buffer
		cmd := rootCmd()
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(append([]string{"feed-url", "--config", cfgPath, "--user", "alice"}, args...))
		if err := cmd.Execute(); err != nil {
			t.Fatalf("feed-url %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
	lines := strings.Split(run("--project", "Apollo"), "\n")
	u, err := url.Parse(lines[0])
	if err != nil || u.Host != "duebridge.test" || !strings.HasPrefix(u.Path, "/feeds/") || u.Query().Get("project") != "Apollo" {
		t.Fatalf("printed URL %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "webcal://duebridge.test/feeds/") {
		t.Errorf("webcal line %q", lines[1])
	}
	feedURL := r.base + u.RequestURI()
	code, ics := get(t, feedURL)
	if code != http.StatusOK || !strings.Contains(ics, "UID:"+render.EventUID("tracker", "F-1")) || !strings.Contains(ics, "X-WR-CALNAME:Deadlines: Apollo") {
		t.Fatalf("GET feed: %d\n%s", code, ics)
	}
	if out := run("--revoke"); !strings.Contains(out, "revoked") {
		t.Errorf("revoke said %q", out)
	}
	if code, _ := get(t, feedURL); code != http.StatusNotFound {
		t.Errorf("revoked feed: %d", code)
	}
}

// TestFeedOnSetupPage: the setup page's form makes the feed URL and shows
// it once (https, webcal:// and a QR code); the feed answers at it through
// the real server; renewing ends the old URL, turning it off ends the new,
// and another site cannot make the browser do either.
func TestFeedOnSetupPage(t *testing.T) {
	dir := t.TempDir()
	r := start(t, writeConfig(t, dir, "alice", "bob"))
	due := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)
	body := fmt.Sprintf(`{"id":"S-1","title":"Feed me","project":"Apollo","assignees":["alice"],"due":%q}`, due.Format(time.RFC3339))
	if code, resp := postTask(t, r.base, []byte(body)); code != http.StatusOK {
		t.Fatalf("post task: %d %s", code, resp)
	}
	send := func(method, path, user string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, r.base+path, nil)
		req.SetBasicAuth(user, user+"-pw")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		return resp, b.String()
	}
	page := func() string {
		t.Helper()
		resp, b := send("GET", "/setup", "alice", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("setup page: %d", resp.StatusCode)
		}
		return b
	}
	if p := page(); !strings.Contains(p, `id="no-feed"`) || !strings.Contains(p, `action="setup/feed"`) {
		t.Fatalf("page without a feed:\n%s", p)
	}
	urlRE := regexp.MustCompile(`id="feed-url">(http://duebridge\.test/feeds/[A-Za-z0-9_-]{43}\.ics)<`)
	issue := func() string {
		t.Helper()
		resp, b := send("POST", "/setup/feed", "alice", map[string]string{"Sec-Fetch-Site": "same-origin"})
		m := urlRE.FindStringSubmatch(b)
		if resp.StatusCode != 200 || m == nil {
			t.Fatalf("issue feed: %d\n%s", resp.StatusCode, b)
		}
		webcal := "webcal://" + strings.TrimPrefix(m[1], "http://")
		if !strings.Contains(b, `href="`+webcal+`"`) || !strings.Contains(b, `id="feed-qr" src="data:image/png;base64,`) {
			t.Fatalf("feed page lacks the webcal link or the QR code:\n%s", b)
		}
		if resp.Header.Get("Cache-Control") != "no-store" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("feed page headers: %v", resp.Header)
		}
		u, _ := url.Parse(m[1])
		return r.base + u.RequestURI()
	}
	first := issue()
	if code, ics := get(t, first); code != 200 || !strings.Contains(ics, "UID:"+render.EventUID("tracker", "S-1")) {
		t.Fatalf("GET feed: %d\n%s", code, ics)
	}
	p := page()
	if !strings.Contains(p, `id="feed-live"`) || strings.Contains(p, strings.TrimPrefix(first, r.base)) {
		t.Fatalf("page with a feed (must not show the URL again):\n%s", p)
	}

	// Another site cannot renew or revoke through the browser; bob's
	// revoke does not touch alice's feed; GET is not a way in.
	for _, c := range []struct {
		method, path, user string
		hdr                map[string]string
		want               int
	}{
		{"POST", "/setup/feed", "alice", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"POST", "/setup/feed/revoke", "alice", map[string]string{"Origin": "https://evil.example"}, 403},
		{"GET", "/setup/feed", "alice", nil, 405},
		{"POST", "/setup/feed/revoke", "bob", nil, 303},
	} {
		if resp, _ := send(c.method, c.path, c.user, c.hdr); resp.StatusCode != c.want {
			t.Errorf("%s %s as %s %v: %d, want %d", c.method, c.path, c.user, c.hdr, resp.StatusCode, c.want)
		}
	}
	if code, _ := get(t, first); code != 200 {
		t.Fatalf("refused requests changed alice's feed: %d", code)
	}

	second := issue()
	if second == first {
		t.Fatal("renewing gave the same URL")
	}
	if code, _ := get(t, first); code != http.StatusNotFound {
		t.Errorf("old feed URL after renewing: %d, want 404", code)
	}
	if code, _ := get(t, second); code != 200 {
		t.Errorf("renewed feed URL: %d", code)
	}
	resp, _ := send("POST", "/setup/feed/revoke", "alice", map[string]string{"Sec-Fetch-Site": "same-origin"})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/setup" {
		t.Fatalf("revoke: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if code, _ := get(t, second); code != http.StatusNotFound {
		t.Errorf("revoked feed URL: %d, want 404", code)
	}
	if p := page(); !strings.Contains(p, `id="no-feed"`) {
		t.Fatalf("page after revoking:\n%s", p)
	}
}

// TestRequestMetricsBounded: HTTP lets a client send any token as a
// method, and each one it invented was a new duebridge_http_requests_total
// series; now they count as method "other", and a route's requests keep
// their route, method and status, including a body refused by its size
// before the mux ran (it was counted as "unmatched").
func TestRequestMetricsBounded(t *testing.T) {
	svc := testsvc.New(t, testsvc.Options{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(routes(svc, log, setup.Options{Logger: log}))
	defer srv.Close()
	do := func(method, path string) {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	for i := range 40 {
		do(fmt.Sprintf("INVENTED%d", i), "/healthz")
	}
	do("GET", "/healthz")
	do("GET", "/healthz")
	do("GET", "/nowhere")
	// Content-Length alone says it is too large: refused before routing,
	// before any of the body is sent.
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /hooks/demo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", int64(1)<<40)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized webhook: %s, want 413", resp.Status)
	}

	mfs, err := svc.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "duebridge_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["route"]+" "+l["method"]+" "+l["code"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"GET /healthz GET 200":          2,
		"unmatched other 405":           40,
		"unmatched GET 404":             1,
		"POST /hooks/{source} POST 413": 1,
	}
	if !maps.Equal(got, want) {
		t.Fatalf("duebridge_http_requests_total series:\n got %v\nwant %v", got, want)
	}
}
