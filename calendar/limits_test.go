package calendar_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
)

// limitHits reads duebridge_caldav_limit_hits_total{limit}.
func (e *env) limitHits(limit string) float64 {
	e.t.Helper()
	mfs, err := e.svc.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "duebridge_caldav_limit_hits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func freeBusyBody(start, end time.Time) string {
	return `<?xml version="1.0" encoding="utf-8"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav">` +
		`<C:time-range start="` + start.UTC().Format("20060102T150405Z") + `" end="` + end.UTC().Format("20060102T150405Z") + `"/></C:free-busy-query>`
}

// TestFreeBusyQuery: RFC 4791 §7.10 on a deadlines calendar answers a
// VFREEBUSY whose busy time is the user's deadlines in the range (timed:
// the half hour before; all-day: the day in the user's zone), never
// another user's; a Reminders list answers an empty one.
func TestFreeBusyQuery(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	start, end := e.now.Add(-time.Hour), e.now.AddDate(0, 0, 10)
	resp, out := e.do("REPORT", "/dav/alice/calendars/release-deadlines/", "alice", freeBusyBody(start, end), "Depth", "1")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/calendar") {
		t.Fatalf("free-busy-query: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), out)
	}
	cal, err := ical.NewDecoder(strings.NewReader(out)).Decode()
	if err != nil {
		t.Fatalf("answer does not parse: %v\n%s", err, out)
	}
	if len(cal.Children) != 1 || cal.Children[0].Name != ical.CompFreeBusy {
		t.Fatalf("want one VFREEBUSY:\n%s", out)
	}
	var got []string
	for _, p := range cal.Children[0].Props[ical.PropFreeBusy] {
		got = append(got, p.Value)
	}
	f := func(t time.Time) string { return t.UTC().Format("20060102T150405Z") }
	due1 := e.now.Add(48 * time.Hour) // T-1, timed
	y, m, d := e.now.AddDate(0, 0, 5).Date()
	day2 := time.Date(y, m, d, 0, 0, 0, 0, time.UTC) // T-2, all-day; alice's zone is UTC
	want := []string{f(due1.Add(-30*time.Minute)) + "/" + f(due1), f(day2) + "/" + f(day2.AddDate(0, 0, 1))}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("busy %v, want %v (bob's T-4 must not show)\n%s", got, want, out)
	}
	// A range holding no deadline: no busy time.
	_, out = e.do("REPORT", "/dav/alice/calendars/release-deadlines/", "alice", freeBusyBody(e.now.AddDate(0, 0, 20), e.now.AddDate(0, 0, 21)))
	if strings.Contains(out, "FREEBUSY") && strings.Contains(out, "FREEBUSY;") {
		t.Fatalf("busy time outside any deadline:\n%s", out)
	}
	// A Reminders list grants read-free-busy too: an empty VFREEBUSY.
	resp, out = e.do("REPORT", "/dav/alice/calendars/release-tasks/", "alice", freeBusyBody(start, end))
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, "BEGIN:VFREEBUSY") || strings.Contains(out, "FREEBUSY;") {
		t.Fatalf("free-busy-query on a list: %d\n%s", resp.StatusCode, out)
	}
	// Without a time-range: 400, not 5xx.
	resp, _ = e.do("REPORT", "/dav/alice/calendars/release-deadlines/", "alice",
		`<?xml version="1.0"?><C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"/>`)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("free-busy-query without time-range: %d", resp.StatusCode)
	}
	// Another user's calendar: 404 as always.
	if resp, _ = e.do("REPORT", "/dav/bob/calendars/release-deadlines/", "alice", freeBusyBody(start, end)); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("bob's calendar for alice: %d", resp.StatusCode)
	}
}

// TestPutStatusAndValidators: creating answers 201, replacing answers 204;
// a write the store transformed carries neither ETag nor Last-Modified.
func TestPutStatusAndValidators(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const uid = "0F1E2D3C-4B5A-6978-8796-A5B4C3D2E1F0"
	href := "/dav/alice/calendars/release-tasks/" + uid + ".ics"
	body := newReminderText(uid, "Buy milk")
	resp, out := e.do("PUT", href, "alice", body, "Content-Type", "text/calendar", "If-None-Match", "*")
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("ETag") == "" {
		t.Fatalf("create: %d ETag %q %s", resp.StatusCode, resp.Header.Get("ETag"), out)
	}
	edited := strings.Replace(body, "Buy milk", "Buy oat milk", 1)
	resp, out = e.do("PUT", href, "alice", edited, "Content-Type", "text/calendar", "If-Match", render.ETag([]byte(body)))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("update answered %d, want 204: %s", resp.StatusCode, out)
	}
	if resp.Header.Get("ETag") != render.ETag([]byte(edited)) || resp.Header.Get("Location") != "" {
		t.Fatalf("update: ETag %q Location %q", resp.Header.Get("ETag"), resp.Header.Get("Location"))
	}
	// A tracker task whose title the phone changed: stored differently.
	const tracked = "/dav/alice/calendars/release-tasks/tracker-T-1.ics"
	resp, data := e.do("GET", tracked, "alice", "")
	resp, out = e.do("PUT", tracked, "alice", phoneEdit(data, map[string]string{"SUMMARY": "My own title"}),
		"Content-Type", "text/calendar", "If-Match", resp.Header.Get("ETag"))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("tracker update answered %d, want 204: %s", resp.StatusCode, out)
	}
	if resp.Header.Get("ETag") != "" || resp.Header.Get("Last-Modified") != "" {
		t.Fatalf("transformed write carries validators: ETag %q Last-Modified %q",
			resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"))
	}
}

// poisonReminder is the 204-byte reminder of issue 13: its rule never
// yields (there is no 30 February), from the year 1.
const poisonReminder = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:p\r\nDTSTAMP:20260101T000000Z\r\n" +
	"DTSTART:00010101T000000Z\r\nRRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"

func queryBody(start, end time.Time) string {
	f := func(t time.Time) string { return t.UTC().Format("20060102T150405Z") }
	return `<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">` +
		`<D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VTODO">` +
		`<C:time-range start="` + f(start) + `" end="` + f(end) + `"/></C:comp-filter></C:comp-filter></C:filter></C:calendar-query>`
}

// TestPoisonRecurrenceQuery: the never-yielding reminder through the real
// handler is judged exactly (no instance, so no match) without using up
// its budget; a rule that does exhaust it (COUNT forbids jumping ahead,
// so FREQ=SECONDLY from the year 1 walks second by second) is answered as
// matching and counted. The step counts themselves are asserted in
// TestRecurrenceStepsBounded.
func TestPoisonRecurrenceQuery(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const coll = "/dav/alice/calendars/release-tasks/"
	if resp, out := e.do("PUT", coll+"poison.ics", "alice", poisonReminder, "Content-Type", "text/calendar"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, out)
	}
	m := e.ms(e.do("REPORT", coll, "alice", queryBody(e.now, e.now.AddDate(0, 0, 30)), "Depth", "1"))
	if m.response(coll+"poison.ics") != nil {
		t.Fatalf("a rule without instances matched: %v", m.hrefs())
	}
	if n := e.limitHits("recurrence_steps"); n != 0 {
		t.Fatalf("the poison reminder used up its budget (%v hits); want it judged exactly", n)
	}
	heavy := strings.Replace(strings.Replace(strings.Replace(poisonReminder, "BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1", "COUNT=2000000000", 1), "DTSTART:00010101T000000Z", "DTSTART:00010102T000000Z", 1), "UID:p", "UID:h", 1)
	if resp, out := e.do("PUT", coll+"heavy.ics", "alice", heavy, "Content-Type", "text/calendar"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, out)
	}
	m = e.ms(e.do("REPORT", coll, "alice", queryBody(e.now, e.now.AddDate(0, 0, 30)), "Depth", "1"))
	if m.response(coll+"heavy.ics") == nil {
		t.Fatalf("an object cut off by its budget is left out: %v", m.hrefs())
	}
	if n := e.limitHits("recurrence_steps"); n != 1 {
		t.Fatalf("limit hits %v, want 1", n)
	}
}

func multigetBody(hrefs ...string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:getetag/><c:calendar-data/></d:prop>`)
	for _, h := range hrefs {
		b.WriteString("<d:href>" + h + "</d:href>")
	}
	b.WriteString("</c:calendar-multiget>")
	return b.String()
}

// TestMultigetDedupAndLimit: a repeated href (or another spelling of it)
// is answered once; more distinct hrefs than limits.multiget_hrefs get 403
// DAV:number-of-matches-within-limits and a metric.
func TestMultigetDedupAndLimit(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) { c.Limits.MultigetHrefs = 5 }})
	e.seed()
	const coll = "/dav/alice/calendars/release-tasks/"
	one := coll + "tracker-T-1.ics"
	m := e.ms(e.do("REPORT", coll, "alice", multigetBody(one, one, one, coll+"tracker-T-%31.ics", one), "Depth", "1"))
	if len(m.Responses) != 1 {
		t.Fatalf("repeated href answered %d times: %v", len(m.Responses), m.hrefs())
	}
	var hrefs []string
	for i := range 6 {
		hrefs = append(hrefs, fmt.Sprintf("%sx-%d.ics", coll, i))
	}
	resp, out := e.do("REPORT", coll, "alice", multigetBody(hrefs...), "Depth", "1")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(out, "number-of-matches-within-limits") {
		t.Fatalf("6 hrefs over a limit of 5: %d %s", resp.StatusCode, out)
	}
	if n := e.limitHits("multiget_hrefs"); n != 1 {
		t.Fatalf("limit hits %v", n)
	}
	if resp, _ := e.do("REPORT", coll, "alice", multigetBody(hrefs[:5]...), "Depth", "1"); resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("5 hrefs: %d", resp.StatusCode)
	}
}

// TestMultigetStreams: an answer larger than the spill size goes out as it
// is built (no Content-Length), and is still one well-formed multistatus.
func TestMultigetStreams(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const coll = "/dav/alice/calendars/ops-tasks/"
	var hrefs []string
	for i := range 40 {
		uid := fmt.Sprintf("S-%03d", i)
		body := strings.Replace(newReminderText(uid, "big"), "STATUS:NEEDS-ACTION", "STATUS:NEEDS-ACTION\r\nX-PAD:"+strings.Repeat("y", 3000), 1)
		if resp, out := e.do("PUT", coll+uid+".ics", "alice", body, "Content-Type", "text/calendar"); resp.StatusCode != http.StatusCreated {
			t.Fatalf("PUT: %d %s", resp.StatusCode, out)
		}
		hrefs = append(hrefs, coll+uid+".ics")
	}
	resp, out := e.do("REPORT", coll, "alice", multigetBody(hrefs...), "Depth", "1")
	if resp.StatusCode != http.StatusMultiStatus || resp.ContentLength != -1 {
		t.Fatalf("multiget of %d bytes: %d Content-Length %d", len(out), resp.StatusCode, resp.ContentLength)
	}
	if m := e.ms(resp, out); len(m.Responses) != 40 {
		t.Fatalf("%d responses", len(m.Responses))
	}
}
