package imapserver_test

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// Two replicas on one PostgreSQL schema; an IMAP client idles on replica
// B. B's LISTEN connection is killed, and replica A commits a message for
// that client while B is not listening, so its notification is lost. B
// resyncs once it listens again: the client sees the message at once, not
// with the user's next change.
func TestPostgresIdleCatchesUpAfterListenerReconnect(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	source := testsvc.PostgresSource(t, "imap")
	replica := func() *bridge.Service {
		return testsvc.Open(t, transcriptConfig(t), bridge.Options{Logger: testLogger(t)}, func(o store.Options) (store.Store, error) {
			o.Logger = testLogger(t)
			return store.Open(ctx, store.Postgres, source, o)
		})
	}
	a, b := replica(), replica()
	appendOn := func(svc *bridge.Service, during func()) {
		err := testsvc.Store(t, svc).Update(ctx, func(tx store.Tx) error {
			if _, err := tx.EnsureMailbox("alice", Inbox, ""); err != nil {
				return err
			}
			if err := tx.AppendMessage(&store.Message{User: "alice", Mailbox: Inbox, Data: []byte("Subject: x\r\n\r\nx")}); err != nil {
				return err
			}
			during()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	appendOn(a, func() {})

	ts := serve(t, b, Options{})
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	rc.send("1 LOGIN alice alice-pw", "2 SELECT INBOX")
	rc.expect(`^2 OK \[READ-WRITE\]`)
	rc.send("3 IDLE")
	rc.next(`^\+ idling`)
	// B listens: a commit on A reaches the client through B. (Retried: the
	// listener connects asynchronously.)
	for n := 2; ; n++ {
		appendOn(a, func() {})
		if l, err := rc.line(time.Second); err == nil {
			if !regexp.MustCompile(`^\* \d+ EXISTS$`).MatchString(l) {
				t.Fatalf("got %q, want an EXISTS", l)
			}
			break
		}
		if n > 10 {
			t.Fatal("replica B never heard replica A")
		}
	}
	var exists int
	if err := testsvc.Store(t, a).View(ctx, func(tx store.Tx) error {
		c, err := tx.CountMessages("alice", Inbox)
		exists = int(c)
		return err
	}); err != nil {
		t.Fatal(err)
	}

	// A commits while the listeners are down: the transaction is open when
	// they are killed and commits as soon as they are gone, well before a
	// listener reconnects (100 ms later at the earliest).
	appendOn(a, func() { testsvc.KillListeners(t, source) })
	rc.expect(fmt.Sprintf(`^\* %d EXISTS$`, exists+1))
	rc.send("DONE")
	rc.expect(`^3 OK IDLE`)
}
