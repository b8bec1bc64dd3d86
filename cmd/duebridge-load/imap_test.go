package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// TestAuditPushes: idle connections on a real duebridge IMAP server, and
// the audit sorts what they missed. A message committed through the
// server's own store is announced; one committed by a second store on the
// same SQLite file (another process: nothing announces it to this one) is
// in the mailbox but never pushed, a lost announcement; a message the
// tool expected but nobody stored is a miscount; a connection that no
// longer answers is dead.
func TestAuditPushes(t *testing.T) {
	ctx := context.Background()
	cfg := testsvc.Config(t)
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	srv := imapserver.New(svc.IMAP(), imapserver.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	appendTo := func(st store.Store, user string) {
		t.Helper()
		err := st.Update(ctx, func(tx store.Tx) error {
			if _, err := tx.EnsureMailbox(user, bridge.Inbox, ""); err != nil {
				return err
			}
			return tx.AppendMessage(&store.Message{User: user, Mailbox: bridge.Inbox, Data: []byte("Subject: x\r\n\r\nx")})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	const alice, bob = 0, 1
	var idlers []*idler
	for _, u := range []int{alice, alice, alice, bob} {
		name := []string{"alice", "bob"}[u]
		d, err := dialIdler(ctx, ln.Addr().String(), u, name, testsvc.Password(name), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(d.close)
		d.record()
		idlers = append(idlers, d)
	}
	arrived := func(d *idler) int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.arrivals)
	}

	appendTo(testsvc.Store(t, svc), "alice") // announced
	deadline := time.Now().Add(10 * time.Second)
	for arrived(idlers[0]) < 1 || arrived(idlers[1]) < 1 || arrived(idlers[2]) < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the announced message never reached alice's connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	other, err := store.Open(ctx, store.SQLite, cfg.DataDir, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	appendTo(other, "alice") // committed by "another process": never announced here
	idlers[2].c.Close()      // alice's third connection dies

	// alice's triggers: 2 (one announced, one not); bob's: 1 that stored nothing.
	a := auditPushes(idlers, func(d *idler) int { return []int{2, 1}[d.user] }, 4, 5*time.Second)
	want := pushAudit{Missing: 4, Unpushed: 2, Absent: 1, Dead: 1}
	if a != want {
		t.Fatalf("audit %+v, want %+v", a, want)
	}
	if arrived(idlers[0]) != 1 {
		t.Errorf("the probe's NOOP/STATUS counted as pushes: %d arrivals", arrived(idlers[0]))
	}
	t.Log(a.note(announceWait))
}
