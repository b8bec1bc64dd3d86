package store_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"modernc.org/sqlite"

	"github.com/duebridge/duebridge/store"
)

// countingDriver is SQLite's driver counting what the store's tests assert
// on: statements prepared, transactions begun, and the executions of a few
// statements (and whether their context could be cancelled: database/sql
// and the driver start a goroutine per statement to watch such a context).
// Tests install it with store.SetSQLiteDriver("sqlite-counting") and
// compare counts before and after.
type countingDriver struct {
	sqlite.Driver
	prepares    atomic.Int64 // of statements containing counted
	begins      atomic.Int64
	queries     atomic.Int64 // runs of statements containing collectionsQuery
	cancellable atomic.Int64 // of those, with a cancellable context
	ctagExecs   atomic.Int64 // runs of statements containing ctagUpdate
	objectPuts  atomic.Int64 // runs of statements containing objectInsert
}

const (
	// counted is the statement TestStatementsPreparedOncePerConnection counts.
	counted = "FROM device_passwords WHERE id"
	// collectionsQuery is a phone poll's collections listing.
	collectionsQuery = "FROM collections WHERE username"
	// ctagUpdate advances collections' ctags at commit.
	ctagUpdate = "UPDATE collections SET seq"
	// objectInsert stores objects (PutObject, PutObjects).
	objectInsert = "INSERT INTO objects"
)

var registerCounting = sync.OnceValue(func() *countingDriver {
	d := &countingDriver{}
	sql.Register("sqlite-counting", d)
	return d
})

// openCounting opens a SQLite store on the counting driver, closed when
// the test ends.
func openCounting(t *testing.T, o store.Options) (store.Store, *countingDriver) {
	t.Helper()
	d := registerCounting()
	t.Cleanup(store.SetSQLiteDriver("sqlite-counting"))
	s, err := store.Open(t.Context(), store.SQLite, filepath.Join(t.TempDir(), "duebridge.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, d
}

func (d *countingDriver) Open(name string) (driver.Conn, error) {
	c, err := d.Driver.Open(name)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, d: d}, nil
}

type countingConn struct {
	driver.Conn
	d *countingDriver
}

func (c *countingConn) Prepare(q string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), q)
}

func (c *countingConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	if strings.Contains(q, counted) {
		c.d.prepares.Add(1)
	}
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
	if err != nil {
		return st, err
	}
	switch {
	case strings.Contains(q, collectionsQuery):
		return countingStmt{Stmt: st, runs: &c.d.queries, cancellable: &c.d.cancellable}, nil
	case strings.Contains(q, ctagUpdate):
		return countingStmt{Stmt: st, runs: &c.d.ctagExecs}, nil
	case strings.Contains(q, objectInsert):
		return countingStmt{Stmt: st, runs: &c.d.objectPuts}, nil
	}
	return st, nil
}

func (c *countingConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	c.d.begins.Add(1)
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, o)
}

// countingStmt counts a statement's runs, and those given a cancellable
// context when cancellable is not nil.
type countingStmt struct {
	driver.Stmt
	runs, cancellable *atomic.Int64
}

func (s countingStmt) count(ctx context.Context) {
	s.runs.Add(1)
	if s.cancellable != nil && ctx.Done() != nil {
		s.cancellable.Add(1)
	}
}

func (s countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.count(ctx)
	return s.Stmt.(driver.StmtExecContext).ExecContext(ctx, args)
}

func (s countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.count(ctx)
	return s.Stmt.(driver.StmtQueryContext).QueryContext(ctx, args)
}
