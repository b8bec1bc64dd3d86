//go:build pprof

package main

// Profiling builds only (go build -tags pprof): DUEBRIDGE_BENCH_PPROF=127.0.0.1:6060
// serves net/http/pprof on that loopback address, with block and mutex
// profiling on, so a load run can be profiled on the running server. The
// default build has none of this.

import (
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

func init() {
	addr := os.Getenv("DUEBRIDGE_BENCH_PPROF")
	if addr == "" {
		return
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		slog.Error("DUEBRIDGE_BENCH_PPROF must be a loopback host:port", "addr", addr)
		return
	}
	runtime.SetBlockProfileRate(10000) // one sample per 10 µs blocked
	runtime.SetMutexProfileFraction(10)
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			slog.Error("pprof listener", "err", err)
		}
	}()
}
