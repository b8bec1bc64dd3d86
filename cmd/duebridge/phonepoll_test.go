package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/internal/iphone"
)

// recordConn counts the TLS records it reads (RFC 8446 §5.1: a 5-byte
// header with the content type and the length) and keeps the largest.
type recordConn struct {
	net.Conn
	hdr     [5]byte
	nh      int // header bytes seen of the current record
	left    int // body bytes still to come of the current record
	records int
	largest int
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	for b := p[:n]; len(b) > 0; {
		if c.left > 0 {
			k := min(c.left, len(b))
			c.left -= k
			b = b[k:]
			continue
		}
		k := copy(c.hdr[c.nh:], b)
		c.nh += k
		b = b[k:]
		if c.nh == len(c.hdr) {
			c.nh = 0
			c.left = int(c.hdr[3])<<8 | int(c.hdr[4])
			c.records++
			c.largest = max(c.largest, c.left)
		}
	}
	return n, err
}

// TestPhonePollFullSizeRecords checks that a phone's poll, a new TLS
// connection, gets the home's 207 (~22 KB) in full-size TLS records, not
// in the ~1 KB records Go's dynamic record sizing starts a connection
// with: each record is a write syscall of the server.
func TestPhonePollFullSizeRecords(t *testing.T) {
	w := startPhones(t, 1)
	raw, err := net.Dial("tcp", strings.TrimPrefix(w.base, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	rc := &recordConn{Conn: raw}
	conn := tls.Client(rc, &tls.Config{RootCAs: w.pool, ServerName: "localhost"})
	defer conn.Close()
	home := "/dav/" + w.users[0] + "/calendars/"
	fmt.Fprintf(conn, "PROPFIND %s HTTP/1.1\r\nHost: localhost\r\nDepth: 1\r\nContent-Type: text/xml; charset=utf-8\r\n"+
		"Authorization: Basic %s\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		home, base64.StdEncoding.EncodeToString([]byte(w.users[0]+":"+w.pws[0])), len(iphone.HomeBody), iphone.HomeBody)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusMultiStatus {
		t.Fatalf("PROPFIND home: HTTP %d, %v", resp.StatusCode, err)
	}
	if len(body) < 16<<10 {
		t.Fatalf("the home's answer is %d bytes; the test needs one larger than a TLS record", len(body))
	}
	t.Logf("%d-byte answer; %d TLS records in all, the largest %d bytes", len(body), rc.records, rc.largest)
	if rc.largest < 16<<10 {
		t.Errorf("the largest TLS record is %d bytes, want a full-size one (16 KiB of data)", rc.largest)
	}
}
