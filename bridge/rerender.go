package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// rerenderChanged re-renders the objects of users whose rendering inputs
// changed with a config reload (lead times, notify, time zone), and creates
// objects for users who were added while tasks already named them.
//
// Users who were configured before have an object in one of their
// reminder lists for every task they see (a hidden or cancelled task has
// none and renders nothing), so their tasks are found through their own
// objects, by the objects' primary key: one changed user out of a
// million costs that user's tasks, not a walk over every task. A user new
// to the config has no objects yet, and the store keeps no index of tasks
// by assignee: for them the sources' tasks are walked (in batches).
func (s *Service) rerenderChanged(ctx context.Context, old, cfg *config.Config) error {
	var changed, added []string
	for i := range cfg.Users {
		u := &cfg.Users[i]
		switch a := old.User(u.Name); {
		case a == nil:
			added = append(added, u.Name)
		case !renderSame(old, cfg, a, u):
			changed = append(changed, u.Name)
		}
	}
	if len(changed)+len(added) == len(cfg.Users) && len(cfg.Users) > 0 {
		// Everyone: one walk over the tasks reads each task once.
		return s.Resync(ctx, nil)
	}
	if len(changed) > 0 {
		if err := s.resyncInBatches(ctx, cfg, userWalk{users: changed}); err != nil {
			return fmt.Errorf("re-render changed users: %w", err)
		}
	}
	if len(added) > 0 {
		users := make(map[string]bool, len(added))
		for _, name := range added {
			users[name] = true
		}
		return s.Resync(ctx, users)
	}
	return nil
}

// renderSame reports whether a user's objects would render the same under
// both configs for every source.
func renderSame(oldCfg, newCfg *config.Config, a, b *config.User) bool {
	if a == nil || a.Notify != b.Notify || a.Location.String() != b.Location.String() {
		return false
	}
	for i := range newCfg.Sources {
		src := &newCfg.Sources[i]
		if !slices.Equal(oldCfg.LeadTimesFor(a, oldCfg.Source(src.Name)), newCfg.LeadTimesFor(b, src)) {
			return false
		}
	}
	return true
}

// resyncBatch is how many tasks one re-render write transaction takes on.
// Re-rendering a source in one transaction held the store's single
// writer for minutes at a million tasks (every webhook, phone write and
// scheduler write waited behind it) and kept every task in memory; in
// batches the other writers get the writer between two, and memory is
// bounded by the batch. A variable so tests can make batches small.
var resyncBatch = 500

// resyncBetweenBatches, when set (tests only), runs after every committed
// batch but the last, while the re-render holds no transaction.
var resyncBetweenBatches func()

// Resync re-renders every task assigned to the given users (nil = all
// users): it walks each source's tasks by id, resyncBatch tasks to a write
// transaction.
//
// Other writers run between two batches. A task a webhook or a phone
// changes meanwhile is rendered by that writer with the current config,
// and re-rendering is idempotent (an unchanged object is not written), so
// whether the walk reaches such a task before or after the change, the
// task ends up as one transaction of the whole walk would have left it.
// On an error, or when ctx ends, Resync stops after the last committed
// batch and returns the error; what was committed stays.
func (s *Service) Resync(ctx context.Context, users map[string]bool) error {
	cfg := s.Config()
	walk := sourceWalk{users: users}
	for i := range cfg.Sources {
		walk.sources = append(walk.sources, cfg.Sources[i].Name)
	}
	if err := s.resyncInBatches(ctx, cfg, walk); err != nil {
		return fmt.Errorf("re-render: %w", err)
	}
	return nil
}

// resyncWalk is where a batched re-render stands. batch re-renders, with
// w, the next tasks (at most limit of them) and returns the walk after
// them, how many (task, user) pairs it rendered, and whether the walk is
// over. A walk is a value: the one batch returns is used only once that
// batch committed.
type resyncWalk interface {
	batch(w *writer, limit int) (next resyncWalk, rendered int, done bool, err error)
}

// resyncInBatches runs walk to its end, one write transaction a batch.
// The "resync" store latency is observed per batch: it is how long the
// re-render held the writer at a time.
func (s *Service) resyncInBatches(ctx context.Context, cfg *config.Config, walk resyncWalk) error {
	rendered := register(s, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "duebridge_rerendered_tasks_total",
		Help: "Tasks re-rendered for a user after a config reload changed the user's rendering inputs or the rendering rules changed (one per task and user).",
	}))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		var next resyncWalk
		var n int
		var done bool
		start := time.Now()
		err := s.st.Update(ctx, func(tx store.Tx) (err error) {
			next, n, done, err = walk.batch(s.newWriter(tx, cfg), resyncBatch)
			return err
		})
		s.metrics.StoreLatency.WithLabelValues("resync").Observe(time.Since(start).Seconds())
		if err != nil {
			return err
		}
		rendered.Add(float64(n))
		if done {
			return nil
		}
		walk = next
		if resyncBetweenBatches != nil {
			resyncBetweenBatches()
		}
	}
}

// sourceWalk walks the sources' tasks by id (the tasks' primary key).
type sourceWalk struct {
	users   map[string]bool // nil: every user
	sources []string        // still to walk; the first is under way
	after   string          // the last task id done in sources[0]
}

func (c sourceWalk) batch(w *writer, limit int) (resyncWalk, int, bool, error) {
	taken, rendered := 0, 0
	for taken < limit && len(c.sources) > 0 {
		src := c.sources[0]
		tasks, err := w.tx.TasksAfter(src, c.after, limit-taken)
		if err != nil {
			return nil, 0, false, fmt.Errorf("source %s: %w", src, err)
		}
		for i := range tasks {
			t := &tasks[i]
			for _, name := range t.Assignees {
				u := w.cfg.User(name)
				if u == nil || (c.users != nil && !c.users[name]) {
					continue
				}
				if err := w.syncObjects(u, t, true, false); err != nil {
					return nil, 0, false, fmt.Errorf("source %s, task %s, user %s: %w", src, t.ID, name, err)
				}
				rendered++
			}
		}
		if len(tasks) < limit-taken {
			c.sources, c.after = c.sources[1:], ""
		} else {
			c.after = tasks[len(tasks)-1].ID
		}
		taken += len(tasks)
	}
	return c, rendered, len(c.sources) == 0, nil
}

// userWalk walks the given users' tasks through their objects in their
// reminder lists (every task a user sees has its reminder there), by the
// objects' primary key.
type userWalk struct {
	users []string // still to walk; the first is under way
	lists []string // users[0]'s reminder lists still to walk (nil: not read yet)
	after string   // the last object name done in lists[0]
}

func (c userWalk) batch(w *writer, limit int) (resyncWalk, int, bool, error) {
	taken, rendered := 0, 0
	for taken < limit && len(c.users) > 0 {
		name := c.users[0]
		u := w.cfg.User(name)
		if c.lists == nil && u != nil {
			colls, err := w.tx.Collections(name)
			if err != nil {
				return nil, 0, false, fmt.Errorf("lists of %s: %w", name, err)
			}
			c.lists = []string{}
			for _, col := range colls {
				if col.Kind == store.KindTodos {
					c.lists = append(c.lists, col.Name)
				}
			}
		}
		if len(c.lists) == 0 {
			c.users, c.lists, c.after = c.users[1:], nil, ""
			continue
		}
		objs, err := w.tx.TaskObjectsAfter(name, c.lists[0], c.after, limit-taken)
		if err != nil {
			return nil, 0, false, err
		}
		for _, o := range objs {
			t, err := w.tx.Task(o.Source, o.TaskID)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, 0, false, err
			}
			// As the source walk: deleted and unassigned tasks are left
			// to the writers that delete and unassign.
			if t.Deleted || !slices.Contains(t.Assignees, name) {
				continue
			}
			if err := w.syncObjects(u, t, true, false); err != nil {
				return nil, 0, false, fmt.Errorf("user %s, task %s/%s: %w", name, t.Source, t.ID, err)
			}
			rendered++
		}
		if len(objs) < limit-taken {
			c.lists, c.after = c.lists[1:], ""
		} else {
			c.after = objs[len(objs)-1].Name
		}
		taken += len(objs)
	}
	return c, rendered, len(c.users) == 0, nil
}

// renderVersionKey is the store key holding the render.Version the stored
// objects were made with.
const renderVersionKey = "render_version"

// RerenderIfStale re-renders every user's objects once when the store's
// objects were made by other rendering rules than render.Version, and then
// records the version. It reports whether it re-rendered. Several processes
// starting at once may each re-render; the result is the same.
func (s *Service) RerenderIfStale(ctx context.Context) (bool, error) {
	var have string
	err := s.st.View(ctx, func(tx store.Tx) error {
		v, err := tx.Get(renderVersionKey)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		have = v
		return err
	})
	if err != nil {
		return false, fmt.Errorf("read render version: %w", err)
	}
	if have == render.Version {
		return false, nil
	}
	start := time.Now()
	// The version is recorded only after every batch of every source
	// committed: a start that fails or is stopped half-way leaves the old
	// version, and the next start re-renders everything again (the
	// batches already done re-render to the same bytes and write nothing).
	if err := s.Resync(ctx, nil); err != nil {
		return false, err
	}
	if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.Set(renderVersionKey, render.Version) }); err != nil {
		return false, fmt.Errorf("record render version: %w", err)
	}
	s.log.Info("re-rendered stored objects for new rendering rules", "from", have, "to", render.Version,
		"took", time.Since(start).Round(time.Millisecond))
	return true, nil
}
