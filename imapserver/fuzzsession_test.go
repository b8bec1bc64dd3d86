package imapserver_test

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// FuzzSession sends a logged-in client's bytes (INBOX selected, three
// messages) to a real server, then LOGOUT, and half-closes. Properties: the server answers
// with well-formed lines only, never NO [SERVERBUG], and closes the
// connection within 10 seconds (it never hangs).
func FuzzSession(f *testing.F) {
	for _, s := range FuzzSeeds(f) {
		f.Add(s)
	}
	cfg := testsvc.Config(f)
	cfg.Limits.LoginFailureDelay = 0
	cfg.Limits.LockoutFailures = 1 << 30
	cfg.Limits.IMAPConnsPerUser = 1 << 20
	cfg.Limits.IMAPLiteralBytes = 64 << 10
	ts := serve(f, testsvc.New(f, testsvc.Options{Config: cfg}), Options{LoginTimeout: 5 * time.Second})
	for _, id := range []string{"F-1", "F-2", "F-3"} {
		testsvc.Ingest(f, ts.svc, task(id, "Fuzz "+id, "alice"))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		done := make(chan error, 1)
		go func() {
			_, err := io.Copy(c, io.MultiReader(strings.NewReader("L1 LOGIN alice alice-pw\r\nL2 SELECT INBOX\r\n"),
				bytes.NewReader(in), strings.NewReader("\r\nZZ LOGOUT\r\n")))
			c.(*net.TCPConn).CloseWrite()
			done <- err
		}()
		if err := CheckResponses(t, bufio.NewReader(c)); err != nil {
			t.Fatalf("%v; input %q", err, in)
		}
		<-done
	})
}
