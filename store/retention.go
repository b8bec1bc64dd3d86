package store

import (
	"fmt"
	"time"
)

// Retention: the queries the retention job (bridge/retention.go) needs to
// find what has expired, in small batches. Mails are removed through
// Tx.Expunge, the same operation IMAP's EXPUNGE uses, so MODSEQs, events
// and what open IMAP sessions report (EXPUNGE, VANISHED) stay right.

// MessageRef names one stored mail.
type MessageRef struct {
	User    string
	Mailbox string
	UID     uint32
}

// TrashUse is the SPECIAL-USE attribute of the mailboxes Trash retention
// applies to (RFC 6154).
const TrashUse = `\Trash`

// Migration 60 (range 60-69: operations). retention_trash records when the
// retention job first saw each mail in a \Trash mailbox: a MOVE keeps the
// mail's arrival date, so "N days in Trash" needs its own clock. A UID in a
// mailbox is never reused under one UIDVALIDITY, so (user, mailbox, uid)
// names one stay in Trash. Registered here, before migrate.go's init sorts
// the list (package variables are initialised before any init function).
var _ = func() int {
	migrations = append(migrations, migration{60, `
CREATE TABLE retention_trash (
	username TEXT NOT NULL,
	mailbox  TEXT NOT NULL,
	uid      BIGINT NOT NULL,
	seen_at  BIGINT NOT NULL,
	PRIMARY KEY (username, mailbox, uid)
);
CREATE INDEX retention_trash_seen ON retention_trash (seen_at);
CREATE INDEX messages_date ON messages (mailbox, internal_date);
CREATE INDEX objects_tombstones ON objects (deleted, modified);
`})
	// 61: objects_tombstones led with deleted, and SQLite (no statistics)
	// took "deleted = 0" as the best index for every query of live objects
	// by user, UID or task: each quota count, UID lookup and ingest walked
	// all live objects of every user. It becomes a partial index over the
	// tombstones alone, which only the retention pass can use; the quota
	// count gets a partial index of its own (the user's own reminders).
	migrations = append(migrations, migration{61, `
DROP INDEX objects_tombstones;
CREATE INDEX objects_tombstones ON objects (modified) WHERE deleted = 1;
CREATE INDEX objects_own ON objects (username) WHERE source = '' AND deleted = 0;
`})
	return 0
}()

// OldMessages lists up to limit mails of the named mailbox (every user's)
// that arrived before before, oldest first.
func OldMessages(t Tx, mailbox string, before time.Time, limit int) ([]MessageRef, error) {
	tx := t.(*sqlTx)
	rows, err := tx.query(`SELECT username, mailbox, uid FROM messages WHERE mailbox = ? AND internal_date < ?
		ORDER BY internal_date LIMIT ?`, mailbox, nanos(before), limit)
	if err != nil {
		return nil, fmt.Errorf("old messages in %s: %w", mailbox, err)
	}
	return scanRefs(rows)
}

// NoteTrash records now as the time every mail in a \Trash mailbox that is
// not yet recorded entered it, and forgets the records of mails that have
// left. It returns how many it recorded.
func NoteTrash(t Tx) (int64, error) {
	tx := t.(*sqlTx)
	res, err := tx.exec(`INSERT INTO retention_trash (username, mailbox, uid, seen_at)
		SELECT m.username, m.mailbox, m.uid, ? FROM messages m
		JOIN mailboxes b ON b.username = m.username AND b.name = m.mailbox
		WHERE b.special_use = ? AND NOT EXISTS (SELECT 1 FROM retention_trash r
			WHERE r.username = m.username AND r.mailbox = m.mailbox AND r.uid = m.uid)`, nanos(tx.now), TrashUse)
	if err != nil {
		return 0, fmt.Errorf("note trash: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.exec(`DELETE FROM retention_trash WHERE NOT EXISTS (SELECT 1 FROM messages m
		WHERE m.username = retention_trash.username AND m.mailbox = retention_trash.mailbox AND m.uid = retention_trash.uid)`); err != nil {
		return 0, fmt.Errorf("note trash: forget gone mails: %w", err)
	}
	return n, nil
}

// OldTrash lists up to limit mails that entered a \Trash mailbox (as
// NoteTrash saw them) before before, longest there first.
func OldTrash(t Tx, before time.Time, limit int) ([]MessageRef, error) {
	tx := t.(*sqlTx)
	rows, err := tx.query(`SELECT r.username, r.mailbox, r.uid FROM retention_trash r
		WHERE r.seen_at < ? AND EXISTS (SELECT 1 FROM messages m
			WHERE m.username = r.username AND m.mailbox = r.mailbox AND m.uid = r.uid)
		ORDER BY r.seen_at LIMIT ?`, nanos(before), limit)
	if err != nil {
		return nil, fmt.Errorf("old trash: %w", err)
	}
	return scanRefs(rows)
}

type rowsScanner interface {
	Next() bool
	Scan(...any) error
	Close() error
	Err() error
}

func scanRefs(rows rowsScanner) ([]MessageRef, error) {
	defer rows.Close()
	var out []MessageRef
	for rows.Next() {
		var r MessageRef
		var uid int64
		if err := rows.Scan(&r.User, &r.Mailbox, &uid); err != nil {
			return nil, err
		}
		r.UID = uint32(uid)
		out = append(out, r)
	}
	return out, rows.Err()
}

// PruneObjectTombstones removes up to limit calendar tombstones deleted
// before before. Each collection's MinSeq rises to the revision of the
// newest tombstone it lost: a sync token older than that could no longer
// learn of the deletion, so it is refused (valid-sync-token) and the phone
// syncs in full. It returns how many it removed.
func PruneObjectTombstones(t Tx, before time.Time, limit int) (int, error) {
	tx := t.(*sqlTx)
	rows, err := tx.query(`SELECT username, collection, name, seq FROM objects WHERE deleted = 1 AND modified < ?
		ORDER BY modified LIMIT ?`, nanos(before), limit)
	if err != nil {
		return 0, fmt.Errorf("find tombstones: %w", err)
	}
	type tomb struct {
		user, coll, name string
		seq              int64
	}
	var tombs []tomb
	for rows.Next() {
		var tb tomb
		if err := rows.Scan(&tb.user, &tb.coll, &tb.name, &tb.seq); err != nil {
			rows.Close()
			return 0, err
		}
		tombs = append(tombs, tb)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, tb := range tombs {
		if _, err := tx.exec(`DELETE FROM objects WHERE username = ? AND collection = ? AND name = ? AND deleted = 1`, tb.user, tb.coll, tb.name); err != nil {
			return 0, fmt.Errorf("prune tombstone %s/%s/%s: %w", tb.user, tb.coll, tb.name, err)
		}
		if _, err := tx.exec(`UPDATE collections SET min_seq = ? WHERE username = ? AND name = ? AND min_seq < ?`, tb.seq, tb.user, tb.coll, tb.seq); err != nil {
			return 0, fmt.Errorf("raise min_seq of %s/%s: %w", tb.user, tb.coll, err)
		}
	}
	return len(tombs), nil
}

// PruneTaskTombstones forgets up to limit tasks deleted before before, with
// each user's state of them. It returns how many it removed.
func PruneTaskTombstones(t Tx, before time.Time, limit int) (int, error) {
	tx := t.(*sqlTx)
	rows, err := tx.query(`SELECT source, id FROM tasks WHERE deleted = 1 AND modified < ? ORDER BY modified LIMIT ?`, nanos(before), limit)
	if err != nil {
		return 0, fmt.Errorf("find deleted tasks: %w", err)
	}
	var ids [][2]string
	for rows.Next() {
		var k [2]string
		if err := rows.Scan(&k[0], &k[1]); err != nil {
			rows.Close()
			return 0, err
		}
		ids = append(ids, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	for _, k := range ids {
		if _, err := tx.exec(`DELETE FROM user_tasks WHERE source = ? AND task_id = ?`, k[0], k[1]); err != nil {
			return 0, fmt.Errorf("prune task %s/%s: %w", k[0], k[1], err)
		}
		if _, err := tx.exec(`DELETE FROM tasks WHERE source = ? AND id = ? AND deleted = 1`, k[0], k[1]); err != nil {
			return 0, fmt.Errorf("prune task %s/%s: %w", k[0], k[1], err)
		}
	}
	return len(ids), nil
}
