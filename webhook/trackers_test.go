package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	sysclock "github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// testNow is the clock of the tracker tests: shortly after the sample
// deliveries (2026-11-20 09:00-09:40 UTC), so Linear's freshness check and
// the receive time of deletes are deterministic.
var testNow = time.Date(2026, 11, 20, 9, 45, 0, 0, time.UTC)

// Tracker identities of the test users, as users[].identities holds them.
var testIdentities = map[string]map[string]string{
	"alice": {"github": "octocat", "gitlab": "jsmith", "jira": "5b10ac8d82e05b22cc7d4ef5", "linear": "alice@example.com",
		"gitea": "alice", "forgejo": "alice"},
	"bob": {"github": "Hubot", "gitlab": "user1", "jira": "5b10a2844c20165700ede21g", "linear": "8a7c1e3e-7f0f-4a3e-9e7e-2f1b0b1c2d3e",
		"gitea": "bobby", "forgejo": "bobby"},
}

// eventHeaderValues maps a sample file's prefix to the value of the
// tracker's event header where the two differ (GitHub's are the same).
var eventHeaderValues = map[string]map[string]string{
	"gitlab": {"issue": "Issue Hook", "note": "Note Hook", "work_item": "Work Item Hook"},
	"linear": {"issue": "Issue", "comment": "Comment"},
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// trackerEnv is a real HTTP server with the webhook handler on a temp
// store, one source of the tracker's kind named after it.
type trackerEnv struct {
	t      testing.TB
	kind   string
	secret string
	srv    *httptest.Server
	svc    *bridge.Service
	clock  *fakeClock
	// headers is the documented header set, from testdata/webhook/<kind>/headers.json.
	headers map[string]string
	// event names the event header value for a sample file (by default
	// the file name up to its first '-').
	event func(file string) string
}

// newTrackerEnv starts the world; edit, if given, changes the tracker's
// source before the service starts.
func newTrackerEnv(t testing.TB, kind string, edit ...func(*config.Source)) *trackerEnv {
	t.Helper()
	cfg := testsvc.Config(t)
	for i := range cfg.Users {
		cfg.Users[i].Identities = testIdentities[cfg.Users[i].Name]
	}
	secret := "s3cret-for-" + kind
	src := config.Source{Name: kind, Kind: kind, Secret: secret,
		LabelProjects: map[string]string{"release": "Release 2.1"}}
	for _, f := range edit {
		f(&src)
	}
	cfg.Sources = append(cfg.Sources, src)
	clock := &fakeClock{t: testNow}
	svc := testsvc.New(t, testsvc.Options{Config: cfg, Clock: sysclock.System(clock.Now),
		Service: bridge.Options{Tracker: NewCloser(CloserOptions{}).Deliver}})
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", NewHandler(svc, Options{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	env := &trackerEnv{t: t, kind: kind, secret: secret, srv: srv, svc: svc, clock: clock,
		event: func(file string) string {
			prefix, _, _ := strings.Cut(file, "-")
			if v, ok := eventHeaderValues[kind][prefix]; ok {
				return v
			}
			return prefix
		}}
	if err := json.Unmarshal(env.read("headers.json"), &env.headers); err != nil {
		t.Fatalf("headers.json: %v", err)
	}
	return env
}

func (e *trackerEnv) read(file string) []byte {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "webhook", e.kind, file))
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// delivery describes one POST of a sample.
type delivery struct {
	file   string
	body   []byte               // instead of file
	edit   func(map[string]any) // changes the JSON before it is signed
	id     string               // delivery id; "" = a fresh one
	secret string               // signing secret; "" = the source's
	drop   []string             // headers to leave out
	tamper bool                 // change the body after signing it
}

type trackerReplyT struct {
	status int
	raw    string
	body   map[string]any
}

func newID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// post sends d with the tracker's documented header set, signed the way
// the tracker signs.
func (e *trackerEnv) post(d delivery) trackerReplyT {
	e.t.Helper()
	body := d.body
	if body == nil {
		body = e.read(d.file)
	}
	if d.edit != nil {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			e.t.Fatal(err)
		}
		d.edit(m)
		body, _ = json.Marshal(m)
	}
	if d.id == "" {
		d.id = newID()
	}
	secret := e.secret
	if d.secret != "" {
		secret = d.secret
	}
	mac256 := hmac.New(sha256.New, []byte(secret))
	mac256.Write(body)
	mac1 := hmac.New(sha1.New, []byte(secret))
	mac1.Write(body)
	repl := strings.NewReplacer(
		"{event}", e.event(d.file),
		"{delivery}", d.id,
		"{hmac-sha256}", hex.EncodeToString(mac256.Sum(nil)),
		"{hmac-sha1}", hex.EncodeToString(mac1.Sum(nil)),
		"{token}", secret,
		"{uuid}", newID(),
	)
	if d.tamper {
		body = append(bytes.TrimRight(body, "\n"), ' ')
	}
	req, err := http.NewRequest("POST", e.srv.URL+"/hooks/"+e.kind, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range e.headers {
		if !slices.Contains(d.drop, k) {
			req.Header.Set(k, repl.Replace(v))
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := trackerReplyT{status: resp.StatusCode, raw: string(raw)}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		e.t.Fatalf("%s: reply is not JSON (%d): %q", d.file, resp.StatusCode, raw)
	}
	return r
}

// mustPost posts and checks the status.
func (e *trackerEnv) mustPost(d delivery, status int) trackerReplyT {
	e.t.Helper()
	r := e.post(d)
	if r.status != status {
		e.t.Fatalf("%s: status %d, want %d: %s", d.file, r.status, status, r.raw)
	}
	return r
}

// counts reads accepted and ignored from a 200 reply.
func (r trackerReplyT) counts() (accepted, ignored int) {
	a, _ := r.body["accepted"].(float64)
	i, _ := r.body["ignored"].(float64)
	return int(a), int(i)
}

// task returns the stored task, nil if none.
func (e *trackerEnv) task(id string) *store.Task {
	e.t.Helper()
	var t *store.Task
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		t, err = tx.Task(e.kind, id)
		if errors.Is(err, store.ErrNotFound) {
			t, err = nil, nil
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return t
}

// snapshot is everything stored about the source's tasks and the users'
// views of them, to prove a request changed nothing.
func (e *trackerEnv) snapshot() string {
	e.t.Helper()
	var b strings.Builder
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		tasks, err := tx.TasksBySource(e.kind, true)
		if err != nil {
			return err
		}
		for _, t := range tasks {
			fmt.Fprintf(&b, "%s %+v\n", t.ID, t)
		}
		for _, u := range []string{"alice", "bob", "carol"} {
			objs, err := tx.ObjectsOfUser(u)
			if err != nil {
				return err
			}
			for _, o := range objs {
				fmt.Fprintf(&b, "%s %s/%s %s\n", u, o.Collection, o.Name, o.ETag)
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return b.String()
}

// want is what a stored task should look like; zero fields are not checked
// except those marked.
type want struct {
	title     string
	status    string
	assignees []string // checked always (nil = none)
	due       string   // "2026-12-01" all-day, RFC 3339, or "" for none; checked always
	project   string
	priority  string
	deleted   bool // checked always
	url       string
	updated   string // RFC 3339
}

func (e *trackerEnv) check(step, id string, w want) {
	e.t.Helper()
	t := e.task(id)
	if t == nil {
		e.t.Fatalf("%s: task %q not stored", step, id)
	}
	var errs []string
	diff := func(field string, got, want any) {
		errs = append(errs, fmt.Sprintf("%s = %v, want %v", field, got, want))
	}
	if w.title != "" && t.Title != w.title {
		diff("title", t.Title, w.title)
	}
	if w.status != "" && t.Status != w.status {
		diff("status", t.Status, w.status)
	}
	if !slices.Equal(t.Assignees, w.assignees) {
		diff("assignees", t.Assignees, w.assignees)
	}
	due := ""
	if !t.Due.IsZero() {
		due = t.Due.Time.Format(time.RFC3339)
		if t.Due.AllDay {
			due = t.Due.Time.Format("2006-01-02")
		}
	}
	if due != w.due {
		diff("due", due, w.due)
	}
	if w.project != "" && t.Project != w.project {
		diff("project", t.Project, w.project)
	}
	if w.priority != "" && t.Priority != w.priority {
		diff("priority", t.Priority, w.priority)
	}
	if t.Deleted != w.deleted {
		diff("deleted", t.Deleted, w.deleted)
	}
	if w.url != "" && t.URL != w.url {
		diff("url", t.URL, w.url)
	}
	if w.updated != "" && t.UpdatedAt.Format(time.RFC3339Nano) != w.updated {
		diff("updated_at", t.UpdatedAt.Format(time.RFC3339Nano), w.updated)
	}
	if len(errs) > 0 {
		e.t.Errorf("%s: task %s:\n  %s", step, id, strings.Join(errs, "\n  "))
	}
}

// metric reads a counter of the service's registry; 0 if absent.
func (e *trackerEnv) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	mfs, err := e.svc.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// step is one delivery of a scenario and the task state it must leave.
type step struct {
	name     string
	d        delivery
	accepted int // 200 replies: how many records were applied
	ignored  int
	skipped  bool // 200 with nothing stored (an event that carries nothing for us)
	id       string
	want     want
}

// run posts the steps in order, checking each reply and the stored task.
func (e *trackerEnv) run(steps []step) {
	e.t.Helper()
	for _, s := range steps {
		before := e.snapshot()
		r := e.mustPost(s.d, http.StatusOK)
		a, i := r.counts()
		if s.skipped {
			if r.body["skipped"] == nil || a != 0 || i != 0 {
				e.t.Errorf("%s: reply %s, want a skip", s.name, r.raw)
			}
			if after := e.snapshot(); after != before {
				e.t.Errorf("%s: a skipped event changed the store:\nbefore %s\nafter %s", s.name, before, after)
			}
			continue
		}
		if a != s.accepted || i != s.ignored {
			e.t.Errorf("%s: reply %s, want accepted %d ignored %d", s.name, r.raw, s.accepted, s.ignored)
		}
		if s.id != "" {
			e.check(s.name, s.id, s.want)
		}
	}
}

// objectsOf lists a user's stored CalDAV object names.
func (e *trackerEnv) objectsOf(user string) []string {
	e.t.Helper()
	var names []string
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		objs, err := tx.ObjectsOfUser(user)
		for _, o := range objs {
			names = append(names, o.Collection+"/"+o.Name)
		}
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return names
}
