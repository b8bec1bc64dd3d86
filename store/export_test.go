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

// SetListenPing sets how long a PostgreSQL listener waits quietly before it
// pings its connection, and how long the ping may take; the returned
// function restores them.
func SetListenPing(every, timeout time.Duration) (restore func()) {
	oldEvery, oldTimeout := listenPing, listenPingTimeout
	listenPing, listenPingTimeout = every, timeout
	return func() { listenPing, listenPingTimeout = oldEvery, oldTimeout }
}
