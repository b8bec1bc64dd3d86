package webhook_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/webhook"
)

func benchBody(prefix string, n, version int) []byte {
	// Due three days from now, so the tasks get their alerts planned as a
	// live task does whatever the day the benchmark runs (a fixed date
	// made them overdue, and cheaper, once it passed).
	due := time.Now().Add(72 * time.Hour).UTC().Truncate(time.Hour).Format(time.RFC3339)
	tasks := make([]map[string]any, n)
	for i := range tasks {
		tasks[i] = map[string]any{
			"id": fmt.Sprintf("%s-%d", prefix, i), "title": "Benchmark task " + prefix, "project": "Bench",
			"assignees": []string{"alice"}, "due": due, "priority": "normal",
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
// (fsync) before its 200. Reports p50/p99 request latency and the process's
// CPU per request (server and client).
func BenchmarkWebhookSingle(b *testing.B) {
	srv, _ := newServer(b)
	benchSingles(b, srv)
}

// benchSingles sends b.N one-task signed requests to srv one after another
// and reports their p50 and p99 latency.
func benchSingles(b *testing.B, srv *httptest.Server) {
	client := srv.Client()
	lat := make([]time.Duration, 0, b.N)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		body := benchBody(fmt.Sprintf("S%d", i), 1, 1)
		start := time.Now()
		sendSigned(b, client, srv.URL+"/hooks/tracker", body)
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/op")
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
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
