package store

import "time"

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
