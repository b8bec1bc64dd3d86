//go:build !unix

package webhook_test

import (
	"testing"
	"time"
)

// cpuTime is not measured here (no getrusage): cpu-us/op reads 0.
func cpuTime(*testing.B) time.Duration { return 0 }
