package imapserver_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/duebridge/duebridge/bridge"
	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// errorCounter is a slog handler that counts records at error level (a
// recovered panic in go-imap or in the fan-out is logged there).
type errorCounter struct {
	n    atomic.Int64
	msgs sync.Map
}

func (h *errorCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }
func (h *errorCounter) Handle(_ context.Context, r slog.Record) error {
	h.n.Add(1)
	h.msgs.Store(r.Message, true)
	return nil
}
func (h *errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorCounter) WithGroup(string) slog.Handler      { return h }

// Sessions storing, expunging and moving while notifications arrive: no
// panic (the tracker panics on a decreasing count or a bad expunge), and
// afterwards every session numbers the mailbox as the store does.
func TestConcurrentChanges(t *testing.T) {
	t.Parallel()
	cfg := testsvc.Config(t)
	cfg.Limits.IMAPConnsPerUser = 0
	concurrentChanges(t, testsvc.New(t, testsvc.Options{Config: cfg}))
}

func concurrentChanges(t *testing.T, svc *bridge.Service) {
	errs := &errorCounter{}
	ts := serve(t, svc, Options{Logger: slog.New(errs)})
	for i := range 20 {
		testsvc.Ingest(t, svc, task(fmt.Sprint("S-", i), "Seed", "alice"))
	}

	const workers = 4
	const rounds = 25
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range rounds * 2 {
			testsvc.Ingest(t, svc, task(fmt.Sprint("N-", i), "New", "alice"))
		}
	})
	for w := range workers {
		u := newUpdates()
		c := ts.login(t, "alice", u.options())
		mustSelect(t, c, "INBOX")
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				uid := imap.UID(1 + rnd.IntN(60))
				var err error
				switch rnd.IntN(5) {
				case 0, 1:
					err = c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
				case 2:
					err = c.Store(imap.UIDSetNum(uid), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
					if err == nil {
						_, err = c.Expunge().Collect()
					}
				case 3:
					_, err = c.Move(imap.UIDSetNum(uid), "Trash").Wait()
				case 4:
					_, err = c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
				}
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
			}
			if err := c.Noop().Wait(); err != nil {
				t.Errorf("worker %d: NOOP: %v", w, err)
			}
		})
	}
	wg.Wait()

	var want []uint32
	err := testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		want, err = tx.MessageUIDs("alice", Inbox)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c := ts.login(t, "alice", nil)
	d := mustSelect(t, c, "INBOX")
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var got []uint32
	for i, m := range msgs {
		if m.SeqNum != uint32(i+1) {
			t.Errorf("message %d has sequence number %d", i+1, m.SeqNum)
		}
		got = append(got, uint32(m.UID))
	}
	if !slices.Equal(got, want) || int(d.NumMessages) != len(want) {
		t.Errorf("a new session sees %v (EXISTS %d), the store has %v", got, d.NumMessages, want)
	}
	if n := errs.n.Load(); n > 0 {
		var msgs []string
		errs.msgs.Range(func(k, _ any) bool { msgs = append(msgs, k.(string)); return true })
		t.Errorf("%d errors logged: %q", n, msgs)
	}
	if n := ts.srv.RefreshPanics(); n != 0 {
		t.Errorf("recovered panics: %v", n)
	}
}
