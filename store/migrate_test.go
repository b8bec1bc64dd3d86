package store_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// execFile runs the statements of a frozen SQL file (one per ";\n", lines
// starting with -- are comments).
func execFile(t testing.TB, db *sql.DB, name string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "testdata", "store", name))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "--") {
			lines = append(lines, line)
		}
	}
	for stmt := range strings.SplitSeq(strings.Join(lines, "\n"), ";\n") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := db.ExecContext(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, stmt)
		}
	}
}

// schemaVersions returns the rows of schema_version.
func schemaVersions(t testing.TB, db *sql.DB) []int {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT version FROM schema_version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// A database at the frozen version 0 (the version table, nothing else)
// upgrades to the newest schema and works.
func testMigrateFromV0(t *testing.T, b backend) {
	src := b.newSource(t)
	db := b.raw(t, src)
	execFile(t, db, "schema_v0.sql")

	e := openEnv(t, b, src)
	if got, want := schemaVersions(t, db), []int{store.SchemaVersion()}; !slices.Equal(got, want) {
		t.Errorf("schema_version after Open: got %v, want %v", got, want)
	}
	task := sampleTask("T-1")
	e.update(func(tx store.Tx) error { return tx.PutTask(&task) })
	sameTask(t, "task in an upgraded database", e.task("tracker", "T-1"), task)

	// Opening again runs nothing and keeps the data.
	e.reopen()
	sameTask(t, "task after reopening an upgraded database", e.task("tracker", "T-1"), task)
	if got, want := schemaVersions(t, db), []int{store.SchemaVersion()}; !slices.Equal(got, want) {
		t.Errorf("schema_version after the second Open: got %v, want %v", got, want)
	}
}

// A database written by a newer duebridge is refused, with a message that
// says so, and left as it is.
func testSchemaTooNew(t *testing.T, b backend) {
	src := b.newSource(t)
	e := openEnv(t, b, src)
	e.update(func(tx store.Tx) error { return tx.Set("k", "v") })
	if err := e.s.Close(); err != nil {
		t.Fatal(err)
	}
	db := b.raw(t, src)
	newer := store.SchemaVersion() + 1
	if _, err := db.ExecContext(context.Background(), fmt.Sprintf(`UPDATE schema_version SET version = %d`, newer)); err != nil {
		t.Fatal(err)
	}

	s, err := store.Open(context.Background(), b.dialect, src, store.Options{})
	if err == nil {
		s.Close()
		t.Fatalf("Open of a database at schema %d (binary knows %d): got no error", newer, store.SchemaVersion())
	}
	msg := err.Error()
	for _, want := range []string{fmt.Sprint(newer), fmt.Sprint(store.SchemaVersion()), "newer", "upgrade"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if got := schemaVersions(t, db); !slices.Equal(got, []int{newer}) {
		t.Errorf("schema_version after the refused Open: got %v, want [%d]", got, newer)
	}
	var v string
	if err := db.QueryRowContext(context.Background(), `SELECT value FROM kv WHERE key = 'k'`).Scan(&v); err != nil || v != "v" {
		t.Errorf("data after the refused Open: got %q, %v", v, err)
	}
}

// Replicas (or a server and a CLI command) starting together on a new
// database: one migrates, the others wait and find nothing left to do.
func testConcurrentOpen(t *testing.T, b backend) {
	src := b.newSource(t)
	const n = 4
	stores := make([]store.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = store.Open(context.Background(), b.dialect, src, store.Options{})
		})
	}
	close(start)
	wg.Wait()
	for i, s := range stores {
		if s != nil {
			t.Cleanup(func() { s.Close() })
		}
		if errs[i] != nil {
			t.Errorf("Open %d of %d at once: %v", i+1, n, errs[i])
		}
	}
	if t.Failed() {
		return
	}
	for i, s := range stores {
		if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.Set(fmt.Sprint("k", i), "v") }); err != nil {
			t.Errorf("Update on store %d: %v", i, err)
		}
	}
	if got, want := schemaVersions(t, b.raw(t, src)), []int{store.SchemaVersion()}; !slices.Equal(got, want) {
		t.Errorf("schema_version: got %v, want %v", got, want)
	}
}

// A database written by the first release (schema 1, frozen in
// testdata/store/sqlite_v1.sql) upgrades, every row reads back, and its
// schema ends up the same as that of a database created new.
func TestSQLiteFrozenV1(t *testing.T) {
	t.Parallel()
	b := sqliteBackend()
	src := b.newSource(t)
	db := b.raw(t, src)
	execFile(t, db, "sqlite_v1.sql")
	e := openEnv(t, b, src)

	if got, want := schemaVersions(t, db), []int{store.SchemaVersion()}; !slices.Equal(got, want) {
		t.Errorf("schema_version: got %v, want %v", got, want)
	}
	ns := func(s string) time.Time { tm, _ := time.Parse(time.RFC3339, s); return tm }
	sameTask(t, "v1 task", e.task("tracker", "T-1"), store.Task{
		Source: "tracker", ID: "T-1", Title: "Frozen task", Description: "from v1",
		URL: "https://tracker.example.com/T-1", Project: "Release", Assignees: []string{"alice"}, Labels: []string{"old"},
		Start:  store.When{Time: ns("2026-11-30T09:00:00Z")},
		Due:    store.When{Time: ns("2026-12-01T00:00:00Z"), AllDay: true},
		Status: "open", Priority: "high", UpdatedAt: ns("2026-11-22T09:00:00Z"), Version: 5,
		Sequence: 2, Created: ns("2026-11-20T08:00:00Z"), Modified: ns("2026-11-22T09:30:00Z"), Seq: 3,
	})
	sameTask(t, "v1 deleted task", e.task("tracker", "T-2"), store.Task{
		Source: "tracker", ID: "T-2", Title: "Gone", Status: "cancelled", Priority: "normal", Deleted: true,
		UpdatedAt: ns("2026-11-22T09:00:00Z"), Created: ns("2026-11-20T08:00:00Z"), Modified: ns("2026-11-22T09:30:00Z"), Seq: 4,
	})
	e.view(func(tx store.Tx) error {
		u, err := tx.UserTask("alice", "tracker", "T-1")
		if err != nil {
			return err
		}
		if want := (store.UserTask{User: "alice", Source: "tracker", TaskID: "T-1", Hidden: true, Extra: `{"alarms":["-PT5M"]}`, Seq: 4}); *u != want {
			t.Errorf("v1 user task: got %+v, want %+v", *u, want)
		}
		c, err := tx.Collection("alice", "release-todos")
		if err != nil {
			return err
		}
		if want := (store.Collection{User: "alice", Name: "release-todos", Project: "Release", Kind: store.KindTodos,
			DisplayName: "Release", Color: "#FF0000", Order: 1, Seq: 6}); *c != want {
			t.Errorf("v1 collection: got %+v, want %+v", *c, want)
		}
		o, err := tx.ObjectByUID("alice", "uid-T-1")
		if err != nil {
			return err
		}
		if string(o.Data) != "BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n" || o.ETag != `"e1"` || o.Seq != 5 || !o.Modified.Equal(ns("2026-11-22T09:30:00Z")) {
			t.Errorf("v1 object: got %+v", *o)
		}
		ch, err := tx.Changes("alice", "release-todos", 5)
		if err != nil {
			return err
		}
		if len(ch) != 1 || ch[0].Name != "old.ics" || !ch[0].Deleted || ch[0].Seq != 6 {
			t.Errorf("v1 changes since 5: got %+v, want the tombstone old.ics", ch)
		}
		mb, err := tx.Mailbox("alice", "INBOX")
		if err != nil {
			return err
		}
		if want := (store.Mailbox{User: "alice", Name: "INBOX", UIDValidity: 1795000000, UIDNext: 3, ModSeq: 7}); *mb != want {
			t.Errorf("v1 mailbox: got %+v, want %+v", *mb, want)
		}
		ms, err := tx.Messages("alice", "INBOX")
		if err != nil {
			return err
		}
		if len(ms) != 2 || !slices.Equal(ms[0].Flags, []string{`\Seen`}) || ms[1].Flags != nil || ms[1].ModSeq != 7 ||
			!ms[0].InternalDate.Equal(ns("2026-11-22T09:00:00Z")) {
			t.Errorf("v1 messages: got %+v", ms)
		}
		m, err := tx.MessageData("alice", "INBOX", 2)
		if err != nil {
			return err
		}
		if string(m.Data) != "Subject: two\r\n\r\nbody 2" || m.Size != 22 {
			t.Errorf("v1 message data: got %q (size %d)", m.Data, m.Size)
		}
		v, err := tx.Get("secret")
		if err != nil || v != "s3cr3t" {
			t.Errorf("v1 kv: got %q, %v", v, err)
		}
		return nil
	})
	var seq int64
	m := store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("x")}
	e.update(func(tx store.Tx) (err error) {
		if seq, err = tx.Seq(); err != nil {
			return err
		}
		return tx.AppendMessage(&m)
	})
	if seq != 8 || m.UID != 3 {
		t.Errorf("first write after upgrade: revision %d, UID %d; want 8, 3", seq, m.UID)
	}

	fresh := b.raw(t, openEnv(t, b, b.newSource(t)).src)
	if got, want := sqliteSchema(t, db), sqliteSchema(t, fresh); !slices.Equal(got, want) {
		t.Errorf("schema of the upgraded v1 database differs from a new one:\nupgraded: %q\n     new: %q", got, want)
	}
}

// sqliteSchema lists the schema objects, whitespace-normalised.
func sqliteSchema(t testing.TB, db *sql.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT type, name, COALESCE(sql, '') FROM sqlite_master ORDER BY type, name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	space := regexp.MustCompile(`\s+`)
	var out []string
	for rows.Next() {
		var typ, name, stmt string
		if err := rows.Scan(&typ, &name, &stmt); err != nil {
			t.Fatal(err)
		}
		out = append(out, typ+" "+name+": "+space.ReplaceAllString(stmt, " "))
	}
	return out
}

// Open takes a data directory (created if missing) or a path ending in .db.
func TestSQLiteSources(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "new", "data")
	file := filepath.Join(t.TempDir(), "custom.db")
	for _, src := range []string{dir, file} {
		for round := range 2 {
			s, err := store.Open(context.Background(), store.SQLite, src, store.Options{})
			if err != nil {
				t.Fatalf("Open(%q), round %d: %v", src, round, err)
			}
			err = s.Update(t.Context(), func(tx store.Tx) error {
				if round == 1 {
					if v, err := tx.Get("k"); err != nil || v != "v" {
						return fmt.Errorf("Get after reopen: %q, %v", v, err)
					}
				}
				return tx.Set("k", "v")
			})
			s.Close()
			if err != nil {
				t.Errorf("Open(%q), round %d: %v", src, round, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "duebridge.db")); err != nil {
		t.Errorf("data directory: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("custom .db file: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	notDB := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(notDB, bytes.Repeat([]byte("not a database "), 1000), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, dialect, source, want string }{
		{"unknown dialect", "mysql", "x", `unknown store "mysql"`},
		{"data dir is a file", store.SQLite, notDir, "data dir"},
		{"not a database", store.SQLite, notDB, "not a database"},
		{"postgres unreachable", store.Postgres, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=5", "connect to postgres store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := store.Open(context.Background(), tc.dialect, tc.source, store.Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q, %q): got no error, want one mentioning %q", tc.dialect, tc.source, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open(%q, %q): got %q, want it to mention %q", tc.dialect, tc.source, err, tc.want)
			}
			if errors.Is(err, store.ErrNotFound) {
				t.Errorf("Open error wraps ErrNotFound: %v", err)
			}
		})
	}
}

// TestIngestPathSchema: the tables every new-task webhook writes carry no
// index that no query reads, and alerts and collections are one b-tree
// each, not a table plus its key's index (migrations 72 and 75). Each
// b-tree cost a WAL page per webhook inside the single writer's turn, and
// a user's collections, read at every poll, were spread over the rows.
func TestIngestPathSchema(t *testing.T) {
	t.Parallel()
	b := sqliteBackend()
	e := openEnv(t, b, b.newSource(t))
	db := b.raw(t, e.src)
	rows, err := db.QueryContext(context.Background(), `SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('tasks', 'messages')`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		if name == "tasks_due" || name == "messages_task" {
			t.Errorf("index %s exists: no query reads it, and every ingest writes it", name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"alerts", "collections"} {
		var stmt string
		if err := db.QueryRowContext(context.Background(), `SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&stmt); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(stmt, "WITHOUT ROWID") {
			t.Errorf("%s is a rowid table (a second b-tree for its key): %s", table, stmt)
		}
	}
}

// TestSQLiteCollectionsUpgrade75: a store at schema 73 keeps its
// collections, with everything a phone sees of them, through migration
// 75's rebuild of the table, and ends up keyed by user and name.
func TestSQLiteCollectionsUpgrade75(t *testing.T) {
	t.Parallel()
	b, src, db := sqliteStoreAt(t, 73)
	if _, err := db.Exec(`INSERT INTO collections (username, name, project, kind, display_name, color, sort_order, seq, min_seq) VALUES
		('alice', 'web-tasks', 'web', 'todos', 'Web', '#FF2968', 2, 41, 7),
		('bob', 'web-tasks', 'web', 'todos', 'Web', '#FF2968', 1, 40, 0),
		('alice', 'api-deadlines', 'api', 'events', 'API deadlines', '', 1, 39, 0)`); err != nil {
		t.Fatal(err)
	}
	e := openEnv(t, b, src)
	e.view(func(tx store.Tx) error {
		got, err := tx.Collections("alice")
		if err != nil {
			return err
		}
		want := []store.Collection{
			{User: "alice", Name: "api-deadlines", Project: "api", Kind: store.KindEvents, DisplayName: "API deadlines", Order: 1, Seq: 39},
			{User: "alice", Name: "web-tasks", Project: "web", Kind: store.KindTodos, DisplayName: "Web", Color: "#FF2968", Order: 2, Seq: 41, MinSeq: 7},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("alice's collections after the upgrade:\n got %+v\nwant %+v", got, want)
		}
		return nil
	})
	fresh := b.raw(t, openEnv(t, b, b.newSource(t)).src)
	if got, want := sqliteSchema(t, db), sqliteSchema(t, fresh); !slices.Equal(got, want) {
		t.Errorf("schema of the upgraded database differs from a new one:\nupgraded: %q\n     new: %q", got, want)
	}
}

// sqliteStoreAt makes an SQLite database at schema version, as a binary of
// that version left it, and returns it unopened by the store.
func sqliteStoreAt(t *testing.T, version int) (backend, string, *sql.DB) {
	t.Helper()
	b := sqliteBackend()
	src := b.newSource(t)
	db := b.raw(t, src)
	if err := store.CreateSQLiteSchemaAt(db, version); err != nil {
		t.Fatal(err)
	}
	return b, src, db
}

// TestSQLiteAlertsUpgrade72: a store at schema 71 keeps its alert
// schedules through migration 72's rebuild of alerts, and ends up with the
// schema of a new store.
func TestSQLiteAlertsUpgrade72(t *testing.T) {
	t.Parallel()
	b, src, db := sqliteStoreAt(t, 71)
	due, fire := time.Now().Add(48*time.Hour).UTC().Truncate(time.Second), time.Now().Add(47*time.Hour).UTC().Truncate(time.Second)
	if _, err := db.Exec(`INSERT INTO alerts (username, source, task_id, due_at, all_day, covered, alert_at, fire_at) VALUES
		('alice', 'tracker', 'T-1', ?, 0, 5, ?, ?), ('bob', 'tracker', 'T-2', ?, 1, 6, NULL, NULL)`,
		due.UnixNano(), fire.UnixNano(), fire.UnixNano(), due.UnixNano()); err != nil {
		t.Fatal(err)
	}
	e := openEnv(t, b, src)
	e.view(func(tx store.Tx) error {
		got, err := tx.DueAlerts(due, 10)
		if err != nil {
			return err
		}
		want := store.Alert{User: "alice", Source: "tracker", TaskID: "T-1", Due: store.When{Time: due},
			Covered: time.Unix(0, 5).UTC(), AlertAt: fire, FireAt: fire}
		if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
			t.Errorf("due alerts after the upgrade: got %+v, want [%+v]", got, want)
		}
		total, armed, err := tx.CountAlerts()
		if err != nil {
			return err
		}
		if total != 2 || armed != 1 {
			t.Errorf("alerts after the upgrade: %d (%d armed), want 2 (1 armed)", total, armed)
		}
		return nil
	})
	fresh := b.raw(t, openEnv(t, b, b.newSource(t)).src)
	if got, want := sqliteSchema(t, db), sqliteSchema(t, fresh); !slices.Equal(got, want) {
		t.Errorf("schema of the upgraded database differs from a new one:\nupgraded: %q\n     new: %q", got, want)
	}
}

// TestMigrationLogsOnce: a start that migrates says so once, with the
// versions and the time taken (a rebuild can hold a large store's first
// start after an upgrade); a start with nothing to do says nothing.
func TestMigrationLogsOnce(t *testing.T) {
	t.Parallel()
	_, src, _ := sqliteStoreAt(t, 73)
	open := func() string {
		var buf bytes.Buffer
		s, err := store.Open(t.Context(), store.SQLite, src, store.Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		return buf.String()
	}
	want := fmt.Sprintf(`msg="schema migrated" from=73 to=%d took=`, store.SchemaVersion())
	if got := open(); strings.Count(got, "schema migrated") != 1 || !strings.Contains(got, want) {
		t.Errorf("first open logged:\n%s\nwant one line with %q", got, want)
	}
	if got := open(); strings.Contains(got, "schema migrated") {
		t.Errorf("second open logged a migration:\n%s", got)
	}
}
