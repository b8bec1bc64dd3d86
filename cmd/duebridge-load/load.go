package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duebridge/duebridge/render"
)

// event is one trigger (webhook request or APPEND) of the measured phase.
type event struct {
	send, ack time.Time
	ok        bool
}

// pollState is what one iOS-like CalDAV client remembers between polls.
type pollState struct {
	ctag, token string
}

// tokens keeps the newest sync token per collection for the visibility
// probes (so a probe's first sync is incremental, not a full listing).
type tokens struct {
	mu sync.Mutex
	m  map[string]string
}

func (t *tokens) get(coll string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[coll]
}

func (t *tokens) set(coll, tok string) {
	if tok == "" {
		return
	}
	t.mu.Lock()
	t.m[coll] = tok
	t.mu.Unlock()
}

type loadHists struct {
	ack, seedAck, exists, existsSend, visible, visibleSend, propfind, sync, multiget *Hist
}

// loadRun is one load-scenario run: the histograms and what the steps hand
// each other.
type loadRun struct {
	e         *env
	hs        loadHists
	idlers    []*idler
	arrivals  atomic.Int64
	announced *Hist // progress only: announcements as they arrive
	toks      *tokens
	homes     map[int]string
	pollWG    sync.WaitGroup
	stopPolls context.CancelFunc
	app       *appender
}

// runLoad is the load scenario:
//   - seed M tasks through the webhook, in batches;
//   - open K connections in IDLE, reading server memory before and after;
//   - start C CalDAV clients (an initial full sync each, then polls);
//   - drive R triggers per second for D and report what they cost.
func (e *env) runLoad(ctx context.Context) error {
	r := newLoadRun(e)
	defer r.close()
	for _, step := range []func(context.Context) error{r.seed, r.openIdle, r.startPollers, r.drive} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func newLoadRun(e *env) *loadRun {
	ack := "webhook ack"
	existsName, existsSendName := "webhook ack → IDLE EXISTS", "webhook send → IDLE EXISTS"
	if e.o.Trigger == "append" {
		ack = "APPEND ack"
		existsName, existsSendName = "APPEND ack → IDLE EXISTS", "APPEND send → IDLE EXISTS"
	}
	return &loadRun{e: e, hs: loadHists{
		ack: newHist(ack), exists: newHist(existsName), existsSend: newHist(existsSendName),
		visible: newHist("webhook ack → visible in sync-collection"), visibleSend: newHist("webhook send → visible in sync-collection"),
		propfind: newHist("PROPFIND home Depth 1"),
		sync:     newHist("sync-collection"), multiget: newHist("calendar-multiget (50)"),
	}, announced: newHist("EXISTS"), toks: &tokens{m: map[string]string{}}, homes: map[int]string{}, stopPolls: func() {}}
}

// close stops the pollers and closes the IDLE connections and the appender.
func (r *loadRun) close() {
	r.stopDAVPolls()
	if r.app != nil {
		r.app.close()
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, d := range r.idlers {
		wg.Add(1)
		sem <- struct{}{}
		go func() { defer wg.Done(); d.close(); <-sem }()
	}
	wg.Wait()
}

func (r *loadRun) stopDAVPolls() { r.stopPolls(); r.pollWG.Wait() }

// seed sends M tasks through the webhook, in batches.
func (r *loadRun) seed(ctx context.Context) error {
	e, o := r.e, r.e.o
	if o.Trigger != "webhook" || o.Tasks <= 0 {
		return nil
	}
	if err := e.seed(ctx, "webhook batch (seed)", func(j int) task {
		return seedTask(j, len(e.users), o.Projects, e.users)
	}, o.Tasks); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // let the notification fan-out settle
	return nil
}

// openIdle opens K connections in IDLE and reports what they cost the
// server in memory and goroutines.
func (r *loadRun) openIdle(ctx context.Context) error {
	e, o := r.e, r.e.o
	if o.Idle <= 0 {
		return nil
	}
	if e.imapAddr == "" {
		e.rep.note("no IMAP server: IDLE parts skipped")
		return nil
	}
	mem0, rss0, g0 := e.serverMem(), e.rss(ctx), e.goroutines(ctx)
	t0 := time.Now()
	var err error
	r.idlers, err = openIdlers(ctx, e.imapAddr, o.Idle, e.users, func(int) string { return o.Password }, o.IdleParallel,
		func(n int) {
			if !o.Quiet {
				e.logf("IDLE: %d connections open", n)
			}
		}, func() { r.arrivals.Add(1); r.announced.Add(0) })
	e.logf("IDLE: %d of %d connections open in %v", len(r.idlers), o.Idle, time.Since(t0).Round(time.Millisecond))
	if err != nil {
		e.rep.note("IDLE: %d of %d connections opened; first error: %v", len(r.idlers), o.Idle, err)
		if len(r.idlers) == 0 {
			return fmt.Errorf("no IMAP connection: %w", err)
		}
	}
	time.Sleep(2 * time.Second) // let buffers and GC settle before reading memory
	mem1, rss1, g1 := e.serverMem(), e.rss(ctx), e.goroutines(ctx)
	n := float64(len(r.idlers))
	e.rep.fig("IMAP connections in IDLE", n, "")
	if rss1 > 0 {
		e.rep.fig("server RSS before IDLE connections", rss0/(1<<20), "MiB")
		e.rep.fig("server RSS with IDLE connections", rss1/(1<<20), "MiB")
		e.rep.fig("server RSS per idle IMAP connection", (rss1-rss0)/n/1024, "KiB")
	}
	if mem0.Procs > 0 && mem1.PSS > 0 {
		e.rep.fig("server PSS (process tree) per idle IMAP connection", float64(mem1.PSS-mem0.PSS)/n/1024, "KiB")
		e.rep.fig("server processes with IDLE connections", float64(mem1.Procs), "")
	}
	if g0 >= 0 && g1 >= 0 {
		e.rep.fig("server goroutines per idle IMAP connection", (g1-g0)/n, "")
	}
	return nil
}

// startPollers starts C CalDAV clients and waits for their initial sync.
func (r *loadRun) startPollers(ctx context.Context) error {
	e, o := r.e, r.e.o
	if o.DAV <= 0 || !e.caldav {
		return nil
	}
	pollCtx, stop := context.WithCancel(ctx)
	r.stopPolls = stop
	var ready sync.WaitGroup
	for i := 0; i < o.DAV; i++ {
		u := i % len(e.users)
		dc := newDAVClient(e.base, e.tr, e.users[u], o.Password)
		home, err := dc.discover(ctx)
		if err != nil {
			return fmt.Errorf("CalDAV discovery for %s: %w", e.users[u], err)
		}
		r.homes[u] = home
		ready.Add(1)
		r.pollWG.Add(1)
		go func() {
			defer r.pollWG.Done()
			e.poller(pollCtx, dc, home, &r.hs, r.toks, ready.Done)
		}()
	}
	t0 := time.Now()
	ready.Wait()
	e.logf("CalDAV: %d clients did their initial sync in %v", o.DAV, time.Since(t0).Round(time.Millisecond))
	return nil
}

// drive is the measured phase: R triggers per second for D, then the
// trailing announcements and the report.
func (r *loadRun) drive(ctx context.Context) error {
	e, o := r.e, r.e.o
	idleUsers := map[int][]*idler{}
	for _, d := range r.idlers {
		idleUsers[d.user] = append(idleUsers[d.user], d)
		d.record()
	}
	if o.Trigger == "append" {
		r.app = &appender{addr: e.imapAddr, user: e.users, pass: func(int) string { return o.Password }}
	}
	if o.Rate <= 0 || (e.hook == nil && r.app == nil) {
		return nil
	}
	stop := e.progress(ctx, "load", r.hs.ack, r.announced, r.hs.visible, r.hs.propfind, r.hs.sync)
	start, cpu0 := time.Now(), cpuTime(e.pid)
	events := r.trigger(ctx, r.targets(idleUsers))
	stop()
	elapsed := time.Since(start)
	r.awaitAnnouncements(events, idleUsers)
	// Server CPU over the phase (webhooks, their pushes, the pollers and
	// probes) per webhook: a cost figure the client on the same cores and
	// other load on the machine disturb far less than latencies.
	if cpu := cpuPerOp(cpu0, cpuTime(e.pid), r.hs.ack.n.Load()); cpu > 0 {
		e.rep.fig("measured phase: server CPU per webhook (push and pollers included)", cpu, "ms")
	}
	r.stopDAVPolls()
	r.report(ctx, events, elapsed)
	return nil
}

// targets are the users the triggers go to: those with IDLE connections,
// else everyone.
func (r *loadRun) targets(idleUsers map[int][]*idler) []int {
	var targets []int
	for u := range r.e.users {
		if len(idleUsers) == 0 || len(idleUsers[u]) > 0 {
			targets = append(targets, u)
		}
	}
	return targets
}

// trigger sends R triggers per second for D, round robin over targets,
// skipping when --max-inflight are in flight; it returns the events per
// user once all have been answered.
func (r *loadRun) trigger(ctx context.Context, targets []int) map[int][]*event {
	e, o := r.e, r.e.o
	probeEvery := o.ProbeEvery
	if probeEvery <= 0 {
		probeEvery = max(1, int(o.Rate/20))
	}
	var evMu sync.Mutex
	events := map[int][]*event{}
	interval := time.Duration(float64(time.Second) / o.Rate)
	var inflight, skipped atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(o.Duration)
	var seq int64
	for next := start; next.Before(end) && ctx.Err() == nil; next = next.Add(interval) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		i := seq
		seq++
		if inflight.Load() >= int64(o.MaxInflight) {
			skipped.Add(1)
			continue
		}
		u := targets[int(i)%len(targets)]
		ev := &event{}
		evMu.Lock()
		for b := 0; b < o.Batch; b++ {
			events[u] = append(events[u], ev)
		}
		evMu.Unlock()
		inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			e.trigger(ctx, i, u, ev, r.app, &r.hs, r.toks, r.homes, i%int64(probeEvery) == 0)
		}()
	}
	wg.Wait()
	if n := skipped.Load(); n > 0 {
		e.rep.note("%d triggers skipped: %d requests were in flight (the server did not keep up with %.0f/s)", n, o.MaxInflight, o.Rate)
	}
	return events
}

// announceWait bounds the wait for the last EXISTS after the last ack.
const announceWait = 10 * time.Second

// awaitAnnouncements waits (at most announceWait) for the EXISTS of every
// acknowledged trigger on every IDLE connection of its user, then asks the
// connections still short what became of the rest (auditPushes): a lost
// announcement, a miscount or a dead connection.
func (r *loadRun) awaitAnnouncements(events map[int][]*event, idleUsers map[int][]*idler) {
	deadline := time.Now().Add(announceWait)
	acked := func(u int) int {
		n := 0
		for _, ev := range events[u] {
			if ev.ok {
				n++
			}
		}
		return n
	}
	// Counted per connection: r.arrivals also holds what came before the
	// measured phase (the seed's mails).
	short := func() bool {
		for u, ds := range idleUsers {
			for _, d := range ds {
				d.mu.Lock()
				n := len(d.arrivals)
				d.mu.Unlock()
				if n < acked(u) {
					return true
				}
			}
		}
		return false
	}
	for time.Now().Before(deadline) && short() {
		time.Sleep(50 * time.Millisecond)
	}
	// Until the wait was announceWait, announcements later than this were
	// reported as never arriving; they count apart.
	const oldWait = 3 * time.Second
	var lastAck time.Time
	for _, evs := range events {
		for _, ev := range evs {
			if ev.ok && ev.ack.After(lastAck) {
				lastAck = ev.ack
			}
		}
	}
	if n := arrivalsAfter(r.idlers, lastAck.Add(oldWait)); n > 0 {
		r.e.rep.note("%d EXISTS arrived more than %v after the last ack (late, not lost)", n, oldWait)
	}
	a := auditPushes(r.idlers, func(d *idler) int { return acked(d.user) }, 64, 10*time.Second)
	if n := a.note(announceWait); n != "" {
		r.e.rep.note("%s", n)
	}
}

// report puts the measured phase into the report.
func (r *loadRun) report(ctx context.Context, events map[int][]*event, elapsed time.Duration) {
	e, hs := r.e, &r.hs
	g, rss := e.goroutines(ctx), e.rss(ctx)
	e.correlate(r.idlers, events, hs)
	for _, h := range []*Hist{hs.ack, hs.exists, hs.existsSend, hs.visible, hs.visibleSend} {
		e.rep.op(h, elapsed)
	}
	if g >= 0 {
		e.rep.fig("server goroutines at the end of the measured phase", g, "")
	}
	if rss > 0 {
		e.rep.fig("server RSS at the end of the measured phase", rss/(1<<20), "MiB")
	}
	for _, h := range []*Hist{hs.propfind, hs.sync, hs.multiget} {
		e.rep.op(h, elapsed)
	}
	e.loadTargets(len(r.idlers))
}

// trigger sends one webhook (or APPEND) for user u and, when probe is set,
// measures when the new object shows in the user's sync-collection.
func (e *env) trigger(ctx context.Context, i int64, u int, ev *event, app *appender, hs *loadHists, toks *tokens,
	homes map[int]string, probe bool) {
	o := e.o
	if app != nil {
		ev.send = time.Now()
		err := app.deliver(u, i)
		ev.ack = time.Now()
		if err != nil {
			hs.ack.Err()
			return
		}
		ev.ok = true
		hs.ack.Add(ev.ack.Sub(ev.send))
		return
	}
	proj := int(i) % o.Projects
	batch := make([]task, o.Batch)
	for b := range batch {
		id := fmt.Sprintf("live-%d-%d", i, b)
		batch[b] = task{ID: id, Title: "Live task " + id, Project: projectName(proj), Assignees: []string{e.users[u]},
			Due: dueFor(int(i)), Status: "open", Priority: priorities[int(i)%4], Version: 1}
	}
	// The probe needs a token from before the commit.
	var dc *davClient
	var coll, token string
	home, hasHome := homes[u]
	if probe && e.caldav {
		if !hasHome {
			home = "/dav/" + e.users[u] + "/calendars/"
		}
		dc = newDAVClient(e.base, e.tr, e.users[u], o.Password)
		todos, _ := render.CollectionNames(projectName(proj))
		coll = home + todos + "/"
		token = toks.get(coll)
		t0 := time.Now()
		res, err := dc.syncCollection(ctx, coll, token)
		if errors.Is(err, ErrInvalidToken) || (err == nil && token == "") {
			res, err = dc.syncCollection(ctx, coll, "")
		}
		var hse *httpStatusError
		if errors.As(err, &hse) && hse.code == http.StatusNotFound {
			// The user's list for this project does not exist yet: this
			// webhook makes it, and a full sync after the ack finds it.
			hs.sync.Add(time.Since(t0))
			res, err = &syncResult{}, nil
		}
		if err != nil {
			hs.sync.Err()
			dc = nil
		} else {
			hs.sync.Add(time.Since(t0))
			token = res.Token
		}
	}
	ev.send = time.Now()
	err := e.hook.send(ctx, batch)
	ev.ack = time.Now()
	if err != nil {
		hs.ack.Err()
		if ctx.Err() == nil {
			e.logf("webhook: %v", err)
		}
		return
	}
	ev.ok = true
	hs.ack.Add(ev.ack.Sub(ev.send))
	if dc == nil {
		return
	}
	want := "/" + o.Source + "-" + batch[0].ID + ".ics"
	for attempt := 0; ctx.Err() == nil; attempt++ {
		res, err := dc.syncCollection(ctx, coll, token)
		if err != nil {
			hs.visible.Err()
			return
		}
		for _, h := range res.Changed {
			if strings.HasSuffix(h, want) {
				hs.visible.Add(time.Since(ev.ack))
				hs.visibleSend.Add(time.Since(ev.send))
				toks.set(coll, res.Token)
				return
			}
		}
		if time.Since(ev.ack) > 5*time.Second {
			hs.visible.Err()
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// correlate pairs the n-th new message each idling connection of a user
// saw with the user's n-th trigger.
func (e *env) correlate(idlers []*idler, events map[int][]*event, hs *loadHists) {
	early := 0
	for _, d := range idlers {
		arr := d.stop()
		evs := events[d.user]
		for n, ev := range evs {
			if !ev.ok {
				continue
			}
			if n >= len(arr) { // explained by awaitAnnouncements' audit
				hs.exists.Err()
				continue
			}
			lat := arr[n].Sub(ev.ack)
			if lat < 0 {
				early++
			}
			hs.exists.Add(lat)
			hs.existsSend.Add(arr[n].Sub(ev.send))
		}
	}
	if early > 0 {
		e.rep.note("%d EXISTS arrived before the trigger's ack returned (counted as 0 ms): the commit precedes the ack", early)
	}
}

// poller is one iOS-like CalDAV client: PROPFIND the home Depth 1, and for
// each list whose ctag moved, sync-collection from the last token and
// calendar-multiget the changed objects in batches of 50.
func (e *env) poller(ctx context.Context, dc *davClient, home string, hs *loadHists, toks *tokens, ready func()) {
	state := map[string]pollState{}
	first := true
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for ctx.Err() == nil {
		t0 := time.Now()
		cols, err := dc.homeDepth1(ctx, home)
		if err != nil {
			if ctx.Err() == nil {
				hs.propfind.Err()
			}
		} else {
			hs.propfind.Add(time.Since(t0))
			for _, c := range cols {
				st, known := state[c.Path]
				if known && st.ctag == c.CTag {
					continue
				}
				tok, err := e.syncAndFetch(ctx, dc, c.Path, st.token, hs)
				if err != nil {
					continue
				}
				state[c.Path] = pollState{ctag: c.CTag, token: tok}
				toks.set(c.Path, tok)
			}
		}
		if first {
			first = false
			ready()
		}
		// Jitter the interval ±20% so clients do not poll in lockstep.
		d := e.o.PollInterval
		if d > 0 {
			d = time.Duration(float64(d) * (0.8 + 0.4*rng.Float64()))
		}
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

// syncAndFetch runs sync-collection from token (starting over on a refused
// token) and fetches what changed with calendar-multiget in batches of 50.
func (e *env) syncAndFetch(ctx context.Context, dc *davClient, coll, token string, hs *loadHists) (string, error) {
	t0 := time.Now()
	res, err := dc.syncCollection(ctx, coll, token)
	if errors.Is(err, ErrInvalidToken) {
		t0 = time.Now()
		res, err = dc.syncCollection(ctx, coll, "")
	}
	if err != nil {
		if ctx.Err() == nil {
			hs.sync.Err()
			e.logf("sync-collection %s: %v", coll, err)
		}
		return "", err
	}
	hs.sync.Add(time.Since(t0))
	for lo := 0; lo < len(res.Changed); lo += 50 {
		hi := min(lo+50, len(res.Changed))
		t1 := time.Now()
		if _, err := dc.multiget(ctx, coll, res.Changed[lo:hi]); err != nil {
			if ctx.Err() == nil {
				hs.multiget.Err()
				e.logf("multiget: %v", err)
			}
			continue
		}
		hs.multiget.Add(time.Since(t1))
		hs.multiget.Items(hi - lo)
	}
	return res.Token, nil
}

// loadTargets states the load scenario's targets.
func (e *env) loadTargets(idle int) {
	r := e.rep
	if e.o.Label != "duebridge" {
		return // the targets are duebridge's; other servers are compared by ratio
	}
	if e.o.Trigger == "webhook" {
		ex := r.Op("webhook ack → IDLE EXISTS")
		if ex.Count > 0 {
			r.target(fmt.Sprintf("webhook commit → IDLE EXISTS p99, %d idling connections", idle), "≤ 5 ms (1,000 conns)",
				fmt.Sprintf("%.2f ms (send → EXISTS %.2f ms)", ex.P99MS, r.Op("webhook send → IDLE EXISTS").P99MS),
				ex.P99MS <= 5 && idle >= 1000 && ex.Errors == 0)
		}
		vis := r.Op("webhook ack → visible in sync-collection")
		if vis.Count > 0 {
			r.target("webhook commit → visible in sync-collection p99", "≤ 5 ms",
				fmt.Sprintf("%.2f ms (incl. one sync round trip)", vis.P99MS), vis.P99MS <= 5 && vis.Errors == 0)
		}
	}
	if v, ok := r.Fig("durable task upserts/s (webhook batch (seed))"); ok && e.o.Tasks >= 10000 {
		r.target("durable task upserts/s in batches", "≥ 5,000/s", fmt.Sprintf("%.0f/s", v), v >= 5000)
	}
	if n, _ := r.Fig("IMAP connections in IDLE"); n >= 10000 {
		v, _ := r.Fig("server RSS per idle IMAP connection")
		r.target(fmt.Sprintf("server memory per idle IMAP connection (%.0f conns)", n), "≤ 64 KiB (10,000)",
			fmt.Sprintf("%.1f KiB", v), v > 0 && v <= 64)
	}
}
