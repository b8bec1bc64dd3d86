package bridge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// receiver is a task system's callback endpoint on 127.0.0.1:0 that checks
// the signature of every request and answers with the status fail gives.
type receiver struct {
	t   *testing.T
	srv *httptest.Server
	now func() time.Time

	mu       sync.Mutex
	fail     func(attempt int) int // status for the n-th request (1-based)
	attempts []attempt
}

type attempt struct {
	at       time.Time // virtual time of arrival
	body     bridge.CallbackBody
	status   int
	validSig bool
}

func newReceiver(t *testing.T, now func() time.Time) *receiver {
	r := &receiver{t: t, now: now, fail: func(int) int { return http.StatusOK }}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		raw, _ := io.ReadAll(req.Body)
		m := hmac.New(sha256.New, []byte(testsvc.Secret))
		m.Write(raw)
		valid := hmac.Equal([]byte(req.Header.Get("X-Duebridge-Signature")), []byte("sha256="+hex.EncodeToString(m.Sum(nil))))
		var body bridge.CallbackBody
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Errorf("callback body is not JSON: %v: %s", err, raw)
		}
		r.mu.Lock()
		status := r.fail(len(r.attempts) + 1)
		r.attempts = append(r.attempts, attempt{at: r.now(), body: body, status: status, validSig: valid})
		r.mu.Unlock()
		if !valid {
			status = http.StatusUnauthorized
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setFail(f func(int) int) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *receiver) log() []attempt {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]attempt(nil), r.attempts...)
}

// delivered counts the 2xx answers per event_id.
func (r *receiver) delivered() map[string]int {
	out := map[string]int{}
	for _, a := range r.log() {
		if a.status/100 == 2 && a.validSig {
			out[a.body.EventID]++
		}
	}
	return out
}

func callbackConfig(t *testing.T, r *receiver) *config.Config {
	cfg := testsvc.Config(t)
	u, err := url.Parse(r.srv.URL + "/duebridge/callback")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sources[0].CallbackURL = u
	return cfg
}

// runWorker runs svc's background loops, the callback worker among them;
// stop ends them and waits.
func runWorker(t *testing.T, svc *bridge.Service) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// advanceUntil moves virtual time in steps, letting the worker run in
// between, until cond holds (or fails the test after a few real seconds).
func advanceUntil(t *testing.T, clock *fakeclock.Clock, step time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (virtual time %s)", what, clock.Now())
		}
		time.Sleep(2 * time.Millisecond)
		clock.Advance(step)
	}
}

func outbox(t *testing.T, svc *bridge.Service) (pending, failing int) {
	t.Helper()
	err := testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		pending, failing, err = tx.OutboxCounts()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return pending, failing
}

// gauge reads a metric of the service's registry.
func gauge(t *testing.T, svc *bridge.Service, name string) float64 {
	t.Helper()
	mfs, err := svc.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			m := mf.GetMetric()[0]
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestCallbackRetriedUntilAcknowledgedOnce(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(t0)
	r := newReceiver(t, clock.Now)
	r.setFail(func(n int) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	svc := testsvc.New(t, testsvc.Options{Config: callbackConfig(t, r), Clock: clock})
	runWorker(t, svc)
	testsvc.Ingest(t, svc, bridge.TaskInput{ID: "T-123", Title: "Ship", Assignees: []string{"alice"}, UpdatedAt: t0})

	// Only an assignee may complete: bob is told the task is not there.
	if err := svc.Complete(context.Background(), "bob", "tracker", "T-123", true, clock.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("completion by a non-assignee: %v, want ErrNotFound", err)
	}
	if err := svc.Complete(context.Background(), "alice", "tracker", "T-123", true, clock.Now()); err != nil {
		t.Fatal(err)
	}
	advanceUntil(t, clock, time.Second, "three attempts", func() bool { return len(r.log()) >= 3 })
	// Time passes; nothing more is sent once acknowledged.
	advanceUntil(t, clock, time.Hour, "the outbox to drain", func() bool { p, _ := outbox(t, svc); return p == 0 })
	clock.Advance(48 * time.Hour)
	time.Sleep(20 * time.Millisecond)

	log := r.log()
	if len(log) != 3 {
		t.Fatalf("attempts = %d, want 3 (two failures, one success)", len(log))
	}
	want := bridge.CallbackBody{Source: "tracker", ID: "T-123", Status: "done", User: "alice", ChangedAt: t0, EventID: log[0].body.EventID}
	for i, a := range log {
		if !a.validSig {
			t.Errorf("attempt %d: invalid signature", i+1)
		}
		if a.body != want || a.body.EventID == "" {
			t.Errorf("attempt %d: body %+v, want %+v (same event_id on every retry)", i+1, a.body, want)
		}
	}
	// Backoff: 10s, then 20s.
	if d := log[1].at.Sub(log[0].at); d < 10*time.Second {
		t.Errorf("second attempt %s after the first, want at least 10s", d)
	}
	if d := log[2].at.Sub(log[1].at); d < 20*time.Second {
		t.Errorf("third attempt %s after the second, want at least 20s", d)
	}
	if got := r.delivered(); len(got) != 1 || got[want.EventID] != 1 {
		t.Errorf("delivered = %v, want exactly one delivery of %s", got, want.EventID)
	}

	// Undone on the phone: a new change, a new event_id, status open.
	if err := svc.Complete(context.Background(), "alice", "tracker", "T-123", false, clock.Now()); err != nil {
		t.Fatal(err)
	}
	advanceUntil(t, clock, time.Second, "the reopen callback", func() bool { return len(r.log()) == 4 })
	if b := r.log()[3].body; b.Status != "open" || b.EventID == want.EventID {
		t.Errorf("reopen callback %+v: want status open and a new event_id", b)
	}
}

func TestCallbackSurvivesRestart(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(t0)
	r := newReceiver(t, clock.Now)
	r.setFail(func(int) int { return http.StatusServiceUnavailable })
	cfg := callbackConfig(t, r)
	svc := testsvc.New(t, testsvc.Options{Config: cfg, Clock: clock})
	stop := runWorker(t, svc)
	testsvc.Ingest(t, svc, bridge.TaskInput{ID: "T-1", Title: "Task 1", Assignees: []string{"alice"}, UpdatedAt: t0},
		bridge.TaskInput{ID: "T-2", Title: "Task 2", Assignees: []string{"bob"}, UpdatedAt: t0})
	if err := svc.Complete(context.Background(), "alice", "tracker", "T-1", true, clock.Now()); err != nil {
		t.Fatal(err)
	}
	advanceUntil(t, clock, time.Second, "a failed attempt", func() bool { _, f := outbox(t, svc); return f == 1 })
	if p, f := gauge(t, svc, "duebridge_callbacks_pending"), gauge(t, svc, "duebridge_callbacks_failing"); p != 1 || f != 1 {
		t.Errorf("metrics: pending %v failing %v, want 1 and 1", p, f)
	}
	stop()
	// Queued while the worker is down, then duebridge stops.
	if err := svc.Complete(context.Background(), "bob", "tracker", "T-2", true, clock.Now()); err != nil {
		t.Fatal(err)
	}
	if err := testsvc.Store(t, svc).Close(); err != nil {
		t.Fatal(err)
	}

	// The task system recovers; duebridge starts again on the same data.
	r.setFail(func(int) int { return http.StatusOK })
	clock.Advance(time.Minute)
	svc2 := testsvc.New(t, testsvc.Options{Config: cfg, Clock: clock})
	runWorker(t, svc2)
	advanceUntil(t, clock, 5*time.Second, "both callbacks delivered", func() bool { return len(r.delivered()) == 2 })
	advanceUntil(t, clock, time.Hour, "the outbox to drain", func() bool { p, _ := outbox(t, svc2); return p == 0 })
	clock.Advance(24 * time.Hour)
	time.Sleep(20 * time.Millisecond)
	for id, n := range r.delivered() {
		if n != 1 {
			t.Errorf("event %s delivered %d times, want once", id, n)
		}
	}
	users := map[string]bool{}
	for _, a := range r.log() {
		if a.status == http.StatusOK {
			users[a.body.ID+"/"+a.body.User] = true
		}
	}
	if !users["T-1/alice"] || !users["T-2/bob"] {
		t.Errorf("delivered callbacks %v, want T-1 by alice and T-2 by bob", users)
	}
	if p := gauge(t, svc2, "duebridge_callbacks_pending"); p != 0 {
		t.Errorf("pending metric after delivery = %v", p)
	}
}

// A batch of slow receivers outlasted the claim taken when the batch was
// read: the callbacks still waiting in it became due again, and a second
// worker (another process on the same PostgreSQL database) would have sent
// them as well. The claim on the rest of a batch is renewed in time.
func TestCallbackClaimOutlastsSlowBatch(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(t0)
	r := newReceiver(t, clock.Now)
	svc := testsvc.New(t, testsvc.Options{Config: callbackConfig(t, r), Clock: clock})
	ids := []string{"T-1", "T-2", "T-3", "T-4"}
	for _, id := range ids {
		testsvc.Ingest(t, svc, bridge.TaskInput{ID: id, Title: id, Assignees: []string{"alice"}, UpdatedAt: t0})
		if err := svc.Complete(context.Background(), "alice", "tracker", id, true, clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	var exposed []string
	r.setFail(func(int) int {
		clock.Advance(50 * time.Second) // each answer takes 50s
		// What another worker would pick up now, during this delivery.
		err := testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
			due, err := tx.DueCallbacks(clock.Now(), 50)
			for _, c := range due {
				exposed = append(exposed, fmt.Sprintf("%s at %s", c.TaskID, clock.Now().Sub(t0)))
			}
			return err
		})
		if err != nil {
			t.Error(err)
		}
		return http.StatusOK
	})
	runWorker(t, svc)
	advanceUntil(t, clock, time.Second, "all callbacks delivered", func() bool { return len(r.delivered()) == len(ids) })
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(exposed) > 0 {
		t.Errorf("callbacks claimable by another worker while this one still had them queued: %v", exposed)
	}
}

// A second service on the same registry (a restart in-process) shares the
// metrics of the first (the callback worker's, the scheduler's...) instead
// of panicking on the duplicate registration.
func TestSecondServiceSharesMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	testsvc.New(t, testsvc.Options{Service: bridge.Options{Registry: reg}})
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("second service panicked: %v", p)
		}
	}()
	svc := testsvc.New(t, testsvc.Options{Service: bridge.Options{Registry: reg}})
	if p := gauge(t, svc, "duebridge_callbacks_pending"); p != 0 {
		t.Errorf("pending = %v", p)
	}
}

// logTap records every log line of a service, to wait for a logged failure.
type logTap struct {
	mu    *sync.Mutex
	lines *[]string
}

func newLogTap() logTap { return logTap{mu: new(sync.Mutex), lines: new([]string)} }

func (l logTap) Enabled(context.Context, slog.Level) bool { return true }
func (l logTap) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logTap) WithGroup(string) slog.Handler            { return l }
func (l logTap) Handle(_ context.Context, r slog.Record) error {
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.mu.Lock()
	*l.lines = append(*l.lines, line)
	l.mu.Unlock()
	return nil
}

func (l logTap) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range *l.lines {
		if strings.Contains(line, sub) {
			return true
		}
	}
	return false
}

// The database went away right after a send (a PostgreSQL restart): the
// worker gave up on the batch, so the callbacks it had claimed but not sent
// sat hidden for the whole 2-minute claim, and the one it had delivered but
// not marked was sent again once the claim lapsed. The failure is a real
// one of the real store: the outbox table is renamed away from a second
// connection to the same SQLite file, and back. The worker now retries its
// bookkeeping and, once the store answers, releases the rest of the batch.
func TestCallbackBookkeepingSurvivesStoreOutage(t *testing.T) {
	t.Parallel()
	clock := fakeclock.New(t0)
	r := newReceiver(t, clock.Now)
	cfg := callbackConfig(t, r)
	tap := newLogTap()
	svc := testsvc.New(t, testsvc.Options{Config: cfg, Clock: clock, Logger: slog.New(tap)})
	raw, err := sql.Open("sqlite", "file:"+filepath.Join(cfg.DataDir, "duebridge.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	rename := func(from, to string) {
		if _, err := raw.Exec(`ALTER TABLE ` + from + ` RENAME TO ` + to); err != nil {
			t.Errorf("rename %s: %v", from, err)
		}
	}
	ids := []string{"T-1", "T-2", "T-3", "T-4", "T-5"}
	for _, id := range ids {
		testsvc.Ingest(t, svc, bridge.TaskInput{ID: id, Title: id, Assignees: []string{"alice"}, UpdatedAt: t0})
		if err := svc.Complete(context.Background(), "alice", "tracker", id, true, clock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	r.setFail(func(n int) int {
		if n == 1 { // the store goes away while the first send is on the wire
			rename("outbox", "outbox_away")
		}
		return http.StatusOK
	})
	runWorker(t, svc)
	deadline := time.Now().Add(10 * time.Second)
	for !tap.has("no such table: outbox") {
		if time.Now().After(deadline) {
			t.Fatal("the worker never met the failing store")
		}
		time.Sleep(2 * time.Millisecond)
	}
	clock.Advance(time.Second) // a retry or two fail as well
	time.Sleep(20 * time.Millisecond)
	rename("outbox_away", "outbox")
	// Small steps: virtual time moves while the worker sends for real (slow
	// under -race beside other packages' tests), and only waiting out the
	// 2-minute claim must fail this.
	advanceUntil(t, clock, 250*time.Millisecond, "all callbacks delivered", func() bool { return len(r.delivered()) == len(ids) })
	if took := clock.Now().Sub(t0); took >= time.Minute {
		t.Errorf("the rest of the batch waited %s of virtual time (the claim is 2m), want it released when the store answers", took)
	}
	advanceUntil(t, clock, time.Second, "the outbox to drain", func() bool { p, _ := outbox(t, svc); return p == 0 })
	clock.Advance(10 * time.Minute) // past any claim: nothing is sent again
	time.Sleep(50 * time.Millisecond)
	for id, n := range r.delivered() {
		if n != 1 {
			t.Errorf("event %s delivered %d times, want once", id, n)
		}
	}
	if !tap.has("released the rest of the batch") {
		t.Error("no log line of the recovered bookkeeping")
	}
}
