package imapserver_test

// Benchmarks:
//
//	go test -run '^$' -bench . -benchtime 200x ./imapserver/
//
// BenchmarkPushLatency: from svc.Ingest returning (the webhook's commit is
// durable and acknowledged) to "* n EXISTS" read by idling clients, with one
// idling connection (also on an INBOX of 10,000 mails), 1,000 connections
// idling on the same INBOX (every one
// must be told), and 1,000 connections of other users idling while one
// mailbox changes. Reports p50/p99 in ms over every (event, receiving
// connection) pair; p99-ingest-ms counts from the call to Ingest instead
// (commit and fsync included).
//
// BenchmarkIdleConnMemory (run it with -benchtime 1x): live heap + stack
// growth per idling connection (client sockets hold no goroutine or buffer,
// so the figure is the server's), and the same with the heap's partly used
// spans.
//
// BenchmarkFetchHeaders10k: UID FETCH 1:* (UID FLAGS ENVELOPE
// BODY.PEEK[HEADER.FIELDS (...)]) over 10,000 messages, read raw (no client
// parsing), with the parsed-header cache cold and warm.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// benchConfig has alice plus n extra users ("u0"...), limits off.
func benchConfig(b *testing.B, extra int) *config.Config {
	cfg := testsvc.Config(b)
	cfg.Limits.IMAPConnsPerUser = 0
	cfg.Limits.LoginFailureDelay = 0
	if extra > 0 {
		h, err := bcrypt.GenerateFromPassword([]byte("u-pw"), bcrypt.MinCost)
		if err != nil {
			b.Fatal(err)
		}
		for i := range extra {
			cfg.Users = append(cfg.Users, config.User{Name: fmt.Sprint("u", i), Email: fmt.Sprintf("u%d@example.com", i),
				PasswordHash: string(h), Notify: config.NotifyAlarms, Location: time.UTC})
		}
	}
	return cfg
}

// idleConn logs in on a raw connection, selects INBOX and enters IDLE.
func idleConn(b *testing.B, addr, user, pw string) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	r := bufio.NewReaderSize(c, 512)
	fmt.Fprintf(c, "1 LOGIN %s %s\r\n2 SELECT INBOX\r\n3 IDLE\r\n", user, pw)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			b.Fatalf("%s: %v", user, err)
		}
		if strings.HasPrefix(l, "+ idling") {
			return c, r
		}
		if strings.HasPrefix(l, "1 NO") || strings.HasPrefix(l, "2 NO") {
			b.Fatalf("%s: %s", user, l)
		}
	}
}

type arrival struct {
	n uint32
	t time.Time
}

func BenchmarkPushLatency(b *testing.B) {
	for _, bc := range []struct {
		name        string
		same, other int // idling on alice's INBOX; idling on other users' INBOXes
		prefill     int // messages already in alice's INBOX
	}{
		{"idle=1", 1, 0, 0},
		{"idle=1/inbox=10000", 1, 0, 10000},
		{"idle=20/same-mailbox", 20, 0, 0}, // limits.imap_conns_per_user's default
		{"idle=1000/same-mailbox", 1000, 0, 0},
		{"idle=1000/other-users", 1, 999, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			svc := testsvc.New(b, testsvc.Options{Config: benchConfig(b, bc.other)})
			fillInbox(b, svc, bc.prefill)
			ts := serve(b, svc, Options{})
			arrivals := make(chan arrival, bc.same*4)
			var conns []net.Conn
			for range bc.same {
				c, r := idleConn(b, ts.addr, "alice", "alice-pw")
				conns = append(conns, c)
				go func() {
					for {
						l, err := r.ReadSlice('\n')
						if err != nil {
							return
						}
						now := time.Now()
						if f := strings.Fields(string(l)); len(f) == 3 && f[2] == "EXISTS" {
							n, _ := strconv.Atoi(f[1])
							arrivals <- arrival{uint32(n), now}
						}
					}
				}()
			}
			for i := range bc.other {
				c, _ := idleConn(b, ts.addr, fmt.Sprint("u", i), "u-pw")
				conns = append(conns, c)
			}
			b.Cleanup(func() {
				for _, c := range conns {
					c.Close()
				}
			})
			var fromReturn, fromStart []float64
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if _, err := svc.Ingest(context.Background(), "tracker", []bridge.TaskInput{task(fmt.Sprint("B-", i), "Bench", "alice")}); err != nil {
					b.Fatal(err)
				}
				returned := time.Now()
				for range bc.same {
					select {
					case a := <-arrivals:
						if a.n != uint32(bc.prefill+i+1) {
							b.Fatalf("EXISTS %d, want %d", a.n, bc.prefill+i+1)
						}
						fromReturn = append(fromReturn, max(0, a.t.Sub(returned).Seconds()*1000))
						fromStart = append(fromStart, a.t.Sub(start).Seconds()*1000)
					case <-time.After(10 * time.Second):
						b.Fatal("EXISTS not received")
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(percentile(fromReturn, 50), "p50-ms")
			b.ReportMetric(percentile(fromReturn, 99), "p99-ms")
			b.ReportMetric(percentile(fromStart, 99), "p99-ingest-ms")
		})
	}
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 1000
	svc := testsvc.New(b, testsvc.Options{Config: benchConfig(b, 0)})
	testsvc.Ingest(b, svc, task("T-1", "One", "alice"))
	ts := serve(b, svc, Options{})
	// Warm up: the first login hashes the password; later ones hit the cache.
	c0, _ := idleConn(b, ts.addr, "alice", "alice-pw")
	defer c0.Close()
	b.ResetTimer()
	for range b.N {
		live0, stacks0, inuse0 := memNow()
		conns := make([]net.Conn, 0, n)
		for range n {
			c, _ := idleConn(b, ts.addr, "alice", "alice-pw")
			conns = append(conns, c) // the reader is dropped: nothing client-side but the socket
		}
		time.Sleep(100 * time.Millisecond) // let the server settle into IDLE everywhere
		live1, stacks1, inuse1 := memNow()
		// Live heap (what the GC found reachable) plus goroutine stacks;
		// heap-inuse adds the allocator's partly used spans.
		b.ReportMetric((live1+stacks1-live0-stacks0)/n, "B/idle-conn")
		b.ReportMetric((stacks1-stacks0)/n, "stack-B/idle-conn")
		b.ReportMetric((inuse1+stacks1-inuse0-stacks0)/n, "inuse-B/idle-conn")
		for _, c := range conns {
			c.Close()
		}
	}
}

// memNow returns the live heap, the goroutine stacks and the heap in use
// (spans with any object), after a GC.
func memNow() (live, stacks, inuse float64) {
	runtime.GC()
	s := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	rtmetrics.Read(s)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(s[0].Value.Uint64()), float64(s[1].Value.Uint64()), float64(ms.HeapInuse)
}

// fillInbox stores n real notification mails in alice's INBOX directly
// (ingesting n tasks would benchmark the webhook path instead).
func fillInbox(b *testing.B, svc *bridge.Service, n int) {
	b.Helper()
	u := svc.Config().User("alice")
	err := testsvc.Store(b, svc).Update(context.Background(), func(tx store.Tx) error {
		if _, err := tx.EnsureMailbox("alice", Inbox, ""); err != nil {
			return err
		}
		for i := range n {
			t := &store.Task{Source: "tracker", ID: fmt.Sprint("H-", i), Title: fmt.Sprint("Task number ", i),
				Status: "open", Priority: "normal", URL: "https://tracker.example.com/H"}
			data, err := render.NotificationMail(render.MailInput{Event: render.MailAssigned, Task: t, User: u,
				From: "duebridge <tasks@example.com>", Host: "duebridge.test", Date: time.Now(), Seq: int64(i + 1)})
			if err != nil {
				return err
			}
			if err := tx.AppendMessage(&store.Message{User: "alice", Mailbox: Inbox, Data: data, Source: "tracker", TaskID: t.ID}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func BenchmarkFetchHeaders10k(b *testing.B) {
	const n = 10000
	svc := testsvc.New(b, testsvc.Options{Config: benchConfig(b, 0)})
	fillInbox(b, svc, n)
	for _, bc := range []struct {
		name  string
		cache int
	}{{"cold", -1}, {"warm", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			ts := serve(b, svc, Options{CacheBytes: bc.cache})
			c, err := net.Dial("tcp", ts.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReaderSize(c, 64<<10)
			fetch := func(tag string) int {
				fmt.Fprintf(c, "%s UID FETCH 1:* (UID FLAGS ENVELOPE BODY.PEEK[HEADER.FIELDS (DATE SUBJECT FROM TO MESSAGE-ID IN-REPLY-TO REFERENCES CONTENT-TYPE X-PRIORITY)])\r\n", tag)
				msgs := 0
				for {
					l, err := r.ReadSlice('\n')
					if err != nil && err != bufio.ErrBufferFull {
						b.Fatal(err)
					}
					if len(l) > 2 && l[0] == '*' && strings.Contains(string(l[:min(len(l), 32)]), " FETCH ") {
						msgs++
					}
					if strings.HasPrefix(string(l), tag+" ") {
						if !strings.HasPrefix(string(l), tag+" OK") {
							b.Fatalf("%s", l)
						}
						return msgs
					}
				}
			}
			fmt.Fprintf(c, "a LOGIN alice alice-pw\r\nb SELECT INBOX\r\n")
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					b.Fatal(err)
				}
				if strings.HasPrefix(l, "b OK") {
					break
				}
			}
			if bc.name == "warm" {
				fetch("w")
			}
			b.ResetTimer()
			for i := range b.N {
				if got := fetch(fmt.Sprint("f", i)); got != n {
					b.Fatalf("%d FETCH responses, want %d", got, n)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/n, "µs/msg")
		})
	}
}
