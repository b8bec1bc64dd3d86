package store_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// logSignal is a slog handler that sends on a channel when a record with
// one message is logged.
type logSignal struct {
	msg string
	ch  chan struct{}
}

func (h logSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h logSignal) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h logSignal) WithGroup(string) slog.Handler            { return h }
func (h logSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return nil
}

// TestWALStartsOverAfterGrowth: a WAL that grew past the limit while a
// reader kept it from starting over is started over by the next commit
// once the reader is done. SQLite starts it over only when a writer
// begins after a checkpoint copied all of it, which writers that follow
// each other without a pause never do: the WAL grew without bound, and
// what it held was copied again by the first checkpoint after a crash.
func TestWALStartsOverAfterGrowth(t *testing.T) {
	defer store.SetCheckpointDelay(time.Millisecond)()
	restarted := make(chan struct{}, 1)
	s, err := store.Open(t.Context(), store.SQLite, t.TempDir(), store.Options{WALRestartBytes: 200 * 4096, // 200 frames; limits.sqlite_wal_mb
		Logger: slog.New(logSignal{msg: "store: WAL restarted", ch: restarted})})
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
	bigUpdate(t, s) // ~1,300 pages, none of which may leave the WAL while the reader reads
	if n, err := store.WALFrames(s); err != nil || n < 1000 {
		t.Fatalf("the WAL holds %d frames after the writes (%v): the test needs it long", n, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// With no commit to poke it, the checkpointer tries again until the
	// reader is gone.
	select {
	case <-restarted:
	case <-time.After(10 * time.Second):
		t.Fatal("the WAL was not started over after its reader finished")
	}
	if st := s.(interface{ WALStats() store.WALStats }).WALStats(); st.Restarts < 1 || st.Bytes < 200*4096 {
		t.Errorf("WALStats %+v, want a restart counted and the long WAL's frames seen", st)
	}
	err = s.Update(t.Context(), func(tx store.Tx) error {
		return tx.AddDevicePassword(&store.DevicePassword{ID: "d1", User: "alice", Name: "iPhone", Hash: []byte("h"), Created: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := store.WALFrames(s); err != nil || n >= 200 {
		t.Fatalf("after the next commit the WAL holds %d frames (%v), want it started over", n, err)
	}
}
