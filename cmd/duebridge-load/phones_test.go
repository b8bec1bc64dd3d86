package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// BenchmarkPhoneClient is the load tool's side of one phone's background
// poll, pollHome as the phones mode runs it, against a server it starts:
// TLS resumed from the phone's ticket, a device password, the home
// PROPFIND Depth 1 of a user with 10 lists, the answer checked.
// tool-cpu-ns/op is this process's CPU per poll (the share of the machine
// the phones take from the server in a capacity run), server-cpu-ns/op the
// server's (from /proc, to 10 ms, so it needs a few thousand polls).
// prefer-minimal sends iOS's Prefer: return=minimal (the server leaves out
// the 404 propstats), full-answer does not.
func BenchmarkPhoneClient(b *testing.B) {
	root, err := moduleRoot()
	if err != nil {
		b.Skip(err)
	}
	ctx := context.Background()
	// DUEBRIDGE_BENCH_SERVER names a server binary to run instead of this
	// tree's, so that two versions of the load tool meet the same server.
	bin := os.Getenv("DUEBRIDGE_BENCH_SERVER")
	if bin == "" {
		if bin, err = buildServer(ctx, root, b.TempDir()); err != nil {
			b.Fatal(err)
		}
	}
	for _, minimal := range []bool{true, false} {
		name := "prefer-minimal"
		if !minimal {
			name = "full-answer"
		}
		b.Run(name, func(b *testing.B) { benchPhoneClient(b, bin, minimal, false) })
	}
	b.Run("open-loop", func(b *testing.B) { benchPhoneClient(b, bin, true, true) })
}

// benchPhoneClient is BenchmarkPhoneClient with or without iOS's
// Prefer: return=minimal. With openLoop the b.N polls are driven as the
// timed phase drives them (drivePolls, at 400/s, so it takes b.N/400 s):
// the tool's CPU per poll then includes the driver's (its schedule, the
// goroutines polls run on, the histograms, the GC of a long run).
func benchPhoneClient(b *testing.B, bin string, minimal, openLoop bool) {
	ctx := context.Background()
	o, err := parseFlags([]string{"--bin", bin, "--hash", "bcrypt-min", "--quiet", "--phones", "64", "--projects", "5",
		"--tasks", "1", "--tls", "--device-passwords", "--cold-compare=false", "--phone-rate", "64", "--duration", "1s",
		"--phone-minimal=" + strconv.FormatBool(minimal)})
	if err != nil {
		b.Fatal(err)
	}
	e, stop, err := setup(ctx, o, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	r := &phoneRun{e: e}
	r.params()
	for _, step := range []func(context.Context) error{r.seed, r.discover, r.cold} {
		if err := step(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if len(r.phones) != 64 || r.phones[0].tickets == nil {
		b.Fatalf("%d phones ready", len(r.phones))
	}
	b.ReportAllocs()
	b.ResetTimer()
	self0, srv0 := selfCPU(), cpuTime(e.pid)
	n := 0
	if openLoop {
		r.rate = 400
		poll, lag := newHist("poll"), newHist("lag")
		hs := &loadHists{propfind: newHist("propfind"), sync: newHist("sync"), multiget: newHist("multiget")}
		tl := newTimeline(ctx, e.pid, time.Now())
		_, skipped := r.drivePolls(ctx, time.Duration(float64(b.N)/r.rate*float64(time.Second)), poll, lag, hs, tl)
		tl.minutes(time.Second)
		s := poll.Summarize(time.Second)
		if s.Errors > 0 || s.Count == 0 {
			b.Fatalf("%d polls completed, %d failed", s.Count, s.Errors)
		}
		// On a busy machine polls can pile up past --max-inflight: the
		// skipped ones cost nothing, so CPU is per completed poll.
		n = int(s.Count)
		b.ReportMetric(float64(skipped), "skipped")
	}
	for !openLoop && b.Loop() {
		p := r.phones[n%len(r.phones)]
		if _, err := r.pollHome(ctx, p, p.tickets); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(selfCPU()-self0)/float64(n), "tool-cpu-ns/op")
	b.ReportMetric(float64(cpuTime(e.pid)-srv0)/float64(n), "server-cpu-ns/op")
}

// TestPhoneRequestsLikeIOS checks that without --keepalive each request
// of a phone goes out as iOS sends it: on a connection of its own, with
// Connection: close, Prefer: return=minimal and Brief: t, its TLS session
// resumed from the phone's ticket once it has one.
func TestPhoneRequestsLikeIOS(t *testing.T) {
	type seen struct {
		remote, prefer, brief string
		close, resumed        bool
	}
	var mu sync.Mutex
	var got []seen
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, seen{r.RemoteAddr, r.Header.Get("Prefer"), r.Header.Get("Brief"), r.Close, r.TLS.DidResume})
		mu.Unlock()
		w.WriteHeader(http.StatusMultiStatus)
		io.WriteString(w, `<d:multistatus xmlns:d="DAV:"/>`)
	}))
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	o, err := parseFlags([]string{"--phones", "1", "--tls"})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{o: o, base: base, users: []string{"alice"}, tr: newTransport(1)}
	e.tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	r := &phoneRun{e: e}
	p := &phone{user: 0, pw: "pw", tickets: tls.NewLRUClientSessionCache(1)}
	for range 2 {
		dc, done := r.client(p, p.tickets)
		code, _, _, err := dc.do(context.Background(), "PROPFIND", "/dav/alice/calendars/", "1", []byte(homePropfindBody))
		done()
		if err != nil || code != http.StatusMultiStatus {
			t.Fatalf("PROPFIND: %d, %v", code, err)
		}
	}
	if len(got) != 2 {
		t.Fatalf("%d requests seen, want 2", len(got))
	}
	for i, s := range got {
		if !s.close || s.prefer != "return=minimal" || s.brief != "t" {
			t.Errorf("request %d: Connection: close %v, Prefer %q, Brief %q", i, s.close, s.prefer, s.brief)
		}
	}
	if got[0].remote == got[1].remote {
		t.Errorf("both requests on one connection (%s)", got[0].remote)
	}
	if got[0].resumed || !got[1].resumed {
		t.Errorf("resumed: first %v, second %v; want false, true", got[0].resumed, got[1].resumed)
	}
}

// TestDrivePollsBoundAndCount checks the open-loop driver with its worker
// pool: every offered poll is either completed or skipped, and no more
// than --max-inflight polls reach the server at once, whatever the timing.
func TestDrivePollsBoundAndCount(t *testing.T) {
	for _, maxInflight := range []int{1, 3} {
		var mu sync.Mutex
		var now, most int
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			now++
			most = max(most, now)
			mu.Unlock()
			w.WriteHeader(http.StatusMultiStatus)
			io.WriteString(w, `<d:multistatus xmlns:d="DAV:"/>`)
			mu.Lock()
			now--
			mu.Unlock()
		}))
		base, _ := url.Parse(srv.URL)
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		o, err := parseFlags([]string{"--phones", "4", "--tls", "--max-inflight", strconv.Itoa(maxInflight)})
		if err != nil {
			t.Fatal(err)
		}
		e := &env{o: o, base: base, users: []string{"a", "b", "c", "d"}, tr: newTransport(1)}
		e.tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		r := &phoneRun{e: e, rate: 400}
		for i := range 4 {
			r.phones = append(r.phones, &phone{user: i, home: "/dav/" + e.users[i] + "/calendars/", pw: "pw",
				state: map[string]pollState{}, tickets: tls.NewLRUClientSessionCache(1)})
		}
		poll, lag := newHist("poll"), newHist("lag")
		hs := &loadHists{propfind: newHist("propfind"), sync: newHist("sync"), multiget: newHist("multiget")}
		tl := &timeline{start: time.Now()} // no CPU sampling: the polls only
		offered, skipped := r.drivePolls(context.Background(), 100*time.Millisecond, poll, lag, hs, tl)
		srv.Close()
		s := poll.Summarize(time.Second)
		if len(tl.lat) != 1 || len(tl.lat[0]) != int(s.Count) {
			t.Errorf("max-inflight %d: timeline holds %v; want the %d completed polls in minute 1", maxInflight, tl.lat, s.Count)
		}
		if offered != 40 || s.Errors != 0 || s.Count+skipped != int64(offered) || s.Count == 0 {
			t.Errorf("max-inflight %d: offered %d, completed %d, skipped %d, errors %d; want 40 offered, each completed or skipped",
				maxInflight, offered, s.Count, skipped, s.Errors)
		}
		if most > maxInflight {
			t.Errorf("max-inflight %d: %d polls at the server at once", maxInflight, most)
		}
	}
}
