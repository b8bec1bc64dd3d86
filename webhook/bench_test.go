package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/webhook"
)

func benchBody(prefix string, n, version int) []byte {
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{
			"id": fmt.Sprintf("%s-%d", prefix, i), "title": "Benchmark task " + prefix, "project": "Bench",
			"assignees": []string{"alice"}, "due": "2026-12-01T17:00:00Z", "priority": "normal",
			"description": "A task record of realistic size with a description and a link.",
			"url":         "https://tracker.example.com/" + prefix, "version": version,
		}
	}
	if n == 1 {
		b, _ := json.Marshal(tasks[0])
		return b
	}
	b, _ := json.Marshal(tasks)
	return b
}

func sendSigned(b *testing.B, client *http.Client, url string, body []byte) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(testsvc.Secret, body))
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("status %d", resp.StatusCode)
	}
}

// BenchmarkWebhookSingle: one new task per signed request, each durable
// (fsync) before its 200. Reports p50/p99 request latency.
func BenchmarkWebhookSingle(b *testing.B) {
	srv, _ := newServer(b)
	client := srv.Client()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := benchBody(fmt.Sprintf("S%d", i), 1, 1)
		start := time.Now()
		sendSigned(b, client, srv.URL+"/hooks/tracker", body)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// walPagesPerIngest is what BenchmarkIngestWALPages measures for a new
// task (22.4 pages at migration 73).
const walPagesPerIngest = 22

// BenchmarkWebhookFloor is the floor under BenchmarkWebhookSingle, an
// outside measure of what a durable acknowledgement costs on this disk:
// the same client and signed requests, answered by a handler that only
// reads the body, writes as many 4 KiB pages as a new-task ingest adds to
// the WAL and fsyncs them before its 200, as SQLite's commit does. Read its
// p99 beside BenchmarkWebhookSingle's (same run, same directory): what is
// left between them is ours (statements, rendering, HTTP routing); the
// floor's own p99 is the disk's fsync.
func BenchmarkWebhookFloor(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "floor-wal"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
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
		if off > 64<<20 {
			off = 0 // a WAL is reused from its start after a checkpoint
		}
		if err := f.Sync(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"accepted":1,"ignored":0}`+"\n")
	}))
	defer srv.Close()
	client := srv.Client()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := benchBody(fmt.Sprintf("S%d", i), 1, 1)
		start := time.Now()
		sendSigned(b, client, srv.URL+"/hooks/tracker", body)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkWebhookBatch100: 100 new tasks per request, one transaction each.
func BenchmarkWebhookBatch100(b *testing.B) { benchBatch(b, 100) }

// BenchmarkWebhookBatch1000: the contract's largest "one transaction" case.
func BenchmarkWebhookBatch1000(b *testing.B) { benchBatch(b, 1000) }

func benchBatch(b *testing.B, n int) {
	srv, _ := newServer(b)
	client := srv.Client()
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i] = benchBody(fmt.Sprintf("B%d", i), n, 1)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		sendSigned(b, client, srv.URL+"/hooks/tracker", bodies[i])
	}
	b.ReportMetric(float64(b.N*n)/time.Since(start).Seconds(), "tasks/s")
}
