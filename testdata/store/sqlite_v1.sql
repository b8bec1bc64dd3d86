-- duebridge SQLite store at schema version 1 (the first release), with a
-- little data of every kind. FROZEN: this is what databases written by that
-- release look like; never edit it. store/migrate_test.go opens it with the
-- current binary, which must upgrade it and read every row back.
--
-- Times are Unix nanoseconds (2026-11-22T09:00:00Z = 1795338000000000000);
-- tasks.data is the JSON of store.Task as that release wrote it.
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version) VALUES (1);
CREATE TABLE revision (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL);
INSERT INTO revision (id, seq) VALUES (1, 7);
CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tasks (
	source     TEXT NOT NULL,
	id         TEXT NOT NULL,
	data       BLOB NOT NULL,
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
	data       BLOB,
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
	data          BLOB NOT NULL,
	message_id    TEXT NOT NULL DEFAULT '',
	source        TEXT NOT NULL DEFAULT '',
	task_id       TEXT NOT NULL DEFAULT '',
	modseq        BIGINT NOT NULL,
	PRIMARY KEY (username, mailbox, uid)
);
CREATE INDEX messages_task ON messages (source, task_id);
INSERT INTO kv (key, value) VALUES ('secret', 's3cr3t');
INSERT INTO tasks VALUES ('tracker', 'T-1',
	CAST('{"title":"Frozen task","description":"from v1","url":"https://tracker.example.com/T-1","project":"Release","assignees":["alice"],"labels":["old"],"start":{"Time":"2026-11-30T09:00:00Z","AllDay":false},"due":{"Time":"2026-12-01T00:00:00Z","AllDay":true},"status":"open","priority":"high","sequence":2,"created":"2026-11-20T08:00:00Z"}' AS BLOB),
	5, 1795338000000000000, 1796083200, 'open', 0, 3, 1795339800000000000);
INSERT INTO tasks VALUES ('tracker', 'T-2',
	CAST('{"title":"Gone","status":"cancelled","priority":"normal","sequence":0,"created":"2026-11-20T08:00:00Z"}' AS BLOB),
	NULL, 1795338000000000000, NULL, 'cancelled', 1, 4, 1795339800000000000);
INSERT INTO user_tasks VALUES ('alice', 'tracker', 'T-1', 1, '{"alarms":["-PT5M"]}', 4);
INSERT INTO collections VALUES ('alice', 'release-todos', 'Release', 'todos', 'Release', '#FF0000', 1, 6, 0);
INSERT INTO objects VALUES ('alice', 'release-todos', 'T-1.ics', 'uid-T-1', 'tracker', 'T-1', '"e1"',
	CAST('BEGIN:VCALENDAR' || char(13) || char(10) || 'END:VCALENDAR' || char(13) || char(10) AS BLOB), 5, 0, 1795339800000000000);
INSERT INTO objects VALUES ('alice', 'release-todos', 'old.ics', 'uid-old', '', '', '"e0"', NULL, 6, 1, 1795341600000000000);
INSERT INTO mailboxes VALUES ('alice', 'INBOX', '', 1795000000, 3, 7);
INSERT INTO messages VALUES ('alice', 'INBOX', 1, '\Seen', 1795338000000000000, 22,
	CAST('Subject: one' || char(13) || char(10) || char(13) || char(10) || 'body 1' AS BLOB), '<m1@duebridge>', 'tracker', 'T-1', 5);
INSERT INTO messages VALUES ('alice', 'INBOX', 2, '', 1795339800000000000, 22,
	CAST('Subject: two' || char(13) || char(10) || char(13) || char(10) || 'body 2' AS BLOB), '<m2@duebridge>', 'tracker', 'T-1', 7);
