package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
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
	resp, body := w.roundTrip(tb, i, tickets)
	if resp.StatusCode != http.StatusMultiStatus {
		tb.Fatalf("PROPFIND home: HTTP %d %s", resp.StatusCode, body)
	}
	for _, list := range phoneLists {
		if !bytes.Contains(body, []byte("/calendars/"+list+"/<")) {
			tb.Fatalf("PROPFIND home: no list %s in the answer:\n%s", list, body)
		}
	}
}

// roundTrip is poll's request and its whole answer, unchecked.
func (w *phoneWorld) roundTrip(tb testing.TB, i int, tickets tls.ClientSessionCache) (*http.Response, []byte) {
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
	return resp, body
}

// staticFloor is the world's twin whose server does nothing but TLS and
// HTTP: the real server's TLS configuration (its certificate files, its
// kind of session ticket keys, its ALPN list, through the same certSource
// and tlsutil code), its listener (no TCP keep-alive) and http.Server
// settings (timeouts, header limit), with a
// handler that reads the request and answers every one with the recorded
// bytes (status, headers, body) of one real home poll (iOS's Prefer:
// return=minimal, as resumed-minimal sends). What a poll costs there is
// the floor no CalDAV server on this TLS stack can go under; the
// difference to resumed-minimal is duebridge's own work.
func (w *phoneWorld) staticFloor(tb testing.TB) *phoneWorld {
	tb.Helper()
	w.minimal = true
	resp, body := w.roundTrip(tb, 0, nil)
	if resp.StatusCode != http.StatusMultiStatus {
		tb.Fatalf("recording the home answer: HTTP %d %s", resp.StatusCode, body)
	}
	// Date and the framing are the HTTP server's to write, as duebridge's.
	hdr := resp.Header.Clone()
	hdr.Del("Date")
	hdr.Del("Content-Length")
	status, length := resp.StatusCode, resp.ContentLength
	answer := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		h := rw.Header()
		for k, v := range hdr {
			h[k] = v
		}
		if length >= 0 {
			h.Set("Content-Length", strconv.FormatInt(length, 10))
		}
		rw.WriteHeader(status)
		rw.Write(body)
	})
	log := slog.New(slog.DiscardHandler)
	certs, err := newCertSource(w.svc.Config(), log, nil)
	if err != nil {
		tb.Fatal(err)
	}
	conf := certs.TLSConfig()
	conf.NextProtos = certs.HTTPNextProtos()
	ln, err := listenHTTP(context.Background(), "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := newHTTPServer(answer, log, httpTimeouts{})
	go srv.Serve(tls.NewListener(ln, conf))
	tb.Cleanup(func() { srv.Close() })
	floor := *w.tlsWorld
	floor.running = &running{base: "https://" + ln.Addr().String(), svc: w.svc}
	return &phoneWorld{tlsWorld: &floor, users: w.users, pws: w.pws, minimal: true}
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
// static-floor is resumed-minimal against staticFloor, a server that only
// does TLS and HTTP and answers the recorded home answer: side by side,
// -bench 'PhonePoll/(resumed-minimal|static-floor)' tells how much of a
// poll's CPU is duebridge's own.
func BenchmarkPhonePoll(b *testing.B) {
	w := startPhones(b, 64)
	for _, name := range []string{"resumed", "full-handshake", "resumed-minimal", "static-floor"} {
		resume := name != "full-handshake"
		b.Run(name, func(b *testing.B) {
			w.minimal = name == "resumed-minimal"
			target := w
			if name == "static-floor" {
				target = w.staticFloor(b)
			}
			tickets := make([]tls.ClientSessionCache, len(w.users))
			for i := range tickets {
				if resume {
					tickets[i] = tls.NewLRUClientSessionCache(1)
				}
				target.poll(b, i, tickets[i]) // the phone's first poll: ticket and caches
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU()
			n := 0
			for i := 0; b.Loop(); i++ {
				u := i % len(w.users)
				target.poll(b, u, tickets[u])
				n++
			}
			// CPU time, not wall time: other work on a shared machine
			// stretches ns/op but not the cycles a poll costs.
			b.ReportMetric(float64(processCPU()-cpu0)/float64(n), "cpu-ns/op")
		})
	}
}

// TestStaticFloorAnswersTheRecording checks the floor of BenchmarkPhonePoll:
// over the real server's TLS configuration (a returning phone resumes), it
// answers a phone's poll with exactly the status, headers and body the
// real server gave.
func TestStaticFloorAnswersTheRecording(t *testing.T) {
	w := startPhones(t, 2)
	floor := w.staticFloor(t)
	// The recording is user 0's home; the floor gives it to every user.
	real, want := w.roundTrip(t, 0, nil)
	tickets := tls.NewLRUClientSessionCache(1)
	floor.poll(t, 1, tickets)
	got, body := floor.roundTrip(t, 1, tickets)
	if !bytes.Equal(body, want) || !bytes.Contains(body, []byte("/dav/"+w.users[0]+"/calendars/<")) {
		t.Errorf("floor answer (%d bytes) differs from the real one of %s (%d bytes)", len(body), w.users[0], len(want))
	}
	t.Logf("real answer: %d %v, length %d, %d bytes; floor's: %d %v, length %d", real.StatusCode, real.Header, real.ContentLength, len(want),
		got.StatusCode, got.Header, got.ContentLength)
	if got.StatusCode != real.StatusCode || got.Header.Get("Content-Type") != real.Header.Get("Content-Type") ||
		got.Header.Get("DAV") != real.Header.Get("DAV") || got.ContentLength != real.ContentLength {
		t.Errorf("floor answer %d %v (length %d), want %d %v (length %d)", got.StatusCode, got.Header, got.ContentLength,
			real.StatusCode, real.Header, real.ContentLength)
	}
	if got.TLS == nil || !got.TLS.DidResume || got.TLS.Version != tls.VersionTLS13 {
		t.Errorf("floor's second poll: TLS %+v, want TLS 1.3 resumed from the first poll's ticket", got.TLS)
	}
}
