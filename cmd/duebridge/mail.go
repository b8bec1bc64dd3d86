package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/submission"
)

// mailServers are the IMAP server and the submission listener (the outgoing
// server iOS insists on for a mail account), with their bound listeners.
type mailServers struct {
	imap  *imapserver.Server
	sub   *submission.Server
	lns   []mailListener
	close func()
}

type mailListener struct {
	name  string
	ln    net.Listener
	serve func(net.Listener) error
	addr  func(*Addrs) *net.Addr // the Addrs field it fills
}

// listenMail binds every configured IMAP and submission address (plain ones
// offer STARTTLS when TLS is configured; tls_listen ones are implicit TLS).
// Nothing is served until serve.
func listenMail(cfg *config.Config, svc *bridge.Service, tlsConf *tls.Config, log *slog.Logger, trusted func() []netip.Prefix) (*mailServers, error) {
	var imapTLS, subTLS *tls.Config
	if tlsConf != nil {
		imapTLS, subTLS = tlsConf.Clone(), tlsConf.Clone()
	}
	m := &mailServers{
		imap: imapserver.New(svc.IMAP(), imapserver.Options{TLSConfig: imapTLS, Logger: log, Version: version}),
		sub:  submission.New(svc, submission.Options{TLSConfig: subTLS, Logger: log, Registry: svc.Registry(), Hostname: cfg.HTTP.PublicURL.Hostname()}),
	}
	var once sync.Once
	m.close = func() {
		once.Do(func() {
			for _, l := range m.lns {
				l.ln.Close()
			}
			if err := m.imap.Close(); err != nil {
				log.Warn("imap close", "err", err)
			}
			if err := m.sub.Close(); err != nil {
				log.Warn("submission close", "err", err)
			}
		})
	}
	for _, l := range []struct {
		name, key, addr string
		proxy           bool // imap.proxy_protocol / submission.proxy_protocol
		serve           func(net.Listener) error
		dst             func(*Addrs) *net.Addr
	}{
		{"imap", "imap.listen", cfg.IMAP.Listen, cfg.IMAP.ProxyProtocol, m.imap.Serve, func(a *Addrs) *net.Addr { return &a.IMAP }},
		{"imaps", "imap.tls_listen", cfg.IMAP.TLSListen, cfg.IMAP.ProxyProtocol, m.imap.ServeTLS, func(a *Addrs) *net.Addr { return &a.IMAPTLS }},
		{"submission", "submission.listen", cfg.Submission.Listen, cfg.Submission.ProxyProtocol, m.sub.Serve, func(a *Addrs) *net.Addr { return &a.Submission }},
		{"submissions", "submission.tls_listen", cfg.Submission.TLSListen, cfg.Submission.ProxyProtocol, m.sub.ServeTLS, func(a *Addrs) *net.Addr { return &a.SubmissionTLS }},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			m.close()
			return nil, fmt.Errorf("listen %s %s (%s): %w", l.name, l.addr, l.key, err)
		}
		if l.proxy {
			// The header first, so the per-address limit and every login
			// see the client the proxy names.
			ln = acceptProxyProtocol(ln, trusted, log)
		}
		ln = limitPerAddress(ln, cfg.Limits.ConnsPerAddress, nil, connsRefused(svc.Registry()).WithLabelValues(l.name))
		m.lns = append(m.lns, mailListener{name: l.name, ln: ln, serve: l.serve, addr: l.dst})
	}
	return m, nil
}

// serve starts every listener under goRun and records the bound addresses.
func (m *mailServers) serve(goRun func(string, func() error), addrs *Addrs) {
	for _, l := range m.lns {
		*l.addr(addrs) = l.ln.Addr()
		goRun(l.name, func() error { return l.serve(l.ln) })
	}
}
