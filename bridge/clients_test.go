package bridge_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/webhook"
)

// davEnv is a real duebridge (CalDAV and webhook handlers) on 127.0.0.1
// over a temporary store; clients speak HTTP to it as they would in use.
type davEnv struct {
	t   *testing.T
	svc *bridge.Service
	srv *httptest.Server
	now time.Time
}

func newDavEnv(t *testing.T, mutate func(*config.Config)) *davEnv {
	t.Helper()
	cfg := testsvc.Config(t)
	if mutate != nil {
		mutate(cfg)
	}
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	h := calendar.NewHandler(svc.CalDAV(), calendar.Options{})
	mux := http.NewServeMux()
	mux.Handle(calendar.Prefix, h)
	mux.Handle("POST /hooks/{source}", webhook.NewHandler(svc, webhook.Options{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &davEnv{t: t, svc: svc, srv: srv, now: time.Now().UTC().Truncate(time.Second)}
}

// do sends one request as alice (hdr: name/value pairs).
func (e *davEnv) do(method, path, body string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.SetBasicAuth("alice", testsvc.Password("alice"))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func (e *davEnv) get(href string) (etag, data string) {
	e.t.Helper()
	resp, body := e.do("GET", href, "")
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", href, resp.StatusCode, body)
	}
	return resp.Header.Get("ETag"), body
}

// put sends a client's PUT with If-Match and returns the answer's ETag.
func (e *davEnv) put(href, ifMatch, body, ua string) string {
	e.t.Helper()
	resp, out := e.do("PUT", href, body, "Content-Type", "text/calendar; charset=utf-8", "If-Match", ifMatch, "User-Agent", ua)
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		e.t.Fatalf("PUT %s: %d %s", href, resp.StatusCode, out)
	}
	return resp.Header.Get("ETag")
}

// edit changes a VTODO as a desktop client re-serialises it: set replaces
// (or with "" removes) properties of the VTODO, add appends lines to it.
func edit(t *testing.T, data string, set map[string]string, add ...string) string {
	t.Helper()
	cal, err := ical.NewDecoder(strings.NewReader(data)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	todo := cal.Children[0]
	for name, v := range set {
		if v == "" {
			todo.Props.Del(name)
			continue
		}
		p := ical.NewProp(name)
		p.Value = v
		todo.Props.Set(p)
	}
	var buf bytes.Buffer
	if err := ical.NewEncoder(&buf).Encode(cal); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if len(add) > 0 {
		i := strings.LastIndex(out, "END:VTODO")
		out = out[:i] + strings.Join(add, "\r\n") + "\r\n" + out[i:]
	}
	return out
}

func (e *davEnv) seed(tasks ...bridge.TaskInput) {
	e.t.Helper()
	testsvc.Ingest(e.t, e.svc, tasks...)
}

const (
	releaseTodo = "/dav/alice/calendars/release-tasks/tracker-T-1.ics"
	vdirsyncer  = "vdirsyncer/0.19.3"
	thunderbird = "Mozilla/5.0 (X11; Linux x86_64; rv:153.0) Gecko/20100101 Thunderbird/153.0"
)

func (e *davEnv) seedRelease(priority string) {
	e.seed(bridge.TaskInput{ID: "T-1", Title: "Ship release 2.1", Project: "Release", Assignees: []string{"alice"},
		Labels: []string{"release", "q4"}, Priority: priority, Due: store.When{Time: e.now.Add(48 * time.Hour)},
		UpdatedAt: e.now, Version: 1})
}

// TestVdirsyncerCompletionNoETag: vdirsyncer (todoman) completes a task with
// two lead-time alarms and CATEGORIES. The stored copy drops the alarms of
// a done task, so it is not the body: the answer must carry no ETag, or
// vdirsyncer records it as the ETag of its own copy and keeps two alarms on
// a done task for good (issue 19 item 1).
func TestVdirsyncerCompletionNoETag(t *testing.T) {
	e := newDavEnv(t, nil)
	e.seedRelease("")
	etag, data := e.get(releaseTodo)
	if n := strings.Count(data, "BEGIN:VALARM"); n != 2 {
		t.Fatalf("want two alarms to start with, got %d:\n%s", n, data)
	}
	body := edit(t, data, map[string]string{"STATUS": "COMPLETED", "COMPLETED": e.now.Format("20060102T150405Z"),
		"PERCENT-COMPLETE": "100"})
	if got := e.put(releaseTodo, etag, body, vdirsyncer); got != "" {
		t.Fatalf("completion answered ETag %s though the stored object differs from the body", got)
	}
	_, stored := e.get(releaseTodo)
	if strings.Contains(stored, "BEGIN:VALARM") || !strings.Contains(stored, "CATEGORIES:release,q4") ||
		!strings.Contains(stored, "STATUS:COMPLETED") {
		t.Fatalf("stored after completion:\n%s", stored)
	}
}

// TestReopenedReminderNoETag: un-ticking re-arms the alarm and raises
// SEQUENCE; the answer must carry no ETag so the phone fetches the object
// with its alarm back (issue 11 item 2).
func TestReopenedReminderNoETag(t *testing.T) {
	e := newDavEnv(t, nil)
	e.seedRelease("")
	etag, data := e.get(releaseTodo)
	done := edit(t, data, map[string]string{"STATUS": "COMPLETED", "COMPLETED": e.now.Format("20060102T150405Z")})
	e.put(releaseTodo, etag, done, thunderbird)
	etag, data = e.get(releaseTodo)
	reopen := edit(t, data, map[string]string{"STATUS": "NEEDS-ACTION", "COMPLETED": "", "PERCENT-COMPLETE": ""})
	if got := e.put(releaseTodo, etag, reopen, "iOS/18.1.1 (22B91) dataaccessd/1.0"); got != "" {
		t.Fatalf("reopen answered ETag %s though the stored object gained its alarms back", got)
	}
	if _, stored := e.get(releaseTodo); strings.Count(stored, "BEGIN:VALARM") != 2 {
		t.Fatalf("reopened reminder without its alarms:\n%s", stored)
	}
}

// TestVerbatimPutKeepsETag: a client that sends back exactly the stored
// bytes gets the ETag (the rule is exact, not "never").
func TestVerbatimPutKeepsETag(t *testing.T) {
	e := newDavEnv(t, nil)
	e.seedRelease("")
	etag, data := e.get(releaseTodo)
	if got := e.put(releaseTodo, etag, data, vdirsyncer); got != etag {
		t.Fatalf("byte-identical PUT answered ETag %q, want %s", got, etag)
	}
}

// TestOverriddenEditChangesObject: todoman edits PRIORITY of a tracker
// task; the task system keeps its value, and the object the client must
// fetch again differs from what it had, so its next sync sees a change
// (issue 19 item 2).
func TestOverriddenEditChangesObject(t *testing.T) {
	e := newDavEnv(t, nil)
	e.seedRelease("urgent")
	etag, data := e.get(releaseTodo)
	body := edit(t, data, map[string]string{"PRIORITY": "9"})
	if got := e.put(releaseTodo, etag, body, vdirsyncer); got != "" {
		t.Fatalf("overridden edit answered ETag %s", got)
	}
	after, stored := e.get(releaseTodo)
	if after == etag {
		t.Fatal("the object is unchanged after an overridden edit: the client keeps PRIORITY:9 for good")
	}
	if !strings.Contains(stored, "PRIORITY:1\r\n") || !strings.Contains(stored, "SEQUENCE:1\r\n") {
		t.Fatalf("want the tracker's PRIORITY:1 and a raised SEQUENCE:\n%s", stored)
	}
	// iOS writing its own value of the same class (2 is still "!!!") is
	// no change: nothing is bumped.
	same := edit(t, stored, map[string]string{"PRIORITY": "2"})
	e.put(releaseTodo, after, same, "iOS/18.1.1 (22B91) dataaccessd/1.0")
	if again, _ := e.get(releaseTodo); again != after {
		t.Fatal("an edit within the same priority class bumped the object")
	}
}

// TestPriorityMarksRoundTrip: what iOS shows for each priority (issue 11
// item 3), and that iOS's own write-back of the marks is no override.
func TestPriorityMarksRoundTrip(t *testing.T) {
	want := map[string]string{"normal": "", "low": "PRIORITY:9\r\n", "high": "PRIORITY:5\r\n", "urgent": "PRIORITY:1\r\n"}
	// iOS writes 0 for none, 9 low, 5 medium, 1 high.
	ios := map[string]string{"normal": "0", "low": "9", "high": "5", "urgent": "1"}
	for prio, line := range want {
		t.Run(prio, func(t *testing.T) {
			e := newDavEnv(t, nil)
			e.seedRelease(prio)
			etag, data := e.get(releaseTodo)
			if line == "" && strings.Contains(data, "PRIORITY") {
				t.Fatalf("an ordinary task carries a PRIORITY (iOS shows marks):\n%s", data)
			}
			if line != "" && !strings.Contains(data, line) {
				t.Fatalf("want %q:\n%s", line, data)
			}
			e.put(releaseTodo, etag, edit(t, data, map[string]string{"PRIORITY": ios[prio]}), "iOS/18.1.1 (22B91) dataaccessd/1.0")
			if after, _ := e.get(releaseTodo); after != etag {
				t.Fatal("iOS writing back its own mark for the same priority changed the object")
			}
		})
	}
}

// TestThunderbirdPrivatePropsKept: Thunderbird's X-MOZ-LASTACK and
// X-MOZ-GENERATION (and Evolution's) stay on the stored copy, also through
// a later tracker update, within limits.client_props_bytes (issue 19 item 3).
func TestThunderbirdPrivatePropsKept(t *testing.T) {
	e := newDavEnv(t, func(c *config.Config) { c.Limits.ClientPropsBytes = 200 })
	e.seedRelease("")
	etag, data := e.get(releaseTodo)
	private := []string{"X-MOZ-LASTACK:20301201T080000Z", "X-MOZ-GENERATION:3", "X-EVOLUTION-CALDAV-ETAG:abc"}
	body := edit(t, data, nil, private...)
	e.put(releaseTodo, etag, body, thunderbird)
	e.seed(bridge.TaskInput{ID: "T-1", Title: "Ship release 2.2", Project: "Release", Assignees: []string{"alice"},
		Labels: []string{"release", "q4"}, Due: store.When{Time: e.now.Add(50 * time.Hour)}, UpdatedAt: e.now.Add(time.Minute), Version: 2})
	_, stored := e.get(releaseTodo)
	for _, p := range private {
		if !strings.Contains(stored, p+"\r\n") {
			t.Errorf("stored object lacks %s:\n%s", p, stored)
		}
	}
	if !strings.Contains(stored, "Ship release 2.2") {
		t.Fatal("tracker update not applied")
	}

	// Over the bound: what does not fit is left out and counted.
	etag, data = e.get(releaseTodo)
	big := edit(t, data, nil, "X-MOZ-SNOOZE-TIME:"+strings.Repeat("9", 300))
	e.put(releaseTodo, etag, big, thunderbird)
	if _, stored = e.get(releaseTodo); strings.Contains(stored, "X-MOZ-SNOOZE-TIME") {
		t.Fatal("client property over limits.client_props_bytes kept")
	}
	if n := testsvc.Metric(t, e.svc, "duebridge_client_props_dropped_total"); n < 1 {
		t.Fatalf("duebridge_client_props_dropped_total = %v", n)
	}
}

// TestDeadlineEventsCarryNoAlarms: through the server, the deadline event
// of a task with lead times has no VALARM; the reminder has them (issue 11
// item 1, issue 19 item 4: one alerting object per task).
func TestDeadlineEventsCarryNoAlarms(t *testing.T) {
	e := newDavEnv(t, nil)
	e.seedRelease("high")
	if _, todo := e.get(releaseTodo); strings.Count(todo, "BEGIN:VALARM") != 2 {
		t.Fatalf("reminder without its two alarms:\n%s", todo)
	}
	if _, ev := e.get("/dav/alice/calendars/release-deadlines/tracker-T-1.ics"); strings.Contains(ev, "VALARM") {
		t.Fatalf("deadline event carries alarms (each alert would fire twice):\n%s", ev)
	}
}

// TestRerenderIfStale: a store whose objects were rendered by older rules
// (PRIORITY:5 on an ordinary task, alarms on the deadline) is re-rendered
// once at start; the next start does nothing.
func TestRerenderIfStale(t *testing.T) {
	e := newDavEnv(t, nil)
	e.seedRelease("")
	ctx := context.Background()
	old := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:deadline-tracker-T-1@duebridge\r\n" +
		"DTSTAMP:20260101T000000Z\r\nDTSTART:20260101T000000Z\r\nPRIORITY:5\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\n" +
		"DESCRIPTION:x\r\nTRIGGER;VALUE=DATE-TIME:20260101T000000Z\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	err := testsvc.Store(t, e.svc).Update(ctx, func(tx store.Tx) error {
		if err := tx.PutObject(&store.Object{User: "alice", Collection: "release-deadlines", Name: "tracker-T-1.ics",
			UID: "deadline-tracker-T-1@duebridge", Source: "tracker", TaskID: "T-1", ETag: render.ETag([]byte(old)), Data: []byte(old)}); err != nil {
			return err
		}
		return tx.Set("render_version", "1")
	})
	if err != nil {
		t.Fatal(err)
	}
	did, err := e.svc.RerenderIfStale(ctx)
	if err != nil || !did {
		t.Fatalf("RerenderIfStale = %v, %v; want a re-render", did, err)
	}
	if _, ev := e.get("/dav/alice/calendars/release-deadlines/tracker-T-1.ics"); strings.Contains(ev, "VALARM") || strings.Contains(ev, "PRIORITY") {
		t.Fatalf("stored object not re-rendered:\n%s", ev)
	}
	if did, err := e.svc.RerenderIfStale(ctx); err != nil || did {
		t.Fatalf("second start: RerenderIfStale = %v, %v; want nothing to do", did, err)
	}
}
