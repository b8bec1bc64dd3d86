package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/iphone"
)

// The iPhone scenarios: the real server on 127.0.0.1:0, an iPhone model
// (internal/iphone) speaking to it as iOS does, and assertions about what
// the person holding the phone sees. Due dates are relative to now; the
// phone's alarms are evaluated on its own virtual clock, so nothing sleeps.

type phoneServer struct {
	base, imap string
	stop       func()
}

// startPhoneServer runs serve on a config in dir with alice and bob.
func startPhoneServer(t *testing.T, dir string) *phoneServer {
	t.Helper()
	return startPhoneServerAt(t, writeConfig(t, dir, "alice", "bob"))
}

// startPhoneServerAt runs serve on the config file at path.
func startPhoneServerAt(t *testing.T, path string) *phoneServer {
	t.Helper()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	o := serveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Ready: func(a Addrs, _ *bridge.Service) { ready <- a }}
	rerendered := untilRerendered(&o)
	go func() { done <- serve(ctx, cfg, o) }()
	select {
	case a := <-ready:
		rerendered(t) // the scenarios read what a restart re-renders
		ps := &phoneServer{base: "http://" + a.HTTP.String(), imap: a.IMAP.String()}
		var once bool
		ps.stop = func() {
			if once {
				return
			}
			once = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		t.Cleanup(ps.stop)
		return ps
	case err := <-done:
		cancel()
		t.Fatalf("serve ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve not ready after 30s")
	}
	return nil
}

// post sends one task from the tracker.
func (ps *phoneServer) post(t *testing.T, task map[string]any) {
	t.Helper()
	b, _ := json.Marshal(task)
	if code, body := postTask(t, ps.base, b); code != 200 {
		t.Fatalf("webhook %s: %d %s", b, code, body)
	}
}

func newPhone(t *testing.T, ps *phoneServer, user string) *iphone.Phone {
	t.Helper()
	p := iphone.New(ps.base, user, user+"-pw", ps.imap)
	if err := p.Discover(context.Background()); err != nil {
		t.Fatalf("%s's phone: %v\n%s", user, err, strings.Join(p.Log, "\n"))
	}
	return p
}

func syncPhone(t *testing.T, p *iphone.Phone) {
	t.Helper()
	if err := p.Sync(context.Background()); err != nil {
		t.Fatalf("sync: %v\n%s", err, strings.Join(p.Log, "\n"))
	}
}

func notifications(t *testing.T, p *iphone.Phone, from, to time.Time) []iphone.Notification {
	t.Helper()
	n, err := p.Notifications(from, to)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wantAlertsAt checks that the person sees exactly one notification at each
// of the instants between from and to, whatever the app.
func wantAlertsAt(t *testing.T, p *iphone.Phone, title string, from, to time.Time, want ...time.Time) {
	t.Helper()
	var got []time.Time
	var apps []string
	for _, n := range notifications(t, p, from, to) {
		if n.Title == title {
			got = append(got, n.At)
			apps = append(apps, string(n.App))
		}
	}
	if slices.EqualFunc(got, want, time.Time.Equal) {
		return
	}
	if distinct := slices.CompactFunc(slices.Clone(got), time.Time.Equal); !slices.EqualFunc(distinct, want, time.Time.Equal) {
		t.Fatalf("alerts of %q between %s and %s at %v (%v), want at %v", title, from, to, got, apps, want)
	}
	t.Errorf("alerts of %q between %s and %s: %v (%v), want one at each of %v", title, from, to, got, apps, want)
}

// TestIPhoneScenarios walks one user's phone through a task's life.
func TestIPhoneScenarios(t *testing.T) {
	ps := startPhoneServer(t, t.TempDir())
	now := time.Now().UTC().Truncate(time.Minute)
	due := now.Add(72 * time.Hour)
	lead := []time.Duration{24 * time.Hour, time.Hour} // the default notifications.lead_times
	ps.post(t, map[string]any{"id": "A", "title": "Ship release", "assignees": []string{"alice"},
		"due": due.Format(time.RFC3339), "priority": "normal"})
	phone := newPhone(t, ps, "alice")
	syncPhone(t, phone)
	at := func(d time.Time) []time.Time {
		var out []time.Time
		for _, l := range lead {
			out = append(out, d.Add(-l))
		}
		slices.SortFunc(out, time.Time.Compare)
		return out
	}

	t.Run("one notification per lead time across both apps", func(t *testing.T) {
		wantAlertsAt(t, phone, "Ship release", now, due.Add(time.Hour), at(due)...)
	})

	t.Run("an ordinary task shows no priority marks", func(t *testing.T) {
		r, err := phone.Reminder("Ship release")
		if err != nil {
			t.Fatal(err)
		}
		if r.Marks != "" {
			t.Errorf("Reminders shows %q for a normal task, want no marks", r.Marks)
		}
	})

	t.Run("a moved due date moves the alert", func(t *testing.T) {
		due = due.Add(24 * time.Hour)
		ps.post(t, map[string]any{"id": "A", "title": "Ship release", "assignees": []string{"alice"},
			"due": due.Format(time.RFC3339), "priority": "normal", "updated_at": time.Now().UTC().Format(time.RFC3339Nano)})
		syncPhone(t, phone)
		wantAlertsAt(t, phone, "Ship release", now, due.Add(time.Hour), at(due)...)
	})

	t.Run("a completion on another device converges", func(t *testing.T) {
		ipad := newPhone(t, ps, "alice")
		syncPhone(t, ipad)
		if err := ipad.SetDone(context.Background(), "Ship release", true, time.Now()); err != nil {
			t.Fatal(err)
		}
		syncPhone(t, phone)
		r, err := phone.Reminder("Ship release") // also: exactly one, no duplicate
		if err != nil {
			t.Fatal(err)
		}
		if !r.Completed {
			t.Error("the iPhone still shows the reminder open after the iPad completed it")
		}
		if n := notifications(t, phone, now, due.Add(time.Hour)); len(n) != 0 {
			t.Errorf("a completed task still alerts: %v", n)
		}
	})

	t.Run("a reopened reminder alerts again", func(t *testing.T) {
		if err := phone.SetDone(context.Background(), "Ship release", false, time.Now()); err != nil {
			t.Fatal(err)
		}
		syncPhone(t, phone)
		r, err := phone.Reminder("Ship release")
		if err != nil {
			t.Fatal(err)
		}
		if r.Completed {
			t.Fatal("the reminder is still completed after un-ticking it")
		}
		wantAlertsAt(t, phone, "Ship release", now, due.Add(time.Hour), at(due)...)
	})

	t.Run("an assignment appears once", func(t *testing.T) {
		ps.post(t, map[string]any{"id": "B", "title": "Write notes", "assignees": []string{"bob"},
			"due": due.Format(time.RFC3339), "updated_at": time.Now().UTC().Format(time.RFC3339Nano)})
		syncPhone(t, phone)
		if _, err := phone.Reminder("Write notes"); err == nil {
			t.Fatal("alice sees bob's task")
		}
		ps.post(t, map[string]any{"id": "B", "title": "Write notes", "assignees": []string{"bob", "alice"},
			"due": due.Format(time.RFC3339), "updated_at": time.Now().UTC().Add(time.Second).Format(time.RFC3339Nano)})
		syncPhone(t, phone)
		syncPhone(t, phone)
		if _, err := phone.Reminder("Write notes"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Mail shows every subject", func(t *testing.T) {
		rows, err := phone.MailList(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var subjects []string
		for _, r := range rows {
			subjects = append(subjects, r.Subject)
			if r.Date.IsZero() || !strings.Contains(r.From, "@") {
				t.Errorf("row %+v: no date or sender", r)
			}
		}
		for _, want := range []string{"Assigned to you: Ship release", "Due date changed: Ship release", "Assigned to you: Write notes"} {
			if !slices.Contains(subjects, want) {
				t.Errorf("Mail shows %q, want %q among them", subjects, want)
			}
		}
	})

	t.Run("a restored server converges by a full resync", func(t *testing.T) {
		before, err := phone.Items()
		if err != nil {
			t.Fatal(err)
		}
		ps.stop()
		// The restored server has a new database: the tasks come back from
		// the tracker, the phone's sync tokens mean nothing there.
		ps2 := startPhoneServer(t, t.TempDir())
		for _, task := range []map[string]any{
			{"id": "A", "title": "Ship release", "assignees": []string{"alice"}, "due": due.Format(time.RFC3339), "priority": "normal"},
			{"id": "B", "title": "Write notes", "assignees": []string{"bob", "alice"}, "due": due.Format(time.RFC3339)},
		} {
			ps2.post(t, task)
		}
		phone.Base, phone.IMAPAddr = ps2.base, ps2.imap
		syncPhone(t, phone)
		resyncs := 0
		for _, c := range phone.Collections() {
			resyncs += c.FullResyncs
		}
		if resyncs == 0 {
			t.Error("no sync token was refused by the new database")
		}
		after, err := phone.Items()
		if err != nil {
			t.Fatal(err)
		}
		titles := func(items []iphone.Item) (out []string) {
			for _, it := range items {
				out = append(out, string(it.App)+":"+it.Title)
			}
			return out
		}
		if !slices.Equal(titles(after), titles(before)) {
			t.Errorf("after the restore the phone shows %v, before %v", titles(after), titles(before))
		}
	})
}
