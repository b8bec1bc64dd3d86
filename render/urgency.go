package render

import (
	"cmp"
	"slices"
	"time"

	"github.com/duebridge/duebridge/store"
)

// Urgency is a deterministic score from 0 (nothing to do) to 100 of how
// pressing a task is at a given moment. It is the sum of three parts:
//
//	priority   low 0 · normal 10 · high 25 · urgent 60
//	time left  (due instant − now)  no due time 0 · more than 7 days 0 ·
//	           ≤ 7 days 10 · ≤ 3 days 15 · ≤ 24 hours 25 · ≤ 1 hour 35 ·
//	           overdue 40
//	status     open 0 · in progress +5 (someone is on it: keep it in view,
//	           as Taskwarrior's "active" coefficient does)
//
// capped at 100; done, cancelled and deleted tasks score 0. The due instant
// is DueInstant's (an all-day date counts from 09:00 in the user's zone).
//
// A score of UrgentScore or more is urgent: every task of priority urgent,
// and a high one in its last hour or overdue. Urgent mail is \Flagged and
// its subject starts with "[URGENT]", urgent alerts pass quiet hours when the
// user allows it, and the digest lists tasks by descending score.
//
// The steps are coarse on purpose: a score changes only when a task crosses
// a step, so a digest's order does not shuffle between two readings, and the
// steps sit at the usual lead times (24h, 1h) and the due time, where
// reminders fire anyway.
//
// iCalendar PRIORITY shows the time-independent part (priorityValue: urgent
// 1, high 3, normal 5, low 9). Putting the time part there would change the
// stored bytes, and so the ETag, of every task at each step without any
// change to the task: the phone would re-download objects all day, and a
// reminder ticked done just as its alarm fires (the moment a step is
// crossed) would meet a 412 for a stale ETag. The phone shows the time part
// itself from DUE (overdue and today lists) and fires the VALARMs.
func Urgency(t *store.Task, due time.Time, now time.Time) int {
	if t == nil || !t.Open() {
		return 0
	}
	score := priorityScore[t.Priority]
	if !due.IsZero() {
		score += timeScore(due.Sub(now))
	}
	if t.Status == "in_progress" {
		score += 5
	}
	return min(score, 100)
}

// UrgentScore is the score from which a task counts as urgent.
const UrgentScore = 60

var priorityScore = map[string]int{"low": 0, "normal": 10, "high": 25, "urgent": 60}

func timeScore(left time.Duration) int {
	switch {
	case left <= 0:
		return 40
	case left <= time.Hour:
		return 35
	case left <= 24*time.Hour:
		return 25
	case left <= 3*24*time.Hour:
		return 15
	case left <= 7*24*time.Hour:
		return 10
	}
	return 0
}

// UserUrgency is Urgency with the due instant taken in the user's zone.
func UserUrgency(t *store.Task, loc *time.Location, now time.Time) int {
	var due time.Time
	if !t.Due.IsZero() {
		due = DueInstant(t.Due, loc)
	}
	return Urgency(t, due, now)
}

// IsUrgent reports whether a task is urgent at now for a user in loc.
func IsUrgent(t *store.Task, loc *time.Location, now time.Time) bool {
	return UserUrgency(t, loc, now) >= UrgentScore
}

// RankedTask is a task with its urgency at one moment.
type RankedTask struct {
	Task    *store.Task
	Due     time.Time // due instant; zero if none
	Urgency int
}

// RankByUrgency scores tasks at now and sorts them: most urgent first, then
// the earlier due instant, then source and id, so the order is total and the
// same on every run.
func RankByUrgency(tasks []*store.Task, loc *time.Location, now time.Time) []RankedTask {
	out := make([]RankedTask, 0, len(tasks))
	for _, t := range tasks {
		r := RankedTask{Task: t}
		if !t.Due.IsZero() {
			r.Due = DueInstant(t.Due, loc)
		}
		r.Urgency = Urgency(t, r.Due, now)
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b RankedTask) int {
		if c := cmp.Compare(b.Urgency, a.Urgency); c != 0 {
			return c
		}
		if c := compareDue(a.Due, b.Due); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Task.Source, b.Task.Source); c != 0 {
			return c
		}
		return cmp.Compare(a.Task.ID, b.Task.ID)
	})
	return out
}

// compareDue orders due instants, no due time last.
func compareDue(a, b time.Time) int {
	switch {
	case a.IsZero() && b.IsZero():
		return 0
	case a.IsZero():
		return 1
	case b.IsZero():
		return -1
	}
	return a.Compare(b)
}
