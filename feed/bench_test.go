package feed_test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// BenchmarkFeed measures a full fetch and a 304 revalidation of alice's
// feed with 100 and 1000 deadlines, over real HTTP on loopback.
func BenchmarkFeed(b *testing.B) {
	for _, n := range []int{100, 1000} {
		cfg := testsvc.Config(b)
		svc := testsvc.New(b, testsvc.Options{Config: cfg})
		due := time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second)
		var in []bridge.TaskInput
		for i := range n {
			in = append(in, task(fmt.Sprint(i), fmt.Sprintf("P%d", i%5), due.Add(time.Duration(i)*time.Minute), false, "alice"))
		}
		testsvc.Ingest(b, svc, in...)
		srv := newServer(b, svc)
		tok, err := svc.IssueFeedToken(b.Context(), "alice")
		if err != nil {
			b.Fatal(err)
		}
		url := srv + "/feeds/" + tok + ".ics"
		resp, err := http.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		etag := resp.Header.Get("ETag")
		b.Run(fmt.Sprintf("full/%d", n), func(b *testing.B) {
			for b.Loop() {
				fetch(b, url, "", http.StatusOK)
			}
		})
		b.Run(fmt.Sprintf("304/%d", n), func(b *testing.B) {
			for b.Loop() {
				fetch(b, url, etag, http.StatusNotModified)
			}
		})
	}
}

func fetch(b *testing.B, url, etag string, want int) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatalf("GET: %s, want %d", resp.Status, want)
	}
}
