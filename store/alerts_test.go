package store_test

// The deadline engine's alert schedules (alerts.go), on SQLite always and on
// PostgreSQL when TEST_DUEBRIDGE_POSTGRES is set; helpers from store_test.go.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

func TestAlertsSQLite(t *testing.T) {
	t.Parallel()
	testAlerts(t, sqliteBackend())
	testAlertIndex(t, sqliteBackend())
}

func TestAlertsPostgres(t *testing.T) {
	t.Parallel()
	testAlerts(t, postgresBackend(t))
}

func testAlerts(t *testing.T, b backend) {
	e := newEnv(t, b)
	due := store.When{Time: t0.Add(48 * time.Hour)}
	arm := func(user, id string, w store.When) bool {
		t.Helper()
		var armed bool
		e.update(func(tx store.Tx) (err error) { armed, err = tx.ArmAlert(user, "tracker", id, w); return err })
		return armed
	}
	get := func(user, id string) *store.Alert {
		t.Helper()
		var out *store.Alert
		e.view(func(tx store.Tx) error {
			all, err := tx.DueAlerts(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), 1000)
			for i := range all {
				if all[i].User == user && all[i].TaskID == id {
					out = &all[i]
				}
			}
			return err
		})
		return out
	}

	// A new schedule: instants before now are covered, the scheduler looks
	// at once, and an EventAlert wakes it.
	before := len(e.commits())
	if !arm("alice", "T-1", due) {
		t.Fatal("ArmAlert of a new schedule reported false")
	}
	a := get("alice", "T-1")
	want := store.Alert{User: "alice", Source: "tracker", TaskID: "T-1", Due: due, Covered: t0.Add(-time.Nanosecond), AlertAt: t0, FireAt: t0}
	if a == nil || *a != want {
		t.Fatalf("new schedule = %+v, want %+v", a, want)
	}
	if c := e.commits(); len(c) != before+1 || !slices.ContainsFunc(c[len(c)-1], func(ev store.Event) bool { return ev.Kind == store.EventAlert }) {
		t.Errorf("ArmAlert emitted %v, want an EventAlert", c[before:])
	}

	// The scheduler's plan is kept by an arm for the same due time.
	plan := want
	plan.Covered, plan.AlertAt, plan.FireAt = t0.Add(time.Hour), t0.Add(47*time.Hour), t0.Add(47*time.Hour)
	e.update(func(tx store.Tx) error { return tx.UpdateAlert(&plan) })
	if arm("alice", "T-1", due) {
		t.Error("ArmAlert for the same due time reported true")
	}
	if a := get("alice", "T-1"); *a != plan {
		t.Fatalf("after re-arming the same due time: %+v, want the plan %+v kept", a, plan)
	}
	// All-day is part of the due time.
	e.clock.Advance(time.Minute)
	allDay := store.When{Time: due.Time, AllDay: true}
	if !arm("alice", "T-1", allDay) {
		t.Error("ArmAlert with the due date turned all-day reported false")
	}
	if a := get("alice", "T-1"); a.Due != allDay || !a.Covered.Equal(t0.Add(time.Minute-time.Nanosecond)) || !a.FireAt.Equal(t0.Add(time.Minute)) {
		t.Errorf("after moving the due time: %+v, want a fresh schedule", a)
	}
	e.update(func(tx store.Tx) error {
		err := tx.UpdateAlert(&store.Alert{User: "nobody", Source: "tracker", TaskID: "T-1"})
		wantNotFound(t, "UpdateAlert(missing)", err)
		return nil
	})

	// DueAlerts reads in FireAt order, only what is due; NextAlert is the
	// earliest; a schedule with no FireAt is never due.
	arm("alice", "T-2", due)
	arm("bob", "T-1", due)
	e.update(func(tx store.Tx) error {
		for _, p := range []store.Alert{
			{User: "alice", Source: "tracker", TaskID: "T-1", Covered: t0, FireAt: t0.Add(3 * time.Hour), AlertAt: t0.Add(3 * time.Hour)},
			{User: "alice", Source: "tracker", TaskID: "T-2", Covered: t0, FireAt: t0.Add(2 * time.Hour), AlertAt: t0.Add(2 * time.Hour)},
			{User: "bob", Source: "tracker", TaskID: "T-1", Covered: t0}, // nothing left to send
		} {
			if err := tx.UpdateAlert(&p); err != nil {
				return err
			}
		}
		return nil
	})
	e.view(func(tx store.Tx) error {
		got, err := tx.DueAlerts(t0.Add(3*time.Hour), 10)
		if err != nil {
			return err
		}
		var ids []string
		for _, a := range got {
			ids = append(ids, a.User+"/"+a.TaskID)
		}
		if want := []string{"alice/T-2", "alice/T-1"}; !slices.Equal(ids, want) {
			t.Errorf("DueAlerts = %q, want %q", ids, want)
		}
		if got, _ := tx.DueAlerts(t0.Add(3*time.Hour), 1); len(got) != 1 {
			t.Errorf("DueAlerts with limit 1 returned %d", len(got))
		}
		if got, _ := tx.DueAlerts(t0.Add(time.Hour), 10); len(got) != 0 {
			t.Errorf("DueAlerts before any FireAt returned %d", len(got))
		}
		next, ok, err := tx.NextAlert()
		if !ok || !next.Equal(t0.Add(2*time.Hour)) {
			t.Errorf("NextAlert = %s, %v, %v; want %s", next, ok, err, t0.Add(2*time.Hour))
		}
		total, armed, err := tx.CountAlerts()
		if total != 3 || armed != 2 {
			t.Errorf("CountAlerts = %d, %d, %v; want 3, 2", total, armed, err)
		}
		return err
	})

	// Replan: everything is handed back at now; only schedules with nothing
	// pending move their Covered mark to now.
	now := t0.Add(150 * time.Minute) // T-2's alert (2h) is pending, T-1's (3h) not
	e.update(func(tx store.Tx) error {
		n, err := tx.ReplanAlerts("alice", now)
		if n != 2 {
			t.Errorf("ReplanAlerts = %d, want 2", n)
		}
		return err
	})
	if a := get("alice", "T-1"); !a.Covered.Equal(now) || !a.FireAt.Equal(now) {
		t.Errorf("replanned idle schedule %+v: want Covered and FireAt = %s", a, now)
	}
	if a := get("alice", "T-2"); !a.Covered.Equal(t0) || !a.FireAt.Equal(now) {
		t.Errorf("replanned pending schedule %+v: want Covered kept at %s, FireAt %s", a, t0, now)
	}
	if a := get("bob", "T-1"); a != nil {
		t.Errorf("bob's schedule was replanned with alice's: %+v", a)
	}

	// AlertTasks joins the tasks, earliest stored due first, before a bound.
	e.update(func(tx store.Tx) error {
		for _, tk := range []store.Task{
			{Source: "tracker", ID: "T-1", Title: "one", Status: "open", Priority: "normal", Due: allDay},
			{Source: "tracker", ID: "T-2", Title: "two", Status: "open", Priority: "normal", Due: due},
			{Source: "tracker", ID: "T-3", Title: "three", Status: "open", Priority: "normal", Due: store.When{Time: t0.Add(time.Hour)}},
			{Source: "tracker", ID: "T-4", Title: "done", Status: "done", Priority: "normal", Due: due},
			{Source: "tracker", ID: "T-5", Title: "no due", Status: "open", Priority: "normal"},
			{Source: "other", ID: "A", Title: "other source", Status: "in_progress", Priority: "normal", Due: due},
		} {
			if err := tx.PutTask(&tk); err != nil {
				return err
			}
		}
		_, err := tx.ArmAlert("alice", "tracker", "T-3", store.When{Time: t0.Add(time.Hour)})
		return err
	})
	e.view(func(tx store.Tx) error {
		got, err := tx.AlertTasks("alice", due.Time.Add(time.Second), 10)
		var titles []string
		for _, tk := range got {
			titles = append(titles, tk.Title)
		}
		if want := []string{"three", "one", "two"}; !slices.Equal(titles, want) {
			t.Errorf("AlertTasks = %q, want %q", titles, want)
		}
		if got, _ := tx.AlertTasks("alice", t0.Add(2*time.Hour), 10); len(got) != 1 {
			t.Errorf("AlertTasks before T-3's due + 1h = %d tasks, want 1", len(got))
		}
		return err
	})

	// OpenTasksWithDue pages through open tasks with a due time.
	var pages [][]string
	after := [2]string{}
	for {
		var page []string
		e.view(func(tx store.Tx) error {
			got, err := tx.OpenTasksWithDue(after[0], after[1], 2)
			for _, tk := range got {
				page = append(page, tk.Source+"/"+tk.ID)
				after = [2]string{tk.Source, tk.ID}
			}
			return err
		})
		if len(page) == 0 {
			break
		}
		pages = append(pages, page)
	}
	if got, want := pages, [][]string{{"other/A", "tracker/T-1"}, {"tracker/T-2", "tracker/T-3"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("OpenTasksWithDue pages = %q, want %q", got, want)
	}

	// Disarm and prune.
	e.update(func(tx store.Tx) error { return tx.DisarmAlert("alice", "tracker", "T-2") })
	e.update(func(tx store.Tx) error { return tx.PruneAlerts([]string{"alice"}) })
	e.view(func(tx store.Tx) error {
		total, _, err := tx.CountAlerts()
		if total != 2 { // alice's T-1 and T-3
			t.Errorf("after disarming alice/T-2 and pruning bob: %d schedules, want 2", total)
		}
		return err
	})
	e.update(func(tx store.Tx) error { return tx.PruneAlerts(nil) })
	e.view(func(tx store.Tx) error {
		total, _, err := tx.CountAlerts()
		if total != 0 {
			t.Errorf("PruneAlerts(nil) left %d schedules", total)
		}
		return err
	})

	// Schedules survive a reopen.
	arm("carol", "T-1", due)
	e.reopen()
	if a := get("carol", "T-1"); a == nil {
		t.Error("schedule lost across reopen")
	}
}

// testAlertIndex checks that a tick's queries read the index, not the table:
// the reason a million waiting tasks cost a tick nothing.
func testAlertIndex(t *testing.T, b backend) {
	src := b.newSource(t)
	openEnv(t, b, src) // creates the schema
	db := b.raw(t, src)
	for _, q := range []string{
		`SELECT username FROM alerts WHERE fire_at IS NOT NULL AND fire_at <= 5 ORDER BY fire_at LIMIT 10`,
		`SELECT fire_at FROM alerts WHERE fire_at IS NOT NULL ORDER BY fire_at LIMIT 1`,
	} {
		joined := queryPlan(t, db, q)
		if !strings.Contains(joined, "alerts_fire") || strings.Contains(joined, "TEMP B-TREE") {
			t.Errorf("query %q: plan %q, want a search of alerts_fire without sorting", q, joined)
		}
	}
}
