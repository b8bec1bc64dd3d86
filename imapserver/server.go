// Package imapserver serves each user's notification mail over IMAP, for
// iPhone Mail and every desktop client, on top of go-imap v2's imapserver.
//
// It sees the rest of duebridge only through Backend (backend.go), declared
// here in IMAP's terms and implemented by the core (bridge.Service.IMAP):
// messages live behind it, and nothing is copied into memory except, per
// open mailbox, the list of UIDs and flags that IMAP sequence numbers are
// made of. The backend's events (sent after commit) drive go-imap's
// MailboxTracker, so an idling client hears of a new notification the
// moment its transaction commits, and of another session's flag changes and
// expunges.
//
// What go-imap (v2.0.0-beta.9) does not do is done here, in a net.Conn
// wrapper the library reads through (conn.go, one documented state
// machine): answering ID (RFC 2971) in every state and advertising it,
// STARTTLS (so that ID still works after it), refusing what the library
// would answer NO [SERVERBUG] (bad base64 in AUTHENTICATE, lists nested too
// deeply), and connection-level limits (literal size, line length, login
// and idle timeouts).
package imapserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
)

// Mailbox names. INBOX receives notifications; Trash (SPECIAL-USE \Trash) is
// where iOS Mail moves what the user deletes.
const (
	Inbox = "INBOX"
	Trash = "Trash"
)

// Defaults for Options.
const (
	// DefaultIdleTimeout is RFC 9051's minimum autologout timer.
	DefaultIdleTimeout  = 30 * time.Minute
	DefaultLoginTimeout = time.Minute
	DefaultCacheBytes   = 32 << 20
	defaultMaxFailures  = 3
	closeWait           = 5 * time.Second
)

// Options configure a Server. The zero value serves plain IMAP without TLS.
type Options struct {
	// TLSConfig, if set, enables STARTTLS on Serve's listeners and is what
	// ServeTLS uses. With it, LOGIN on a connection without TLS is refused.
	TLSConfig *tls.Config
	// Logger; if nil, slog.Default() is used.
	Logger *slog.Logger
	// Version is reported in the ID response; if empty, "dev".
	Version string
	// IdleTimeout closes an authenticated connection that sends nothing for
	// this long outside IDLE; if zero, DefaultIdleTimeout.
	IdleTimeout time.Duration
	// LoginTimeout closes a connection that has not logged in this long
	// after connecting; if zero, DefaultLoginTimeout.
	LoginTimeout time.Duration
	// MaxLoginFailures closes a connection after that many failed logins;
	// if zero, 3.
	MaxLoginFailures int
	// CacheBytes bounds the cache of parsed headers and body structures;
	// if zero, DefaultCacheBytes; negative disables the cache.
	CacheBytes int
	// DebugWriter, if set, receives the raw protocol (passwords included).
	DebugWriter io.Writer
}

// Server is duebridge's IMAP server. Build it with New, run it with Serve
// and/or ServeTLS, stop it with Close.
type Server struct {
	backend Backend
	opts    Options
	log     *slog.Logger
	imap    *goimapserver.Server
	reg     *registry
	cache   *msgCache
	metrics *metrics

	ctx    context.Context // cancelled by Close: store calls of sessions and refreshers
	cancel context.CancelFunc

	handshakeTimeout time.Duration // TLS handshakes (tests shorten it)

	// readBufsHeld counts connections holding a read buffer (conn.buf):
	// those reading a command, not those between commands or in IDLE.
	readBufsHeld atomic.Int64

	mu        sync.Mutex
	closed    bool
	started   bool
	userConns map[string]int
	// byUser holds logged-in sessions, to end them when credentials change.
	byUser   map[string]map[*session]struct{}
	wg       sync.WaitGroup // fan-out loop and refreshers
	sessions sync.WaitGroup // open sessions
}

// New builds a server over backend; it starts nothing.
func New(backend Backend, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.LoginTimeout <= 0 {
		opts.LoginTimeout = DefaultLoginTimeout
	}
	if opts.MaxLoginFailures <= 0 {
		opts.MaxLoginFailures = defaultMaxFailures
	}
	if opts.CacheBytes == 0 {
		opts.CacheBytes = DefaultCacheBytes
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		backend:   backend,
		opts:      opts,
		log:       opts.Logger.With("component", "imap"),
		cache:     newMsgCache(opts.CacheBytes),
		metrics:   newMetrics(backend.Registerer()),
		ctx:       ctx,
		cancel:    cancel,
		userConns: map[string]int{},
		byUser:    map[string]map[*session]struct{}{},

		handshakeTimeout: tlsHandshakeTime,
	}
	s.reg = newRegistry(s)
	s.imap = goimapserver.New(&goimapserver.Options{
		NewSession: s.newSession,
		// IMAP4rev1 plus what iOS Mail and desktop clients use. Not IMAP4rev2:
		// it changes response formats (ESEARCH, no RECENT) for no gain here.
		// Not LITERAL+: a non-synchronising literal cannot be refused before
		// its bytes arrive. ID is answered (conn.go) but go-imap offers no
		// way to advertise it.
		Caps: imap.CapSet{
			imap.CapIMAP4rev1:  {},
			imap.CapNamespace:  {},
			imap.CapUIDPlus:    {},
			imap.CapMove:       {},
			imap.CapSpecialUse: {},
			imap.CapChildren:   {},
		},
		Logger: libLogger{s.log},
		// The library checks for *tls.Conn to decide whether LOGIN may be
		// offered, but it only ever sees our wrapper (conn.go), which does
		// TLS itself. Session.Login enforces "TLS first" instead.
		InsecureAuth: true,
		DebugWriter:  opts.DebugWriter,
	})
	return s
}

// Serve accepts plain IMAP connections on ln (with STARTTLS when
// Options.TLSConfig is set) until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	return s.serve(ln, false)
}

// ServeTLS accepts implicit-TLS IMAP connections (port 993) on ln.
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.opts.TLSConfig == nil {
		return errors.New("imap: ServeTLS needs Options.TLSConfig")
	}
	return s.serve(ln, true)
}

func (s *Server) serve(ln net.Listener, implicitTLS bool) error {
	if err := s.start(); err != nil {
		return err
	}
	err := s.imap.Serve(&listener{Listener: ln, srv: s, implicitTLS: implicitTLS})
	if err != nil && s.isClosed() {
		return nil
	}
	if err != nil {
		return fmt.Errorf("imap serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// start subscribes to the backend's changes once, before the first
// connection can select a mailbox.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("imap: server closed")
	}
	if s.started {
		return nil
	}
	s.started = true
	events := s.backend.Subscribe(s.ctx)
	s.wg.Add(1)
	go s.fanout(events)
	return nil
}

// revoke closes the connections of a user whose credentials changed.
func (s *Server) revoke(user string) {
	s.mu.Lock()
	var conns []*conn
	for sess := range s.byUser[user] {
		conns = append(conns, sess.c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	if len(conns) > 0 {
		s.log.Info("closed imap sessions after a credential change", "user", user, "sessions", len(conns))
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close closes the listeners and every connection at once, then waits (a
// few seconds at most) for sessions and the event loop to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	// go-imap's Close also works on a server that never served.
	err := s.imap.Close()
	s.cancel()
	done := make(chan struct{})
	go func() {
		s.sessions.Wait()
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		s.log.Warn("imap sessions still running after close")
	}
	return err
}

// goTracked runs f on a goroutine that Close waits for; it reports false
// (and runs nothing) once the server is closed.
func (s *Server) goTracked(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// acquireUserConn counts a logged-in connection of user against
// limits.imap_conns_per_user.
func (s *Server) acquireUserConn(user string, sess *session) bool {
	limit := s.backend.Limits().ConnsPerUser
	s.mu.Lock()
	defer s.mu.Unlock()
	if limit > 0 && s.userConns[user] >= limit {
		return false
	}
	s.userConns[user]++
	if s.byUser[user] == nil {
		s.byUser[user] = map[*session]struct{}{}
	}
	s.byUser[user][sess] = struct{}{}
	return true
}

func (s *Server) releaseUserConn(user string, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.userConns[user]--; s.userConns[user] <= 0 {
		delete(s.userConns, user)
	}
	if delete(s.byUser[user], sess); len(s.byUser[user]) == 0 {
		delete(s.byUser, user)
	}
}

// listener wraps accepted connections in conn (ID, STARTTLS, limits) and,
// for implicit TLS, in a TLS server first. The handshake runs on the
// connection's own goroutine, at its first read.
type listener struct {
	net.Listener
	srv         *Server
	implicitTLS bool
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.implicitTLS {
		return newConn(l.srv, tls.Server(c, l.srv.opts.TLSConfig), true), nil
	}
	return newConn(l.srv, c, false), nil
}

// libLogger sends go-imap's own messages to slog: recovered panics as
// errors, the rest (mostly "failed to read command" when a client goes
// away) at debug level.
type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(msg, "panic") {
		l.log.Error("imap library: " + msg)
		return
	}
	l.log.Debug("imap library: " + msg)
}
