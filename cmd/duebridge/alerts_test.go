package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.yaml.in/yaml/v3"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var metricName = regexp.MustCompile(`\bduebridge_[a-z0-9_]+`)

// TestAlertRules parses packaging/prometheus/alerts.yml and the Grafana
// dashboard, checks each rule's and panel's shape, and checks that every duebridge_* name it uses is on the /metrics
// of a running server (with a stream source, a webhook delivery, a lock-out
// and a CalDAV limit hit, so labelled series exist).
func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("../../packaging/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true) // a misspelt key is an error, as in promtool
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	used := map[string]bool{}
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q: needs a name and rules", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" || seen[r.Alert] {
				t.Errorf("rule %q: missing or repeated alert name", r.Alert)
			}
			seen[r.Alert] = true
			if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") || strings.Count(r.Expr, "{") != strings.Count(r.Expr, "}") || strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: expr unbalanced or empty: %s", r.Alert, r.Expr)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("%s: for %q: %v", r.Alert, r.For, err)
				}
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) || r.Annotations["summary"] == "" {
				t.Errorf("%s: needs labels.severity (critical|warning|info) and annotations.summary", r.Alert)
			}
			for _, n := range metricName.FindAllString(r.Expr, -1) {
				used[n] = true
			}
		}
	}
	if len(seen) < 10 || len(used) < 10 {
		t.Fatalf("only %d rules on %d duebridge metrics", len(seen), len(used))
	}
	dash := dashboardMetrics(t)
	have := scrapeLiveServer(t)
	for n := range used {
		if !have[n] {
			t.Errorf("alerts.yml uses %s, which the server does not export", n)
		}
	}
	for n := range dash {
		if !have[n] {
			t.Errorf("grafana/duebridge.json uses %s, which the server does not export", n)
		}
	}
}

// dashboardMetrics decodes packaging/grafana/duebridge.json, checks each
// panel has a title, a unique id and PromQL targets, and returns the
// duebridge_* names the targets use.
func dashboardMetrics(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile("../../packaging/grafana/duebridge.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("duebridge.json: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) < 8 {
		t.Fatalf("dashboard: title %q uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	used := map[string]bool{}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if p.Title == "" || p.Type == "" || ids[p.ID] || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: needs a title, a type, a unique id and targets", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, tg := range p.Targets {
			if tg.RefID == "" || strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("panel %q: target %q: %s", p.Title, tg.RefID, tg.Expr)
			}
			for _, n := range metricName.FindAllString(tg.Expr, -1) {
				used[n] = true
			}
		}
	}
	return used
}

// scrapeLiveServer starts the server with a kafka source and limits low
// enough to hit, exercises it, and returns the metric names on /metrics.
func scrapeLiveServer(t *testing.T) map[string]bool {
	t.Helper()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "alice")
	b, _ := os.ReadFile(cfgPath)
	b = append(b, fmt.Sprintf("  - name: ops\n    kind: kafka\n    secret: ops-secret-123\n    stream:\n      brokers: [%q]\n      topics: [tasks]\n", cluster.ListenAddrs()[0])...)
	b = append(b, "limits:\n  lockout_failures: 2\n  login_failure_delay: 1ms\n  multiget_hrefs: 1\n"...)
	writeAtomic(t, cfgPath, string(b))
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	val, _ := json.Marshal(map[string]any{"id": "S-1", "title": "from the stream", "version": 1, "assignees": []string{"alice"}})
	if err := prod.ProduceSync(context.Background(), &kgo.Record{Topic: "tasks", Key: []byte("S-1"), Value: val}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	r := start(t, cfgPath)
	due := time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second)
	body := fmt.Sprintf(`{"id":"W-1","title":"Ship it","project":"Apollo","assignees":["alice"],"due":%q}`, due.Format(time.RFC3339))
	if code, resp := postTask(t, r.base, []byte(body)); code != http.StatusOK {
		t.Fatalf("post task: %d %s", code, resp)
	}
	do := func(method, path, user, pw, body string) int {
		req, _ := http.NewRequest(method, r.base+path, strings.NewReader(body))
		req.SetBasicAuth(user, pw)
		if body != "" {
			req.Header.Set("Content-Type", "application/xml")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// A multiget over limits.multiget_hrefs, before alice is locked out.
	colls, err := r.svc.CalDAV().Collections(context.Background(), "alice")
	if err != nil || len(colls) == 0 {
		t.Fatalf("alice's collections: %v %v", colls, err)
	}
	coll := "/dav/alice/calendars/" + colls[0].Name + "/"
	multiget := `<?xml version="1.0"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/></d:prop>` +
		`<d:href>` + coll + `a.ics</d:href><d:href>` + coll + `b.ics</d:href></c:calendar-multiget>`
	if code := do("REPORT", coll, "alice", "alice-pw", multiget); code < 400 || code >= 500 {
		t.Errorf("multiget over the limit: %d, want a 4xx", code)
	}
	for i := range 2 { // distinct wrong passwords: two failures lock alice out
		do("GET", "/admin", "alice", fmt.Sprintf("wrong-%d", i), "")
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		have := scrape(t, r.base)
		missing := 0
		for _, n := range []string{"duebridge_stream_lag", "duebridge_login_lockouts_total"} {
			if !have[n] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return have
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// scrape reads /metrics (the test is a loopback client) and returns the
// names of the samples on it.
func scrape(t *testing.T, base string) map[string]bool {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}
