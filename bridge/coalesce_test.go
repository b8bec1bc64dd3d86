package bridge_test

import (
	"context"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
)

// sharedTask is task() assigned to alice and bob.
func sharedTask() bridge.TaskInput {
	in := task()
	in.Assignees = []string{"alice", "bob"}
	return in
}

// flip has bob tick (done) or un-tick the reminder on his phone.
func (w *world) flip(done bool) {
	w.t.Helper()
	if err := w.svc.Complete(context.Background(), "bob", "tracker", "T-1", done, w.clock.Now()); err != nil {
		w.t.Fatal(err)
	}
}

// flipMails are alice's done/reopened mails.
func (w *world) flipMails() []sentMail {
	return w.mails("alice", string(render.MailDone), string(render.MailReopened))
}

// TestFlipsCoalesce is issue 11 item 8: bob ticks and un-ticks one reminder
// five times (ten flips within a minute); alice gets one mail with the final
// state once the window has passed, or none when it ends as it began.
func TestFlipsCoalesce(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		flips int
		want  []string
	}{
		{"ends done", 9, []string{"Done: Ship release"}},
		{"ends as it began", 10, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, nil)
			w.ingest(sharedTask())
			w.tick()
			for i := range c.flips {
				w.flip(i%2 == 0)
				w.clock.Advance(5 * time.Second)
			}
			if got := w.flipMails(); len(got) != 0 {
				t.Fatalf("mails during the window = %d, want 0 (they wait for the window)", len(got))
			}
			next := w.tick()
			if want := t0.Add(2 * time.Minute); !next.Equal(want) {
				t.Errorf("next wake-up = %s, want the window's end %s", next, want)
			}
			w.at(t0.Add(2*time.Minute - time.Second))
			if got := w.flipMails(); len(got) != 0 {
				t.Fatalf("mails just before the window ends = %d, want 0", len(got))
			}
			w.at(t0.Add(2 * time.Minute))
			w.at(t0.Add(time.Hour))
			var subjects []string
			for _, m := range w.flipMails() {
				subjects = append(subjects, m.Subject)
			}
			if !equalStrings(subjects, c.want) {
				t.Errorf("alice's mails = %q, want %q", subjects, c.want)
			}
			if got := w.mails("bob", string(render.MailDone), string(render.MailReopened)); len(got) != 0 {
				t.Errorf("bob, who flipped, got %d mails", len(got))
			}
		})
	}
}

// TestFlipMailSurvivesRestart: the waiting mail is in the store; a restart
// inside the window neither loses nor repeats it.
func TestFlipMailSurvivesRestart(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.ingest(sharedTask())
	w.flip(true)
	w.clock.Advance(30 * time.Second)
	w.restart()
	w.at(t0.Add(3 * time.Minute))
	w.restart()
	w.at(t0.Add(4 * time.Minute))
	if got := w.flipMails(); len(got) != 1 || got[0].Subject != "Done: Ship release" {
		t.Fatalf("alice's mails = %+v, want one Done", got)
	}
	// A flip after the window starts a new one.
	w.flip(false)
	w.at(t0.Add(10 * time.Minute))
	if got := w.flipMails(); len(got) != 2 || got[1].Subject != "Reopened: Ship release" {
		t.Fatalf("alice's mails = %+v, want Done then Reopened", got)
	}
}

// TestFlipSupersededByTrackerMail: a mail the tracker causes meanwhile
// (here: alice is unassigned) states the news; the waiting one is dropped.
func TestFlipSupersededByTrackerMail(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	in := sharedTask()
	w.ingest(in)
	w.flip(true)
	w.clock.Advance(time.Minute)
	in.Assignees, in.Status = []string{"bob"}, "done"
	w.ingest(in)
	w.at(t0.Add(time.Hour))
	if got := w.flipMails(); len(got) != 0 {
		t.Fatalf("alice's done/reopened mails = %+v, want none (she was unassigned meanwhile)", got)
	}
}

// TestFlipWindowOff: mail.coalesce_window 0 mails each flip at once.
func TestFlipWindowOff(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *config.Config) { c.Mail.CoalesceWindow = 0 })
	w.ingest(sharedTask())
	w.flip(true)
	w.flip(false)
	if got := w.flipMails(); len(got) != 2 {
		t.Fatalf("alice's mails = %d, want 2 (no window)", len(got))
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
