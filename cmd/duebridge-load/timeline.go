package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
	"unsafe"
)

// Minute is one minute of a timed phones phase: what the phones saw and
// what each side spent, so a p99 over fifteen minutes can be traced to the
// minutes that made it, and a slow minute told apart as more work per poll
// (ours) or less CPU for the same work (the machine).
type Minute struct {
	Minute    int     `json:"minute"`     // from the phase's start, by the polls' due time
	Polls     int     `json:"polls"`      // completed polls due in this minute
	Errors    int     `json:"errors"`     // failed ones
	P99MS     float64 `json:"p99_ms"`     // of their poll latency
	MaxMS     float64 `json:"max_ms"`     //
	Slow      int     `json:"slow"`       // polls over the --slo bound
	ServerCPU float64 `json:"server_cpu"` // cores the server used in the minute (wall clock)
	ToolCPU   float64 `json:"tool_cpu"`   // cores the load tool used
	Busy      float64 `json:"busy"`       // share of the machine's CPUs not idle, all processes and the kernel
	// Speed is the minute's median of a fixed loop's work per thread
	// CPU-second, as a share of the phase's fastest minute. The CPU time a
	// process is charged can grow without more work: a host that takes
	// the virtual CPU away is not seen by the guest (no steal is reported
	// here), so its time is charged to whatever ran. A slow minute with a
	// lower Speed got less machine; one at full Speed did more work.
	Speed float64 `json:"speed"`
	// ProbeRate is that median itself (loop steps per CPU-nanosecond), to
	// compare phases and runs.
	ProbeRate float64 `json:"probe_steps_per_cpu_ns"`
}

// timeline buckets a phase's polls by minute, samples the processes' CPU
// at each minute's end and probes the CPU's speed every second.
type timeline struct {
	start time.Time
	pid   int
	mu    sync.Mutex
	lat   [][]time.Duration
	errs  []int
	cpu   []minuteCPU
	// speeds are speedProbe's results by minute.
	speeds [][]float64
	stop   context.CancelFunc
	done   chan struct{}
}

type minuteCPU struct{ server, tool, busy float64 }

func newTimeline(ctx context.Context, pid int, start time.Time) *timeline {
	ctx, cancel := context.WithCancel(ctx)
	t := &timeline{start: start, pid: pid, stop: cancel, done: make(chan struct{})}
	probed := make(chan struct{})
	go t.probe(ctx, probed)
	go func() {
		t.sample(ctx)
		<-probed
		close(t.done)
	}()
	return t
}

// probe runs speedProbe once a second on a thread of its own until ctx
// ends (~2 ms of CPU a second: 0.1 % of the machine).
func (t *timeline) probe(ctx context.Context, done chan<- struct{}) {
	defer close(done)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			v, ok := speedProbe()
			if !ok {
				continue
			}
			m := t.minuteOf(now)
			t.mu.Lock()
			t.speeds = upTo(t.speeds, m)
			t.speeds[m] = append(t.speeds[m], v)
			t.mu.Unlock()
		}
	}
}

// probeSink keeps the probe's loop from being optimized away.
var probeSink uint64

// speedProbe runs a fixed chain of dependent multiplications and returns
// its rate in iterations per nanosecond of this thread's CPU time (the
// caller locks the thread).
func speedProbe() (float64, bool) {
	t0, ok := threadCPU()
	if !ok {
		return 0, false
	}
	x := uint64(88172645463325252)
	const n = 1 << 20
	for range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		x *= 0x9E3779B97F4A7C15
	}
	probeSink += x
	t1, ok := threadCPU()
	if !ok || t1 <= t0 {
		return 0, false
	}
	return float64(n) / float64(t1-t0), true
}

// threadCPU is the calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
func threadCPU() (time.Duration, bool) {
	var ts syscall.Timespec
	const clockThreadCPUTimeID = 3
	if _, _, e := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTimeID, uintptr(unsafe.Pointer(&ts)), 0); e != 0 {
		return 0, false
	}
	return time.Duration(ts.Nano()), true
}

// add records a poll due at due that took d (or failed).
func (t *timeline) add(due time.Time, d time.Duration, failed bool) {
	m := t.minuteOf(due)
	t.mu.Lock()
	t.lat, t.errs = upTo(t.lat, m), upTo(t.errs, m)
	if failed {
		t.errs[m]++
	} else {
		t.lat[m] = append(t.lat[m], d)
	}
	t.mu.Unlock()
}

// minuteOf is the phase's minute (0-based) that at falls in.
func (t *timeline) minuteOf(at time.Time) int {
	return max(0, int(at.Sub(t.start)/time.Minute))
}

// upTo extends s with zero values so that s[i] exists.
func upTo[T any](s []T, i int) []T {
	if n := i + 1 - len(s); n > 0 {
		s = append(s, make([]T, n)...)
	}
	return s
}

// sample reads the CPU of both processes and of the machine at every
// minute's end, until ctx ends.
func (t *timeline) sample(ctx context.Context) {
	srv, self := cpuTime(t.pid), selfCPU()
	busy, total := machineCPU()
	for m := 1; ; m++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(t.start.Add(time.Duration(m) * time.Minute))):
		}
		s2, self2 := cpuTime(t.pid), selfCPU()
		b2, tot2 := machineCPU()
		c := minuteCPU{server: (s2 - srv).Seconds() / 60, tool: (self2 - self).Seconds() / 60}
		if tot2 > total {
			c.busy = float64(b2-busy) / float64(tot2-total)
		}
		t.mu.Lock()
		t.cpu = append(t.cpu, c)
		t.mu.Unlock()
		srv, self, busy, total = s2, self2, b2, tot2
	}
}

// minutes ends the sampling and summarizes each whole minute (a last
// partial one is left out).
func (t *timeline) minutes(slo time.Duration) []Minute {
	t.stop()
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	return summarizeMinutes(t.lat, t.errs, t.cpu, t.speeds, slo)
}

// summarizeMinutes is one Minute per sampled minute: lat and errs are the
// polls by minute, cpu the samples at each minute's end, speeds the
// probes' results by minute.
func summarizeMinutes(lat [][]time.Duration, errs []int, cpu []minuteCPU, speeds [][]float64, slo time.Duration) []Minute {
	var out []Minute
	medians := make([]float64, len(cpu))
	fastest := 0.0
	for i := range cpu {
		if i < len(speeds) && len(speeds[i]) > 0 {
			v := slices.Clone(speeds[i])
			slices.Sort(v)
			medians[i] = v[len(v)/2]
			fastest = max(fastest, medians[i])
		}
	}
	for i, c := range cpu {
		m := Minute{Minute: i + 1, ServerCPU: c.server, ToolCPU: c.tool, Busy: c.busy}
		if fastest > 0 {
			m.Speed, m.ProbeRate = medians[i]/fastest, medians[i]
		}
		if i < len(lat) {
			d := lat[i]
			slices.Sort(d)
			m.Polls, m.Errors = len(d), errs[i]
			m.P99MS, m.MaxMS = ms(pct(d, 0.99)), ms(pct(d, 1))
			m.Slow = len(d) - sort.Search(len(d), func(j int) bool { return d[j] > slo })
		}
		out = append(out, m)
	}
	return out
}

// machineCPU is the machine's busy and total CPU ticks from /proc/stat
// (idle and iowait are not busy; steal, where reported, is).
func machineCPU() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		total += v[i]
	}
	return total - v[3] - v[4], total
}

// printMinutes writes a phase's minutes as a table.
func printMinutes(w io.Writer, label string, ms []Minute) {
	fmt.Fprintf(w, "\n%sby minute (polls by due time; CPU in cores of the minute):\n", label)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "minute\tpolls\terrors\tover SLO\tp99 ms\tmax ms\tserver CPU\ttool CPU\tmachine busy\tCPU speed\t")
	for _, m := range ms {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.2f\t%.2f\t%.0f %%\t%.0f %%\t\n",
			m.Minute, m.Polls, m.Errors, m.Slow, m.P99MS, m.MaxMS, m.ServerCPU, m.ToolCPU, 100*m.Busy, 100*m.Speed)
	}
	tw.Flush()
}
