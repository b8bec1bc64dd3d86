package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// seedDemo stores a few sample tasks the first time the demo starts, so a
// phone added to the demo has something to show.
func seedDemo(ctx context.Context, st store.Store, svc *bridge.Service) error {
	var seeded bool
	err := st.View(ctx, func(tx store.Tx) error {
		_, err := tx.Get("demo_seeded")
		seeded = err == nil
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil || seeded {
		return err
	}
	now := svc.Now().UTC()
	day := func(d int) time.Time {
		y, m, dd := now.AddDate(0, 0, d).Date()
		return time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)
	}
	tasks := []bridge.TaskInput{
		{ID: "DEMO-1", Title: "Ship release 2.1", Project: "Release", Assignees: []string{"alice"},
			Due: store.When{Time: now.Add(26 * time.Hour).Truncate(time.Hour)}, Priority: "high",
			Description: "Tag, build and publish the 2.1 release.", URL: "https://tracker.example.com/DEMO-1"},
		{ID: "DEMO-2", Title: "Write release notes", Project: "Release", Assignees: []string{"alice", "bob"},
			Due: store.When{Time: day(2), AllDay: true}},
		{ID: "DEMO-3", Title: "Rotate the on-call pager", Project: "Ops", Assignees: []string{"bob"},
			Due: store.When{Time: now.Add(3 * time.Hour).Truncate(time.Hour)}, Priority: "urgent"},
		{ID: "DEMO-4", Title: "Review the backup report", Project: "Ops", Assignees: []string{"alice"}},
	}
	for i := range tasks {
		tasks[i].UpdatedAt = now
		tasks[i].Version = 1
	}
	if _, err := svc.Ingest(ctx, config.DemoSource, tasks); err != nil {
		return err
	}
	return st.Update(ctx, func(tx store.Tx) error {
		return tx.Set("demo_seeded", fmt.Sprint(now.Unix()))
	})
}
