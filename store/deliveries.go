package store

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
)

// Migration 71 (range 70-79: state shared between replicas). deliveries
// remembers the delivery and replay keys of applied webhook requests per
// source, so a redelivery through any replica is recognised; seen_at is
// Unix nanoseconds.
var _ = func() bool {
	migrations = append(migrations, migration{71, `
CREATE TABLE deliveries (
	source  TEXT NOT NULL,
	key     TEXT NOT NULL,
	seen_at BIGINT NOT NULL,
	PRIMARY KEY (source, key)
);
CREATE INDEX deliveries_seen_at ON deliveries (seen_at);
`})
	return true
}()

// DeliveryTx reads and writes the record of applied deliveries. Every Tx of
// the SQL stores implements it.
type DeliveryTx interface {
	// DeliveriesSeen returns those of source's keys recorded at or after
	// since (Unix nanoseconds).
	DeliveriesSeen(source string, keys []string, since int64) (map[string]bool, error)
	// ClaimDeliveries checks and records source's keys, one statement per
	// key: it records each key not
	// recorded at or after since as seen at at, and reports false when
	// some key was (the caller rolls the transaction back: it is a replay).
	ClaimDeliveries(source string, keys []string, since, at int64) (bool, error)
	// PruneDeliveries drops up to limit records seen before before.
	PruneDeliveries(before int64, limit int) error
}

func (tx *sqlTx) DeliveriesSeen(source string, keys []string, since int64) (map[string]bool, error) {
	out := map[string]bool{}
	for _, k := range keys {
		var one int
		err := tx.queryRow(`SELECT 1 FROM deliveries WHERE source = ? AND key = ? AND seen_at >= ?`, source, k, since).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read delivery record: %w", err)
		}
		out[k] = true
	}
	return out, nil
}

// ClaimDeliveries checks and records each key in one upsert: a key seen
// within the window conflicts and is left alone (the DO UPDATE's WHERE),
// so the statement changes no row; a new or expired one is written. Every
// signed webhook runs it, in the single writer's turn, where it replaces a
// SELECT and an INSERT.
func (tx *sqlTx) ClaimDeliveries(source string, keys []string, since, at int64) (bool, error) {
	for i, k := range keys {
		if slices.Contains(keys[:i], k) {
			continue // claimed above: not a replay of itself
		}
		res, err := tx.exec(`INSERT INTO deliveries (source, key, seen_at) VALUES (?, ?, ?)
ON CONFLICT (source, key) DO UPDATE SET seen_at = excluded.seen_at WHERE deliveries.seen_at < ?`, source, k, at, since)
		if err != nil {
			return false, fmt.Errorf("record delivery: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return false, fmt.Errorf("record delivery: %w", err)
		}
		if n == 0 {
			return false, nil
		}
	}
	return true, nil
}

func (tx *sqlTx) PruneDeliveries(before int64, limit int) error {
	// The subquery bounds the work of one call on both SQLite and
	// PostgreSQL (neither accepts LIMIT on DELETE portably).
	_, err := tx.exec(`DELETE FROM deliveries WHERE (source, key) IN
(SELECT source, key FROM deliveries WHERE seen_at < ? ORDER BY seen_at LIMIT ?)`, before, limit)
	if err != nil {
		return fmt.Errorf("prune delivery records: %w", err)
	}
	return nil
}
