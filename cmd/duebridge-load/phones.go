package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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
	state map[string]pollState
}

// runPhones models the capacity target. iOS fetches a CalDAV account at
// most every 15 minutes in the background: one home PROPFIND Depth 1, then
// per list whose ctag moved a sync-collection REPORT (and a multiget of what
// changed). N phones make N/900 such polls per second; --phone-rate
// compresses time to any other rate.
//
// Two phases:
//   - cold: the first poll of each phone taking part, as fast as the server
//     answers (--phone-prep-workers at a time). Every one of them pays a
//     full password-hash check, which is what each background poll costs
//     for real while duebridge's login cache (10 minutes) is shorter than
//     the poll interval (15 minutes).
//   - timed: open loop at the poll rate for --duration, with webhook updates
//     changing a share (--phone-change) of the polled lists; logins now hit
//     the cache.
func (e *env) runPhones(ctx context.Context) error {
	o := e.o
	if !e.caldav {
		return errors.New("phones mode needs CalDAV")
	}
	n := len(e.users)
	rate := o.PhoneRate
	if rate <= 0 {
		rate = float64(o.Phones) / 900
	}
	e.rep.Params["phones"] = o.Phones
	e.rep.Params["phone_rate"] = rate
	e.rep.Params["lists_per_user"] = 2 * o.Projects

	// Seed: one task per (group of phoneGroup users, project), all with a
	// due time, so every user has 2·P lists.
	// Only the phones that take part in the timed phase need lists; the
	// other users exist in the config (and cost the server only there).
	np := min(n, int(math.Ceil(rate*o.Duration.Seconds())))
	groups := (np + phoneGroup - 1) / phoneGroup
	versions := make([]atomic.Int64, groups*o.Projects)
	mk := func(j int) task {
		g, p := j/o.Projects, j%o.Projects
		var as []string
		for u := g * phoneGroup; u < min((g+1)*phoneGroup, np); u++ {
			as = append(as, e.users[u])
		}
		v := versions[j].Add(1)
		return task{ID: fmt.Sprintf("ph-%d-%d", g, p), Title: fmt.Sprintf("Team %d: %s, revision %d", g, projectName(p), v),
			Project: projectName(p), Assignees: as, Due: dueFor(j), Status: "open", Priority: priorities[j%4], Version: v}
	}
	if e.hook != nil && o.Tasks > 0 {
		if err := e.seed(ctx, "webhook batch (phones seed)", mk, groups*o.Projects); err != nil {
			return err
		}
	} else {
		e.rep.note("phones: no webhook seeding (no secret or --tasks 0); the users' lists are whatever the server has")
	}

	dc0 := newDAVClient(e.base, e.tr, e.users[0], o.Password)
	home0, err := dc0.discover(ctx)
	if err != nil {
		return err
	}
	homeOf := func(u int) string {
		return strings.Replace(home0, "/"+e.users[0]+"/", "/"+e.users[u]+"/", 1)
	}
	newClient := func(u int) (*davClient, func()) {
		if o.KeepAlive {
			return newDAVClient(e.base, e.tr, e.users[u], o.Password), func() {}
		}
		// One connection per poll: iOS sends Connection: close.
		tr := newTransport(1)
		return newDAVClient(e.base, tr, e.users[u], o.Password), tr.CloseIdleConnections
	}
	cache := func() (hit, miss float64) {
		m := scrape(ctx, e.hc, e.httpURL+"/metrics", `duebridge_login_cache_total{result="hit"}`, `duebridge_login_cache_total{result="miss"}`)
		return m[`duebridge_login_cache_total{result="hit"}`], m[`duebridge_login_cache_total{result="miss"}`]
	}

	// Cold phase: each taking part phone's first poll.
	phones := make([]*phone, np)
	cold := newHist("cold poll: PROPFIND home Depth 1, login not cached")
	hit0, miss0 := cache()
	coldBound := o.PhoneCold
	coldCtx, coldCancel := context.WithTimeout(ctx, coldBound)
	stop := e.progress(coldCtx, "phones cold", cold)
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := 0; w < o.PhoneWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for coldCtx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= np {
					return
				}
				p := &phone{user: i, home: homeOf(i), state: map[string]pollState{}}
				dc, done := newClient(i)
				t1 := time.Now()
				cols, err := dc.homeDepth1(coldCtx, p.home)
				done()
				if err != nil {
					if coldCtx.Err() == nil {
						cold.Err()
						e.logf("cold poll %s: %v", e.users[i], err)
					}
					continue
				}
				cold.Add(time.Since(t1))
				// The phone synced before: it knows every list's state.
				for _, c := range cols {
					p.state[c.Path] = pollState{ctag: c.CTag, token: c.Token}
				}
				phones[i] = p
			}
		}()
	}
	wg.Wait()
	coldEl := time.Since(t0)
	coldCancel()
	stop()
	hit1, miss1 := cache()
	cs := e.rep.op(cold, coldEl)
	var ready []*phone
	for _, p := range phones {
		if p != nil {
			ready = append(ready, p)
		}
	}
	if len(ready) == 0 {
		return errors.New("phones: no phone completed its first poll")
	}
	if len(ready) < np {
		e.rep.note("cold phase stopped after %v (--phone-cold) with %d of %d phones polled; the timed phase cycles over those", coldBound, len(ready), np)
	}
	e.rep.fig("cold home PROPFIND/s (each login a full hash check)", cs.Rate, "req/s")
	if miss1-miss0 > 0 {
		e.rep.fig("login cache misses in the cold phase", miss1-miss0, "")
		e.rep.fig("login cache hits in the cold phase", hit1-hit0, "")
	}

	// Timed phase: open loop at rate; webhook updates change lists.
	poll := newHist("phone poll (PROPFIND + syncs + multigets)")
	prop := newHist("PROPFIND home Depth 1")
	syn := newHist("sync-collection")
	mg := newHist("calendar-multiget (50)")
	lag := newHist("schedule lag (start − due)")
	upd := newHist("webhook update (changes lists)")
	hs := &loadHists{propfind: prop, sync: syn, multiget: mg}
	stop = e.progress(ctx, "phones", poll, prop, syn, upd)
	runCtx, cancelRun := context.WithTimeout(ctx, o.Duration+30*time.Second)
	defer cancelRun()
	var changeWG sync.WaitGroup
	changeCtx, stopChanges := context.WithCancel(runCtx)
	changeRate := rate * o.PhoneChange / phoneGroup
	if e.hook != nil && changeRate > 0 {
		changeWG.Add(1)
		go func() {
			defer changeWG.Done()
			rng := rand.New(rand.NewPCG(3, 4))
			iv := time.Duration(float64(time.Second) / changeRate)
			readyGroups := max(1, (len(ready)+phoneGroup-1)/phoneGroup)
			t := time.NewTicker(iv)
			defer t.Stop()
			for {
				select {
				case <-changeCtx.Done():
					return
				case <-t.C:
				}
				j := rng.IntN(readyGroups)*o.Projects + rng.IntN(o.Projects)
				changeWG.Add(1)
				go func() {
					defer changeWG.Done()
					t1 := time.Now()
					if err := e.hook.send(changeCtx, []task{mk(j)}); err != nil {
						if changeCtx.Err() == nil {
							upd.Err()
						}
						return
					}
					upd.Add(time.Since(t1))
				}()
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / rate)
	var inflight, skipped atomic.Int64
	var pw sync.WaitGroup
	start := time.Now()
	end := start.Add(o.Duration)
	i := 0
	for due := start; due.Before(end) && runCtx.Err() == nil; due = due.Add(interval) {
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		p := ready[i%len(ready)]
		i++
		if inflight.Load() >= int64(o.MaxInflight) {
			skipped.Add(1)
			continue
		}
		inflight.Add(1)
		pw.Add(1)
		go func(due time.Time) {
			defer pw.Done()
			defer inflight.Add(-1)
			t1 := time.Now()
			lag.Add(t1.Sub(due))
			if err := e.phonePoll(runCtx, p, newClient, hs); err != nil {
				if runCtx.Err() == nil {
					poll.Err()
				}
				return
			}
			poll.Add(time.Since(t1))
		}(due)
	}
	offered := i
	pw.Wait()
	elapsed := time.Since(start)
	stopChanges()
	changeWG.Wait()
	stop()
	ps := e.rep.op(poll, elapsed)
	e.rep.op(prop, elapsed)
	e.rep.op(syn, elapsed)
	e.rep.op(mg, elapsed)
	e.rep.op(upd, elapsed)
	ls := e.rep.op(lag, elapsed)
	hit2, miss2 := cache()
	if miss2+hit2 > miss1+hit1 {
		e.rep.fig("login cache hit ratio in the timed phase", (hit2-hit1)/(hit2-hit1+miss2-miss1), "")
	}
	achieved := float64(ps.Count) / o.Duration.Seconds()
	e.rep.fig("offered home polls/s", rate, "req/s")
	e.rep.fig("completed home polls/s", achieved, "req/s")
	if sk := skipped.Load(); sk > 0 {
		e.rep.fig("polls skipped (in-flight bound reached)", float64(sk), "")
	}
	keptUp := skipped.Load() == 0 && ps.Errors == 0 && float64(ps.Count) >= 0.98*float64(offered) &&
		time.Duration(ps.P99MS*float64(time.Millisecond)) <= o.SLO && ls.P99MS < float64(o.SLO.Milliseconds())
	verdict := "keeps up"
	if !keptUp {
		verdict = "does NOT keep up"
	}
	e.rep.note("phones: %s with %.0f home polls/s (%d phones at one poll per 15 min = %.0f/s): p99 poll %.1f ms, p99 lag %.1f ms, %d errors",
		verdict, rate, o.Phones, float64(o.Phones)/900, ps.P99MS, ls.P99MS, ps.Errors)
	e.rep.target("≥ 300 home PROPFIND Depth 1/s sustained, login cached", "≥ 300/s, p99 ≤ "+o.SLO.String(),
		fmt.Sprintf("%.0f/s offered, %s, p99 poll %.1f ms", rate, verdict, ps.P99MS), keptUp && rate >= 300)
	// The login cache slides for 20 idle minutes, so steady 15-minute polls
	// hit it; this is the first poll of each phone after a server restart.
	e.rep.target("≥ 300 home PROPFIND Depth 1/s on cold logins (first poll after a restart pays a hash check)", "≥ 300/s",
		fmt.Sprintf("%.0f/s (%s hashes)", cs.Rate, o.Hash), cs.Rate >= 300)
	return ctx.Err()
}

// phonePoll is one background fetch of one phone.
func (e *env) phonePoll(ctx context.Context, p *phone, newClient func(int) (*davClient, func()), hs *loadHists) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	dc, done := newClient(p.user)
	defer done()
	t0 := time.Now()
	cols, err := dc.homeDepth1(ctx, p.home)
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
		tok, err := e.syncAndFetch(ctx, dc, c.Path, st.token, hs)
		if err != nil {
			return err
		}
		p.state[c.Path] = pollState{ctag: c.CTag, token: tok}
	}
	return nil
}

var _ = http.StatusOK
