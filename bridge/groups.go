package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/duebridge/duebridge/store"
)

// When is a start or due time: an instant, or a day when AllDay. Protocol
// packages build TaskInput with it without importing store.
type When = store.When

// Delivery is one delivery from a task system for IngestDelivery: its task
// records and, for a task system that announces a change once for a whole
// group of tasks (GitHub: a milestone's due date, in one "milestone"
// event), which group each task is in now. Both are stored in one
// transaction, so the index never disagrees with the tasks it lists.
type Delivery struct {
	Tasks []TaskInput
	// Index is where the source's group index lives; zero when the source
	// keeps none (Members must then be empty).
	Index GroupIndex
	// Members moves tasks between groups of Index. A move applies only when
	// the record that says so is the stored state: a late record that
	// ingest ignored must not move the index back either.
	Members []Membership
	// Keys are the delivery's replay keys (the tracker's delivery id, a
	// signature): when any was recorded for the source within
	// ReplayWindow, nothing is applied and IngestDelivery returns
	// ErrReplayed. Otherwise they are recorded in the same transaction as
	// the tasks, so every replica sharing the store knows them.
	Keys []string
	// TaskKeys, when set, has one key per task ("" for none): a task whose
	// key was recorded within the window is left out and counted ignored
	// (a batch of events some of which were delivered before).
	TaskKeys []string
}

// ReplayWindow is how long delivery keys are remembered. GitHub lets an
// admin redeliver for three days, Jira and GitLab retry within hours,
// Linear's timestamp check closes its window after a minute; three days
// covers all of them.
const ReplayWindow = 72 * time.Hour

// pruneDeliveries bounds how many expired delivery records one delivery
// deletes, so the cleanup never makes one request slow.
const pruneDeliveries = 100

// ErrReplayed is IngestDelivery's answer to a delivery already applied
// within ReplayWindow: nothing was stored.
var ErrReplayed = errors.New("delivery already handled")

// GroupIndex names a source's group index by the KV key prefixes of its
// two halves: Groups+group → JSON array of task ids, and Tasks+task id →
// the task's group ("" for none). The caller owns the names, so an index
// keeps the keys it was first written under.
type GroupIndex struct {
	Groups, Tasks string
}

// Membership puts a task in a group ("" takes it out of any) as of the
// record with UpdatedAt At.
type Membership struct {
	Task  string
	Group string
	At    time.Time
}

// IngestDelivery applies a delivery's task records as Ingest does and
// brings its group index up to date, in one transaction that also checks
// and records the delivery's replay keys.
func (s *Service) IngestDelivery(ctx context.Context, source string, d Delivery) (Result, error) {
	if len(d.Members) > 0 && (d.Index.Groups == "" || d.Index.Tasks == "") {
		return Result{}, fmt.Errorf("store tasks from %s: group memberships without a group index", source)
	}
	if d.TaskKeys != nil && len(d.TaskKeys) != len(d.Tasks) {
		return Result{}, fmt.Errorf("store tasks from %s: %d task keys for %d tasks", source, len(d.TaskKeys), len(d.Tasks))
	}
	now := s.Now()
	since := now.Add(-ReplayWindow).UnixNano()
	tasks, keys, origin, dropped := d.Tasks, nonEmpty(d.Keys), []int(nil), 0
	if d.TaskKeys != nil {
		// Leave out the tasks already delivered; the transaction below
		// checks the rest again, so a concurrent copy is still caught.
		var seen map[string]bool
		err := s.st.View(ctx, func(tx store.Tx) error {
			var err error
			seen, err = deliveryTx(tx).DeliveriesSeen(source, nonEmpty(d.TaskKeys), since)
			return err
		})
		if err != nil {
			return Result{}, fmt.Errorf("store tasks from %s: %w", source, err)
		}
		tasks = nil
		for i, k := range d.TaskKeys {
			if k != "" && seen[k] {
				dropped++
				continue
			}
			tasks = append(tasks, d.Tasks[i])
			origin = append(origin, i)
			if k != "" {
				keys = append(keys, k)
			}
		}
		if len(tasks) == 0 && len(d.Tasks) > 0 {
			return Result{Ignored: dropped}, ErrReplayed
		}
	}
	res, err := s.ingest(ctx, source, tasks, func(tx store.Tx) error {
		dt := deliveryTx(tx)
		if len(keys) > 0 {
			fresh, err := dt.ClaimDeliveries(source, keys, since, now.UnixNano())
			if err != nil {
				return err
			}
			if !fresh {
				return ErrReplayed // rolls back what was applied
			}
			if err := dt.PruneDeliveries(since, pruneDeliveries); err != nil {
				return err
			}
		}
		for _, m := range d.Members {
			if err := moveMember(tx, source, d.Index, m); err != nil {
				return fmt.Errorf("group index of %s: %w", source, err)
			}
		}
		return nil
	})
	if errors.Is(err, ErrReplayed) {
		return Result{Ignored: len(d.Tasks)}, ErrReplayed
	}
	var fe *FieldError
	if origin != nil && errors.As(err, &fe) && fe.Index >= 0 && fe.Index < len(origin) {
		fe.Index = origin[fe.Index]
	}
	res.Ignored += dropped
	return res, err
}

// deliveryTx is the store's record of deliveries; every store implements it.
func deliveryTx(tx store.Tx) store.DeliveryTx { return tx.(store.DeliveryTx) }

func nonEmpty(keys []string) []string {
	var out []string
	for _, k := range keys {
		if k != "" {
			out = append(out, k)
		}
	}
	return out
}

// GroupTasks returns, as records, the source's stored tasks that the index
// lists in group; deleted ones are left out. Each keeps its ordering
// fields, so a record built from it orders after the stored state only
// when its UpdatedAt is moved on.
func (s *Service) GroupTasks(ctx context.Context, source string, idx GroupIndex, group string) ([]TaskInput, error) {
	var out []TaskInput
	err := s.st.View(ctx, func(tx store.Tx) error {
		out = nil
		ids, err := groupList(tx, idx.Groups+group)
		if err != nil {
			return err
		}
		for _, id := range ids {
			t, err := tx.Task(source, id)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if t.Deleted {
				continue
			}
			out = append(out, TaskInput{ID: t.ID, Title: t.Title, Description: t.Description, URL: t.URL, Project: t.Project,
				Assignees: t.Assignees, Labels: t.Labels, Start: t.Start, Due: t.Due, Status: t.Status,
				Priority: t.Priority, UpdatedAt: t.UpdatedAt, Version: t.Version})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read group %s of %s: %w", group, source, err)
	}
	return out, nil
}

// moveMember moves m.Task to m.Group when it is elsewhere now and the
// record that says so is the stored one.
func moveMember(tx store.Tx, source string, idx GroupIndex, m Membership) error {
	cur, err := getKV(tx, idx.Tasks+m.Task)
	if err != nil || cur == m.Group {
		return err
	}
	t, err := tx.Task(source, m.Task)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !t.UpdatedAt.Equal(m.At) {
		return nil
	}
	if cur != "" {
		if err := editGroup(tx, idx.Groups+cur, m.Task, false); err != nil {
			return err
		}
	}
	if m.Group != "" {
		if err := editGroup(tx, idx.Groups+m.Group, m.Task, true); err != nil {
			return err
		}
	}
	return tx.Set(idx.Tasks+m.Task, m.Group)
}

// editGroup adds a task to, or removes it from, a group's list.
func editGroup(tx store.Tx, key, task string, add bool) error {
	tasks, err := groupList(tx, key)
	if err != nil {
		return err
	}
	i := slices.Index(tasks, task)
	switch {
	case add && i < 0:
		tasks = append(tasks, task)
	case !add && i >= 0:
		tasks = slices.Delete(tasks, i, i+1)
	default:
		return nil
	}
	b, err := json.Marshal(tasks)
	if err != nil {
		return err
	}
	return tx.Set(key, string(b))
}

func groupList(tx store.Tx, key string) ([]string, error) {
	v, err := getKV(tx, key)
	if err != nil || v == "" {
		return nil, err
	}
	var tasks []string
	if err := json.Unmarshal([]byte(v), &tasks); err != nil {
		return nil, fmt.Errorf("group index %s: %w", key, err)
	}
	return tasks, nil
}

// getKV reads a KV value, "" when unset.
func getKV(tx store.Tx, key string) (string, error) {
	v, err := tx.Get(key)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return v, err
}
