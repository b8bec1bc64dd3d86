package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/store"
)

func putTestTask(ctx context.Context, st store.Store, id string) error {
	return st.Update(ctx, func(tx store.Tx) error {
		return tx.PutTask(&store.Task{Source: "src", ID: id, Title: id, Status: "open", UpdatedAt: tx.Now()})
	})
}

// TestBackupWhileWriting: a backup taken while another goroutine commits
// holds every commit that returned before it began, and restores into a new
// directory as a working store.
func TestBackupWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st, err := store.Open(ctx, store.SQLite, filepath.Join(dir, "live"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()

	var committed atomic.Int64 // tasks 0..committed-1 are durable
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := putTestTask(ctx, st, fmt.Sprintf("T-%d", i)); err != nil {
				t.Error(err)
				return
			}
			committed.Store(int64(i + 1))
		}
	}()
	for committed.Load() < 50 {
		time.Sleep(time.Millisecond)
	}
	before := committed.Load()
	out := filepath.Join(dir, "backup.db")
	if err := store.Backup(ctx, store.SQLite, filepath.Join(dir, "live"), out); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("backup file: %v %v, want mode 0600", fi.Mode(), err)
	}
	if _, err := os.Stat(out + ".partial"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("partial file left behind: %v", err)
	}
	if err := store.Backup(ctx, store.SQLite, filepath.Join(dir, "live"), out); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Errorf("backup over an existing file: %v", err)
	}

	restored := filepath.Join(dir, "restored")
	if err := store.Restore(ctx, out, restored, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"duebridge.db-wal", "duebridge.db.restoring", "duebridge.db.restoring.db"} {
		if fi, err := os.Stat(filepath.Join(restored, p)); err == nil && fi.Size() > 0 {
			t.Errorf("%s left behind (%d bytes)", p, fi.Size())
		}
	}
	rs, err := store.Open(ctx, store.SQLite, restored, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var n int
	err = rs.View(ctx, func(tx store.Tx) error {
		ts, err := tx.TasksBySource("src", true)
		n = len(ts)
		seen := map[string]bool{}
		for _, tk := range ts {
			if seen[tk.ID] {
				t.Errorf("task %s twice", tk.ID)
			}
			seen[tk.ID] = true
		}
		for i := range before {
			if !seen[fmt.Sprintf("T-%d", i)] {
				t.Errorf("T-%d committed before the backup is missing", i)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if int64(n) < before {
		t.Errorf("restored %d tasks, %d were committed before the backup", n, before)
	}
	if err := putTestTask(ctx, rs, "after-restore"); err != nil {
		t.Errorf("restored store is not writable: %v", err)
	}
}

func TestRestoreRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	st, err := store.Open(ctx, store.SQLite, live, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := filepath.Join(dir, "b.db")
	if err := store.Backup(ctx, store.SQLite, live, out); err != nil {
		t.Fatal(err)
	}
	if err := store.Restore(ctx, out, live, time.Now()); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Errorf("restore over the live data dir: %v", err)
	}
	if err := putTestTask(ctx, st, "still-live"); err != nil {
		t.Errorf("live store hurt by the refused restore: %v", err)
	}
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte("not a database at all, just text"), 0o600)
	if err := store.Restore(ctx, junk, filepath.Join(dir, "new"), time.Now()); err == nil {
		t.Error("restored a file that is no database")
	}
	if _, err := os.Stat(filepath.Join(dir, "new", "duebridge.db")); err == nil {
		t.Error("a refused restore left a database behind")
	}
	if err := store.Backup(ctx, store.SQLite, filepath.Join(dir, "nothing-here"), filepath.Join(dir, "x.db")); err == nil {
		t.Error("backup of a missing database succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "nothing-here", "duebridge.db")); err == nil {
		t.Error("backup created an empty database")
	}
	if err := store.Backup(ctx, store.Postgres, "postgres://x", filepath.Join(dir, "p.db")); !errors.Is(err, store.ErrBackupPostgres) {
		t.Errorf("postgres backup: %v", err)
	}
}

// TestNewIdentity: every mailbox gets a UIDVALIDITY it never had and the
// CalDAV epoch key is gone; data and UIDNEXT stay.
func TestNewIdentity(t *testing.T) {
	for _, b := range []struct {
		name string
		be   func(t *testing.T) backend
	}{{"sqlite", func(*testing.T) backend { return sqliteBackend() }}, {"postgres", func(t *testing.T) backend { return postgresBackend(t) }}} {
		t.Run(b.name, func(t *testing.T) {
			be := b.be(t)
			ctx := context.Background()
			now := time.Now()
			st, err := store.Open(ctx, be.dialect, be.newSource(t), store.Options{Clock: clock.System(func() time.Time { return now })})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var old *store.Mailbox
			err = st.Update(ctx, func(tx store.Tx) error {
				if err := tx.Set("caldav_sync_epoch", "abc"); err != nil {
					return err
				}
				if old, err = tx.EnsureMailbox("alice", "INBOX", ""); err != nil {
					return err
				}
				return tx.AppendMessage(&store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: x\r\n\r\nx")})
			})
			if err != nil {
				t.Fatal(err)
			}
			// Restored the same second the mailbox was made: still a new value.
			if err := store.NewIdentity(ctx, st, now); err != nil {
				t.Fatal(err)
			}
			st.View(ctx, func(tx store.Tx) error {
				if _, err := tx.Get("caldav_sync_epoch"); !errors.Is(err, store.ErrNotFound) {
					t.Errorf("epoch kept: %v", err)
				}
				m, err := tx.Mailbox("alice", "INBOX")
				if err != nil {
					t.Fatal(err)
				}
				if m.UIDValidity <= old.UIDValidity || m.UIDNext != 2 {
					t.Errorf("after: validity %d (was %d), uidnext %d", m.UIDValidity, old.UIDValidity, m.UIDNext)
				}
				if n, _ := tx.CountMessages("alice", "INBOX"); n != 1 {
					t.Errorf("messages: %d", n)
				}
				return nil
			})
		})
	}
}
