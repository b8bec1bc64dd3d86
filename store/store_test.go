package store_test

// One suite of behaviours, run against every database the store supports:
// SQLite always (in t.TempDir()), PostgreSQL when TEST_DUEBRIDGE_POSTGRES
// holds a connection URL. Every test builds its own world (a fresh directory
// or a fresh PostgreSQL schema), so they run in parallel.

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duebridge/duebridge/internal/fakeclock"
	"github.com/duebridge/duebridge/store"
)

// pgEnv names the variable that enables the PostgreSQL run. It is kept
// outside the DUEBRIDGE_ config prefix on purpose.
const pgEnv = "TEST_DUEBRIDGE_POSTGRES"

const pgSkip = pgEnv + " is not set, so the PostgreSQL store is not tested. " +
	"Set it to a connection URL of a database the user may create schemas in, e.g. " +
	pgEnv + "='postgres://duebridge:duebridge@127.0.0.1:5433/duebridge_test?sslmode=disable'; " +
	"as root on Debian, `eval \"$(.ci/postgres.sh)\"` starts such a database and sets it"

// backend is one database the suite runs against.
type backend struct {
	dialect string
	// newSource returns the source for store.Open of a fresh, empty
	// database that is removed when the test ends.
	newSource func(t testing.TB) string
	// raw opens the database behind source directly, without the store (to
	// prepare old schemas).
	raw func(t testing.TB, source string) *sql.DB
}

func sqliteBackend() backend {
	return backend{
		dialect:   store.SQLite,
		newSource: func(t testing.TB) string { return t.TempDir() },
		raw: func(t testing.TB, source string) *sql.DB {
			t.Helper()
			// store.Open keeps the database in duebridge.db inside the data dir.
			db, err := sql.Open("sqlite", filepath.Join(source, "duebridge.db")+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
	}
}

// postgresBackend skips the test unless TEST_DUEBRIDGE_POSTGRES is set. Each
// source is the configured URL with search_path set to a new schema, dropped
// when the test ends.
func postgresBackend(t testing.TB) backend {
	t.Helper()
	base := os.Getenv(pgEnv)
	if base == "" {
		t.Skip(pgSkip)
	}
	raw := func(t testing.TB, source string) *sql.DB {
		t.Helper()
		db, err := sql.Open("pgx", source)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	return backend{
		dialect: store.Postgres,
		raw:     raw,
		newSource: func(t testing.TB) string {
			t.Helper()
			admin := raw(t, base)
			schema := fmt.Sprintf("duebridge_test_%016x", rand.Uint64())
			if _, err := admin.ExecContext(context.Background(), `CREATE SCHEMA `+schema); err != nil {
				t.Fatalf("%s: create schema: %v", pgEnv, err)
			}
			t.Cleanup(func() {
				if _, err := admin.ExecContext(context.Background(), `DROP SCHEMA `+schema+` CASCADE`); err != nil {
					t.Errorf("drop schema %s: %v", schema, err)
				}
			})
			return withSearchPath(t, base, schema)
		},
	}
}

// withSearchPath adds search_path to a PostgreSQL URL or keyword/value DSN
// (pgx passes unknown parameters to the server as run-time settings).
func withSearchPath(t testing.TB, source, schema string) string {
	if strings.HasPrefix(source, "postgres://") || strings.HasPrefix(source, "postgresql://") {
		u, err := url.Parse(source)
		if err != nil {
			t.Fatalf("%s: %v", pgEnv, err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return source + " search_path=" + schema
}

func TestSQLite(t *testing.T) {
	t.Parallel()
	runSuite(t, sqliteBackend())
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	runSuite(t, postgresBackend(t))
}

func runSuite(t *testing.T, b backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b backend)
	}{
		{"TaskRoundTrip", testTaskRoundTrip},
		{"Revisions", testRevisions},
		{"FailedUpdate", testFailedUpdate},
		{"OnCommit", testOnCommit},
		{"ViewCannotWrite", testViewCannotWrite},
		{"ViewSnapshot", testViewSnapshot},
		{"UserTasks", testUserTasks},
		{"Collections", testCollections},
		{"Objects", testObjects},
		{"PutObjects", testPutObjects},
		{"Changes", testChanges},
		{"CollectionChanges", testCollectionChanges},
		{"Mailboxes", testMailboxes},
		{"MailboxChanges", testMailboxChanges},
		{"KV", testKV},
		{"Outbox", testOutbox},
		{"DevicePasswords", testDevicePasswords},
		{"Reopen", testReopen},
		{"ConcurrentUpdates", testConcurrentUpdates},
		{"MigrateFromV0", testMigrateFromV0},
		{"SchemaTooNew", testSchemaTooNew},
		{"ConcurrentOpen", testConcurrentOpen},
		{"Deliveries", testDeliveries},
		{"ClaimDeliveries", testClaimDeliveries},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, b)
		})
	}
}

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// env is one test's world: a fresh database, a clock, and a record of every
// OnCommit call.
type env struct {
	t      *testing.T
	b      backend
	src    string
	clock  *fakeclock.Clock
	s      store.Store
	mu     sync.Mutex
	calls  [][]store.Event // one entry per OnCommit call
	onCall func([]store.Event)
}

func newEnv(t *testing.T, b backend) *env {
	t.Helper()
	return openEnv(t, b, b.newSource(t))
}

// openEnv opens the store on an existing source.
func openEnv(t *testing.T, b backend, src string) *env {
	t.Helper()
	e := &env{t: t, b: b, src: src, clock: fakeclock.New(t0)}
	e.s = e.open()
	return e
}

func (e *env) open() store.Store {
	e.t.Helper()
	s, err := store.Open(context.Background(), e.b.dialect, e.src, store.Options{Clock: e.clock, OnCommit: e.onCommit})
	if err != nil {
		e.t.Fatalf("open %s store: %v", e.b.dialect, err)
	}
	e.t.Cleanup(func() { s.Close() })
	return s
}

// reopen closes the store and opens it again on the same database.
func (e *env) reopen() {
	e.t.Helper()
	if err := e.s.Close(); err != nil {
		e.t.Fatalf("close: %v", err)
	}
	e.s = e.open()
}

func (e *env) onCommit(evs []store.Event) {
	e.mu.Lock()
	e.calls = append(e.calls, slices.Clone(evs))
	hook := e.onCall
	e.mu.Unlock()
	if hook != nil {
		hook(evs)
	}
}

func (e *env) commits() [][]store.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.calls)
}

func (e *env) update(fn func(store.Tx) error) {
	e.t.Helper()
	if err := e.s.Update(e.t.Context(), fn); err != nil {
		e.t.Fatalf("Update: %v", err)
	}
}

func (e *env) view(fn func(store.Tx) error) {
	e.t.Helper()
	if err := e.s.View(e.t.Context(), fn); err != nil {
		e.t.Fatalf("View: %v", err)
	}
}

// Readers returning one value, failing the test on error.

func (e *env) task(source, id string) *store.Task {
	e.t.Helper()
	var t *store.Task
	e.view(func(tx store.Tx) (err error) { t, err = tx.Task(source, id); return err })
	return t
}

func (e *env) collection(user, name string) *store.Collection {
	e.t.Helper()
	var c *store.Collection
	e.view(func(tx store.Tx) (err error) { c, err = tx.Collection(user, name); return err })
	return c
}

func (e *env) mailbox(user, name string) *store.Mailbox {
	e.t.Helper()
	var m *store.Mailbox
	e.view(func(tx store.Tx) (err error) { m, err = tx.Mailbox(user, name); return err })
	return m
}

func (e *env) messages(user, mailbox string) []store.Message {
	e.t.Helper()
	var ms []store.Message
	e.view(func(tx store.Tx) (err error) { ms, err = tx.Messages(user, mailbox); return err })
	return ms
}

func (e *env) changes(user, coll string, since int64) []store.Object {
	e.t.Helper()
	var os []store.Object
	e.view(func(tx store.Tx) (err error) { os, err = tx.Changes(user, coll, since); return err })
	return os
}

// wantNotFound fails unless err is store.ErrNotFound.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: got error %v, want ErrNotFound", what, err)
	}
}

// check turns a failed expectation inside a transaction into its error.
func check(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// normTask puts every time of a task in UTC without a monotonic reading, so
// equal instants compare equal with reflect.DeepEqual.
func normTask(t store.Task) store.Task {
	n := func(x time.Time) time.Time {
		if x.IsZero() {
			return time.Time{}
		}
		return x.UTC().Round(0)
	}
	t.Start.Time, t.Due.Time = n(t.Start.Time), n(t.Due.Time)
	t.UpdatedAt, t.Created, t.Modified, t.CompletedAt = n(t.UpdatedAt), n(t.Created), n(t.Modified), n(t.CompletedAt)
	return t
}

func sameTask(t *testing.T, what string, got *store.Task, want store.Task) {
	t.Helper()
	if got == nil {
		t.Errorf("%s: got no task, want %+v", what, want)
		return
	}
	if g, w := normTask(*got), normTask(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func sampleTask(id string) store.Task {
	return store.Task{
		Source: "tracker", ID: id, Title: "Task " + id, Project: "Release",
		Assignees: []string{"alice"}, Status: "open", Priority: "normal",
		UpdatedAt: t0.Add(-time.Hour),
	}
}

func sampleObject(user, coll, name string) store.Object {
	return store.Object{
		User: user, Collection: coll, Name: name + ".ics", UID: "uid-" + name,
		Source: "tracker", TaskID: name, ETag: `"etag-` + name + `"`,
		Data: []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VTODO\r\nUID:uid-" + name + "\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"),
	}
}

func testTaskRoundTrip(t *testing.T, b backend) {
	e := newEnv(t, b)
	full := store.Task{
		Source: "tracker", ID: "T-123", Title: "Ship release 2.1",
		Description: "free text\nsecond line, ünïcødé ✓", URL: "https://tracker.example.com/T-123",
		Project: "Release", Assignees: []string{"alice", "bob"}, Labels: []string{"backend", "needs review"},
		Start:  store.When{Time: time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)},
		Due:    store.When{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), AllDay: true},
		Status: "in_progress", Priority: "high",
		UpdatedAt: time.Date(2026, 11, 23, 9, 59, 58, 123456789, time.UTC), Version: 42,
		Sequence: 3, Created: time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC),
	}
	done := store.Task{
		Source: "tracker", ID: "T-124", Title: "Done one", Status: "done", Priority: "low",
		Due:         store.When{Time: time.Date(2026, 11, 24, 17, 30, 0, 0, time.UTC)},
		UpdatedAt:   t0.Add(-time.Minute),
		CompletedBy: "alice", CompletedAt: t0.Add(-2 * time.Minute),
	}
	gone := sampleTask("T-125")
	gone.Deleted = true
	other := sampleTask("X-1")
	other.Source = "other"

	e.update(func(tx store.Tx) error {
		for _, p := range []*store.Task{&full, &done, &gone, &other} {
			if err := tx.PutTask(p); err != nil {
				return err
			}
		}
		return nil
	})
	if full.Seq == 0 || !full.Modified.Equal(t0) {
		t.Errorf("after PutTask: Seq %d, Modified %v; want Seq > 0, Modified %v", full.Seq, full.Modified, t0)
	}
	if want := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC); !full.Created.Equal(want) {
		t.Errorf("PutTask changed a set Created: got %v, want %v", full.Created, want)
	}
	if !done.Created.Equal(t0) {
		t.Errorf("PutTask with zero Created: got Created %v, want the transaction time %v", done.Created, t0)
	}

	sameTask(t, "full task", e.task("tracker", "T-123"), full)
	sameTask(t, "done task, no version", e.task("tracker", "T-124"), done)
	sameTask(t, "deleted task", e.task("tracker", "T-125"), gone)
	if got := e.task("tracker", "T-123"); got.Due.AllDay != true || got.Start.AllDay {
		t.Errorf("AllDay: got start %v due %v, want false, true", got.Start.AllDay, got.Due.AllDay)
	}

	// Upsert: the same key replaces the row.
	e.clock.Advance(time.Minute)
	changed := full
	changed.Title, changed.Status, changed.Version, changed.Sequence = "Ship release 2.1.1", "done", 43, 4
	changed.Labels = nil
	changed.Due = store.When{Time: time.Date(2026, 12, 2, 15, 0, 0, 0, time.UTC)}
	e.update(func(tx store.Tx) error { return tx.PutTask(&changed) })
	if changed.Seq <= full.Seq {
		t.Errorf("upsert: Seq %d, want > %d", changed.Seq, full.Seq)
	}
	sameTask(t, "upserted task", e.task("tracker", "T-123"), changed)

	var live, all, none []store.Task
	e.view(func(tx store.Tx) (err error) {
		if live, err = tx.TasksBySource("tracker", false); err != nil {
			return err
		}
		if all, err = tx.TasksBySource("tracker", true); err != nil {
			return err
		}
		none, err = tx.TasksBySource("nobody", true)
		return err
	})
	ids := func(ts []store.Task) (out []string) {
		for _, t := range ts {
			out = append(out, t.ID)
		}
		return out
	}
	if got, want := ids(live), []string{"T-123", "T-124"}; !slices.Equal(got, want) {
		t.Errorf("TasksBySource(without deleted): got %v, want %v", got, want)
	}
	if got, want := ids(all), []string{"T-123", "T-124", "T-125"}; !slices.Equal(got, want) {
		t.Errorf("TasksBySource(with deleted): got %v, want %v", got, want)
	}
	if len(all) == 3 {
		sameTask(t, "TasksBySource row", &all[0], changed)
	}
	if len(none) != 0 {
		t.Errorf("TasksBySource(unknown source): got %d tasks, want none", len(none))
	}
	e.view(func(tx store.Tx) error {
		_, err := tx.Task("tracker", "T-999")
		wantNotFound(t, "Task(missing)", err)
		_, err = tx.Task("other", "T-123")
		wantNotFound(t, "Task(other source)", err)
		return nil
	})
}

func testRevisions(t *testing.T, b backend) {
	e := newEnv(t, b)
	var first int64
	task := sampleTask("T-1")
	obj := sampleObject("alice", "todos", "T-1")
	e.update(func(tx store.Tx) error {
		s1, err := tx.Seq()
		if err != nil {
			return err
		}
		s2, err := tx.Seq()
		if err != nil {
			return err
		}
		if err := check(s1 > 0 && s1 == s2, "Seq() twice in one transaction: %d, %d; want equal and > 0", s1, s2); err != nil {
			return err
		}
		first = s1
		if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "todos", Kind: store.KindTodos, DisplayName: "Todos"}); err != nil {
			return err
		}
		if err := tx.PutTask(&task); err != nil {
			return err
		}
		if err := tx.PutObject(&obj); err != nil {
			return err
		}
		if _, err := tx.EnsureMailbox("alice", "INBOX", ""); err != nil {
			return err
		}
		m := store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: x\r\n\r\nbody\r\n")}
		if err := tx.AppendMessage(&m); err != nil {
			return err
		}
		return check(task.Seq == s1 && obj.Seq == s1 && m.ModSeq == s1,
			"writes of one transaction: task %d, object %d, message %d; want all %d", task.Seq, obj.Seq, m.ModSeq, s1)
	})
	if c := e.collection("alice", "todos"); c.Seq != first {
		t.Errorf("collection seq: got %d, want the transaction's %d", c.Seq, first)
	}

	// Later transactions get strictly greater revisions, also those that
	// write nothing else, and those after a transaction that never asked.
	last := first
	for i := range 5 {
		if i == 2 {
			e.update(func(tx store.Tx) error { return tx.Set("no-seq", "x") })
		}
		var s int64
		e.update(func(tx store.Tx) (err error) { s, err = tx.Seq(); return err })
		if s <= last {
			t.Errorf("transaction %d: Seq %d, want > %d", i, s, last)
		}
		last = s
	}
	err := e.s.View(t.Context(), func(tx store.Tx) error {
		_, err := tx.Seq()
		return err
	})
	if err == nil {
		t.Errorf("Seq() in View: got no error, want one")
	}
}

func testFailedUpdate(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "todos", Kind: store.KindTodos}); err != nil {
			return err
		}
		_, err := tx.EnsureMailbox("alice", "INBOX", "")
		return err
	})
	collBefore := e.collection("alice", "todos")
	mboxBefore := e.mailbox("alice", "INBOX")
	callsBefore := len(e.commits())

	// writeAll does one write of every kind.
	writeAll := func(tx store.Tx) error {
		task := sampleTask("T-1")
		if err := tx.PutTask(&task); err != nil {
			return err
		}
		if err := tx.PutUserTask(&store.UserTask{User: "alice", Source: "tracker", TaskID: "T-1", Hidden: true}); err != nil {
			return err
		}
		o := sampleObject("alice", "todos", "T-1")
		if err := tx.PutObject(&o); err != nil {
			return err
		}
		if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "new", Kind: store.KindEvents}); err != nil {
			return err
		}
		if _, err := tx.EnsureMailbox("alice", "Archive", `\Archive`); err != nil {
			return err
		}
		m := store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: x\r\n\r\n")}
		if err := tx.AppendMessage(&m); err != nil {
			return err
		}
		if err := tx.Set("k", "v"); err != nil {
			return err
		}
		tx.Emit(store.Event{Kind: store.EventOutbox})
		return nil
	}
	assertNothingStored := func(how string) {
		t.Helper()
		e.view(func(tx store.Tx) error {
			_, err := tx.Task("tracker", "T-1")
			wantNotFound(t, how+": Task", err)
			_, err = tx.UserTask("alice", "tracker", "T-1")
			wantNotFound(t, how+": UserTask", err)
			_, err = tx.Object("alice", "todos", "T-1.ics")
			wantNotFound(t, how+": Object", err)
			_, err = tx.Collection("alice", "new")
			wantNotFound(t, how+": Collection", err)
			_, err = tx.Mailbox("alice", "Archive")
			wantNotFound(t, how+": Mailbox", err)
			_, err = tx.Get("k")
			wantNotFound(t, how+": Get", err)
			ms, err := tx.Messages("alice", "INBOX")
			if err != nil || len(ms) != 0 {
				t.Errorf("%s: Messages: got %d messages, error %v; want none", how, len(ms), err)
			}
			return nil
		})
		if c := e.collection("alice", "todos"); c.Seq != collBefore.Seq {
			t.Errorf("%s: collection seq moved from %d to %d", how, collBefore.Seq, c.Seq)
		}
		if m := e.mailbox("alice", "INBOX"); *m != *mboxBefore {
			t.Errorf("%s: mailbox changed: got %+v, want %+v", how, *m, *mboxBefore)
		}
		if n := len(e.commits()); n != callsBefore {
			t.Errorf("%s: OnCommit called %d times, want 0", how, n-callsBefore)
		}
	}

	// fn returns an error.
	boom := errors.New("boom")
	err := e.s.Update(t.Context(), func(tx store.Tx) error {
		if err := writeAll(tx); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: got error %v, want %v", err, boom)
	}
	assertNothingStored("fn returned an error")

	// fn panics: the panic goes on, the transaction is rolled back.
	func() {
		defer func() {
			if p := recover(); p != "kaboom" {
				t.Errorf("Update with panicking fn: recovered %v, want the panic to go on", p)
			}
		}()
		e.s.Update(t.Context(), func(tx store.Tx) error {
			if err := writeAll(tx); err != nil {
				return err
			}
			panic("kaboom")
		})
	}()
	assertNothingStored("fn panicked")

	// The context ends before the commit.
	ctx, cancel := context.WithCancel(t.Context())
	err = e.s.Update(ctx, func(tx store.Tx) error {
		if err := writeAll(tx); err != nil {
			return err
		}
		cancel()
		return nil
	})
	if err == nil {
		t.Errorf("Update whose context ended before commit: got nil error, want one")
	}
	assertNothingStored("context cancelled")

	// The store still works (no lock or connection left behind).
	ctx, cancel = context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := e.s.Update(ctx, writeAll); err != nil {
		t.Fatalf("Update after failed ones: %v", err)
	}
	if got := e.task("tracker", "T-1"); got.Title != "Task T-1" {
		t.Errorf("after a good Update: got task %+v", got)
	}
}

func testOnCommit(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		_, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "todos", Kind: store.KindTodos})
		return err
	})

	// Events come only after the commit, with the transaction's revision,
	// also for an event emitted before the revision was allocated; and the
	// committed data is visible to readers by then.
	var visible []string
	e.mu.Lock()
	e.onCall = func([]store.Event) {
		err := e.s.View(context.Background(), func(tx store.Tx) error {
			v, err := tx.Get("state")
			visible = append(visible, v)
			return err
		})
		if err != nil {
			visible = append(visible, "error: "+err.Error())
		}
	}
	e.mu.Unlock()
	before := len(e.commits())
	var seq int64
	e.update(func(tx store.Tx) error {
		tx.Emit(store.Event{Kind: store.EventOutbox, Source: "tracker", TaskID: "T-1"})
		if err := tx.Set("state", "committed"); err != nil {
			return err
		}
		o := sampleObject("alice", "todos", "T-1")
		if err := tx.PutObject(&o); err != nil {
			return err
		}
		seq = o.Seq
		tx.Emit(store.Event{Kind: store.EventTask, Source: "tracker", TaskID: "T-1", Origin: "test"})
		return check(len(e.commits()) == before, "OnCommit ran before the commit")
	})
	calls := e.commits()[before:]
	if len(calls) != 1 {
		t.Fatalf("OnCommit: %d calls, want 1", len(calls))
	}
	// Order within one transaction is not part of the contract (collection
	// events are emitted when the transaction flushes); compare as sets.
	want := []store.Event{
		{Seq: seq, Kind: store.EventCalendar, User: "alice", Name: "todos"},
		{Seq: seq, Kind: store.EventOutbox, Source: "tracker", TaskID: "T-1"},
		{Seq: seq, Kind: store.EventTask, Source: "tracker", TaskID: "T-1", Origin: "test"},
	}
	got := slices.Clone(calls[0])
	slices.SortFunc(got, func(a, b store.Event) int { return strings.Compare(string(a.Kind), string(b.Kind)) })
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got %+v\nwant %+v", calls[0], want)
	}
	if !slices.Equal(visible, []string{"committed"}) {
		t.Errorf("reads from OnCommit: got %q, want the committed value", visible)
	}
	e.mu.Lock()
	e.onCall = nil
	e.mu.Unlock()

	// Calls come in commit order.
	for i := range 5 {
		e.update(func(tx store.Tx) error {
			o := sampleObject("alice", "todos", fmt.Sprint("T-", i))
			return tx.PutObject(&o)
		})
	}
	calls = e.commits()
	for i := 1; i < len(calls); i++ {
		if calls[i][0].Seq <= calls[i-1][0].Seq {
			t.Errorf("OnCommit call %d has seq %d after %d", i, calls[i][0].Seq, calls[i-1][0].Seq)
		}
	}

	// Nothing is published from a View, nor from an Update without events.
	before = len(e.commits())
	e.view(func(tx store.Tx) error {
		tx.Emit(store.Event{Kind: store.EventAlert})
		return nil
	})
	e.update(func(tx store.Tx) error { return tx.Set("quiet", "1") })
	if n := len(e.commits()) - before; n != 0 {
		t.Errorf("View and an event-less Update: %d OnCommit calls, want 0", n)
	}
}

func testViewCannotWrite(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "todos", Kind: store.KindTodos}); err != nil {
			return err
		}
		o := sampleObject("alice", "todos", "T-1")
		if err := tx.PutObject(&o); err != nil {
			return err
		}
		if _, err := tx.EnsureMailbox("alice", "INBOX", ""); err != nil {
			return err
		}
		return tx.AppendMessage(&store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: x\r\n\r\n")})
	})
	coll := e.collection("alice", "todos")
	mbox := e.mailbox("alice", "INBOX")
	msgs := e.messages("alice", "INBOX")

	e.view(func(tx store.Tx) error {
		task := sampleTask("T-1")
		o := sampleObject("alice", "todos", "T-2")
		writes := map[string]func() error{
			"PutTask":            func() error { return tx.PutTask(&task) },
			"PutUserTask":        func() error { return tx.PutUserTask(&store.UserTask{User: "alice", Source: "tracker", TaskID: "T-1"}) },
			"EnsureCollection":   func() error { _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "new"}); return err },
			"SetCollectionProps": func() error { return tx.SetCollectionProps("alice", "todos", "X", "#000000", 1) },
			"PutObject":          func() error { return tx.PutObject(&o) },
			"DeleteObject":       func() error { return tx.DeleteObject("alice", "todos", "T-1.ics") },
			"EnsureMailbox":      func() error { _, err := tx.EnsureMailbox("alice", "Archive", ""); return err },
			"AppendMessage": func() error {
				return tx.AppendMessage(&store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("x")})
			},
			"SetFlags": func() error { _, err := tx.SetFlags("alice", "INBOX", []uint32{1}, []string{`\Seen`}); return err },
			"Expunge":  func() error { return tx.Expunge("alice", "INBOX", []uint32{1}) },
			"Set":      func() error { return tx.Set("k", "v") },
			"EnqueueCallback": func() error {
				return tx.EnqueueCallback(&store.Callback{EventID: "e-view", Source: "tracker", TaskID: "T-1", Body: []byte("{}")})
			},
			"MarkDelivered":  func() error { return tx.MarkDelivered(1, t0) },
			"MarkFailed":     func() error { return tx.MarkFailed(1, 1, t0, "x") },
			"PruneDelivered": func() error { return tx.PruneDelivered(t0) },
		}
		for name, w := range writes {
			if err := w(); err == nil {
				t.Errorf("%s in a View: got no error, want one", name)
			}
		}
		return nil
	})

	e.view(func(tx store.Tx) error {
		_, err := tx.Task("tracker", "T-1")
		wantNotFound(t, "Task after View", err)
		_, err = tx.UserTask("alice", "tracker", "T-1")
		wantNotFound(t, "UserTask after View", err)
		_, err = tx.Collection("alice", "new")
		wantNotFound(t, "Collection after View", err)
		_, err = tx.Mailbox("alice", "Archive")
		wantNotFound(t, "Mailbox after View", err)
		_, err = tx.Get("k")
		wantNotFound(t, "Get after View", err)
		if pending, _, err := tx.OutboxCounts(); err != nil || pending != 0 {
			t.Errorf("outbox after View: %d pending, %v; want none", pending, err)
		}
		_, err = tx.Object("alice", "todos", "T-1.ics")
		if err != nil {
			t.Errorf("Object after View: %v, want it still there", err)
		}
		return nil
	})
	if c := e.collection("alice", "todos"); *c != *coll {
		t.Errorf("collection after View: got %+v, want %+v", *c, *coll)
	}
	if m := e.mailbox("alice", "INBOX"); *m != *mbox {
		t.Errorf("mailbox after View: got %+v, want %+v", *m, *mbox)
	}
	if m := e.messages("alice", "INBOX"); !reflect.DeepEqual(m, msgs) {
		t.Errorf("messages after View: got %+v, want %+v", m, msgs)
	}
}

// A View is one consistent snapshot: a commit during it is not seen.
func testViewSnapshot(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error { return tx.Set("k", "old") })
	var first, second string
	e.view(func(tx store.Tx) (err error) {
		if first, err = tx.Get("k"); err != nil {
			return err
		}
		// Another writer commits while the View is open.
		if err := e.s.Update(t.Context(), func(tx store.Tx) error { return tx.Set("k", "new") }); err != nil {
			return err
		}
		second, err = tx.Get("k")
		return err
	})
	if first != "old" || second != "old" {
		t.Errorf("View reads around a concurrent commit: got %q then %q, want %q twice", first, second, "old")
	}
	var after string
	e.view(func(tx store.Tx) (err error) { after, err = tx.Get("k"); return err })
	if after != "new" {
		t.Errorf("View after the commit: got %q, want %q", after, "new")
	}
}

func testUserTasks(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.view(func(tx store.Tx) error {
		_, err := tx.UserTask("alice", "tracker", "T-1")
		wantNotFound(t, "UserTask(missing)", err)
		return nil
	})
	u := store.UserTask{User: "alice", Source: "tracker", TaskID: "T-1", Hidden: true, Extra: `{"alarms":["-PT15M"]}`}
	e.update(func(tx store.Tx) error { return tx.PutUserTask(&u) })
	if u.Seq == 0 {
		t.Errorf("PutUserTask: Seq not set")
	}
	var got, bob *store.UserTask
	e.view(func(tx store.Tx) (err error) { got, err = tx.UserTask("alice", "tracker", "T-1"); return err })
	if *got != u {
		t.Errorf("UserTask: got %+v, want %+v", *got, u)
	}

	u2 := store.UserTask{User: "alice", Source: "tracker", TaskID: "T-1", Hidden: false, Extra: ""}
	b2 := store.UserTask{User: "bob", Source: "tracker", TaskID: "T-1", Extra: "bob's"}
	e.update(func(tx store.Tx) error {
		if err := tx.PutUserTask(&u2); err != nil {
			return err
		}
		return tx.PutUserTask(&b2)
	})
	e.view(func(tx store.Tx) (err error) {
		if got, err = tx.UserTask("alice", "tracker", "T-1"); err != nil {
			return err
		}
		bob, err = tx.UserTask("bob", "tracker", "T-1")
		return err
	})
	if *got != u2 || u2.Seq <= u.Seq {
		t.Errorf("UserTask after replace: got %+v, want %+v with Seq > %d", *got, u2, u.Seq)
	}
	if *bob != b2 {
		t.Errorf("UserTask of bob: got %+v, want %+v", *bob, b2)
	}
}

func testCollections(t *testing.T, b backend) {
	e := newEnv(t, b)
	todos := store.Collection{User: "alice", Name: "release-todos", Project: "Release", Kind: store.KindTodos,
		DisplayName: "Release", Color: "#FF0000FF", Order: 2}
	events := store.Collection{User: "alice", Name: "release-events", Project: "Release", Kind: store.KindEvents,
		DisplayName: "Release deadlines", Order: 1}
	var created1, created2 bool
	e.update(func(tx store.Tx) (err error) {
		if created1, err = tx.EnsureCollection(&todos); err != nil {
			return err
		}
		created2, err = tx.EnsureCollection(&events)
		return err
	})
	if !created1 || !created2 || todos.Seq == 0 {
		t.Fatalf("EnsureCollection of new collections: created %v, %v, Seq %d; want true, true, > 0", created1, created2, todos.Seq)
	}
	if got := e.collection("alice", "release-todos"); *got != todos {
		t.Errorf("Collection:\n got %+v\nwant %+v", *got, todos)
	}

	// Ensuring again keeps the stored properties and the ctag.
	again := store.Collection{User: "alice", Name: "release-todos", Project: "Other", Kind: store.KindEvents,
		DisplayName: "Changed", Color: "#000000", Order: 9}
	var created bool
	e.update(func(tx store.Tx) (err error) { created, err = tx.EnsureCollection(&again); return err })
	if created {
		t.Errorf("EnsureCollection of an existing collection: reported created")
	}
	if got := e.collection("alice", "release-todos"); *got != todos {
		t.Errorf("Collection after a second EnsureCollection:\n got %+v\nwant %+v", *got, todos)
	}

	var list, bobs []store.Collection
	e.view(func(tx store.Tx) (err error) {
		if list, err = tx.Collections("alice"); err != nil {
			return err
		}
		bobs, err = tx.Collections("bob")
		return err
	})
	if len(list) != 2 || list[0] != events || list[1] != todos {
		t.Errorf("Collections (by order):\n got %+v\nwant %+v", list, []store.Collection{events, todos})
	}
	if len(bobs) != 0 {
		t.Errorf("Collections of another user: got %+v, want none", bobs)
	}

	// PROPPATCH.
	e.update(func(tx store.Tx) error {
		return tx.SetCollectionProps("alice", "release-todos", "Renamed", "#00FF00", 0)
	})
	got := e.collection("alice", "release-todos")
	if got.DisplayName != "Renamed" || got.Color != "#00FF00" || got.Order != 0 || got.Project != "Release" || got.Kind != store.KindTodos {
		t.Errorf("after SetCollectionProps: got %+v", *got)
	}
	if got.Seq <= todos.Seq {
		t.Errorf("SetCollectionProps: ctag %d, want > %d", got.Seq, todos.Seq)
	}
	e.view(func(tx store.Tx) error {
		_, err := tx.Collection("alice", "nope")
		wantNotFound(t, "Collection(missing)", err)
		_, err = tx.Collection("bob", "release-todos")
		wantNotFound(t, "Collection(other user)", err)
		return nil
	})
	err := e.s.Update(t.Context(), func(tx store.Tx) error { return tx.SetCollectionProps("alice", "nope", "X", "", 0) })
	wantNotFound(t, "SetCollectionProps(missing)", err)

	// The ctag (collection Seq) follows the objects inside.
	ctag := got.Seq
	evCtag := e.collection("alice", "release-events").Seq
	o := sampleObject("alice", "release-todos", "T-1")
	e.update(func(tx store.Tx) error { return tx.PutObject(&o) })
	if c := e.collection("alice", "release-todos"); c.Seq <= ctag || c.Seq != o.Seq {
		t.Errorf("ctag after PutObject: got %d, want the object's %d (> %d)", c.Seq, o.Seq, ctag)
	}
	ctag = o.Seq
	var delSeq int64
	e.update(func(tx store.Tx) (err error) {
		if delSeq, err = tx.Seq(); err != nil {
			return err
		}
		return tx.DeleteObject("alice", "release-todos", "T-1.ics")
	})
	if c := e.collection("alice", "release-todos"); c.Seq <= ctag || c.Seq != delSeq {
		t.Errorf("ctag after DeleteObject: got %d, want %d (> %d)", c.Seq, delSeq, ctag)
	}
	if c := e.collection("alice", "release-events"); c.Seq != evCtag {
		t.Errorf("ctag of an untouched collection moved from %d to %d", evCtag, c.Seq)
	}
}

func testObjects(t *testing.T, b backend) {
	e := newEnv(t, b)
	a := sampleObject("alice", "todos", "T-1")
	a.Data = append(a.Data, 0, 0xff, '\r', '\n') // bytes come back exactly
	bo := sampleObject("alice", "todos", "T-2")
	c := sampleObject("alice", "events", "T-1")
	c.UID = "uid-T-1-event"
	taskUIDs := []string{"uid-T-1", "uid-T-1-event"} // T-1's reminder and event
	phone := store.Object{User: "alice", Collection: "todos", Name: "phone.ics", UID: "phone-uid", ETag: `"p"`, Data: []byte("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n")}
	bobs := sampleObject("bob", "todos", "T-1")
	e.update(func(tx store.Tx) error {
		for _, coll := range []store.Collection{{User: "alice", Name: "todos"}, {User: "alice", Name: "events"}, {User: "bob", Name: "todos"}} {
			if _, err := tx.EnsureCollection(&coll); err != nil {
				return err
			}
		}
		for _, o := range []*store.Object{&a, &bo, &c, &phone, &bobs} {
			if err := tx.PutObject(o); err != nil {
				return err
			}
		}
		return nil
	})
	if a.Seq == 0 || !a.Modified.Equal(t0) || a.Deleted {
		t.Errorf("after PutObject: Seq %d, Modified %v, Deleted %v", a.Seq, a.Modified, a.Deleted)
	}
	sameObject := func(what string, got *store.Object, want store.Object) {
		t.Helper()
		if got == nil {
			t.Errorf("%s: no object, want %+v", what, want)
			return
		}
		g := *got
		if g.Modified.Equal(want.Modified) {
			g.Modified = want.Modified
		}
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", what, g, want)
		}
	}
	e.view(func(tx store.Tx) error {
		got, err := tx.Object("alice", "todos", "T-1.ics")
		if err != nil {
			return err
		}
		sameObject("Object", got, a)
		if got, err = tx.ObjectByUID("alice", "uid-T-1-event"); err != nil {
			return err
		}
		sameObject("ObjectByUID", got, c)
		_, err = tx.ObjectByUID("carol", "uid-T-1")
		wantNotFound(t, "ObjectByUID(other user)", err)
		_, err = tx.Object("alice", "todos", "nope.ics")
		wantNotFound(t, "Object(missing)", err)
		_, err = tx.Object("bob", "events", "T-1.ics")
		wantNotFound(t, "Object(other user's collection)", err)

		with, err := tx.Objects("alice", "todos", true)
		if err != nil {
			return err
		}
		without, err := tx.Objects("alice", "todos", false)
		if err != nil {
			return err
		}
		if len(with) != 3 || len(without) != 3 {
			t.Fatalf("Objects: got %d with data, %d without; want 3", len(with), len(without))
		}
		for i, want := range []store.Object{a, bo, phone} { // by name
			sameObject(fmt.Sprintf("Objects(with data)[%d]", i), &with[i], want)
			want.Data = nil
			sameObject(fmt.Sprintf("Objects(without data)[%d]", i), &without[i], want)
		}

		var keys []string
		for _, user := range []string{"alice", "bob"} {
			forTask, err := tx.ObjectsForTaskUser("tracker", "T-1", user, taskUIDs)
			if err != nil {
				return err
			}
			for _, o := range forTask {
				keys = append(keys, o.User+"/"+o.Collection+"/"+o.Name)
			}
		}
		slices.Sort(keys)
		if want := []string{"alice/events/T-1.ics", "alice/todos/T-1.ics", "bob/todos/T-1.ics"}; !slices.Equal(keys, want) {
			t.Errorf("ObjectsForTaskUser: got %v, want %v", keys, want)
		}
		// Another task's UIDs, or this task's UIDs under another task, find nothing.
		for _, c := range []struct {
			id   string
			uids []string
		}{{"T-2", taskUIDs}, {"T-1", []string{"uid-T-2"}}} {
			if other, err := tx.ObjectsForTaskUser("tracker", c.id, "alice", c.uids); err != nil || len(other) != 0 {
				t.Errorf("ObjectsForTaskUser(%s, %v): %d objects, err %v; want none", c.id, c.uids, len(other), err)
			}
		}
		ofAlice, err := tx.ObjectsOfUser("alice")
		if err != nil {
			return err
		}
		if len(ofAlice) != 4 {
			t.Errorf("ObjectsOfUser(alice): got %d objects, want 4", len(ofAlice))
		}
		return nil
	})

	// Replacing an object.
	e.clock.Advance(time.Minute)
	a2 := a
	a2.ETag, a2.Data = `"etag-2"`, []byte("BEGIN:VCALENDAR\r\nX-CHANGED:1\r\nEND:VCALENDAR\r\n")
	e.update(func(tx store.Tx) error { return tx.PutObject(&a2) })
	if a2.Seq <= a.Seq || !a2.Modified.Equal(t0.Add(time.Minute)) {
		t.Errorf("PutObject again: Seq %d (was %d), Modified %v", a2.Seq, a.Seq, a2.Modified)
	}
	e.view(func(tx store.Tx) error {
		got, err := tx.Object("alice", "todos", "T-1.ics")
		if err != nil {
			return err
		}
		sameObject("Object after replace", got, a2)
		return nil
	})

	// Deleting leaves a tombstone that only Changes shows.
	e.update(func(tx store.Tx) error { return tx.DeleteObject("alice", "todos", "T-1.ics") })
	e.view(func(tx store.Tx) error {
		_, err := tx.Object("alice", "todos", "T-1.ics")
		wantNotFound(t, "Object(deleted)", err)
		_, err = tx.ObjectByUID("alice", "uid-T-1")
		wantNotFound(t, "ObjectByUID(deleted)", err)
		list, err := tx.Objects("alice", "todos", false)
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].Name != "T-2.ics" || list[1].Name != "phone.ics" {
			t.Errorf("Objects after delete: got %+v, want T-2.ics, phone.ics", list)
		}
		forTask := 0
		for _, user := range []string{"alice", "bob"} {
			objs, err := tx.ObjectsForTaskUser("tracker", "T-1", user, taskUIDs)
			if err != nil {
				return err
			}
			forTask += len(objs)
		}
		if forTask != 2 {
			t.Errorf("ObjectsForTaskUser after delete: got %d, want 2", forTask)
		}
		ofAlice, err := tx.ObjectsOfUser("alice")
		if err != nil {
			return err
		}
		if len(ofAlice) != 3 {
			t.Errorf("ObjectsOfUser after delete: got %d, want 3", len(ofAlice))
		}
		return nil
	})
	for _, name := range []string{"T-1.ics", "never.ics"} {
		err := e.s.Update(t.Context(), func(tx store.Tx) error { return tx.DeleteObject("alice", "todos", name) })
		wantNotFound(t, "DeleteObject("+name+")", err)
	}

	// Putting it again brings it back.
	a3 := sampleObject("alice", "todos", "T-1")
	e.update(func(tx store.Tx) error { return tx.PutObject(&a3) })
	e.view(func(tx store.Tx) error {
		got, err := tx.ObjectByUID("alice", "uid-T-1")
		if err != nil {
			return err
		}
		sameObject("Object put after delete", got, a3)
		return nil
	})
}

func testChanges(t *testing.T, b backend) {
	e := newEnv(t, b)
	put := func(names ...string) int64 {
		t.Helper()
		var seq int64
		e.update(func(tx store.Tx) error {
			for _, n := range names {
				o := sampleObject("alice", "todos", n)
				if err := tx.PutObject(&o); err != nil {
					return err
				}
				seq = o.Seq
			}
			return nil
		})
		return seq
	}
	e.update(func(tx store.Tx) error {
		_, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: "todos"})
		if err != nil {
			return err
		}
		_, err = tx.EnsureCollection(&store.Collection{User: "alice", Name: "other"})
		return err
	})
	s1 := put("c", "a", "b")
	s2 := put("b")
	var s3 int64
	e.update(func(tx store.Tx) (err error) {
		if s3, err = tx.Seq(); err != nil {
			return err
		}
		return tx.DeleteObject("alice", "todos", "a.ics")
	})
	e.update(func(tx store.Tx) error { // another collection: not in todos' changes
		o := sampleObject("alice", "other", "z")
		return tx.PutObject(&o)
	})
	s4 := put("d")

	type change struct {
		name    string
		seq     int64
		deleted bool
	}
	summary := func(os []store.Object) (out []change) {
		for _, o := range os {
			if o.Data != nil {
				t.Errorf("Changes returned data for %s", o.Name)
			}
			out = append(out, change{o.Name, o.Seq, o.Deleted})
		}
		return out
	}
	for _, tc := range []struct {
		since int64
		want  []change
	}{
		{0, []change{{"c.ics", s1, false}, {"b.ics", s2, false}, {"a.ics", s3, true}, {"d.ics", s4, false}}},
		{s1 - 1, []change{{"c.ics", s1, false}, {"b.ics", s2, false}, {"a.ics", s3, true}, {"d.ics", s4, false}}},
		{s1, []change{{"b.ics", s2, false}, {"a.ics", s3, true}, {"d.ics", s4, false}}},
		{s2, []change{{"a.ics", s3, true}, {"d.ics", s4, false}}},
		{s3, []change{{"d.ics", s4, false}}},
		{s4, nil},
	} {
		if got := summary(e.changes("alice", "todos", tc.since)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Changes(since %d):\n got %+v\nwant %+v", tc.since, got, tc.want)
		}
	}
	// Changes of one transaction share its revision; they come by name.
	s5 := put("y", "w", "x")
	if got, want := summary(e.changes("alice", "todos", s4)), []change{{"w.ics", s5, false}, {"x.ics", s5, false}, {"y.ics", s5, false}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Changes of one transaction:\n got %+v\nwant %+v", got, want)
	}
	if got := e.changes("bob", "todos", 0); len(got) != 0 {
		t.Errorf("Changes of another user: got %+v, want none", summary(got))
	}
}

func testMailboxes(t *testing.T, b backend) {
	e := newEnv(t, b)
	var inbox, again, trash *store.Mailbox
	e.update(func(tx store.Tx) (err error) {
		if inbox, err = tx.EnsureMailbox("alice", "INBOX", ""); err != nil {
			return err
		}
		if again, err = tx.EnsureMailbox("alice", "INBOX", `\Trash`); err != nil {
			return err
		}
		trash, err = tx.EnsureMailbox("alice", "Trash", `\Trash`)
		return err
	})
	if inbox.UIDValidity == 0 || inbox.UIDNext != 1 || *again != *inbox {
		t.Errorf("EnsureMailbox: got %+v then %+v; want a UIDVALIDITY, UIDNEXT 1, the same twice", *inbox, *again)
	}
	if got := e.mailbox("alice", "INBOX"); *got != *inbox {
		t.Errorf("Mailbox: got %+v, want %+v", *got, *inbox)
	}
	var list []store.Mailbox
	e.view(func(tx store.Tx) (err error) {
		list, err = tx.Mailboxes("alice")
		if err != nil {
			return err
		}
		_, err = tx.Mailbox("bob", "INBOX")
		wantNotFound(t, "Mailbox(other user)", err)
		return nil
	})
	if len(list) != 2 || list[0] != *inbox || list[1] != *trash || trash.SpecialUse != `\Trash` {
		t.Errorf("Mailboxes: got %+v", list)
	}

	// Append.
	raw := func(i int) []byte {
		return fmt.Appendf(nil, "From: duebridge <tasks@example.com>\r\nSubject: mail %d\r\nMessage-ID: <m%d@duebridge>\r\n\r\nbody %d\r\n", i, i, i)
	}
	var msgs []store.Message
	date := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	e.update(func(tx store.Tx) error {
		for i := 1; i <= 3; i++ {
			m := store.Message{User: "alice", Mailbox: "INBOX", Data: raw(i), MessageID: fmt.Sprintf("<m%d@duebridge>", i),
				Source: "tracker", TaskID: fmt.Sprint("T-", i)}
			if i == 1 {
				m.Flags = []string{`\seen`, "$label1", `\SEEN`}
				m.InternalDate = date
			}
			if err := tx.AppendMessage(&m); err != nil {
				return err
			}
			msgs = append(msgs, m)
		}
		return nil
	})
	for i, m := range msgs {
		if m.UID != uint32(i+1) || m.Size != int64(len(raw(i+1))) || m.ModSeq == 0 {
			t.Errorf("AppendMessage %d: UID %d, Size %d, ModSeq %d", i+1, m.UID, m.Size, m.ModSeq)
		}
	}
	if want := []string{"$label1", `\Seen`}; !slices.Equal(msgs[0].Flags, want) {
		t.Errorf("AppendMessage flags: got %q, want %q", msgs[0].Flags, want)
	}
	if !msgs[0].InternalDate.Equal(date) || !msgs[1].InternalDate.Equal(t0) {
		t.Errorf("InternalDate: got %v, %v; want %v (given), %v (now)", msgs[0].InternalDate, msgs[1].InternalDate, date, t0)
	}
	err := e.s.Update(t.Context(), func(tx store.Tx) error {
		return tx.AppendMessage(&store.Message{User: "alice", Mailbox: "Nope", Data: []byte("x")})
	})
	wantNotFound(t, "AppendMessage to a missing mailbox", err)

	list2 := e.messages("alice", "INBOX")
	if len(list2) != 3 {
		t.Fatalf("Messages: got %d, want 3", len(list2))
	}
	for i, m := range list2 {
		want := msgs[i]
		want.Data = nil
		if m.InternalDate.Equal(want.InternalDate) {
			m.InternalDate = want.InternalDate
		}
		if !reflect.DeepEqual(m, want) {
			t.Errorf("Messages[%d]:\n got %+v\nwant %+v", i, m, want)
		}
	}
	e.view(func(tx store.Tx) error {
		m, err := tx.MessageData("alice", "INBOX", 2)
		if err != nil {
			return err
		}
		if !bytes.Equal(m.Data, raw(2)) || m.UID != 2 || m.MessageID != "<m2@duebridge>" {
			t.Errorf("MessageData: got UID %d, Message-ID %q, data %q", m.UID, m.MessageID, m.Data)
		}
		_, err = tx.MessageData("alice", "INBOX", 9)
		wantNotFound(t, "MessageData(missing UID)", err)
		_, err = tx.MessageData("alice", "Trash", 2)
		wantNotFound(t, "MessageData(other mailbox)", err)
		return nil
	})
	mb := e.mailbox("alice", "INBOX")
	if mb.UIDNext != 4 || mb.ModSeq != msgs[2].ModSeq || mb.UIDValidity != inbox.UIDValidity {
		t.Errorf("Mailbox after appends: got %+v, want UIDNEXT 4, MODSEQ %d", *mb, msgs[2].ModSeq)
	}

	// SetFlags: only changed messages come back, flags canonical.
	var changed, unchanged []store.Message
	var flagSeq int64
	e.update(func(tx store.Tx) (err error) {
		if flagSeq, err = tx.Seq(); err != nil {
			return err
		}
		changed, err = tx.SetFlags("alice", "INBOX", []uint32{1, 2, 99}, []string{"$label1", `\seen`})
		return err
	})
	if len(changed) != 1 || changed[0].UID != 2 || changed[0].ModSeq != flagSeq || !slices.Equal(changed[0].Flags, []string{"$label1", `\Seen`}) {
		t.Errorf("SetFlags(1, 2, 99): got %+v, want only UID 2 with flags [$label1 \\Seen] and MODSEQ %d", changed, flagSeq)
	}
	e.update(func(tx store.Tx) (err error) {
		unchanged, err = tx.SetFlags("alice", "INBOX", []uint32{1, 2}, []string{`\SEEN`, "$label1", "$label1"})
		return err
	})
	if len(unchanged) != 0 {
		t.Errorf("SetFlags to the same flags: got %+v, want none changed", unchanged)
	}
	e.update(func(tx store.Tx) (err error) {
		changed, err = tx.SetFlags("alice", "INBOX", []uint32{3}, []string{`\flagged`, `\deleted`, `\Answered`})
		return err
	})
	if len(changed) != 1 || !slices.Equal(changed[0].Flags, []string{`\Answered`, `\Deleted`, `\Flagged`}) {
		t.Errorf("SetFlags canonical case: got %+v", changed)
	}
	flagModSeq := changed[0].ModSeq
	list2 = e.messages("alice", "INBOX")
	if got := list2[1].Flags; !slices.Equal(got, []string{"$label1", `\Seen`}) {
		t.Errorf("flags of UID 2 as stored: got %q", got)
	}
	if got := e.mailbox("alice", "INBOX").ModSeq; got != flagModSeq {
		t.Errorf("mailbox MODSEQ after SetFlags: got %d, want %d", got, flagModSeq)
	}
	e.update(func(tx store.Tx) (err error) {
		changed, err = tx.SetFlags("alice", "INBOX", []uint32{3}, nil)
		return err
	})
	if len(changed) != 1 || len(changed[0].Flags) != 0 {
		t.Errorf("SetFlags to none: got %+v", changed)
	}

	// Expunge; UIDs are never reused, not even the highest.
	var expSeq int64
	e.update(func(tx store.Tx) (err error) {
		if expSeq, err = tx.Seq(); err != nil {
			return err
		}
		return tx.Expunge("alice", "INBOX", []uint32{2, 3})
	})
	if got := e.messages("alice", "INBOX"); len(got) != 1 || got[0].UID != 1 {
		t.Errorf("Messages after Expunge(2, 3): got %+v, want UID 1 only", got)
	}
	if got := e.mailbox("alice", "INBOX"); got.ModSeq != expSeq || got.UIDNext != 4 {
		t.Errorf("mailbox after Expunge: got %+v, want MODSEQ %d, UIDNEXT 4", *got, expSeq)
	}
	e.view(func(tx store.Tx) error {
		_, err := tx.MessageData("alice", "INBOX", 3)
		wantNotFound(t, "MessageData(expunged)", err)
		return nil
	})
	m4 := store.Message{User: "alice", Mailbox: "INBOX", Data: raw(4)}
	e.update(func(tx store.Tx) error { return tx.AppendMessage(&m4) })
	if m4.UID != 4 {
		t.Errorf("AppendMessage after expunging UIDs 2, 3: UID %d, want 4", m4.UID)
	}
	events := e.commits()
	if last := events[len(events)-1]; len(last) != 1 || last[0] != (store.Event{Seq: m4.ModSeq, Kind: store.EventMail, User: "alice", Name: "INBOX"}) {
		t.Errorf("events of AppendMessage: got %+v", last)
	}

	// UIDVALIDITY and UIDNEXT survive a restart, even at another time.
	e.clock.Advance(48 * time.Hour)
	e.reopen()
	var after *store.Mailbox
	e.update(func(tx store.Tx) (err error) { after, err = tx.EnsureMailbox("alice", "INBOX", ""); return err })
	if after.UIDValidity != inbox.UIDValidity || after.UIDNext != 5 {
		t.Errorf("after reopen: got %+v, want UIDVALIDITY %d, UIDNEXT 5", *after, inbox.UIDValidity)
	}
	m5 := store.Message{User: "alice", Mailbox: "INBOX", Data: raw(5)}
	e.update(func(tx store.Tx) error { return tx.AppendMessage(&m5) })
	if m5.UID != 5 {
		t.Errorf("AppendMessage after reopen: UID %d, want 5", m5.UID)
	}
	e.update(func(tx store.Tx) error { return tx.Expunge("alice", "INBOX", []uint32{5}) })
	e.reopen()
	m6 := store.Message{User: "alice", Mailbox: "INBOX", Data: raw(6)}
	e.update(func(tx store.Tx) error { return tx.AppendMessage(&m6) })
	if m6.UID != 6 {
		t.Errorf("AppendMessage after expunging the newest and reopening: UID %d, want 6", m6.UID)
	}
}

func testKV(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.view(func(tx store.Tx) error {
		_, err := tx.Get("secret")
		wantNotFound(t, "Get(unset)", err)
		return nil
	})
	e.update(func(tx store.Tx) error {
		if err := tx.Set("secret", "s1"); err != nil {
			return err
		}
		if err := tx.Set("empty", ""); err != nil {
			return err
		}
		v, err := tx.Get("secret") // own writes are visible
		if err != nil {
			return err
		}
		return check(v == "s1", "Get inside the writing transaction: %q", v)
	})
	e.update(func(tx store.Tx) error { return tx.Set("secret", "s2 ✓") })
	e.view(func(tx store.Tx) error {
		for k, want := range map[string]string{"secret": "s2 ✓", "empty": ""} {
			v, err := tx.Get(k)
			if err != nil || v != want {
				t.Errorf("Get(%q): got %q, %v; want %q", k, v, err, want)
			}
		}
		return nil
	})

	// GetPrefix matches the prefix to the byte: not as a LIKE pattern (_ and
	// % are literal), not by case, not by the collation's order.
	e.update(func(tx store.Tx) error {
		for k, v := range map[string]string{
			"plan.ä_1": "a", "plan.ä_2": "b", "plan.äx1": "no: _ is literal", "plan.Ä_1": "no: case",
			"plan.ä": "no: shorter", "plan.ä_": "c", "plaN.ä_1": "no", "other": "no",
		} {
			if err := tx.Set(k, v); err != nil {
				return err
			}
		}
		return nil
	})
	got := map[string]string{}
	if err := e.s.Read(t.Context(), func(tx store.Tx) error {
		return tx.GetPrefix("plan.ä_", func(k, v string) error { got[k] = v; return nil })
	}); err != nil {
		t.Fatalf("GetPrefix in a Read: %v", err)
	}
	if want := map[string]string{"plan.ä_1": "a", "plan.ä_2": "b", "plan.ä_": "c"}; !maps.Equal(got, want) {
		t.Errorf("GetPrefix(plan.ä_): got %v, want %v", got, want)
	}
	stop := errors.New("stop")
	n := 0
	e.view(func(tx store.Tx) error {
		err := tx.GetPrefix("plan.", func(string, string) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("GetPrefix whose fn fails: %v after %d calls, want fn's error after 1", err, n)
		}
		return nil
	})
}

func testReopen(t *testing.T, b backend) {
	e := newEnv(t, b)
	task := sampleTask("T-1")
	task.Due = store.When{Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), AllDay: true}
	coll := store.Collection{User: "alice", Name: "todos", Kind: store.KindTodos, DisplayName: "Todos", Color: "#123456"}
	obj := sampleObject("alice", "todos", "T-1")
	msg := store.Message{User: "alice", Mailbox: "INBOX", Data: []byte("Subject: kept\r\n\r\n"), Flags: []string{`\Flagged`}}
	var mbox *store.Mailbox
	e.update(func(tx store.Tx) (err error) {
		if err = tx.PutTask(&task); err != nil {
			return err
		}
		if err = tx.PutUserTask(&store.UserTask{User: "alice", Source: "tracker", TaskID: "T-1", Extra: "x"}); err != nil {
			return err
		}
		if _, err = tx.EnsureCollection(&coll); err != nil {
			return err
		}
		if err = tx.PutObject(&obj); err != nil {
			return err
		}
		if mbox, err = tx.EnsureMailbox("alice", "INBOX", ""); err != nil {
			return err
		}
		if err = tx.AppendMessage(&msg); err != nil {
			return err
		}
		return tx.Set("secret", "kept")
	})
	e.update(func(tx store.Tx) error { return tx.DeleteObject("alice", "todos", "T-1.ics") })
	var lastSeq int64
	e.update(func(tx store.Tx) (err error) { lastSeq, err = tx.Seq(); return err })

	e.clock.Advance(time.Hour)
	e.reopen()

	sameTask(t, "task after reopen", e.task("tracker", "T-1"), task)
	coll.Seq = lastSeq - 1 // the DeleteObject
	if got := e.collection("alice", "todos"); *got != coll {
		t.Errorf("collection after reopen:\n got %+v\nwant %+v", *got, coll)
	}
	if got := e.changes("alice", "todos", 0); len(got) != 1 || !got[0].Deleted || got[0].Name != "T-1.ics" {
		t.Errorf("changes after reopen: got %+v, want the tombstone", got)
	}
	mb := e.mailbox("alice", "INBOX")
	if mb.UIDValidity != mbox.UIDValidity || mb.UIDNext != 2 {
		t.Errorf("mailbox after reopen: got %+v", *mb)
	}
	e.view(func(tx store.Tx) error {
		m, err := tx.MessageData("alice", "INBOX", 1)
		if err != nil {
			return err
		}
		if string(m.Data) != "Subject: kept\r\n\r\n" || !slices.Equal(m.Flags, []string{`\Flagged`}) {
			t.Errorf("message after reopen: got %+v", *m)
		}
		u, err := tx.UserTask("alice", "tracker", "T-1")
		if err != nil || u.Extra != "x" {
			t.Errorf("user task after reopen: got %+v, %v", u, err)
		}
		v, err := tx.Get("secret")
		if err != nil || v != "kept" {
			t.Errorf("kv after reopen: got %q, %v", v, err)
		}
		return nil
	})
	var s int64
	e.update(func(tx store.Tx) (err error) { s, err = tx.Seq(); return err })
	if s <= lastSeq {
		t.Errorf("revision after reopen: got %d, want > %d", s, lastSeq)
	}
	if err := e.s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// Eight goroutines write at once: every Update succeeds, each gets its own
// revision, OnCommit sees them in order, and a read-modify-write inside
// Update never loses an increment (Update transactions are serialised).
func testConcurrentUpdates(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error { return tx.Set("counter", "0") })
	const workers, each = 8, 10
	var wg sync.WaitGroup
	seqs := make(chan int64, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				err := e.s.Update(t.Context(), func(tx store.Tx) error {
					v, err := tx.Get("counter")
					if err != nil {
						return err
					}
					var n int
					fmt.Sscan(v, &n)
					if err := tx.Set("counter", fmt.Sprint(n+1)); err != nil {
						return err
					}
					task := sampleTask(fmt.Sprintf("W%d-%d", w, i))
					if err := tx.PutTask(&task); err != nil {
						return err
					}
					tx.Emit(store.Event{Kind: store.EventTask, Source: task.Source, TaskID: task.ID})
					seqs <- task.Seq
					return nil
				})
				if err != nil {
					t.Errorf("worker %d, update %d: %v", w, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(seqs)
	seen := map[int64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Errorf("revision %d given to two transactions", s)
		}
		seen[s] = true
	}
	if len(seen) != workers*each {
		t.Errorf("got %d distinct revisions, want %d", len(seen), workers*each)
	}
	var counter string
	var tasks []store.Task
	e.view(func(tx store.Tx) (err error) {
		if counter, err = tx.Get("counter"); err != nil {
			return err
		}
		tasks, err = tx.TasksBySource("tracker", false)
		return err
	})
	if counter != fmt.Sprint(workers*each) {
		t.Errorf("counter incremented by %d read-modify-write Updates: got %s (lost updates)", workers*each, counter)
	}
	if len(tasks) != workers*each {
		t.Errorf("tasks: got %d, want %d", len(tasks), workers*each)
	}
	calls := e.commits()
	if len(calls) != workers*each {
		t.Errorf("OnCommit calls: got %d, want %d", len(calls), workers*each)
	}
	for i := 1; i < len(calls); i++ {
		if calls[i][0].Seq <= calls[i-1][0].Seq {
			t.Errorf("OnCommit out of order: call %d has seq %d after %d", i, calls[i][0].Seq, calls[i-1][0].Seq)
		}
	}
}

func testOutbox(t *testing.T, b backend) {
	e := newEnv(t, b)
	next := func() (time.Time, bool) {
		t.Helper()
		var at time.Time
		var ok bool
		e.view(func(tx store.Tx) (err error) { at, ok, err = tx.NextCallback(); return err })
		return at, ok
	}
	due := func(now time.Time, limit int) (ids []string) {
		t.Helper()
		var cs []store.Callback
		e.view(func(tx store.Tx) (err error) { cs, err = tx.DueCallbacks(now, limit); return err })
		for _, c := range cs {
			ids = append(ids, c.EventID)
		}
		return ids
	}
	counts := func() [2]int {
		t.Helper()
		var p, f int
		e.view(func(tx store.Tx) (err error) { p, f, err = tx.OutboxCounts(); return err })
		return [2]int{p, f}
	}
	if _, ok := next(); ok {
		t.Errorf("NextCallback of an empty outbox: got one")
	}

	later := t0.Add(10 * time.Minute)
	cbs := []store.Callback{
		{EventID: "e1", Source: "tracker", TaskID: "T-1", Body: []byte(`{"id":"T-1","status":"done"}`)},
		{EventID: "e2", Source: "tracker", TaskID: "T-2", Body: []byte(`{"id":"T-2","status":"open"}`), NextAttempt: later},
		{EventID: "e3", Source: "other", TaskID: "X-1", Body: []byte(`{}`), Created: t0.Add(-time.Hour)},
	}
	before := len(e.commits())
	e.update(func(tx store.Tx) error {
		for i := range cbs {
			if err := tx.EnqueueCallback(&cbs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if cbs[0].ID == 0 || cbs[0].ID == cbs[1].ID || !cbs[0].Created.Equal(t0) || !cbs[0].NextAttempt.Equal(t0) || !cbs[2].Created.Equal(t0.Add(-time.Hour)) {
		t.Errorf("EnqueueCallback: got %+v", cbs)
	}
	if calls := e.commits()[before:]; len(calls) != 1 || len(calls[0]) != 3 || calls[0][0].Kind != store.EventOutbox || calls[0][0].TaskID != "T-1" {
		t.Errorf("events of EnqueueCallback: got %+v", calls)
	}
	if at, ok := next(); !ok || !at.Equal(t0) {
		t.Errorf("NextCallback: got %v, %v; want %v", at, ok, t0)
	}
	if got, want := due(t0, 10), []string{"e1", "e3"}; !slices.Equal(got, want) {
		t.Errorf("DueCallbacks(now): got %v, want %v", got, want)
	}
	if got, want := due(later, 10), []string{"e1", "e3", "e2"}; !slices.Equal(got, want) {
		t.Errorf("DueCallbacks(later): got %v, want %v", got, want)
	}
	if got, want := due(later, 1), []string{"e1"}; !slices.Equal(got, want) {
		t.Errorf("DueCallbacks(limit 1): got %v, want %v", got, want)
	}
	var all []store.Callback
	e.view(func(tx store.Tx) (err error) { all, err = tx.DueCallbacks(later, 10); return err })
	if len(all) == 3 && (!bytes.Equal(all[0].Body, cbs[0].Body) || all[0].Source != "tracker" || all[0].TaskID != "T-1" || all[0].ID != cbs[0].ID) {
		t.Errorf("DueCallbacks row: got %+v, want %+v", all[0], cbs[0])
	}
	if got := counts(); got != [2]int{3, 0} {
		t.Errorf("OutboxCounts: got %v, want [3 0]", got)
	}

	// The same event is queued once.
	err := e.s.Update(t.Context(), func(tx store.Tx) error {
		return tx.EnqueueCallback(&store.Callback{EventID: "e1", Source: "tracker", TaskID: "T-1", Body: []byte("{}")})
	})
	if err == nil {
		t.Errorf("EnqueueCallback with a used event ID: got no error")
	}

	// A failure moves the next attempt and keeps a (bounded, valid UTF-8)
	// reason, however long the error was.
	reason := "x" + strings.Repeat("é", 400) // byte 500 is inside an é
	retry := t0.Add(time.Hour)
	e.update(func(tx store.Tx) error { return tx.MarkFailed(cbs[0].ID, 1, retry, reason) })
	if got, want := due(t0, 10), []string{"e3"}; !slices.Equal(got, want) {
		t.Errorf("DueCallbacks after a failure: got %v, want %v", got, want)
	}
	e.view(func(tx store.Tx) (err error) { all, err = tx.DueCallbacks(retry, 10); return err })
	if len(all) != 3 || all[2].EventID != "e1" || all[2].Attempts != 1 || !all[2].NextAttempt.Equal(retry) ||
		len(all[2].LastError) > 500 || !strings.HasPrefix(reason, all[2].LastError) || len(all[2].LastError) < 400 {
		t.Errorf("after MarkFailed: got %+v", all)
	}
	if got := counts(); got != [2]int{3, 1} {
		t.Errorf("OutboxCounts after a failure: got %v, want [3 1]", got)
	}
	e.update(func(tx store.Tx) error { return tx.MarkFailed(cbs[1].ID, 1, later, "bad byte \xff from the server") })
	e.view(func(tx store.Tx) (err error) { all, err = tx.DueCallbacks(later, 10); return err })
	if len(all) < 2 || all[1].EventID != "e2" || all[1].LastError != "bad byte \uFFFD from the server" {
		t.Errorf("MarkFailed with invalid UTF-8: got %+v", all)
	}
	e.update(func(tx store.Tx) error { return tx.MarkFailed(cbs[1].ID, 0, later, "") })

	// Delivered ones leave the queue; pruning removes them for good.
	e.update(func(tx store.Tx) error {
		if err := tx.MarkDelivered(cbs[0].ID, t0.Add(2*time.Hour)); err != nil {
			return err
		}
		return tx.MarkDelivered(cbs[2].ID, t0)
	})
	if got, want := due(retry, 10), []string{"e2"}; !slices.Equal(got, want) {
		t.Errorf("DueCallbacks after delivery: got %v, want %v", got, want)
	}
	if at, ok := next(); !ok || !at.Equal(later) {
		t.Errorf("NextCallback after delivery: got %v, %v; want %v", at, ok, later)
	}
	if got := counts(); got != [2]int{1, 0} {
		t.Errorf("OutboxCounts after delivery: got %v, want [1 0]", got)
	}
	e.update(func(tx store.Tx) error { return tx.PruneDelivered(t0.Add(time.Hour)) })
	// e3 (delivered at t0) is gone, e1 (delivered later) stays: its event ID
	// is still taken.
	err = e.s.Update(t.Context(), func(tx store.Tx) error {
		return tx.EnqueueCallback(&store.Callback{EventID: "e3", Source: "other", TaskID: "X-1", Body: []byte("{}")})
	})
	if err != nil {
		t.Errorf("EnqueueCallback with a pruned event ID: %v", err)
	}
	err = e.s.Update(t.Context(), func(tx store.Tx) error {
		return tx.EnqueueCallback(&store.Callback{EventID: "e1", Source: "tracker", TaskID: "T-1", Body: []byte("{}")})
	})
	if err == nil {
		t.Errorf("EnqueueCallback with the event ID of a delivered, unpruned callback: got no error")
	}
}
