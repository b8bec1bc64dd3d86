// Command duebridge-replicas runs several duebridge serve processes on one
// PostgreSQL database behind HAProxy (configured with docs/operations.md's example)
// and checks, under load, what the README promises of them: fan-out of a
// webhook to IMAP IDLE clients on every replica, no acknowledged update lost
// when a replica is killed or the database restarts, no callback and no
// due-soon/overdue mail lost or sent twice. CI runs it from .ci/replicas.sh.
//
//	duebridge-replicas -bin ./duebridge -pg-stop '...' -pg-start '...'
//
// TEST_DUEBRIDGE_POSTGRES names the database (.ci/postgres.sh prints it).
// It exits 1 when a check fails; the report goes to stdout.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

type options struct {
	bin, haproxy, readme    string
	pgStop, pgStart         string
	replicas, users         int
	load, outage            time.Duration
	fanout, workers, phones int
	keep                    bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "", "duebridge binary (default: go build ./cmd/duebridge)")
	flag.StringVar(&o.haproxy, "haproxy", "haproxy", "haproxy binary")
	flag.StringVar(&o.readme, "readme", "docs/operations.md", "the operations guide with the HAProxy example")
	flag.StringVar(&o.pgStop, "pg-stop", "", "shell command that stops the PostgreSQL server (empty: no database restart)")
	flag.StringVar(&o.pgStart, "pg-start", "", "shell command that starts it again")
	flag.IntVar(&o.replicas, "replicas", 3, "duebridge processes (2 or 3)")
	flag.IntVar(&o.users, "users", 6, "users (each has an IDLE client on every replica)")
	flag.IntVar(&o.fanout, "fanout", 30, "webhooks of the fan-out measurement")
	flag.IntVar(&o.workers, "workers", 4, "concurrent webhook senders during the load")
	flag.DurationVar(&o.load, "load", 22*time.Second, "length of the load with the faults")
	flag.DurationVar(&o.outage, "outage", 3*time.Second, "how long PostgreSQL stays down")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, logs)")
	flag.Parse()
	pg := os.Getenv("TEST_DUEBRIDGE_POSTGRES")
	if pg == "" {
		fmt.Fprintln(os.Stderr, "duebridge-replicas: TEST_DUEBRIDGE_POSTGRES is not set (eval \"$(sh .ci/postgres.sh)\")")
		os.Exit(2)
	}
	if o.replicas < 2 || o.replicas > 3 {
		fmt.Fprintln(os.Stderr, "duebridge-replicas: -replicas must be 2 or 3")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := &run{o: o, pg: pg, start: time.Now()}
	err := r.main(ctx)
	r.report()
	if err != nil {
		fmt.Fprintln(os.Stderr, "duebridge-replicas:", err)
		os.Exit(1)
	}
	if len(r.failures) > 0 {
		fmt.Printf("FAIL: %d check(s) failed\n", len(r.failures))
		os.Exit(1)
	}
	fmt.Println("PASS")
}

type run struct {
	o        options
	pg       string
	start    time.Time
	dir      string
	rs       []*replica
	haproxy  *exec.Cmd
	lbHTTP   string
	lbIMAP   string
	secret   string
	pass     string
	users    []string
	cb       *callbackReceiver
	mu       sync.Mutex
	failures []string
	lines    []string
}

func (r *run) logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%6.1fs "+format+"\n", append([]any{time.Since(r.start).Seconds()}, a...)...)
}

// check records a result line; a false ok fails the run.
func (r *run) check(ok bool, format string, a ...any) {
	line := fmt.Sprintf(format, a...)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.lines = append(r.lines, "ok    "+line)
	} else {
		r.lines = append(r.lines, "FAIL  "+line)
		r.failures = append(r.failures, line)
	}
}

func (r *run) figure(format string, a ...any) {
	r.mu.Lock()
	r.lines = append(r.lines, "      "+fmt.Sprintf(format, a...))
	r.mu.Unlock()
}

func (r *run) report() {
	fmt.Printf("duebridge-replicas: %d replicas, %d users, %s\n", r.o.replicas, r.o.users, time.Now().UTC().Format(time.RFC3339))
	for _, l := range r.lines {
		fmt.Println(l)
	}
}

func (r *run) main(ctx context.Context) error {
	var err error
	if r.dir, err = os.MkdirTemp("", "duebridge-replicas-"); err != nil {
		return err
	}
	defer r.cleanup()
	r.secret, r.pass = "replicas-secret-0123456789", "replicas-pw"
	for i := 0; i < r.o.users; i++ {
		r.users = append(r.users, "u"+itoa(i))
	}
	if r.o.bin == "" {
		r.o.bin = filepath.Join(r.dir, "duebridge")
		r.logf("building ./cmd/duebridge")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", r.o.bin, "./cmd/duebridge").CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	pgURL, db, err := resetSchema(ctx, r.pg)
	if err != nil {
		return fmt.Errorf("reset schema %s: %w", schema, err)
	}
	defer db.Close()

	r.cb = newCallbackReceiver(r.secret)
	cbSrv := httptest.NewServer(r.cb)
	defer cbSrv.Close()

	httpFront, err := freePort()
	if err != nil {
		return err
	}
	imapFront, err := freePort()
	if err != nil {
		return err
	}
	r.lbHTTP = fmt.Sprintf("http://127.0.0.1:%d", httpFront)
	r.lbIMAP = fmt.Sprintf("127.0.0.1:%d", imapFront)
	cc := clusterConfig{pgURL: pgURL, publicURL: r.lbHTTP, secret: r.secret, callbackURL: cbSrv.URL + "/callback", users: r.users, password: r.pass}
	for i := 0; i < r.o.replicas; i++ {
		rep := &replica{name: "r" + itoa(i+1), dir: filepath.Join(r.dir, "r"+itoa(i+1))}
		if err := os.MkdirAll(rep.dir, 0o700); err != nil {
			return err
		}
		rep.cfg, rep.log = filepath.Join(rep.dir, "duebridge.yaml"), filepath.Join(rep.dir, "serve.log")
		if rep.httpPort, err = freePort(); err != nil {
			return err
		}
		if rep.imapPort, err = freePort(); err != nil {
			return err
		}
		if err := writeReplicaConfig(rep, cc); err != nil {
			return err
		}
		r.rs = append(r.rs, rep)
	}
	// Start them together: the migrations' advisory lock is part of the test.
	errs := make(chan error, len(r.rs))
	for _, rep := range r.rs {
		go func() { errs <- rep.start(ctx, r.o.bin) }()
	}
	for range r.rs {
		if err := <-errs; err != nil {
			return err
		}
	}
	r.logf("%d replicas ready", len(r.rs))
	cfg, err := haproxyConfig(r.o.readme, httpFront, imapFront, r.rs)
	if err != nil {
		return err
	}
	if r.haproxy, err = startHAProxy(ctx, r.o.haproxy, r.dir, cfg, httpFront); err != nil {
		return err
	}
	r.logf("haproxy in front: http %s imap %s", r.lbHTTP, r.lbIMAP)
	// Let the balancer's health checks see every replica up.
	time.Sleep(2500 * time.Millisecond)

	idlers, err := r.openIdlers(ctx)
	if err != nil {
		return err
	}
	defer func() {
		for _, d := range idlers {
			d.close()
		}
	}()
	if err := r.fanout(ctx, idlers); err != nil {
		return err
	}
	return r.faults(ctx, db, idlers)
}

func (r *run) cleanup() {
	if r.haproxy != nil && r.haproxy.Process != nil {
		r.haproxy.Process.Kill()
		r.haproxy.Wait()
	}
	for _, rep := range r.rs {
		rep.stop()
	}
	if r.o.keep {
		r.logf("kept %s", r.dir)
	} else {
		os.RemoveAll(r.dir)
	}
}

// openIdlers opens one IDLE client per user on every replica, each straight
// to its replica (with a PROXY header) so the spread is exact.
func (r *run) openIdlers(ctx context.Context) ([]*idler, error) {
	var out []*idler
	for _, rep := range r.rs {
		for _, u := range r.users {
			d := &idler{user: u, pass: r.pass, home: rep.name, direct: rep.imapAddr(), balancer: r.lbIMAP}
			if err := d.connect(ctx, rep.imapAddr(), true); err != nil {
				return out, fmt.Errorf("IDLE client %s on %s: %w", u, rep.name, err)
			}
			out = append(out, d)
		}
	}
	for _, d := range out {
		go d.run(ctx, r.logf)
	}
	return out, nil
}

// sendAcked sends t through the balancer until some replica acknowledges
// it, as a tracker retries; it returns the codes seen on the way.
func (r *run) sendAcked(ctx context.Context, hc *http.Client, t task, st *hookStats) error {
	for ctx.Err() == nil {
		res := postTask(ctx, hc, r.lbHTTP+"/hooks/tracker", r.secret, t)
		st.add(res)
		if res.code == 200 {
			return nil
		}
		if res.code/100 == 4 {
			return fmt.Errorf("webhook %s: HTTP %d", t.ID, res.code)
		}
		time.Sleep(150 * time.Millisecond)
	}
	return ctx.Err()
}

// hookStats counts webhook answers by status.
type hookStats struct {
	mu         sync.Mutex
	codes      map[int]int
	transport  int
	noRetry503 int
}

func (s *hookStats) add(res hookResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.codes == nil {
		s.codes = map[int]int{}
	}
	if res.err != nil {
		s.transport++
		return
	}
	s.codes[res.code]++
	if res.code == 503 && res.retryAfter == "" {
		s.noRetry503++
	}
}

func (s *hookStats) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []int
	for k := range s.codes {
		keys = append(keys, k)
	}
	sort.Ints(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%d×%d ", k, s.codes[k])
	}
	fmt.Fprintf(&b, "transport errors×%d", s.transport)
	return b.String()
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return s[i]
}

// fanout sends webhooks one at a time through the balancer, each a new task
// for every user, and times send → EXISTS on every IDLE client.
func (r *run) fanout(ctx context.Context, idlers []*idler) error {
	var mu sync.Mutex
	var sent []time.Time         // send time of fan-out webhook i
	var acks []time.Duration     // send → 200
	start := map[*idler]uint32{} // message count before the first
	seen := map[*idler]uint32{}  // messages timed so far
	lat := map[string][]time.Duration{}
	for _, d := range idlers {
		start[d], seen[d] = d.Count(), 0
		d.onExists = func(d *idler, n uint32, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			// Message start+j+1 is fan-out webhook j's mail.
			for ; start[d]+seen[d] < n && int(seen[d]) < len(sent); seen[d]++ {
				lat[d.home] = append(lat[d.home], at.Sub(sent[seen[d]]))
			}
		}
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	var st hookStats
	t0 := time.Now()
	for i := 0; i < r.o.fanout; i++ {
		mu.Lock()
		sent = append(sent, time.Now())
		mu.Unlock()
		t := task{ID: "F-" + itoa(i), Title: "fan-out " + itoa(i), Project: "Rep", Assignees: r.users, Status: "open", Version: 1}
		if err := r.sendAcked(ctx, hc, t, &st); err != nil {
			return err
		}
		mu.Lock()
		acks = append(acks, time.Since(sent[i]))
		mu.Unlock()
		deadline := time.Now().Add(10 * time.Second)
		for {
			all := true
			for _, d := range idlers {
				if d.Count() < start[d]+uint32(i+1) {
					all = false
				}
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				var behind []string
				for _, d := range idlers {
					if d.Count() < start[d]+uint32(i+1) {
						behind = append(behind, d.user+"@"+d.home)
					}
				}
				r.check(false, "fan-out: webhook %d reached every IDLE client within 10 s (behind: %s)", i, strings.Join(behind, " "))
				return nil
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	elapsed := time.Since(t0)
	mu.Lock()
	var all []time.Duration
	var per []string
	for _, rep := range r.rs {
		l := lat[rep.name]
		all = append(all, l...)
		per = append(per, fmt.Sprintf("%s p50 %v p99 %v (n=%d)", rep.name, percentile(l, .5).Round(100*time.Microsecond), percentile(l, .99).Round(100*time.Microsecond), len(l)))
	}
	mu.Unlock()
	for _, d := range idlers {
		d.onExists = nil
	}
	r.check(len(all) == r.o.fanout*len(idlers), "fan-out: %d webhooks through the balancer reached all %d IDLE clients on %d replicas (%d EXISTS)", r.o.fanout, len(idlers), len(r.rs), len(all))
	r.figure("send → EXISTS across replicas: p50 %v p99 %v max %v; %s", percentile(all, .5).Round(100*time.Microsecond), percentile(all, .99).Round(100*time.Microsecond), percentile(all, 1).Round(100*time.Microsecond), strings.Join(per, "; "))
	r.figure("send → 200 (durable) of those webhooks: p50 %v p99 %v", percentile(acks, .5).Round(100*time.Microsecond), percentile(acks, .99).Round(100*time.Microsecond))
	r.figure("fan-out webhooks answered: %s; %.0f sequential webhooks/s incl. waiting for every EXISTS", st.String(), float64(r.o.fanout)/elapsed.Seconds())
	// The next sync on every replica lists them.
	for _, rep := range r.rs {
		p := &davPhone{hc: hc, base: rep.httpURL(), user: r.users[0], pass: r.pass, coll: "/dav/" + r.users[0] + "/calendars/rep-tasks/"}
		n, err := p.sync(ctx)
		r.check(err == nil && n >= r.o.fanout, "CalDAV sync on %s lists the %d fan-out tasks (listed %d, err %v)", rep.name, r.o.fanout, n, err)
	}
	return nil
}
