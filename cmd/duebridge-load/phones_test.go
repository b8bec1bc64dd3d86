package main

import (
	"context"
	"io"
	"os"
	"strconv"
	"testing"
)

// BenchmarkPhoneClient is the load tool's side of one phone's background
// poll, pollHome as the phones mode runs it, against a server it starts:
// TLS resumed from the phone's ticket, a device password, the home
// PROPFIND Depth 1 of a user with 10 lists, the answer checked.
// tool-cpu-ns/op is this process's CPU per poll (the share of the machine
// the phones take from the server in a capacity run), server-cpu-ns/op the
// server's (from /proc, to 10 ms, so it needs a few thousand polls).
// prefer-minimal sends iOS's Prefer: return=minimal (the server leaves out
// the 404 propstats), full-answer does not.
func BenchmarkPhoneClient(b *testing.B) {
	root, err := moduleRoot()
	if err != nil {
		b.Skip(err)
	}
	ctx := context.Background()
	// DUEBRIDGE_BENCH_SERVER names a server binary to run instead of this
	// tree's, so that two versions of the load tool meet the same server.
	bin := os.Getenv("DUEBRIDGE_BENCH_SERVER")
	if bin == "" {
		if bin, err = buildServer(ctx, root, b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
	for _, minimal := range []bool{true, false} {
		name := "prefer-minimal"
		if !minimal {
			name = "full-answer"
		}
		b.Run(name, func(b *testing.B) { benchPhoneClient(b, bin, minimal) })
	}
}

// benchPhoneClient is BenchmarkPhoneClient with or without iOS's
// Prefer: return=minimal.
func benchPhoneClient(b *testing.B, bin string, minimal bool) {
	ctx := context.Background()
	o, err := parseFlags([]string{"--bin", bin, "--hash", "bcrypt-min", "--quiet", "--phones", "64", "--projects", "5",
		"--tasks", "1", "--tls", "--device-passwords", "--cold-compare=false", "--phone-rate", "64", "--duration", "1s",
		"--phone-minimal=" + strconv.FormatBool(minimal)})
	if err != nil {
		b.Fatal(err)
	}
	e, stop, err := setup(ctx, o, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	r := &phoneRun{e: e}
	r.params()
	for _, step := range []func(context.Context) error{r.seed, r.discover, r.cold} {
		if err := step(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if len(r.phones) != 64 || r.phones[0].tickets == nil {
		b.Fatalf("%d phones ready", len(r.phones))
	}
	b.ReportAllocs()
	b.ResetTimer()
	self0, srv0 := selfCPU(), cpuTime(e.pid)
	n := 0
	for b.Loop() {
		p := r.phones[n%len(r.phones)]
		if _, err := r.pollHome(ctx, p, p.tickets); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(selfCPU()-self0)/float64(n), "tool-cpu-ns/op")
	b.ReportMetric(float64(cpuTime(e.pid)-srv0)/float64(n), "server-cpu-ns/op")
}
