package calendar_test

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-webdav"
	"github.com/emersion/go-webdav/caldav"
	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestDiscoveryChain replays what iOS does when an account is added with
// the bare host name: anonymous well-known, 401, then principal and home.
func TestDiscoveryChain(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	body := fixture(t, "well_known_propfind.xml")
	ua := []string{"User-Agent", "iOS/18.1.1 (22B91) accountsd/1.0", "Depth", "0", "Prefer", "return=minimal", "Brief", "t"}

	// 1. Anonymous well-known: a redirect to the DAV root.
	resp, _ := e.do("PROPFIND", "/.well-known/caldav", "", body, ua...)
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/dav/" {
		t.Fatalf("well-known: %d Location %q, want 301 /dav/", resp.StatusCode, resp.Header.Get("Location"))
	}
	// 2. Following it without credentials: the Basic challenge iOS waits for.
	resp, _ = e.do("PROPFIND", "/dav/", "", body, ua...)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous /dav/: %d, want 401", resp.StatusCode)
	}
	if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Basic realm="duebridge"`) {
		t.Fatalf("WWW-Authenticate = %q", got)
	}
	// 3. With credentials: the current user's principal.
	m := e.ms(e.do("PROPFIND", "/dav/", "alice", body, ua...))
	cup := mustProp(t, m.response("/dav/"), nsDAV, "current-user-principal")
	if !strings.Contains(cup.Inner, "<d:href>/dav/alice/</d:href>") {
		t.Fatalf("current-user-principal = %s", cup.Inner)
	}
	// iOS may instead walk from the server root: PROPFIND / must not 405.
	resp, _ = e.do("PROPFIND", "/", "", body, ua...)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous PROPFIND /: %d, want 401", resp.StatusCode)
	}
	m = e.ms(e.do("PROPFIND", "/", "alice", body, ua...))
	if cup := mustProp(t, m.response("/"), nsDAV, "current-user-principal"); !strings.Contains(cup.Inner, "/dav/alice/") {
		t.Fatalf("PROPFIND / current-user-principal = %s", cup.Inner)
	}

	// 4. The principal, with the body iOS sends.
	resp, _ = e.do(http.MethodOptions, "/dav/alice/", "alice", "")
	if !strings.Contains(resp.Header.Get("DAV"), "calendar-access") {
		t.Fatalf("OPTIONS principal DAV = %q", resp.Header.Get("DAV"))
	}
	m = e.ms(e.do("PROPFIND", "/dav/alice/", "alice", fixture(t, "principal_propfind.xml"), "Depth", "0"))
	p := m.response("/dav/alice/")
	for name, want := range map[string]string{
		"calendar-home-set":         "<d:href>/dav/alice/calendars/</d:href>",
		"calendar-user-address-set": "<d:href>mailto:alice@example.com</d:href>",
	} {
		if got := mustProp(t, p, nsCalDAV, name); !strings.Contains(got.Inner, want) {
			t.Errorf("%s = %s, want %s", name, got.Inner, want)
		}
	}
	if got := mustProp(t, p, nsDAV, "principal-URL"); !strings.Contains(got.Inner, "/dav/alice/") {
		t.Errorf("principal-URL = %s", got.Inner)
	}
	if got := mustProp(t, p, nsDAV, "displayname"); got.Text != "alice" {
		t.Errorf("displayname = %q", got.Text)
	}
	if got := mustProp(t, p, nsCS, "email-address-set"); !strings.Contains(got.Inner, "alice@example.com") {
		t.Errorf("email-address-set = %s", got.Inner)
	}
	mustProp(t, p, nsDAV, "principal-collection-set")
	mustProp(t, p, nsDAV, "supported-report-set")
	if _, st := p.prop(nsCalDAV, "schedule-inbox-URL"); !strings.Contains(st, "404") {
		t.Errorf("schedule-inbox-URL status %q, want 404", st)
	}

	// 5. The home, Depth 1, with the ~38 properties iOS asks for.
	m = e.ms(e.do("PROPFIND", "/dav/alice/calendars/", "alice", fixture(t, "home_propfind.xml"), "Depth", "1"))
	wantHrefs := []string{"/dav/alice/calendars/", "/dav/alice/calendars/ops-tasks/",
		"/dav/alice/calendars/release-deadlines/", "/dav/alice/calendars/release-tasks/"}
	got := m.hrefs()
	slices.Sort(got)
	if !slices.Equal(got, wantHrefs) {
		t.Fatalf("home lists %v, want %v", got, wantHrefs)
	}
	home := m.response("/dav/alice/calendars/")
	if rt := mustProp(t, home, nsDAV, "resourcetype"); strings.Contains(rt.Inner, "calendar") {
		t.Errorf("the home must not be a calendar: %s", rt.Inner)
	}
	for _, c := range []struct {
		href, comp string
		writable   bool
	}{
		{"/dav/alice/calendars/release-tasks/", "VTODO", true},
		{"/dav/alice/calendars/ops-tasks/", "VTODO", true},
		{"/dav/alice/calendars/release-deadlines/", "VEVENT", false},
	} {
		r := m.response(c.href)
		if rt := mustProp(t, r, nsDAV, "resourcetype"); !strings.Contains(rt.Inner, "calendar") || !strings.Contains(rt.Inner, "collection") {
			t.Errorf("%s resourcetype = %s", c.href, rt.Inner)
		}
		if cs := mustProp(t, r, nsCalDAV, "supported-calendar-component-set"); !strings.Contains(cs.Inner, `name="`+c.comp+`"`) {
			t.Errorf("%s component set = %s, want %s", c.href, cs.Inner, c.comp)
		}
		if dn := mustProp(t, r, nsDAV, "displayname"); dn.Text == "" {
			t.Errorf("%s has no displayname", c.href)
		}
		if ct := mustProp(t, r, nsCS, "getctag"); ct.Text == "" {
			t.Errorf("%s has an empty getctag", c.href)
		}
		if st := mustProp(t, r, nsDAV, "sync-token"); !strings.HasPrefix(st.Text, "https://duebridge.invalid/sync/") {
			t.Errorf("%s sync-token = %q", c.href, st.Text)
		}
		rs := mustProp(t, r, nsDAV, "supported-report-set")
		for _, rep := range []string{"sync-collection", "calendar-multiget", "calendar-query"} {
			if !strings.Contains(rs.Inner, rep) {
				t.Errorf("%s supported-report-set lacks %s: %s", c.href, rep, rs.Inner)
			}
		}
		priv := mustProp(t, r, nsDAV, "current-user-privilege-set")
		hasWrite := strings.Contains(priv.Inner, "<d:write/>") || strings.Contains(priv.Inner, "<d:write-content/>") ||
			strings.Contains(priv.Inner, "<d:bind/>")
		if hasWrite != c.writable || !strings.Contains(priv.Inner, "<d:read/>") {
			t.Errorf("%s privileges = %s, writable want %v", c.href, priv.Inner, c.writable)
		}
		if col := mustProp(t, r, nsApple, "calendar-color"); !strings.HasPrefix(col.Text, "#") {
			t.Errorf("%s calendar-color = %q", c.href, col.Text)
		}
		mustProp(t, r, nsApple, "calendar-order")
		if ow := mustProp(t, r, nsDAV, "owner"); !strings.Contains(ow.Inner, "/dav/alice/") {
			t.Errorf("%s owner = %s", c.href, ow.Inner)
		}
	}
	if _, st := m.response("/dav/alice/calendars/release-tasks/").prop(nsCS, "pushkey"); !strings.Contains(st, "404") {
		t.Errorf("pushkey status %q, want 404", st)
	}

	// Prefer: return=minimal leaves the 404 propstats out.
	m = e.ms(e.do("PROPFIND", "/dav/alice/calendars/", "alice", fixture(t, "home_propfind.xml"),
		"Depth", "1", "Prefer", "return=minimal"))
	for _, r := range m.Responses {
		for _, ps := range r.Propstats {
			if strings.Contains(ps.Status, "404") {
				t.Fatalf("minimal answer has a 404 propstat for %s", r.Href)
			}
		}
	}
}

// TestGoWebdavClient runs go-webdav's own CalDAV client against the server.
func TestGoWebdavClient(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	ctx := context.Background()
	hc := webdav.HTTPClientWithBasicAuth(http.DefaultClient, "alice", testsvc.Password("alice"))
	c, err := caldav.NewClient(hc, e.srv.URL+"/dav/")
	if err != nil {
		t.Fatal(err)
	}
	principal, err := c.FindCurrentUserPrincipal(ctx)
	if err != nil || principal != "/dav/alice/" {
		t.Fatalf("principal %q, %v", principal, err)
	}
	home, err := c.FindCalendarHomeSet(ctx, principal)
	if err != nil || home != "/dav/alice/calendars/" {
		t.Fatalf("home %q, %v", home, err)
	}
	cals, err := c.FindCalendars(ctx, home)
	if err != nil {
		t.Fatal(err)
	}
	comps := map[string]string{}
	for _, cal := range cals {
		comps[cal.Path] = strings.Join(cal.SupportedComponentSet, ",")
	}
	if comps["/dav/alice/calendars/release-tasks/"] != "VTODO" || comps["/dav/alice/calendars/release-deadlines/"] != "VEVENT" || len(comps) != 3 {
		t.Fatalf("calendars = %v", comps)
	}
	obj, err := c.GetCalendarObject(ctx, "/dav/alice/calendars/release-tasks/tracker-T-1.ics")
	if err != nil {
		t.Fatal(err)
	}
	if s, _ := obj.Data.Children[0].Props.Text("SUMMARY"); s != "Ship release 2.1" {
		t.Fatalf("SUMMARY = %q", s)
	}
	if want := e.object("alice", "release-tasks", "tracker-T-1.ics").ETag; `"`+obj.ETag+`"` != want {
		t.Fatalf("client ETag %q, stored %s", obj.ETag, want)
	}
	objs, err := c.MultiGetCalendar(ctx, "/dav/alice/calendars/release-tasks/", &caldav.CalendarMultiGet{
		Paths:       []string{"/dav/alice/calendars/release-tasks/tracker-T-1.ics", "/dav/alice/calendars/release-tasks/tracker-T-2.ics"},
		CompRequest: caldav.CalendarCompRequest{AllProps: true, AllComps: true},
	})
	if err != nil || len(objs) != 2 {
		t.Fatalf("multiget: %d objects, %v", len(objs), err)
	}
	q := &caldav.CalendarQuery{CompFilter: caldav.CompFilter{Name: "VCALENDAR", Comps: []caldav.CompFilter{{
		Name: "VEVENT", Start: e.now, End: e.now.Add(72 * time.Hour)}}}}
	evs, err := c.QueryCalendar(ctx, "/dav/alice/calendars/release-deadlines/", q)
	if err != nil || len(evs) != 1 || evs[0].Path != "/dav/alice/calendars/release-deadlines/tracker-T-1.ics" {
		t.Fatalf("query: %+v, %v", evs, err)
	}
	// A reminder made on the device, through go-webdav's PUT.
	cal := newReminder("6F2D4C1A-0B9E-4D57-8C2B-2F6A1E9D3B70", "Buy milk")
	put, err := c.PutCalendarObject(ctx, "/dav/alice/calendars/ops-tasks/6F2D4C1A-0B9E-4D57-8C2B-2F6A1E9D3B70.ics", cal)
	if err != nil {
		t.Fatal(err)
	}
	stored := e.object("alice", "ops-tasks", "6F2D4C1A-0B9E-4D57-8C2B-2F6A1E9D3B70.ics")
	if `"`+put.ETag+`"` != stored.ETag || stored.Source != "" {
		t.Fatalf("put ETag %q, stored %s (source %q)", put.ETag, stored.ETag, stored.Source)
	}
}

// TestForeignUser: another user's paths answer 404, never data.
func TestForeignUser(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	for _, c := range []struct{ method, path, body string }{
		{"PROPFIND", "/dav/bob/", fixture(t, "principal_propfind.xml")},
		{"PROPFIND", "/dav/bob/calendars/", fixture(t, "home_propfind.xml")},
		{"PROPFIND", "/dav/bob/calendars/release-tasks/", fixture(t, "poll_calendar_propfind.xml")},
		{"GET", "/dav/bob/calendars/release-tasks/tracker-T-4.ics", ""},
		{"REPORT", "/dav/bob/calendars/release-tasks/", fixture(t, "sync_collection.xml", "{{TOKEN}}", "")},
		{"PUT", "/dav/bob/calendars/release-tasks/x.ics", newReminderText("X-1", "sneaky")},
		{"DELETE", "/dav/bob/calendars/release-tasks/tracker-T-4.ics", ""},
		{"PROPPATCH", "/dav/bob/calendars/release-tasks/", fixture(t, "proppatch_color.xml")},
		{"OPTIONS", "/dav/carol/", ""},
	} {
		resp, body := e.do(c.method, c.path, "alice", c.body, "Content-Type", "text/calendar", "Depth", "1")
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s %s as alice: %d, want 404", c.method, c.path, resp.StatusCode)
		}
		if strings.Contains(body, "Bob") || strings.Contains(body, "tracker-T-4") {
			t.Errorf("%s %s leaks bob's data: %s", c.method, c.path, body)
		}
	}
	// Depth 1 on the root lists only the caller's principal.
	m := e.ms(e.do("PROPFIND", "/dav/", "alice", fixture(t, "well_known_propfind.xml"), "Depth", "1"))
	if got := m.hrefs(); !slices.Equal(got, []string{"/dav/", "/dav/alice/"}) {
		t.Fatalf("root Depth 1 lists %v", got)
	}
	// A multiget naming bob's object gets a 404 entry.
	body := fixture(t, "multiget.xml", "{{HREFS}}", "<A:href xmlns:A=\"DAV:\">/dav/bob/calendars/release-tasks/tracker-T-4.ics</A:href>")
	m = e.ms(e.do("REPORT", "/dav/alice/calendars/release-tasks/", "alice", body))
	if len(m.Responses) != 1 || !strings.Contains(m.Responses[0].Status, "404") {
		t.Fatalf("multiget of bob's object: %+v", m.Responses)
	}
	// Wrong password, unknown user: 401.
	req, _ := http.NewRequest("PROPFIND", e.srv.URL+"/dav/alice/", nil)
	req.SetBasicAuth("alice", "wrong")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", resp.StatusCode)
	}
}

// TestEncodedUserName: iOS sends user@domain as user%40domain, in the URL
// and in the login.
func TestEncodedUserName(t *testing.T) {
	e := newEnv(t, envOptions{config: func(c *config.Config) {
		h, _ := bcrypt.GenerateFromPassword([]byte("dana-pw"), bcrypt.MinCost)
		c.Users = append(c.Users, config.User{Name: "dana@example.com", Email: "dana@example.com",
			PasswordHash: string(h), Notify: config.NotifyAlarms, Location: time.UTC})
	}})
	req, _ := http.NewRequest("PROPFIND", e.srv.URL+"/dav/dana%40example.com/", strings.NewReader(fixture(t, "principal_propfind.xml")))
	req.SetBasicAuth("dana%40example.com", "dana-pw")
	req.Header.Set("Depth", "0")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := e.ms(resp, string(b))
	if len(m.Responses) != 1 {
		t.Fatalf("responses: %v", m.hrefs())
	}
	if home := mustProp(t, &m.Responses[0], nsCalDAV, "calendar-home-set"); !strings.Contains(home.Inner, "/dav/dana@example.com/calendars/") {
		t.Fatalf("home = %s", home.Inner)
	}
}

// TestOptionsAllow: read-only calendars do not advertise PUT or DELETE.
func TestOptionsAllow(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	for path, want := range map[string]bool{
		"/dav/alice/calendars/release-tasks/":                    true,
		"/dav/alice/calendars/release-tasks/tracker-T-1.ics":     true,
		"/dav/alice/calendars/release-deadlines/":                false,
		"/dav/alice/calendars/release-deadlines/tracker-T-1.ics": false,
	} {
		resp, _ := e.do(http.MethodOptions, path, "alice", "")
		allow := resp.Header.Get("Allow")
		if resp.StatusCode != http.StatusOK || strings.Contains(allow, "PUT") != want || strings.Contains(allow, "DELETE") != want {
			t.Errorf("OPTIONS %s: %d Allow %q, writable want %v", path, resp.StatusCode, allow, want)
		}
	}
}

// TestDepthInfinityCapped: a PROPFIND without Depth lists one level only.
func TestDepthInfinityCapped(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	m := e.ms(e.do("PROPFIND", "/dav/alice/calendars/", "alice", fixture(t, "poll_calendar_propfind.xml")))
	for _, h := range m.hrefs() {
		if strings.HasSuffix(h, ".ics") {
			t.Fatalf("Depth infinity reached object %s", h)
		}
	}
	if len(m.Responses) != 4 {
		t.Fatalf("responses %v", m.hrefs())
	}
}
