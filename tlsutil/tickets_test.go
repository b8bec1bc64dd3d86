package tlsutil_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/tlsutil"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// ticketServer serves TLS with cfg on 127.0.0.1:0, writing one byte per
// connection (so that a TLS 1.3 client reads its ticket).
func ticketServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.Write([]byte{1})
				c.Read(make([]byte, 1))
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects, reads the byte and reports whether the session resumed.
func dial(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	return c.ConnectionState().DidResume
}

func ticketWorld(t *testing.T) (*x509.CertPool, *tls.Config) {
	t.Helper()
	res, err := tlsutil.DevCert([]string{"tasks.example.com"}, t.TempDir(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	r, err := tlsutil.NewReloader(res.ServerCertFile, res.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(res.CA)
	return pool, r.TLSConfig()
}

// TestTicketsResumeAcrossListenersAndRotation: a returning client resumes
// (DidResume) on the listener that issued its ticket and on another one
// sharing the keys, in TLS 1.3 and 1.2; after a rotation old tickets still
// resume within the window, and past it they get a full handshake.
func TestTicketsResumeAcrossListenersAndRotation(t *testing.T) {
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		pool, base := ticketWorld(t)
		clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
		keys := tlsutil.NewTicketKeys(time.Hour, 2, clk.Now)
		keys.Install(base)
		https, imaps := ticketServer(t, base.Clone()), ticketServer(t, base.Clone())
		client := func() *tls.Config {
			return &tls.Config{RootCAs: pool, ServerName: "tasks.example.com", MaxVersion: version,
				ClientSessionCache: tls.NewLRUClientSessionCache(8)}
		}

		c := client()
		if dial(t, https, c) {
			t.Fatalf("version %x: first connection resumed", version)
		}
		if !dial(t, https, c) {
			t.Fatalf("version %x: returning client did not resume", version)
		}
		c2 := client()
		dial(t, https, c2)
		if !dial(t, imaps, c2) {
			t.Fatalf("version %x: a ticket from the HTTPS listener did not resume on IMAPS", version)
		}

		// Rotation: a ticket sealed with the previous key still resumes.
		c3 := client()
		dial(t, https, c3)
		keys.Rotate()
		if !dial(t, https, c3) {
			t.Fatalf("version %x: a ticket from before a rotation did not resume", version)
		}
		// Past the window (keep+1 rotations) the key is gone: full handshake.
		c4 := client()
		dial(t, https, c4)
		clk.Advance(3 * time.Hour)
		if dial(t, https, c4) {
			t.Fatalf("version %x: a ticket older than the window resumed", version)
		}
		// Without the shared keys (another server) a ticket is ignored,
		// not an error.
		other := base.Clone()
		tlsutil.NewTicketKeys(0, -1, nil).Install(other)
		c5 := client()
		dial(t, https, c5)
		if dial(t, ticketServer(t, other), c5) {
			t.Fatalf("version %x: a ticket resumed on a server with other keys", version)
		}
	}
}

// BenchmarkHandshake compares a full TLS handshake with a resumed one
// (ECDSA P-256 dev certificate), client and server in one process.
func BenchmarkHandshake(b *testing.B) {
	res, err := tlsutil.DevCert([]string{"tasks.example.com"}, b.TempDir(), time.Time{})
	if err != nil {
		b.Fatal(err)
	}
	r, err := tlsutil.NewReloader(res.ServerCertFile, res.ServerKeyFile)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(res.CA)
	srv := r.TLSConfig()
	tlsutil.NewTicketKeys(0, -1, nil).Install(srv)
	for _, resume := range []bool{false, true} {
		name := "full"
		if resume {
			name = "resumed"
		}
		b.Run(name, func(b *testing.B) {
			cc := &tls.Config{RootCAs: pool, ServerName: "tasks.example.com"}
			if resume {
				cc.ClientSessionCache = tls.NewLRUClientSessionCache(1)
			}
			one := func() bool {
				a, z := net.Pipe()
				s := tls.Server(z, srv)
				done := make(chan struct{})
				go func() {
					s.Handshake()
					s.Write([]byte{1})
					close(done)
				}()
				c := tls.Client(a, cc)
				c.Read(make([]byte, 1))
				<-done
				resumed := c.ConnectionState().DidResume
				a.Close()
				z.Close()
				return resumed
			}
			one()
			for b.Loop() {
				if one() != resume {
					b.Fatalf("DidResume != %v", resume)
				}
			}
		})
	}
}
