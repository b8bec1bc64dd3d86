package feed_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/feed"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

type env struct {
	svc *bridge.Service
	srv *httptest.Server
	dir string
}

func newEnv(t *testing.T) *env {
	cfg := testsvc.Config(t)
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	return &env{svc: svc, srv: startServer(t, svc), dir: cfg.DataDir}
}

func startServer(t testing.TB, svc *bridge.Service) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle(feed.Path, feed.NewHandler(svc, feed.Options{Refresh: func() time.Duration { return svc.Config().Feeds.Refresh }}))
	srv := httptest.NewServer(mux) // 127.0.0.1:0
	t.Cleanup(srv.Close)
	return srv
}

func newServer(t testing.TB, svc *bridge.Service) string { return startServer(t, svc).URL }

func (e *env) get(t *testing.T, path string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func task(id, project string, due time.Time, allDay bool, users ...string) bridge.TaskInput {
	return bridge.TaskInput{ID: id, Title: "Task " + id, Project: project, Assignees: users,
		Due: store.When{Time: due, AllDay: allDay}, UpdatedAt: time.Now().UTC().Truncate(time.Second)}
}

func issue(t *testing.T, svc *bridge.Service, user string) string {
	t.Helper()
	tok, err := svc.IssueFeedToken(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	if !feed.ValidToken(tok) {
		t.Fatalf("issued token %q has not the token shape", tok)
	}
	return tok
}

// events parses a feed with go-ical and returns its VEVENTs by UID.
func events(t *testing.T, body []byte) (*ical.Calendar, map[string]*ical.Component) {
	t.Helper()
	cal, err := ical.NewDecoder(bytes.NewReader(body)).Decode()
	if err != nil {
		t.Fatalf("feed does not parse: %v\n%s", err, body)
	}
	out := map[string]*ical.Component{}
	for _, ev := range cal.Events() {
		uid, _ := ev.Props.Text(ical.PropUID)
		out[uid] = ev.Component
	}
	return cal, out
}

func TestFeedServesOwnDeadlinesWithCaching(t *testing.T) {
	e := newEnv(t)
	day := time.Now().UTC().AddDate(0, 0, 3).Truncate(24 * time.Hour)
	testsvc.Ingest(t, e.svc,
		task("1", "Apollo", day.Add(15*time.Hour), false, "alice"),
		task("2", "Zeus", day.AddDate(0, 0, 1), true, "alice", "bob"),
		task("3", "Apollo", day, true, "bob"),
		bridge.TaskInput{ID: "4", Title: "no due date", Assignees: []string{"alice"}})
	tok := issue(t, e.svc, "alice")

	resp, body := e.get(t, "/feeds/"+tok+".ics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET feed: %s %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/calendar; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	for _, h := range []string{"ETag", "Last-Modified"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("no %s header", h)
		}
	}
	if cc := resp.Header.Get("Cache-Control"); !strings.Contains(cc, "private") {
		t.Errorf("Cache-Control %q: a secret URL must not sit in shared caches", cc)
	}
	cal, evs := events(t, body)
	if len(evs) != 2 || evs[render.EventUID("tracker", "1")] == nil || evs[render.EventUID("tracker", "2")] == nil {
		t.Fatalf("alice's feed has %d events %v, want tasks 1 and 2", len(evs), keys(evs))
	}
	if len(cal.Children) != 2 {
		t.Errorf("feed has %d components, want only the 2 VEVENTs", len(cal.Children))
	}
	for prop, want := range map[string]string{"X-WR-CALNAME": "Deadlines", "NAME": "Deadlines", "X-PUBLISHED-TTL": "PT1H", "REFRESH-INTERVAL": "PT1H", "METHOD": "PUBLISH"} {
		if p := cal.Props.Get(prop); p == nil || p.Value != want {
			t.Errorf("%s = %v, want %q", prop, p, want)
		}
	}
	if p := cal.Props.Get("REFRESH-INTERVAL"); p == nil || p.Params.Get(ical.ParamValue) != "DURATION" {
		t.Errorf("REFRESH-INTERVAL needs VALUE=DURATION: %v", p)
	}
	if s, _ := evs[render.EventUID("tracker", "1")].Props.DateTime(ical.PropDateTimeStart, time.UTC); !s.Equal(day.Add(15 * time.Hour)) {
		t.Errorf("task 1 DTSTART %v", s)
	}

	// Polling an unchanged feed costs a 304 without a body.
	etag, lastMod := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	resp, body = e.get(t, "/feeds/"+tok+".ics", "If-None-Match", etag)
	if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("ETag") != etag {
		t.Fatalf("revalidation: %s, %d bytes, ETag %q (want 304, none, %q)", resp.Status, len(body), resp.Header.Get("ETag"), etag)
	}
	if resp, _ = e.get(t, "/feeds/"+tok+".ics", "If-Modified-Since", lastMod); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-Modified-Since %s: %s, want 304", lastMod, resp.Status)
	}

	// A change, a deletion: a new ETag and the new content.
	up := task("1", "Apollo", day.Add(17*time.Hour), false, "alice")
	up.UpdatedAt = up.UpdatedAt.Add(time.Second)
	del := bridge.TaskInput{ID: "2", Deleted: true, UpdatedAt: up.UpdatedAt}
	testsvc.Ingest(t, e.svc, up, del)
	resp, body = e.get(t, "/feeds/"+tok+".ics", "If-None-Match", etag)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == etag {
		t.Fatalf("after a change: %s ETag %q (old %q)", resp.Status, resp.Header.Get("ETag"), etag)
	}
	_, evs = events(t, body)
	if len(evs) != 1 {
		t.Fatalf("after deleting task 2: events %v", keys(evs))
	}
	if s, _ := evs[render.EventUID("tracker", "1")].Props.DateTime(ical.PropDateTimeStart, time.UTC); !s.Equal(day.Add(17 * time.Hour)) {
		t.Errorf("task 1 moved, DTSTART still %v", s)
	}

	// HEAD answers the headers only.
	req, _ := http.NewRequest(http.MethodHead, e.srv.URL+"/feeds/"+tok+".ics", nil)
	hr, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusOK || hr.Header.Get("ETag") == "" {
		t.Errorf("HEAD: %s", hr.Status)
	}
}

func TestFeedPerProject(t *testing.T) {
	e := newEnv(t)
	due := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)
	testsvc.Ingest(t, e.svc, task("1", "Apollo", due, false, "alice"), task("2", "Zeus", due, false, "alice"))
	tok := issue(t, e.svc, "alice")
	resp, body := e.get(t, "/feeds/"+tok+".ics?project=Zeus")
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	cal, evs := events(t, body)
	if len(evs) != 1 || evs[render.EventUID("tracker", "2")] == nil {
		t.Fatalf("project Zeus: %v", keys(evs))
	}
	if n, _ := cal.Props.Text("X-WR-CALNAME"); n != "Deadlines: Zeus" {
		t.Errorf("X-WR-CALNAME %q", n)
	}
	all, _ := e.get(t, "/feeds/"+tok+".ics")
	if all.Header.Get("ETag") == resp.Header.Get("ETag") {
		t.Error("the whole feed and one project share an ETag")
	}
}

func TestFeedTokens(t *testing.T) {
	e := newEnv(t)
	due := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)
	testsvc.Ingest(t, e.svc, task("1", "", due, false, "alice"), task("2", "", due, false, "bob"))
	alice := issue(t, e.svc, "alice")
	bob := issue(t, e.svc, "bob")

	// Each token opens its own user's feed only.
	for tok, want := range map[string]string{alice: "1", bob: "2"} {
		_, body := e.get(t, "/feeds/"+tok+".ics")
		if _, evs := events(t, body); len(evs) != 1 || evs[render.EventUID("tracker", want)] == nil {
			t.Errorf("feed shows %v, want task %s only", keys(evs), want)
		}
	}
	// Unknown, malformed and wrong-method requests learn nothing.
	guess := strings.Repeat("A", feed.TokenLen)
	for _, p := range []string{"/feeds/" + guess + ".ics", "/feeds/" + alice, "/feeds/short.ics", "/feeds/" + alice[:42] + "!.ics"} {
		if resp, _ := e.get(t, p); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	resp, err := e.srv.Client().Post(e.srv.URL+"/feeds/"+alice+".ics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s", resp.Status)
	}

	// Only a keyed hash is stored: the token is nowhere in the database.
	if files, _ := filepath.Glob(filepath.Join(e.dir, "*")); len(files) == 0 {
		t.Fatal("no database files")
	} else {
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(alice)) {
				t.Errorf("%s contains the token in clear", f)
			}
		}
	}

	// Renewing revokes the old token; revoking leaves none.
	renewed := issue(t, e.svc, "alice")
	if resp, _ := e.get(t, "/feeds/"+alice+".ics"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("old token after renewal: %s", resp.Status)
	}
	if resp, _ := e.get(t, "/feeds/"+renewed+".ics"); resp.StatusCode != http.StatusOK {
		t.Errorf("renewed token: %s", resp.Status)
	}
	if ok, err := e.svc.RevokeFeedToken(context.Background(), "alice"); err != nil || !ok {
		t.Fatalf("revoke: %v %v", ok, err)
	}
	if resp, _ := e.get(t, "/feeds/"+renewed+".ics"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("revoked token: %s", resp.Status)
	}
	if ok, _ := e.svc.RevokeFeedToken(context.Background(), "alice"); ok {
		t.Error("second revoke found a live token")
	}
	if resp, _ := e.get(t, "/feeds/"+bob+".ics"); resp.StatusCode != http.StatusOK {
		t.Errorf("bob's token after alice's revocation: %s", resp.Status)
	}

	// A user removed from the config loses the feed.
	cfg := *e.svc.Config()
	cfg.Users = cfg.Users[:1] // alice only
	e.svc.SetConfig(context.Background(), &cfg)
	if resp, _ := e.get(t, "/feeds/"+bob+".ics"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("removed user's feed: %s", resp.Status)
	}
	if _, err := e.svc.IssueFeedToken(context.Background(), "bob"); err == nil {
		t.Error("issued a token to an unknown user")
	}
}

func TestRenderFoldsAndEscapesName(t *testing.T) {
	long := strings.Repeat("Ünïcode, project; ", 10)
	body := feed.Render(nil, long, 90*time.Minute, nil)
	for _, line := range strings.Split(string(body), "\r\n") {
		if len(line) > 75 {
			t.Errorf("line of %d octets: %q", len(line), line)
		}
	}
	cal, err := ical.NewDecoder(bytes.NewReader(body)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := cal.Props.Text("X-WR-CALNAME"); n != long {
		t.Errorf("name %q, want %q", n, long)
	}
	if p := cal.Props.Get("X-PUBLISHED-TTL"); p.Value != "PT90M" {
		t.Errorf("TTL %q", p.Value)
	}
}

func keys(m map[string]*ical.Component) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestFeedCarriesTheRemindersAlarms: on CalDAV only the reminder alerts, but
// a feed subscriber has no reminder, so each deadline in the feed carries the
// user's alarms for that task (lead times 24h and 1h in the test config), and
// none once the task is done.
func TestFeedCarriesTheRemindersAlarms(t *testing.T) {
	e := newEnv(t)
	due := time.Now().UTC().AddDate(0, 0, 3).Truncate(time.Hour)
	testsvc.Ingest(t, e.svc, task("1", "Apollo", due, false, "alice"))
	tok := issue(t, e.svc, "alice")

	_, body := e.get(t, "/feeds/"+tok+".ics")
	_, evs := events(t, body)
	ev := evs[render.EventUID("tracker", "1")]
	if ev == nil {
		t.Fatalf("no event for task 1:\n%s", body)
	}
	var triggers []time.Time
	for _, a := range ev.Children {
		if a.Name != ical.CompAlarm {
			continue
		}
		at, err := a.Props.DateTime(ical.PropTrigger, time.UTC)
		if err != nil {
			t.Fatalf("alarm trigger: %v", err)
		}
		triggers = append(triggers, at)
	}
	if len(triggers) != len(e.svc.Config().Notifications.LeadTimes) || len(triggers) == 0 {
		t.Fatalf("feed event has %d alarms %v, want one per lead time %v:\n%s", len(triggers), triggers, e.svc.Config().Notifications.LeadTimes, body)
	}
	for i, lead := range e.svc.Config().Notifications.LeadTimes {
		if !triggers[i].Equal(due.Add(-lead)) {
			t.Errorf("alarm %d at %v, want %v", i, triggers[i], due.Add(-lead))
		}
	}

	done := task("1", "Apollo", due, false, "alice")
	done.Status, done.UpdatedAt = "done", done.UpdatedAt.Add(time.Second)
	testsvc.Ingest(t, e.svc, done)
	_, body = e.get(t, "/feeds/"+tok+".ics")
	if bytes.Contains(body, []byte("BEGIN:VALARM")) {
		t.Errorf("a done task's deadline still alerts in the feed:\n%s", body)
	}
}
