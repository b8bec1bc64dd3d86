package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
)

// sources spreads outgoing IMAP connections over local (source) addresses
// round-robin. One source address has only the ephemeral port range
// (32768–60999 on Linux, ~28,000 ports) for connections to one server
// address; 100,000 idle connections on one node need several loopback
// addresses (127.0.0.0/8 is all loopback).
type sources struct {
	addrs []netip.Addr
	next  atomic.Uint64
}

// idleSources is what dialIdler binds to; set once by main from
// --source-addrs before any connection is opened (nil: the kernel's choice).
var idleSources *sources

// parseSourceAddrs parses "127.0.0.2,127.0.0.3": loopback addresses only,
// as everything the load tool does stays on this machine.
func parseSourceAddrs(s string) ([]netip.Addr, error) {
	if s == "" {
		return nil, nil
	}
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(f))
		if err != nil {
			return nil, fmt.Errorf("--source-addrs: %w", err)
		}
		if !a.IsLoopback() {
			return nil, fmt.Errorf("--source-addrs: %s is not a loopback address: duebridge-load only loads this machine", a)
		}
		out = append(out, a)
	}
	return out, nil
}

func newSources(addrs []netip.Addr) *sources {
	if len(addrs) == 0 {
		return nil
	}
	return &sources{addrs: addrs}
}

// dial connects to addr from the next source address (any address when s
// is nil).
func (s *sources) dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	if s != nil {
		a := s.addrs[(s.next.Add(1)-1)%uint64(len(s.addrs))]
		d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
	}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil && d.LocalAddr != nil {
		return nil, fmt.Errorf("from %s: %w", d.LocalAddr, err)
	}
	return c, err
}
