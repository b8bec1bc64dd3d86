package store_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// crashChildEnv makes the test binary a writer that is killed mid-run
// (crashWriter) instead of running tests.
const crashChildEnv = "DUEBRIDGE_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		if err := crashWriter(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashWriter opens the store in dir and adds total device passwords (as
// /setup does for each new phone), with a task of taskBytes each if set,
// in transactions of batch, back to back, while two readers poll as phones
// do; it prints "committed N" after each commit returns (the
// acknowledgement) and, after total, waits to be killed.
func crashWriter(dir string) error {
	total, _ := strconv.Atoi(os.Getenv(crashChildEnv + "_TOTAL"))
	batch, _ := strconv.Atoi(os.Getenv(crashChildEnv + "_BATCH"))
	taskBytes, _ := strconv.Atoi(os.Getenv(crashChildEnv + "_TASK_BYTES"))
	desc := strings.Repeat("d", taskBytes)
	var o store.Options
	if os.Getenv(crashChildEnv+"_NO_RESTART") != "" {
		o.WALRestartBytes = math.MaxInt64 // the WAL as it grew before the restart existed
	}
	ctx := context.Background()
	s, err := store.Open(ctx, store.SQLite, dir, o)
	if err != nil {
		return err
	}
	for range 2 {
		go func() {
			for i := 0; ; i++ {
				_ = s.Read(ctx, func(tx store.Tx) error {
					_, err := tx.DevicePassword(crashDeviceID(i % max(1, total)))
					return err
				})
			}
		}()
	}
	out := bufio.NewWriter(os.Stdout)
	for n := 0; n < total; {
		err := s.Update(ctx, func(tx store.Tx) error {
			for i := n; i < min(n+batch, total); i++ {
				if err := tx.AddDevicePassword(crashDevice(i)); err != nil {
					return err
				}
				if taskBytes > 0 {
					// A task with a description, under a key that scatters
					// the rows over the table's pages as real IDs do.
					task := sampleTask(fmt.Sprintf("%x", sha256.Sum256([]byte(crashDeviceID(i))))[:16])
					task.Description = desc
					if err := tx.PutTask(&task); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		n = min(n+batch, total)
		fmt.Fprintf(out, "committed %d\n", n)
		out.Flush()
	}
	select {}
}

func crashDeviceID(i int) string { return fmt.Sprintf("dev%07d", i) }

func crashDevice(i int) *store.DevicePassword {
	h := sha256.Sum256([]byte(crashDeviceID(i)))
	return &store.DevicePassword{ID: crashDeviceID(i), User: fmt.Sprintf("user%d", i),
		Name: "iPhone", Hash: h[:], Created: time.Unix(1_700_000_000, 0)}
}

// killedWriter runs crashWriter in a child process on dir (env: more of
// its settings), kills it with SIGKILL settle after it has acknowledged
// killAfter device passwords, and returns how many were acknowledged.
func killedWriter(t testing.TB, dir string, total, batch, taskBytes, killAfter int, settle time.Duration, env ...string) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+dir,
		crashChildEnv+"_TOTAL="+strconv.Itoa(total), crashChildEnv+"_BATCH="+strconv.Itoa(batch),
		crashChildEnv+"_TASK_BYTES="+strconv.Itoa(taskBytes))
	cmd.Env = append(cmd.Env, env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	sc := bufio.NewScanner(stdout)
	for acked < killAfter && sc.Scan() {
		n, err := strconv.Atoi(strings.TrimPrefix(sc.Text(), "committed "))
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked = n
	}
	time.Sleep(settle)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if acked < killAfter {
		t.Fatalf("the writer stopped after %d of %d device passwords", acked, killAfter)
	}
	return acked
}

// TestRestartAfterKill: after a writer is killed with SIGKILL, Open
// copies the WAL it left into the database file before handing out the
// store, so the first commit starts the WAL over and the first checkpoint
// while serving has nothing to copy again (SQLite's recovery marks no
// frame of a recovered WAL as copied); and every acknowledged commit is
// there, each whole or not at all.
func TestRestartAfterKill(t *testing.T) {
	const total, batch, taskBytes = 3000, 20, 2000
	for _, tc := range []struct {
		name      string
		killAfter int
		settle    time.Duration
	}{
		// All written and checkpointed, then killed while idle: the WAL
		// holds nothing new, only what recovery will call uncopied.
		{"idle", total, 500 * time.Millisecond},
		// Killed while writing.
		{"writing", total / 2, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			acked := killedWriter(t, dir, total, batch, taskBytes, tc.killAfter, tc.settle)
			wal := filepath.Join(dir, "duebridge.db-wal")
			fi, err := os.Stat(wal)
			if err != nil || fi.Size() == 0 {
				t.Fatalf("the killed writer left no WAL (%v): nothing to test", err)
			}
			s, err := store.Open(t.Context(), store.SQLite, dir, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var rows []store.DevicePassword
			if err := s.View(t.Context(), func(tx store.Tx) error {
				rows, err = tx.DevicePasswords("")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			// Commits are in order: what survives is every transaction up
			// to one at or after the last acknowledged.
			n := len(rows)
			if n < acked || (n%batch != 0 && n != total) {
				t.Fatalf("%d device passwords after the restart; %d were acknowledged in transactions of %d", n, acked, batch)
			}
			have := map[string]bool{}
			for _, r := range rows {
				have[r.ID] = true
			}
			for i := range n {
				if !have[crashDeviceID(i)] {
					t.Fatalf("device password %d of %d is missing", i, n)
				}
			}
			err = s.Update(t.Context(), func(tx store.Tx) error { return tx.AddDevicePassword(crashDevice(total)) })
			if err != nil {
				t.Fatal(err)
			}
			if frames, err := store.WALFrames(s); err != nil || frames > 50 {
				t.Errorf("after Open and one commit the WAL holds %d frames (%v), want only that commit's: the WAL of the killed writer was not copied at open, so the first checkpoint while serving copies all of it again",
					frames, err)
			}
		})
	}
}
