package store_test

import (
	"errors"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// TestSavepointRollsBackAlone: a failed savepoint undoes its own writes
// and events; what the transaction did before and after it is committed
// with one revision.
func TestSavepointRollsBackAlone(t *testing.T) {
	var got []store.Event
	s, err := store.Open(t.Context(), store.SQLite, t.TempDir(), store.Options{OnCommit: func(evs []store.Event) {
		got = append(got, evs...)
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	refused := errors.New("refused")
	err = s.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.Seq(); err != nil {
			return err
		}
		for _, id := range []string{"A", "B", "C"} {
			err := tx.Savepoint(func() error {
				task := sampleTask(id)
				if err := tx.PutTask(&task); err != nil {
					return err
				}
				tx.Emit(store.Event{Kind: store.EventTask, Source: task.Source, TaskID: id})
				if id == "B" {
					return refused
				}
				return nil
			})
			if (id == "B") != errors.Is(err, refused) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].TaskID != "A" || got[1].TaskID != "C" || got[0].Seq != got[1].Seq {
		t.Fatalf("events %+v; want A and C with one revision", got)
	}
	err = s.View(t.Context(), func(tx store.Tx) error {
		if _, err := tx.Task("tracker", "B"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("B: %v, want not found", err)
		}
		_, err := tx.Task("tracker", "C")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
