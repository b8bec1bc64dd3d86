package main

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/setup"
)

// TestReadyzSaysWhy: /readyz names the replica and, when not ready, the
// reason, with a 503 and Retry-After a balancer and an operator can act on;
// a webhook refused meanwhile is a 503 with Retry-After, never a 500.
func TestReadyzSaysWhy(t *testing.T) {
	cfg := testsvc.Config(t)
	cfg.Instance = "replica-7"
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(routes(svc, log, setup.Options{Logger: log}))
	defer srv.Close()

	type readyz struct {
		Ready   bool     `json:"ready"`
		Replica string   `json:"replica"`
		Reasons []string `json:"reasons"`
	}
	read := func() (int, http.Header, readyz) {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r readyz
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
			t.Fatalf("readyz body: %v", err)
		}
		return resp.StatusCode, resp.Header, r
	}
	code, _, r := read()
	if code != 200 || !r.Ready || r.Replica != "replica-7" || len(r.Reasons) != 0 {
		t.Fatalf("ready store: %d %+v", code, r)
	}

	testsvc.Store(t, svc).Close() // the database is gone
	code, hdr, r := read()
	if code != 503 || r.Ready || hdr.Get("Retry-After") == "" || len(r.Reasons) != 1 || !strings.HasPrefix(r.Reasons[0], "store unreachable: ") {
		t.Fatalf("closed store: %d Retry-After %q %+v", code, hdr.Get("Retry-After"), r)
	}

	body := []byte(`{"id":"T-1","title":"x","assignees":["alice"],"version":1}`)
	req, _ := http.NewRequest("POST", srv.URL+"/hooks/tracker", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Duebridge-Signature", bridge.Sign(testsvc.Secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("webhook with the store gone: %d Retry-After %q, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

// TestMetricsReplicaLabel: every sample carries replica=<instance>, so the
// series of several processes behind one balancer stay apart.
func TestMetricsReplicaLabel(t *testing.T) {
	cfg := testsvc.Config(t)
	cfg.Instance = "db-2"
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(routes(svc, log, setup.Options{Logger: log}))
	defer srv.Close()
	if resp, err := http.Get(srv.URL + "/healthz"); err == nil { // one request, so the HTTP series exist
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	samples := 0
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		samples++
		if !strings.Contains(line, `replica="db-2"`) {
			t.Errorf("sample without the replica label: %s", line)
		}
	}
	if samples == 0 || !strings.Contains(string(b), `duebridge_http_requests_total{code="200",method="GET",replica="db-2",route="GET /healthz"}`) {
		t.Fatalf("no labelled HTTP series in:\n%.2000s", b)
	}
}

var replicaLabel = regexp.MustCompile(`,replica="[^"]*"|replica="[^"]*",?`)

// withoutReplica drops the replica label from a /metrics body, for tests
// that look for series by their other labels.
func withoutReplica(body string) string {
	return strings.ReplaceAll(replicaLabel.ReplaceAllString(body, ""), "{}", "")
}
