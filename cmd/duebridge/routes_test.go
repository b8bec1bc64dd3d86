package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
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
	if code != http.StatusOK || !strings.Contains(ics, "UID:"+bridge.EventUID("tracker", "F-1")) || !strings.Contains(ics, "X-WR-CALNAME:Deadlines: Apollo") {
		t.Fatalf("GET feed: %d\n%s", code, ics)
	}
	if out := run("--revoke"); !strings.Contains(out, "revoked") {
		t.Errorf("revoke said %q", out)
	}
	if code, _ := get(t, feedURL); code != http.StatusNotFound {
		t.Errorf("revoked feed: %d", code)
	}
}
