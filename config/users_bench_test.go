package config

import (
	"bytes"
	"testing"
)

// BenchmarkLoadUsers loads a config of 10,000 users (every common field
// set) and reports the cost per user; a 1,000,000-user file costs about
// 100 times this at start and on every reload.
func BenchmarkLoadUsers(b *testing.B) {
	const n = 10000
	y := bigConfig(n)
	b.SetBytes(int64(len(y)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := load("bench.yaml", bytes.NewReader(y))
		if err != nil {
			b.Fatal(err)
		}
		if len(c.Users) != n {
			b.Fatalf("%d users", len(c.Users))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/user")
}
