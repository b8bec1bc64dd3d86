package imapserver_test

import (
	"testing"
	"time"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// waitHeld waits (bounded) until n connections hold a read buffer.
func waitHeld(t *testing.T, ts *testServer, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for ts.srv.ReadBuffersHeld() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections hold a read buffer, want %d", ts.srv.ReadBuffersHeld(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An idling connection (and one between commands) holds no read buffer of
// ours: at 100,000 idle connections each KiB is 100 MB. Commands still
// arrive whole, pipelined or split over packets.
func TestIdleConnHoldsNoReadBuffer(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	const n = 5
	conns := make([]*rawConn, n)
	for i := range conns {
		rc := ts.raw(t)
		rc.expect(`^\* OK`)
		rc.send("1 LOGIN alice alice-pw", "2 SELECT INBOX", "3 IDLE") // one packet
		rc.expect(`^\+ idling`)
		conns[i] = rc
	}
	waitHeld(t, ts, 0)

	testsvc.Ingest(t, ts.svc, task("T-1", "One", "alice"))
	for _, rc := range conns {
		rc.expect(`^\* 1 EXISTS`)
	}
	rc := conns[0]
	rc.send("DONE", "4 NOOP")
	rc.expect(`^3 OK`)
	rc.expect(`^4 OK`)
	waitHeld(t, ts, 0)

	// A command split over two packets: the buffer is held in between.
	if _, err := rc.c.Write([]byte("5 NO")); err != nil {
		t.Fatal(err)
	}
	waitHeld(t, ts, 1)
	if _, err := rc.c.Write([]byte("OP\r\n")); err != nil {
		t.Fatal(err)
	}
	rc.expect(`^5 OK`)
	waitHeld(t, ts, 0)

	// A synchronising literal: the buffer stays through the command.
	rc.send("6 LIST \"\" {5}")
	rc.expect(`^\+`)
	rc.send("INBOX")
	rc.expect(`^\* LIST .*INBOX`)
	rc.expect(`^6 OK`)
	waitHeld(t, ts, 0)

	rc.send("7 LOGOUT")
	rc.expect(`^7 OK`)
	for _, rc := range conns[1:] {
		rc.c.Close()
	}
	waitHeld(t, ts, 0)
}
