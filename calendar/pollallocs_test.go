package calendar_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// The home poll (iOS's 38 properties, Depth 1, Prefer: return=minimal)
// formatted the owner href, the quota figures, the supported component
// set, the ctag and the sync token one by one for every list, and copied
// each list to the heap: 16.6 allocations per list (store included), now
// 13.0. The answer is the same; the garbage
// is not. Measured on the handler itself, so the client's own
// allocations do not blur the count.
func TestHomePollAllocationsPerList(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	allocs := func() float64 {
		h := e.srv.Config.Handler
		body := fixture(t, "home_propfind.xml")
		poll := func() {
			req := httptest.NewRequest("PROPFIND", "/dav/alice/calendars/", strings.NewReader(body))
			req.SetBasicAuth("alice", testsvc.Password("alice"))
			req.Header.Set("Depth", "1")
			req.Header.Set("Prefer", "return=minimal")
			req.Header.Set("Brief", "t")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusMultiStatus {
				t.Fatalf("home PROPFIND: %d %s", w.Code, w.Body)
			}
		}
		poll()
		return testing.AllocsPerRun(50, poll)
	}
	before := allocs()
	var tasks []bridge.TaskInput
	for i := range 10 {
		tasks = append(tasks, bridge.TaskInput{ID: fmt.Sprintf("P-%d", i), Title: "t", Project: fmt.Sprintf("Project %d", i),
			Assignees: []string{"alice"}, Due: store.When{Time: e.now.Add(48 * time.Hour)}})
	}
	testsvc.Ingest(t, e.svc, tasks...)
	after := allocs()
	// Ten projects are twenty lists (tasks and deadlines).
	perList := (after - before) / 20
	t.Logf("%.0f allocations per poll before, %.0f after 20 more lists: %.1f per list", before, after, perList)
	if perList > 13.5 {
		t.Errorf("home poll: %.1f allocations per list, want at most 13.5", perList)
	}
	// The part that does not grow with the lists: 167 before the lists'
	// read ran outside a transaction (no Tx, no context watchers), the
	// body was read into a pooled buffer and the request log built only
	// when enabled, 135 after.
	if before > 145 {
		t.Errorf("home poll before the 20 lists: %.0f allocations, want at most 145", before)
	}
}

// clockCounter is the real backend, counting its clock readings.
type clockCounter struct {
	calendar.Backend
	reads atomic.Int64
}

func (c *clockCounter) Now() time.Time { c.reads.Add(1); return c.Backend.Now() }

// TestHomePollReadsTheClockOnce: the sync-health record of a home poll
// read the clock, took its lock, looked the device up and the metric's
// label for every list; now once per poll.
func TestHomePollReadsTheClockOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	var tasks []bridge.TaskInput
	for i := range 5 {
		tasks = append(tasks, bridge.TaskInput{ID: fmt.Sprintf("P-%d", i), Title: "t", Project: fmt.Sprintf("Project %d", i),
			Assignees: []string{"alice"}, Due: store.When{Time: e.now.Add(48 * time.Hour)}})
	}
	testsvc.Ingest(t, e.svc, tasks...)
	be := &clockCounter{Backend: e.svc.CalDAV()}
	h := calendar.NewHandler(be, calendar.Options{})
	poll := func() string {
		req := httptest.NewRequest("PROPFIND", "/dav/alice/calendars/", strings.NewReader(fixture(t, "home_propfind.xml")))
		req.SetBasicAuth("alice", testsvc.Password("alice"))
		req.Header.Set("Depth", "1")
		req.Header.Set("Prefer", "return=minimal")
		req.Header.Set("User-Agent", "iOS/18.1.1 (22B91) dataaccessd/1.0")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusMultiStatus {
			t.Fatalf("home PROPFIND: %d %s", w.Code, w.Body)
		}
		return w.Body.String()
	}
	body := poll()
	lists := strings.Count(body, "<c:calendar/>")
	if lists < 10 {
		t.Fatalf("home poll listed %d lists, want at least 10:\n%s", lists, body)
	}
	before := be.reads.Load()
	poll()
	if n := be.reads.Load() - before; n > 1 {
		t.Errorf("a home poll over %d lists read the clock %d times, want once", lists, n)
	}
}
