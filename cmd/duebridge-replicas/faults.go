package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// faults runs the load with a replica killed and the database restarted,
// then checks that nothing acknowledged was lost or sent twice.
func (r *run) faults(ctx context.Context, db *sql.DB, idlers []*idler) error {
	hc := &http.Client{Timeout: 10 * time.Second}
	var setup hookStats
	now := time.Now()
	// Scheduler work every replica sees at once: due-soon mails (lead 1h)
	// and overdue mails that fall due during the faults.
	var due, overdue, completes []task
	for i := 0; i < 2*r.o.users; i++ {
		u := r.users[i%len(r.users)]
		due = append(due, task{ID: "D-" + itoa(i), Title: "due soon " + itoa(i), Project: "Rep", Assignees: []string{u}, Status: "open", Version: 1,
			Due: now.Add(time.Hour + 6*time.Second + time.Duration(i)*500*time.Millisecond).UTC().Format(time.RFC3339)})
		overdue = append(overdue, task{ID: "O-" + itoa(i), Title: "overdue " + itoa(i), Project: "Rep", Assignees: []string{u}, Status: "open", Version: 1,
			Due: now.Add(8*time.Second + time.Duration(i)*500*time.Millisecond).UTC().Format(time.RFC3339)})
	}
	for i := 0; i < 8*r.o.users; i++ {
		completes = append(completes, task{ID: "C-" + itoa(i), Title: "tick me " + itoa(i), Project: "Rep", Assignees: []string{r.users[i%len(r.users)]}, Status: "open", Version: 1})
	}
	for _, list := range [][]task{due, overdue, completes} {
		for _, t := range list {
			if err := r.sendAcked(ctx, hc, t, &setup); err != nil {
				return err
			}
		}
	}
	r.logf("load starts: %d due-soon, %d overdue, %d completable tasks stored", len(due), len(overdue), len(completes))

	lctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup

	// Webhook senders: tasks moving between users, through the balancer.
	var hooks hookStats
	var ackMu sync.Mutex
	acked := map[string]int64{} // task id -> highest acknowledged version
	var versions [40]atomic.Int64
	var sentOK atomic.Int64
	t0 := time.Now()
	for w := 0; w < r.o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; lctx.Err() == nil; i += r.o.workers {
				k := i % len(versions)
				v := versions[k].Add(1)
				t := task{ID: "L-" + itoa(k), Title: "load " + itoa(k), Project: "Rep", Assignees: []string{r.users[(k+int(v))%len(r.users)]}, Status: "open", Version: v}
				for lctx.Err() == nil {
					res := postTask(lctx, hc, r.lbHTTP+"/hooks/tracker", r.secret, t)
					if lctx.Err() != nil {
						break
					}
					hooks.add(res)
					if res.code == 200 {
						ackMu.Lock()
						acked[t.ID] = max(acked[t.ID], v)
						ackMu.Unlock()
						sentOK.Add(1)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}

	// Phones: per replica, a phone of each user syncs and ticks that
	// user's tasks done; a phone whose replica died goes through the
	// balancer.
	var compMu sync.Mutex
	completed := map[string]bool{} // acknowledged PUTs
	found := map[string]bool{}     // found completed (a lost answer)
	var putErrs atomic.Int64
	for ri, rep := range r.rs {
		for ui, u := range r.users {
			if ui%len(r.rs) != ri {
				continue // each user's phone on one replica
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := &davPhone{hc: hc, base: rep.httpURL(), user: u, pass: r.pass, coll: "/dav/" + u + "/calendars/rep-tasks/"}
				var mine []string
				for _, t := range completes {
					if t.Assignees[0] == u {
						mine = append(mine, t.ID)
					}
				}
				// Spread the ticks over the load, so some fall into each fault.
				pace := r.o.load / time.Duration(len(mine)+1)
				for lctx.Err() == nil && len(mine) > 0 {
					select {
					case <-rep.exited:
						p.base = r.lbHTTP
					default:
					}
					p.sync(lctx)
					done, already, err := p.complete(lctx, "tracker", mine[0])
					if lctx.Err() != nil {
						return
					}
					if err != nil {
						putErrs.Add(1)
						time.Sleep(200 * time.Millisecond)
						continue
					}
					compMu.Lock()
					if done {
						completed[mine[0]] = true
					} else if already {
						found[mine[0]] = true
					}
					compMu.Unlock()
					mine = mine[1:]
					time.Sleep(pace)
				}
			}()
		}
	}

	// Faults: kill the last replica, then restart the database.
	victim := r.rs[len(r.rs)-1]
	time.Sleep(r.o.load / 5)
	r.logf("kill -9 %s (pid %d)", victim.name, victim.cmd.Process.Pid)
	victim.kill()
	time.Sleep(r.o.load / 5)
	live := r.rs[:len(r.rs)-1]
	if r.o.pgStop != "" {
		if err := r.restartDB(lctx, live); err != nil {
			stop()
			wg.Wait()
			return err
		}
	}
	time.Sleep(time.Until(t0.Add(r.o.load)))
	stop()
	wg.Wait()
	loadTime := time.Since(t0)
	r.logf("load stopped: %d webhooks acknowledged", sentOK.Load())
	r.figure("load: %d webhooks acknowledged in %v (%.0f/s with a replica killed and the database restarted); answers: %s",
		sentOK.Load(), loadTime.Round(time.Second), float64(sentOK.Load())/loadTime.Seconds(), hooks.String())
	hooks.mu.Lock()
	n500, noRA := hooks.codes[500], hooks.noRetry503
	hooks.mu.Unlock()
	r.check(n500 == 0, "no webhook answered 500 (%d)", n500)
	r.check(noRA == 0, "every 503 carried Retry-After (%d without)", noRA)

	// 1. Every acknowledged update is stored.
	lost := 0
	rows, err := db.QueryContext(ctx, `SELECT id, version FROM tasks WHERE source = 'tracker'`)
	if err != nil {
		return err
	}
	have := map[string]int64{}
	for rows.Next() {
		var id string
		var v sql.NullInt64
		if err := rows.Scan(&id, &v); err != nil {
			return err
		}
		have[id] = v.Int64
	}
	rows.Close()
	for id, v := range acked {
		if have[id] < v {
			lost++
			r.logf("lost: %s acknowledged v%d, stored v%d", id, v, have[id])
		}
	}
	r.check(lost == 0, "every acknowledged webhook is stored: %d tasks, lost %d", len(acked), lost)

	// 2. Every IDLE client, moved ones included, catches up to its mailbox.
	r.checkIdlers(ctx, idlers, victim)

	// 3. Callbacks: one per acknowledged completion.
	r.checkCallbacks(ctx, db, completed, found, putErrs.Load())

	// 4. Due-soon and overdue mails: each exactly once.
	r.checkAlerts(ctx, due, overdue)
	return nil
}

// restartDB stops PostgreSQL, watches /readyz on the live replicas and the
// webhooks meanwhile, and starts it again.
func (r *run) restartDB(ctx context.Context, live []*replica) error {
	r.logf("stopping PostgreSQL")
	if out, err := exec.CommandContext(ctx, "sh", "-c", r.o.pgStop).CombinedOutput(); err != nil {
		return fmt.Errorf("-pg-stop: %v\n%s", err, out)
	}
	down := time.Now()
	notReady := map[string]string{}
	hc := &http.Client{Timeout: 3 * time.Second}
	for time.Since(down) < r.o.outage {
		for _, rep := range live {
			if _, ok := notReady[rep.name]; ok {
				continue
			}
			resp, err := hc.Get(rep.httpURL() + "/readyz")
			if err != nil {
				continue
			}
			var body struct {
				Ready   bool
				Reasons []string
			}
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode == 503 && !body.Ready && len(body.Reasons) > 0 && resp.Header.Get("Retry-After") != "" {
				notReady[rep.name] = strings.Join(body.Reasons, "; ")
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.logf("starting PostgreSQL")
	if out, err := exec.CommandContext(ctx, "sh", "-c", r.o.pgStart).CombinedOutput(); err != nil {
		return fmt.Errorf("-pg-start: %v\n%s", err, out)
	}
	up := time.Now()
	for _, rep := range live {
		why, ok := notReady[rep.name]
		r.check(ok, "database down: %s /readyz answered 503 with Retry-After and a reason (%s)", rep.name, why)
	}
	for _, rep := range live {
		err := waitReady(ctx, rep, 30*time.Second)
		r.check(err == nil, "database back: %s ready again after %v (%v)", rep.name, time.Since(up).Round(100*time.Millisecond), err)
	}
	return nil
}

// checkIdlers waits until every IDLE client has heard of every message in
// its user's mailbox, and checks the killed replica's clients came back.
func (r *run) checkIdlers(ctx context.Context, idlers []*idler, victim *replica) {
	// A last webhook for everyone after the restart: the LISTEN connections
	// must be back for it to reach every replica's clients.
	hc := &http.Client{Timeout: 10 * time.Second}
	var st hookStats
	r.sendAcked(ctx, hc, task{ID: "Z-after", Title: "after the faults", Project: "Rep", Assignees: r.users, Status: "open", Version: 1}, &st)
	want := map[string]int{}
	for _, u := range r.users {
		n, _, err := mailKinds(ctx, r.lbIMAP, u, r.pass)
		if err != nil {
			r.check(false, "read %s's mailbox through the balancer: %v", u, err)
			return
		}
		want[u] = n
	}
	deadline := time.Now().Add(15 * time.Second)
	var behind []string
	for {
		behind = behind[:0]
		for _, d := range idlers {
			if int(d.Count()) < want[d.user] {
				behind = append(behind, fmt.Sprintf("%s@%s %d/%d", d.user, d.home, d.Count(), want[d.user]))
			}
		}
		if len(behind) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.check(len(behind) == 0, "every IDLE client (%d) heard of every mail in its mailbox after the faults (behind: %s)", len(idlers), strings.Join(behind, ", "))
	moved, back := 0, 0
	for _, d := range idlers {
		if d.home == victim.name {
			moved++
			d.mu.Lock()
			if d.reconnects > 0 {
				back++
			}
			d.mu.Unlock()
		}
	}
	r.check(moved > 0 && back == moved, "the killed replica's %d IDLE clients reconnected through the balancer (%d did)", moved, back)
}

// checkCallbacks waits for one callback per acknowledged completion.
func (r *run) checkCallbacks(ctx context.Context, db *sql.DB, completed, found map[string]bool, putErrs int64) {
	deadline := time.Now().Add(25 * time.Second)
	var missing []string
	for {
		missing = missing[:0]
		r.cb.mu.Lock()
		for id := range completed {
			if len(r.cb.tasks[id]) == 0 {
				missing = append(missing, id)
			}
		}
		r.cb.mu.Unlock()
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A claimed callback that was not sent (its replica was killed, or the
	// database went away mid-batch) waits in the outbox until the claim
	// lapses (2 minutes): durable, not lost, but late.
	held := 0
	for _, id := range missing {
		var n int
		db.QueryRowContext(ctx, `SELECT count(*) FROM outbox WHERE task_id = $1 AND delivered IS NULL`, id).Scan(&n)
		if n > 0 {
			held++
		}
	}
	r.cb.mu.Lock()
	twice, redelivered := 0, 0
	for _, evs := range r.cb.tasks {
		if len(evs) > 1 {
			twice++
		}
	}
	for _, n := range r.cb.events {
		if n > 1 {
			redelivered++
		}
	}
	bad, got := r.cb.bad, len(r.cb.events)
	r.cb.mu.Unlock()
	r.figure("completions: %d PUTs acknowledged, %d found already done (answer lost), %d PUT attempts failed during the faults; %d callbacks received", len(completed), len(found), putErrs, got)
	r.check(len(completed) > 0, "phones completed tasks during the faults (%d)", len(completed))
	r.check(len(missing)-held == 0, "every acknowledged completion's callback arrived or waits in the outbox: missing %d, waiting out a 2-minute claim %d", len(missing)-held, held)
	r.check(twice == 0 && redelivered == 0, "no callback sent twice: tasks with two events %d, event ids delivered twice %d", twice, redelivered)
	r.check(bad == 0, "every callback was signed and well-formed (%d bad)", bad)
}

// checkAlerts counts due-soon and overdue mails in every mailbox.
func (r *run) checkAlerts(ctx context.Context, due, overdue []task) {
	type key struct{ task, kind string }
	want := map[key]bool{}
	for _, t := range due {
		want[key{"tracker-" + t.ID, "due_soon"}] = true
	}
	for _, t := range overdue {
		want[key{"tracker-" + t.ID, "overdue"}] = true
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := map[key]int{}
		for _, u := range r.users {
			_, kinds, err := mailKinds(ctx, r.lbIMAP, u, r.pass)
			if err != nil {
				r.check(false, "read %s's mailbox: %v", u, err)
				return
			}
			for k, n := range kinds {
				parts := strings.SplitN(k, " ", 2)
				if parts[1] == "due_soon" || parts[1] == "overdue" {
					got[key{parts[0], parts[1]}] += n
				}
			}
		}
		missing, twice := 0, 0
		for k := range want {
			if got[k] == 0 {
				missing++
			}
		}
		for _, n := range got {
			if n > 1 {
				twice++
			}
		}
		if (missing == 0 && len(got) >= len(want)) || time.Now().After(deadline) {
			total := 0
			for _, n := range got {
				total += n
			}
			r.check(missing == 0, "every due-soon and overdue mail was sent (%d expected, %d missing)", len(want), missing)
			r.check(twice == 0, "no due-soon or overdue mail was sent twice by %d schedulers (%d mails, %d duplicated)", len(r.rs), total, twice)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}
