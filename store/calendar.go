package store

import (
	"cmp"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Migration 73: two more indexes every new-task webhook wrote, each a
// page of the commit (a WAL frame, two syscalls, inside the single
// writer's turn) and an insert per row:
//   - objects_task (source, task_id): its one reader, ingest's look-up of a
//     user's objects of a task, now searches objects_uid (username, uid)
//     with the UIDs the task's objects carry (ObjectsForTaskUser).
//   - alerts_user_due (username, due_at): it served the daily digest of
//     one user, which now reads that user's schedules by the primary key
//     (username first) and sorts them: once a day per user, against a
//     page per new task.
//
// Registered here, before migrate.go's init sorts the list.
var _ = func() int {
	migrations = append(migrations, migration{73, `
DROP INDEX IF EXISTS objects_task;
DROP INDEX IF EXISTS alerts_user_due;
`})
	// On SQLite, collections becomes a WITHOUT ROWID table keyed by (username,
	// name), as alerts did in migration 72. Every phone poll lists one user's
	// collections; in a rowid table that was a walk of the key's index and then
	// one look-up per list in the rows, which sit wherever the lists were made:
	// a project's lists are made for all its members at once, so a user's ten
	// rows were on ten pages. Now they are side by side in the key's own
	// b-tree (BenchmarkPollCollectionsMany: ~93 → ~48 µs at 40,000 users).
	// PostgreSQL keeps its table: no rowid, and its key index finds the rows.
	// Version 74 is skipped: it was released and reverted (cbc762d).
	migrations = append(migrations, migration{75, `
{{sqlite}} CREATE TABLE collections_75 (
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
) WITHOUT ROWID;
{{sqlite}} INSERT INTO collections_75 (username, name, project, kind, display_name, color, sort_order, seq, min_seq)
	SELECT username, name, project, kind, display_name, color, sort_order, seq, min_seq FROM collections;
{{sqlite}} DROP TABLE collections;
{{sqlite}} ALTER TABLE collections_75 RENAME TO collections;
`})
	return 0
}()

// Collection kinds.
const (
	KindEvents = "events" // VEVENT deadlines, read-only for the user
	KindTodos  = "todos"  // VTODO tasks, shown in Reminders
)

// Collection is one CalDAV collection of one user.
type Collection struct {
	User        string
	Name        string // URL segment, unique per user
	Project     string
	Kind        string // KindEvents or KindTodos
	DisplayName string
	Color       string // #RRGGBB or #RRGGBBAA; "" = client's choice
	Order       int
	Seq         int64 // revision of the last change inside it: the ctag
	// MinSeq: sync tokens below it are no longer answerable (tombstones pruned).
	MinSeq int64
}

// Object is one calendar object resource of one user. Data is the exact
// iCalendar bytes served; ETag is derived from them.
type Object struct {
	User       string
	Collection string
	Name       string // URL segment, e.g. "T-123.ics"
	UID        string
	Source     string // "" for a reminder the user created on the phone
	TaskID     string
	ETag       string
	Data       []byte // nil in listings that do not ask for data
	Seq        int64
	Deleted    bool // a tombstone kept for sync-collection
	Modified   time.Time
}

// CalendarTx reads and writes collections and objects.
type CalendarTx interface {
	// EnsureCollection creates c if the user has no collection of that name;
	// an existing one keeps its properties. It reports whether it was created.
	EnsureCollection(c *Collection) (bool, error)
	Collection(user, name string) (*Collection, error)
	Collections(user string) ([]Collection, error)
	// CollectionsNamed returns those of the user's collections among
	// names, in no particular order: a writer that needs a project's two
	// reads two rows, not the user's every collection.
	CollectionsNamed(user string, names []string) ([]Collection, error)
	// SetCollectionProps changes display name, colour and order (PROPPATCH).
	SetCollectionProps(user, name, displayName, color string, order int) error

	// PutObject writes o (o.Seq, o.Modified set) and advances its collection.
	PutObject(o *Object) error
	// PutObjects is PutObject for several objects, in one statement when
	// they are two or fewer and name different objects.
	PutObjects(objs []*Object) error
	// DeleteObject turns the object into a tombstone; ErrNotFound if absent.
	DeleteObject(user, collection, name string) error
	// Object returns a live object with its data; ErrNotFound if none.
	Object(user, collection, name string) (*Object, error)
	// ObjectsByName returns the live objects (with data) of a collection
	// among names, in no particular order; absent names are left out.
	ObjectsByName(user, collection string, names []string) ([]Object, error)
	// ObjectByUID finds a live object of the user by UID in any collection.
	ObjectByUID(user, uid string) (*Object, error)
	// Objects lists the live objects of a collection, with data if asked.
	Objects(user, collection string, withData bool) ([]Object, error)
	// ObjectsForTaskUser lists the live objects one user has of a task;
	// uids are the UIDs the task's objects carry (render.TodoUID and
	// EventUID), which the lookup searches by: the store keeps no index by
	// task (migration 73).
	ObjectsForTaskUser(source, id, user string, uids []string) ([]Object, error)
	// ObjectsOfUser lists all live objects of a user (for re-rendering).
	ObjectsOfUser(user string) ([]Object, error)
	// OwnUsage counts a user's live own reminders (objects of no task
	// source) and their bytes, for the per-user budgets.
	OwnUsage(user string) (count, bytes int64, err error)
	// Changes lists objects (tombstones included, no data) of a collection
	// changed after revision since, in revision order.
	Changes(user, collection string, since int64) ([]Object, error)
	// CollectionChanges is Collection and Changes in one statement, so a
	// Read (no transaction) gives both from one snapshot: the
	// sync-collection a phone sends after a changed list. It does not
	// check since against the collection's MinSeq; the caller does.
	CollectionChanges(user, collection string, since int64) (*Collection, []Object, error)
	// CollectionObjectsByName is Collection and ObjectsByName in one
	// statement, for at most ObjectsByNameChunk names: the multiget a
	// phone sends for what a sync found changed.
	CollectionObjectsByName(user, collection string, names []string) (*Collection, []Object, error)
}

func (tx *sqlTx) EnsureCollection(c *Collection) (bool, error) {
	seq, err := tx.Seq()
	if err != nil {
		return false, err
	}
	res, err := tx.exec(`INSERT INTO collections (username, name, project, kind, display_name, color, sort_order, seq, min_seq)
		VALUES (?,?,?,?,?,?,?,?,0) ON CONFLICT (username, name) DO NOTHING`,
		c.User, c.Name, c.Project, c.Kind, c.DisplayName, c.Color, c.Order, seq)
	if err != nil {
		return false, fmt.Errorf("ensure collection %s/%s: %w", c.User, c.Name, err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		c.Seq = seq
		tx.Emit(Event{Seq: seq, Kind: EventCalendar, User: c.User, Name: c.Name})
	}
	return n > 0, nil
}

const collCols = `username, name, project, kind, display_name, color, sort_order, seq, min_seq`

func scanCollection(s scanner) (*Collection, error) {
	var c Collection
	err := s.Scan(&c.User, &c.Name, &c.Project, &c.Kind, &c.DisplayName, &c.Color, &c.Order, &c.Seq, &c.MinSeq)
	return &c, err
}

func (tx *sqlTx) Collection(user, name string) (*Collection, error) {
	c, err := scanCollection(tx.queryRow(`SELECT `+collCols+` FROM collections WHERE username = ? AND name = ?`, user, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return c, err
}

func (tx *sqlTx) CollectionsNamed(user string, names []string) ([]Collection, error) {
	if len(names) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(names)+1)
	args = append(args, user)
	for _, n := range names {
		args = append(args, n)
	}
	rows, err := tx.query(`SELECT `+collCols+` FROM collections WHERE username = ? AND name IN (`+inList(len(names))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("read collections of %s: %w", user, err)
	}
	defer rows.Close()
	var out []Collection
	for rows.Next() {
		c, err := scanCollection(rows)
		if err != nil {
			return nil, fmt.Errorf("read collections of %s: %w", user, err)
		}
		out = append(out, *c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read collections of %s: %w", user, err)
	}
	return out, nil
}

// Collections lists user's collections by sort order, then name (bytewise,
// on both databases). It runs on every phone poll, so it asks SQLite for
// less: no ORDER BY (its sorter cost more than sorting a few dozen rows
// here), no username column and the kind as a number (the driver allocates
// every text value), and rows are scanned in place rather than copied.
func (tx *sqlTx) Collections(user string) ([]Collection, error) {
	// The two kinds come back as numbers: the driver would allocate the
	// same two words for every row.
	rows, err := tx.query(`SELECT name, project,
		CASE kind WHEN 'todos' THEN 1 WHEN 'events' THEN 2 ELSE 0 END,
		CASE WHEN kind IN ('todos', 'events') THEN '' ELSE kind END,
		display_name, color, sort_order, seq, min_seq FROM collections WHERE username = ?`, user)
	if err != nil {
		return nil, fmt.Errorf("list collections of %s: %w", user, err)
	}
	defer rows.Close()
	out := make([]Collection, 0, 16)
	for rows.Next() {
		out = append(out, Collection{User: user})
		c := &out[len(out)-1]
		var kind int
		if err := rows.Scan(&c.Name, &c.Project, &kind, &c.Kind, &c.DisplayName, &c.Color, &c.Order, &c.Seq, &c.MinSeq); err != nil {
			return nil, fmt.Errorf("list collections of %s: %w", user, err)
		}
		switch kind {
		case 1:
			c.Kind = KindTodos
		case 2:
			c.Kind = KindEvents
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list collections of %s: %w", user, err)
	}
	slices.SortFunc(out, func(a, b Collection) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), strings.Compare(a.Name, b.Name))
	})
	return out, nil
}

func (tx *sqlTx) SetCollectionProps(user, name, displayName, color string, order int) error {
	seq, err := tx.Seq()
	if err != nil {
		return err
	}
	res, err := tx.exec(`UPDATE collections SET display_name = ?, color = ?, sort_order = ?, seq = ? WHERE username = ? AND name = ?`,
		displayName, color, order, seq, user, name)
	if err != nil {
		return fmt.Errorf("set collection props: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	tx.Emit(Event{Seq: seq, Kind: EventCalendar, User: user, Name: name})
	return nil
}

// touchCollection marks a collection changed by this transaction; its ctag
// (seq) is advanced once, when the transaction flushes before commit.
func (tx *sqlTx) touchCollection(user, name string, seq int64) error {
	if tx.touched == nil {
		tx.touched = map[[2]string]bool{}
	}
	tx.touched[[2]string{user, name}] = true
	return nil
}

func (tx *sqlTx) PutObject(o *Object) error { return tx.PutObjects([]*Object{o}) }

// putObjectsSQL upserts one object per row; objectsRow is one row.
const (
	putObjectsSQL = `INSERT INTO objects (username, collection, name, uid, source, task_id, etag, data, seq, deleted, modified)
		VALUES `
	objectsRow       = `(?,?,?,?,?,?,?,?,?,0,?)`
	putObjectsUpsert = ` ON CONFLICT (username, collection, name) DO UPDATE SET uid = excluded.uid,
		source = excluded.source, task_id = excluded.task_id, etag = excluded.etag, data = excluded.data,
		seq = excluded.seq, deleted = 0, modified = excluded.modified`
	putObjectSQL  = putObjectsSQL + objectsRow + putObjectsUpsert
	putObject2SQL = putObjectsSQL + objectsRow + `,` + objectsRow + putObjectsUpsert
)

// PutObjects writes a task's VTODO and VEVENT, the pair every new or
// changed task with a due date stores for each assignee, as one
// two-row INSERT: one statement fewer inside the single writer's turn.
// More objects, or two naming the same object (PostgreSQL refuses to
// upsert one row twice in a statement), go one statement each.
func (tx *sqlTx) PutObjects(objs []*Object) error {
	seq, err := tx.Seq()
	if err != nil {
		return err
	}
	pair := len(objs) == 2 && !sameObject(objs[0], objs[1])
	args := make([]any, 0, 10*len(objs))
	for _, o := range objs {
		o.Seq, o.Modified, o.Deleted = seq, tx.now, false
		row := []any{o.User, o.Collection, o.Name, o.UID, o.Source, o.TaskID, o.ETag, o.Data, seq, nanos(o.Modified)}
		if pair {
			args = append(args, row...)
		} else if _, err := tx.exec(putObjectSQL, row...); err != nil {
			return fmt.Errorf("put object %s/%s/%s: %w", o.User, o.Collection, o.Name, err)
		}
	}
	if pair {
		if _, err := tx.exec(putObject2SQL, args...); err != nil {
			return fmt.Errorf("put objects %s/%s/%s and %s/%s: %w", objs[0].User, objs[0].Collection, objs[0].Name, objs[1].Collection, objs[1].Name, err)
		}
	}
	for _, o := range objs {
		if err := tx.touchCollection(o.User, o.Collection, seq); err != nil {
			return err
		}
	}
	return nil
}

func sameObject(a, b *Object) bool {
	return a.User == b.User && a.Collection == b.Collection && a.Name == b.Name
}

func (tx *sqlTx) DeleteObject(user, collection, name string) error {
	seq, err := tx.Seq()
	if err != nil {
		return err
	}
	res, err := tx.exec(`UPDATE objects SET deleted = 1, data = NULL, seq = ?, modified = ? WHERE username = ? AND collection = ? AND name = ? AND deleted = 0`,
		seq, nanos(tx.now), user, collection, name)
	if err != nil {
		return fmt.Errorf("delete object: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return tx.touchCollection(user, collection, seq)
}

const objCols = `username, collection, name, uid, source, task_id, etag, seq, deleted, modified`

func scanObject(s scanner, withData bool) (*Object, error) {
	var o Object
	var deleted int
	var modified int64
	dest := []any{&o.User, &o.Collection, &o.Name, &o.UID, &o.Source, &o.TaskID, &o.ETag, &o.Seq, &deleted, &modified}
	if withData {
		dest = append(dest, &o.Data)
	}
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	o.Deleted = deleted != 0
	o.Modified = fromNanos(modified)
	return &o, nil
}

func (tx *sqlTx) Object(user, collection, name string) (*Object, error) {
	o, err := scanObject(tx.queryRow(`SELECT `+objCols+`, data FROM objects WHERE username = ? AND collection = ? AND name = ? AND deleted = 0`,
		user, collection, name), true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return o, err
}

// ObjectsByNameChunk is how many names one statement of ObjectsByName
// asks for. Chunks of a fixed size keep the number of distinct statements
// (and the bound-parameter count) small.
const ObjectsByNameChunk = 50

// collObjectsByNameQuery is the collection's row left-joined with its live
// objects of ObjectsByNameChunk names: one row with empty object columns
// when none is there.
var collObjectsByNameQuery = `SELECT c.username, c.name, c.project, c.kind, c.display_name, c.color, c.sort_order, c.seq, c.min_seq,
	COALESCE(o.name, ''), COALESCE(o.uid, ''), COALESCE(o.source, ''), COALESCE(o.task_id, ''), COALESCE(o.etag, ''),
	COALESCE(o.seq, 0), COALESCE(o.deleted, 0), COALESCE(o.modified, 0), o.data
	FROM collections c LEFT JOIN objects o ON o.username = c.username AND o.collection = c.name AND o.deleted = 0
	AND o.name IN (?` + strings.Repeat(",?", ObjectsByNameChunk-1) + `)
	WHERE c.username = ? AND c.name = ?`

func (tx *sqlTx) CollectionObjectsByName(user, collection string, names []string) (*Collection, []Object, error) {
	if len(names) == 0 || len(names) > ObjectsByNameChunk {
		return nil, nil, fmt.Errorf("objects of %s/%s: %d names, want 1 to %d", user, collection, len(names), ObjectsByNameChunk)
	}
	var args [ObjectsByNameChunk + 2]any
	for i := range ObjectsByNameChunk {
		args[i] = names[min(i, len(names)-1)] // pad by repeating the last name
	}
	args[ObjectsByNameChunk], args[ObjectsByNameChunk+1] = user, collection
	return tx.collectionJoined(collObjectsByNameQuery, true, args[:]...)
}

func (tx *sqlTx) ObjectsByName(user, collection string, names []string) ([]Object, error) {
	var out []Object
	const chunk = ObjectsByNameChunk
	for len(names) > 0 {
		n := min(chunk, len(names))
		part := names[:n]
		names = names[n:]
		args := make([]any, 0, 2+chunk)
		args = append(args, user, collection)
		for i := 0; i < chunk; i++ {
			args = append(args, part[min(i, n-1)]) // pad by repeating the last name
		}
		objs, err := tx.listObjects(true, `username = ? AND collection = ? AND deleted = 0 AND name IN (?`+strings.Repeat(",?", chunk-1)+`)`, args...)
		if err != nil {
			return nil, err
		}
		out = append(out, objs...)
	}
	return out, nil
}

func (tx *sqlTx) ObjectByUID(user, uid string) (*Object, error) {
	o, err := scanObject(tx.queryRow(`SELECT `+objCols+`, data FROM objects WHERE username = ? AND uid = ? AND deleted = 0 LIMIT 1`,
		user, uid), true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return o, err
}

func (tx *sqlTx) listObjects(withData bool, where string, args ...any) ([]Object, error) {
	cols := objCols
	if withData {
		cols += ", data"
	}
	rows, err := tx.query(`SELECT `+cols+` FROM objects WHERE `+where, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Object
	for rows.Next() {
		o, err := scanObject(rows, withData)
		if err != nil {
			return nil, err
		}
		out = append(out, *o)
	}
	return out, rows.Err()
}

func (tx *sqlTx) Objects(user, collection string, withData bool) ([]Object, error) {
	return tx.listObjects(withData, `username = ? AND collection = ? AND deleted = 0 ORDER BY name`, user, collection)
}

func (tx *sqlTx) ObjectsForTaskUser(source, id, user string, uids []string) ([]Object, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	args := make([]any, 0, len(uids)+3)
	args = append(args, user)
	for _, u := range uids {
		args = append(args, u)
	}
	args = append(args, source, id)
	return tx.listObjects(false, `username = ? AND uid IN (`+inList(len(uids))+`) AND source = ? AND task_id = ? AND deleted = 0`, args...)
}

func (tx *sqlTx) ObjectsOfUser(user string) ([]Object, error) {
	return tx.listObjects(false, `username = ? AND deleted = 0`, user)
}

func (tx *sqlTx) OwnUsage(user string) (count, bytes int64, err error) {
	err = tx.queryRow(`SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM objects
		WHERE username = ? AND source = '' AND deleted = 0`, user).Scan(&count, &bytes)
	if err != nil {
		return 0, 0, fmt.Errorf("own usage of %s: %w", user, err)
	}
	return count, bytes, nil
}

func (tx *sqlTx) Changes(user, collection string, since int64) ([]Object, error) {
	return tx.listObjects(false, `username = ? AND collection = ? AND seq > ? ORDER BY seq, name`, user, collection, since)
}

// collChangesQuery is the collection's row left-joined with its objects
// changed after a revision: one row with empty object columns when none
// changed. Object names are never empty, which tells that row apart.
var collChangesQuery = `SELECT c.username, c.name, c.project, c.kind, c.display_name, c.color, c.sort_order, c.seq, c.min_seq,
	COALESCE(o.name, ''), COALESCE(o.uid, ''), COALESCE(o.source, ''), COALESCE(o.task_id, ''), COALESCE(o.etag, ''),
	COALESCE(o.seq, 0), COALESCE(o.deleted, 0), COALESCE(o.modified, 0)
	FROM collections c LEFT JOIN objects o ON o.username = c.username AND o.collection = c.name AND o.seq > ?
	WHERE c.username = ? AND c.name = ? ORDER BY o.seq, o.name`

func (tx *sqlTx) CollectionChanges(user, collection string, since int64) (*Collection, []Object, error) {
	return tx.collectionJoined(collChangesQuery, false, since, user, collection)
}

// collectionJoined runs a query of a collection's row left-joined with
// some of its objects (collChangesQuery, collObjectsByNameQuery) and
// returns both; ErrNotFound if there is no such collection.
func (tx *sqlTx) collectionJoined(q string, withData bool, args ...any) (*Collection, []Object, error) {
	user, collection := args[len(args)-2], args[len(args)-1]
	rows, err := tx.query(q, args...)
	if err != nil {
		return nil, nil, fmt.Errorf("objects of %s/%s: %w", user, collection, err)
	}
	defer rows.Close()
	var c *Collection
	var out []Object
	for rows.Next() {
		var cr Collection
		var o Object
		var deleted int
		var modified int64
		dest := []any{&cr.User, &cr.Name, &cr.Project, &cr.Kind, &cr.DisplayName, &cr.Color, &cr.Order, &cr.Seq, &cr.MinSeq,
			&o.Name, &o.UID, &o.Source, &o.TaskID, &o.ETag, &o.Seq, &deleted, &modified}
		if withData {
			dest = append(dest, &o.Data)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("objects of %s/%s: %w", user, collection, err)
		}
		if c == nil {
			c = &cr
		}
		if o.Name == "" {
			continue
		}
		o.User, o.Collection = cr.User, cr.Name
		o.Deleted = deleted != 0
		o.Modified = fromNanos(modified)
		out = append(out, o)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("objects of %s/%s: %w", user, collection, err)
	}
	if c == nil {
		return nil, nil, ErrNotFound
	}
	return c, out, nil
}

// Slug makes a URL segment from a project name: lower-case ASCII letters,
// digits and dashes.
func Slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.TrimSuffix(b.String(), "-")
	if len(out) > 48 {
		out = strings.TrimSuffix(out[:48], "-")
	}
	return out
}
