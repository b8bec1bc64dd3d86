package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
)

// This file finds the real client behind a reverse proxy, so lock-outs and
// per-address limits count people, not the proxy: X-Forwarded-For and
// Forwarded on HTTP (honoured only from http.trusted_proxies), and the
// PROXY protocol (v1 and v2) on IMAP and submission listeners that opt in.

// peerIP is the IP of a "host:port" or bare address, unmapped; invalid if none.
func peerIP(addr string) netip.Addr {
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr().Unmap()
	}
	a, _ := netip.ParseAddr(addr)
	return a.Unmap()
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if ip.IsValid() && p.Contains(ip) {
			return true
		}
	}
	return false
}

// forwardedClient returns the client a trusted proxy names: walking the
// forwarding chain from the nearest hop, the first address that is not
// itself a trusted proxy (everything left of it could be made up by the
// client). ok is false when the peer is not trusted or names nobody.
func forwardedClient(r *http.Request, trusted []netip.Prefix) (netip.Addr, bool) {
	// Without trusted proxies (the usual case) the peer is not parsed.
	if len(trusted) == 0 || !inPrefixes(peerIP(r.RemoteAddr), trusted) {
		return netip.Addr{}, false
	}
	chain := forwardedFor(r.Header.Values("Forwarded"))
	if len(chain) == 0 {
		for _, v := range r.Header.Values("X-Forwarded-For") {
			for _, s := range strings.Split(v, ",") {
				chain = append(chain, strings.TrimSpace(s))
			}
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		ip := peerIP(strings.Trim(chain[i], `"[]`))
		if !ip.IsValid() {
			// "[2001:db8::1]:4711" and "unknown" forms.
			s := strings.Trim(chain[i], `"`)
			if h, _, err := net.SplitHostPort(s); err == nil {
				ip = peerIP(h)
			}
		}
		if !ip.IsValid() {
			return netip.Addr{}, false // obfuscated or junk: keep the proxy's address
		}
		if !inPrefixes(ip, trusted) {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// forwardedFor extracts the for= values of RFC 7239 Forwarded headers, in order.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					out = append(out, strings.TrimSpace(val))
				}
			}
		}
	}
	return out
}

// realClient rewrites r.RemoteAddr to the client a trusted proxy names, so
// every handler (logins, lock-outs, the loopback check of /metrics) sees
// the client. trusted is read per request: the key reloads live.
func realClient(next http.Handler, trusted func() []netip.Prefix) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ip, ok := forwardedClient(r, trusted()); ok {
			r2 := r.Clone(r.Context())
			r2.RemoteAddr = netip.AddrPortFrom(ip, 0).String()
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

// proxyHeaderTimeout bounds how long a connection may take to send its
// PROXY header before it is dropped.
const proxyHeaderTimeout = 5 * time.Second

// proxyListener reads the PROXY protocol header of every connection before
// Accept returns it, each in its own goroutine: a silent connection never
// holds up the accept loop, and RemoteAddr of an accepted connection is the
// client's (so the per-address limit wrapped around it counts clients). A
// connection without a valid header is closed. When trusted is non-empty,
// only peers within it may connect at all.
type proxyListener struct {
	net.Listener
	trusted func() []netip.Prefix
	log     *slog.Logger
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	err     error
}

func acceptProxyProtocol(ln net.Listener, trusted func() []netip.Prefix, log *slog.Logger) net.Listener {
	l := &proxyListener{Listener: ln, trusted: trusted, log: log, conns: make(chan net.Conn), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *proxyListener) run() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			l.shut(err)
			return
		}
		go l.handshake(c)
	}
}

func (l *proxyListener) handshake(c net.Conn) {
	if ps := l.trusted(); len(ps) > 0 && !inPrefixes(peerIP(c.RemoteAddr().String()), ps) {
		l.log.Warn("PROXY protocol listener: connection from outside http.trusted_proxies refused", "peer", c.RemoteAddr().String())
		c.Close()
		return
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(proxyHeaderTimeout))
	if pc.ProxyHeader() == nil {
		l.log.Debug("PROXY protocol header missing or invalid; connection closed", "peer", c.RemoteAddr().String())
		c.Close()
		return
	}
	select {
	case l.conns <- pc:
	case <-l.done:
		c.Close()
	}
}

func (l *proxyListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		if l.err != nil {
			return nil, l.err
		}
		return nil, net.ErrClosed
	}
}

func (l *proxyListener) Close() error { return l.shut(nil) }

// shut closes the listener once; err (set before done closes, so Accept
// reads it safely) is what Accept returns from then on, nil for a Close.
func (l *proxyListener) shut(err error) error {
	var cerr error
	l.once.Do(func() {
		l.err = err
		close(l.done)
		cerr = l.Listener.Close()
	})
	return cerr
}
