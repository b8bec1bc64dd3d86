package store

import (
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// SetCheckpointDelay sets the background checkpoint's delay for stores
// opened afterwards; the returned function restores it.
func SetCheckpointDelay(d time.Duration) (restore func()) {
	old := checkpointDelay
	checkpointDelay = d
	return func() { checkpointDelay = old }
}

// SetSQLiteDriver makes stores opened afterwards use the named driver; the
// returned function restores it.
func SetSQLiteDriver(name string) (restore func()) {
	old := sqliteDriver
	sqliteDriver = name
	return func() { sqliteDriver = old }
}

// WaitPrepared waits for the statements an SQLite store is preparing in
// the background for later transactions.
func WaitPrepared(s Store) { s.(*sqlStore).prepared.wg.Wait() }

// SetListenPing sets how long a PostgreSQL listener waits quietly before it
// pings its connection, and how long the ping may take; the returned
// function restores them.
func SetListenPing(every, timeout time.Duration) (restore func()) {
	oldEvery, oldTimeout := listenPing, listenPingTimeout
	listenPing, listenPingTimeout = every, timeout
	return func() { listenPing, listenPingTimeout = oldEvery, oldTimeout }
}

// CreateSQLiteSchemaAt creates in an empty SQLite database the schema as
// it was at version, running the migrations up to it as migrate would.
func CreateSQLiteSchemaAt(db *sql.DB, version int) error {
	stmts := []string{`CREATE TABLE schema_version (version INTEGER NOT NULL)`,
		fmt.Sprintf(`INSERT INTO schema_version (version) VALUES (%d)`, version)}
	for _, m := range migrations {
		if m.version > version {
			break
		}
		for _, stmt := range splitSQL(ddl(SQLite, m.sql)) {
			stmts = append(stmts, strings.TrimSpace(strings.TrimPrefix(stmt, sqliteOnly)))
		}
	}
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	return nil
}

// RecordDeliveries records source's keys as seen at at, whatever was
// recorded before: the tests' way to set the record up (the server claims
// keys with ClaimDeliveries).
func (tx *sqlTx) RecordDeliveries(source string, keys []string, at int64) error {
	for _, k := range keys {
		_, err := tx.exec(`INSERT INTO deliveries (source, key, seen_at) VALUES (?, ?, ?)
ON CONFLICT (source, key) DO UPDATE SET seen_at = excluded.seen_at`, source, k, at)
		if err != nil {
			return fmt.Errorf("record delivery: %w", err)
		}
	}
	return nil
}

// DeliveryRecorder is the Tx of the tests' RecordDeliveries.
type DeliveryRecorder interface {
	RecordDeliveries(source string, keys []string, at int64) error
}
