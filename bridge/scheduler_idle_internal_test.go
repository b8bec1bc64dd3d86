package bridge

import (
	"context"
	"testing"

	"github.com/duebridge/duebridge/config"
)

// A tick runs after every task change and mostly finds nothing due. It
// opened two write transactions anyway (the fire pass and the coalesced
// mails), each taking the single writer's turn from the webhooks queued
// behind it (seen in the webhook-to-phone profile: ~200 a second). A tick
// with nothing due now only reads.
func TestIdleTickWritesNothing(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	c.Users[0].Notify = config.NotifyMail // alice's lead-time alerts are mails the scheduler writes
	s, cs := countingService(t, c.DataDir, c)
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-1", "alice")}); err != nil {
		t.Fatal(err)
	}
	next, err := s.SchedulerTick(ctx) // plans, backfills: may write
	if err != nil {
		t.Fatal(err)
	}
	if next.IsZero() {
		t.Fatal("no alert planned for a task due in two days")
	}
	before := cs.updates.Load()
	for range 3 {
		if _, err := s.SchedulerTick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := cs.updates.Load() - before; n != 0 {
		t.Errorf("3 ticks with nothing due opened %d write transactions, want 0", n)
	}
}
