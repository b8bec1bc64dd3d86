package bridge

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// BenchmarkResyncWriterHold re-renders every task of one user after her
// lead times changed (each op flips them between 1h and 2h, so every
// reminder is rewritten), by a reload or at a start with new rendering
// rules, while another writer commits a one-key write in a loop, as
// webhooks and phones would. It reports the longest
// that writer waited (max-write-wait-ms: how long the re-render held the
// single writer at a time), its writes during the op, and the largest
// heap in use seen meanwhile, per batch size (resyncBatch).
// DUEBRIDGE_BENCH_RESYNC_TASKS sets the number of tasks (default 20,000).
func BenchmarkResyncWriterHold(b *testing.B) {
	n := 20000
	if v, err := strconv.Atoi(os.Getenv("DUEBRIDGE_BENCH_RESYNC_TASKS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	c := groupConfig(b)
	s := sqliteService(b, c.DataDir, c)
	due := store.When{Time: time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second)}
	var in []TaskInput
	for i := range n {
		in = append(in, TaskInput{ID: fmt.Sprintf("T-%07d", i), Title: "Task", Project: fmt.Sprintf("p%d", i%5),
			Assignees: []string{"alice"}, Due: due})
		if len(in) == 500 || i == n-1 {
			if _, err := s.Ingest(ctx, "tracker", in); err != nil {
				b.Fatal(err)
			}
			in = nil
		}
	}
	for _, path := range []string{"reload", "rules"} {
		for _, batch := range []int{100, 250, 500} {
			b.Run(fmt.Sprintf("%s/batch=%d", path, batch), func(b *testing.B) {
				old := resyncBatch
				resyncBatch = batch
				defer func() { resyncBatch = old }()
				benchResync(b, s, path == "rules")
			})
		}
	}
}

// benchResync measures re-renders after a reload (rules false: the walk
// over the changed user's objects) or after a rendering-rules upgrade
// (rules true: RerenderIfStale's walk over every task of the source).
func benchResync(b *testing.B, s *Service, rules bool) {
	ctx := context.Background()
	var maxWait time.Duration
	var writes int
	var peakHeap uint64
	runtime.GC()
	b.ResetTimer()
	for range b.N {
		// The other lead time than now: every op rewrites every reminder.
		lead := time.Hour
		if cur := s.Config().User("alice").LeadTimes; len(cur) == 1 && cur[0] == time.Hour {
			lead = 2 * time.Hour
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			var ms runtime.MemStats
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.Set("bench_probe", start.String()) }); err != nil {
					b.Error(err)
					return
				}
				maxWait = max(maxWait, time.Since(start))
				writes++
				runtime.ReadMemStats(&ms)
				peakHeap = max(peakHeap, ms.HeapInuse)
				time.Sleep(time.Millisecond)
			}
		})
		next := withLeadTimes(s.Config(), "alice", lead)
		if rules {
			s.cfg.Store(next)
			if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.Set(renderVersionKey, "old") }); err != nil {
				b.Fatal(err)
			}
		}
		if rules {
			if _, err := s.RerenderIfStale(ctx); err != nil {
				b.Error(err)
			}
		} else {
			s.SetConfig(ctx, next)
		}
		close(stop)
		wg.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(maxWait.Microseconds())/1000, "max-write-wait-ms")
	b.ReportMetric(float64(writes)/float64(b.N), "other-writes/op")
	b.ReportMetric(float64(peakHeap)/(1<<20), "peak-heap-MB")
}
