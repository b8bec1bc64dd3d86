package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// phoneGroup is how many users share one task (a team's project): one task
// record renders into that many users' lists, so the store holds
// users·projects/phoneGroup tasks.
const phoneGroup = 10

// phone is what one iPhone remembers of its account between polls.
type phone struct {
	mu    sync.Mutex
	user  int
	home  string
	pw    string // the user's own password or the phone's device password
	state map[string]pollState
	// tickets is the phone's TLS session cache (nil: no resumption).
	tickets tls.ClientSessionCache
	confMu  sync.Mutex  // polls of the returning step may overlap
	conf    *tls.Config // the last tlsConfig
}

// phoneRun is one phones-mode run: its parameters and what the steps hand
// each other.
type phoneRun struct {
	e        *env
	rate     float64 // home polls per second
	np       int     // phones taking part
	mk       func(j int) task
	home0    string
	phones   []*phone     // those that completed their first poll
	coldRate float64      // cold polls/s with the passwords the timed phase uses
	floor    *floorServer // --floor: what the phones poll instead of duebridge
	// TLS handshakes of the phones' polls and how many resumed, for the
	// timed phases (after a restart: did the tickets survive it?).
	handshakes, resumed atomic.Int64
}

// runPhones models the capacity target. iOS fetches a CalDAV account at
// most every 15 minutes in the background: one home PROPFIND Depth 1, then
// per list whose ctag moved a sync-collection REPORT (and a multiget of what
// changed). N phones make N/900 such polls per second; --phone-rate
// compresses time to any other rate. Every poll is a new connection
// (iOS sends Connection: close), so with --tls every poll is a handshake.
//
// Steps:
//   - seed the lists the phones will poll;
//   - cold: the first poll of each phone (after a restart nothing is
//     cached); with --device-passwords half the phones use the user's own
//     password (a --hash check each) and half their device password
//     (HMAC), side by side;
//   - returning (--tls): polls of phones that polled before, with a full
//     handshake and with a resumed one, side by side;
//   - timed: open loop at the poll rate for --duration, webhook updates
//     changing a share (--phone-change) of the polled lists;
//   - verdict: kept up or not.
func (e *env) runPhones(ctx context.Context) error {
	if !e.caldav {
		return errors.New("phones mode needs CalDAV")
	}
	r := &phoneRun{e: e}
	r.params()
	steps := []func(context.Context) error{r.seed, r.discover, r.cold, r.returning, r.timed}
	if e.o.Floor != "" {
		defer r.stopFloor()
		steps = []func(context.Context) error{r.recordFloor, r.cold, r.returning, r.timed}
	}
	for _, step := range steps {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// params derives the rate and the number of phones taking part.
func (r *phoneRun) params() {
	e, o := r.e, r.e.o
	r.rate = o.PhoneRate
	if r.rate <= 0 {
		r.rate = float64(o.Phones) / 900
	}
	// Only the phones that take part in the timed phase need lists; the
	// other users exist in the config (and cost the server only there).
	r.np = min(len(e.users), int(math.Ceil(r.rate*o.Duration.Seconds())))
	e.rep.Params["phones"] = o.Phones
	e.rep.Params["phone_rate"] = r.rate
	e.rep.Params["lists_per_user"] = 2 * o.Projects
	e.rep.Params["tls"] = o.TLS
	e.rep.Params["tls_resume"] = o.TLS && o.TLSResume
	e.rep.Params["device_passwords"] = o.DevicePWs
	e.rep.Params["phone_minimal"] = o.PhoneMinimal
	e.rep.Params["tool_gogc"] = o.ToolGOGC
	e.rep.Params["floor"] = o.Floor
}

// seed makes one task per (group of phoneGroup users, project), all with a
// due time, so every taking part user has 2·P lists.
func (r *phoneRun) seed(ctx context.Context) error {
	e, o := r.e, r.e.o
	groups := (r.np + phoneGroup - 1) / phoneGroup
	versions := make([]atomic.Int64, groups*o.Projects)
	r.mk = func(j int) task {
		g, p := j/o.Projects, j%o.Projects
		var as []string
		for u := g * phoneGroup; u < min((g+1)*phoneGroup, r.np); u++ {
			as = append(as, e.users[u])
		}
		v := versions[j].Add(1)
		return task{ID: fmt.Sprintf("ph-%d-%d", g, p), Title: fmt.Sprintf("Team %d: %s, revision %d", g, projectName(p), v),
			Project: projectName(p), Assignees: as, Due: dueFor(j), Status: "open", Priority: priorities[j%4], Version: v}
	}
	if e.hook == nil || o.Tasks <= 0 {
		e.rep.note("phones: no webhook seeding (no secret or --tasks 0); the users' lists are whatever the server has")
		return nil
	}
	return e.seed(ctx, "webhook batch (phones seed)", r.mk, groups*o.Projects)
}

// discover finds the first user's home; the others' differ by name.
func (r *phoneRun) discover(ctx context.Context) error {
	dc := newDAVClient(r.e.base, r.e.tr, r.e.users[0], r.e.o.Password)
	var err error
	r.home0, err = dc.discover(ctx)
	return err
}

func (r *phoneRun) homeOf(u int) string {
	return strings.Replace(r.home0, "/"+r.e.users[0]+"/", "/"+r.e.users[u]+"/", 1)
}

// client returns a DAV client for one poll of p and what ends it. Without
// --keepalive each request has its own connection (oneShot) and says
// Connection: close, as iOS does; with --tls, its handshake resumes from
// p's ticket when p keeps one (tickets), else it is full.
func (r *phoneRun) client(p *phone, tickets tls.ClientSessionCache) (*davClient, func()) {
	e := r.e
	if e.o.KeepAlive {
		dc := newDAVClient(e.base, e.tr, e.users[p.user], p.pw)
		dc.minimal = e.o.PhoneMinimal
		return dc, func() {}
	}
	var conf *tls.Config
	if e.tr.TLSClientConfig != nil {
		conf = p.tlsConfig(e.tr.TLSClientConfig, e.base.Hostname(), tickets)
	}
	dc := newDAVClient(e.base, newOneShot(conf, 30*time.Second), e.users[p.user], p.pw)
	dc.hc.Timeout = 0 // oneShot's own, without http.Client's timer goroutine
	dc.ios, dc.minimal = true, e.o.PhoneMinimal
	if conf != nil {
		dc.onTLS = func(cs *tls.ConnectionState) { // a connection per request
			r.handshakes.Add(1)
			if cs != nil && cs.DidResume {
				r.resumed.Add(1)
			}
		}
	}
	return dc, func() {}
}

// tlsConfig is the phone's TLS configuration with the given session cache
// (nil: a full handshake), made once per cache. Records are full size
// from the first byte, as the server's: the request (~1.5 KB) goes out in
// one record, not two.
func (p *phone) tlsConfig(base *tls.Config, host string, tickets tls.ClientSessionCache) *tls.Config {
	p.confMu.Lock()
	defer p.confMu.Unlock()
	if p.conf != nil && p.conf.ClientSessionCache == tickets {
		return p.conf
	}
	c := base.Clone()
	c.ServerName = host
	c.ClientSessionCache = tickets
	c.DynamicRecordSizingDisabled = true
	p.conf = c
	return c
}

// newPhone is phone i before its first poll. With --device-passwords the
// phones of the first half keep the user's own password, for the side by
// side cold figures.
func (r *phoneRun) newPhone(i int) *phone {
	e := r.e
	p := &phone{user: i, home: r.homeOf(i), pw: e.o.Password, state: map[string]pollState{}}
	if e.child != nil && i < len(e.child.DevicePW) && (!r.compare() || i >= r.np/2) {
		p.pw = e.child.DevicePW[i]
	}
	if e.o.TLS && e.o.TLSResume {
		p.tickets = tls.NewLRUClientSessionCache(1)
	}
	return p
}

// compare reports whether the cold phase runs the own password and the
// device password side by side (half the phones each).
func (r *phoneRun) compare() bool {
	return r.e.o.DevicePWs && r.e.o.ColdCompare && r.np >= 2
}

// cold runs each taking part phone's first poll, as fast as the server
// answers (--phone-prep-workers at a time), bounded by --phone-cold. With
// --device-passwords the two halves (own password, device password) run in
// alternating blocks, so the noise of a shared machine falls on both alike.
func (r *phoneRun) cold(ctx context.Context) error {
	e, o := r.e, r.e.o
	all := make([]*phone, r.np)
	poll := func(ctx context.Context, i int) error {
		p := r.newPhone(i)
		cols, err := r.pollHome(ctx, p, p.tickets)
		if err != nil {
			if ctx.Err() == nil {
				e.logf("cold poll %s: %v", e.users[i], err)
			}
			return err
		}
		// The phone synced before: it knows every list's state.
		for _, c := range cols {
			p.state[c.Path] = pollState{ctag: c.CTag, token: c.Token}
		}
		all[i] = p
		return nil
	}
	vs := []*variant{{name: "cold poll: PROPFIND home Depth 1, login not cached", from: 0, to: r.np, do: poll}}
	if r.compare() {
		vs = []*variant{
			{name: fmt.Sprintf("cold poll, own password (%s)", o.Hash), from: 0, to: r.np / 2, do: poll},
			{name: "cold poll, device password (HMAC)", from: r.np / 2, to: r.np, do: poll},
		}
	}
	coldCtx, cancel := context.WithTimeout(ctx, o.PhoneCold)
	defer cancel()
	r.sideBySide(coldCtx, vs)
	for _, v := range vs {
		r.coldRate = v.report(e)
	}
	if len(vs) == 2 && vs[0].rate() > 0 {
		e.rep.fig("cold polls/s, device password ÷ own password", vs[1].rate()/vs[0].rate(), "×")
	}
	for _, p := range all {
		if p != nil {
			r.phones = append(r.phones, p)
		}
	}
	if len(r.phones) == 0 {
		return errors.New("phones: no phone completed its first poll")
	}
	if len(r.phones) < r.np {
		e.rep.note("cold phase stopped after %v (--phone-cold) with %d of %d phones polled; the later steps cycle over those", o.PhoneCold, len(r.phones), r.np)
	}
	return ctx.Err()
}

// variant is one side of a side by side measurement: items [from, to),
// each done by do; time and server CPU are summed over its blocks.
type variant struct {
	name     string
	from, to int
	do       func(ctx context.Context, i int) error
	h        *Hist
	next     int
	busy     time.Duration
	cpu      time.Duration // the server's
	self     time.Duration // the load tool's own
}

func (v *variant) rate() float64 {
	if v.busy <= 0 {
		return 0
	}
	return float64(v.h.Summarize(v.busy).Count) / v.busy.Seconds()
}

// report adds the variant's latencies, rate and CPU per item; it returns
// the rate.
func (v *variant) report(e *env) float64 {
	s := e.rep.op(v.h, v.busy)
	e.rep.fig(v.name+": polls/s", v.rate(), "req/s")
	if v.cpu > 0 && s.Count > 0 {
		e.rep.fig(v.name+": server CPU per poll", float64(v.cpu)/float64(time.Millisecond)/float64(s.Count), "ms")
	}
	if v.self > 0 && s.Count > 0 {
		e.rep.fig(v.name+": load tool CPU per poll", float64(v.self)/float64(time.Millisecond)/float64(s.Count), "ms")
	}
	return v.rate()
}

// sideBySide runs the variants in alternating blocks (about a tenth of
// each, --phone-prep-workers items at a time) until all are done or ctx
// ends. Each variant's rate is its items over the time its own blocks
// took, so slow drifts in the machine's load hit every variant alike.
func (r *phoneRun) sideBySide(ctx context.Context, vs []*variant) {
	e, o := r.e, r.e.o
	for _, v := range vs {
		v.h, v.next = newHist(v.name), v.from
	}
	for ctx.Err() == nil {
		left := false
		for _, v := range vs {
			if v.next >= v.to {
				continue
			}
			left = true
			block := max(o.PhoneWorkers, (v.to-v.from+9)/10)
			end := min(v.next+block, v.to)
			cpu0, self0, t0 := cpuTime(e.pid), selfCPU(), time.Now()
			var next atomic.Int64
			next.Store(int64(v.next))
			var wg sync.WaitGroup
			for range o.PhoneWorkers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ctx.Err() == nil {
						i := int(next.Add(1) - 1)
						if i >= end {
							return
						}
						t1 := time.Now()
						if err := v.do(ctx, i); err != nil {
							if ctx.Err() == nil {
								v.h.Err()
							}
							continue
						}
						v.h.Add(time.Since(t1))
					}
				}()
			}
			wg.Wait()
			v.busy += time.Since(t0)
			v.cpu += cpuTime(e.pid) - cpu0
			v.self += selfCPU() - self0
			v.next = end
		}
		if !left {
			return
		}
	}
}

// pollHome is one PROPFIND of p's home on a connection of its own.
func (r *phoneRun) pollHome(ctx context.Context, p *phone, tickets tls.ClientSessionCache) ([]collection, error) {
	dc, done := r.client(p, tickets)
	defer done()
	return r.checkedHome(ctx, dc, p)
}

// checkedHome is the home PROPFIND of p, refused unless the 207 lists
// each of the user's lists (two per project) with a ctag.
func (r *phoneRun) checkedHome(ctx context.Context, dc *davClient, p *phone) ([]collection, error) {
	cols, err := dc.homeDepth1(ctx, p.home)
	if err != nil {
		return nil, err
	}
	want := 2 * r.e.o.Projects
	if r.e.hook == nil || r.e.o.Tasks <= 0 {
		return cols, nil // not seeded here: whatever the server has
	}
	n := 0
	for _, c := range cols {
		if c.CTag != "" {
			n++
		}
	}
	if n != want {
		return nil, fmt.Errorf("PROPFIND %s: %d lists with a ctag, want %d", p.home, n, want)
	}
	return cols, nil
}

// returning measures --returning polls of phones that polled before, each
// way in alternating blocks: with a full TLS handshake (no ticket) and with
// a resumed one (the phone's ticket). Logins are the same (device
// passwords are never cached; own passwords are cached by now), so the
// difference is the handshake.
func (r *phoneRun) returning(ctx context.Context) error {
	e, o := r.e, r.e.o
	if !o.TLS || o.Returning <= 0 {
		return nil
	}
	// Device-password phones, if any: their polls cost what a cold one does.
	var ps []*phone
	for _, p := range r.phones {
		if !r.compare() || p.user >= r.np/2 {
			ps = append(ps, p)
		}
	}
	for _, p := range ps {
		if p.tickets == nil { // --tls-resume=false: a cache for this step only
			p.tickets = tls.NewLRUClientSessionCache(1)
		}
	}
	var resumed atomic.Int64
	poll := func(resume bool) func(context.Context, int) error {
		return func(ctx context.Context, i int) error {
			p := ps[i%len(ps)]
			tickets := tls.ClientSessionCache(nil)
			if resume {
				tickets = p.tickets
			}
			_, err := r.pollHomeResumed(ctx, p, tickets, &resumed)
			return err
		}
	}
	full := &variant{name: "returning poll, full TLS handshake", from: 0, to: o.Returning, do: poll(false)}
	res := &variant{name: "returning poll, resumed TLS session", from: 0, to: o.Returning, do: poll(true)}
	r.sideBySide(ctx, []*variant{full, res})
	full.report(e)
	res.report(e)
	e.rep.fig("returning polls that resumed", float64(resumed.Load()), "")
	if full.rate() > 0 {
		e.rep.fig("returning polls/s, resumed ÷ full handshake", res.rate()/full.rate(), "×")
	}
	return ctx.Err()
}

// pollHomeResumed is pollHome counting the polls whose handshake resumed.
func (r *phoneRun) pollHomeResumed(ctx context.Context, p *phone, tickets tls.ClientSessionCache, resumed *atomic.Int64) ([]collection, error) {
	dc, done := r.client(p, tickets)
	defer done()
	dc.onTLS = func(cs *tls.ConnectionState) {
		if cs != nil && cs.DidResume {
			resumed.Add(1)
		}
	}
	return r.checkedHome(ctx, dc, p)
}

// timed runs the timed phase (warm: every phone has polled before; the
// one --cpuprofile covers) and,
// with --restart-duration, kills the server, starts it again and runs
// the open-loop schedule once more from its cold caches: no login state,
// no TLS ticket keys (every phone's first handshake after the restart is
// full), no remembered answers.
func (r *phoneRun) timed(ctx context.Context) error {
	e, o := r.e, r.e.o
	stopProfile, err := startProfile(o.CPUProfile)
	if err != nil {
		return err
	}
	err = r.timedPhase(ctx, floorLabel(o), o.Duration)
	if perr := stopProfile(); err == nil {
		err = perr
	}
	if err != nil || o.RestartFor <= 0 {
		return err
	}
	if e.child == nil {
		return errors.New("--restart-duration needs --start")
	}
	if err := e.child.Restart(ctx); err != nil {
		return fmt.Errorf("restart: %w", err)
	}
	e.pid = e.child.Pid
	return r.timedPhase(ctx, "after restart: ", o.RestartFor)
}

// timedPhase drives polls open loop at the rate for d while webhook
// updates change lists, then gives the verdict; label prefixes its
// figures.
func (r *phoneRun) timedPhase(ctx context.Context, label string, d time.Duration) error {
	e := r.e
	cache := func() (hit, miss float64) {
		if !e.metrics {
			return 0, 0 // a floor has no /metrics
		}
		m := scrape(ctx, e.hc, e.httpURL+"/metrics", `duebridge_login_cache_total{result="hit"}`, `duebridge_login_cache_total{result="miss"}`)
		return m[`duebridge_login_cache_total{result="hit"}`], m[`duebridge_login_cache_total{result="miss"}`]
	}
	hit1, miss1 := cache()
	poll := newHist(label + "phone poll (PROPFIND + syncs + multigets)")
	lag := newHist(label + "schedule lag (start − due)")
	upd := newHist(label + "webhook update (changes lists)")
	hs := &loadHists{propfind: newHist(label + "PROPFIND home Depth 1"), sync: newHist(label + "sync-collection"), multiget: newHist(label + "calendar-multiget (50)")}
	stop := e.progress(ctx, strings.TrimSuffix(label+"phones", ": "), poll, hs.propfind, hs.sync, upd)
	runCtx, cancelRun := context.WithTimeout(ctx, d+30*time.Second)
	defer cancelRun()
	stopChanges := r.changeLists(runCtx, upd)
	cpu0, self0 := cpuTime(e.pid), selfCPU()
	hand0, res0 := r.handshakes.Load(), r.resumed.Load()
	start := time.Now()
	tl := newTimeline(ctx, e.pid, start)
	offered, skipped := r.drivePolls(runCtx, d, poll, lag, hs, tl)
	elapsed := time.Since(start)
	e.rep.minutes(label, tl.minutes(e.o.SLO))
	stopChanges()
	stop()
	ps := e.rep.op(poll, elapsed)
	for _, h := range []*Hist{hs.propfind, hs.sync, hs.multiget, upd} {
		e.rep.op(h, elapsed)
	}
	ls := e.rep.op(lag, elapsed)
	if cpu := cpuPerOp(cpu0, cpuTime(e.pid), ps.Count); cpu > 0 {
		e.rep.fig(label+"timed phase: server CPU per phone poll", cpu, "ms")
	}
	// What the phones cost this process: on the server's cores, it is the
	// part of the capacity that real phones would not take.
	if cpu := cpuPerOp(self0, selfCPU(), ps.Count); cpu > 0 {
		e.rep.fig(label+"timed phase: load tool CPU per phone poll", cpu, "ms")
	}
	if n := r.handshakes.Load() - hand0; n > 0 {
		e.rep.fig(label+"timed phase: TLS handshakes that resumed", float64(r.resumed.Load()-res0)/float64(n), "")
	}
	hit2, miss2 := cache()
	if miss2+hit2 > miss1+hit1 {
		e.rep.fig(label+"login cache hit ratio in the timed phase", (hit2-hit1)/(hit2-hit1+miss2-miss1), "")
	}
	r.verdict(label, d, ps, ls, offered, skipped)
	return ctx.Err()
}

// startProfile starts the load tool's CPU profile into path (none when
// path is empty); the returned function stops it.
func startProfile(path string) (stop func() error, err error) {
	if path == "" {
		return func() error { return nil }, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() error {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		return nil
	}, nil
}

// changeLists sends webhook updates that change a share of the polled
// lists until the returned function is called (which waits for them).
func (r *phoneRun) changeLists(ctx context.Context, upd *Hist) func() {
	e, o := r.e, r.e.o
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	changeRate := r.rate * o.PhoneChange / phoneGroup
	if e.hook == nil || changeRate <= 0 {
		return cancel
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(3, 4))
		readyGroups := max(1, (len(r.phones)+phoneGroup-1)/phoneGroup)
		t := time.NewTicker(time.Duration(float64(time.Second) / changeRate))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			j := rng.IntN(readyGroups)*o.Projects + rng.IntN(o.Projects)
			wg.Add(1)
			go func() {
				defer wg.Done()
				t1 := time.Now()
				if err := e.hook.send(ctx, []task{r.mk(j)}); err != nil {
					if ctx.Err() == nil {
						upd.Err()
					}
					return
				}
				upd.Add(time.Since(t1))
			}()
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// drivePolls starts one poll per interval for --duration (cycling over the
// phones), skipping when --max-inflight polls are running; it returns the
// polls offered and skipped once all started ones finished. Every poll is
// also put on tl, by the minute it was due.
//
// The polls run on a pool of worker goroutines (at most --max-inflight,
// started as the load needs them), not a goroutine each: a new one began
// each poll on a small stack that the TLS handshake grew by copying, CPU
// of the load tool that no phone spends on the server's cores.
func (r *phoneRun) drivePolls(ctx context.Context, d time.Duration, poll, lag *Hist, hs *loadHists, tl *timeline) (offered int, skipped int64) {
	o := r.e.o
	interval := time.Duration(float64(time.Second) / r.rate)
	var inflight atomic.Int64
	var wg sync.WaitGroup
	type job struct {
		p   *phone
		due time.Time
	}
	run := func(j job) {
		defer inflight.Add(-1)
		t1 := time.Now()
		lag.Add(t1.Sub(j.due))
		if err := r.phonePoll(ctx, j.p, hs); err != nil {
			if ctx.Err() == nil {
				poll.Err()
				tl.add(j.due, 0, true)
			}
			return
		}
		took := time.Since(t1)
		poll.Add(took)
		tl.add(j.due, took, false)
	}
	// Unbuffered: a send succeeds only when a worker is idle, so a due
	// poll never waits in a queue behind running ones.
	jobs := make(chan job)
	workers := 0
	worker := func(j job) {
		defer wg.Done()
		for ok := true; ok; j, ok = <-jobs {
			run(j)
		}
	}
	start := time.Now()
	end := start.Add(d)
	for due := start; due.Before(end) && ctx.Err() == nil; due = due.Add(interval) {
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		p := r.phones[offered%len(r.phones)]
		offered++
		if inflight.Load() >= int64(o.MaxInflight) {
			skipped++
			continue
		}
		inflight.Add(1)
		j := job{p, due}
		select {
		case jobs <- j:
		default:
			if workers < o.MaxInflight {
				workers++
				wg.Add(1)
				go worker(j)
			} else {
				// Fewer than --max-inflight polls run, so a worker is
				// between its last poll and its next receive.
				jobs <- j
			}
		}
	}
	close(jobs)
	wg.Wait()
	return offered, skipped
}

// verdict reports whether the node kept up: every scheduled poll ran, at
// least 98 % completed, no errors, poll p99 and lag p99 within --slo.
func (r *phoneRun) verdict(label string, d time.Duration, ps, ls Summary, offered int, skipped int64) {
	e, o := r.e, r.e.o
	achieved := float64(ps.Count) / d.Seconds()
	e.rep.fig(label+"offered home polls/s", r.rate, "req/s")
	e.rep.fig(label+"completed home polls/s", achieved, "req/s")
	e.rep.fig(label+"polls completed of scheduled", float64(ps.Count)/float64(max(offered, 1)), "")
	if skipped > 0 {
		e.rep.fig(label+"polls skipped (in-flight bound reached)", float64(skipped), "")
	}
	keptUp := skipped == 0 && ps.Errors == 0 && float64(ps.Count) >= 0.98*float64(offered) &&
		time.Duration(ps.P99MS*float64(time.Millisecond)) <= o.SLO && ls.P99MS < float64(o.SLO.Milliseconds())
	verdict := "keeps up"
	if !keptUp {
		verdict = "does NOT keep up"
	}
	e.rep.note("phones: %s%s with %.0f home polls/s (%d phones at one poll per 15 min = %.0f/s): p99 poll %.1f ms, p99 lag %.1f ms, %d errors",
		label, verdict, r.rate, o.Phones, float64(o.Phones)/900, ps.P99MS, ls.P99MS, ps.Errors)
	if label != "" {
		e.rep.target(label+"keeps up", "every poll, ≥ 98 % done, no errors, p99 ≤ "+o.SLO.String(),
			fmt.Sprintf("%.0f/s offered, %s, p99 poll %.1f ms", r.rate, verdict, ps.P99MS), keptUp)
		return
	}
	e.rep.target("≥ 300 home PROPFIND Depth 1/s sustained, login cached", "≥ 300/s, p99 ≤ "+o.SLO.String(),
		fmt.Sprintf("%.0f/s offered, %s, p99 poll %.1f ms", r.rate, verdict, ps.P99MS), keptUp && r.rate >= 300)
	// The login cache slides for 20 idle minutes, so steady 15-minute polls
	// hit it; the cold figure is the first poll of each phone after a
	// restart (device passwords are checked the same way every time).
	pw := o.Hash + " hashes"
	if o.DevicePWs {
		pw = "device passwords"
	}
	e.rep.target("≥ 300 home PROPFIND Depth 1/s on cold logins (first poll after a restart)", "≥ 300/s",
		fmt.Sprintf("%.0f/s (%s)", r.coldRate, pw), r.coldRate >= 300)
}

// phonePoll is one background fetch of one phone.
func (r *phoneRun) phonePoll(ctx context.Context, p *phone, hs *loadHists) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dc, done := r.client(p, p.tickets)
	defer done()
	t0 := time.Now()
	cols, err := r.checkedHome(ctx, dc, p)
	if err != nil {
		hs.propfind.Err()
		return err
	}
	hs.propfind.Add(time.Since(t0))
	for _, c := range cols {
		st := p.state[c.Path]
		if st.ctag == c.CTag {
			continue
		}
		tok, err := r.e.syncAndFetch(ctx, dc, c.Path, st.token, hs)
		if err != nil {
			return err
		}
		p.state[c.Path] = pollState{ctag: c.CTag, token: tok}
	}
	return nil
}

// cpuTime is the process's user+system CPU time (0 if unknown).
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks
}

// selfCPU is this process's user+system CPU time, to the microsecond.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

// cpuPerOp is CPU milliseconds per operation between two readings.
func cpuPerOp(before, after time.Duration, n int64) float64 {
	if n <= 0 || after <= before {
		return 0
	}
	return float64(after-before) / float64(time.Millisecond) / float64(n)
}
