package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// bigUpdate stores 600 tasks of 8 KiB each: about 1,300 WAL pages, past
// SQLite's default auto-checkpoint of 1,000 pages.
func bigUpdate(t *testing.T, s store.Store) {
	t.Helper()
	desc := strings.Repeat("x", 8<<10)
	err := s.Update(t.Context(), func(tx store.Tx) error {
		for i := range 600 {
			task := sampleTask(fmt.Sprintf("CP-%d", i))
			task.Description = desc
			if err := tx.PutTask(&task); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCommitDoesNotCheckpoint: the commit that takes the WAL past 1,000
// pages returns without copying it into the database file (SQLite's
// auto-checkpoint did, on that writer's time); the background
// checkpointer does it later.
func TestCommitDoesNotCheckpoint(t *testing.T) {
	defer store.SetCheckpointDelay(time.Hour)()
	dir := t.TempDir()
	s, err := store.Open(t.Context(), store.SQLite, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := filepath.Join(dir, "duebridge.db")
	before := fileSize(t, db)
	bigUpdate(t, s)
	if after := fileSize(t, db); after != before {
		t.Fatalf("database file grew from %d to %d bytes during the commit: it checkpointed inline", before, after)
	}
}

// TestBackgroundCheckpoint: after commits, the WAL reaches the database
// file without any writer doing it, and everything stays readable.
func TestBackgroundCheckpoint(t *testing.T) {
	defer store.SetCheckpointDelay(time.Millisecond)()
	dir := t.TempDir()
	s, err := store.Open(t.Context(), store.SQLite, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "duebridge.db")
	before := fileSize(t, db)
	bigUpdate(t, s)
	deadline := time.Now().Add(20 * time.Second)
	for fileSize(t, db) == before {
		if time.Now().After(deadline) {
			t.Fatal("the background checkpoint never copied the WAL into the database file")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
		t.Fatalf("second Close: %v", err)
	}
	s, err = store.Open(t.Context(), store.SQLite, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(t.Context(), func(tx store.Tx) error {
		task, err := tx.Task("tracker", "CP-599")
		if err == nil && len(task.Description) != 8<<10 {
			err = fmt.Errorf("description of %d bytes", len(task.Description))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
