package bridge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// benchSizes are the task counts of BenchmarkScheduler; DUEBRIDGE_BENCH_TASKS
// (comma-separated) overrides them. The default includes the million the
// deadline engine is built for; a run takes minutes and about 6 GB of disk.
func benchSizes(b *testing.B) []int {
	spec := os.Getenv("DUEBRIDGE_BENCH_TASKS")
	if spec == "" {
		spec = "1000,1000000"
	}
	var out []int
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("DUEBRIDGE_BENCH_TASKS: bad size %q", f)
		}
		out = append(out, n)
	}
	return out
}

// BenchmarkScheduler schedules and fires one reminder for each of n tasks
// of one user (notify: mail, lead time 1h), then measures ticks while all n
// schedules wait for their overdue instant. Reported per task: arm (the
// upsert ingest adds to its transaction), plan (the scheduler's first look),
// fire (render and store the mail, advance the schedule); per tick: idle
// (nothing due) and due100 (100 other tasks due). The tick figures are the
// ones to compare across sizes: they must not grow with n.
//
//	go test ./bridge -run '^$' -bench Scheduler -benchtime 1x -timeout 60m
//
// Measured on the 2-core development machine (SQLite, synchronous=FULL):
//
//	tasks       arm     plan    fire     alloc     peak heap  idle tick  tick, 100 due
//	1,000       5 µs    26 µs   145 µs   53 KB     3.2 MB     39 µs      14.4 ms
//	1,000,000   21 µs   68 µs   267 µs   53 KB     14.3 MB    57 µs      17.4 ms
//
// (per task, except the ticks). Firing is mostly rendering the mail; a
// million reminders took 4.5 minutes and 4.7 KB of disk each, the mail.
func BenchmarkScheduler(b *testing.B) {
	for _, n := range benchSizes(b) {
		b.Run(fmt.Sprintf("tasks=%d", n), func(b *testing.B) {
			for range b.N {
				benchPipeline(b, n)
			}
		})
	}
}

func benchPipeline(b *testing.B, n int) {
	ctx := context.Background()
	base := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	clock := fakeclock.New(base)
	cfg := testsvc.Config(b)
	cfg.Notifications.LeadTimes = []time.Duration{time.Hour}
	cfg.User("alice").Notify = config.NotifyMail
	svc := testsvc.New(b, testsvc.Options{Config: cfg, Clock: clock, Service: bridge.Options{AlertBatch: 512}})
	st := testsvc.Store(b, svc)
	// Due over a ten-minute spread two days out: the 1h reminders all pass
	// at fireAt, the due instants all later.
	due := func(i int) time.Time { return base.Add(48*time.Hour + time.Duration(i%600)*time.Second) }
	fireAt := base.Add(47*time.Hour + 10*time.Minute)
	if _, err := svc.SchedulerTick(ctx); err != nil { // backfill mark, plan fingerprint
		b.Fatal(err)
	}

	// Tasks as ingest stores them (not timed: that is ingest's cost).
	const batch = 2000
	mkTask := func(i int) *store.Task {
		return &store.Task{Source: "tracker", ID: fmt.Sprintf("T-%07d", i), Title: fmt.Sprintf("Benchmark task %d", i),
			Project: "Bench", Assignees: []string{"alice"}, Due: store.When{Time: due(i)}, Status: "open", Priority: "normal",
			UpdatedAt: base}
	}
	for lo := 0; lo < n; lo += batch {
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				if err := tx.PutTask(mkTask(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}

	peak := sampleHeap()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)

	start := time.Now()
	for lo := 0; lo < n; lo += batch {
		err := st.Update(ctx, func(tx store.Tx) error {
			for i := lo; i < min(lo+batch, n); i++ {
				if _, err := tx.ArmAlert("alice", "tracker", fmt.Sprintf("T-%07d", i), store.When{Time: due(i)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	arm := time.Since(start)

	start = time.Now()
	next, err := svc.SchedulerTick(ctx)
	if err != nil {
		b.Fatal(err)
	}
	plan := time.Since(start)
	if want := due(0).Add(-time.Hour); !next.Equal(want) {
		b.Fatalf("after planning, next = %s, want %s", next, want)
	}

	clock.Set(fireAt)
	start = time.Now()
	if _, err := svc.SchedulerTick(ctx); err != nil {
		b.Fatal(err)
	}
	fire := time.Since(start)
	runtime.ReadMemStats(&ms1)
	peakHeap := peak()

	var mails uint32
	err = st.View(ctx, func(tx store.Tx) error {
		var err error
		mails, err = tx.CountMessages("alice", bridge.Inbox)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	if int(mails) != n+0 {
		b.Fatalf("mails after firing = %d, want %d", mails, n)
	}

	// Ticks while all n schedules wait for their due instant.
	const ticks = 200
	start = time.Now()
	for range ticks {
		if _, err := svc.SchedulerTick(ctx); err != nil {
			b.Fatal(err)
		}
	}
	idle := time.Since(start) / ticks

	// Ticks that each find 100 newly due tasks among the n waiting ones.
	const rounds, perRound = 20, 100
	var due100 time.Duration
	for r := range rounds {
		err := st.Update(ctx, func(tx store.Tx) error {
			for j := range perRound {
				t := mkTask(n + r*perRound + j)
				t.Due = store.When{Time: clock.Now().Add(time.Hour + time.Second)}
				if err := tx.PutTask(t); err != nil {
					return err
				}
				if _, err := tx.ArmAlert("alice", "tracker", t.ID, t.Due); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.SchedulerTick(ctx); err != nil { // plan them (1h from now + 1s)
			b.Fatal(err)
		}
		clock.Advance(time.Second)
		start = time.Now()
		if _, err := svc.SchedulerTick(ctx); err != nil {
			b.Fatal(err)
		}
		due100 += time.Since(start)
	}
	due100 /= rounds

	size := dirSize(cfg.DataDir)
	per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(n) }
	b.ReportMetric(per(arm), "arm-ns/task")
	b.ReportMetric(per(plan), "plan-ns/task")
	b.ReportMetric(per(fire), "fire-ns/task")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(n), "alloc-B/task")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(idle.Microseconds()), "idle-tick-µs")
	b.ReportMetric(float64(due100.Microseconds()), "due100-tick-µs")
	b.ReportMetric(float64(size)/float64(n), "disk-B/task")
}

// sampleHeap watches the live heap until the returned func is called, which
// stops it and returns the highest HeapAlloc seen.
func sampleHeap() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > peak.Load() {
				peak.Store(ms.HeapAlloc)
			}
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return func() uint64 {
		close(stop)
		wg.Wait()
		return peak.Load()
	}
}

func dirSize(dir string) int64 {
	var total int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return nil
	})
	return total
}
