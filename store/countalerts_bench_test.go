package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// BenchmarkCountAlerts is one /metrics scrape's alert count over 100,000
// schedules, a tenth of them still armed (most alerts of a big node have
// gone out): its cost should follow the armed rows, not the table.
func BenchmarkCountAlerts(b *testing.B) {
	const n, armedEvery = 100_000, 10
	benchBackends(b, func(b *testing.B, be backend) {
		s := openBench(b, be)
		due := store.When{Time: time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)}
		for start := 0; start < n; start += 5000 {
			if err := s.Update(b.Context(), func(tx store.Tx) error {
				for i := start; i < start+5000; i++ {
					a := &store.Alert{User: fmt.Sprintf("user%06d", i/10), Source: "src", TaskID: fmt.Sprintf("T-%d", i),
						Due: due, Covered: due.Time.Add(-time.Hour)}
					if i%armedEvery == 0 {
						a.AlertAt, a.FireAt = due.Time, due.Time
					}
					if _, err := tx.ArmPlannedAlert(a); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		b.ResetTimer()
		for b.Loop() {
			var total, armed int64
			if err := s.View(b.Context(), func(tx store.Tx) (err error) {
				total, armed, err = tx.CountAlerts()
				return err
			}); err != nil {
				b.Fatal(err)
			}
			if total != n || armed != n/armedEvery {
				b.Fatalf("counted %d and %d armed, want %d and %d", total, armed, n, n/armedEvery)
			}
		}
	})
}
