package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// oneShot is the http.RoundTripper of a phone's poll: every request on a
// connection of its own (TCP, then with tls set a TLS handshake, resumed
// from tls.ClientSessionCache when it holds the phone's ticket), written
// in one go, its answer read to the end, the connection closed, all on
// the caller's goroutine. It is what the phone does; a new http.Transport
// per poll did the same with a dial goroutine, a read and a write loop and
// their channels, CPU on the server's cores that no phone costs it.
type oneShot struct {
	dialer  *net.Dialer
	tls     *tls.Config   // nil over plain HTTP
	timeout time.Duration // for the whole exchange, reading the body included
}

func newOneShot(conf *tls.Config, timeout time.Duration) *oneShot {
	return &oneShot{dialer: &net.Dialer{Timeout: 5 * time.Second, KeepAlive: -1}, tls: conf, timeout: timeout}
}

func (o *oneShot) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), o.timeout)
	conn, err := o.dialer.DialContext(ctx, "tcp", canonicalAddr(req))
	if err != nil {
		cancel()
		closeBody(req)
		return nil, err
	}
	// When ctx ends, the TCP connection is closed under whoever uses it
	// (not the TLS one, whose Close would first try to write an alert).
	raw := conn
	stop := context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(err error) (*http.Response, error) {
		stop()
		cancel()
		conn.Close()
		closeBody(req)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	var state *tls.ConnectionState
	if o.tls != nil {
		tc := tls.Client(conn, o.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			return fail(err)
		}
		cs := tc.ConnectionState()
		state, conn = &cs, tc
	}
	bw := bufWriters.Get().(*bufio.Writer)
	bw.Reset(conn)
	err = req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	bufWriters.Put(bw)
	if err != nil {
		return fail(err)
	}
	br := bufReaders.Get().(*bufio.Reader)
	br.Reset(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		br.Reset(nil)
		bufReaders.Put(br)
		return fail(err)
	}
	resp.TLS = state
	resp.Body = &connBody{ReadCloser: resp.Body, conn: conn, br: br, stop: func() { stop(); cancel() }}
	return resp, nil
}

// bufWriters and bufReaders hold the 4 KB buffers of oneShot's requests
// and answers across polls: new ones per poll were garbage the phones
// do not make on the server's cores.
var (
	bufWriters = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}
	bufReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 4<<10) }}
)

// canonicalAddr is the request's host:port, the scheme's port if none.
func canonicalAddr(req *http.Request) string {
	if req.URL.Port() != "" {
		return req.URL.Host
	}
	port := "80"
	if req.URL.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(req.URL.Hostname(), port)
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// connBody is a response body that closes its connection when closed.
// The connection's own close error is not the body's: the server may have
// closed first (it was asked to), and the answer was read by then.
type connBody struct {
	io.ReadCloser
	conn net.Conn
	br   *bufio.Reader // back to bufReaders once closed
	stop func()
}

func (b *connBody) Close() error {
	b.stop()
	err := b.ReadCloser.Close()
	b.conn.Close()
	if b.br != nil {
		b.br.Reset(nil)
		bufReaders.Put(b.br)
		b.br = nil
	}
	return err
}
