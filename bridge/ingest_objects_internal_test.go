package bridge

import (
	"context"
	"sync"
	"testing"

	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// objectWrites records the object writes of a service's transactions: the
// number of objects of each PutObjects call, PutObject as a call of -1.
type objectWrites struct {
	store.Store
	mu    sync.Mutex
	calls []int
}

func (o *objectWrites) take() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls
	o.calls = nil
	return c
}

func (o *objectWrites) Update(ctx context.Context, fn func(store.Tx) error) error {
	return o.Store.Update(ctx, func(tx store.Tx) error { return fn(&objectWritesTx{Tx: tx, o: o}) })
}

type objectWritesTx struct {
	store.Tx
	o *objectWrites
}

func (t *objectWritesTx) note(n int) {
	t.o.mu.Lock()
	t.o.calls = append(t.o.calls, n)
	t.o.mu.Unlock()
}

func (t *objectWritesTx) PutObject(obj *store.Object) error {
	t.note(-1)
	return t.Tx.PutObject(obj)
}

func (t *objectWritesTx) PutObjects(objs []*store.Object) error {
	t.note(len(objs))
	return t.Tx.PutObjects(objs)
}

// TestTaskObjectsAreOneWrite: a task with a due date stores its VTODO and
// VEVENT for each assignee in one PutObjects (one INSERT,
// TestPutObjectsIsOneStatement), new or changed, alone or in a batch; a
// task without one writes its VTODO alone; the stored objects are the
// task's renders.
func TestTaskObjectsAreOneWrite(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	var ow *objectWrites
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		ow = &objectWrites{Store: st}
		return ow
	})
	in := groupTask("T-1", "alice")
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{in}); err != nil {
		t.Fatal(err)
	}
	if got := ow.take(); len(got) != 1 || got[0] != 2 {
		t.Errorf("a new task's objects were written as %v, want one PutObjects of 2", got)
	}
	batch := []TaskInput{groupTask("T-2", "bob"), groupTask("T-3", "carol")}
	batch[1].Due = store.When{} // no deadline: no event
	if _, err := s.Ingest(ctx, "tracker", batch); err != nil {
		t.Fatal(err)
	}
	if got := ow.take(); len(got) != 2 || got[0] != 2 || got[1] != 1 {
		t.Errorf("a batch of a task with a due date and one without: writes %v, want [2 1]", got)
	}
	// A change of a stored task (SEQUENCE moves in both objects).
	in.Description, in.Version = "Now with a description", 2
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{in}); err != nil {
		t.Fatal(err)
	}
	got := ow.take()
	err := s.st.View(ctx, func(tx store.Tx) error {
		task, err := tx.Task("tracker", "T-1")
		if err != nil {
			return err
		}
		todos, events := render.CollectionNames(task.Project)
		name := render.ObjectName("tracker", "T-1")
		rin := render.Input{Task: task, User: c.User("alice"), LeadTimes: c.LeadTimesFor(c.User("alice"), c.Source("tracker"))}
		for _, o := range []struct {
			coll   string
			render func(render.Input) ([]byte, error)
		}{{todos, render.Todo}, {events, render.Event}} {
			obj, err := tx.Object("alice", o.coll, name)
			if err != nil {
				return err
			}
			want, err := o.render(rin)
			if err != nil {
				return err
			}
			if string(obj.Data) != string(want) {
				t.Errorf("%s: stored\n%s\nwant the render\n%s", o.coll, obj.Data, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 2 {
		t.Errorf("a changed task: writes %v, want one PutObjects of 2", got)
	}
}
