package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// tcpTimer is the "tr" column of /proc/net/tcp for the socket from local to
// remote: 0 no timer, 1 retransmit, 2 keep-alive, 4 zero-window probe.
func tcpTimer(t *testing.T, local, remote *net.TCPAddr) (string, bool) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	hexAddr := func(a *net.TCPAddr) string {
		ip := a.IP.To4()
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
	}
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 5 && f[1] == hexAddr(local) && f[2] == hexAddr(remote) {
			return strings.SplitN(f[5], ":", 2)[0], true
		}
	}
	return "", false
}

// HTTP connections end within the server's timeouts, so TCP keep-alive
// only cost four setsockopt calls per connection, and a phone opens one
// per poll. The server's end of an idle HTTP connection carries no
// keep-alive timer.
func TestHTTPConnectionsWithoutTCPKeepAlive(t *testing.T) {
	r := start(t, writeConfig(t, t.TempDir(), "alice"))
	c, err := net.Dial("tcp", strings.TrimPrefix(r.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One request answered on a kept-open connection: the server has
	// accepted and set up its socket.
	fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	server, client := c.RemoteAddr().(*net.TCPAddr), c.LocalAddr().(*net.TCPAddr)
	// Until our ACK of the answer arrives the server's socket shows its
	// retransmit timer; wait for that to end, then look.
	deadline := time.Now().Add(10 * time.Second)
	for {
		tr, ok := tcpTimer(t, server, client)
		if !ok {
			t.Fatalf("no socket %v -> %v in /proc/net/tcp", server, client)
		}
		if tr != "01" || time.Now().After(deadline) {
			if tr != "00" {
				t.Errorf("server's end of an idle HTTP connection: timer %s, want 00 (none; 02 is keep-alive)", tr)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
