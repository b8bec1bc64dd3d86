package submission

import (
	"bufio"
	"errors"
	"io"
	"net"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// replyRE is the shape of every line the server may send (RFC 5321 4.2).
var replyRE = regexp.MustCompile(`^[2-5][0-9][0-9][ -][ -~]*\r\n$`)

// FuzzSession sends arbitrary client input over a real TCP connection and
// half-closes it. Properties: the server answers only with well-formed
// reply lines, never accepts a message, and ends the session (no hang).
func FuzzSession(f *testing.F) {
	for _, s := range []string{
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAGFsaWNlLXB3\r\nMAIL FROM:<a@b>\r\nQUIT\r\n",
		"HELO x\r\nAUTH LOGIN\r\nYWxpY2U=\r\nYWxpY2UtcHc=\r\nRCPT TO:<x@y>\r\nDATA\r\n.\r\n",
		"EHLO\r\nSTARTTLS\r\nAUTH PLAIN\r\n*\r\nVRFY a\r\nHELP\r\nNOOP\r\nRSET\r\nBDAT 1\r\n",
		"AUTH PLAIN =\r\n\x00\xff\r\n" + string(make([]byte, 5000)) + "\n",
	} {
		f.Add([]byte(s))
	}
	addr := start(f, Options{Timeout: 2 * time.Second, AuthTimeout: 2 * time.Second, MaxUnauthPerAddress: 1000, MaxUnauth: 1000}, false)
	f.Fuzz(func(t *testing.T, input []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			c.Write(input)
			c.(*net.TCPConn).CloseWrite()
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) && line == "" {
				return // closed; a reset when it closed with input unread
			}
			if err != nil {
				t.Fatalf("reading replies: %v (after %q)", err, line)
			}
			if !replyRE.MatchString(line) {
				t.Fatalf("malformed reply line %q", line)
			}
			if line[:3] == "250" && len(line) > 4 && line[4:] == "2.0.0 Ok: queued\r\n" {
				t.Fatalf("a message was accepted")
			}
		}
	})
}
