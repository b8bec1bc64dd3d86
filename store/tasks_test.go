package store_test

// The pages a batched re-render walks (TasksAfter, TaskObjectsAfter), on
// SQLite always and on PostgreSQL when TEST_DUEBRIDGE_POSTGRES is set;
// helpers from store_test.go.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/store"
)

func TestTaskPagesSQLite(t *testing.T) {
	t.Parallel()
	testTaskPages(t, sqliteBackend())
}

func TestTaskPagesPostgres(t *testing.T) {
	t.Parallel()
	testTaskPages(t, postgresBackend(t))
}

func testTaskPages(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		for i := range 25 {
			tk := &store.Task{Source: "tracker", ID: fmt.Sprintf("T-%02d", i), Title: "x", Status: "open", Priority: "normal",
				Deleted: i%10 == 3} // T-03, T-13, T-23: tombstones, left out
			if err := tx.PutTask(tk); err != nil {
				return err
			}
			if err := tx.PutTask(&store.Task{Source: "other", ID: tk.ID, Title: "y", Status: "open", Priority: "normal"}); err != nil {
				return err
			}
		}
		for _, c := range []string{"a", "b"} {
			if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: c, Kind: store.KindTodos}); err != nil {
				return err
			}
		}
		for i := range 12 {
			name := fmt.Sprintf("tracker-T-%02d.ics", i)
			o := &store.Object{User: "alice", Collection: "a", Name: name, UID: "u" + name, Source: "tracker", TaskID: fmt.Sprintf("T-%02d", i), ETag: `"e"`, Data: []byte("x")}
			if err := tx.PutObject(o); err != nil {
				return err
			}
			// Another list, another user: not in alice's list a.
			o2 := *o
			o2.Collection = "b"
			if err := tx.PutObject(&o2); err != nil {
				return err
			}
			o3 := *o
			o3.User = "bob"
			if err := tx.PutObject(&o3); err != nil {
				return err
			}
		}
		// A reminder of alice's own (no task) and a tombstone: left out.
		if err := tx.PutObject(&store.Object{User: "alice", Collection: "a", Name: "own.ics", UID: "own", ETag: `"e"`, Data: []byte("x")}); err != nil {
			return err
		}
		return tx.DeleteObject("alice", "a", "tracker-T-05.ics")
	})

	// Pages of 4 tasks, each from where the last ended, cover the live
	// tasks of the one source once, in id order.
	var got []string
	after, pages := "", 0
	for {
		var page []store.Task
		e.view(func(tx store.Tx) (err error) { page, err = tx.TasksAfter("tracker", after, 4); return err })
		if len(page) > 4 {
			t.Fatalf("page of %d tasks, asked for 4", len(page))
		}
		for _, tk := range page {
			if tk.Source != "tracker" || tk.Deleted || tk.Title != "x" {
				t.Errorf("page holds %+v", tk)
			}
			got = append(got, tk.ID)
		}
		pages++
		if len(page) < 4 {
			break
		}
		after = page[len(page)-1].ID
	}
	var want []string
	for i := range 25 {
		if i%10 != 3 {
			want = append(want, fmt.Sprintf("T-%02d", i))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("TasksAfter pages: %v, want %v", got, want)
	}
	if pages != len(want)/4+1 {
		t.Errorf("%d pages, want %d", pages, len(want)/4+1)
	}

	got, after = nil, ""
	for {
		var page []store.Object
		e.view(func(tx store.Tx) (err error) { page, err = tx.TaskObjectsAfter("alice", "a", after, 5); return err })
		for _, o := range page {
			if o.User != "alice" || o.Collection != "a" || o.Data != nil || o.Deleted {
				t.Errorf("page holds %+v", o)
			}
			got = append(got, o.TaskID)
		}
		if len(page) < 5 {
			break
		}
		after = page[len(page)-1].Name
	}
	want = nil
	for i := range 12 {
		if i != 5 {
			want = append(want, fmt.Sprintf("T-%02d", i))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("TaskObjectsAfter pages: %v, want %v", got, want)
	}
}

// Each page is a search of the primary key in its order: no scan of the
// table and no sort, so a page costs the same at the end of a million
// tasks as at the start.
func TestTaskPagesUseThePrimaryKey(t *testing.T) {
	b := sqliteBackend()
	src := b.newSource(t)
	openEnv(t, b, src) // creates the schema
	db := b.raw(t, src)
	for _, c := range []struct{ q, want string }{
		{`SELECT id FROM tasks WHERE source = 's' AND id > 'x' AND deleted = 0 ORDER BY id LIMIT 500`, "(source=? AND id>?)"},
		{`SELECT name FROM objects WHERE username = 'u' AND collection = 'c' AND name > 'x' AND source <> '' AND deleted = 0 ORDER BY name LIMIT 500`,
			"(username=? AND collection=? AND name>?)"},
	} {
		plan := queryPlan(t, db, c.q)
		if !strings.Contains(plan, c.want) || strings.Contains(plan, "TEMP B-TREE") || strings.HasPrefix(plan, "SCAN") {
			t.Errorf("query %q: plan %q, want a search %s without a sort", c.q, plan, c.want)
		}
	}
}
