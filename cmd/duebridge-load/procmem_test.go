package main

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestTreeCPUCountsChildren checks that a child's CPU time shows in its
// parent's tree once it has exited and been reaped (cutime, cstime): a
// server that forks workers is measured whole.
func TestTreeCPUCountsChildren(t *testing.T) {
	before := treeCPU(os.Getpid())
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 400000 ]; do i=$((i+1)); done")
	if err := cmd.Run(); err != nil {
		t.Skipf("no sh to burn CPU with: %v", err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	after := treeCPU(os.Getpid())
	// Both sides are in clock ticks; allow one tick of rounding per field.
	if got := after - before; got+4*time.Second/userHZ < child {
		t.Fatalf("tree CPU grew by %v, the child alone used %v", got, child)
	}
	if child < 50*time.Millisecond {
		t.Logf("child used only %v; the check is weak on this machine", child)
	}
	if treeCPU(0) != 0 || treeCPU(-1) != 0 {
		t.Fatal("an unknown pid has CPU time")
	}
}
