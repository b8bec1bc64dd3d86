package calendar_test

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// fuzzEnv is a seeded service and the real CalDAV handler, called directly
// (no sockets: many more executions per second, the same code path).
func fuzzEnv(f *testing.F) (*env, http.Handler) {
	e := newEnv(f, envOptions{})
	e.seed()
	return e, calendar.NewHandler(e.svc.CalDAV(), calendar.Options{})
}

// serve sends one request as alice through h.
func serve(h http.Handler, method, path, body string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.SetBasicAuth("alice", testsvc.Password("alice"))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// wellFormed reports whether b is one well-formed XML document.
func wellFormed(b []byte) error {
	d := xml.NewDecoder(strings.NewReader(string(b)))
	depth, roots := 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			if depth != 0 || roots != 1 {
				return fmt.Errorf("unbalanced document (depth %d, %d roots)", depth, roots)
			}
			return nil
		}
		if err != nil {
			return err
		}
		switch tok.(type) {
		case xml.StartElement:
			if depth == 0 {
				roots++
			}
			depth++
		case xml.EndElement:
			depth--
		}
	}
}

var fuzzTargets = []string{
	"/dav/", "/dav/alice/", "/dav/alice/calendars/", "/dav/alice/calendars/release-tasks/",
	"/dav/alice/calendars/release-deadlines/", "/dav/alice/calendars/release-tasks/tracker-T-1.ics",
	"/dav/bob/calendars/release-tasks/",
}

// FuzzDAVBodies sends arbitrary PROPFIND, PROPPATCH and REPORT bodies to
// every kind of resource. Properties: no 5xx (a body is the client's
// problem, whatever it holds), and every XML answer is well-formed.
func FuzzDAVBodies(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "caldav", "*.xml"))
	for i, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for m := range 3 {
			f.Add(uint8(m), uint8(i), string(b))
		}
	}
	f.Add(uint8(2), uint8(3), `<C:free-busy-query xmlns:C="urn:ietf:params:xml:ns:caldav"><C:time-range start="20260101T000000Z" end="20270101T000000Z"/></C:free-busy-query>`)
	f.Add(uint8(2), uint8(3), `<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:href>/dav/alice/calendars/release-tasks/tracker-T-1.ics</D:href><D:href>/dav/alice/calendars/release-tasks/tracker-T-%31.ics</D:href></C:calendar-multiget>`)
	f.Add(uint8(0), uint8(0), `<!DOCTYPE x [<!ENTITY a "aaaa">]><D:propfind xmlns:D="DAV:">&a;</D:propfind>`)
	_, h := fuzzEnv(f)
	methods := []string{"PROPFIND", "PROPPATCH", "REPORT"}
	f.Fuzz(func(t *testing.T, m, target uint8, body string) {
		method := methods[int(m)%len(methods)]
		path := fuzzTargets[int(target)%len(fuzzTargets)]
		rec := serve(h, method, path, body, "Content-Type", "application/xml", "Depth", []string{"0", "1", "infinity"}[int(m/3)%3])
		if rec.Code >= 500 {
			t.Fatalf("%s %s answered %d for a body:\n%q\n%s", method, path, rec.Code, body, rec.Body)
		}
		if strings.Contains(rec.Header().Get("Content-Type"), "xml") {
			if err := wellFormed(rec.Body.Bytes()); err != nil {
				t.Fatalf("%s %s: answer not well-formed: %v\n%s", method, path, err, rec.Body)
			}
		}
	})
}

// snapshot lists alice's and bob's stored objects (collection, name,
// ETag) and tasks, to tell whether a refused write changed anything.
func snapshot(t *testing.T, e *env) string {
	var b strings.Builder
	err := testsvc.Store(t, e.svc).View(context.Background(), func(tx store.Tx) error {
		for _, u := range []string{"alice", "bob"} {
			colls, err := tx.Collections(u)
			if err != nil {
				return err
			}
			for _, c := range colls {
				objs, err := tx.Objects(u, c.Name, false)
				if err != nil {
					return err
				}
				slices.SortFunc(objs, func(a, b store.Object) int { return strings.Compare(a.Name, b.Name) })
				for _, o := range objs {
					fmt.Fprintf(&b, "%s/%s/%s %s\n", u, c.Name, o.Name, o.ETag)
				}
			}
		}
		tasks, err := tx.TasksBySource("tracker", true)
		for _, tk := range tasks {
			fmt.Fprintf(&b, "task %s %s %s\n", tk.ID, tk.Status, tk.Title)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// FuzzPhonePut sends arbitrary iCalendar bodies as a phone's PUT, to a
// tracker task, a new own reminder and a read-only deadline. Properties: no
// 5xx, and a refused PUT (4xx) leaves the store exactly as it was.
func FuzzPhonePut(f *testing.F) {
	e, h := fuzzEnv(f)
	seedObj := e.object("alice", "release-tasks", "tracker-T-1.ics")
	f.Add(uint8(0), string(seedObj.Data))
	f.Add(uint8(0), strings.Replace(string(seedObj.Data), "STATUS:NEEDS-ACTION", "STATUS:COMPLETED", 1))
	f.Add(uint8(1), newReminderText("F-1", "Buy milk"))
	f.Add(uint8(1), poisonReminder)
	f.Add(uint8(2), string(e.object("alice", "release-deadlines", "tracker-T-1.ics").Data))
	f.Add(uint8(1), "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")
	paths := []string{"/dav/alice/calendars/release-tasks/tracker-T-1.ics", "/dav/alice/calendars/release-tasks/fuzz.ics",
		"/dav/alice/calendars/release-deadlines/tracker-T-1.ics", "/dav/alice/calendars/nosuch-tasks/x.ics"}
	f.Fuzz(func(t *testing.T, target uint8, body string) {
		path := paths[int(target)%len(paths)]
		before := snapshot(t, e)
		rec := serve(h, http.MethodPut, path, body, "Content-Type", "text/calendar")
		if rec.Code >= 500 {
			t.Fatalf("PUT %s answered %d:\n%q\n%s", path, rec.Code, body, rec.Body)
		}
		if rec.Code >= 400 {
			if after := snapshot(t, e); after != before {
				t.Fatalf("refused PUT (%d) changed the store:\nbefore:\n%s\nafter:\n%s\nbody %q", rec.Code, before, after, body)
			}
		}
	})
}
