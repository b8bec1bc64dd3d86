package calendar_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// newReminderText is a reminder as iOS Reminders creates it.
func newReminderText(uid, summary string) string {
	return strings.Join([]string{
		"BEGIN:VCALENDAR", "VERSION:2.0", "CALSCALE:GREGORIAN", "PRODID:-//Apple Inc.//iOS 18.0.1//EN",
		"BEGIN:VTODO", "CREATED:20261123T100000Z", "DTSTAMP:20261123T100000Z", "LAST-MODIFIED:20261123T100000Z",
		"SUMMARY:" + summary, "STATUS:NEEDS-ACTION", "UID:" + uid, "X-APPLE-SORT-ORDER:740793996",
		"END:VTODO", "END:VCALENDAR", ""}, "\r\n")
}

func newReminder(uid, summary string) *ical.Calendar {
	cal, err := ical.NewDecoder(strings.NewReader(newReminderText(uid, summary))).Decode()
	if err != nil {
		panic(err)
	}
	return cal
}

// phoneEdit turns stored bytes into what iOS sends back: lines unfolded,
// props replaced (value "" removes the property), extra lines added to the
// VTODO.
func phoneEdit(data string, set map[string]string, extra ...string) string {
	lines := strings.Split(strings.ReplaceAll(data, "\r\n ", ""), "\r\n")
	var out []string
	depth := 0
	for _, l := range lines {
		if l == "" {
			continue
		}
		if strings.HasPrefix(l, "BEGIN:") {
			depth++
		}
		name := l[:strings.IndexAny(l, ":;")]
		if v, ok := set[name]; ok && depth == 2 {
			if v != "" {
				out = append(out, name+":"+v)
			}
		} else if l == "END:VTODO" {
			for n, v := range set {
				if v != "" && !strings.Contains(data, "\n"+n) {
					out = append(out, n+":"+v)
				}
			}
			out = append(out, extra...)
			out = append(out, l)
		} else {
			out = append(out, l)
		}
		if strings.HasPrefix(l, "END:") {
			depth--
		}
	}
	return strings.Join(out, "\r\n") + "\r\n"
}

var phoneAlarm = []string{
	"BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:Reminder", "TRIGGER;VALUE=DATE-TIME:" + time.Now().UTC().AddDate(0, 1, 0).Format("20060102T150405Z"),
	"UID:5B6C0E3C-6D2B-4B8F-9E0A-1F2E3D4C5B6A", "X-WR-ALARMUID:5B6C0E3C-6D2B-4B8F-9E0A-1F2E3D4C5B6A", "END:VALARM",
	"BEGIN:VALARM", "ACTION:NONE", "TRIGGER;VALUE=DATE-TIME:19760401T005545Z", "X-APPLE-DEFAULT-ALARM:TRUE",
	"UID:0A8B3C5D-1111-2222-3333-444455556666", "X-WR-ALARMUID:0A8B3C5D-1111-2222-3333-444455556666", "END:VALARM",
}

func outboxPending(t *testing.T, e *env) int {
	t.Helper()
	var n int
	err := testsvc.Store(t, e.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		n, _, err = tx.OutboxCounts()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func withCallback(c *config.Config) {
	c.Sources[0].CallbackURL, _ = url.Parse("http://127.0.0.1:9/callback")
}

// TestCompletionPUT: marking a reminder done on the phone completes the
// task for everyone, raises SEQUENCE, keeps the phone's alarm and Apple
// properties, and queues the callback; un-completing reopens it.
func TestCompletionPUT(t *testing.T) {
	e := newEnv(t, envOptions{config: withCallback})
	e.seed()
	const href = "/dav/alice/calendars/release-tasks/tracker-T-1.ics"
	resp, data := e.do("GET", href, "alice", "")
	etag := resp.Header.Get("ETag")
	seqBefore := e.task("T-1").Sequence
	done := e.now.Add(-time.Minute).Format("20060102T150405Z")
	body := phoneEdit(data, map[string]string{
		"STATUS": "COMPLETED", "COMPLETED": done, "PERCENT-COMPLETE": "100",
		"PRODID": "-//Apple Inc.//iOS 18.0.1//EN", "DTSTAMP": "20261123T110000Z", "X-APPLE-SORT-ORDER": "740793996",
	}, phoneAlarm...)

	resp, out := e.do("PUT", href, "alice", body, "Content-Type", "text/calendar; charset=utf-8", "If-Match", etag,
		"User-Agent", "iOS/18.1.1 (22B91) dataaccessd/1.0")
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusNoContent {
		t.Fatalf("completion PUT: %d %s", resp.StatusCode, out)
	}
	stored := e.object("alice", "release-tasks", "tracker-T-1.ics")
	// The stored copy is duebridge's rendering, not the body: no ETag, so
	// the phone fetches it again (RFC 4791 §5.3.4).
	if got := resp.Header.Get("ETag"); got != "" || stored.Data == nil || string(stored.Data) == body {
		t.Fatalf("PUT answered ETag %q though the stored object differs from the body", got)
	}
	task := e.task("T-1")
	if task.Status != "done" || task.CompletedBy != "alice" || task.CompletedAt.IsZero() || task.Sequence <= seqBefore {
		t.Fatalf("task after completion: status %s by %q at %v seq %d (was %d)", task.Status, task.CompletedBy,
			task.CompletedAt, task.Sequence, seqBefore)
	}
	s := string(stored.Data)
	for _, want := range []string{"STATUS:COMPLETED", "PERCENT-COMPLETE:100", "5B6C0E3C-6D2B-4B8F-9E0A-1F2E3D4C5B6A",
		"X-APPLE-SORT-ORDER:740793996", "SEQUENCE:"} {
		if !strings.Contains(s, want) {
			t.Errorf("stored object lacks %q:\n%s", want, s)
		}
	}
	for _, unwanted := range []string{"19760401T005545Z", "X-DUEBRIDGE-LEAD"} {
		if strings.Contains(s, unwanted) {
			t.Errorf("stored object has %q (placeholder alarm or our alarm on a done task):\n%s", unwanted, s)
		}
	}
	if bob := e.object("bob", "release-tasks", "tracker-T-1.ics"); !strings.Contains(string(bob.Data), "STATUS:COMPLETED") {
		t.Error("bob's copy is not completed")
	}
	if n := outboxPending(t, e); n != 1 {
		t.Fatalf("outbox pending %d, want 1 callback", n)
	}

	// The same PUT again (a retry): no second callback.
	resp, _ = e.do("PUT", href, "alice", body, "Content-Type", "text/calendar", "If-Match", stored.ETag)
	if resp.StatusCode >= 300 || outboxPending(t, e) != 1 {
		t.Fatalf("repeated completion: %d, outbox %d", resp.StatusCode, outboxPending(t, e))
	}
	stored = e.object("alice", "release-tasks", "tracker-T-1.ics")

	// Un-complete on the phone.
	reopen := phoneEdit(string(stored.Data), map[string]string{"STATUS": "NEEDS-ACTION", "COMPLETED": ""})
	resp, out = e.do("PUT", href, "alice", reopen, "Content-Type", "text/calendar", "If-Match", stored.ETag)
	if resp.StatusCode >= 300 {
		t.Fatalf("un-complete: %d %s", resp.StatusCode, out)
	}
	if task := e.task("T-1"); task.Status != "open" || task.CompletedBy != "" {
		t.Fatalf("task after un-complete: %s by %q", task.Status, task.CompletedBy)
	}
	if n := outboxPending(t, e); n != 2 {
		t.Fatalf("outbox pending %d, want 2", n)
	}
	// The phone alarm is still there after a tracker update.
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-1", Title: "Ship release 2.1", Project: "Release",
		Assignees: []string{"alice", "bob"}, Due: store.When{Time: e.now.Add(49 * time.Hour)}, UpdatedAt: e.now.Add(time.Hour), Version: 2})
	if s := string(e.object("alice", "release-tasks", "tracker-T-1.ics").Data); !strings.Contains(s, "5B6C0E3C-6D2B-4B8F-9E0A-1F2E3D4C5B6A") {
		t.Fatal("phone alarm lost after a tracker update")
	}
}

// TestIfMatch: a stale If-Match gets 412 and changes nothing.
func TestIfMatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const href = "/dav/alice/calendars/release-tasks/tracker-T-1.ics"
	_, data := e.do("GET", href, "alice", "")
	body := phoneEdit(data, map[string]string{"STATUS": "COMPLETED"})
	for _, tag := range []string{`"0123456789abcdef01234567"`, `W/"0123"`} {
		resp, _ := e.do("PUT", href, "alice", body, "Content-Type", "text/calendar", "If-Match", tag)
		if resp.StatusCode != http.StatusPreconditionFailed {
			t.Fatalf("If-Match %s: %d, want 412", tag, resp.StatusCode)
		}
	}
	if e.task("T-1").Status != "open" {
		t.Fatal("a refused PUT changed the task")
	}
	resp, _ := e.do("DELETE", href, "alice", "", "If-Match", `"stale"`)
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("DELETE with stale If-Match: %d", resp.StatusCode)
	}
	// GET with If-None-Match of the current ETag: 304.
	o := e.object("alice", "release-tasks", "tracker-T-1.ics")
	if resp, _ := e.do("GET", href, "alice", "", "If-None-Match", o.ETag); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("conditional GET: %d", resp.StatusCode)
	}
}

// TestReadOnly: the deadlines calendar refuses writes with 403.
func TestReadOnly(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const href = "/dav/alice/calendars/release-deadlines/tracker-T-1.ics"
	resp, data := e.do("GET", href, "alice", "")
	before := resp.Header.Get("ETag")
	edited := strings.Replace(data, "SUMMARY:", "SUMMARY:x", 1)
	for _, c := range []struct{ method, path, body string }{
		{"PUT", href, edited},
		{"PUT", "/dav/alice/calendars/release-deadlines/new.ics", newReminderText("N-1", "x")},
		{"DELETE", href, ""},
		{"DELETE", "/dav/alice/calendars/release-tasks/", ""},
		{"MKCALENDAR", "/dav/alice/calendars/mine/", ""},
		{"MKCOL", "/dav/alice/calendars/mine/", ""},
	} {
		resp, out := e.do(c.method, c.path, "alice", c.body, "Content-Type", "text/calendar", "If-Match", before)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s %s: %d %s, want 403", c.method, c.path, resp.StatusCode, out)
		}
	}
	if got := e.object("alice", "release-deadlines", "tracker-T-1.ics").ETag; got != before {
		t.Fatal("a refused write changed the deadline")
	}
}

// TestTrackerFieldsKept: a title or due date changed on the phone is kept
// from the tracker, the PUT succeeds, and no ETag goes back so the phone
// fetches the tracker's version.
func TestTrackerFieldsKept(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const href = "/dav/alice/calendars/release-tasks/tracker-T-1.ics"
	resp, data := e.do("GET", href, "alice", "")
	body := phoneEdit(data, map[string]string{"SUMMARY": "My own title", "DUE": "20300101T000000Z"})
	resp, out := e.do("PUT", href, "alice", body, "Content-Type", "text/calendar", "If-Match", resp.Header.Get("ETag"))
	if resp.StatusCode >= 300 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, out)
	}
	if resp.Header.Get("ETag") != "" {
		t.Fatalf("PUT answered ETag %q although the stored object differs from the body", resp.Header.Get("ETag"))
	}
	s := string(e.object("alice", "release-tasks", "tracker-T-1.ics").Data)
	if !strings.Contains(s, "SUMMARY:Ship release 2.1") || strings.Contains(s, "My own title") || strings.Contains(s, "20300101") {
		t.Fatalf("tracker fields not kept:\n%s", s)
	}
	if tk := e.task("T-1"); tk.Title != "Ship release 2.1" {
		t.Fatalf("task title %q", tk.Title)
	}
}

// TestOwnReminder: a reminder created on the phone (UUID name,
// If-None-Match: *) is stored as sent, synced, and never becomes a task.
func TestOwnReminder(t *testing.T) {
	e := newEnv(t, envOptions{config: withCallback})
	e.seed()
	const uid = "C2B7E1F0-5A3D-4E8C-9B1A-7D6F5E4C3B2A"
	href := "/dav/alice/calendars/release-tasks/" + uid + ".ics"
	body := newReminderText(uid, "Buy milk")
	resp, out := e.do("PUT", href, "alice", body, "Content-Type", "text/calendar", "If-None-Match", "*")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, out)
	}
	if resp.Header.Get("ETag") != render.ETag([]byte(body)) {
		t.Fatalf("ETag %q", resp.Header.Get("ETag"))
	}
	if _, got := e.do("GET", href, "alice", ""); got != body {
		t.Fatalf("GET returns other bytes:\n%q", got)
	}
	// Created again: 412. The same UID at another href: 409.
	if resp, _ := e.do("PUT", href, "alice", body, "Content-Type", "text/calendar", "If-None-Match", "*"); resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("second create: %d", resp.StatusCode)
	}
	if resp, _ := e.do("PUT", "/dav/alice/calendars/ops-tasks/other.ics", "alice", body, "Content-Type", "text/calendar"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("duplicate UID: %d", resp.StatusCode)
	}
	// A VEVENT in a Reminders list: refused.
	ev := strings.ReplaceAll(newReminderText("E-1", "event"), "VTODO", "VEVENT")
	if resp, _ := e.do("PUT", "/dav/alice/calendars/ops-tasks/e.ics", "alice", ev, "Content-Type", "text/calendar"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("VEVENT in a list: %d", resp.StatusCode)
	}
	// Completing it stays local: no callback, no task.
	done := strings.Replace(body, "STATUS:NEEDS-ACTION", "STATUS:COMPLETED", 1)
	if resp, _ := e.do("PUT", href, "alice", done, "Content-Type", "text/calendar", "If-Match", render.ETag([]byte(body))); resp.StatusCode >= 300 {
		t.Fatalf("complete own: %d", resp.StatusCode)
	}
	if n := outboxPending(t, e); n != 0 {
		t.Fatalf("own reminder queued %d callbacks", n)
	}
	err := testsvc.Store(t, e.svc).View(context.Background(), func(tx store.Tx) error {
		tasks, err := tx.TasksBySource("tracker", true)
		if len(tasks) != 4 {
			return errors.New("a task was created")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// It reaches the user's other devices through sync, and can be deleted.
	m := e.ms(e.do("REPORT", "/dav/alice/calendars/release-tasks/", "alice", syncBody(t, "")))
	if m.response(href) == nil {
		t.Fatalf("own reminder not in sync: %v", m.hrefs())
	}
	tok := m.SyncToken
	resp, _ = e.do("DELETE", href, "alice", "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	m = e.ms(e.do("REPORT", "/dav/alice/calendars/release-tasks/", "alice", syncBody(t, tok)))
	if r := m.response(href); r == nil || !strings.Contains(r.Status, "404") {
		t.Fatalf("deleted reminder not reported as removed: %+v", m.Responses)
	}
}

// TestDeleteHides: deleting a task-system task on the phone hides it for
// that user (reminder and deadline) and answers 204; others keep it.
func TestDeleteHides(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	resp, _ := e.do("DELETE", "/dav/alice/calendars/release-tasks/tracker-T-1.ics", "alice", "")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	for _, p := range []string{"/dav/alice/calendars/release-tasks/tracker-T-1.ics", "/dav/alice/calendars/release-deadlines/tracker-T-1.ics"} {
		if resp, _ := e.do("GET", p, "alice", ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s after hide: %d", p, resp.StatusCode)
		}
	}
	e.object("bob", "release-tasks", "tracker-T-1.ics") // still there
	if e.task("T-1").Deleted || e.task("T-1").Status != "open" {
		t.Fatal("hiding changed the task itself")
	}
	// A later tracker update keeps it hidden; the phone cannot re-create it.
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-1", Title: "Ship release 2.1!", Project: "Release",
		Assignees: []string{"alice", "bob"}, UpdatedAt: e.now.Add(time.Minute), Version: 2})
	if resp, _ := e.do("GET", "/dav/alice/calendars/release-tasks/tracker-T-1.ics", "alice", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("hidden task came back: %d", resp.StatusCode)
	}
	data := string(e.object("bob", "release-tasks", "tracker-T-1.ics").Data)
	resp, _ = e.do("PUT", "/dav/alice/calendars/release-tasks/tracker-T-1.ics", "alice", data, "Content-Type", "text/calendar")
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("re-creating a hidden task: %d, want 409", resp.StatusCode)
	}
}

// TestStaleHref: iOS completes a task at the href where it last saw it; if
// the project was renamed meanwhile, the UID lives elsewhere: 409, no
// duplicate.
func TestStaleHref(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	_, data := e.do("GET", "/dav/alice/calendars/ops-tasks/tracker-T-3.ics", "alice", "")
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-3", Title: "Review the backup report", Project: "Infra",
		Assignees: []string{"alice"}, UpdatedAt: e.now.Add(time.Minute), Version: 2})
	body := phoneEdit(data, map[string]string{"STATUS": "COMPLETED"})
	resp, out := e.do("PUT", "/dav/alice/calendars/ops-tasks/tracker-T-3.ics", "alice", body, "Content-Type", "text/calendar")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(out, "no-uid-conflict") {
		t.Fatalf("stale-href PUT: %d %s", resp.StatusCode, out)
	}
	if e.task("T-3").Status != "open" {
		t.Fatal("stale-href PUT completed the task")
	}
}

// TestSizeLimit: a body over limits.ical_object_bytes gets 413.
func TestSizeLimit(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) { c.Limits.ICalObjectBytes = 2048 }})
	e.seed()
	big := newReminderText("BIG-1", strings.Repeat("x", 3000))
	resp, _ := e.do("PUT", "/dav/alice/calendars/ops-tasks/big.ics", "alice", big, "Content-Type", "text/calendar")
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("big PUT: %d, want 413", resp.StatusCode)
	}
}

// TestProppatch: colour and order are accepted (207/200) and kept; a
// property we do not accept fails the request (403, the rest 424).
func TestProppatch(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const coll = "/dav/alice/calendars/release-tasks/"
	before := e.ms(e.do("PROPFIND", coll, "alice", fixture(t, "poll_calendar_propfind.xml"), "Depth", "0"))
	ctag := mustProp(t, before.response(coll), nsCS, "getctag").Text

	m := e.ms(e.do("PROPPATCH", coll, "alice", fixture(t, "proppatch_color.xml")))
	if _, st := m.response(coll).prop(nsApple, "calendar-color"); !ok200(st) {
		t.Fatalf("color: %q", st)
	}
	m = e.ms(e.do("PROPPATCH", "/dav/alice/calendars/release-deadlines/", "alice", fixture(t, "proppatch_order.xml")))
	if _, st := m.Responses[0].prop(nsApple, "calendar-order"); !ok200(st) {
		t.Fatalf("order on deadlines: %q", st)
	}
	m = e.ms(e.do("PROPPATCH", coll, "alice", fixture(t, "proppatch_mixed.xml")))
	r := m.response(coll)
	if _, st := r.prop(nsCalDAV, "calendar-timezone"); !strings.Contains(st, "403") {
		t.Fatalf("calendar-timezone: %q", st)
	}
	if _, st := r.prop(nsDAV, "displayname"); !strings.Contains(st, "424") {
		t.Fatalf("displayname alongside a refusal: %q", st)
	}
	m = e.ms(e.do("PROPFIND", "/dav/alice/calendars/", "alice", fixture(t, "home_propfind.xml"), "Depth", "1"))
	r = m.response(coll)
	if c := mustProp(t, r, nsApple, "calendar-color"); c.Text != "#711A76FF" {
		t.Fatalf("color after PROPPATCH %q", c.Text)
	}
	if dn := mustProp(t, r, nsDAV, "displayname"); dn.Text != "Release" {
		t.Fatalf("displayname changed by a failed PROPPATCH: %q", dn.Text)
	}
	if c := mustProp(t, r, nsCS, "getctag"); c.Text == ctag {
		t.Fatal("ctag did not change with the properties")
	}
	if o := mustProp(t, m.response("/dav/alice/calendars/release-deadlines/"), nsApple, "calendar-order"); o.Text != "3" {
		t.Fatalf("order %q", o.Text)
	}
	// On the principal nothing is writable, still a 207.
	m = e.ms(e.do("PROPPATCH", "/dav/alice/", "alice", fixture(t, "proppatch_color.xml")))
	if _, st := m.Responses[0].prop(nsApple, "calendar-color"); !strings.Contains(st, "403") {
		t.Fatalf("principal PROPPATCH: %q", st)
	}
}

// TestAcknowledgedAlarmKept: an alarm of ours the phone dismissed keeps its
// ACKNOWLEDGED mark (else iOS may show it again); moving the due date re-arms.
func TestAcknowledgedAlarmKept(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const href = "/dav/alice/calendars/release-tasks/tracker-T-1.ics"
	resp, data := e.do("GET", href, "alice", "")
	if !strings.Contains(data, "X-DUEBRIDGE-LEAD") {
		t.Fatalf("seed task has no alarm of ours:\n%s", data)
	}
	// Mark the first of our alarms acknowledged, as iOS does on dismissal.
	unfolded := strings.ReplaceAll(data, "\r\n ", "")
	i := strings.Index(unfolded, "BEGIN:VALARM\r\n")
	acked := unfolded[:i] + "BEGIN:VALARM\r\nACKNOWLEDGED:20261123T120000Z\r\n" + unfolded[i+len("BEGIN:VALARM\r\n"):]
	resp, out := e.do("PUT", href, "alice", acked, "Content-Type", "text/calendar", "If-Match", resp.Header.Get("ETag"))
	if resp.StatusCode >= 300 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, out)
	}
	_, data = e.do("GET", href, "alice", "")
	if n := strings.Count(data, "ACKNOWLEDGED:20261123T120000Z"); n != 1 {
		t.Fatalf("ACKNOWLEDGED kept %d times, want once:\n%s", n, data)
	}
	// The tracker moves the due date: new trigger instants, no stale mark.
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-1", Title: "Ship release 2.1", Project: "Release",
		Assignees: []string{"alice", "bob"}, Due: store.When{Time: e.now.Add(72 * time.Hour)}, UpdatedAt: e.now.Add(time.Hour), Version: 2})
	_, data = e.do("GET", href, "alice", "")
	if strings.Contains(data, "ACKNOWLEDGED") || !strings.Contains(data, "X-DUEBRIDGE-LEAD") {
		t.Fatalf("after a due-date move the alarms must be armed again:\n%s", data)
	}
}

// TestPutContentType: a PUT must carry text/calendar (RFC 4791 §5.3.2.1);
// anything else is 400 naming CALDAV:supported-calendar-data, and nothing
// is stored. A refused UID says CALDAV:no-uid-conflict.
func TestPutContentType(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const uid = "6A0C1F9E-2B4D-4C3A-8E7F-1D2C3B4A5F60"
	href := "/dav/alice/calendars/release-tasks/" + uid + ".ics"
	body := newReminderText(uid, "Buy milk")
	for _, ct := range []string{"application/json", "", "text/calendar; charset"} {
		resp, out := e.do("PUT", href, "alice", body, "Content-Type", ct)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(out, "supported-calendar-data") {
			t.Fatalf("Content-Type %q: %d %s", ct, resp.StatusCode, out)
		}
	}
	if resp, _ := e.do("GET", href, "alice", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("a refused PUT stored the object: GET %d", resp.StatusCode)
	}
	resp, out := e.do("PUT", href, "alice", body, "Content-Type", "text/calendar; charset=utf-8")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Location") != href {
		t.Fatalf("PUT: %d %q %s", resp.StatusCode, resp.Header.Get("Location"), out)
	}
	resp, out = e.do("PUT", "/dav/alice/calendars/ops-tasks/other.ics", "alice", body, "Content-Type", "text/calendar")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(out, "no-uid-conflict") {
		t.Fatalf("duplicate UID: %d %s", resp.StatusCode, out)
	}
}
