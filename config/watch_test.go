package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Short timings keep the tests quick; waits are polling loops with a generous
// deadline so a slow CI machine only makes them slower, not flaky.
var testWatchOptions = WatchOptions{Debounce: 30 * time.Millisecond, Poll: 100 * time.Millisecond}

const waitDeadline = 15 * time.Second

// watchConfig is a valid config whose mail.from carries marker.
func watchConfig(marker string) string {
	return fmt.Sprintf("users:\n  - name: alice\n    password_hash: %q\nmail:\n  from: \"duebridge <%s@example.com>\"\n", aliceHash, marker)
}

func marker(c *Config) string {
	from := strings.TrimPrefix(c.Mail.From, "duebridge <")
	return strings.TrimSuffix(from, "@example.com>")
}

// recorder collects what Watch reports; callbacks run on Watch's goroutine.
type recorder struct {
	mu      sync.Mutex
	changes []*Config
	errs    []error
}

func (r *recorder) onChange(c *Config) { r.mu.Lock(); r.changes = append(r.changes, c); r.mu.Unlock() }
func (r *recorder) onError(err error)  { r.mu.Lock(); r.errs = append(r.errs, err); r.mu.Unlock() }

func (r *recorder) snapshot() ([]*Config, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Config(nil), r.changes...), append([]error(nil), r.errs...)
}

func (r *recorder) markers() []string {
	changes, _ := r.snapshot()
	var m []string
	for _, c := range changes {
		m = append(m, marker(c))
	}
	return m
}

// startWatch runs Watch on path until the test ends and returns once Watch has
// taken its initial reading, so the test's first edit cannot race it.
// done is closed when Watch returns; *werr is then its result.
func startWatch(t *testing.T, path string) (r *recorder, cancel context.CancelFunc, done <-chan struct{}, werr *error) {
	t.Helper()
	r = &recorder{}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	ctx = context.WithValue(ctx, watchReadyKey{}, func() { close(ready) })
	finished := make(chan struct{})
	werr = new(error)
	go func() {
		defer close(finished)
		*werr = Watch(ctx, path, testWatchOptions, r.onChange, r.onError)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-finished:
		case <-time.After(waitDeadline):
			t.Error("Watch did not return after cancel")
		}
	})
	select {
	case <-ready:
	case <-finished:
		t.Fatalf("Watch returned early: %v", *werr)
	case <-time.After(waitDeadline):
		t.Fatal("Watch never got ready")
	}
	return r, cancel, finished, werr
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitDeadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitForMarkers(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("onChange with %v", want), func() bool { return len(r.markers()) >= len(want) })
	if got := r.markers(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("onChange saw %v, want exactly %v", got, want)
	}
}

func noErrors(t *testing.T, r *recorder) {
	t.Helper()
	if _, errs := r.snapshot(); len(errs) != 0 {
		t.Errorf("unexpected onError: %v", errs)
	}
}

// atomicWrite replaces path the way editors do: write a temporary file in the
// same directory, then rename it over the original.
func atomicWrite(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func writeWatched(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "duebridge.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWatchAtomicRename(t *testing.T) {
	path := writeWatched(t, watchConfig("v1"))
	r, _, _, _ := startWatch(t, path)

	atomicWrite(t, path, watchConfig("v2"))
	waitForMarkers(t, r, "v2")
	changes, _ := r.snapshot()
	if c := changes[0]; c.Path != path || c.User("alice") == nil {
		t.Errorf("reloaded config: Path=%q users=%+v", c.Path, c.Users)
	}

	atomicWrite(t, path, watchConfig("v3"))
	waitForMarkers(t, r, "v2", "v3")
	noErrors(t, r)
}

func TestWatchInPlaceWrite(t *testing.T) {
	path := writeWatched(t, watchConfig("v1"))
	r, _, _, _ := startWatch(t, path)

	// os.WriteFile truncates, then writes: one onChange, with the final content.
	if err := os.WriteFile(path, []byte(watchConfig("v2")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitForMarkers(t, r, "v2")

	// A slow writer: the file stays empty for longer than the debounce. An
	// empty file would load as a valid config with no users; Watch must wait
	// for the content instead.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(5*testWatchOptions.Debounce + 2*testWatchOptions.Poll) // let the watcher see the empty file
	if _, err := f.WriteString(watchConfig("v3")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	waitForMarkers(t, r, "v2", "v3")

	changes, _ := r.snapshot()
	for _, c := range changes {
		if len(c.Users) != 1 {
			t.Errorf("onChange with a config of %d users (an empty or partial file)", len(c.Users))
		}
	}
	noErrors(t, r)
}

func TestWatchBadEdit(t *testing.T) {
	path := writeWatched(t, watchConfig("v1"))
	r, _, _, _ := startWatch(t, path)

	bad := watchConfig("bad") + "notifications:\n  lead_times: [1d]\n"
	atomicWrite(t, path, bad)
	waitFor(t, "onError", func() bool { _, errs := r.snapshot(); return len(errs) > 0 })
	_, errs := r.snapshot()
	if !strings.Contains(errs[0].Error(), "notifications.lead_times[0]") {
		t.Errorf("onError does not name the key: %v", errs[0])
	}

	// Also refused in place (syntax error this time).
	if err := os.WriteFile(path, []byte("users:\n  - name: alice\n   oops: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second onError", func() bool { _, errs := r.snapshot(); return len(errs) > 1 })

	// A good edit afterwards is the only onChange: the bad ones produced none.
	atomicWrite(t, path, watchConfig("v2"))
	waitForMarkers(t, r, "v2")
	if _, errs := r.snapshot(); len(errs) != 2 {
		t.Errorf("onError called %d times, want 2 (each bad edit once): %v", len(errs), errs)
	}
}

func TestWatchRevertToPrevious(t *testing.T) {
	// A bad edit followed by restoring the old file: the caller still holds
	// v1, and is told about it again (harmless), rather than left guessing.
	path := writeWatched(t, watchConfig("v1"))
	r, _, _, _ := startWatch(t, path)
	atomicWrite(t, path, "store: mysql\n")
	waitFor(t, "onError", func() bool { _, errs := r.snapshot(); return len(errs) == 1 })
	if _, errs := r.snapshot(); !strings.Contains(errs[0].Error(), "store") {
		t.Errorf("onError = %v", errs[0])
	}
	atomicWrite(t, path, watchConfig("v1"))
	waitForMarkers(t, r, "v1")
}

func TestWatchRemoveRecreate(t *testing.T) {
	path := writeWatched(t, watchConfig("v1"))
	r, _, _, _ := startWatch(t, path)

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	// A missing file is not an error and not a change: the caller keeps v1.
	time.Sleep(3 * testWatchOptions.Poll)
	if got := r.markers(); len(got) != 0 {
		t.Fatalf("onChange after remove: %v", got)
	}
	noErrors(t, r)

	if err := os.WriteFile(path, []byte(watchConfig("v2")), 0o600); err != nil {
		t.Fatal(err)
	}
	waitForMarkers(t, r, "v2")

	// And watching goes on after the re-create.
	atomicWrite(t, path, watchConfig("v3"))
	waitForMarkers(t, r, "v2", "v3")
	noErrors(t, r)
}

func TestWatchDirectoryRecreated(t *testing.T) {
	// Removing the directory drops the inotify watch for good; only the
	// polling backstop can see the new file.
	dir := filepath.Join(t.TempDir(), "etc")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "duebridge.yaml")
	if err := os.WriteFile(path, []byte(watchConfig("v1")), 0o600); err != nil {
		t.Fatal(err)
	}
	r, _, _, _ := startWatch(t, path)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * testWatchOptions.Poll) // let the watcher notice the directory is gone
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	atomicWrite(t, path, watchConfig("v2"))
	waitForMarkers(t, r, "v2")

	atomicWrite(t, path, watchConfig("v3"))
	waitForMarkers(t, r, "v2", "v3")
}

func TestWatchFileCreatedLater(t *testing.T) {
	path := filepath.Join(t.TempDir(), "duebridge.yaml")
	r, _, _, _ := startWatch(t, path)
	atomicWrite(t, path, watchConfig("v1"))
	waitForMarkers(t, r, "v1")
	noErrors(t, r)
}

func TestWatchUnchangedContent(t *testing.T) {
	// Saving the same bytes again (touch, :w without edits) is not a change.
	path := writeWatched(t, watchConfig("v1"))
	r, _, _, _ := startWatch(t, path)
	atomicWrite(t, path, watchConfig("v1"))
	if err := os.WriteFile(path, []byte(watchConfig("v1")), 0o600); err != nil {
		t.Fatal(err)
	}
	// A real change afterwards proves the watcher had looked at the rewrites.
	atomicWrite(t, path, watchConfig("v2"))
	waitForMarkers(t, r, "v2")
	noErrors(t, r)
}

func TestWatchIgnoresOtherFiles(t *testing.T) {
	path := writeWatched(t, watchConfig("v1"))
	r, _, _, _ := startWatch(t, path)
	other := filepath.Join(filepath.Dir(path), "other.yaml")
	for i := range 5 {
		if err := os.WriteFile(other, []byte(fmt.Sprintf("junk: %d\n", i)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	atomicWrite(t, path, watchConfig("v2"))
	waitForMarkers(t, r, "v2")
	noErrors(t, r)
}

func TestWatchCancel(t *testing.T) {
	path := writeWatched(t, watchConfig("v1"))
	_, cancel, done, werr := startWatch(t, path)
	cancel()
	select {
	case <-done:
		if *werr != nil {
			t.Errorf("Watch returned %v after cancel, want nil", *werr)
		}
	case <-time.After(waitDeadline):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestWatchCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	path := writeWatched(t, watchConfig("v1"))
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, path, WatchOptions{}, func(*Config) {}, func(error) {})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch = %v", err)
		}
	case <-time.After(waitDeadline):
		t.Fatal("Watch did not return")
	}
}

// TestWatchPollReadsOnlyChangedFiles: the backstop poll read and hashed
// the whole file every time (176 MB every 5 s for a million users); it now
// hashes when the file's size or time moved, and every fullPoll-th poll.
func TestWatchPollReadsOnlyChangedFiles(t *testing.T) {
	path := writeConfig(t, watchConfig("one"))
	var stats, hashes atomic.Int64
	statFile = func(p string) fileStat { stats.Add(1); return statOf(p) }
	hashFile = func(p string) []byte { hashes.Add(1); return fileHash(p) }
	t.Cleanup(func() { statFile, hashFile = statOf, fileHash })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Watch(ctx, path, WatchOptions{Debounce: time.Hour, Poll: time.Millisecond}, func(*Config) {}, func(error) {})
	}()
	waitFor(t, "polls", func() bool { return stats.Load() > 3*fullPoll })
	cancel()
	<-done
	polls := stats.Load() - 1 // the first stat is Watch's initial reading
	if max := 1 + polls/fullPoll; hashes.Load() > max {
		t.Errorf("%d polls of an unchanged file hashed it %d times, want at most %d", polls, hashes.Load(), max)
	}
}
