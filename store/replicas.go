package store

import (
	"database/sql"
	"errors"
	"fmt"
)

// This file holds what several processes on one PostgreSQL database share
// beyond the product's data: the readiness of the event listener and the
// login-protection state (lock-outs), so a promise made by one replica holds
// whichever replica answers next.

// Migration 70 (range 70-79: state shared between replicas). login_guard
// keeps one login-protection record per key: "u:<name>" for a user name,
// "c:<address>" for a client address. state is the record's JSON (the
// failures in the window and the lock), expires when it can be dropped.
// login_trusted keeps the (user, address) pairs that logged in, until expires.
var _ = func() bool {
	migrations = append(migrations, migration{70, `
CREATE TABLE login_guard (
	key     TEXT PRIMARY KEY,
	state   TEXT NOT NULL,
	expires BIGINT NOT NULL
);
CREATE INDEX login_guard_expires ON login_guard (expires);
CREATE TABLE login_trusted (
	username TEXT NOT NULL,
	client   TEXT NOT NULL,
	expires  BIGINT NOT NULL,
	PRIMARY KEY (username, client)
);
`})
	return true
}()

// EventsReady reports why s would miss other processes' commits: nil on
// SQLite (one process) or while the PostgreSQL LISTEN connection is up.
func EventsReady(s Store) error {
	ss, ok := s.(*sqlStore)
	if !ok || ss.dialect != Postgres || ss.stopListen == nil || ss.listening.Load() {
		return nil
	}
	return errors.New("the PostgreSQL event listener (LISTEN) is not connected")
}

// SharesLogins reports whether s is shared by several processes, so login
// lock-outs belong in it (PostgreSQL) rather than in process memory.
func SharesLogins(s Store) bool {
	ss, ok := s.(*sqlStore)
	return ok && ss.dialect == Postgres
}

// LoginTx reads and writes the shared login-protection records. Every Tx of
// a store for which SharesLogins is true implements it.
type LoginTx interface {
	// LoginRecords returns the states of keys that have not expired at now
	// (Unix nanoseconds), locking them until the transaction ends.
	LoginRecords(keys []string, now int64) (map[string]string, error)
	// SetLoginRecord stores key's state until expires; an empty state
	// deletes the record.
	SetLoginRecord(key, state string, expires int64) error
	// LoginTrusted reports whether user logged in from client with the
	// pair still valid at now.
	LoginTrusted(user, client string, now int64) (bool, error)
	// TrustLogin records that user logged in from client, valid until.
	TrustLogin(user, client string, until int64) error
	// PruneLogins drops records and pairs expired at now.
	PruneLogins(now int64) error
}

func (tx *sqlTx) LoginRecords(keys []string, now int64) (map[string]string, error) {
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		q := `SELECT state FROM login_guard WHERE key = ? AND expires > ?`
		if !tx.readOnly && tx.dialect == Postgres {
			q += ` FOR UPDATE`
		}
		var state string
		err := tx.queryRow(q, k, now).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read login record: %w", err)
		}
		out[k] = state
	}
	return out, nil
}

func (tx *sqlTx) SetLoginRecord(key, state string, expires int64) error {
	var err error
	if state == "" {
		_, err = tx.exec(`DELETE FROM login_guard WHERE key = ?`, key)
	} else {
		_, err = tx.exec(`INSERT INTO login_guard (key, state, expires) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET state = excluded.state, expires = excluded.expires`, key, state, expires)
	}
	if err != nil {
		return fmt.Errorf("write login record: %w", err)
	}
	return nil
}

func (tx *sqlTx) LoginTrusted(user, client string, now int64) (bool, error) {
	var one int
	err := tx.queryRow(`SELECT 1 FROM login_trusted WHERE username = ? AND client = ? AND expires > ?`, user, client, now).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read trusted login: %w", err)
	}
	return true, nil
}

func (tx *sqlTx) TrustLogin(user, client string, until int64) error {
	_, err := tx.exec(`INSERT INTO login_trusted (username, client, expires) VALUES (?, ?, ?)
ON CONFLICT (username, client) DO UPDATE SET expires = excluded.expires`, user, client, until)
	if err != nil {
		return fmt.Errorf("write trusted login: %w", err)
	}
	return nil
}

func (tx *sqlTx) PruneLogins(now int64) error {
	if _, err := tx.exec(`DELETE FROM login_guard WHERE expires <= ?`, now); err != nil {
		return fmt.Errorf("prune login records: %w", err)
	}
	if _, err := tx.exec(`DELETE FROM login_trusted WHERE expires <= ?`, now); err != nil {
		return fmt.Errorf("prune trusted logins: %w", err)
	}
	return nil
}
