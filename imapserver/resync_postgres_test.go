package imapserver_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
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
	base := os.Getenv(pgEnv)
	if base == "" {
		t.Skip(pgEnv + " is not set; .ci/postgres.sh prints a value")
	}
	ctx := context.Background()
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	schema := fmt.Sprintf("duebridge_imap_%016x", rand.Uint64())
	if _, err := admin.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec(`DROP SCHEMA ` + schema + ` CASCADE`) })
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	replica := func() *bridge.Service {
		return testsvc.Open(t, transcriptConfig(t), bridge.Options{Logger: testLogger(t)}, func(o store.Options) (store.Store, error) {
			o.Logger = testLogger(t)
			return store.Open(ctx, store.Postgres, u.String(), o)
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
	listen := `LISTEN "duebridge_` + schema + `"`
	appendOn(a, func() {
		if _, err := admin.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`, listen); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			var n int
			if err := admin.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE query = $1`, listen).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the listeners did not end")
			}
			time.Sleep(time.Millisecond)
		}
	})
	rc.expect(fmt.Sprintf(`^\* %d EXISTS$`, exists+1))
	rc.send("DONE")
	rc.expect(`^3 OK IDLE`)
}
