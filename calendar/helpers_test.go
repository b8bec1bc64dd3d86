package calendar_test

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// env is a real duebridge CalDAV server on 127.0.0.1 over a temp store.
type env struct {
	t   testing.TB
	svc *bridge.Service
	srv *httptest.Server
	now time.Time
}

type envOptions struct {
	config  func(*config.Config)
	isAdmin func(string) bool
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	cfg := testsvc.Config(t)
	if o.config != nil {
		o.config(cfg)
	}
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	h := calendar.NewHandler(svc.CalDAV(), calendar.Options{IsAdmin: o.isAdmin})
	mux := http.NewServeMux()
	mux.Handle(calendar.WellKnownPath, h)
	mux.Handle(calendar.Prefix, h)
	mux.Handle("PROPFIND /{$}", h)
	mux.Handle("OPTIONS /{$}", h)
	mux.Handle("GET "+calendar.SyncHealthPath, h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, svc: svc, srv: srv, now: time.Now().UTC().Truncate(time.Second)}
}

// seed stores the standard tasks: T-1 (alice, bob; timed due in two days),
// T-2 (alice; all-day due in five days), T-3 (alice; no due, other
// project), T-4 (bob only).
func (e *env) seed() {
	e.t.Helper()
	y, m, d := e.now.AddDate(0, 0, 5).Date()
	testsvc.Ingest(e.t, e.svc,
		bridge.TaskInput{ID: "T-1", Title: "Ship release 2.1", Project: "Release", Assignees: []string{"alice", "bob"},
			Due: store.When{Time: e.now.Add(48 * time.Hour)}, Priority: "high", Description: "Tag and publish.",
			URL: "https://tracker.example.com/T-1", UpdatedAt: e.now, Version: 1},
		bridge.TaskInput{ID: "T-2", Title: "Write release notes", Project: "Release", Assignees: []string{"alice"},
			Due: store.When{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC), AllDay: true}, UpdatedAt: e.now, Version: 1},
		bridge.TaskInput{ID: "T-3", Title: "Review the backup report", Project: "Ops", Assignees: []string{"alice"},
			UpdatedAt: e.now, Version: 1},
		bridge.TaskInput{ID: "T-4", Title: "Bob's own", Project: "Release", Assignees: []string{"bob"},
			Due: store.When{Time: e.now.Add(72 * time.Hour)}, UpdatedAt: e.now, Version: 1},
	)
}

// do sends a request; user "" sends none, hdr are name/value pairs.
func (e *env) do(method, path, user, body string, hdr ...string) (*http.Response, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, testsvc.Password(user))
	}
	if body != "" && strings.HasPrefix(strings.TrimSpace(body), "<") {
		req.Header.Set("Content-Type", "text/xml")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, string(b)
}

// object reads a stored object.
func (e *env) object(user, coll, name string) *store.Object {
	e.t.Helper()
	var o *store.Object
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		o, err = tx.Object(user, coll, name)
		return err
	})
	if err != nil {
		e.t.Fatalf("object %s/%s/%s: %v", user, coll, name, err)
	}
	return o
}

func (e *env) task(id string) *store.Task {
	e.t.Helper()
	var t *store.Task
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		t, err = tx.Task("tracker", id)
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// fixture reads testdata/caldav/name and applies old/new replacements.
func fixture(t testing.TB, name string, repl ...string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "caldav", name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer(repl...).Replace(string(b))
}

// ms is a parsed 207 body.
type ms struct {
	Responses []msResponse `xml:"response"`
	SyncToken string       `xml:"sync-token"`
}

type msResponse struct {
	Href      string `xml:"href"`
	Status    string `xml:"status"`
	Propstats []struct {
		Status string `xml:"status"`
		Prop   struct {
			Props []rawProp `xml:",any"`
		} `xml:"prop"`
	} `xml:"propstat"`
}

type rawProp struct {
	XMLName xml.Name
	Inner   string `xml:",innerxml"`
	Text    string `xml:",chardata"`
}

func (e *env) ms(resp *http.Response, body string) *ms {
	t := e.t
	t.Helper()
	if resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("status %d, want 207; body:\n%s", resp.StatusCode, body)
	}
	var m ms
	if err := xml.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("bad multistatus: %v\n%s", err, body)
	}
	return &m
}

func (m *ms) response(href string) *msResponse {
	for i := range m.Responses {
		if m.Responses[i].Href == href {
			return &m.Responses[i]
		}
	}
	return nil
}

func (m *ms) hrefs() []string {
	var out []string
	for _, r := range m.Responses {
		out = append(out, r.Href)
	}
	return out
}

// prop returns a property's inner XML and the status it came with ("" if
// absent from the response).
func (r *msResponse) prop(space, local string) (rawProp, string) {
	if r == nil {
		return rawProp{}, ""
	}
	for _, ps := range r.Propstats {
		for _, p := range ps.Prop.Props {
			if p.XMLName.Space == space && p.XMLName.Local == local {
				return p, ps.Status
			}
		}
	}
	return rawProp{}, ""
}

const (
	nsDAV    = "DAV:"
	nsCalDAV = "urn:ietf:params:xml:ns:caldav"
	nsCS     = "http://calendarserver.org/ns/"
	nsApple  = "http://apple.com/ns/ical/"
)

// mustProp fails unless the property came with 200 and returns it.
func mustProp(t testing.TB, r *msResponse, space, local string) rawProp {
	t.Helper()
	if r == nil {
		t.Fatalf("no response for property %s", local)
	}
	p, st := r.prop(space, local)
	if !strings.Contains(st, " 200 ") {
		t.Fatalf("%s %s: status %q, want 200", r.Href, local, st)
	}
	return p
}

func ok200(status string) bool { return strings.Contains(status, " 200 ") }
