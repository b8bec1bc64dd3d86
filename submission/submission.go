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

	"github.com/duebridge/duebridge/bridge"
)

// Options configure a Server. The zero value serves plain SMTP without TLS.
type Options struct {
	// TLSConfig enables STARTTLS on Serve's listeners and is what ServeTLS
	// uses. With it, AUTH is offered and accepted only over TLS.
	TLSConfig *tls.Config
	// Hostname is used in the greeting; if empty, "duebridge".
	Hostname string
	// Logger; if nil, the service's logger is used.
	Logger *slog.Logger
	// MaxConns bounds concurrent connections; if zero, 100.
	MaxConns int
	// Timeout is the time allowed for each command; if zero, 5 minutes
	// (RFC 5321 4.5.3.2).
	Timeout time.Duration
}

const (
	maxLine        = 4096 // AUTH lines carry base64 credentials; 512 is too short for them
	maxErrors      = 10
	maxAuthFailure = 3
	refusal        = "550 5.7.1 duebridge does not send mail"
)

// Server is the submission listener.
type Server struct {
	svc  *bridge.Service
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup
	ctx       context.Context
	cancel    context.CancelFunc
}

// New builds a server; it starts nothing.
func New(svc *bridge.Service, opts Options) *Server {
	if opts.Hostname == "" {
		opts.Hostname = "duebridge"
	}
	if opts.Logger == nil {
		opts.Logger = svc.Logger()
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 100
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{svc: svc, opts: opts, log: opts.Logger.With("component", "submission"),
		listeners: map[net.Listener]struct{}{}, conns: map[net.Conn]struct{}{}, ctx: ctx, cancel: cancel}
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
		if !s.track(c) {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "421 4.7.0 Too many connections, try again later\r\n")
			c.Close()
			continue
		}
		go func() {
			defer s.untrack(c)
			s.handle(c, implicitTLS)
		}()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.opts.MaxConns {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
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
}

func (s *Server) handle(c net.Conn, isTLS bool) {
	ss := &session{srv: s, conn: c, isTLS: isTLS, r: bufio.NewReaderSize(c, maxLine), w: bufio.NewWriter(c),
		log: s.log.With("remote", c.RemoteAddr().String())}
	// With implicit TLS the handshake runs inside the greeting's write and
	// reads the client's hello: bound it.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := ss.reply("220 %s ESMTP duebridge submission (duebridge does not send mail)", s.opts.Hostname); err != nil {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				ss.reply("500 5.5.2 Line too long")
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

func (ss *session) readLine() (string, error) {
	ss.conn.SetReadDeadline(time.Now().Add(ss.srv.opts.Timeout))
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
		tc.SetDeadline(time.Now().Add(30 * time.Second))
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
