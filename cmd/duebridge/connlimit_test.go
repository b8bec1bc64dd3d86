package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"net"
	"testing"
	"time"
)

// fakeListener hands out pipe connections that claim a given remote address.
type fakeListener struct {
	conns chan net.Conn
}

func (f *fakeListener) Accept() (net.Conn, error) { return <-f.conns, nil }
func (f *fakeListener) Close() error              { return nil }
func (f *fakeListener) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

type addrConn struct {
	net.Conn
	remote net.Addr
	closed chan struct{}
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }
func (c *addrConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return c.Conn.Close()
}

func dialFrom(f *fakeListener, ip string) *addrConn {
	a, _ := net.Pipe()
	c := &addrConn{Conn: a, remote: &net.TCPAddr{IP: net.ParseIP(ip), Port: 4000}, closed: make(chan struct{})}
	f.conns <- c
	return c
}

func TestLimitPerAddress(t *testing.T) {
	f := &fakeListener{conns: make(chan net.Conn, 16)}
	refused := prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	ln := limitPerAddress(f, 2, nil, refused)
	accept := func() net.Conn {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a1 := dialFrom(f, "192.0.2.1")
	c1 := accept()
	dialFrom(f, "192.0.2.1")
	c2 := accept()
	// A third from the same host is closed at once; another host still gets in.
	third := dialFrom(f, "192.0.2.1")
	dialFrom(f, "198.51.100.9")
	other := accept()
	select {
	case <-third.closed:
	case <-time.After(time.Second):
		t.Fatal("connection over the per-address cap was not closed")
	}
	if other.RemoteAddr().String() != "198.51.100.9:4000" {
		t.Fatalf("got %v", other.RemoteAddr())
	}
	// Closing one frees a slot; closing twice frees only one.
	c1.Close()
	c1.Close()
	dialFrom(f, "192.0.2.1")
	accept()
	fourth := dialFrom(f, "192.0.2.1")
	dialFrom(f, "198.51.100.9")
	accept()
	select {
	case <-fourth.closed:
	case <-time.After(time.Second):
		t.Fatal("double Close freed two slots")
	}
	// IPv6 addresses of one /64 share a budget; loopback is never limited.
	dialFrom(f, "2001:db8::1")
	accept()
	dialFrom(f, "2001:db8::2")
	accept()
	v6third := dialFrom(f, "2001:db8::3")
	for i := 0; i < 5; i++ {
		dialFrom(f, "127.0.0.1")
		accept()
	}
	select {
	case <-v6third.closed:
	default:
		t.Fatal("a third connection from one IPv6 /64 was let in")
	}
	// Every refusal is counted: the third, the fourth and the IPv6 third.
	if got := testutil.ToFloat64(refused); got != 3 {
		t.Errorf("refused counter = %v, want 3", got)
	}
	_, _ = a1, c2
}
