package main

import (
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/internal/metricsreg"
)

// perAddressListener caps concurrent connections from one client address
// (IPv6 by /64), so one host cannot take every IMAP, submission or HTTP slot
// before logging in. Loopback is exempt: a local reverse proxy or the load
// tool speaks for many clients, and so are the http.trusted_proxies (a
// reverse proxy's connections carry many clients; the limits apply to the
// clients it names). Over the cap a connection is closed at once.
type perAddressListener struct {
	net.Listener
	max     int
	exempt  func() []netip.Prefix // read per connection: the key reloads live
	refused prometheus.Counter

	mu    sync.Mutex
	count map[string]int
}

// connsRefused counts, per listener, connections limitPerAddress closed.
func connsRefused(reg prometheus.Registerer) *prometheus.CounterVec {
	return metricsreg.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duebridge_conns_refused_total",
		Help: "Connections closed at accept by limits.conns_per_address, by listener.",
	}, []string{"listener"}))
}

func limitPerAddress(ln net.Listener, max int, exempt func() []netip.Prefix, refused prometheus.Counter) net.Listener {
	if max <= 0 {
		return ln
	}
	if exempt == nil {
		exempt = func() []netip.Prefix { return nil }
	}
	return &perAddressListener{Listener: ln, max: max, exempt: exempt, refused: refused, count: map[string]int{}}
}

func (l *perAddressListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, limited := addressKey(c.RemoteAddr())
		if !limited || l.isExempt(c.RemoteAddr()) {
			return c, nil
		}
		l.mu.Lock()
		if l.count[key] >= l.max {
			l.mu.Unlock()
			c.Close()
			l.refused.Inc()
			continue
		}
		l.count[key]++
		l.mu.Unlock()
		return &countedConn{Conn: c, l: l, key: key}, nil
	}
}

// isExempt reports whether a is within the exempt prefixes; without any
// (the usual case) the address is not formatted and parsed again.
func (l *perAddressListener) isExempt(a net.Addr) bool {
	ps := l.exempt()
	return len(ps) > 0 && inPrefixes(peerIP(a.String()), ps)
}

func (l *perAddressListener) release(key string) {
	l.mu.Lock()
	if l.count[key]--; l.count[key] <= 0 {
		delete(l.count, key)
	}
	l.mu.Unlock()
}

// addressKey groups a client address; limited is false for loopback.
func addressKey(a net.Addr) (key string, limited bool) {
	tcp, ok := a.(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return "", false
	}
	if v4 := tcp.IP.To4(); v4 != nil {
		return v4.String(), true
	}
	return tcp.IP.Mask(net.CIDRMask(64, 128)).String(), true
}

type countedConn struct {
	net.Conn
	once sync.Once
	l    *perAddressListener
	key  string
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.l.release(c.key) })
	return c.Conn.Close()
}
