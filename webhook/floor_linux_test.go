package webhook_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// walPagesPerIngest is what BenchmarkIngestWALPages measures for a new
// task (22.4 pages at migration 73).
const walPagesPerIngest = 22

// BenchmarkWebhookFloor is the floor under BenchmarkWebhookSingle, an
// outside measure of what a durable acknowledgement costs on this disk:
// the same client and signed requests, answered by a handler that only
// reads the body, writes as many 4 KiB pages as a new-task ingest adds to
// the WAL and syncs them before its 200. Read its p99 beside
// BenchmarkWebhookSingle's (same run, same directory): what is left between
// them is ours (statements, rendering, HTTP routing); the floor's own p99
// is the disk's.
//
// Two syncs: fsync is what modernc.org/sqlite's commit calls (its Linux
// build lacks HAVE_FDATASYNC, so SQLite's full_fsync falls back to fsync,
// which also writes the inode's new mtime); fdatasync is what SQLite calls
// when built with HAVE_FDATASYNC, as its configure script sets on Linux.
// On a file overwritten in place (a WAL after its first checkpoint) they
// measured the same here (bench/README).
func BenchmarkWebhookFloor(b *testing.B) {
	b.Run("fsync", func(b *testing.B) { benchFloor(b, (*os.File).Sync) })
	b.Run("fdatasync", func(b *testing.B) {
		benchFloor(b, func(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) })
	})
}

func benchFloor(b *testing.B, sync func(*os.File) error) {
	f, err := os.Create(filepath.Join(b.TempDir(), "floor-wal"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	// A WAL in steady state is overwritten from its start after each
	// checkpoint, not grown: give the file its size first, so each sync
	// carries the pages (and, with fsync, the new mtime), not a new size.
	const walBytes = 64 << 20
	if err := f.Truncate(walBytes); err != nil {
		b.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, walBytes), 0); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	page := make([]byte, 4096)
	var off int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for range walPagesPerIngest {
			if _, err := f.WriteAt(page, off); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			off += int64(len(page))
		}
		if off+walPagesPerIngest*4096 > walBytes {
			off = 0 // a WAL is reused from its start after a checkpoint
		}
		if err := sync(f); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"accepted":1,"ignored":0}`+"\n")
	}))
	defer srv.Close()
	benchSingles(b, srv)
}
