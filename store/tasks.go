package store

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// When is an optional point in time: a date-time, or a date for all-day items.
type When struct {
	Time   time.Time // UTC; for all-day, midnight UTC of the date
	AllDay bool
}

// IsZero reports whether no time is set.
func (w When) IsZero() bool { return w.Time.IsZero() }

// Task is one task of one source as the task system last described it.
type Task struct {
	Source      string    `json:"-"`
	ID          string    `json:"-"`
	Title       string    `json:"title"`
	Description string    `json:"description,omitempty"`
	URL         string    `json:"url,omitempty"`
	Project     string    `json:"project,omitempty"`
	Assignees   []string  `json:"assignees,omitempty"`
	Labels      []string  `json:"labels,omitempty"`
	Start       When      `json:"start,omitzero"`
	Due         When      `json:"due,omitzero"`
	Status      string    `json:"status"`   // open | in_progress | done | cancelled
	Priority    string    `json:"priority"` // low | normal | high | urgent
	UpdatedAt   time.Time `json:"-"`
	Version     int64     `json:"-"` // 0: the source gives none
	Deleted     bool      `json:"-"`

	// Kept by duebridge.
	Sequence    int       `json:"sequence"` // iCalendar SEQUENCE, +1 per applied change
	Created     time.Time `json:"created"`
	Modified    time.Time `json:"-"` // last applied change
	Seq         int64     `json:"-"` // store revision of the last change
	CompletedBy string    `json:"completed_by,omitempty"`
	CompletedAt time.Time `json:"completed_at,omitzero"`
}

// Open reports whether the task still needs doing.
func (t *Task) Open() bool {
	return !t.Deleted && t.Status != "done" && t.Status != "cancelled"
}

// UserTask is one user's own state of a task: what the phone set.
type UserTask struct {
	User   string
	Source string
	TaskID string
	// Hidden: the user deleted it on the phone; it stays out of their lists
	// until the task system assigns it anew.
	Hidden bool
	// Extra is opaque state the CalDAV side keeps for round trips (the phone's
	// own VALARMs, X-APPLE-* properties).
	Extra string
	Seq   int64
}

// TaskTx reads and writes tasks.
type TaskTx interface {
	// Task returns the stored task, ErrNotFound if none.
	Task(source, id string) (*Task, error)
	// PutTask inserts or replaces the task; t.Seq and t.Modified are set.
	PutTask(t *Task) error
	// TasksBySource lists every task of a source (deleted ones too when asked).
	TasksBySource(source string, withDeleted bool) ([]Task, error)
	// TasksAfter lists, ordered by id, at most limit live (not deleted)
	// tasks of a source whose id sorts after after ("": from the first):
	// one page of a walk over a source in bounded transactions, which
	// the primary key (source, id) serves without a sort.
	TasksAfter(source, after string, limit int) ([]Task, error)
	// TaskObjectsAfter lists, ordered by name and without data, at most
	// limit live objects of task-system tasks (Source set) in a user's
	// collection whose name sorts after after: one page of a walk over
	// the tasks a user sees, served by the objects' primary key
	// (username, collection, name). The store keeps no index of tasks by
	// assignee; a user's objects are the indexed way to their tasks.
	TaskObjectsAfter(user, collection, after string, limit int) ([]Object, error)
	// UserTask returns a user's state for a task, ErrNotFound if none.
	UserTask(user, source, id string) (*UserTask, error)
	PutUserTask(u *UserTask) error
	// LastChanges returns, per source, when a delivery last changed a task.
	LastChanges() (map[string]time.Time, error)
}

func (tx *sqlTx) LastChanges() (map[string]time.Time, error) {
	rows, err := tx.query(`SELECT source, MAX(modified) FROM tasks GROUP BY source`)
	if err != nil {
		return nil, fmt.Errorf("last change per source: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var src string
		var last int64
		if err := rows.Scan(&src, &last); err != nil {
			return nil, err
		}
		out[src] = fromNanos(last)
	}
	return out, rows.Err()
}

const taskCols = `source, id, data, version, updated_at, due_at, status, deleted, seq, modified`

func (tx *sqlTx) Task(source, id string) (*Task, error) {
	row := tx.queryRow(`SELECT `+taskCols+` FROM tasks WHERE source = ? AND id = ?`, source, id)
	t, err := scanTask(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return t, err
}

func (tx *sqlTx) TasksBySource(source string, withDeleted bool) ([]Task, error) {
	q := `SELECT ` + taskCols + ` FROM tasks WHERE source = ?`
	if !withDeleted {
		q += ` AND deleted = 0`
	}
	rows, err := tx.query(q+` ORDER BY id`, source)
	if err != nil {
		return nil, err
	}
	return collectTasks(rows)
}

func (tx *sqlTx) TasksAfter(source, after string, limit int) ([]Task, error) {
	rows, err := tx.query(`SELECT `+taskCols+` FROM tasks WHERE source = ? AND id > ? AND deleted = 0 ORDER BY id LIMIT ?`,
		source, after, limit)
	if err != nil {
		return nil, fmt.Errorf("tasks of %s after %q: %w", source, after, err)
	}
	return collectTasks(rows)
}

func (tx *sqlTx) TaskObjectsAfter(user, collection, after string, limit int) ([]Object, error) {
	objs, err := tx.listObjects(false, `username = ? AND collection = ? AND name > ? AND source <> '' AND deleted = 0 ORDER BY name LIMIT ?`,
		user, collection, after, limit)
	if err != nil {
		return nil, fmt.Errorf("task objects of %s/%s after %q: %w", user, collection, after, err)
	}
	return objs, nil
}

type scanner interface{ Scan(...any) error }

func scanTask(s scanner) (*Task, error) {
	var t Task
	var data []byte
	var version, dueAt sql.NullInt64
	var updated, modified int64
	var deleted int
	if err := s.Scan(&t.Source, &t.ID, &data, &version, &updated, &dueAt, &t.Status, &deleted, &t.Seq, &modified); err != nil {
		return nil, err
	}
	status := t.Status
	if err := json.Unmarshal(data, &t); err != nil {
		return nil, fmt.Errorf("decode task %s/%s: %w", t.Source, t.ID, err)
	}
	t.Status = status
	t.Version = version.Int64
	t.UpdatedAt = fromNanos(updated)
	t.Modified = fromNanos(modified)
	t.Deleted = deleted != 0
	return &t, nil
}

func (tx *sqlTx) PutTask(t *Task) error {
	seq, err := tx.Seq()
	if err != nil {
		return err
	}
	t.Seq = seq
	t.Modified = tx.now
	if t.Created.IsZero() {
		t.Created = tx.now
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("encode task: %w", err)
	}
	var version, dueAt any
	if t.Version != 0 {
		version = t.Version
	}
	if !t.Due.IsZero() {
		dueAt = t.Due.Time.Unix()
	}
	_, err = tx.exec(`INSERT INTO tasks (`+taskCols+`) VALUES (?,?,?,?,?,?,?,?,?,?)
		ON CONFLICT (source, id) DO UPDATE SET data = excluded.data, version = excluded.version,
		updated_at = excluded.updated_at, due_at = excluded.due_at, status = excluded.status,
		deleted = excluded.deleted, seq = excluded.seq, modified = excluded.modified`,
		t.Source, t.ID, data, version, nanos(t.UpdatedAt), dueAt, t.Status, boolInt(t.Deleted), seq, nanos(t.Modified))
	if err != nil {
		return fmt.Errorf("put task %s/%s: %w", t.Source, t.ID, err)
	}
	return nil
}

func (tx *sqlTx) UserTask(user, source, id string) (*UserTask, error) {
	u := UserTask{User: user, Source: source, TaskID: id}
	var hidden int
	err := tx.queryRow(`SELECT hidden, extra, seq FROM user_tasks WHERE username = ? AND source = ? AND task_id = ?`,
		user, source, id).Scan(&hidden, &u.Extra, &u.Seq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	u.Hidden = hidden != 0
	return &u, nil
}

func (tx *sqlTx) PutUserTask(u *UserTask) error {
	seq, err := tx.Seq()
	if err != nil {
		return err
	}
	u.Seq = seq
	_, err = tx.exec(`INSERT INTO user_tasks (username, source, task_id, hidden, extra, seq) VALUES (?,?,?,?,?,?)
		ON CONFLICT (username, source, task_id) DO UPDATE SET hidden = excluded.hidden, extra = excluded.extra, seq = excluded.seq`,
		u.User, u.Source, u.TaskID, boolInt(u.Hidden), u.Extra, seq)
	if err != nil {
		return fmt.Errorf("put user task: %w", err)
	}
	return nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
