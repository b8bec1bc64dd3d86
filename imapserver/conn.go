package imapserver

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// conn is the net.Conn go-imap's server reads from and writes to. It sits
// between the socket and the library and does what the library cannot:
//
//   - ID (RFC 2971). iOS sends it before and after login; go-imap answers an
//     unknown command before login with BYE and closes the connection. conn
//     answers ID itself and never hands the line on.
//   - STARTTLS. go-imap decides "is this TLS?" by asserting *tls.Conn on the
//     connection it holds, which is this wrapper, and its own STARTTLS would
//     wrap us, hiding everything after it (ID included). So conn negotiates
//     TLS itself, below the library, and Session.Login enforces TLS.
//   - Client errors go-imap answers NO [SERVERBUG]: an AUTHENTICATE initial
//     response that is not base64, lists nested deeper than the library's
//     bound. conn answers BAD itself.
//   - Limits: a cap on literal sizes before any byte of them is read, a
//     line length, a total time to log in, and an idle timeout outside IDLE.
//
// The reader is the state machine described at readState (tests:
// TestReaderStateMachine, FuzzConnReader). It hands the library one whole
// line (or one piece of a literal) per Read. The
// library reads the next command only after it has answered the previous
// one, so whatever conn writes itself lands between whole responses, in
// order, also when clients pipeline (iOS sends NAMESPACE and LIST in one
// packet, and the next command in the packet that carries DONE).
type conn struct {
	srv   *Server
	raw   net.Conn // the TCP connection (addresses)
	start time.Time

	wmu       sync.Mutex // serialises writes; guards transport and isTLS
	transport net.Conn   // raw, or TLS over it
	isTLS     bool

	// Reader state, owned by the goroutine that calls Read (the library's
	// connection goroutine; SetReadDeadline comes from it too).
	//
	// r is borrowed from readBufs only while bytes are buffered or a command
	// is being read: between commands (and all through IDLE, where nearly
	// every connection spends its life) it is nil and the goroutine waits
	// in a one-byte read (src), so an idle connection holds no read buffer.
	r        *bufio.Reader
	src      firstByte
	bufHeld  atomic.Bool // r is borrowed (counted in Server.readBufsHeld)
	state    readState
	pending  []byte // what the next Read returns
	readErr  error  // returned once pending is drained
	literal  int64  // literal bytes still to pass through (stLiteral)
	litSync  bool   // that literal waits for the library's "+"
	depth    int    // list nesting depth so far in the current command
	deadline time.Time
	clamped  bool   // our own limit is the read deadline in force
	clientID string // from ID, for logs

	auth atomic.Bool
	// capsReply: the next write answers a successful login or CAPABILITY,
	// so a capability list at its start is safe to rewrite (no message data).
	capsReply atomic.Bool
	// onLogout, set by the session, runs when LOGOUT is read: the per-user
	// slot is free before the client sees "OK LOGOUT".
	onLogout  func()
	contSeen  atomic.Bool // the library sent "+" since the last literal began
	closeOnce sync.Once
}

const (
	connBufSize      = 1024
	tlsHandshakeTime = 30 * time.Second
	ownWriteTimeout  = 10 * time.Second
	// maxNonSyncLiteral is LITERAL-'s limit (RFC 7888), which go-imap
	// advertises: a larger non-synchronising literal is a protocol error
	// whose bytes are already on the way, so the connection ends.
	maxNonSyncLiteral = 4096
	// maxCommandLine is go-imap's own limit on a command outside literals.
	maxCommandLine = 50 << 10
	maxIDKeep      = 8 << 10 // of an ID, kept for the logs
)

func newConn(srv *Server, c net.Conn, implicitTLS bool) *conn {
	raw := c
	if tc, ok := c.(*tls.Conn); ok {
		raw = tc.NetConn()
		// The handshake happens inside the greeting's Write; without a read
		// deadline a client that never sends its hello would hold the
		// goroutine forever. The library sets its own deadlines after.
		raw.SetDeadline(time.Now().Add(srv.handshakeTimeout))
	}
	srv.metrics.conns.Inc()
	return &conn{
		srv:       srv,
		raw:       raw,
		start:     time.Now(),
		transport: c,
		isTLS:     implicitTLS,
	}
}

// readBufs holds the read buffers of connections that are between
// commands. go-imap keeps its own 4 KiB reader and writer per connection;
// ours need not stay too.
var readBufs = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, connBufSize) }}

// firstByte is the source of a borrowed read buffer: the byte (or error)
// the wait for the next command returned, then the transport.
type firstByte struct {
	c   *conn
	b   [1]byte
	n   int
	err error
}

func (f *firstByte) Read(p []byte) (int, error) {
	if f.n > 0 && len(p) > 0 {
		p[0], f.n = f.b[0], 0
		return 1, nil
	}
	if f.err != nil {
		err := f.err
		f.err = nil
		return 0, err
	}
	// transport changes only on this goroutine (startTLS), so no lock.
	return f.c.transport.Read(p)
}

// buf returns the read buffer, first waiting (without one) for the next
// byte from the client when none is borrowed.
func (c *conn) buf() (*bufio.Reader, error) {
	if c.r != nil {
		return c.r, nil
	}
	c.src.c = c
	n, err := c.transport.Read(c.src.b[:])
	if n == 0 {
		if err == nil {
			err = io.ErrNoProgress
		}
		return nil, err
	}
	c.src.n, c.src.err = n, err
	c.r = readBufs.Get().(*bufio.Reader)
	c.r.Reset(&c.src)
	if !c.bufHeld.Swap(true) {
		c.srv.readBufsHeld.Add(1)
	}
	return c.r, nil
}

// releaseBuf returns an empty read buffer between commands. Only called
// when pending is drained: pending may be a view into the buffer.
func (c *conn) releaseBuf() {
	if c.r == nil || c.r.Buffered() > 0 || (c.state != stCommand && c.state != stIdle) {
		return
	}
	c.r.Reset(nil)
	readBufs.Put(c.r)
	c.r = nil
	c.unholdBuf()
}

// unholdBuf uncounts the borrowed buffer: when it goes back to the pool,
// or when the connection closes or fails with it (then the GC takes it).
func (c *conn) unholdBuf() {
	if c.bufHeld.Swap(false) {
		c.srv.readBufsHeld.Add(-1)
	}
}

// TLS reports whether the connection is encrypted (implicit TLS or after
// STARTTLS).
func (c *conn) TLS() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.isTLS
}

// setAuthenticated records a successful login: from now on the idle
// timeout, not the login timeout, applies.
func (c *conn) setAuthenticated() {
	c.capsReply.Store(true)
	c.auth.Store(true)
}

func (c *conn) Read(p []byte) (int, error) {
	for len(c.pending) == 0 {
		c.releaseBuf()
		if err := c.fill(); err != nil {
			// Errors are final: the library may otherwise answer a
			// half-read command with BAD and try to read on.
			c.readErr = err
			c.unholdBuf()
			return 0, err
		}
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// readState is where the reader stands in the client's byte stream. The
// machine, driven by fill (one step per line or literal piece):
//
//	stCommand   --line-->  command(): ID, STARTTLS, a refused literal or a
//	                       list nested too deeply are answered here and the
//	                       line swallowed (stays stCommand); otherwise the
//	                       line goes to the library and
//	                         ends in {n}/{n+}  -> stLiteral
//	                         is "IDLE"         -> stIdle
//	                         else              -> stCommand
//	stContinued --line-->  (rest of a command after a literal) as above,
//	                       without command()
//	stLiteral   --bytes--> n bytes pass through -> stContinued; when the
//	                       literal was synchronising and the library refused
//	                       the command instead of sending "+", the client
//	                       sends no bytes: -> stCommand
//	stIdle      --line-->  the line (DONE) ends IDLE in the library -> stCommand
//
// Protocol errors the library cannot recover from (a non-synchronising
// literal over limits, a line over maxCommandLine, nesting too deep after
// the first line) end the connection with BYE.
type readState int

const (
	stCommand readState = iota
	stContinued
	stLiteral
	stIdle
)

// maxNesting bounds parenthesised lists in a command. go-imap's own bound
// (1000) is answered NO [SERVERBUG]; no client nests more than a few.
const maxNesting = 100

// fill sets pending to the next line or literal piece, answering and
// swallowing what the library must not see.
func (c *conn) fill() error {
	if c.readErr != nil {
		return c.readErr
	}
	for {
		if c.state == stLiteral {
			if c.litSync && !c.contSeen.Load() {
				// The library refused the command (a literal too big for it,
				// a bad state) instead of asking for the bytes: the client
				// will not send them, and the next line is a new command.
				c.literal, c.state = 0, stCommand
				continue
			}
			c.litSync = false
			r, err := c.buf()
			if err == nil {
				_, err = r.Peek(1)
			}
			if err != nil {
				return c.failed(err)
			}
			n := min(int64(r.Buffered()), c.literal)
			b, _ := r.Peek(int(n))
			r.Discard(int(n))
			if c.literal -= n; c.literal == 0 {
				c.state = stContinued
			}
			c.pending = b
			return nil
		}
		line, err := c.readLine()
		if err != nil {
			// A line cut by the end of the connection is no command: the
			// library would answer it NO [SERVERBUG] to nobody.
			return c.failed(err)
		}
		from := c.state
		switch from {
		case stIdle:
			// Whatever line comes ends IDLE in the library ("DONE", or a
			// syntax error); the next one starts a command again.
			c.state = stCommand
			c.pending = line
			return nil
		case stCommand:
			c.depth = 0
			swallowed, err := c.command(line)
			if err != nil {
				return c.failed(err)
			}
			if swallowed {
				continue
			}
		}
		n, sync, hasLit := trailingLiteral(line)
		deepest, depth, openQuote := nesting(line, c.depth)
		if c.depth = depth; openQuote && from == stCommand && (!hasLit || sync) {
			// go-imap answers a quoted string cut by the line's end with
			// NO [SERVERBUG].
			if err := c.writeOwn(tagOf(line) + " BAD Quoted string not closed before the end of the line\r\n"); err != nil {
				return c.failed(err)
			}
			continue
		}
		if deepest > maxNesting {
			if from == stCommand && (!hasLit || sync) {
				// Refused whole: the library never sees the command, and a
				// client waiting for "+" sends no literal.
				if err := c.writeOwn(fmt.Sprintf("%s BAD Lists are nested too deeply (at most %d levels)\r\n", tagOf(line), maxNesting)); err != nil {
					return c.failed(err)
				}
				continue
			}
			c.bye(fmt.Sprintf("Lists are nested too deeply (at most %d levels)", maxNesting))
			c.Close()
			return c.failed(errLimit)
		}
		switch {
		case !hasLit:
			if c.state != stIdle {
				c.state = stCommand
			}
		case !sync && n > maxNonSyncLiteral:
			c.srv.metrics.literals.Inc()
			c.bye("Non-synchronizing literals are limited to 4096 bytes")
			c.Close()
			return c.failed(errLimit)
		case n > c.literalLimit():
			c.srv.metrics.literals.Inc()
			if from == stCommand && sync {
				// The client waits for "+" before sending the bytes, so the
				// command can be refused whole; the library never sees it.
				if err := c.writeOwn(fmt.Sprintf("%s NO [TOOBIG] Literals are limited to %d bytes\r\n", tagOf(line), c.literalLimit())); err != nil {
					return c.failed(err)
				}
				c.state = stCommand
				continue
			}
			c.bye(fmt.Sprintf("Literals are limited to %d bytes", c.literalLimit()))
			c.Close()
			return c.failed(errLimit)
		case n == 0:
			c.state = stContinued
		default:
			c.literal, c.litSync, c.state = n, sync, stLiteral
			c.contSeen.Store(false)
		}
		c.pending = line
		return nil
	}
}

// readLine returns the next line, LF included: a view into the read buffer,
// or, for a line longer than the buffer, a copy of at most maxCommandLine
// bytes (go-imap's own limit on a command).
func (c *conn) readLine() ([]byte, error) {
	r, err := c.buf()
	if err != nil {
		return nil, err
	}
	line, err := r.ReadSlice('\n')
	if !errors.Is(err, bufio.ErrBufferFull) {
		return line, err
	}
	long := bytes.Clone(line)
	for {
		more, err := r.ReadSlice('\n')
		long = append(long, more...)
		if len(long) > maxCommandLine {
			c.bye("Command line too long")
			c.Close()
			return nil, errLimit
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return long, err
		}
	}
}

// nesting returns the deepest list nesting of line and the nesting at its
// end, starting at depth (parentheses inside quoted strings do not count),
// and whether a quoted string is still open at the end of the line. Literal
// bytes never reach it, so it sees only protocol text.
func nesting(line []byte, depth int) (deepest, end int, openQuote bool) {
	deepest, quoted := depth, false
	for i := 0; i < len(line); i++ {
		switch ch := line[i]; {
		case quoted && ch == '\\':
			i++
		case ch == '"':
			quoted = !quoted
		case quoted:
		case ch == '(':
			depth++
			deepest = max(deepest, depth)
		case ch == ')':
			depth = max(0, depth-1)
		}
	}
	return deepest, depth, quoted
}

var errLimit = errors.New("imap: connection limit exceeded")

func (c *conn) literalLimit() int64 {
	if n := c.srv.backend.Limits().LiteralBytes; n > 0 {
		return n
	}
	return 1 << 20
}

// command looks at the first line of a command. It reports true when conn
// answered the command itself and the library must not see it.
func (c *conn) command(line []byte) (bool, error) {
	tag, name, rest := splitCommand(line)
	if name == "" || !validTag(tag) {
		// An empty line (go-imap beta.9 skips it) or no command: the
		// library's to answer.
		return false, nil
	}
	c.srv.metrics.command(name)
	switch name {
	case "ID":
		return true, c.answerID(tag, line)
	case "STARTTLS":
		if c.srv.opts.TLSConfig != nil && !c.TLS() && !c.auth.Load() {
			return true, c.startTLS(tag)
		}
	case "IDLE":
		if c.auth.Load() && len(bytes.TrimSpace(rest)) == 0 {
			c.state = stIdle
		}
	case "LIST", "LSUB":
		for _, name := range listArgs(rest) {
			if !validMailboxName(name) {
				return true, c.writeOwn(tag + " BAD Invalid mailbox name (modified UTF-7, RFC 3501 5.1.3): " + quoteIMAP(name) + "\r\n")
			}
		}
	case "CAPABILITY":
		if c.auth.Load() {
			c.capsReply.Store(true)
		}
	case "LOGOUT":
		if c.onLogout != nil {
			c.onLogout()
		}
	case "AUTHENTICATE":
		// go-imap answers an initial response that is not base64 with
		// NO [SERVERBUG]; it is the client's mistake.
		if _, ir, ok := bytes.Cut(bytes.TrimSpace(rest), []byte{' '}); ok && !validSASL(ir) {
			return true, c.writeOwn(tag + " BAD Malformed SASL initial response (not base64)\r\n")
		}
	}
	return false, nil
}

// validSASL reports whether b is a SASL response as IMAP carries it:
// base64, or "=" for an empty one.
func validSASL(b []byte) bool {
	if string(b) == "=" {
		return true
	}
	_, err := base64.StdEncoding.DecodeString(string(b))
	return err == nil
}

// splitCommand returns the tag, the upper-cased command name ("UID FETCH"
// for UID commands) and the rest of the line.
func splitCommand(line []byte) (tag, name string, rest []byte) {
	line = bytes.TrimRight(line, "\r\n")
	t, r, _ := bytes.Cut(line, []byte{' '})
	n, r, _ := bytes.Cut(r, []byte{' '})
	name = strings.ToUpper(string(n))
	if name == "UID" {
		sub, r2, _ := bytes.Cut(r, []byte{' '})
		name, r = "UID "+strings.ToUpper(string(sub)), r2
	}
	return string(t), name, r
}

// tagOf returns the tag to answer line with, "*" if it has no valid one.
func tagOf(line []byte) string {
	t, _, _ := splitCommand(line)
	if !validTag(t) {
		return "*"
	}
	return t
}

// validTag reports whether t is an IMAP tag: ASTRING-CHARs except "+".
func validTag(t string) bool {
	if t == "" {
		return false
	}
	for i := 0; i < len(t); i++ {
		if ch := t[i]; ch <= ' ' || ch >= 0x7f || strings.IndexByte(`(){%*"\+`, ch) >= 0 {
			return false
		}
	}
	return true
}

// trailingLiteral reports a literal announced at the end of a line:
// "{n}\r\n" (synchronising) or "{n+}\r\n".
func trailingLiteral(line []byte) (n int64, sync, ok bool) {
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if !bytes.HasSuffix(line, []byte("}")) {
		return 0, false, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false, false
	}
	digits := line[open+1 : len(line)-1]
	sync = true
	if bytes.HasSuffix(digits, []byte("+")) || bytes.HasSuffix(digits, []byte("-")) {
		digits, sync = digits[:len(digits)-1], false
	}
	n, err := strconv.ParseInt(string(digits), 10, 64)
	if err != nil || n < 0 {
		return 0, false, false
	}
	return n, sync, true
}

// answerID answers RFC 2971 ID in any state; line is the command's first
// line. The client's fields only go to the logs (the first maxIDKeep
// bytes); the rest of the command is read within the limits of any command
// (readLine, literalLimit).
func (c *conn) answerID(tag string, line []byte) error {
	var keep []byte
	add := func(b []byte) {
		if len(keep) < maxIDKeep {
			keep = append(keep, b[:min(len(b), maxIDKeep-len(keep))]...)
		}
	}
	for {
		add(line)
		n, sync, ok := trailingLiteral(line)
		if !ok {
			break
		}
		if n > c.literalLimit() || (!sync && n > maxNonSyncLiteral) {
			c.srv.metrics.literals.Inc()
			c.bye(fmt.Sprintf("Literals are limited to %d bytes", c.literalLimit()))
			c.Close()
			return errLimit
		}
		if sync {
			if err := c.writeOwn("+ Ready for literal data\r\n"); err != nil {
				return err
			}
		}
		for n > 0 {
			r, err := c.buf()
			if err != nil {
				return err
			}
			b, err := r.Peek(int(min(n, connBufSize)))
			if len(b) == 0 {
				return err
			}
			add(b)
			r.Discard(len(b))
			n -= int64(len(b))
		}
		var err error
		if line, err = c.readLine(); err != nil {
			return err
		}
	}
	_, _, args := splitCommand(keep)
	c.clientID = idSummary(args)
	c.srv.log.Debug("imap client id", "remote", c.raw.RemoteAddr().String(), "id", c.clientID)
	resp := fmt.Sprintf("* ID (\"name\" \"duebridge\" \"version\" %s \"vendor\" \"duebridge\")\r\n%s OK ID completed\r\n",
		quoteIMAP(c.srv.opts.Version), tag)
	return c.writeOwn(resp)
}

// idSummary turns `("name" "iPhone Mail" "os" "iOS")` into
// `name=iPhone Mail os=iOS` for the logs.
func idSummary(args []byte) string {
	var vals []string
	s := string(args)
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			var b strings.Builder
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			vals = append(vals, b.String())
		case len(s)-i >= 3 && strings.EqualFold(s[i:i+3], "NIL"):
			vals = append(vals, "")
			i += 2
		}
	}
	var out []string
	for i := 0; i+1 < len(vals); i += 2 {
		out = append(out, vals[i]+"="+vals[i+1])
	}
	summary := strings.Join(out, " ")
	if len(summary) > 256 {
		summary = summary[:256]
	}
	return summary
}

// quoteIMAP makes an IMAP quoted string of s, dropping what a quoted string
// cannot hold.
func quoteIMAP(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f || r > 0x7e:
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// startTLS answers STARTTLS and runs the handshake under the library.
func (c *conn) startTLS(tag string) error {
	if err := c.writeOwn(tag + " OK Begin TLS negotiation now\r\n"); err != nil {
		return err
	}
	c.wmu.Lock()
	raw := c.transport
	var rd io.Reader = raw
	// Bytes the client sent after STARTTLS in the same packet belong to the
	// handshake (or are an injection attempt, which then fails it); they are
	// never read as commands.
	if c.r != nil && c.r.Buffered() > 0 {
		b, _ := c.r.Peek(c.r.Buffered())
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(b)), raw)
		c.r.Discard(len(b))
	}
	tc := tls.Server(&prefixConn{Conn: raw, r: rd}, c.srv.opts.TLSConfig)
	c.transport, c.isTLS = tc, true
	c.wmu.Unlock()
	raw.SetDeadline(time.Now().Add(c.srv.handshakeTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("starttls handshake: %w", err)
	}
	raw.SetWriteDeadline(time.Time{})
	// The buffer, if still borrowed, is empty; its source reads the new
	// transport from now on.
	c.srv.metrics.starttls.Inc()
	return c.applyReadDeadline()
}

type prefixConn struct {
	net.Conn
	r io.Reader
}

func (p *prefixConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// failed turns a read error into the one the library sees, saying goodbye
// first when our own limit (not the library's) ran out.
func (c *conn) failed(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && c.clamped {
		if c.auth.Load() {
			c.srv.metrics.timeouts.WithLabelValues("idle").Inc()
			c.bye("Autologout; idle for too long")
		} else {
			c.srv.metrics.timeouts.WithLabelValues("login").Inc()
			c.bye("Login timeout")
		}
	}
	return err
}

func (c *conn) bye(text string) {
	c.writeOwn("* BYE " + text + "\r\n")
}

// writeOwn writes a response conn makes itself.
func (c *conn) writeOwn(s string) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.transport.SetWriteDeadline(time.Now().Add(ownWriteTimeout))
	defer c.transport.SetWriteDeadline(time.Time{})
	_, err := io.WriteString(c.transport, s)
	if c.srv.opts.DebugWriter != nil {
		io.WriteString(c.srv.opts.DebugWriter, s)
	}
	return err
}

var (
	capPlain    = []byte(" AUTH=PLAIN")
	capStartTLS = []byte(" STARTTLS LOGINDISABLED")
	capRev1     = []byte("CAPABILITY IMAP4rev1")
	capRev1ID   = []byte("CAPABILITY IMAP4rev1 ID")
)

func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(p) > 0 && p[0] == '+' {
		c.contSeen.Store(true)
	}
	// Capability lists are rewritten only before login and in the answer
	// to the login or to CAPABILITY: nothing there carries message data, so
	// a plain replacement is exact (a FETCH literal could contain the same
	// words).
	if !c.auth.Load() || c.capsReply.Swap(false) {
		q := p
		if c.srv.opts.TLSConfig != nil && !c.isTLS && !c.auth.Load() {
			// Before TLS on a server that has it, capability lists say
			// STARTTLS and LOGINDISABLED instead of AUTH=PLAIN (the
			// library, seeing no *tls.Conn, cannot know).
			q = bytes.ReplaceAll(q, capPlain, capStartTLS)
		}
		// We answer ID (RFC 2971) ourselves, so we advertise it too.
		q = bytes.ReplaceAll(q, capRev1, capRev1ID)
		if len(q) != len(p) {
			if _, err := c.transport.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
	}
	return c.transport.Write(p)
}

func (c *conn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.srv.metrics.conns.Dec()
		c.unholdBuf()
		c.wmu.Lock()
		t := c.transport
		c.wmu.Unlock()
		err = t.Close()
	})
	return err
}

func (c *conn) LocalAddr() net.Addr  { return c.raw.LocalAddr() }
func (c *conn) RemoteAddr() net.Addr { return c.raw.RemoteAddr() }

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *conn) SetWriteDeadline(t time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.transport.SetWriteDeadline(t)
}

// SetReadDeadline takes the library's deadline (30 s for a command line,
// 35 min while authenticated or idling) and shortens it to our limits: the
// login timeout before login, the idle timeout outside IDLE.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.deadline = t
	return c.applyReadDeadline()
}

func (c *conn) applyReadDeadline() error {
	t := c.deadline
	var limit time.Time
	switch {
	case !c.auth.Load():
		limit = c.start.Add(c.srv.opts.LoginTimeout)
	case c.state != stIdle:
		limit = time.Now().Add(c.srv.opts.IdleTimeout)
	}
	c.clamped = false
	if !limit.IsZero() && (t.IsZero() || limit.Before(t)) {
		t, c.clamped = limit, true
	}
	c.wmu.Lock()
	tr := c.transport
	c.wmu.Unlock()
	return tr.SetReadDeadline(t)
}
