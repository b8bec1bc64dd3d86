package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
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
}

// timeline buckets a phase's polls by minute and samples the processes'
// CPU at each minute's end.
type timeline struct {
	start time.Time
	pid   int
	mu    sync.Mutex
	lat   [][]time.Duration
	errs  []int
	cpu   []minuteCPU
	stop  context.CancelFunc
	done  chan struct{}
}

type minuteCPU struct{ server, tool, busy float64 }

func newTimeline(ctx context.Context, pid int, start time.Time) *timeline {
	ctx, cancel := context.WithCancel(ctx)
	t := &timeline{start: start, pid: pid, stop: cancel, done: make(chan struct{})}
	go t.sample(ctx)
	return t
}

// add records a poll due at due that took d (err: it failed).
func (t *timeline) add(due time.Time, d time.Duration, failed bool) {
	m := max(0, int(due.Sub(t.start)/time.Minute))
	t.mu.Lock()
	for len(t.lat) <= m {
		t.lat = append(t.lat, nil)
		t.errs = append(t.errs, 0)
	}
	if failed {
		t.errs[m]++
	} else {
		t.lat[m] = append(t.lat[m], d)
	}
	t.mu.Unlock()
}

// sample reads the CPU of both processes and of the machine at every
// minute's end, until ctx ends.
func (t *timeline) sample(ctx context.Context) {
	defer close(t.done)
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
	return summarizeMinutes(t.lat, t.errs, t.cpu, slo)
}

// summarizeMinutes is one Minute per sampled minute: lat and errs are the
// polls by minute, cpu the samples at each minute's end.
func summarizeMinutes(lat [][]time.Duration, errs []int, cpu []minuteCPU, slo time.Duration) []Minute {
	var out []Minute
	for i, c := range cpu {
		m := Minute{Minute: i + 1, ServerCPU: c.server, ToolCPU: c.tool, Busy: c.busy}
		if i < len(lat) {
			d := lat[i]
			slices.Sort(d)
			m.Polls, m.Errors = len(d), errs[i]
			m.P99MS, m.MaxMS = ms(pct(d, 0.99)), ms(pct(d, 1))
			m.Slow = len(d) - sortSearchAbove(d, slo)
		}
		out = append(out, m)
	}
	return out
}

// sortSearchAbove is the number of sorted durations at most bound.
func sortSearchAbove(sorted []time.Duration, bound time.Duration) int {
	i, _ := slices.BinarySearchFunc(sorted, bound, func(d, b time.Duration) int {
		if d <= b {
			return -1
		}
		return 1
	})
	return i
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
	fmt.Fprintln(tw, "minute\tpolls\terrors\tover SLO\tp99 ms\tmax ms\tserver CPU\ttool CPU\tmachine busy\t")
	for _, m := range ms {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%.1f\t%.1f\t%.2f\t%.2f\t%.0f %%\t\n",
			m.Minute, m.Polls, m.Errors, m.Slow, m.P99MS, m.MaxMS, m.ServerCPU, m.ToolCPU, 100*m.Busy)
	}
	tw.Flush()
}
