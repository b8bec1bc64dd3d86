package main

import (
	"runtime"
	"testing"
	"time"
)

// TestSummarizeMinutes checks the by-minute table: polls counted in the
// minute they were due, p99 and max of that minute only, the polls over
// the SLO bound, the CPU speed as a share of the fastest minute's, and a
// minute whose CPU was not sampled yet left out.
func TestSummarizeMinutes(t *testing.T) {
	var calm, slow []time.Duration
	for i := range 100 {
		calm = append(calm, time.Duration(i+1)*time.Millisecond)    // 1..100 ms
		slow = append(slow, time.Duration(i+1)*30*time.Millisecond) // 30 ms..3 s
	}
	lat := [][]time.Duration{calm, slow, {time.Millisecond}}
	errs := []int{0, 2, 0}
	cpu := []minuteCPU{{server: 0.8, tool: 0.7, busy: 0.9}, {server: 0.9, tool: 1.1, busy: 1}}
	speeds := [][]float64{{2, 4, 3}, {6}, {9}} // medians 3 and 6; the third minute is not sampled
	got := summarizeMinutes(lat, errs, cpu, speeds, time.Second)
	if len(got) != 2 {
		t.Fatalf("%d minutes, want 2 (the third was not sampled): %+v", len(got), got)
	}
	want := []Minute{
		{Minute: 1, Polls: 100, P99MS: 99, MaxMS: 100, ServerCPU: 0.8, ToolCPU: 0.7, Busy: 0.9, Speed: 0.5, ProbeRate: 3},
		{Minute: 2, Polls: 100, Errors: 2, P99MS: 2970, MaxMS: 3000, Slow: 67, ServerCPU: 0.9, ToolCPU: 1.1, Busy: 1, Speed: 1, ProbeRate: 6},
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("minute %d: got %+v, want %+v", i+1, got[i], want[i])
		}
	}
}

// TestTimelineBucketsByDueTime checks that a poll is put in the minute it
// was due, not the one it finished in, and a failed one counted apart.
func TestTimelineBucketsByDueTime(t *testing.T) {
	start := time.Now()
	tl := &timeline{start: start}
	tl.add(start.Add(59*time.Second), 5*time.Second, false) // due in minute 1, ends in 2
	tl.add(start.Add(61*time.Second), time.Millisecond, false)
	tl.add(start.Add(62*time.Second), 0, true)
	if len(tl.lat) != 2 || len(tl.lat[0]) != 1 || len(tl.lat[1]) != 1 || tl.errs[1] != 1 || tl.errs[0] != 0 {
		t.Fatalf("buckets %v, errors %v", tl.lat, tl.errs)
	}
}

// TestSpeedProbe checks that the probe reads this thread's CPU time and
// reports a rate: a machine's loop of a million steps takes well under a
// second and more than a microsecond of CPU.
func TestSpeedProbe(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	v, ok := speedProbe()
	if !ok || v <= 0 || v > 1<<20/1e3 {
		t.Fatalf("speedProbe = %v, %v; want a rate of steps per CPU-nanosecond", v, ok)
	}
}

// TestCPUProfileFlagIsPhonesOnly checks that --cpuprofile, which covers a
// phones timed phase, is refused where it would profile nothing.
func TestCPUProfileFlagIsPhonesOnly(t *testing.T) {
	if _, err := parseFlags([]string{"--cpuprofile", "/tmp/x.prof", "--duration", "1s"}); err == nil {
		t.Error("--cpuprofile accepted in load mode")
	}
	if _, err := parseFlags([]string{"--cpuprofile", "/tmp/x.prof", "--phones", "4"}); err != nil {
		t.Errorf("--cpuprofile refused in phones mode: %v", err)
	}
}
