package store_test

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// BenchmarkRestartAfterKill measures a start after SIGKILL on the WAL that
// writers which never paused left (40,000 device passwords and tasks of
// 1 KB in transactions of 100, two readers polling, all checkpointed
// before the kill; the WAL grown as it did before the checkpointer started
// it over): Open, then the first background checkpoint while serving.
// Metrics per start: open-ms and open-cpu-ms, then ckpt-ms and
// ckpt-cpu-ms (the checkpoint copies the whole WAL again unless Open did).
func BenchmarkRestartAfterKill(b *testing.B) {
	img := filepath.Join(b.TempDir(), "img")
	const total = 40000
	killedWriter(b, img, total, 100, 1000, total, time.Second, crashChildEnv+"_NO_RESTART=1")
	quiet := slog.New(slog.DiscardHandler)
	b.ResetTimer()
	var openWall, openCPU, ckptWall, ckptCPU time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), "run")
		if out, err := exec.Command("cp", "-a", img, dir).CombinedOutput(); err != nil {
			b.Fatalf("copy the crash image: %v: %s", err, out)
		}
		b.StartTimer()
		c0, t0 := processCPU(), time.Now()
		s, err := store.Open(b.Context(), store.SQLite, dir, store.Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		c1, t1 := processCPU(), time.Now()
		if _, err := store.WALFrames(s); err != nil {
			b.Fatal(err)
		}
		c2, t2 := processCPU(), time.Now()
		b.StopTimer()
		openWall, openCPU = openWall+t1.Sub(t0), openCPU+c1-c0
		ckptWall, ckptCPU = ckptWall+t2.Sub(t1), ckptCPU+c2-c1
		s.Close()
		os.RemoveAll(dir)
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(ms(openWall), "open-ms")
	b.ReportMetric(ms(openCPU), "open-cpu-ms")
	b.ReportMetric(ms(ckptWall), "ckpt-ms")
	b.ReportMetric(ms(ckptCPU), "ckpt-cpu-ms")
}

// processCPU is this process's CPU time (user and system) so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
