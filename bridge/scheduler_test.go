package bridge_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	gomail "github.com/emersion/go-message/mail"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// t0 is a Monday morning; every scheduler test starts there.
var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// runTimers is how many timers Service.Run keeps armed on the clock while
// idle: the scheduler's, retention's and the callback worker's. Waiting for
// all of them means every loop has finished its pass.
const runTimers = 3

// world is one duebridge on a temp store, in virtual time.
type world struct {
	t     *testing.T
	clock *fakeclock.Clock
	cfg   *config.Config
	svc   *bridge.Service
}

// newWorld starts at t0 with alice on notify: mail, lead times 24h and 1h;
// edit adjusts the config first.
func newWorld(t *testing.T, edit func(*config.Config)) *world {
	t.Helper()
	cfg := testsvc.Config(t)
	cfg.Notifications.LeadTimes = []time.Duration{24 * time.Hour, time.Hour}
	cfg.User("alice").Notify = config.NotifyMail
	if edit != nil {
		edit(cfg)
	}
	w := &world{t: t, clock: fakeclock.New(t0), cfg: cfg}
	w.start()
	return w
}

// start opens the store in the config's data dir and builds a scheduler on
// it: a fresh process as far as the data is concerned.
func (w *world) start() {
	w.svc = testsvc.New(w.t, testsvc.Options{Config: w.cfg, Clock: w.clock})
}

// restart closes the store and starts again on the same data.
func (w *world) restart() {
	w.t.Helper()
	if err := testsvc.Store(w.t, w.svc).Close(); err != nil {
		w.t.Fatal(err)
	}
	w.start()
}

func (w *world) tick() time.Time {
	w.t.Helper()
	next, err := w.svc.SchedulerTick(context.Background())
	if err != nil {
		w.t.Fatalf("Tick at %s: %v", w.clock.Now(), err)
	}
	return next
}

// at moves virtual time to ts and runs a tick there.
func (w *world) at(ts time.Time) time.Time {
	w.t.Helper()
	w.clock.Set(ts)
	return w.tick()
}

func (w *world) ingest(in bridge.TaskInput) {
	w.t.Helper()
	if in.UpdatedAt.IsZero() {
		in.UpdatedAt = w.clock.Now()
	}
	testsvc.Ingest(w.t, w.svc, in)
}

// sentMail is one stored notification, parsed.
type sentMail struct {
	Event   string
	Subject string
	Task    string
	Flagged bool
	Date    time.Time
	Text    string
}

// mails returns the user's INBOX mails of the given events (all if none).
func (w *world) mails(user string, events ...string) []sentMail {
	w.t.Helper()
	var out []sentMail
	err := testsvc.Store(w.t, w.svc).View(context.Background(), func(tx store.Tx) error {
		msgs, err := tx.Messages(user, bridge.Inbox)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, m := range msgs {
			full, err := tx.MessageData(user, bridge.Inbox, m.UID)
			if err != nil {
				return err
			}
			mr, err := gomail.CreateReader(bytes.NewReader(full.Data))
			if err != nil {
				return err
			}
			subj, _ := mr.Header.Subject()
			date, _ := mr.Header.Date()
			sm := sentMail{Event: mr.Header.Get("X-Duebridge-Event"), Subject: subj, Task: mr.Header.Get("X-Duebridge-Task"),
				Flagged: slices.Contains(full.Flags, `\Flagged`), Date: date, Text: plainText(mr)}
			if len(events) == 0 || slices.Contains(events, sm.Event) {
				out = append(out, sm)
			}
		}
		return nil
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return out
}

// alerts returns the due-soon and overdue mails of alice.
func (w *world) alerts() []sentMail {
	w.t.Helper()
	return w.mails("alice", string(render.MailDueSoon), string(render.MailOverdue))
}

// plainText returns the first text/plain part, decoded.
func plainText(mr *gomail.Reader) string {
	for {
		p, err := mr.NextPart()
		if err != nil {
			return ""
		}
		if h, ok := p.Header.(*gomail.InlineHeader); ok {
			if ct, _, _ := h.ContentType(); ct == "text/plain" {
				b, _ := io.ReadAll(p.Body)
				return string(b)
			}
		}
	}
}

func subjects(ms []sentMail) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Subject)
	}
	return out
}

func (w *world) wantAlerts(step string, want ...string) {
	w.t.Helper()
	if got := subjects(w.alerts()); !slices.Equal(got, want) {
		w.t.Fatalf("%s (virtual time %s):\n got alert mails %q\nwant %q", step, w.clock.Now().Format(time.RFC3339), got, want)
	}
}

func (w *world) schedules() (total, armed int64) {
	w.t.Helper()
	err := testsvc.Store(w.t, w.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		total, armed, err = tx.CountAlerts()
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return total, armed
}

// userSchedules counts the alert schedules of one user.
func (w *world) userSchedules(user string) int {
	w.t.Helper()
	var n int
	err := testsvc.Store(w.t, w.svc).View(context.Background(), func(tx store.Tx) error {
		tasks, err := tx.AlertTasks(user, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), 1000)
		n = len(tasks)
		return err
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return n
}

// task is alice's task T-1, due 48 hours after t0.
func task() bridge.TaskInput {
	return bridge.TaskInput{ID: "T-1", Title: "Ship release", Assignees: []string{"alice"},
		Due: store.When{Time: t0.Add(48 * time.Hour)}, Priority: "normal"}
}

func TestEachLeadTimeFiresOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.ingest(task())
	due := t0.Add(48 * time.Hour)

	if next := w.tick(); !next.Equal(due.Add(-24 * time.Hour)) {
		t.Fatalf("after arming, next wake-up = %s, want the 24h lead time %s", next, due.Add(-24*time.Hour))
	}
	w.wantAlerts("before the first lead time")
	if n := len(w.mails("alice", string(render.MailAssigned))); n != 1 {
		t.Fatalf("assignment mails = %d, want 1", n)
	}

	steps := []struct {
		at   time.Time
		want []string
	}{
		{due.Add(-24*time.Hour - time.Second), nil},
		{due.Add(-24 * time.Hour), []string{"Due in 1 day: Ship release"}},
		{due.Add(-24*time.Hour + time.Minute), []string{"Due in 1 day: Ship release"}},
		{due.Add(-time.Hour), []string{"Due in 1 day: Ship release", "Due in 1 hour: Ship release"}},
		{due.Add(-30 * time.Minute), []string{"Due in 1 day: Ship release", "Due in 1 hour: Ship release"}},
		{due, []string{"Due in 1 day: Ship release", "Due in 1 hour: Ship release", "Overdue: Ship release"}},
		{due.Add(72 * time.Hour), []string{"Due in 1 day: Ship release", "Due in 1 hour: Ship release", "Overdue: Ship release"}},
	}
	for _, s := range steps {
		w.at(s.at)
		w.tick() // a second pass at the same moment must not repeat anything
		w.wantAlerts("at "+s.at.Sub(due).String()+" from due", s.want...)
	}
	if total, armed := w.schedules(); total != 1 || armed != 0 {
		t.Errorf("after the overdue mail: schedules = %d, armed = %d; want 1 kept for the digest, 0 armed", total, armed)
	}
}

// TestIngestPlansTheSchedule: a new task's schedule leaves the ingest
// transaction planned (FireAt = its first alert instant), so the scheduler
// has no write of its own to do after the webhook, and a user whose alerts
// are VALARMs only gets a schedule the scheduler never looks at.
func TestIngestPlansTheSchedule(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(cfg *config.Config) { cfg.User("bob").Notify = config.NotifyAlarms })
	in := task()
	in.Assignees = []string{"alice", "bob"}
	w.ingest(in)
	due := t0.Add(48 * time.Hour)
	var dueNow []store.Alert
	var next time.Time
	err := testsvc.Store(t, w.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		if dueNow, err = tx.DueAlerts(w.clock.Now(), 10); err != nil {
			return err
		}
		next, _, err = tx.NextAlert()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dueNow) != 0 {
		t.Fatalf("after the ingest, %d schedules are due now (%+v); want none: the ingest plans them", len(dueNow), dueNow)
	}
	if !next.Equal(due.Add(-24 * time.Hour)) {
		t.Fatalf("next FireAt = %s, want the 24h lead time %s", next, due.Add(-24*time.Hour))
	}
	if total, armed := w.schedules(); total != 2 || armed != 1 {
		t.Fatalf("schedules = %d, armed = %d; want 2 (alice, bob for the digest), 1 armed (alice)", total, armed)
	}
	w.at(due.Add(-24 * time.Hour))
	w.wantAlerts("at the 24h lead time", "Due in 1 day: Ship release")
}

func TestRestartBetweenLeadTimes(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.ingest(task())
	due := t0.Add(48 * time.Hour)
	w.at(due.Add(-24 * time.Hour))
	w.wantAlerts("at the 24h lead time", "Due in 1 day: Ship release")

	// Restart a little later: nothing is repeated...
	w.clock.Advance(10 * time.Minute)
	w.restart()
	w.tick()
	w.wantAlerts("after a restart between two lead times", "Due in 1 day: Ship release")
	// ...and the next one is not skipped.
	w.at(due.Add(-time.Hour))
	w.wantAlerts("at the 1h lead time after a restart", "Due in 1 day: Ship release", "Due in 1 hour: Ship release")
	w.restart()
	w.at(due.Add(-time.Hour + time.Second))
	w.wantAlerts("right after a second restart", "Due in 1 day: Ship release", "Due in 1 hour: Ship release")
}

func TestDowntimeAcrossThreeRemindersSendsOneCatchUp(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *config.Config) {
		c.Notifications.LeadTimes = []time.Duration{48 * time.Hour, 24 * time.Hour, time.Hour}
	})
	w.ingest(bridge.TaskInput{ID: "T-1", Title: "Ship release", Assignees: []string{"alice"},
		Due: store.When{Time: t0.Add(72 * time.Hour)}})
	w.ingest(bridge.TaskInput{ID: "T-2", Title: "Write notes", Assignees: []string{"alice"},
		Due: store.When{Time: t0.Add(50 * time.Hour)}})
	w.tick()
	due := t0.Add(72 * time.Hour)

	// Down from now until 30 minutes before T-1's due time: its 48h, 24h
	// and 1h reminders, and T-2's 48h, 24h, 1h and due time, all pass.
	w.clock.Set(due.Add(-30 * time.Minute))
	w.restart()
	w.tick()
	got := w.alerts()
	if len(got) != 2 {
		t.Fatalf("after downtime: %d alert mails %q, want one per task", len(got), subjects(got))
	}
	byTask := map[string]string{}
	for _, m := range got {
		byTask[m.Task] = m.Subject
	}
	if s := byTask["tracker/T-1"]; s != "Due in 30 minutes: Ship release" {
		t.Errorf("T-1 catch-up subject = %q, want the time actually left", s)
	}
	if s := byTask["tracker/T-2"]; s != "Overdue: Write notes" {
		t.Errorf("T-2 catch-up subject = %q, want the latest alert (overdue)", s)
	}
	w.at(due)
	if n := len(w.alerts()); n != 3 {
		t.Fatalf("at T-1's due time: %d alert mails %q, want 3 (the overdue one added)", n, subjects(w.alerts()))
	}
}

func TestMovingDueDateRearms(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	in := task()
	w.ingest(in)
	due := t0.Add(48 * time.Hour)
	w.at(due.Add(-time.Hour))
	w.wantAlerts("at the 1h lead time", "Due in 1 hour: Ship release")

	// A second edit that keeps the due time must not re-arm.
	in.Title, in.UpdatedAt = "Ship release", w.clock.Now()
	in.Description = "now with notes"
	w.ingest(in)
	w.tick()
	w.wantAlerts("after an edit that keeps the due date", "Due in 1 hour: Ship release")

	// Moved 12 hours later: the new 24h reminder time has passed already
	// (covered, as the VALARMs skip it); the new 1h one comes.
	w.clock.Advance(time.Minute)
	in.Due, in.UpdatedAt = store.When{Time: due.Add(12 * time.Hour)}, w.clock.Now()
	w.ingest(in)
	w.tick()
	if n := len(w.mails("alice", string(render.MailDueChanged))); n != 1 {
		t.Fatalf("due-changed mails = %d, want 1", n)
	}
	w.at(due) // the old due time passes: no overdue mail
	w.wantAlerts("at the old due time", "Due in 1 hour: Ship release")
	w.at(due.Add(11 * time.Hour))
	w.wantAlerts("at the new 1h lead time", "Due in 1 hour: Ship release", "Due in 1 hour: Ship release")

	// Moved three days later: both reminders come again.
	w.clock.Advance(time.Minute)
	in.Due, in.UpdatedAt = store.When{Time: due.Add(72 * time.Hour)}, w.clock.Now()
	w.ingest(in)
	w.at(due.Add(12 * time.Hour))
	w.wantAlerts("at the previous due time", "Due in 1 hour: Ship release", "Due in 1 hour: Ship release")
	w.at(due.Add(48 * time.Hour))
	w.wantAlerts("at the third due time's 24h lead", "Due in 1 hour: Ship release", "Due in 1 hour: Ship release", "Due in 1 day: Ship release")
	w.at(due.Add(71 * time.Hour))
	w.wantAlerts("at the third due time's 1h lead", "Due in 1 hour: Ship release", "Due in 1 hour: Ship release", "Due in 1 day: Ship release", "Due in 1 hour: Ship release")
}

func TestDoneOrGoneDisarms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		change func(w *world, in bridge.TaskInput)
	}{
		{"done by the tracker", func(w *world, in bridge.TaskInput) { in.Status = "done"; w.ingest(in) }},
		{"cancelled", func(w *world, in bridge.TaskInput) { in.Status = "cancelled"; w.ingest(in) }},
		{"deleted", func(w *world, in bridge.TaskInput) { in.Deleted = true; w.ingest(in) }},
		{"unassigned", func(w *world, in bridge.TaskInput) { in.Assignees = []string{"bob"}; w.ingest(in) }},
		{"due date removed", func(w *world, in bridge.TaskInput) { in.Due = store.When{}; w.ingest(in) }},
		{"done on the phone", func(w *world, in bridge.TaskInput) {
			if err := w.svc.Complete(context.Background(), "alice", "tracker", in.ID, true, w.clock.Now()); err != nil {
				w.t.Fatal(err)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, nil)
			in := task()
			w.ingest(in)
			due := t0.Add(48 * time.Hour)
			w.at(due.Add(-24 * time.Hour))
			w.wantAlerts("at the 24h lead time", "Due in 1 day: Ship release")
			w.clock.Advance(time.Minute)
			in.UpdatedAt = w.clock.Now()
			c.change(w, in)
			if n := w.userSchedules("alice"); n != 0 {
				t.Errorf("alice's schedules after the change = %d, want 0 (disarmed in the same transaction)", n)
			}
			w.at(due.Add(-time.Hour))
			w.at(due.Add(time.Hour))
			w.wantAlerts("after "+c.name, "Due in 1 day: Ship release")
		})
	}
}

func TestReopenedTaskRearms(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	in := task()
	w.ingest(in)
	if err := w.svc.Complete(context.Background(), "alice", "tracker", "T-1", true, w.clock.Now()); err != nil {
		t.Fatal(err)
	}
	w.clock.Advance(time.Hour)
	// The tracker overrides the phone: the task is open again, and so are
	// its reminders.
	in.Status, in.UpdatedAt = "open", w.clock.Now()
	w.ingest(in)
	w.at(t0.Add(24 * time.Hour))
	w.wantAlerts("after the tracker reopened the task", "Due in 1 day: Ship release")
}

func TestAlarmsUsersGetNoAlertMail(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *config.Config) { c.User("alice").Notify = config.NotifyAlarms })
	w.ingest(task())
	w.tick()
	if total, armed := w.schedules(); total != 1 || armed != 0 {
		t.Fatalf("schedules = %d, armed = %d; want 1 (for the digest), none armed: VALARMs carry the alerts", total, armed)
	}
	w.at(t0.Add(72 * time.Hour))
	w.wantAlerts("for a notify: alarms user")
}

// The VALARMs of a notify: both user and the mails fire at the same instants.
func TestAlarmsAndMailAgree(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *config.Config) {
		u := c.User("alice")
		u.Notify = config.NotifyBoth
		u.Location, _ = time.LoadLocation("America/New_York")
	})
	day := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	w.ingest(bridge.TaskInput{ID: "T-1", Title: "All-day task", Assignees: []string{"alice"}, Due: store.When{Time: day, AllDay: true}})
	var todo []byte
	err := testsvc.Store(t, w.svc).View(context.Background(), func(tx store.Tx) error {
		o, err := tx.Object("alice", "inbox-tasks", render.ObjectName("tracker", "T-1"))
		if err == nil {
			todo = o.Data
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// 09:00 in New York on the 26th is 14:00 UTC; the 1h lead is at 13:00.
	for _, trig := range []string{"TRIGGER;VALUE=DATE-TIME:20261125T140000Z", "TRIGGER;VALUE=DATE-TIME:20261126T130000Z"} {
		if !bytes.Contains(todo, []byte(trig)) {
			t.Fatalf("VTODO lacks %s:\n%s", trig, todo)
		}
	}
	w.at(time.Date(2026, 11, 25, 13, 59, 59, 0, time.UTC))
	w.wantAlerts("a second before the 24h alarm")
	w.at(time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC))
	w.wantAlerts("with the 24h alarm", "Due in 1 day: All-day task")
	w.at(time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC))
	w.wantAlerts("with the 1h alarm", "Due in 1 day: All-day task", "Due in 1 hour: All-day task")
}

func TestConfigReloadNeitherRepeatsNorInventsPastAlerts(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	w.ingest(task())
	due := t0.Add(48 * time.Hour)
	w.at(due.Add(-24 * time.Hour))
	w.wantAlerts("at the 24h lead time", "Due in 1 day: Ship release")

	// New lead times: 36h (already past: no mail for it now), 24h (sent:
	// not again) and 2h (to come).
	w.clock.Advance(time.Minute)
	next := *w.svc.Config()
	next.Notifications.LeadTimes = []time.Duration{36 * time.Hour, 24 * time.Hour, 2 * time.Hour}
	w.svc.SetConfig(context.Background(), &next)
	if got := w.tick(); !got.Equal(due.Add(-2 * time.Hour)) {
		t.Errorf("next wake-up after the reload = %s, want the new 2h lead time %s", got, due.Add(-2*time.Hour))
	}
	w.wantAlerts("after the reload", "Due in 1 day: Ship release")
	w.at(due.Add(-2 * time.Hour))
	w.wantAlerts("at the new lead time", "Due in 1 day: Ship release", "Due in 2 hours: Ship release")
	w.at(due.Add(-time.Hour)) // 1h is no longer configured
	w.wantAlerts("at the dropped lead time", "Due in 1 day: Ship release", "Due in 2 hours: Ship release")

	// The same holds when the file changed while duebridge was down.
	w.clock.Advance(time.Minute)
	w.cfg = &next
	w.restart()
	w.tick()
	w.wantAlerts("after a restart with the new config", "Due in 1 day: Ship release", "Due in 2 hours: Ship release")
	w.at(due)
	w.wantAlerts("at the due time", "Due in 1 day: Ship release", "Due in 2 hours: Ship release", "Overdue: Ship release")
}

func TestSwitchingToMailArmsFromNowOn(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *config.Config) { c.User("alice").Notify = config.NotifyAlarms })
	w.ingest(task())
	due := t0.Add(48 * time.Hour)
	w.at(due.Add(-20 * time.Hour)) // past the 24h lead time, as alarms only
	next := *w.svc.Config()
	next.Users = slices.Clone(next.Users)
	next.User("alice").Notify = config.NotifyMail
	w.svc.SetConfig(context.Background(), &next)
	w.tick()
	w.wantAlerts("right after switching to mail")
	w.at(due.Add(-time.Hour))
	w.wantAlerts("at the 1h lead time", "Due in 1 hour: Ship release")
}

func TestQuietHoursDelayAndRelease(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	// Due at 07:30 Berlin time on the 25th; the 1h reminder (06:30) falls
	// into the quiet hours 22:00-07:00.
	due := time.Date(2026, 11, 25, 7, 30, 0, 0, berlin)
	setup := func(t *testing.T, priority string, allowUrgent bool) *world {
		w := newWorld(t, func(c *config.Config) {
			u := c.User("alice")
			u.Location = berlin
			u.QuietHours = &config.QuietHours{Start: 22 * time.Hour, End: 7 * time.Hour, AllowUrgent: allowUrgent}
		})
		w.ingest(bridge.TaskInput{ID: "T-1", Title: "Early train", Assignees: []string{"alice"},
			Due: store.When{Time: due.UTC()}, Priority: priority})
		w.tick()
		return w
	}

	t.Run("held until the window ends", func(t *testing.T) {
		t.Parallel()
		w := setup(t, "normal", true)
		w.at(due.Add(-24 * time.Hour)) // 07:30 on the 24th: outside the window
		w.wantAlerts("at the 24h lead time", "Due in 1 day: Early train")
		next := w.at(due.Add(-time.Hour))
		w.wantAlerts("inside quiet hours", "Due in 1 day: Early train")
		if end := time.Date(2026, 11, 25, 7, 0, 0, 0, berlin); !next.Equal(end) {
			t.Fatalf("next wake-up = %s, want the end of the quiet hours %s", next, end)
		}
		w.restart() // the hold survives a restart
		w.at(time.Date(2026, 11, 25, 6, 59, 0, 0, berlin))
		w.wantAlerts("a minute before the window ends", "Due in 1 day: Early train")
		w.at(time.Date(2026, 11, 25, 7, 0, 0, 0, berlin))
		w.wantAlerts("when the window ends", "Due in 1 day: Early train", "Due in 30 minutes: Early train")
		got := w.alerts()[1]
		if want := time.Date(2026, 11, 25, 7, 0, 0, 0, berlin); !got.Date.Equal(want) {
			t.Errorf("released mail dated %s, want %s", got.Date, want)
		}
		w.at(due)
		w.wantAlerts("at the due time", "Due in 1 day: Early train", "Due in 30 minutes: Early train", "Overdue: Early train")
	})
	t.Run("urgent passes when allowed", func(t *testing.T) {
		t.Parallel()
		w := setup(t, "urgent", true)
		w.at(due.Add(-time.Hour))
		w.wantAlerts("inside quiet hours, urgent", "[URGENT] Due in 1 hour: Early train")
		if m := w.alerts()[0]; !m.Flagged {
			t.Errorf("urgent alert mail is not \\Flagged")
		}
	})
	t.Run("urgent waits when not allowed", func(t *testing.T) {
		t.Parallel()
		w := setup(t, "urgent", false)
		w.at(due.Add(-time.Hour))
		w.wantAlerts("inside quiet hours, urgent but not allowed")
		w.at(time.Date(2026, 11, 25, 7, 0, 0, 0, berlin))
		w.wantAlerts("when the window ends", "[URGENT] Due in 30 minutes: Early train")
	})
}

func TestDigestListsTheDayByUrgency(t *testing.T) {
	t.Parallel()
	w := newWorld(t, func(c *config.Config) {
		for _, name := range []string{"alice", "bob"} {
			u := c.User(name)
			u.Notify = config.NotifyAlarms
			u.Digest, u.DigestAt = true, 8*time.Hour
		}
	})
	// Tasks come in on Monday at 10:00, after that day's digest time: the
	// first digest is Tuesday's.
	slot := time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC)
	for _, in := range []bridge.TaskInput{
		// At 08:00: normal, due at 17:00 (≤24h): 10+25 = 35.
		{ID: "A", Title: "Normal today", Due: store.When{Time: slot.Add(9 * time.Hour)}, Priority: "normal"},
		// High, due 08:30 (≤1h): 25+35 = 60, urgent.
		{ID: "B", Title: "High soon", Due: store.When{Time: slot.Add(30 * time.Minute)}, Priority: "high"},
		// Low, overdue since yesterday: 0+40 = 40.
		{ID: "C", Title: "Low overdue", Due: store.When{Time: slot.Add(-20 * time.Hour)}, Priority: "low"},
		// Urgent, due tomorrow 07:00 (before the next digest): 60+25 = 85.
		{ID: "D", Title: "Urgent tomorrow", Due: store.When{Time: slot.Add(23 * time.Hour)}, Priority: "urgent"},
		// Normal in progress, all-day today (09:00, ≤1h): 10+35+5 = 50.
		{ID: "E", Title: "In progress today", Due: store.When{Time: time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC), AllDay: true}, Status: "in_progress"},
		// Due after the next digest: not listed.
		{ID: "F", Title: "Next week", Due: store.When{Time: slot.Add(7 * 24 * time.Hour)}, Priority: "urgent"},
		// Done: not listed.
		{ID: "G", Title: "Already done", Due: store.When{Time: slot.Add(time.Hour)}, Status: "done"},
	} {
		in.Assignees = []string{"alice"}
		w.ingest(in)
	}
	w.tick()
	w.at(t0.Add(time.Hour))
	if n := len(w.mails("alice", "digest")); n != 0 {
		t.Fatalf("digest before its time (Monday's had passed when alice was first seen): %d", n)
	}
	if next := w.at(slot.Add(-time.Minute)); !next.Equal(slot) {
		t.Fatalf("next wake-up = %s, want the digest time %s", next, slot)
	}
	w.at(slot)
	ds := w.mails("alice", "digest")
	if len(ds) != 1 {
		t.Fatalf("digests at Tuesday 08:00 = %d, want 1", len(ds))
	}
	d := ds[0]
	if want := "[URGENT] Today: 5 deadlines (Tue, 24 Nov)"; d.Subject != want || !d.Flagged {
		t.Errorf("digest subject %q flagged %v, want %q flagged", d.Subject, d.Flagged, want)
	}
	order := []string{"Urgent tomorrow", "High soon", "In progress today", "Low overdue", "Normal today"}
	last := -1
	for _, title := range order {
		i := strings.Index(d.Text, title)
		if i < 0 || i < last {
			t.Fatalf("digest does not list %q in urgency order %q:\n%s", title, order, d.Text)
		}
		last = i
	}
	for _, absent := range []string{"Next week", "Already done"} {
		if strings.Contains(d.Text, absent) {
			t.Errorf("digest lists %q:\n%s", absent, d.Text)
		}
	}
	if n := len(w.mails("bob", "digest")); n != 0 {
		t.Errorf("bob got %d digests with nothing due", n)
	}

	// Once a day, across restarts too.
	w.at(slot.Add(time.Hour))
	w.restart()
	w.at(slot.Add(2 * time.Hour))
	if n := len(w.mails("alice", "digest")); n != 1 {
		t.Fatalf("digests later that day = %d, want 1", n)
	}
	// Down for two days: only the latest missed digest is sent.
	w.clock.Set(slot.Add(72*time.Hour + time.Hour))
	w.restart()
	w.tick()
	if n := len(w.mails("alice", "digest")); n != 2 {
		t.Fatalf("digests after two days down = %d, want 2 (one catch-up)", n)
	}
}

func TestUrgencyScore(t *testing.T) {
	t.Parallel()
	now := t0
	cases := []struct {
		priority, status string
		left             time.Duration // due − now; 0 with noDue = no due time
		noDue            bool
		want             int
	}{
		{"normal", "open", 0, true, 10},
		{"low", "open", 30 * 24 * time.Hour, false, 0},
		{"normal", "open", 7 * 24 * time.Hour, false, 20},
		{"normal", "open", 72 * time.Hour, false, 25},
		{"normal", "open", 24 * time.Hour, false, 35},
		{"normal", "open", time.Hour, false, 45},
		{"normal", "open", 0, false, 50},
		{"normal", "open", -time.Hour, false, 50},
		{"high", "open", time.Hour, false, 60},
		{"high", "in_progress", 24 * time.Hour, false, 55},
		{"urgent", "open", 0, true, 60},
		{"urgent", "in_progress", -time.Hour, false, 100},
		{"urgent", "done", -time.Hour, false, 0},
		{"high", "cancelled", time.Hour, false, 0},
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s/%s/%v/nodue=%v", c.priority, c.status, c.left, c.noDue)
		tk := &store.Task{Priority: c.priority, Status: c.status}
		var due time.Time
		if !c.noDue {
			due = now.Add(c.left)
		}
		if got := render.Urgency(tk, due, now); got != c.want {
			t.Errorf("%s: Urgency = %d, want %d", name, got, c.want)
		}
	}
	// The score never falls as the due time comes closer.
	tk := &store.Task{Priority: "normal", Status: "open"}
	prev := -1
	for left := 10 * 24 * time.Hour; left > -24*time.Hour; left -= 10 * time.Minute {
		s := render.Urgency(tk, now.Add(left), now)
		if s < prev {
			t.Fatalf("score fell from %d to %d at %v before due", prev, s, left)
		}
		prev = s
	}
}

func TestRankByUrgencyIsTotal(t *testing.T) {
	t.Parallel()
	due := store.When{Time: t0.Add(time.Hour)}
	tasks := []*store.Task{
		{Source: "b", ID: "1", Priority: "normal", Status: "open", Due: due},
		{Source: "a", ID: "2", Priority: "normal", Status: "open", Due: due},
		{Source: "a", ID: "1", Priority: "normal", Status: "open", Due: due},
		{Source: "a", ID: "0", Priority: "normal", Status: "open", Due: store.When{Time: t0.Add(30 * time.Minute)}},
		{Source: "z", ID: "9", Priority: "urgent", Status: "open"},
	}
	var got []string
	for _, r := range render.RankByUrgency(tasks, time.UTC, t0) {
		got = append(got, r.Task.Source+"/"+r.Task.ID)
	}
	if want := []string{"z/9", "a/0", "a/1", "a/2", "b/1"}; !slices.Equal(got, want) {
		t.Errorf("order = %q, want %q", got, want)
	}
}

// Run sleeps on the clock until the next alert and wakes early when a task
// is armed.
func TestRunWakesOnArmAndTimer(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	runWorker(t, w.svc)
	if !w.clock.WaitForTimers(runTimers, 5*time.Second) {
		t.Fatal("Run armed no timer")
	}
	// Armed at 10:00, due 11:30: the 1h reminder is at 10:30, before the
	// one-minute idle wake-up... after which Run must sleep until 10:30.
	w.ingest(bridge.TaskInput{ID: "T-9", Title: "Soon", Assignees: []string{"alice"}, Due: store.When{Time: t0.Add(90 * time.Minute)}})
	waitFor := func(what string, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for len(w.alerts()) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s: alert mails %q, want %d", what, subjects(w.alerts()), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for w.clock.Now().Before(t0.Add(30 * time.Minute)) {
		if !w.clock.WaitForTimers(runTimers, 5*time.Second) {
			t.Fatal("Run stopped waiting")
		}
		w.clock.Advance(time.Minute)
	}
	waitFor("at the 1h lead time", 1)
	w.clock.WaitForTimers(runTimers, 5*time.Second)
	w.clock.Set(t0.Add(90 * time.Minute))
	waitFor("at the due time", 2)
}

// TestArmEventIsOneRead: the event of a newly armed schedule, planned by
// the ingest for later than the scheduler's timer, costs the scheduler one
// read (a "check" wake), not a full pass, and the alert still goes out at
// its instant.
func TestArmEventIsOneRead(t *testing.T) {
	t.Parallel()
	w := newWorld(t, nil)
	runWorker(t, w.svc)
	// Passes are counted by the tick duration histogram, checks by their
	// own counter.
	wakes := func(pass string) float64 {
		t.Helper()
		mfs, err := w.svc.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			switch {
			case pass == "tick" && mf.GetName() == "duebridge_scheduler_tick_seconds":
				return float64(mf.GetMetric()[0].GetHistogram().GetSampleCount())
			case pass == "check" && mf.GetName() == "duebridge_scheduler_checks_total":
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	// The first pass (at start) has run once the timer is armed again.
	deadline := time.Now().Add(5 * time.Second)
	for wakes("tick") < 1 || !w.clock.WaitForTimers(runTimers, 5*time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("the scheduler made no first pass")
		}
		time.Sleep(time.Millisecond)
	}
	ticks := wakes("tick")
	for i := range 3 {
		w.ingest(bridge.TaskInput{ID: fmt.Sprintf("T-%d", i), Title: "Later", Assignees: []string{"alice"},
			Due: store.When{Time: t0.Add(48 * time.Hour)}})
		for wakes("check")+wakes("tick") < ticks+float64(i+1) {
			if time.Now().After(deadline) {
				t.Fatalf("after ingest %d: wakes check %v, tick %v; want one more", i, wakes("check"), wakes("tick"))
			}
			time.Sleep(time.Millisecond)
		}
	}
	if got := wakes("tick"); got != ticks {
		t.Fatalf("full passes after 3 arms = %v, want %v (each arm one read)", got-ticks, 0)
	}
	// The 24h lead time still fires: the timer runs by minutes (MaxSleep).
	for w.clock.Now().Before(t0.Add(24 * time.Hour)) {
		if !w.clock.WaitForTimers(runTimers, 5*time.Second) {
			t.Fatal("Run stopped waiting")
		}
		w.clock.Advance(10 * time.Minute)
	}
	for len(w.alerts()) != 3 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			t.Fatalf("at the 24h lead time: alert mails %q, want 3", subjects(w.alerts()))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFakeClockTimers(t *testing.T) {
	t.Parallel()
	c := fakeclock.New(t0)
	a := c.NewTimer(time.Hour)
	b := c.After(30 * time.Minute)
	c.Advance(29 * time.Minute)
	select {
	case <-a.C():
		t.Fatal("1h timer fired after 29m")
	case <-b:
		t.Fatal("30m timer fired after 29m")
	default:
	}
	c.Advance(time.Minute)
	if got := <-b; !got.Equal(t0.Add(30 * time.Minute)) {
		t.Errorf("After delivered %s", got)
	}
	if !a.Stop() {
		t.Error("Stop of an armed timer reported false")
	}
	c.Advance(time.Hour)
	select {
	case <-a.C():
		t.Fatal("stopped timer fired")
	default:
	}
	a.Reset(time.Minute)
	c.Advance(time.Minute)
	<-a.C()
	if c.Timers() != 0 {
		t.Errorf("Timers() = %d after all fired", c.Timers())
	}
}

// A due time past what the store's nanosecond instants hold (2262) wrapped
// on the way into the alert schedule, so the schedule never matched its
// task and the next tick was always "now": Run spun. Ingest refuses it.
func TestFarDueRefusedNotSpinning(t *testing.T) {
	w := newWorld(t, nil)
	_, err := w.svc.Ingest(context.Background(), "tracker", []bridge.TaskInput{{ID: "far", Title: "far",
		Assignees: []string{"alice"}, UpdatedAt: t0,
		Due: store.When{Time: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), AllDay: true}}})
	var fe *bridge.FieldError
	if !errors.As(err, &fe) || fe.Field != "due" {
		t.Fatalf("Ingest of a task due in 2300: %v, want a FieldError on due", err)
	}
	if next := w.tick(); !next.IsZero() {
		t.Fatalf("next tick at %v, want none planned", next)
	}
}
