package bridge

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// BenchmarkIngestWALPages: new-task webhooks one after another; besides
// ns/op it reports the pages each commit wrote to SQLite's WAL
// ("wal-pages/op"). A commit writes every page it dirtied as one WAL frame
// (two syscalls) inside the single writer's turn. A read transaction is
// held open meanwhile, so the background checkpoint cannot recycle the WAL
// and its growth counts every frame. "cpu-us/op" is the process's CPU time
// (user + system, the syscalls included) per ingest, less sensitive than
// ns/op to other work on a shared machine.
func BenchmarkIngestWALPages(b *testing.B) { benchIngestWAL(b, 0) }

// BenchmarkIngestWALPagesProjects is BenchmarkIngestWALPages with tasks
// spread over ten projects, so each user has twenty collections (the load
// command's shape: --tasks 1000 over 100 users).
func BenchmarkIngestWALPagesProjects(b *testing.B) { benchIngestWAL(b, 10) }

func benchIngestWAL(b *testing.B, projects int) {
	s := groupService(b)
	users := []string{"alice", "bob", "carol"}
	ingest := func(id string, i int) {
		in := groupTask(id, users[i%3])
		if projects > 0 {
			in.Project = fmt.Sprintf("Project %d", (i/3)%projects)
		}
		if _, err := s.Ingest(context.Background(), "tracker", []TaskInput{in}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 300 { // a store that is not brand new
		ingest(fmt.Sprintf("warm-%d", i), i)
	}
	hold, held, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- s.st.View(context.Background(), func(tx store.Tx) error {
			_, err := tx.Task("tracker", "warm-1")
			close(held)
			<-hold
			return err
		})
	}()
	<-held
	wal := filepath.Join(s.Config().DataDir, "duebridge.db-wal")
	size := func() int64 {
		fi, err := os.Stat(wal)
		if err != nil {
			b.Fatal(err)
		}
		return fi.Size()
	}
	before, cpu0 := size(), cpuTime(b)
	b.ResetTimer()
	for i := range b.N {
		ingest(fmt.Sprintf("B-%d", i), i)
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	grew := size() - before
	close(hold)
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	const frame = 24 + 4096 // WAL frame header + page (SQLite's default page size)
	b.ReportMetric(float64(grew)/frame/float64(b.N), "wal-pages/op")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
