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
		{`SELECT name FROM objects WHERE username = 'u' AND uid IN ('a', 'b') AND source = 's' AND task_id = 't' AND deleted = 0`, "objects_uid (username=? AND uid=?)"},
		{`SELECT username, collection, name, seq FROM objects WHERE deleted = 1 AND modified < 5 ORDER BY modified LIMIT 10`, "objects_tombstones"},
	} {
		plan := queryPlan(t, db, c.q)
		live := !strings.Contains(c.q, "deleted = 1")
		if !strings.Contains(plan, c.want) || (live && strings.Contains(plan, "objects_tombstones")) || strings.HasPrefix(plan, "SCAN") {
			t.Errorf("query %q: plan %q, want a search using %s", c.q, plan, c.want)
		}
	}
}

// TestIngestWritesNoUnreadIndex: each index is a b-tree a new-task webhook
// inserts into, a page of its commit. Migration 73 dropped the two whose
// queries search another index now (objects_task: ObjectsForTaskUser uses
// objects_uid; alerts_user_due: the digest reads a user's schedules by the
// primary key), and those queries still search, not scan.
func TestIngestWritesNoUnreadIndex(t *testing.T) {
	b := sqliteBackend()
	src := b.newSource(t)
	openEnv(t, b, src) // creates the schema
	db := b.raw(t, src)
	rows, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('objects', 'alerts') AND sql IS NOT NULL ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	rows.Close()
	want := []string{"alerts_fire", "objects_own", "objects_sync", "objects_tombstones", "objects_uid"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("indexes of objects and alerts: %v, want %v", got, want)
	}
	digest := `SELECT t.id FROM alerts a JOIN tasks t ON t.source = a.source AND t.id = a.task_id
		WHERE a.username = 'u' AND a.due_at < 5 ORDER BY a.due_at, a.source, a.task_id LIMIT 10`
	if plan := queryPlan(t, db, digest); !strings.Contains(plan, "SEARCH a USING PRIMARY KEY (username=?)") {
		t.Errorf("digest query: plan %q, want a search of the user's schedules by primary key", plan)
	}
}
