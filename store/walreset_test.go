package store_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// TestWALTruncatedAfterGrowth: a WAL that grew past the limit while a
// reader kept it from starting over is truncated once the reader is done,
// with no further commit: otherwise it stays that long (on disk, and for
// a crash's recovery to copy again) until the next writer, or for good if
// writers keep following each other.
func TestWALTruncatedAfterGrowth(t *testing.T) {
	defer store.SetCheckpointDelay(time.Millisecond)()
	defer store.SetWALResetFrames(200)()
	dir := t.TempDir()
	s, err := store.Open(t.Context(), store.SQLite, dir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	started, release, done := make(chan struct{}), make(chan struct{}), make(chan error)
	go func() {
		done <- s.View(t.Context(), func(tx store.Tx) error {
			_, err := tx.DevicePasswords("")
			close(started)
			<-release
			return err
		})
	}()
	<-started
	bigUpdate(t, s) // ~1,300 pages, none of which the WAL may drop while the reader reads
	wal := filepath.Join(dir, "duebridge.db-wal")
	if size := fileSize(t, wal); size < 1000*4096 {
		t.Fatalf("the WAL is %d bytes after the writes: the test needs it long", size)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for fileSize(t, wal) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the WAL is still %d bytes, past the limit of 200 frames, after its reader finished", fileSize(t, wal))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Still readable and writable.
	bigUpdate(t, s)
}
