package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchOptions tunes Watch. Zero values are fine.
type WatchOptions struct {
	// Debounce collapses the several events one save produces. Default 200ms.
	Debounce time.Duration
	// Poll re-checks the file's content this often as a backstop for lost
	// events (remove + re-create, network file systems). Default 5s.
	Poll time.Duration
}

// Watch re-reads path whenever it changes and calls onChange with a freshly
// loaded and validated *Config, or onError when the new file is refused (the
// caller keeps its old config). It returns when ctx is done.
//
// We do not use viper.WatchConfig: it re-reads into the live instance (so a
// truncated file becomes an empty config), stops for good after a remove and
// calls os.Exit when inotify is exhausted (see shared/LIBRARIES.md §5.4).
// Instead we watch the directory ourselves and call Load, which uses a new
// viper instance every time.
func Watch(ctx context.Context, path string, o WatchOptions, onChange func(*Config), onError func(error)) error {
	if o.Debounce <= 0 {
		o.Debounce = 200 * time.Millisecond
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	lastStat := statFile(abs)
	last := hashFile(abs)
	polls := 0

	var events <-chan fsnotify.Event
	var werrs <-chan error
	if w, err := fsnotify.NewWatcher(); err == nil {
		defer w.Close()
		// The directory, not the file: editors replace files by rename, and
		// Kubernetes swaps a symlink, both of which drop a watch on the file.
		if err := w.Add(filepath.Dir(abs)); err == nil {
			events, werrs = w.Events, w.Errors
		} else {
			onError(err)
		}
	} else {
		onError(err) // fall back to polling only
	}

	if ready, ok := ctx.Value(watchReadyKey{}).(func()); ok {
		ready() // tests: the initial hash is taken and the watch is armed
	}

	poll := time.NewTicker(o.Poll)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if filepath.Clean(ev.Name) == abs || filepath.Base(ev.Name) == "..data" {
				debounce.Reset(o.Debounce)
			}
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			onError(err)
		case <-poll.C:
			// Hashing a file of a million users every poll is a tenth of
			// a second of CPU and its size in garbage: hash only when the
			// file's size, time or identity moved, and every fullPoll-th
			// poll anyway (file systems with coarse or missing times).
			polls++
			st := statFile(abs)
			if st == lastStat && polls%fullPoll != 0 {
				continue
			}
			lastStat = st
			if h := hashFile(abs); !bytes.Equal(h, last) {
				debounce.Reset(o.Debounce)
			}
		case <-debounce.C:
			b, err := os.ReadFile(abs)
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				// Missing (mid-replace) or empty (mid-write: an in-place save
				// truncates first, and an empty file would load as a valid
				// config with no users). The next event or poll brings the
				// real content.
				continue
			}
			h := sum(b)
			if bytes.Equal(h, last) {
				continue // unchanged content
			}
			last = h
			// Load exactly the bytes we hashed, so last always describes
			// what the caller was told about.
			c, err := load(path, b)
			if err != nil {
				onError(err)
				continue
			}
			onChange(c)
		}
	}
}

// watchReadyKey carries a func() that Watch calls once it is watching; only
// this package's tests set it, to avoid racing the initial read.
type watchReadyKey struct{}

// statFile and hashFile are statOf and fileHash; a test counts the calls.
var statFile, hashFile = statOf, fileHash

// fullPoll: every this many polls the content is hashed whatever the
// file's metadata says.
const fullPoll = 12

// fileStat is what a poll compares before reading the file.
type fileStat struct {
	size    int64
	modTime int64 // UnixNano
}

func statOf(path string) fileStat {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStat{size: -1}
	}
	return fileStat{size: fi.Size(), modTime: fi.ModTime().UnixNano()}
}

func fileHash(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return sum(b)
}

func sum(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:]
}

// RestartRequired lists the keys that differ between old and new but only take
// effect on restart (listeners, store), so a reload can report them. The
// keys are those declared Restart in the key table.
func RestartRequired(old, new *Config) []string {
	var out []string
	for _, k := range keys {
		if k.Restart && !reflect.DeepEqual(k.Value(old), k.Value(new)) {
			out = append(out, k.Name)
		}
	}
	return out
}

// KeepRestartKeys returns c with the keys RestartRequired lists set back to
// the running values, so the swapped-in config matches what actually runs.
// The two functions name the same keys; TestKeepRestartKeys ties them.
func KeepRestartKeys(running, c *Config) *Config {
	cp := *c
	cp.DataDir, cp.Store, cp.PostgresURL, cp.Instance = running.DataDir, running.Store, running.PostgresURL, running.Instance
	cp.HTTP.Listen, cp.IMAP, cp.Submission = running.HTTP.Listen, running.IMAP, running.Submission // incl. proxy_protocol
	cp.TLS.CertFile, cp.TLS.KeyFile = running.TLS.CertFile, running.TLS.KeyFile
	cp.TLS.ACMEHosts, cp.TLS.ACMEEmail = running.TLS.ACMEHosts, running.TLS.ACMEEmail
	cp.Limits.ConnsPerAddress = running.Limits.ConnsPerAddress // the listeners' wrappers took it at start
	return &cp
}
