package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/iphone"
	"github.com/duebridge/duebridge/store"
)

// phoneWorld is a real server over TLS with users who each have 10 lists
// (5 projects × tasks and deadlines) and a device password.
type phoneWorld struct {
	*tlsWorld
	users []string
	pws   []string
	// minimal sends Prefer: return=minimal and Brief: t, as iOS does.
	minimal bool
}

func startPhones(b testing.TB, nUsers int) *phoneWorld {
	b.Helper()
	names := make([]string, nUsers)
	for i := range names {
		names[i] = fmt.Sprintf("phone%03d", i)
	}
	w := &phoneWorld{tlsWorld: startTLS(b, "", names...), users: names}
	ctx := context.Background()
	due := store.When{Time: time.Now().UTC().Add(72 * time.Hour).Truncate(time.Second)}
	var tasks []bridge.TaskInput
	for p := range 5 {
		tasks = append(tasks, bridge.TaskInput{ID: fmt.Sprintf("t%d", p), Title: fmt.Sprintf("Task %d", p),
			Project: fmt.Sprintf("Project %d", p), Assignees: names, Due: due, Status: "open", Version: 1})
	}
	if _, err := w.svc.Ingest(ctx, "tracker", tasks); err != nil {
		b.Fatal(err)
	}
	for _, u := range names {
		_, pw, err := w.svc.IssueDevicePassword(ctx, u, "iPhone")
		if err != nil {
			b.Fatal(err)
		}
		w.pws = append(w.pws, pw)
	}
	return w
}

// poll is one background poll of user i: a new TLS connection (resumed
// from tickets when it is not nil), Basic auth with the device password,
// the home PROPFIND Depth 1 with iOS's body, Connection: close. It checks
// the answer is a 207 listing the 10 lists.
func (w *phoneWorld) poll(tb testing.TB, i int, tickets tls.ClientSessionCache) {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: w.pool, ServerName: "localhost", ClientSessionCache: tickets},
	}}
	req, _ := http.NewRequest("PROPFIND", w.base+"/dav/"+w.users[i]+"/calendars/", strings.NewReader(iphone.HomeBody))
	req.Header.Set("Depth", "1")
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	if w.minimal {
		req.Header.Set("Prefer", "return=minimal")
		req.Header.Set("Brief", "t")
	}
	req.SetBasicAuth(w.users[i], w.pws[i])
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != http.StatusMultiStatus {
		tb.Fatalf("PROPFIND home: HTTP %d %s", resp.StatusCode, body)
	}
	for _, list := range phoneLists {
		if !bytes.Contains(body, []byte("/calendars/"+list+"/<")) {
			tb.Fatalf("PROPFIND home: no list %s in the answer:\n%s", list, body)
		}
	}
}

// phoneLists are the lists every phone user has.
var phoneLists = func() []string {
	var out []string
	for p := range 5 {
		out = append(out, fmt.Sprintf("project-%d-tasks", p), fmt.Sprintf("project-%d-deadlines", p))
	}
	return out
}()

// processCPU is this process's user and system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkPhonePoll is one iPhone background poll end to end, client and
// server in this process: a TLS handshake on a new connection (resumed
// from the phone's ticket, as a returning phone does, or full), Basic auth
// with a device password, the home PROPFIND Depth 1 with iOS's body.
// 64 users take turns, so per-user caches see a returning phone. cpu-ns/op
// is the CPU both sides spent per poll (client and server share the
// process, as the load tool and the server share the machine).
// resumed-minimal adds iOS's Prefer: return=minimal and Brief: t.
func BenchmarkPhonePoll(b *testing.B) {
	w := startPhones(b, 64)
	for _, name := range []string{"resumed", "full-handshake", "resumed-minimal"} {
		resume := name != "full-handshake"
		b.Run(name, func(b *testing.B) {
			w.minimal = name == "resumed-minimal"
			tickets := make([]tls.ClientSessionCache, len(w.users))
			for i := range tickets {
				if resume {
					tickets[i] = tls.NewLRUClientSessionCache(1)
				}
				w.poll(b, i, tickets[i]) // the phone's first poll: ticket and caches
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			n := 0
			for i := 0; b.Loop(); i++ {
				u := i % len(w.users)
				w.poll(b, u, tickets[u])
				n++
			}
			// CPU time, not wall time: other work on a shared machine
			// stretches ns/op but not the cycles a poll costs.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}
