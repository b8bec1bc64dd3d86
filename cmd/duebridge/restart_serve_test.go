package main

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/store"
)

// untilRerendered makes o report the end of the start's re-render checks;
// the returned wait blocks until then and fails the test on their error.
// Harnesses whose tests read what the re-render writes wait on it after
// Ready, which now fires as soon as the listeners serve.
func untilRerendered(o *serveOptions) (wait func(testing.TB)) {
	inner := o.Rerendered
	c := make(chan error, 1)
	o.Rerendered = func(err error) {
		if inner != nil {
			inner(err)
		}
		c <- err
	}
	return func(t testing.TB) {
		t.Helper()
		select {
		case err := <-c:
			if err != nil {
				t.Fatalf("start re-render: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("start re-render not done after 30s")
		}
	}
}

// A restart whose re-render checks have work to do (the lead times changed
// and bob was added while duebridge was stopped) answers phones before that
// work is done. The test holds the store's writer from Opened on, so the
// re-render cannot commit a batch until it is let go: the server must be
// listening and answer alice's authenticated polls meanwhile, with the
// objects as the last run rendered them. A reload arriving meanwhile
// (lead times changed again) is applied after the start's re-render, not
// lost: once the writer is let go both users' phones see the reload's
// lead times through their ordinary sync.
//
// Before serve listened only after the re-render, this failed: Ready
// never came while the writer was held.
func TestServesWhileStartRerenders(t *testing.T) {
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "alice")
	first := startPhoneServerAt(t, cfgPath)
	now := time.Now().UTC().Truncate(time.Minute)
	due := now.Add(72 * time.Hour)
	first.post(t, map[string]any{"id": "A", "title": "Ship release", "assignees": []string{"alice", "bob"},
		"due": due.Format(time.RFC3339)})
	oldAlerts := []time.Time{due.Add(-24 * time.Hour), due.Add(-time.Hour)}
	syncPhone(t, newPhone(t, first, "alice")) // alice's phone was in use before
	first.stop()

	base := addBobAndLeadTimes3h(t, dir, cfgPath)
	cfg := loadConfig(t, cfgPath)

	// Hold the store's single writer from before the re-render starts.
	held, release := make(chan struct{}), make(chan struct{})
	released := false
	letGo := func() {
		if !released {
			released = true
			close(release)
		}
	}
	t.Cleanup(letGo)
	reloaded := make(chan struct{}, 4)
	var svc *bridge.Service
	ready := make(chan *phoneServer, 1)
	rerendered := make(chan error, 1)
	o := serveOptions{
		Logger: slog.New(notifyHandler{slog.NewTextHandler(io.Discard, nil), "config reloaded", reloaded}),
		Opened: func(_ *bridge.Service, st store.Store) {
			go st.Update(context.Background(), func(store.Tx) error {
				close(held)
				<-release
				return nil
			})
			<-held
		},
		Ready: func(a Addrs, s *bridge.Service) {
			svc = s // read after the send below
			ready <- &phoneServer{base: "http://" + a.HTTP.String(), imap: a.IMAP.String()}
		},
		Rerendered: func(err error) { rerendered <- err },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, o) }()
	t.Cleanup(func() {
		letGo()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var second *phoneServer
	select {
	case second = <-ready:
	case err := <-done:
		t.Fatalf("serve ended before ready: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("not serving 15 s into a start whose re-render is held: phones' polls are refused meanwhile")
	}

	// Served while the re-render waits: alice's objects as last rendered.
	alice := newPhone(t, second, "alice")
	syncPhone(t, alice)
	wantAlertsAt(t, alice, "Ship release", now, due.Add(time.Hour), oldAlerts...)
	select {
	case err := <-rerendered:
		t.Fatalf("the start's re-render ended (%v) while the store's writer was held", err)
	default:
	}

	// A reload meanwhile swaps the config now and re-renders after the
	// start's re-render.
	writeAtomic(t, cfgPath, base+"notifications:\n  lead_times: [5h]\n")
	waitFor(t, 30*time.Second, "the reload's config swapped in", func() bool { return svc.Config() != cfg })
	letGo()
	select {
	case err := <-rerendered:
		if err != nil {
			t.Fatalf("start re-render: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("start re-render not done 30 s after the writer was let go")
	}
	select {
	case <-reloaded:
	case <-time.After(30 * time.Second):
		t.Fatal("the reload was not applied within 30 s")
	}
	syncPhone(t, alice)
	wantAlertsAt(t, alice, "Ship release", now, due.Add(time.Hour), due.Add(-5*time.Hour))
	bob := newPhone(t, second, "bob")
	syncPhone(t, bob)
	wantAlertsAt(t, bob, "Ship release", now, due.Add(time.Hour), due.Add(-5*time.Hour))
}

// notifyHandler passes records on and signals c for each one whose
// message is msg ("config reloaded" is logged after SetConfig, and so
// after the reload's re-render, returned).
type notifyHandler struct {
	slog.Handler
	msg string
	c   chan struct{}
}

func (h notifyHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.c <- struct{}{}:
		default:
		}
	}
	return h.Handler.Handle(ctx, r)
}
