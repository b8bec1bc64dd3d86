package store_test

import (
	"bytes"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// testPutObjects: PutObjects stores a task's VTODO and VEVENT as PutObject
// would, each with the revision and both collections' ctags advanced; two
// writes of the same object keep the last (PostgreSQL cannot upsert one row
// twice in a statement), and three objects are all stored.
func testPutObjects(t *testing.T, b backend) {
	e := newEnv(t, b)
	e.update(func(tx store.Tx) error {
		for _, c := range []store.Collection{{User: "alice", Name: "todos", Kind: store.KindTodos}, {User: "alice", Name: "events", Kind: store.KindEvents}} {
			if _, err := tx.EnsureCollection(&c); err != nil {
				return err
			}
		}
		return nil
	})
	todo, event := sampleObject("alice", "todos", "T-1"), sampleObject("alice", "events", "T-1")
	event.UID = "uid-T-1-event"
	var seq int64
	e.update(func(tx store.Tx) (err error) {
		seq, err = tx.Seq()
		if err != nil {
			return err
		}
		return tx.PutObjects([]*store.Object{&todo, &event})
	})
	for _, want := range []store.Object{todo, event} {
		got := e.object(want.User, want.Collection, want.Name)
		if got.UID != want.UID || got.ETag != want.ETag || !bytes.Equal(got.Data, want.Data) || got.Seq != seq || got.Deleted {
			t.Errorf("%s/%s: got %+v, want %+v at revision %d", want.Collection, want.Name, got, want, seq)
		}
		if want.Seq != seq || !want.Modified.Equal(t0) {
			t.Errorf("%s/%s: Seq %d, Modified %v after PutObjects; want %d, %v", want.Collection, want.Name, want.Seq, want.Modified, seq, t0)
		}
		if c := e.collection("alice", want.Collection); c.Seq != seq {
			t.Errorf("collection %s: ctag at %d, want %d", want.Collection, c.Seq, seq)
		}
	}

	first, second := sampleObject("alice", "todos", "T-2"), sampleObject("alice", "todos", "T-2")
	second.ETag, second.Data = `"second"`, []byte("BEGIN:VCALENDAR\r\nX-SECOND:1\r\nEND:VCALENDAR\r\n")
	third := sampleObject("alice", "events", "T-3")
	e.update(func(tx store.Tx) error { return tx.PutObjects([]*store.Object{&first, &second}) })
	if got := e.object("alice", "todos", "T-2.ics"); got.ETag != second.ETag {
		t.Errorf("the same object twice: ETag %s, want the second's %s", got.ETag, second.ETag)
	}
	four := sampleObject("alice", "todos", "T-4")
	e.update(func(tx store.Tx) error { return tx.PutObjects([]*store.Object{&first, &third, &four}) })
	for _, o := range []store.Object{first, third, four} {
		if got := e.object(o.User, o.Collection, o.Name); got.ETag != o.ETag {
			t.Errorf("three objects: %s/%s has ETag %s, want %s", o.Collection, o.Name, got.ETag, o.ETag)
		}
	}
}

// TestPutObjectsIsOneStatement: a task's VTODO and VEVENT go to the
// database as one INSERT (two before: one per object).
func TestPutObjectsIsOneStatement(t *testing.T) {
	s, d := openCounting(t, store.Options{})
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		for _, c := range []store.Collection{{User: "alice", Name: "todos", Kind: store.KindTodos}, {User: "alice", Name: "events", Kind: store.KindEvents}} {
			if _, err := tx.EnsureCollection(&c); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := d.objectPuts.Load()
	todo, event := sampleObject("alice", "todos", "T-1"), sampleObject("alice", "events", "T-1")
	if err := s.Update(t.Context(), func(tx store.Tx) error { return tx.PutObjects([]*store.Object{&todo, &event}) }); err != nil {
		t.Fatal(err)
	}
	if n := d.objectPuts.Load() - before; n != 1 {
		t.Errorf("a VTODO and a VEVENT took %d INSERTs, want 1", n)
	}
}

func (e *env) object(user, coll, name string) *store.Object {
	e.t.Helper()
	var o *store.Object
	e.view(func(tx store.Tx) (err error) { o, err = tx.Object(user, coll, name); return err })
	return o
}
