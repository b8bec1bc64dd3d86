package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// env is the server under load and what talks to it.
type env struct {
	o        *options
	logw     io.Writer
	rep      *Report
	users    []string
	httpURL  string // "" when only IMAP is targeted
	base     *url.URL
	imapAddr string
	pid      int
	child    *child
	tr       *http.Transport
	hook     *hook
	hc       *http.Client // for /metrics
	// metrics: /metrics answers with duebridge's Prometheus text.
	metrics bool
	// caldav: the server answers PROPFIND under the DAV root.
	caldav bool
}

func (e *env) logf(format string, a ...any) {
	fmt.Fprintf(e.logw, "duebridge-load: "+format+"\n", a...)
}

func userNames(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		if strings.Contains(format, "%") {
			out[i] = fmt.Sprintf(format, i)
		} else if n == 1 {
			out[i] = format
		} else {
			out[i] = fmt.Sprintf("%s%d", format, i)
		}
	}
	return out
}

func run(ctx context.Context, o *options, logw io.Writer) (*Report, error) {
	ctx, cancel := context.WithTimeout(ctx, o.MaxTime)
	defer cancel()
	e, stop, err := setup(ctx, o, logw)
	if err != nil {
		return nil, err
	}
	defer stop()
	switch o.Scenario {
	case "load":
		err = e.runLoad(ctx)
	case "phones":
		err = e.runPhones(ctx)
	case "dav":
		err = e.runDAV(ctx)
	}
	if e.pid > 0 {
		m := readMem(e.pid)
		e.rep.fig("server peak RSS (VmHWM)", float64(m.HWM>>20), "MiB")
	}
	if e.child != nil && ctx.Err() == nil {
		if strings.Contains(tail(e.child.logPath, 1<<20), `"level":"ERROR"`) {
			e.rep.note("the server logged errors; see serve.log (--keep keeps it)")
		}
	}
	return e.rep, err
}

// setup starts the server (--start) or finds the target, and probes what
// it serves; stop ends what setup started.
func setup(ctx context.Context, o *options, logw io.Writer) (e *env, stop func(), err error) {
	e = &env{o: o, logw: logw, rep: newReport(o)}
	if o.ToolGOGC > 0 {
		debug.SetGCPercent(o.ToolGOGC) // this process only: the child's env is untouched
	}
	nUsers := o.Users
	if o.Scenario == "phones" {
		nUsers = o.PhoneUsers
		if nUsers <= 0 {
			nUsers = o.Phones
		}
	}
	e.users = userNames(o.UserFormat, nUsers)
	e.tr = newTransport(max(o.MaxInflight, o.DAV*2, o.Workers*2, 64))
	stops := []func(){e.tr.CloseIdleConnections}
	stopAll := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	stop = stopAll
	defer func() {
		if err != nil {
			// Not stop: an error return has set it to nil.
			stopAll()
		}
	}()
	e.hc = &http.Client{Transport: e.tr, Timeout: 10 * time.Second}

	if o.Start {
		if o.Trigger == "append" {
			return nil, nil, errors.New("--trigger append needs a --target/--imap server that accepts APPEND; duebridge's INBOX only receives notifications")
		}
		secret := o.Secret
		c, err := startServer(ctx, serverOpts{
			Bin: o.Bin, Src: o.Src, Users: e.users, Password: o.Password, Hash: o.Hash,
			Source: o.Source, Secret: secret, IMAP: true, Keep: o.Keep, Log: e.logf,
			ConnsPerUser: max(20, (o.Idle+nUsers-1)/nUsers+2),
			TLS:          o.TLS,
			TicketKeys:   o.TicketKeys,
			DevicePasswords: func() int {
				if o.DevicePWs && o.Scenario == "phones" {
					return nUsers
				}
				return 0
			}(),
		})
		if err != nil {
			return nil, nil, err
		}
		stops = append(stops, c.Stop)
		e.child, e.pid = c, c.Pid
		if c.CAs != nil {
			e.tr.TLSClientConfig = &tls.Config{RootCAs: c.CAs}
		}
		e.httpURL, e.imapAddr = c.HTTPURL, c.IMAPAddr
		o.Secret = secretOf(c)
	} else {
		e.httpURL, e.imapAddr, e.pid = strings.TrimSuffix(o.Target, "/"), o.IMAP, o.Pid
	}
	e.rep.Target = e.httpURL
	if e.rep.Target == "" {
		e.rep.Target = "imap://" + e.imapAddr
	}
	if e.httpURL != "" {
		if e.base, err = url.Parse(e.httpURL); err != nil {
			return nil, nil, err
		}
		if o.Secret != "" {
			e.hook = newHook(e.httpURL, o.Source, o.Secret, e.tr)
		}
		m := scrape(ctx, e.hc, e.httpURL+"/metrics", "go_goroutines")
		_, e.metrics = m["go_goroutines"]
		e.caldav = e.probeCalDAV(ctx)
		if !e.caldav {
			e.logf("the server does not answer CalDAV for %s: CalDAV parts are skipped", e.users[0])
		}
	}
	e.rep.Params = map[string]any{
		"users": nUsers, "projects": o.Projects, "tasks": o.Tasks, "idle": o.Idle, "dav_clients": o.DAV,
		"rate": o.Rate, "batch": o.Batch, "duration": o.Duration.String(), "hash": o.Hash, "trigger": o.Trigger,
		"started": o.Start, "imap": e.imapAddr,
	}
	return e, stop, nil
}

func secretOf(c *child) string { return c.secret }

// probeCalDAV reports whether the server serves the first user's home.
func (e *env) probeCalDAV(ctx context.Context) bool {
	dc := newDAVClient(e.base, e.tr, e.users[0], e.o.Password)
	_, err := dc.discover(ctx)
	if err != nil {
		e.logf("CalDAV discovery: %v", err)
	}
	return err == nil
}

// serverMem is the server's memory now (zero without a known pid).
func (e *env) serverMem() Mem { return readMem(e.pid) }

// goroutines reads go_goroutines from /metrics (-1 if unknown).
func (e *env) goroutines(ctx context.Context) float64 {
	if !e.metrics {
		return -1
	}
	m := scrape(ctx, e.hc, e.httpURL+"/metrics", "go_goroutines")
	if v, ok := m["go_goroutines"]; ok {
		return v
	}
	return -1
}

// rss is the server's RSS in bytes: from /proc when the pid is known, else
// from /metrics.
func (e *env) rss(ctx context.Context) float64 {
	if e.pid > 0 {
		return float64(readMem(e.pid).RSS)
	}
	if e.metrics {
		m := scrape(ctx, e.hc, e.httpURL+"/metrics", "process_resident_memory_bytes")
		return m["process_resident_memory_bytes"]
	}
	return 0
}

// progress prints one line per second until ctx ends: per operation the
// count of the last second and its p99, then server RSS and goroutines.
func (e *env) progress(ctx context.Context, label string, hs ...*Hist) func() {
	if e.o.Quiet {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%s t=%3.0fs", label, time.Since(start).Seconds())
			for _, h := range hs {
				n, p99 := h.win.take()
				fmt.Fprintf(&b, " | %s %d/s p99 %.1fms", h.Name, n, ms(p99))
				if errs := h.errs.Load(); errs > 0 {
					fmt.Fprintf(&b, " err %d", errs)
				}
			}
			if r := e.rss(ctx); r > 0 {
				fmt.Fprintf(&b, " | rss %.0fMiB", r/(1<<20))
			}
			if g := e.goroutines(ctx); g >= 0 {
				fmt.Fprintf(&b, " goroutines %.0f", g)
			}
			fmt.Fprintln(e.logw, b.String())
		}
	}()
	return func() { cancel(); <-done }
}

// Task generation: seed task j belongs to user j%N and project (j/N)%P, so
// every user gets tasks in every project once M ≥ N·P.
func projectName(p int) string { return fmt.Sprintf("Project %d", p) }

func dueFor(j int) string {
	base := time.Now().UTC().Add(30 * 24 * time.Hour).Truncate(time.Hour)
	return base.Add(time.Duration(j%10000) * time.Minute).Format(time.RFC3339)
}

var priorities = []string{"low", "normal", "high", "urgent"}

func seedTask(j, nUsers, nProjects int, users []string) task {
	return task{
		ID: fmt.Sprintf("seed-%d", j), Title: fmt.Sprintf("Load task %d: check the release notes", j),
		Project: projectName((j / nUsers) % nProjects), Assignees: []string{users[j%nUsers]},
		Due: dueFor(j), Status: "open", Priority: priorities[j%4], Version: 1,
		URL:  fmt.Sprintf("https://tracker.load.test/seed-%d", j),
		Desc: "A task record of realistic size, with a description and a link back to the tracker.",
	}
}

// seed sends tasks in batches with a few concurrent requests and reports the
// durable upsert rate.
func (e *env) seed(ctx context.Context, name string, tasks func(j int) task, m int) error {
	if m <= 0 {
		return nil
	}
	if e.hook == nil {
		return errors.New("seeding needs the webhook (--secret with --target)")
	}
	h := newHist(name)
	stop := e.progress(ctx, "seed", h)
	var next atomic.Int64
	var firstErr firstError
	var wg sync.WaitGroup
	var retries atomic.Int64
	start := time.Now()
	for w := 0; w < e.o.SeedWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && firstErr.get() == nil {
				lo := int(next.Add(int64(e.o.SeedBatch))) - e.o.SeedBatch
				if lo >= m {
					return
				}
				hi := min(lo+e.o.SeedBatch, m)
				batch := make([]task, 0, hi-lo)
				for j := lo; j < hi; j++ {
					batch = append(batch, tasks(j))
				}
				t0 := time.Now()
				if err := e.sendRetrying(ctx, batch, &retries); err != nil {
					h.Err()
					firstErr.set(err)
					return
				}
				h.Add(time.Since(t0))
				h.Items(len(batch))
			}
		}()
	}
	wg.Wait()
	stop()
	el := time.Since(start)
	s := e.rep.op(h, el)
	e.rep.fig("durable task upserts/s ("+name+")", s.ItemRat, "tasks/s")
	if n := retries.Load(); n > 0 {
		e.rep.fig("webhook batches retried after a 503 ("+name+")", float64(n), "")
	}
	e.logf("%s: %d tasks in %v (%.0f tasks/s)", name, s.Items, el.Round(time.Millisecond), s.ItemRat)
	if err := firstErr.get(); err != nil {
		return err
	}
	return ctx.Err()
}

// sendRetrying sends a seeding batch, retrying (up to 5 times, 1 s, 2 s,
// ... apart) when the server answers 503, as the webhook contract asks a
// task system to: seeding is preparation, not the measurement.
func (e *env) sendRetrying(ctx context.Context, batch []task, retries *atomic.Int64) error {
	wait := time.Second
	for try := 0; ; try++ {
		err := e.hook.send(ctx, batch)
		if err == nil || try == 5 || !strings.Contains(err.Error(), "HTTP 503") {
			return err
		}
		retries.Add(1)
		e.logf("seeding: %v; retrying in %v", err, wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}
