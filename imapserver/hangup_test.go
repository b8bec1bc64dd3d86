package imapserver_test

import (
	"testing"
	"time"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestHangUpDuringIdle: a client that sends IDLE and hangs up at once makes
// Close run while the IDLE goroutine may still read the selection (a data
// race before the selection became atomic; run with -race).
func TestHangUpDuringIdle(t *testing.T) {
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("H-1", "Hang up", "alice"))
	for i := 0; i < 20; i++ {
		rc := ts.raw(t)
		rc.expect(`^\* OK`)
		rc.send("a LOGIN alice "+testsvc.Password("alice"), "b SELECT INBOX", "c IDLE")
		rc.expect(`^\+ `)
		rc.c.Close()
	}
	// The server is still fine for the next client.
	time.Sleep(50 * time.Millisecond)
	c := ts.login(t, "alice", nil)
	mustSelect(t, c, "INBOX")
}
