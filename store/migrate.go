package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"
)

// migration is one schema step. Versions are applied in ascending order, each
// in its own transaction together with the version bump. Versions may leave
// gaps (parts of the product own ranges); a version, once released, never
// changes.
type migration struct {
	version int
	sql     string // {{blob}}, {{autoid}} are replaced per dialect
}

// migrations, ordered by version. Ranges: 1-9 core, 10-19 calendar, 20-29
// mail, 30-39 deadline engine and outbox, 40-49 adapters, 50-59 security.
var migrations = []migration{
	{1, `
CREATE TABLE revision (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO revision (id, seq) VALUES (1, 0);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tasks (
	source     TEXT NOT NULL,
	id         TEXT NOT NULL,
	data       {{blob}} NOT NULL,
	version    BIGINT,
	updated_at BIGINT NOT NULL,
	due_at     BIGINT,
	status     TEXT NOT NULL,
	deleted    INTEGER NOT NULL DEFAULT 0,
	seq        BIGINT NOT NULL,
	modified   BIGINT NOT NULL,
	PRIMARY KEY (source, id)
);
CREATE INDEX tasks_due ON tasks (due_at);
CREATE TABLE user_tasks (
	username TEXT NOT NULL,
	source   TEXT NOT NULL,
	task_id  TEXT NOT NULL,
	hidden   INTEGER NOT NULL DEFAULT 0,
	extra    TEXT NOT NULL DEFAULT '',
	seq      BIGINT NOT NULL,
	PRIMARY KEY (username, source, task_id)
);
CREATE TABLE collections (
	username     TEXT NOT NULL,
	name         TEXT NOT NULL,
	project      TEXT NOT NULL,
	kind         TEXT NOT NULL,
	display_name TEXT NOT NULL,
	color        TEXT NOT NULL DEFAULT '',
	sort_order   INTEGER NOT NULL DEFAULT 0,
	seq          BIGINT NOT NULL,
	min_seq      BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (username, name)
);
CREATE TABLE objects (
	username   TEXT NOT NULL,
	collection TEXT NOT NULL,
	name       TEXT NOT NULL,
	uid        TEXT NOT NULL,
	source     TEXT NOT NULL DEFAULT '',
	task_id    TEXT NOT NULL DEFAULT '',
	etag       TEXT NOT NULL,
	data       {{blob}},
	seq        BIGINT NOT NULL,
	deleted    INTEGER NOT NULL DEFAULT 0,
	modified   BIGINT NOT NULL,
	PRIMARY KEY (username, collection, name)
);
CREATE INDEX objects_sync ON objects (username, collection, seq);
CREATE INDEX objects_uid ON objects (username, uid);
CREATE INDEX objects_task ON objects (source, task_id);
CREATE TABLE mailboxes (
	username     TEXT NOT NULL,
	name         TEXT NOT NULL,
	special_use  TEXT NOT NULL DEFAULT '',
	uid_validity BIGINT NOT NULL,
	uid_next     BIGINT NOT NULL,
	modseq       BIGINT NOT NULL,
	PRIMARY KEY (username, name)
);
CREATE TABLE messages (
	username      TEXT NOT NULL,
	mailbox       TEXT NOT NULL,
	uid           BIGINT NOT NULL,
	flags         TEXT NOT NULL DEFAULT '',
	internal_date BIGINT NOT NULL,
	size          BIGINT NOT NULL,
	data          {{blob}} NOT NULL,
	message_id    TEXT NOT NULL DEFAULT '',
	source        TEXT NOT NULL DEFAULT '',
	task_id       TEXT NOT NULL DEFAULT '',
	modseq        BIGINT NOT NULL,
	PRIMARY KEY (username, mailbox, uid)
);
CREATE INDEX messages_task ON messages (source, task_id);
`},
	// messages_modseq makes "what changed in this mailbox since MODSEQ n" an
	// index range instead of a scan: IMAP sessions ask it after every commit
	// that touches the mailbox.
	{20, `
CREATE INDEX messages_modseq ON messages (username, mailbox, modseq);
`},
	{30, `
CREATE TABLE outbox (
	id           {{autoid}},
	event_id     TEXT NOT NULL UNIQUE,
	source       TEXT NOT NULL,
	task_id      TEXT NOT NULL,
	body         {{blob}} NOT NULL,
	created      BIGINT NOT NULL,
	next_attempt BIGINT NOT NULL,
	attempts     INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT NOT NULL DEFAULT '',
	delivered    BIGINT
);
CREATE INDEX outbox_pending ON outbox (next_attempt) WHERE delivered IS NULL;
`},
	// Deadline engine: one alert schedule per user and task (store/alerts.go).
	// Times are Unix nanoseconds. alerts_fire lets each scheduler tick read
	// only the rows that are due; alerts_user_due serves the daily digest.
	{31, `
CREATE TABLE alerts (
	username TEXT NOT NULL,
	source   TEXT NOT NULL,
	task_id  TEXT NOT NULL,
	due_at   BIGINT NOT NULL,
	all_day  INTEGER NOT NULL DEFAULT 0,
	covered  BIGINT NOT NULL,
	alert_at BIGINT,
	fire_at  BIGINT,
	PRIMARY KEY (username, source, task_id)
);
CREATE INDEX alerts_fire ON alerts (fire_at) WHERE fire_at IS NOT NULL;
CREATE INDEX alerts_user_due ON alerts (username, due_at);
`},
	// 72: every new-task webhook wrote a page of two indexes that no query
	// reads: tasks_due (the deadline engine reads alerts, and its rebuild
	// walks tasks by primary key) and messages_task (mails are read by
	// user, mailbox and UID or MODSEQ). A commit writes each dirty page to
	// the WAL, two syscalls a page, inside the single writer's turn. IF
	// EXISTS keeps the step safe to run on either dialect and on a store
	// where an operator dropped them already.
	//
	// On SQLite, alerts also becomes a WITHOUT ROWID table: a table with a
	// text primary key is otherwise two b-trees (rows by rowid, and the
	// key's automatic index), so every armed alert wrote both. Its rows
	// are a few dozen bytes, the case WITHOUT ROWID is made for. PostgreSQL
	// has no rowid; the statements marked {{sqlite}} are SQLite's alone.
	{72, `
DROP INDEX IF EXISTS tasks_due;
DROP INDEX IF EXISTS messages_task;
{{sqlite}} CREATE TABLE alerts_72 (
	username TEXT NOT NULL,
	source   TEXT NOT NULL,
	task_id  TEXT NOT NULL,
	due_at   BIGINT NOT NULL,
	all_day  INTEGER NOT NULL DEFAULT 0,
	covered  BIGINT NOT NULL,
	alert_at BIGINT,
	fire_at  BIGINT,
	PRIMARY KEY (username, source, task_id)
) WITHOUT ROWID;
{{sqlite}} INSERT INTO alerts_72 (username, source, task_id, due_at, all_day, covered, alert_at, fire_at)
	SELECT username, source, task_id, due_at, all_day, covered, alert_at, fire_at FROM alerts;
{{sqlite}} DROP TABLE alerts;
{{sqlite}} ALTER TABLE alerts_72 RENAME TO alerts;
{{sqlite}} CREATE INDEX alerts_fire ON alerts (fire_at) WHERE fire_at IS NOT NULL;
{{sqlite}} CREATE INDEX alerts_user_due ON alerts (username, due_at);
`},
	// Device passwords (store/devices.go): a keyed hash per device, found by
	// the non-secret ID in the password. device_revocations lets every
	// process sharing the database end a revoked device's sessions.
	{50, `
CREATE TABLE device_passwords (
	id        TEXT PRIMARY KEY,
	username  TEXT NOT NULL,
	name      TEXT NOT NULL,
	hash      {{blob}} NOT NULL,
	created   BIGINT NOT NULL,
	last_used BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX device_passwords_user ON device_passwords (username, created);
CREATE TABLE device_revocations (
	seq       {{autoid}},
	username  TEXT NOT NULL,
	device_id TEXT NOT NULL,
	revoked   BIGINT NOT NULL
);
`},
}

func init() {
	// Sorted once, before any Open (sorting in migrate raced when several
	// stores were opened at once).
	sort.Slice(migrations, func(i, j int) bool { return migrations[i].version < migrations[j].version })
}

func ddl(dialect, s string) string {
	blob, autoid := "BLOB", "INTEGER PRIMARY KEY AUTOINCREMENT"
	if dialect == Postgres {
		blob, autoid = "BYTEA", "BIGSERIAL PRIMARY KEY"
	}
	return strings.NewReplacer("{{blob}}", blob, "{{autoid}}", autoid).Replace(s)
}

// SchemaVersion is the newest schema this binary knows.
func SchemaVersion() int {
	return migrations[len(migrations)-1].version
}

// migrateLock is the key of the PostgreSQL advisory lock that serialises
// migrations ("dueb"); the second key is the schema's hash, so databases in
// different schemas migrate independently.
const migrateLock = 0x64756562

// migrate brings the schema to SchemaVersion. Several processes may start on
// one database at once (replicas, or a server and a CLI command): each step
// runs in its own transaction that first takes a lock (SQLite: BEGIN
// IMMEDIATE, via _txlock; PostgreSQL: an advisory transaction lock) and only
// then reads the version, so exactly one process applies each step and the
// others find it done.
//
// When it applied anything it logs one line with the versions and the time
// taken: a few steps rebuild a table, which at a million users holds the
// first start after an upgrade for tens of seconds before the server listens.
func migrate(ctx context.Context, db *sql.DB, dialect string, log *slog.Logger) error {
	start, from, to := time.Now(), -1, -1
	for {
		current, applied, err := migrateStep(ctx, db, dialect)
		if err != nil {
			return err
		}
		if applied == 0 {
			if to >= 0 {
				log.Info("schema migrated", "from", from, "to", to, "took", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if from < 0 {
			from = current
		}
		to = applied
	}
}

// migrateStep applies the next migration, if any: current is the version
// it found, applied the one it brought the schema to (0 when the schema was
// already current).
func migrateStep(ctx context.Context, db *sql.DB, dialect string) (current, applied int, err error) {
	done := false
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	defer func() {
		if err != nil || done {
			tx.Rollback()
		}
	}()
	if dialect == Postgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))`, migrateLock); err != nil {
			return 0, 0, fmt.Errorf("migrate: lock: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`); err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	err = tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&current)
	switch {
	case err == sql.ErrNoRows:
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
			return 0, 0, fmt.Errorf("migrate: %w", err)
		}
	case err != nil:
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if current > SchemaVersion() {
		return 0, 0, fmt.Errorf("the database has schema version %d, newer than this binary's %d: upgrade duebridge", current, SchemaVersion())
	}
	i := sort.Search(len(migrations), func(i int) bool { return migrations[i].version > current })
	if i == len(migrations) {
		done = true
		return current, 0, nil
	}
	m := migrations[i]
	for _, stmt := range splitSQL(ddl(dialect, m.sql)) {
		if rest, ok := strings.CutPrefix(stmt, sqliteOnly); ok {
			if dialect != SQLite {
				continue
			}
			stmt = strings.TrimSpace(rest)
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return 0, 0, fmt.Errorf("migrate to %d: %q: %w", m.version, firstLine(stmt), err)
		}
	}
	q := `UPDATE schema_version SET version = ?`
	if dialect == Postgres {
		q = rebindDollar(q)
	}
	if _, err := tx.ExecContext(ctx, q, m.version); err != nil {
		return 0, 0, fmt.Errorf("migrate to %d: %w", m.version, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("migrate to %d: %w", m.version, err)
	}
	return current, m.version, nil
}

// sqliteOnly starts a migration statement that only SQLite runs.
const sqliteOnly = "{{sqlite}}"

func splitSQL(s string) []string {
	var out []string
	for _, part := range strings.Split(s, ";\n") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, strings.TrimSuffix(p, ";"))
		}
	}
	return out
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
