package store_test

import (
	"reflect"
	"sort"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// testCollectionChanges: CollectionChanges in a Read (one statement)
// answers exactly what Collection and Changes answer in a View, for every
// revision, tombstones and an unchanged list included; an unknown
// collection is ErrNotFound.
func testCollectionChanges(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		for _, c := range []string{"todos", "other"} {
			if _, err := tx.EnsureCollection(&store.Collection{User: "alice", Name: c, DisplayName: "Todos", Color: "#ff0000", Kind: store.KindTodos}); err != nil {
				return err
			}
		}
		return nil
	})
	var seqs []int64
	for _, names := range [][]string{{"c", "a", "b"}, {"b"}, {"z"}, {"y", "w", "x"}} {
		e.update(func(tx store.Tx) error {
			for _, n := range names {
				coll := "todos"
				if n == "z" {
					coll = "other"
				}
				o := sampleObject("alice", coll, n)
				if err := tx.PutObject(&o); err != nil {
					return err
				}
			}
			return nil
		})
		e.update(func(tx store.Tx) error {
			s, err := tx.Seq()
			seqs = append(seqs, s)
			return err
		})
	}
	e.update(func(tx store.Tx) error { return tx.DeleteObject("alice", "todos", "a.ics") })
	top := e.collection("alice", "todos").Seq
	for _, since := range append(seqs, 0, top, top+5) {
		var wantC *store.Collection
		var want []store.Object
		e.view(func(tx store.Tx) (err error) {
			if wantC, err = tx.Collection("alice", "todos"); err != nil {
				return err
			}
			want, err = tx.Changes("alice", "todos", since)
			return err
		})
		var gotC *store.Collection
		var got []store.Object
		if err := e.s.Read(t.Context(), func(tx store.Tx) (err error) {
			gotC, got, err = tx.CollectionChanges("alice", "todos", since)
			return err
		}); err != nil {
			t.Fatalf("CollectionChanges(since %d): %v", since, err)
		}
		if !reflect.DeepEqual(gotC, wantC) || !reflect.DeepEqual(got, want) {
			t.Errorf("CollectionChanges(since %d):\n got %+v %+v\nwant %+v %+v", since, gotC, got, wantC, want)
		}
	}
	err := e.s.Read(t.Context(), func(tx store.Tx) error {
		_, _, err := tx.CollectionChanges("bob", "todos", 0)
		return err
	})
	wantNotFound(t, "CollectionChanges of an unknown collection", err)

	// CollectionObjectsByName: as Collection and ObjectsByName (data
	// included, removed and unknown names left out).
	for _, names := range [][]string{{"b.ics"}, {"a.ics", "c.ics", "nope.ics", "w.ics"}, {"nope.ics"}, {"z.ics"}} {
		var wantC *store.Collection
		var want []store.Object
		e.view(func(tx store.Tx) (err error) {
			if wantC, err = tx.Collection("alice", "todos"); err != nil {
				return err
			}
			want, err = tx.ObjectsByName("alice", "todos", names)
			return err
		})
		var gotC *store.Collection
		var got []store.Object
		if err := e.s.Read(t.Context(), func(tx store.Tx) (err error) {
			gotC, got, err = tx.CollectionObjectsByName("alice", "todos", names)
			return err
		}); err != nil {
			t.Fatalf("CollectionObjectsByName(%v): %v", names, err)
		}
		sort.Slice(got, func(i, j int) bool { return got[i].Name < got[j].Name })
		sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
		if !reflect.DeepEqual(gotC, wantC) || !reflect.DeepEqual(got, want) {
			t.Errorf("CollectionObjectsByName(%v):\n got %+v %+v\nwant %+v %+v", names, gotC, got, wantC, want)
		}
	}
	err = e.s.Read(t.Context(), func(tx store.Tx) error {
		_, _, err := tx.CollectionObjectsByName("bob", "todos", []string{"a.ics"})
		return err
	})
	wantNotFound(t, "CollectionObjectsByName of an unknown collection", err)
}
