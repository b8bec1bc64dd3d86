package store_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// Collections lists by sort order, then by name byte by byte, on every
// database (a PostgreSQL ORDER BY name would follow the database's
// collation, so the same lists could come in another order than SQLite's).
func TestCollectionsOrder(t *testing.T) {
	for _, b := range []struct {
		name string
		be   func(testing.TB) backend
	}{
		{store.SQLite, func(testing.TB) backend { return sqliteBackend() }},
		{store.Postgres, postgresBackend},
	} {
		t.Run(b.name, func(t *testing.T) {
			e := newEnv(t, b.be(t))
			// Names whose byte order differs from a natural-language
			// collation's (capitals first, '-' counted).
			orders := map[string]int{"b-x": 1, "ba": 1, "B": 1, "a": 1, "z": 0, "c": 2, "a-z": 2}
			e.update(func(tx store.Tx) error {
				for name, order := range orders {
					c := store.Collection{User: "alice", Name: name, Project: "P", Kind: kindOf(name), Order: order}
					if _, err := tx.EnsureCollection(&c); err != nil {
						return err
					}
				}
				c := store.Collection{User: "bob", Name: "a", Project: "P", Kind: store.KindEvents}
				_, err := tx.EnsureCollection(&c)
				return err
			})
			var list []store.Collection
			e.view(func(tx store.Tx) (err error) { list, err = tx.Collections("alice"); return err })
			var names []string
			for _, c := range list {
				if c.User != "alice" || c.Order != orders[c.Name] || c.Kind != kindOf(c.Name) || c.Project != "P" || c.Seq == 0 {
					t.Errorf("Collections: got %+v", c)
				}
				names = append(names, c.Name)
			}
			if want := []string{"z", "B", "a", "b-x", "ba", "a-z", "c"}; !slices.Equal(names, want) {
				t.Errorf("Collections order: got %q, want %q", names, want)
			}
		})
	}
}

// kindOf gives the test's lists both kinds, and one kind no release has
// written, which must come back as stored.
func kindOf(name string) string {
	switch name {
	case "z":
		return "journals"
	case "B", "ba":
		return store.KindEvents
	}
	return store.KindTodos
}

// Every phone poll lists the user's collections, and the garbage collector
// is a tenth of the server's CPU. The listing asked SQLite for the username
// it was given (the driver allocates every text value twice) and copied
// each row through the heap: 171 allocations for ten collections, now 116
// (modernc.org/sqlite v1.61.1); the bound leaves room for driver changes.
func TestCollectionsListingAllocations(t *testing.T) {
	e := newEnv(t, sqliteBackend())
	e.update(func(tx store.Tx) error {
		for i := range 10 {
			c := store.Collection{User: "anna", Name: fmt.Sprintf("project-%d-todos", i), Project: fmt.Sprintf("Project %d", i), Kind: store.KindTodos}
			if _, err := tx.EnsureCollection(&c); err != nil {
				return err
			}
		}
		return nil
	})
	list := func() {
		e.view(func(tx store.Tx) error {
			cols, err := tx.Collections("anna")
			if err == nil && len(cols) != 10 {
				err = fmt.Errorf("%d collections, want 10", len(cols))
			}
			return err
		})
	}
	list() // prepares the statement on the connection
	got := testing.AllocsPerRun(100, list)
	t.Logf("%.0f allocations per listing", got)
	if got > 120 {
		t.Errorf("listing 10 collections: %.0f allocations", got)
	}
}
