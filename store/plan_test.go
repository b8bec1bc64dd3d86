package store_test

import (
	"database/sql"
	"strings"
	"testing"
)

// queryPlan is SQLite's EXPLAIN QUERY PLAN of q, its steps joined by "; ".
func queryPlan(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	rows, err := db.Query(`EXPLAIN QUERY PLAN ` + q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "; ")
}

// The queries of live objects by user, UID or task run on every poll,
// phone write and ingest. With the tombstone index leading with "deleted"
// (migration 60) SQLite searched it for "deleted = 0" and walked every live
// object of every user: at 5,000 users the quota count alone was 96 % of
// the server's CPU. Each must search an index by its own key; only the
// retention pass may use the tombstone index.
func TestLiveObjectQueriesUseTheirIndexes(t *testing.T) {
	b := sqliteBackend()
	src := b.newSource(t)
	openEnv(t, b, src) // creates the schema
	db := b.raw(t, src)
	for _, c := range []struct{ q, want string }{
		{`SELECT COUNT(*), COALESCE(SUM(LENGTH(data)), 0) FROM objects WHERE username = 'u' AND source = '' AND deleted = 0`, "objects_own"},
		{`SELECT name FROM objects WHERE username = 'u' AND deleted = 0`, "(username=?"},
		{`SELECT name FROM objects WHERE username = 'u' AND uid = 'x' AND deleted = 0 LIMIT 1`, "(username=? AND uid=?)"},
		{`SELECT name FROM objects WHERE source = 's' AND task_id = 't' AND deleted = 0`, "(source=? AND task_id=?)"},
		{`SELECT name FROM objects WHERE source = 's' AND task_id = 't' AND username = 'u' AND deleted = 0`, "task_id=?"},
		{`SELECT username, collection, name, seq FROM objects WHERE deleted = 1 AND modified < 5 ORDER BY modified LIMIT 10`, "objects_tombstones"},
	} {
		plan := queryPlan(t, db, c.q)
		live := !strings.Contains(c.q, "deleted = 1")
		if !strings.Contains(plan, c.want) || (live && strings.Contains(plan, "objects_tombstones")) || strings.HasPrefix(plan, "SCAN") {
			t.Errorf("query %q: plan %q, want a search using %s", c.q, plan, c.want)
		}
	}
}
