package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// davRun is one dav-scenario run and what its steps hand each other.
type davRun struct {
	e       *env
	user    string
	dc      *davClient
	home    string
	cols    []collection
	objects map[string][]string // collection → its objects' hrefs
	biggest string              // the collection multiget and sync measure on
}

// runDAV measures closed-loop CalDAV throughput on one user's home: the
// same requests against duebridge, Radicale or Xandikos. Steps: seed (with
// --start), discover the home (and --seed-ics it), list every object,
// --export-ics, then measure each of --ops.
func (e *env) runDAV(ctx context.Context) error {
	if e.httpURL == "" {
		return errors.New("the dav scenario needs --target or --start")
	}
	r := &davRun{e: e}
	for _, step := range []func(context.Context) error{r.seed, r.discover, r.listObjects, r.export, r.measure} {
		if err := step(ctx); err != nil {
			return err
		}
	}
	return nil
}

func (r *davRun) seed(ctx context.Context) error {
	e, o := r.e, r.e.o
	if !o.Start || o.Tasks <= 0 {
		return nil
	}
	return e.seed(ctx, "webhook batch (seed)", func(j int) task {
		return seedTask(j, len(e.users), o.Projects, e.users)
	}, o.Tasks)
}

// discover finds the user's home and, with --seed-ics, fills it.
func (r *davRun) discover(ctx context.Context) error {
	e, o := r.e, r.e.o
	r.user = o.DAVUser
	if r.user == "" {
		r.user = e.users[0]
	}
	r.dc = newDAVClient(e.base, e.tr, r.user, o.Password)
	var err error
	if r.home, err = r.dc.discover(ctx); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	e.rep.Params["home"] = r.home
	e.rep.Params["workers"] = o.Workers
	e.rep.Params["multiget_size"] = o.MultigetSize
	if o.SeedICS != "" {
		if err := e.seedICS(ctx, r.dc, r.home, o.SeedICS); err != nil {
			return fmt.Errorf("seed from %s: %w", o.SeedICS, err)
		}
	}
	return nil
}

// listObjects reads every object of every collection via a full sync and
// picks the biggest collection.
func (r *davRun) listObjects(ctx context.Context) error {
	e := r.e
	var err error
	if r.cols, err = r.dc.homeDepth1(ctx, r.home); err != nil {
		return err
	}
	r.objects = map[string][]string{}
	total := 0
	for _, c := range r.cols {
		res, err := r.dc.syncCollection(ctx, c.Path, "")
		if err != nil {
			return fmt.Errorf("full sync of %s: %w", c.Path, err)
		}
		sort.Strings(res.Changed)
		r.objects[c.Path] = res.Changed
		total += len(res.Changed)
		if len(res.Changed) > len(r.objects[r.biggest]) || r.biggest == "" {
			r.biggest = c.Path
		}
	}
	e.rep.fig("calendars in the home", float64(len(r.cols)), "")
	e.rep.fig("objects in the home", float64(total), "")
	e.rep.fig("objects in the multiget/sync calendar", float64(len(r.objects[r.biggest])), "")
	e.logf("home %s: %d calendars, %d objects; measuring on %s (%d objects)", r.home, len(r.cols), total, r.biggest, len(r.objects[r.biggest]))
	return nil
}

// export writes the objects as .ics files (--export-ics).
func (r *davRun) export(ctx context.Context) error {
	dir := r.e.o.ExportICS
	if dir == "" {
		return nil
	}
	if err := exportICS(ctx, r.dc, r.cols, r.objects, dir); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	r.e.logf("exported the objects to %s", dir)
	return nil
}

// measure runs each of --ops in a closed loop.
func (r *davRun) measure(ctx context.Context) error {
	ops := map[string]func(context.Context) error{"propfind": r.propfind, "multiget": r.multiget, "sync": r.sync}
	for _, op := range strings.Split(r.e.o.DAVOps, ",") {
		op = strings.TrimSpace(op)
		if op == "" {
			continue
		}
		f, ok := ops[op]
		if !ok {
			return fmt.Errorf("--ops: unknown operation %q", op)
		}
		if err := f(ctx); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

func (r *davRun) propfind(ctx context.Context) error {
	s := r.e.closedLoop(ctx, "PROPFIND home Depth 1", func(ctx context.Context, dc *davClient, i int) (int, error) {
		cs, err := dc.homeDepth1(ctx, r.home)
		if err == nil && len(cs) != len(r.cols) {
			err = fmt.Errorf("home listed %d calendars, want %d", len(cs), len(r.cols))
		}
		return len(cs), err
	}, r.user)
	r.e.rep.fig("PROPFIND home Depth 1 throughput", s.Rate, "req/s")
	return nil
}

func (r *davRun) multiget(ctx context.Context) error {
	hrefs := r.objects[r.biggest]
	if len(hrefs) == 0 {
		r.e.rep.note("multiget skipped: no objects")
		return nil
	}
	size := min(r.e.o.MultigetSize, len(hrefs))
	s := r.e.closedLoop(ctx, fmt.Sprintf("calendar-multiget (%d)", size), func(ctx context.Context, dc *davClient, i int) (int, error) {
		lo := (i * size) % len(hrefs)
		batch := make([]string, 0, size)
		for k := 0; k < size; k++ {
			batch = append(batch, hrefs[(lo+k)%len(hrefs)])
		}
		got, err := dc.multiget(ctx, r.biggest, batch)
		return len(got), err
	}, r.user)
	r.e.rep.fig(fmt.Sprintf("calendar-multiget (%d) throughput", size), s.Rate, "req/s")
	return nil
}

func (r *davRun) sync(ctx context.Context) error {
	e, o := r.e, r.e.o
	hrefs := r.objects[r.biggest]
	token, err := e.prepareDelta(ctx, r.dc, r.biggest, hrefs)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	var short atomic.Int64
	s := e.closedLoop(ctx, fmt.Sprintf("sync-collection (%d changed of %d)", o.SyncDelta, len(hrefs)), func(ctx context.Context, dc *davClient, i int) (int, error) {
		res, err := dc.syncCollection(ctx, r.biggest, token)
		if err != nil {
			return 0, err
		}
		if len(res.Changed) < o.SyncDelta {
			short.Add(1)
		}
		return len(res.Changed), nil
	}, r.user)
	if n := short.Load(); n > 0 {
		e.rep.note("%d incremental syncs returned fewer than %d changes", n, o.SyncDelta)
	}
	e.rep.fig("incremental sync-collection throughput", s.Rate, "req/s")
	return nil
}

// closedLoop runs f with --workers clients for --duration; each worker
// is its own client (as many devices would be) over the shared transport.
func (e *env) closedLoop(ctx context.Context, name string, f func(context.Context, *davClient, int) (int, error), user string) Summary {
	o := e.o
	if o.Warmup > 0 { // unmeasured: caches, connections, JIT-less warm-up of the server's own kind
		wctx, wcancel := context.WithTimeout(ctx, o.Warmup)
		var wg sync.WaitGroup
		for w := 0; w < max(1, o.Workers); w++ {
			wg.Add(1)
			dc := newDAVClient(e.base, e.tr, user, o.Password)
			go func() {
				defer wg.Done()
				for i := w; wctx.Err() == nil; i += max(1, o.Workers) {
					f(wctx, dc, i)
				}
			}()
		}
		wg.Wait()
		wcancel()
	}
	h := newHist(name)
	stop := e.progress(ctx, "dav", h)
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr firstError
	cpu0 := treeCPU(e.pid)
	start := time.Now()
	for w := 0; w < max(1, o.Workers); w++ {
		wg.Add(1)
		dc := newDAVClient(e.base, e.tr, user, o.Password)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				t0 := time.Now()
				n, err := f(ctx, dc, i)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					h.Err()
					firstErr.set(err)
					continue
				}
				h.Add(time.Since(t0))
				h.Items(n)
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	cpu := treeCPU(e.pid) - cpu0
	stop()
	if err := firstErr.get(); err != nil {
		e.rep.note("%s: first error: %v", name, err)
	}
	s := e.rep.op(h, el)
	// The server's own CPU per request: unlike the rate, it does not depend
	// on how much of the shared cores the client took.
	if n := s.Count + s.Errors; e.pid > 0 && n > 0 && cpu > 0 {
		e.rep.fig(name+" server CPU per request", float64(cpu.Microseconds())/float64(n), "µs")
		e.rep.fig(name+" server CPU share", cpu.Seconds()/el.Seconds(), "cores")
	} else if e.pid <= 0 {
		e.rep.note("%s: no server pid (--pid), so no server CPU per request", name)
	}
	return s
}

// prepareDelta takes a sync token of coll, then changes --sync-delta of
// its objects, so that syncs from that token return exactly those.
func (e *env) prepareDelta(ctx context.Context, dc *davClient, coll string, hrefs []string) (string, error) {
	o := e.o
	res, err := dc.syncCollection(ctx, coll, "")
	if err != nil {
		return "", err
	}
	token := res.Token
	if token == "" {
		return "", errors.New("the collection has no sync token")
	}
	k := min(o.SyncDelta, len(hrefs))
	if k == 0 {
		return token, nil
	}
	pick := hrefs[:k]
	// duebridge: the task system changes the tasks (objects are server-owned).
	if e.hook != nil && e.o.Label == "duebridge" {
		var batch []task
		for _, h := range pick {
			name := strings.TrimSuffix(path.Base(h), ".ics")
			rest, ok := strings.CutPrefix(name, o.Source+"-seed-")
			j, err := strconv.Atoi(rest)
			if !ok || err != nil {
				return "", fmt.Errorf("object %s was not made by the seed", h)
			}
			t := seedTask(j, len(e.users), o.Projects, e.users)
			t.Title += " (changed)"
			t.Version = 2 + time.Now().UnixNano()%1_000_000_000
			batch = append(batch, t)
		}
		return token, e.hook.send(ctx, batch)
	}
	// Others: a client changes the objects with PUT.
	data, err := dc.multiget(ctx, coll, pick)
	if err != nil {
		return "", err
	}
	for _, h := range pick {
		body := strings.Replace(data[h], "SUMMARY:", "SUMMARY:(changed) ", 1)
		code, _, b, err := dc.do(ctx, "PUT", h, "", []byte(body))
		if err != nil {
			return "", err
		}
		if code/100 != 2 {
			return "", &httpStatusError{"PUT", h, code, truncate(string(b), 200)}
		}
	}
	return token, nil
}

// exportICS writes each collection's objects to dir/<collection>/<name>,
// with the component type in dir/<collection>/.component.
func exportICS(ctx context.Context, dc *davClient, cols []collection, objects map[string][]string, dir string) error {
	for _, c := range cols {
		name := path.Base(strings.TrimSuffix(c.Path, "/"))
		cdir := filepath.Join(dir, name)
		if err := os.MkdirAll(cdir, 0o755); err != nil {
			return err
		}
		comp := c.Comp
		if comp == "" {
			comp = "VEVENT"
		}
		if err := os.WriteFile(filepath.Join(cdir, ".component"), []byte(comp+"\n"), 0o644); err != nil {
			return err
		}
		hrefs := objects[c.Path]
		for lo := 0; lo < len(hrefs); lo += 100 {
			hi := min(lo+100, len(hrefs))
			got, err := dc.multiget(ctx, c.Path, hrefs[lo:hi])
			if err != nil {
				return err
			}
			for h, data := range got {
				if err := os.WriteFile(filepath.Join(cdir, path.Base(h)), []byte(data), 0o644); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// seedICS creates the collections of dir under home (MKCALENDAR) and PUTs
// their objects, 8 at a time.
func (e *env) seedICS(ctx context.Context, dc *davClient, home, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type put struct{ href, file string }
	var puts []put
	for _, ent := range ents {
		if !ent.IsDir() {
			continue
		}
		cdir := filepath.Join(dir, ent.Name())
		comp := "VEVENT"
		if b, err := os.ReadFile(filepath.Join(cdir, ".component")); err == nil {
			comp = strings.TrimSpace(string(b))
		}
		coll := strings.TrimSuffix(home, "/") + "/" + ent.Name() + "/"
		code, _, b, err := dc.do(ctx, "MKCALENDAR", coll, "", mkcalendarBody(ent.Name(), comp))
		if err != nil {
			return err
		}
		switch {
		case code == http.StatusCreated || code == http.StatusOK:
		case code == http.StatusMethodNotAllowed || code == http.StatusConflict:
			// exists already (a second run on the same data)
		default:
			return &httpStatusError{"MKCALENDAR", coll, code, truncate(string(b), 300)}
		}
		files, err := os.ReadDir(cdir)
		if err != nil {
			return err
		}
		for _, f := range files {
			if strings.HasSuffix(f.Name(), ".ics") {
				puts = append(puts, put{coll + f.Name(), filepath.Join(cdir, f.Name())})
			}
		}
	}
	h := newHist("PUT object (seed)")
	var next atomic.Int64
	var firstErr firstError
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && firstErr.get() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(puts) {
					return
				}
				body, err := os.ReadFile(puts[i].file)
				if err != nil {
					firstErr.set(err)
					return
				}
				t0 := time.Now()
				code, _, b, err := dc.do(ctx, "PUT", puts[i].href, "", body)
				// A PUT of the same bytes is idempotent: a timeout on a
				// crowded machine (Radicale serialises its writes) is
				// retried rather than ending the run.
				for try := 1; try < 3 && err != nil && ctx.Err() == nil; try++ {
					code, _, b, err = dc.do(ctx, "PUT", puts[i].href, "", body)
				}
				if err == nil && code/100 != 2 {
					err = &httpStatusError{"PUT", puts[i].href, code, truncate(string(b), 300)}
				}
				if err != nil {
					h.Err()
					firstErr.set(err)
					return
				}
				h.Add(time.Since(t0))
			}
		}()
	}
	wg.Wait()
	e.rep.op(h, time.Since(start))
	e.logf("PUT %d objects in %v", len(puts), time.Since(start).Round(time.Millisecond))
	if err := firstErr.get(); err != nil {
		return err
	}
	return nil
}
