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

// countingDriver is SQLite's driver counting the statements prepared.
type countingDriver struct {
	sqlite.Driver
	prepares atomic.Int64 // of statements containing counted
}

// counted is the statement TestStatementsPreparedOncePerConnection counts.
const counted = "FROM device_passwords WHERE id"

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
	return c.Conn.(driver.ConnPrepareContext).PrepareContext(ctx, q)
}

func (c *countingConn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(ctx, o)
}

var registerCounting = sync.OnceValue(func() *countingDriver {
	d := &countingDriver{}
	sql.Register("sqlite-counting", d)
	return d
})

// TestStatementsPreparedOncePerConnection: a short transaction spent as
// long preparing its SQL as running it, so statements are kept prepared on
// the pool's connections across transactions.
func TestStatementsPreparedOncePerConnection(t *testing.T) {
	d := registerCounting()
	defer store.SetSQLiteDriver("sqlite-counting")()
	s, err := store.Open(t.Context(), store.SQLite, filepath.Join(t.TempDir(), "duebridge.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	view := func() {
		t.Helper()
		if err := s.View(t.Context(), func(tx store.Tx) error {
			_, err := tx.DevicePassword("no-such-device")
			if err == store.ErrNotFound {
				err = nil
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	view() // first use: prepared for this transaction, and for later ones
	store.WaitPrepared(s)
	before := d.prepares.Load()
	const views = 50
	for range views {
		view()
	}
	// At most one preparation per pool connection; before, one per View.
	if n := d.prepares.Load() - before; n > 8 {
		t.Errorf("%d Views prepared their statement %d times; want it kept prepared per connection", views, n)
	}
}

// TestPreparingWithEveryConnectionBusy: preparing a new statement for
// later transactions must not wait for a free connection while holding one
// (with all of them held, none comes).
func TestPreparingWithEveryConnectionBusy(t *testing.T) {
	s, err := store.Open(t.Context(), store.SQLite, filepath.Join(t.TempDir(), "duebridge.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const readers = 8 // the SQLite pool's size
	var started, release sync.WaitGroup
	started.Add(readers)
	release.Add(1)
	errs := make(chan error, readers)
	for range readers {
		go func() {
			errs <- s.View(t.Context(), func(tx store.Tx) error {
				started.Done()
				release.Wait() // every connection is now held
				_, err := tx.DevicePasswords("anna")
				return err
			})
		}()
	}
	started.Wait()
	release.Done()
	for range readers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
