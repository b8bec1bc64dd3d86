package store

import (
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Callback is one queued completion report to a task system. Body is the
// exact JSON to POST (signed at send time with the source's current secret).
type Callback struct {
	ID          int64
	EventID     string // unique per change; receivers de-duplicate on it
	Source      string
	TaskID      string
	Body        []byte
	Created     time.Time
	NextAttempt time.Time
	Attempts    int
	LastError   string
	Delivered   time.Time // zero while pending
}

// OutboxTx is the durable queue of completion callbacks.
type OutboxTx interface {
	EnqueueCallback(c *Callback) error
	// DueCallbacks lists pending callbacks whose next attempt is not after now.
	DueCallbacks(now time.Time, limit int) ([]Callback, error)
	// NextCallback returns the earliest next attempt of a pending callback.
	NextCallback() (time.Time, bool, error)
	// ClaimCallback moves a pending callback's next attempt to until, so no
	// other worker picks it up while it is being delivered.
	ClaimCallback(id int64, until time.Time) error
	MarkDelivered(id int64, at time.Time) error
	MarkFailed(id int64, attempts int, next time.Time, reason string) error
	// OutboxCounts returns pending callbacks and those of them that failed at least once.
	OutboxCounts() (pending, failing int, err error)
	// PruneDelivered deletes delivered callbacks older than before.
	PruneDelivered(before time.Time) error
	// RetryFailed makes pending callbacks that failed at least once and
	// wait past after due at now; it returns how many.
	RetryFailed(now, after time.Time) (int, error)
	// OutboxBySource summarises the outbox per source, by source name.
	OutboxBySource() ([]SourceOutbox, error)
}

// SourceOutbox is one source's part of the outbox.
type SourceOutbox struct {
	Source        string
	Pending       int
	Failing       int       // pending and failed at least once
	LastError     string    // of the most recently queued failing callback
	LastDelivered time.Time // zero: none delivered (or all pruned)
}

func (tx *sqlTx) EnqueueCallback(c *Callback) error {
	if tx.readOnly { // an INSERT through queryRow passes exec's guard
		return errReadOnly
	}
	if c.Created.IsZero() {
		c.Created = tx.now
	}
	if c.NextAttempt.IsZero() {
		c.NextAttempt = tx.now
	}
	err := tx.queryRow(`INSERT INTO outbox (event_id, source, task_id, body, created, next_attempt, attempts, last_error)
		VALUES (?,?,?,?,?,?,0,'') RETURNING id`, c.EventID, c.Source, c.TaskID, c.Body, nanos(c.Created), nanos(c.NextAttempt)).Scan(&c.ID)
	if err != nil {
		return fmt.Errorf("enqueue callback: %w", err)
	}
	tx.Emit(Event{Kind: EventOutbox, Source: c.Source, TaskID: c.TaskID})
	return nil
}

func (tx *sqlTx) DueCallbacks(now time.Time, limit int) ([]Callback, error) {
	rows, err := tx.query(`SELECT id, event_id, source, task_id, body, created, next_attempt, attempts, last_error
		FROM outbox WHERE delivered IS NULL AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?`, nanos(now), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Callback
	for rows.Next() {
		var c Callback
		var created, next int64
		if err := rows.Scan(&c.ID, &c.EventID, &c.Source, &c.TaskID, &c.Body, &created, &next, &c.Attempts, &c.LastError); err != nil {
			return nil, err
		}
		c.Created, c.NextAttempt = fromNanos(created), fromNanos(next)
		out = append(out, c)
	}
	return out, rows.Err()
}

func (tx *sqlTx) NextCallback() (time.Time, bool, error) {
	var next sql.NullInt64
	if err := tx.queryRow(`SELECT MIN(next_attempt) FROM outbox WHERE delivered IS NULL`).Scan(&next); err != nil {
		return time.Time{}, false, err
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return fromNanos(next.Int64), true, nil
}

func (tx *sqlTx) ClaimCallback(id int64, until time.Time) error {
	_, err := tx.exec(`UPDATE outbox SET next_attempt = ? WHERE id = ? AND delivered IS NULL`, nanos(until), id)
	return err
}

func (tx *sqlTx) MarkDelivered(id int64, at time.Time) error {
	_, err := tx.exec(`UPDATE outbox SET delivered = ?, attempts = attempts + 1, last_error = '' WHERE id = ?`, nanos(at), id)
	return err
}

func (tx *sqlTx) MarkFailed(id int64, attempts int, next time.Time, reason string) error {
	// PostgreSQL refuses invalid UTF-8 in TEXT, and an error may quote
	// anything a server sent: repair it, and cut on a character boundary.
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) > 500 {
		reason = strings.ToValidUTF8(reason[:500], "")
	}
	_, err := tx.exec(`UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?`, attempts, nanos(next), reason, id)
	return err
}

func (tx *sqlTx) OutboxCounts() (pending, failing int, err error) {
	err = tx.queryRow(`SELECT COUNT(*), COUNT(CASE WHEN attempts > 0 THEN 1 END) FROM outbox WHERE delivered IS NULL`).Scan(&pending, &failing)
	return
}

func (tx *sqlTx) PruneDelivered(before time.Time) error {
	_, err := tx.exec(`DELETE FROM outbox WHERE delivered IS NOT NULL AND delivered < ?`, nanos(before))
	return err
}

func (tx *sqlTx) RetryFailed(now, after time.Time) (int, error) {
	res, err := tx.exec(`UPDATE outbox SET next_attempt = ? WHERE delivered IS NULL AND attempts > 0 AND next_attempt > ?`, nanos(now), nanos(after))
	if err != nil {
		return 0, fmt.Errorf("retry failed callbacks: %w", err)
	}
	n, err := res.RowsAffected()
	return int(n), err
}

func (tx *sqlTx) OutboxBySource() ([]SourceOutbox, error) {
	rows, err := tx.query(`SELECT source, COUNT(CASE WHEN delivered IS NULL THEN 1 END),
		COUNT(CASE WHEN delivered IS NULL AND attempts > 0 THEN 1 END), COALESCE(MAX(delivered), 0)
		FROM outbox GROUP BY source ORDER BY source`)
	if err != nil {
		return nil, fmt.Errorf("outbox by source: %w", err)
	}
	var out []SourceOutbox
	idx := map[string]int{}
	for rows.Next() {
		var so SourceOutbox
		var last int64
		if err := rows.Scan(&so.Source, &so.Pending, &so.Failing, &last); err != nil {
			rows.Close()
			return nil, err
		}
		if last > 0 {
			so.LastDelivered = fromNanos(last)
		}
		idx[so.Source] = len(out)
		out = append(out, so)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// The newest error per source: the outbox of a healthy system is
	// small, and the failing part smaller.
	rows, err = tx.query(`SELECT source, last_error FROM outbox WHERE delivered IS NULL AND attempts > 0 ORDER BY id DESC`)
	if err != nil {
		return nil, fmt.Errorf("outbox errors by source: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var src, msg string
		if err := rows.Scan(&src, &msg); err != nil {
			return nil, err
		}
		if i, ok := idx[src]; ok && out[i].LastError == "" {
			out[i].LastError = msg
		}
	}
	return out, rows.Err()
}
