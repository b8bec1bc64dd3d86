// Package submission is the outgoing-mail server iOS insists on for a mail
// account: a minimal SMTP submission listener (RFC 6409) that accepts the
// same user names and passwords as IMAP and CalDAV, so account verification
// succeeds, and refuses every message with "550 5.7.1 duebridge does not send
// mail", so a reply written on the phone fails visibly (it stays in the
// Outbox with that text) instead of vanishing. duebridge has nobody to
// deliver mail to: the task system is the place to answer.
package submission

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
)

// Options configure a Server. The zero value serves plain SMTP without TLS.
type Options struct {
	// TLSConfig enables STARTTLS on Serve's listeners and is what ServeTLS
	// uses. With it, AUTH is offered and accepted only over TLS.
	TLSConfig *tls.Config
	// Hostname is used in the greeting; if empty, "duebridge".
	Hostname string
	// Logger; if nil, slog.Default().
	Logger *slog.Logger
	// Registry receives the duebridge_submission_* metrics; nil: none.
	Registry prometheus.Registerer
	// MaxConns bounds concurrent authenticated sessions; if zero, 100.
	MaxConns int
	// Timeout is the time allowed for each command; if zero, 5 minutes
	// (RFC 5321 4.5.3.2).
	Timeout time.Duration

	// The limits below are read from the service's config
	// (limits.submission_*) on every connection unless set here.

	// AuthTimeout is the time a connection has from its greeting to a
	// successful AUTH, however busy it keeps itself.
	AuthTimeout time.Duration
	// MaxUnauth bounds connections that have not authenticated yet,
	// separately from MaxConns, so clients that never log in cannot take
	// the slots of those that do.
	MaxUnauth int
	// MaxUnauthPerAddress bounds them per client address (IPv6: one /64).
	MaxUnauthPerAddress int
}

// Defaults of the limits, as config.Load also sets them.
const (
	defaultAuthTimeout         = 60 * time.Second
	defaultMaxUnauth           = 50
	defaultMaxUnauthPerAddress = 10

	// refuseTimeout bounds writing a 421 to a connection over a limit,
	// including the TLS handshake on port 465.
	refuseTimeout = 5 * time.Second
	// maxRefusing bounds refusals in flight; past it, connections are
	// closed without a word.
	maxRefusing = 64
)

const (
	maxLine        = 4096 // AUTH lines carry base64 credentials; 512 is too short for them
	maxErrors      = 10
	maxAuthFailure = 3
	refusal        = "550 5.7.1 duebridge does not send mail"
)

// Server is the submission listener.
type Server struct {
	svc  Core
	opts Options
	log  *slog.Logger

	m *metrics

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	unauth    int            // connections not yet authenticated
	unauthBy  map[string]int // of them, per client address
	authed    int            // authenticated sessions
	refusing  int            // refusals being written
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// limits are the admission limits in force for a new connection.
type limits struct {
	authTimeout     time.Duration
	maxUnauth       int
	maxUnauthPerKey int
}

func (s *Server) limits() limits {
	l := limits{s.opts.AuthTimeout, s.opts.MaxUnauth, s.opts.MaxUnauthPerAddress}
	cl := s.svc.Config().Limits
	pick := func(opt, cfg, def int) int {
		switch {
		case opt > 0:
			return opt
		case cfg > 0:
			return cfg
		}
		return def
	}
	l.maxUnauth = pick(l.maxUnauth, cl.SubmissionUnauthConns, defaultMaxUnauth)
	l.maxUnauthPerKey = pick(l.maxUnauthPerKey, cl.SubmissionUnauthPerAddress, defaultMaxUnauthPerAddress)
	l.authTimeout = time.Duration(pick(int(l.authTimeout), int(cl.SubmissionAuthTimeout), int(defaultAuthTimeout)))
	return l
}

// Core is what the submission server needs of the core: the shared login
// check (delays and lock-outs across IMAP, CalDAV and SMTP; its refusals
// wrap bridge.ErrBadCredentials and bridge.ErrLockedOut) and the live
// configuration, whose limits.submission_* apply to each new connection.
type Core interface {
	AuthenticateFrom(ctx context.Context, service, name, password, addr string) (*config.User, error)
	Config() *config.Config
}

// New builds a server; it starts nothing.
func New(svc Core, opts Options) *Server {
	if opts.Hostname == "" {
		opts.Hostname = "duebridge"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 100
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{svc: svc, opts: opts, log: opts.Logger.With("component", "submission"), m: newMetrics(opts.Registry),
		listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}, unauthBy: map[string]int{},
		ctx: ctx, cancel: cancel}
}

// Serve accepts plain connections (port 587; STARTTLS when TLS is set)
// until Close, then returns nil.
func (s *Server) Serve(ln net.Listener) error { return s.serve(ln, false) }

// ServeTLS accepts implicit-TLS connections (port 465).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("submission: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errors.New("submission: server closed")
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			return fmt.Errorf("submission accept: %w", err)
		}
		if implicitTLS {
			c = tls.Server(c, s.opts.TLSConfig)
		}
		lim := s.limits()
		key := addressKey(c.RemoteAddr())
		if !s.track(c, key, lim) {
			s.refuse(c, "421 4.7.0 Too many connections, try again later")
			continue
		}
		go func() {
			ss := s.newSession(c, implicitTLS, key, lim.authTimeout)
			defer func() { s.untrack(c, key, ss.promoted) }()
			ss.serve()
		}()
	}
}

// refuse answers a connection over a limit and closes it, off the accept
// loop and within refuseTimeout: on port 465 the answer needs a TLS
// handshake, and a client that never sends its hello stalled the listener.
func (s *Server) refuse(c net.Conn, msg string) {
	s.m.refused.Inc()
	s.mu.Lock()
	if s.closed || s.refusing >= maxRefusing {
		s.mu.Unlock()
		c.Close()
		return
	}
	s.refusing++
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer func() {
			c.Close()
			s.mu.Lock()
			s.refusing--
			s.mu.Unlock()
			s.wg.Done()
		}()
		c.SetDeadline(time.Now().Add(refuseTimeout))
		io.WriteString(c, msg+"\r\n")
	}()
}

// track admits a new (unauthenticated) connection from address key.
func (s *Server) track(c net.Conn, key string, lim limits) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.unauth >= lim.maxUnauth || s.unauthBy[key] >= lim.maxUnauthPerKey {
		return false
	}
	s.unauth++
	s.unauthBy[key]++
	s.m.unauth.Inc()
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

// promote moves a connection that authenticated from the unauthenticated
// slots to the sessions, if one is free.
func (s *Server) promote(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.authed >= s.opts.MaxConns {
		return false
	}
	s.releaseUnauth(key)
	s.authed++
	s.m.sessions.Inc()
	return true
}

func (s *Server) releaseUnauth(key string) {
	s.unauth--
	if s.unauthBy[key]--; s.unauthBy[key] <= 0 {
		delete(s.unauthBy, key)
	}
	s.m.unauth.Dec()
}

func (s *Server) untrack(c net.Conn, key string, authed bool) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	if authed {
		s.authed--
		s.m.sessions.Dec()
	} else {
		s.releaseUnauth(key)
	}
	s.mu.Unlock()
	s.wg.Done()
}

// addressKey groups client addresses as the login protection does: IPv4
// by address, IPv6 by /64 (what one client typically controls).
func addressKey(a net.Addr) string {
	tcp, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	if v4 := tcp.IP.To4(); v4 != nil {
		return v4.String()
	}
	return tcp.IP.Mask(net.CIDRMask(64, 128)).String()
}

// Close closes listeners and connections and waits for their goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	var err error
	for ln := range s.listeners {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
			err = cerr
		}
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// session is one SMTP connection.
type session struct {
	srv      *Server
	conn     net.Conn
	r        *bufio.Reader
	w        *bufio.Writer
	isTLS    bool
	greeted  bool
	user     string
	errors   int
	failures int
	log      *slog.Logger
	key      string    // client address group
	authBy   time.Time // the deadline for a successful AUTH
	promoted bool      // holds a session slot, no longer an unauthenticated one
}

func (s *Server) newSession(c net.Conn, isTLS bool, key string, authTimeout time.Duration) *session {
	return &session{srv: s, conn: c, isTLS: isTLS, r: bufio.NewReaderSize(c, maxLine), w: bufio.NewWriter(c),
		log: s.log.With("remote", c.RemoteAddr().String()), key: key, authBy: time.Now().Add(authTimeout)}
}

// serve runs the session until the client quits or a limit ends it.
func (ss *session) serve() {
	s, c := ss.srv, ss.conn
	// With implicit TLS the handshake runs inside the greeting's write and
	// reads the client's hello: bound it.
	c.SetReadDeadline(ss.deadline(30 * time.Second))
	if err := ss.reply("220 %s ESMTP duebridge submission (duebridge does not send mail)", s.opts.Hostname); err != nil {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				ss.reply("500 5.5.2 Line too long")
			}
			if !ss.promoted && !time.Now().Before(ss.authBy) {
				s.m.authTimeouts.Inc()
				ss.conn.SetWriteDeadline(time.Now().Add(refuseTimeout))
				fmt.Fprintf(ss.w, "421 4.7.0 Authentication time limit exceeded, closing connection\r\n")
				ss.w.Flush()
			}
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		quit, err := ss.command(strings.ToUpper(verb), strings.TrimSpace(arg))
		if err != nil || quit {
			return
		}
		if ss.errors >= maxErrors {
			ss.reply("421 4.7.0 Too many errors, closing connection")
			return
		}
	}
}

var errLineTooLong = errors.New("line too long")

// deadline is now+d, but no later than the authentication deadline while
// the session has not authenticated: a command every few minutes must not
// keep an anonymous connection forever.
func (ss *session) deadline(d time.Duration) time.Time {
	t := time.Now().Add(d)
	if !ss.promoted && ss.authBy.Before(t) {
		return ss.authBy
	}
	return t
}

func (ss *session) readLine() (string, error) {
	ss.conn.SetReadDeadline(ss.deadline(ss.srv.opts.Timeout))
	line, err := ss.r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return "", errLineTooLong
	}
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

func (ss *session) reply(format string, args ...any) error {
	ss.conn.SetWriteDeadline(time.Now().Add(ss.srv.opts.Timeout))
	fmt.Fprintf(ss.w, format+"\r\n", args...)
	return ss.w.Flush()
}

// authAllowed: credentials only travel encrypted when TLS is configured.
func (ss *session) authAllowed() bool { return ss.isTLS || ss.srv.opts.TLSConfig == nil }

func (ss *session) command(verb, arg string) (quit bool, err error) {
	switch verb {
	case "EHLO", "HELO":
		if arg == "" {
			ss.errors++
			return false, ss.reply("501 5.5.4 %s needs a domain", verb)
		}
		ss.greeted = true
		if verb == "HELO" {
			return false, ss.reply("250 %s", ss.srv.opts.Hostname)
		}
		lines := []string{ss.srv.opts.Hostname, "ENHANCEDSTATUSCODES", "8BITMIME"}
		if !ss.isTLS && ss.srv.opts.TLSConfig != nil {
			lines = append(lines, "STARTTLS")
		}
		if ss.authAllowed() {
			lines = append(lines, "AUTH PLAIN LOGIN")
		}
		for i, l := range lines {
			sep := "-"
			if i == len(lines)-1 {
				sep = " "
			}
			fmt.Fprintf(ss.w, "250%s%s\r\n", sep, l)
		}
		return false, ss.flush()
	case "STARTTLS":
		if ss.isTLS || ss.srv.opts.TLSConfig == nil {
			ss.errors++
			return false, ss.reply("502 5.5.1 STARTTLS not available")
		}
		if ss.r.Buffered() > 0 {
			// Plaintext pipelined after STARTTLS could be read as if it
			// had come over TLS (CVE-2011-0411 and kin).
			return true, ss.reply("501 5.5.1 Nothing may follow STARTTLS before the handshake")
		}
		if err := ss.reply("220 2.0.0 Ready to start TLS"); err != nil {
			return true, err
		}
		tc := tls.Server(ss.conn, ss.srv.opts.TLSConfig)
		tc.SetDeadline(ss.deadline(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			return true, err
		}
		tc.SetDeadline(time.Time{})
		ss.conn, ss.isTLS, ss.greeted, ss.user = tc, true, false, ""
		ss.r.Reset(tc)
		ss.w.Reset(tc)
		return false, nil
	case "AUTH":
		return false, ss.auth(arg)
	case "MAIL":
		if !ss.greeted {
			ss.errors++
			return false, ss.reply("503 5.5.1 Send EHLO first")
		}
		if ss.user == "" {
			return false, ss.reply("530 5.7.0 Authentication required")
		}
		ss.log.Info("submission refused a message", "user", ss.user, "from", arg)
		return false, ss.reply(refusal)
	case "RCPT", "DATA", "BDAT":
		return false, ss.reply(refusal)
	case "RSET", "NOOP":
		return false, ss.reply("250 2.0.0 OK")
	case "VRFY":
		return false, ss.reply("252 2.1.5 Cannot VRFY user")
	case "HELP":
		return false, ss.reply("214 2.0.0 duebridge accepts logins here so that mail clients can be set up; it does not send mail")
	case "QUIT":
		ss.reply("221 2.0.0 Bye")
		return true, nil
	}
	ss.errors++
	return false, ss.reply("500 5.5.2 Command not recognized")
}

func (ss *session) flush() error {
	ss.conn.SetWriteDeadline(time.Now().Add(ss.srv.opts.Timeout))
	return ss.w.Flush()
}

// auth handles AUTH PLAIN (with or without an initial response) and AUTH
// LOGIN, the two mechanisms iOS offers for a password account.
func (ss *session) auth(arg string) error {
	switch {
	case !ss.greeted:
		ss.errors++
		return ss.reply("503 5.5.1 Send EHLO first")
	case ss.user != "":
		ss.errors++
		return ss.reply("503 5.5.1 Already authenticated")
	case !ss.authAllowed():
		return ss.reply("538 5.7.11 Encryption required: use STARTTLS first")
	}
	mech, initial, _ := strings.Cut(arg, " ")
	var user, pass string
	switch strings.ToUpper(mech) {
	case "PLAIN":
		resp := initial
		if resp == "" {
			var err error
			if resp, err = ss.challenge(""); err != nil {
				return err
			}
		}
		if resp == "*" {
			return ss.reply("501 5.0.0 Authentication cancelled")
		}
		b, err := base64.StdEncoding.DecodeString(resp)
		parts := strings.Split(string(b), "\x00")
		if err != nil || len(parts) != 3 || (parts[0] != "" && parts[0] != parts[1]) {
			ss.errors++
			return ss.reply("501 5.5.2 Malformed AUTH PLAIN response")
		}
		user, pass = parts[1], parts[2]
	case "LOGIN":
		u, err := ss.decodedChallenge("Username:", initial)
		if err != nil {
			return err
		}
		p, err := ss.decodedChallenge("Password:", "")
		if err != nil {
			return err
		}
		if u == nil || p == nil {
			ss.errors++
			return ss.reply("501 5.5.2 Malformed AUTH LOGIN response")
		}
		user, pass = string(u), string(p)
	default:
		ss.errors++
		return ss.reply("504 5.5.4 Unrecognized authentication mechanism")
	}
	// The core delays failures and locks out guessing (shared with IMAP and
	// CalDAV, per user name and per client address).
	u, err := ss.srv.svc.AuthenticateFrom(ss.srv.ctx, "smtp", user, pass, ss.conn.RemoteAddr().String())
	if errors.Is(err, bridge.ErrBadCredentials) {
		ss.failures++
		if ss.failures >= maxAuthFailure {
			ss.reply("421 4.7.0 Too many failed logins, closing connection")
			ss.conn.Close()
			return errors.New("too many failed logins")
		}
		if errors.Is(err, bridge.ErrLockedOut) {
			return ss.reply("454 4.7.0 Too many failed logins; try again later")
		}
		return ss.reply("535 5.7.8 Authentication credentials invalid")
	}
	if err != nil {
		return err
	}
	if !ss.srv.promote(ss.key) {
		ss.srv.m.refused.Inc()
		ss.reply("421 4.7.0 Too many sessions, try again later")
		return errors.New("too many sessions")
	}
	ss.promoted = true
	ss.user = u.Name
	ss.log.Info("submission login", "user", u.Name, "tls", ss.isTLS)
	return ss.reply("235 2.7.0 Authentication successful")
}

// challenge sends a 334 with text (base64) and reads the client's line.
func (ss *session) challenge(text string) (string, error) {
	if err := ss.reply("334 %s", base64.StdEncoding.EncodeToString([]byte(text))); err != nil {
		return "", err
	}
	line, err := ss.readLine()
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// decodedChallenge returns the decoded answer to a LOGIN prompt (initial,
// if the client sent it with AUTH), or nil for a malformed one.
func (ss *session) decodedChallenge(prompt, initial string) ([]byte, error) {
	resp := initial
	if resp == "" {
		var err error
		if resp, err = ss.challenge(prompt); err != nil {
			return nil, err
		}
	}
	b, err := base64.StdEncoding.DecodeString(resp)
	if err != nil || resp == "*" {
		return nil, nil
	}
	return b, nil
}
