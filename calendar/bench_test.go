package calendar_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/iphone"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// fill stores n objects of one VTODO list for alice directly (rendering
// 100,000 tasks through Ingest would dominate the benchmark's set-up), in
// transactions of 5,000, like a large tracker backlog would have produced.
func fill(b testing.TB, e *env, coll string, n int) {
	b.Helper()
	_, data := e.do("GET", "/dav/alice/calendars/release-tasks/tracker-T-1.ics", "alice", "")
	ctx := context.Background()
	for start := 0; start < n; start += 5000 {
		err := testsvc.Store(b, e.svc).Update(ctx, func(tx store.Tx) error {
			if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: coll, Project: coll, Kind: store.KindTodos,
				DisplayName: coll}); err != nil {
				return err
			}
			for i := start; i < min(start+5000, n); i++ {
				id := fmt.Sprintf("B-%06d", i)
				d := []byte(strings.ReplaceAll(data, "T-1", id))
				if err := tx.PutObject(&store.Object{User: "alice", Collection: coll, Name: render.ObjectName("tracker", id),
					UID: render.TodoUID("tracker", id), Source: "tracker", TaskID: id, ETag: render.ETag(d), Data: d}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// touch changes one object of coll in its own revision.
func touch(b testing.TB, e *env, coll string, i int) {
	b.Helper()
	err := testsvc.Store(b, e.svc).Update(context.Background(), func(tx store.Tx) error {
		id := fmt.Sprintf("B-%06d", i)
		o, err := tx.Object("alice", coll, render.ObjectName("tracker", id))
		if err != nil {
			return err
		}
		o.Data = append(o.Data, ' ')
		o.ETag = render.ETag(o.Data)
		return tx.PutObject(o)
	})
	if err != nil {
		b.Fatal(err)
	}
}

// client sends requests with a keep-alive connection, as a phone does.
type benchClient struct {
	b   *testing.B
	e   *env
	hc  *http.Client
	hdr http.Header
}

func newBenchClient(b *testing.B, e *env) *benchClient {
	return &benchClient{b: b, e: e, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}},
		hdr: http.Header{"User-Agent": {"iOS/18.1.1 (22B91) dataaccessd/1.0"}, "Content-Type": {"text/xml"}}}
}

func (c *benchClient) do(method, path, body, depth string) []byte {
	req, _ := http.NewRequest(method, c.e.srv.URL+path, strings.NewReader(body))
	req.Header = c.hdr.Clone()
	req.SetBasicAuth("alice", testsvc.Password("alice"))
	if depth != "" {
		req.Header.Set("Depth", depth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.b.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus {
		c.b.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, out)
	}
	return out
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loopCPU runs f in b's loop and reports the process's CPU time per
// iteration (server and in-process client together) as cpu-ns/op: unlike
// ns/op, it does not grow when other processes crowd the cores.
func loopCPU(b *testing.B, f func()) {
	b.ReportAllocs()
	b.ResetTimer()
	c0 := cpuTime()
	n := 0
	for b.Loop() {
		f()
		n++
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(max(n, 1)), "cpu-ns/op")
}

func benchEnv(b *testing.B) *env {
	// Quiet login protection and a real clock; logs discarded by testsvc.
	e := newEnv(b, envOptions{config: func(c *config.Config) { c.Limits.ICalObjectBytes = 256 << 10 }})
	e.seed()
	return e
}

// BenchmarkPropfindHome is the home poll iOS makes every 15 minutes: the
// ~38-property body, Depth 1, over 20 collections.
func BenchmarkPropfindHome(b *testing.B) {
	e := benchEnv(b)
	var tasks []bridge.TaskInput
	for i := range 10 {
		tasks = append(tasks, bridge.TaskInput{ID: fmt.Sprintf("P-%d", i), Title: "t", Project: fmt.Sprintf("Project %d", i),
			Assignees: []string{"alice"}, Due: store.When{Time: e.now.Add(48 * time.Hour)}})
	}
	testsvc.Ingest(b, e.svc, tasks...)
	c := newBenchClient(b, e)
	body := fixture(b, "home_propfind.xml")
	loopCPU(b, func() { c.do("PROPFIND", "/dav/alice/calendars/", body, "1") })
}

// BenchmarkMultiget100 fetches 100 objects with calendar-data.
func BenchmarkMultiget100(b *testing.B) {
	e := benchEnv(b)
	fill(b, e, "bench-tasks", 1000)
	var hrefs strings.Builder
	for i := range 100 {
		fmt.Fprintf(&hrefs, "<A:href xmlns:A=\"DAV:\">/dav/alice/calendars/bench-tasks/%s</A:href>\n",
			render.ObjectName("tracker", fmt.Sprintf("B-%06d", i*7)))
	}
	body := fixture(b, "multiget.xml", "{{HREFS}}", hrefs.String())
	c := newBenchClient(b, e)
	if out := c.do("REPORT", "/dav/alice/calendars/bench-tasks/", body, ""); strings.Count(string(out), "calendar-data>") != 200 {
		b.Fatalf("multiget answered %d objects", strings.Count(string(out), "calendar-data>")/2)
	}
	loopCPU(b, func() { c.do("REPORT", "/dav/alice/calendars/bench-tasks/", body, "") })
}

// BenchmarkSyncIncremental is an incremental sync-collection with one
// change, against lists of 1,000 and 100,000 objects: its cost must not
// grow with the list.
func BenchmarkSyncIncremental(b *testing.B) {
	for _, n := range []int{1000, 100_000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			e := benchEnv(b)
			fill(b, e, "bench-tasks", n)
			c := newBenchClient(b, e)
			full := c.do("REPORT", "/dav/alice/calendars/bench-tasks/", syncBodyB(b, ""), "1")
			tok := syncTokenOf(b, full)
			touch(b, e, "bench-tasks", n/2)
			body := syncBodyB(b, tok)
			if out := c.do("REPORT", "/dav/alice/calendars/bench-tasks/", body, "1"); strings.Count(string(out), "<d:response>") != 1 {
				b.Fatalf("incremental sync answered %d responses", strings.Count(string(out), "<d:response>"))
			}
			loopCPU(b, func() { c.do("REPORT", "/dav/alice/calendars/bench-tasks/", body, "1") })
		})
	}
}

func syncBodyB(b testing.TB, token string) string {
	return fixture(b, "sync_collection.xml", "{{TOKEN}}", token)
}

func syncTokenOf(b testing.TB, out []byte) string {
	s := string(out)
	i := strings.Index(s, "<d:sync-token>")
	j := strings.Index(s, "</d:sync-token>")
	if i < 0 || j < i {
		b.Fatalf("no sync-token in %s", s)
	}
	return s[i+len("<d:sync-token>") : j]
}

// TestSyncQueryPlan checks that the query behind an incremental
// sync-collection (store.CollectionChanges) is answered from the objects_sync index,
// which is what keeps its cost proportional to the changes.
func TestSyncQueryPlan(t *testing.T) {
	cfg := testsvc.Config(t)
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	testsvc.Ingest(t, svc, bridge.TaskInput{ID: "Q-1", Title: "q", Assignees: []string{"alice"}})
	db, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.DataDir, "duebridge.db")+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The statement of store.CollectionChanges (its object columns).
	rows, err := db.Query(`EXPLAIN QUERY PLAN SELECT c.seq, c.min_seq, o.name, o.etag, o.seq, o.deleted, o.modified
		FROM collections c LEFT JOIN objects o ON o.username = c.username AND o.collection = c.name AND o.seq > ?
		WHERE c.username = ? AND c.name = ? ORDER BY o.seq, o.name`, 1, "alice", "inbox-tasks")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	joined := strings.Join(plan, "; ")
	if !strings.Contains(joined, "objects_sync") || strings.Contains(joined, "SCAN objects") {
		t.Fatalf("incremental sync does not use objects_sync: %s", joined)
	}
	t.Logf("plan: %s", joined)
}

// pollWriter is a reusable http.ResponseWriter that keeps only the status
// and the size, so BenchmarkHomePollHandler measures the server's work and
// not a recorder's.
type pollWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *pollWriter) Header() http.Header { return w.h }
func (w *pollWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *pollWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}

// BenchmarkHomePollHandler is the server's own part of an iPhone's
// background poll, without the network and TLS: iOS's home PROPFIND
// (Depth 1, Prefer: return=minimal, Brief: t) over ten lists, with a
// device password, straight into the handler.
func BenchmarkHomePollHandler(b *testing.B) {
	e := newEnv(b, envOptions{})
	var tasks []bridge.TaskInput
	for p := range 5 {
		tasks = append(tasks, bridge.TaskInput{ID: fmt.Sprintf("P-%d", p), Title: "t", Project: fmt.Sprintf("Project %d", p),
			Assignees: []string{"alice"}, Due: store.When{Time: e.now.Add(48 * time.Hour)}})
	}
	testsvc.Ingest(b, e.svc, tasks...)
	_, pw, err := e.svc.IssueDevicePassword(context.Background(), "alice", "iPhone")
	if err != nil {
		b.Fatal(err)
	}
	h := e.srv.Config.Handler
	body := strings.NewReader(iphone.HomeBody)
	req := httptest.NewRequest("PROPFIND", "/dav/alice/calendars/", body)
	req.SetBasicAuth("alice", pw)
	req.Header.Set("Depth", "1")
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("Prefer", "return=minimal")
	req.Header.Set("Brief", "t")
	req.Header.Set("User-Agent", "iOS/18.1.1 (22B91) dataaccessd/1.0")
	w := &pollWriter{h: http.Header{}}
	poll := func() {
		body.Reset(iphone.HomeBody)
		req.Body = io.NopCloser(body)
		clear(w.h)
		w.status, w.n = 0, 0
		h.ServeHTTP(w, req)
		if w.status != http.StatusMultiStatus {
			b.Fatalf("home PROPFIND: HTTP %d", w.status)
		}
	}
	poll()
	b.Logf("answer: %d bytes", w.n)
	loopCPU(b, poll)
}
