package store

import (
	"database/sql"
	"errors"
	"fmt"
	"unicode/utf8"
)

// KVTx keeps small named values (server secrets, watermarks).
type KVTx interface {
	// Get returns the value of key, ErrNotFound if unset.
	Get(key string) (string, error)
	// GetPrefix calls fn with every key starting with prefix and its value,
	// in one statement (a start reads a million users' keys at once).
	GetPrefix(prefix string, fn func(key, value string) error) error
	Set(key, value string) error
}

func (tx *sqlTx) Get(key string) (string, error) {
	var v string
	err := tx.queryRow(`SELECT value FROM kv WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", ErrNotFound
	}
	return v, err
}

func (tx *sqlTx) Set(key, value string) error {
	_, err := tx.exec(`INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`, key, value)
	if err != nil {
		return fmt.Errorf("set %s: %w", key, err)
	}
	return nil
}

func (tx *sqlTx) GetPrefix(prefix string, fn func(key, value string) error) error {
	// substr, not LIKE or a range: LIKE treats _ as a wildcard (and is
	// case-insensitive on SQLite), and a range on PostgreSQL follows the
	// column's collation, not bytes. The prefix is matched by characters on
	// both, and kv is small beside its prefixed keys, so the scan costs
	// little more than the rows it returns.
	rows, err := tx.query(`SELECT key, value FROM kv WHERE substr(key, 1, ?) = ?`, utf8.RuneCountInString(prefix), prefix)
	if err != nil {
		return fmt.Errorf("read keys %s*: %w", prefix, err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return fmt.Errorf("read keys %s*: %w", prefix, err)
		}
		if err := fn(k, v); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read keys %s*: %w", prefix, err)
	}
	return nil
}
