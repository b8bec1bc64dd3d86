package imapserver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Fuzz targets. `go test` runs the seeds (the client lines of
// testdata/imap/*.txt and a few hand-made ones); `go test -fuzz=FuzzX`
// explores. FuzzConnReader drives the real wrapper (on the fake backend,
// which it never reaches); FuzzSession (fuzzsession_test.go) the real
// server on the real core.

// fuzzSeeds returns the client side of every transcript, one seed each.
func fuzzSeeds(f *testing.F) [][]byte {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "imap", "*.txt"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no transcripts: %v", err)
	}
	var out [][]byte
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		var seed bytes.Buffer
		for _, l := range strings.Split(string(b), "\n") {
			if c, ok := strings.CutPrefix(l, "C: "); ok {
				seed.WriteString(c + "\r\n")
			}
		}
		out = append(out, seed.Bytes())
	}
	return append(out,
		[]byte("1 ID (\"name\" {3}\r\niOS)\r\n2 CAPABILITY\r\n"),
		[]byte("1 IDLE\r\nDONE\r\n2 NOOP\r\n"),
		[]byte("1 SEARCH ((((ALL))))\r\n2 FETCH 1 (BODY.PEEK[HEADER.FIELDS (DATE \"X Y\")])\r\n"),
		[]byte("1 STORE 1 +FLAGS ($Work $Later)\r\n2 UID FETCH 0 FLAGS\r\n3 SELECT \"&\"\r\n"),
		[]byte("1 SEARCH TEXT {3+}\r\nabc SMALLER 10\r\n2 AUTHENTICATE PLAIN !!\r\n"),
	)
}

// responseLine matches every line a server may send outside literals. A
// tagged line echoes the client's tag, which go-imap accepts with "+"
// inside (RFC 3501 excludes it; a library matter, left alone).
var responseLine = regexp.MustCompile(`^(\* [^\r\n]*|\+[^\r\n]*|[^\s*+(){%"\\\]][^\s*(){%"\\\]]* (OK|NO|BAD)( [^\r\n]*)?)$`)

// checkResponses reads a server's output until EOF and checks that it is a
// sequence of well-formed lines and literals, and that no client input was
// answered as a server bug. The last command may have been cut by the end
// of the input (a literal left open); its answer is not held against the
// server, so a SERVERBUG counts only when the conversation went on.
func checkResponses(t *testing.T, r *bufio.Reader) error {
	var serverBug string
	for {
		line, err := r.ReadString('\n')
		if serverBug != "" && line != "" {
			return errors.New("client input answered as a server bug: " + strconv.Quote(serverBug))
		}
		if errors.Is(err, syscall.ECONNRESET) {
			// The server closed (BYE) with client bytes still unread, so
			// the kernel reset the connection: an end like EOF.
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("output ends inside a line: " + strconv.Quote(line))
			}
			return err
		}
		l := strings.TrimSuffix(line, "\r\n")
		if len(l) == len(line) || !responseLine.MatchString(l) {
			return errors.New("malformed response line " + strconv.Quote(line))
		}
		if strings.Contains(l, "[SERVERBUG]") {
			serverBug = l
		}
		// A literal's bytes, then the rest of the response's line (which
		// may announce another literal).
		for {
			n, _, ok := trailingLiteral([]byte(l))
			if !ok {
				break
			}
			if _, err := io.CopyN(io.Discard, r, n); err != nil {
				return errors.New("literal cut short: " + err.Error())
			}
			rest, err := r.ReadString('\n')
			if err != nil {
				return errors.New("response ends after a literal: " + strconv.Quote(rest))
			}
			l = strings.TrimSuffix(rest, "\r\n")
		}
	}
}

// FuzzConnReader drives the wrapper alone (conn.go) the way go-imap does:
// it reads what the wrapper hands on and answers "+" to each synchronising
// literal. Properties: no panic and no hang; the wrapper hands on only
// bytes the client sent, in order; whatever it answers itself is
// well-formed.
func FuzzConnReader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	srv := New(newFakeBackend(Limits{LiteralBytes: 64 << 10}), Options{Logger: discardLogger()})
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, in []byte) {
		tr := &scriptedConn{r: bytes.NewReader(in)}
		c := newConn(srv, tr, false)
		defer c.Close()
		var out bytes.Buffer
		done := make(chan struct{})
		go func() {
			defer close(done)
			buf := make([]byte, 700)
			for {
				n, err := c.Read(buf)
				out.Write(buf[:n])
				if lit, sync, ok := trailingLiteral(buf[:n]); ok && sync && lit > 0 && bytes.HasSuffix(buf[:n], []byte("\n")) {
					c.Write([]byte("+ Ready\r\n"))
				}
				if err != nil {
					return
				}
			}
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("wrapper hung on %q", in)
		}
		if !isSubsequence(out.Bytes(), in) {
			t.Fatalf("handed on %q, not a subsequence of the input %q", out.Bytes(), in)
		}
		if err := checkResponses(t, bufio.NewReader(bytes.NewReader(tr.written()))); err != nil {
			t.Fatalf("%v; input %q", err, in)
		}
	})
}

// scriptedConn is a client that sends a fixed script and then EOF, and
// records what it is sent.
type scriptedConn struct {
	net.Conn // nil: only the methods below are used
	r        io.Reader
	mu       sync.Mutex
	w        bytes.Buffer
}

func (s *scriptedConn) Read(p []byte) (int, error) { return s.r.Read(p) }
func (s *scriptedConn) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
func (s *scriptedConn) written() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.w.Bytes())
}
func (s *scriptedConn) Close() error                     { return nil }
func (s *scriptedConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (s *scriptedConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (s *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (s *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (s *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// isSubsequence reports whether a's bytes appear in b in order: the wrapper
// may swallow commands but never invents or reorders client bytes.
func isSubsequence(a, b []byte) bool {
	i := 0
	for j := 0; i < len(a) && j < len(b); j++ {
		if a[i] == b[j] {
			i++
		}
	}
	return i == len(a)
}
