package store

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Alert is the deadline engine's schedule for one user's task: which alert
// instants (due time minus each lead time, and the due time itself) are
// behind it, and when the scheduler must next look at it. The lead times and
// the user's settings are not stored: the scheduler derives the instants from
// the config it runs with, so a reload changes them without rewriting rows.
//
// A row exists while the task is open, has a due time and is visible to the
// user; it is what the daily digest lists too, so users whose alerts travel
// as VALARMs have rows (with no FireAt) as well.
type Alert struct {
	User   string
	Source string
	TaskID string
	// Due is the task's due time the schedule was built for; a task whose
	// due time differs has moved and is re-armed.
	Due When
	// Covered: alert instants at or before it are done, either sent or
	// passed before the schedule was armed (a new assignment is announced by
	// its own mail, not by a burst of stale reminders).
	Covered time.Time
	// AlertAt is the earliest alert instant not yet covered as last planned;
	// zero if none is left. It may be in the past while a mail waits for the
	// end of the user's quiet hours.
	AlertAt time.Time
	// FireAt is when the scheduler must look at the row next; zero: never
	// (nothing left to send), until the task or the config changes.
	FireAt time.Time
}

// AlertTx reads and writes alert schedules. Every method is cheap: the
// scheduler reads only rows that are due (an index on FireAt), and ingest
// touches one row per user and task it changes.
type AlertTx interface {
	// ArmAlert makes sure the user has a schedule for the task's due time. A
	// new schedule, or one built for another due time, starts afresh:
	// instants before this transaction's time are covered and the scheduler
	// looks at it at once (an EventAlert wakes it). A schedule for the same
	// due time is left as it is, so a task edit never repeats or drops an
	// alert. It reports whether it armed.
	ArmAlert(user, source, taskID string, due When) (bool, error)
	// ArmPlannedAlert is ArmAlert for a schedule its caller has planned
	// already (a.Covered, a.AlertAt, a.FireAt, as UpdateAlert would store
	// them): one statement where arming and planning were two. A schedule
	// for the same due time is left as it is, as ArmAlert leaves it.
	ArmPlannedAlert(a *Alert) (bool, error)
	// DisarmAlert removes the schedule, if any.
	DisarmAlert(user, source, taskID string) error
	// DueAlerts lists schedules whose FireAt is not after now, earliest first.
	DueAlerts(now time.Time, limit int) ([]Alert, error)
	// NextAlert returns the earliest FireAt of any schedule.
	NextAlert() (time.Time, bool, error)
	// NextAlertAndValue is NextAlert and Get(key) in one statement (its
	// own snapshot, so it runs in a Read): the scheduler's check after
	// every commit that arms a schedule. value is "" when key is unset.
	NextAlertAndValue(key string) (next time.Time, ok bool, value string, err error)
	// UpdateAlert stores the scheduler's new Covered, AlertAt and FireAt of
	// a schedule; ErrNotFound if it is gone.
	UpdateAlert(a *Alert) error
	// ReplanAlerts hands every schedule of user back to the scheduler (FireAt
	// = now) after the settings its instants derive from changed. Schedules
	// with nothing pending get Covered = now as well: a reload adds no
	// alerts in the past, while mails already due (held by quiet hours) stay
	// due. It returns the number of schedules.
	ReplanAlerts(user string, now time.Time) (int64, error)
	// AlertTasks returns the tasks of the user's schedules whose stored due
	// time is before the given time, earliest due first, at most limit.
	AlertTasks(user string, dueBefore time.Time, limit int) ([]Task, error)
	// CountAlerts returns how many schedules exist and how many of them the
	// scheduler will look at again.
	CountAlerts() (total, armed int64, err error)
	// OpenTasksWithDue lists open, undeleted tasks with a due time in
	// (source, id) order after the given key, for arming schedules of tasks
	// stored before the deadline engine existed.
	OpenTasksWithDue(afterSource, afterID string, limit int) ([]Task, error)
	// PruneAlerts removes the schedules of every user not in keep.
	PruneAlerts(keep []string) error
}

const alertCols = `username, source, task_id, due_at, all_day, covered, alert_at, fire_at`

func nullNanos(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func scanAlert(s scanner) (*Alert, error) {
	var a Alert
	var due, covered int64
	var allDay int
	var alertAt, fireAt sql.NullInt64
	if err := s.Scan(&a.User, &a.Source, &a.TaskID, &due, &allDay, &covered, &alertAt, &fireAt); err != nil {
		return nil, err
	}
	a.Due = When{Time: time.Unix(0, due).UTC(), AllDay: allDay != 0}
	a.Covered = time.Unix(0, covered).UTC()
	if alertAt.Valid {
		a.AlertAt = time.Unix(0, alertAt.Int64).UTC()
	}
	if fireAt.Valid {
		a.FireAt = time.Unix(0, fireAt.Int64).UTC()
	}
	return &a, nil
}

func (tx *sqlTx) ArmAlert(user, source, taskID string, due When) (bool, error) {
	now := tx.now
	return tx.ArmPlannedAlert(&Alert{User: user, Source: source, TaskID: taskID, Due: due,
		Covered: now.Add(-time.Nanosecond), AlertAt: now, FireAt: now})
}

func (tx *sqlTx) ArmPlannedAlert(a *Alert) (bool, error) {
	if a.Due.IsZero() {
		return false, fmt.Errorf("arm alert %s %s/%s: no due time", a.User, a.Source, a.TaskID)
	}
	// The conditional upsert keeps a schedule for the same due time
	// untouched: its Covered mark is what makes every alert go out once.
	res, err := tx.exec(`INSERT INTO alerts (`+alertCols+`) VALUES (?,?,?,?,?,?,?,?)
		ON CONFLICT (username, source, task_id) DO UPDATE SET due_at = excluded.due_at, all_day = excluded.all_day,
		covered = excluded.covered, alert_at = excluded.alert_at, fire_at = excluded.fire_at
		WHERE alerts.due_at <> excluded.due_at OR alerts.all_day <> excluded.all_day`,
		a.User, a.Source, a.TaskID, a.Due.Time.UnixNano(), boolInt(a.Due.AllDay), a.Covered.UnixNano(),
		nullNanos(a.AlertAt), nullNanos(a.FireAt))
	if err != nil {
		return false, fmt.Errorf("arm alert %s %s/%s: %w", a.User, a.Source, a.TaskID, err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		// No user or task in the event: the hub de-duplicates, so a batch
		// of a thousand tasks wakes the scheduler once.
		tx.Emit(Event{Kind: EventAlert})
	}
	return n > 0, nil
}

func (tx *sqlTx) DisarmAlert(user, source, taskID string) error {
	if _, err := tx.exec(`DELETE FROM alerts WHERE username = ? AND source = ? AND task_id = ?`, user, source, taskID); err != nil {
		return fmt.Errorf("disarm alert %s %s/%s: %w", user, source, taskID, err)
	}
	return nil
}

func (tx *sqlTx) DueAlerts(now time.Time, limit int) ([]Alert, error) {
	rows, err := tx.query(`SELECT `+alertCols+` FROM alerts WHERE fire_at IS NOT NULL AND fire_at <= ?
		ORDER BY fire_at LIMIT ?`, now.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("due alerts: %w", err)
	}
	defer rows.Close()
	var out []Alert
	for rows.Next() {
		a, err := scanAlert(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *a)
	}
	return out, rows.Err()
}

func (tx *sqlTx) NextAlert() (time.Time, bool, error) {
	var next int64
	err := tx.queryRow(`SELECT fire_at FROM alerts WHERE fire_at IS NOT NULL ORDER BY fire_at LIMIT 1`).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next alert: %w", err)
	}
	return time.Unix(0, next).UTC(), true, nil
}

// NextAlertAndValue reads both with scalar subqueries of one SELECT, each
// served by its index (alerts_fire, kv's key): the scheduler asked them in
// a View of two statements after every webhook.
func (tx *sqlTx) NextAlertAndValue(key string) (time.Time, bool, string, error) {
	var (
		next  sql.NullInt64
		value sql.NullString
	)
	err := tx.queryRow(`SELECT (SELECT fire_at FROM alerts WHERE fire_at IS NOT NULL ORDER BY fire_at LIMIT 1),
		(SELECT value FROM kv WHERE key = ?)`, key).Scan(&next, &value)
	if err != nil {
		return time.Time{}, false, "", fmt.Errorf("next alert and %s: %w", key, err)
	}
	if !next.Valid {
		return time.Time{}, false, value.String, nil
	}
	return time.Unix(0, next.Int64).UTC(), true, value.String, nil
}

func (tx *sqlTx) UpdateAlert(a *Alert) error {
	res, err := tx.exec(`UPDATE alerts SET covered = ?, alert_at = ?, fire_at = ? WHERE username = ? AND source = ? AND task_id = ?`,
		a.Covered.UnixNano(), nullNanos(a.AlertAt), nullNanos(a.FireAt), a.User, a.Source, a.TaskID)
	if err != nil {
		return fmt.Errorf("update alert %s %s/%s: %w", a.User, a.Source, a.TaskID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

func (tx *sqlTx) ReplanAlerts(user string, now time.Time) (int64, error) {
	n := now.UnixNano()
	res, err := tx.exec(`UPDATE alerts SET
		covered = CASE WHEN (alert_at IS NULL OR alert_at > ?) AND covered < ? THEN ? ELSE covered END,
		fire_at = ? WHERE username = ?`, n, n, n, n, user)
	if err != nil {
		return 0, fmt.Errorf("replan alerts of %s: %w", user, err)
	}
	count, _ := res.RowsAffected()
	if count > 0 {
		tx.Emit(Event{Kind: EventAlert})
	}
	return count, nil
}

// prefixed qualifies a column list with a table alias.
func prefixed(alias, cols string) string {
	parts := strings.Split(cols, ", ")
	for i := range parts {
		parts[i] = alias + "." + parts[i]
	}
	return strings.Join(parts, ", ")
}

func (tx *sqlTx) AlertTasks(user string, dueBefore time.Time, limit int) ([]Task, error) {
	rows, err := tx.query(`SELECT `+prefixed("t", taskCols)+` FROM alerts a JOIN tasks t ON t.source = a.source AND t.id = a.task_id
		WHERE a.username = ? AND a.due_at < ? ORDER BY a.due_at, a.source, a.task_id LIMIT ?`, user, dueBefore.UnixNano(), limit)
	if err != nil {
		return nil, fmt.Errorf("alert tasks of %s: %w", user, err)
	}
	return collectTasks(rows)
}

func (tx *sqlTx) CountAlerts() (total, armed int64, err error) {
	// On SQLite two counts beat COUNT(*), COUNT(fire_at) in one scan: a bare
	// COUNT(*) counts the table's pages without decoding rows, and the armed
	// ones are counted in the partial index alerts_fire. PostgreSQL scans
	// the table for either, so there one scan counts both.
	q := `SELECT COUNT(*), COUNT(fire_at) FROM alerts`
	if tx.dialect == SQLite {
		q = `SELECT (SELECT COUNT(*) FROM alerts), (SELECT COUNT(*) FROM alerts WHERE fire_at IS NOT NULL)`
	}
	err = tx.queryRow(q).Scan(&total, &armed)
	if err != nil {
		err = fmt.Errorf("count alerts: %w", err)
	}
	return total, armed, err
}

func (tx *sqlTx) OpenTasksWithDue(afterSource, afterID string, limit int) ([]Task, error) {
	rows, err := tx.query(`SELECT `+taskCols+` FROM tasks WHERE (source > ? OR (source = ? AND id > ?))
		AND deleted = 0 AND due_at IS NOT NULL AND status <> 'done' AND status <> 'cancelled'
		ORDER BY source, id LIMIT ?`, afterSource, afterSource, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("open tasks with due: %w", err)
	}
	return collectTasks(rows)
}

func collectTasks(rows *sql.Rows) ([]Task, error) {
	defer rows.Close()
	var out []Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *t)
	}
	return out, rows.Err()
}

// PruneAlerts removes the schedules of users not in keep (users taken out
// of the config). It reads the users that have schedules and deletes the
// missing ones in chunks: one "NOT IN (keep...)" statement broke past
// SQLite's 32,766 bound variables, so a config with more users failed every
// scheduler tick.
func (tx *sqlTx) PruneAlerts(keep []string) error {
	kept := make(map[string]bool, len(keep))
	for _, k := range keep {
		kept[k] = true
	}
	rows, err := tx.query(`SELECT DISTINCT username FROM alerts`)
	if err != nil {
		return fmt.Errorf("prune alerts: %w", err)
	}
	var gone []any
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			rows.Close()
			return fmt.Errorf("prune alerts: %w", err)
		}
		if !kept[u] {
			gone = append(gone, u)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("prune alerts: %w", err)
	}
	const chunk = 500 // well under every dialect's bound-variable limit
	for len(gone) > 0 {
		n := min(len(gone), chunk)
		q := `DELETE FROM alerts WHERE username IN (?` + strings.Repeat(",?", n-1) + `)`
		if _, err := tx.exec(q, gone[:n]...); err != nil {
			return fmt.Errorf("prune alerts: %w", err)
		}
		gone = gone[n:]
	}
	return nil
}
