package calendar_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
)

func syncBody(t *testing.T, token string) string {
	return fixture(t, "sync_collection.xml", "{{TOKEN}}", token)
}

// TestSyncCollection: an empty token returns everything; a token returns
// only what changed since, removals as 404; a bad token is 403
// valid-sync-token.
func TestSyncCollection(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const coll = "/dav/alice/calendars/release-tasks/"
	ua := []string{"User-Agent", "iOS/18.1.1 (22B91) dataaccessd/1.0", "Depth", "1"}

	m := e.ms(e.do("REPORT", coll, "alice", syncBody(t, ""), ua...))
	got := m.hrefs()
	slices.Sort(got)
	if want := []string{coll + "tracker-T-1.ics", coll + "tracker-T-2.ics"}; !slices.Equal(got, want) {
		t.Fatalf("full sync %v, want %v", got, want)
	}
	for _, r := range m.Responses {
		etag := mustProp(t, &r, nsDAV, "getetag")
		name := r.Href[strings.LastIndex(r.Href, "/")+1:]
		if etag.Text != e.object("alice", "release-tasks", name).ETag {
			t.Errorf("%s getetag %s", r.Href, etag.Text)
		}
		if ct := mustProp(t, &r, nsDAV, "getcontenttype"); !strings.HasPrefix(ct.Text, "text/calendar") {
			t.Errorf("%s getcontenttype %q", r.Href, ct.Text)
		}
	}
	tok1 := m.SyncToken
	if !strings.HasPrefix(tok1, "https://duebridge.invalid/sync/") {
		t.Fatalf("token %q", tok1)
	}
	// The collection's own sync-token property equals the report's.
	pm := e.ms(e.do("PROPFIND", coll, "alice", fixture(t, "poll_calendar_propfind.xml"), "Depth", "0"))
	ctag1 := mustProp(t, pm.response(coll), nsCS, "getctag").Text
	if st := mustProp(t, pm.response(coll), nsDAV, "sync-token").Text; st != tok1 {
		t.Fatalf("sync-token property %q, report %q", st, tok1)
	}

	// Nothing changed: empty, same token.
	m = e.ms(e.do("REPORT", coll, "alice", syncBody(t, tok1), ua...))
	if len(m.Responses) != 0 || m.SyncToken != tok1 {
		t.Fatalf("no-change sync: %v token %q", m.hrefs(), m.SyncToken)
	}

	// An update of T-2 from the tracker: only T-2 comes back.
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-2", Title: "Write release notes (final)", Project: "Release",
		Assignees: []string{"alice"}, UpdatedAt: e.now.Add(time.Minute), Version: 2})
	m = e.ms(e.do("REPORT", coll, "alice", syncBody(t, tok1), ua...))
	if got := m.hrefs(); !slices.Equal(got, []string{coll + "tracker-T-2.ics"}) {
		t.Fatalf("incremental after update: %v", got)
	}
	tok2 := m.SyncToken
	if tok2 == tok1 {
		t.Fatal("token did not move")
	}
	pm = e.ms(e.do("PROPFIND", coll, "alice", fixture(t, "poll_calendar_propfind.xml"), "Depth", "0"))
	if c := mustProp(t, pm.response(coll), nsCS, "getctag").Text; c == ctag1 {
		t.Fatal("getctag did not change with the content")
	}

	// A delete in the tracker: a 404 response for T-1.
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-1", Title: "Ship release 2.1", Deleted: true,
		UpdatedAt: e.now.Add(2 * time.Minute), Version: 2})
	m = e.ms(e.do("REPORT", coll, "alice", syncBody(t, tok2), ua...))
	if len(m.Responses) != 1 || m.Responses[0].Href != coll+"tracker-T-1.ics" || !strings.Contains(m.Responses[0].Status, "404") {
		t.Fatalf("incremental after delete: %+v", m.Responses)
	}
	// The deadline went from the calendar too.
	dm := e.ms(e.do("REPORT", "/dav/alice/calendars/release-deadlines/", "alice", syncBody(t, tok1), ua...))
	if len(dm.Responses) != 2 { // T-1 removed, T-2 re-rendered without due: removed too
		t.Fatalf("deadlines after changes: %+v", dm.Responses)
	}
	for _, r := range dm.Responses {
		if !strings.Contains(r.Status, "404") {
			t.Errorf("deadline %s: %q, want 404", r.Href, r.Status)
		}
	}

	// Bad tokens: 403 with DAV:valid-sync-token, so the client starts over.
	for _, bad := range []string{"garbage", "https://duebridge.invalid/sync/ffffffffffff/1",
		strings.TrimSuffix(tok2, tok2[strings.LastIndex(tok2, "/")+1:]) + "999999999"} {
		resp, body := e.do("REPORT", coll, "alice", syncBody(t, bad), ua...)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "valid-sync-token") {
			t.Errorf("token %q: %d %s", bad, resp.StatusCode, body)
		}
	}
}

// TestSyncLimit: a limited sync is truncated between revisions with a 507
// for the collection, and the token resumes from there.
func TestSyncLimit(t *testing.T) {
	e := newEnv(t, envOptions{})
	var tasks []bridge.TaskInput
	for i := range 5 {
		tasks = append(tasks, bridge.TaskInput{ID: "L-" + string(rune('a'+i)), Title: "t", Project: "P", Assignees: []string{"alice"}})
	}
	for _, tk := range tasks { // one revision each
		testsvc.Ingest(t, e.svc, tk)
	}
	const coll = "/dav/alice/calendars/p-tasks/"
	limited := func(tok string) string {
		return strings.Replace(syncBody(t, tok), "<A:sync-level>1</A:sync-level>",
			"<A:sync-level>1</A:sync-level><A:limit><A:nresults>2</A:nresults></A:limit>", 1)
	}
	seen := map[string]bool{}
	tok := ""
	for round := 0; round < 5; round++ {
		m := e.ms(e.do("REPORT", coll, "alice", limited(tok)))
		more := false
		for _, r := range m.Responses {
			if r.Href == coll {
				more = strings.Contains(r.Status, "507")
				continue
			}
			seen[r.Href] = true
		}
		tok = m.SyncToken
		if !more {
			break
		}
	}
	if len(seen) != 5 {
		t.Fatalf("limited syncs saw %d objects: %v", len(seen), seen)
	}
}

// TestHomeSync: sync-collection on the home reports changed collections.
func TestHomeSync(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	m := e.ms(e.do("REPORT", "/dav/alice/calendars/", "alice", fixture(t, "home_sync.xml", "{{TOKEN}}", "")))
	if len(m.Responses) != 3 {
		t.Fatalf("full home sync: %v", m.hrefs())
	}
	tok := m.SyncToken
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-3", Title: "Review the backup report!", Project: "Ops",
		Assignees: []string{"alice"}, UpdatedAt: e.now.Add(time.Minute), Version: 2})
	m = e.ms(e.do("REPORT", "/dav/alice/calendars/", "alice", fixture(t, "home_sync.xml", "{{TOKEN}}", tok)))
	if got := m.hrefs(); !slices.Equal(got, []string{"/dav/alice/calendars/ops-tasks/"}) {
		t.Fatalf("incremental home sync: %v", got)
	}
	mustProp(t, &m.Responses[0], nsCS, "getctag")
}

// TestMultiget serves the stored (folded) bytes and 404 for unknown hrefs.
func TestMultiget(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const coll = "/dav/alice/calendars/release-tasks/"
	hrefs := ""
	for _, h := range []string{coll + "tracker-T-1.ics", coll + "tracker-T-2.ics", coll + "nope.ics", "/dav/alice/calendars/missing/x.ics"} {
		hrefs += `<A:href xmlns:A="DAV:">` + h + "</A:href>\n"
	}
	m := e.ms(e.do("REPORT", coll, "alice", fixture(t, "multiget.xml", "{{HREFS}}", hrefs)))
	if len(m.Responses) != 4 {
		t.Fatalf("responses %v", m.hrefs())
	}
	for i, name := range []string{"tracker-T-1.ics", "tracker-T-2.ics"} {
		r := &m.Responses[i]
		o := e.object("alice", "release-tasks", name)
		if d := mustProp(t, r, nsCalDAV, "calendar-data"); d.Text != string(o.Data) {
			t.Errorf("%s calendar-data differs from the stored bytes:\n%q\n%q", name, d.Text, o.Data)
		}
		if et := mustProp(t, r, nsDAV, "getetag"); et.Text != o.ETag {
			t.Errorf("%s getetag %s, want %s", name, et.Text, o.ETag)
		}
		if _, st := r.prop(nsCalDAV, "schedule-tag"); !strings.Contains(st, "404") {
			t.Errorf("schedule-tag: %q", st)
		}
		// GET serves the same bytes with the same strong ETag.
		resp, body := e.do("GET", coll+name, "alice", "")
		if body != string(o.Data) || resp.Header.Get("ETag") != o.ETag || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/calendar") {
			t.Errorf("GET %s: ETag %q type %q", name, resp.Header.Get("ETag"), resp.Header.Get("Content-Type"))
		}
		for _, line := range strings.Split(body, "\r\n") {
			if len(line) > 75 {
				t.Errorf("%s has an unfolded line of %d octets", name, len(line))
			}
		}
	}
	for _, r := range m.Responses[2:] {
		if !strings.Contains(r.Status, "404") {
			t.Errorf("%s: %q, want 404", r.Href, r.Status)
		}
	}
}

// TestCalendarQuery covers time-range on VEVENT and VTODO (which go-webdav's
// matcher never matches) and a VTODO query without a range.
func TestCalendarQuery(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	f := func(tm time.Time) string { return tm.UTC().Format("20060102T150405Z") }
	query := func(coll, file string, start, end time.Time) []string {
		t.Helper()
		body := fixture(t, file, "{{START}}", f(start), "{{END}}", f(end))
		m := e.ms(e.do("REPORT", "/dav/alice/calendars/"+coll+"/", "alice", body, "Depth", "1"))
		var names []string
		for _, h := range m.hrefs() {
			names = append(names, h[strings.LastIndex(h, "/")+1:])
		}
		slices.Sort(names)
		return names
	}
	now := e.now
	cases := []struct {
		name, coll, file string
		start, end       time.Time
		want             []string
	}{
		{"events next 3 days", "release-deadlines", "query_vevent_timerange.xml", now, now.Add(72 * time.Hour), []string{"tracker-T-1.ics"}},
		{"events next 10 days", "release-deadlines", "query_vevent_timerange.xml", now, now.AddDate(0, 0, 10), []string{"tracker-T-1.ics", "tracker-T-2.ics"}},
		{"events last month", "release-deadlines", "query_vevent_timerange.xml", now.AddDate(0, -1, 0), now, nil},
		{"todos due next 3 days", "release-tasks", "query_vtodo_timerange.xml", now, now.Add(72 * time.Hour), []string{"tracker-T-1.ics"}},
		{"todos due next 10 days", "release-tasks", "query_vtodo_timerange.xml", now, now.AddDate(0, 0, 10), []string{"tracker-T-1.ics", "tracker-T-2.ics"}},
		{"todos due in the past", "release-tasks", "query_vtodo_timerange.xml", now.AddDate(0, -1, 0), now.Add(-time.Hour), nil},
		{"vevent filter on a todo list", "release-tasks", "query_vevent_timerange.xml", now, now.AddDate(1, 0, 0), nil},
	}
	for _, c := range cases {
		if got := query(c.coll, c.file, c.start, c.end); !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	// No time range: every VTODO, also the one without a due date.
	m := e.ms(e.do("REPORT", "/dav/alice/calendars/ops-tasks/", "alice", fixture(t, "query_vtodo.xml"), "Depth", "1"))
	if got := m.hrefs(); !slices.Equal(got, []string{"/dav/alice/calendars/ops-tasks/tracker-T-3.ics"}) {
		t.Fatalf("vtodo query: %v", got)
	}
	// calendar-data in a query answer is the stored bytes.
	body := fixture(t, "query_vtodo_timerange.xml", "{{START}}", f(now), "{{END}}", f(now.Add(72*time.Hour)))
	m = e.ms(e.do("REPORT", "/dav/alice/calendars/release-tasks/", "alice", body, "Depth", "1"))
	if d := mustProp(t, &m.Responses[0], nsCalDAV, "calendar-data"); d.Text != string(e.object("alice", "release-tasks", "tracker-T-1.ics").Data) {
		t.Fatal("query calendar-data differs from the stored bytes")
	}
}

// TestUnknownReport: 403 supported-report, never 412 or 501 (iOS stops
// syncing after those).
func TestUnknownReport(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	body := `<?xml version="1.0"?><A:expand-property xmlns:A="DAV:"><A:property name="owner"/></A:expand-property>`
	resp, out := e.do("REPORT", "/dav/alice/calendars/release-deadlines/", "alice", body)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(out, "supported-report") {
		t.Fatalf("expand-property: %d %s", resp.StatusCode, out)
	}
	resp, _ = e.do("REPORT", "/dav/alice/", "alice", `<?xml version="1.0"?><A:principal-search-property-set xmlns:A="DAV:"/>`)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("principal-search-property-set: %d", resp.StatusCode)
	}
}

// TestMultigetCacheFollowsChanges: multiget serves cached bytes only while
// the collection is unchanged; an update is visible in the very next one.
func TestMultigetCacheFollowsChanges(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	const coll = "/dav/alice/calendars/release-tasks/"
	body := `<?xml version="1.0"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">` +
		`<d:prop><d:getetag/><c:calendar-data/></d:prop><d:href>` + coll + `tracker-T-1.ics</d:href></c:calendar-multiget>`
	for i := 0; i < 2; i++ { // the second answer comes from the cache
		if _, out := e.do("REPORT", coll, "alice", body, "Content-Type", "application/xml"); !strings.Contains(out, "SUMMARY:Ship release 2.1") {
			t.Fatalf("multiget %d:\n%s", i, out)
		}
	}
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-1", Title: "Ship release 2.2", Project: "Release",
		Assignees: []string{"alice", "bob"}, UpdatedAt: e.now.Add(time.Hour), Version: 9})
	_, out := e.do("REPORT", coll, "alice", body, "Content-Type", "application/xml")
	if !strings.Contains(out, "SUMMARY:Ship release 2.2") {
		t.Fatalf("multiget after an update served stale bytes:\n%s", out)
	}
	if etag := e.object("alice", "release-tasks", "tracker-T-1.ics").ETag; !strings.Contains(out, strings.Trim(etag, `"`)) {
		t.Fatalf("multiget ETag is not the stored one %s:\n%s", etag, out)
	}
}
