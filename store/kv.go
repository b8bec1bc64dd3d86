package store

import (
	"database/sql"
	"errors"
	"fmt"
)

// KVTx keeps small named values (server secrets, watermarks).
type KVTx interface {
	// Get returns the value of key, ErrNotFound if unset.
	Get(key string) (string, error)
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
