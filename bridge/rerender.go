package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// kvRenderFP + user holds the fingerprint of the user's rendering inputs
// (renderFingerprint) the user's stored objects were last rendered with.
// The key kvRenderFP itself, with no user, records that fingerprints have
// been kept on this store (see rerenderStale's upgrade rule); a user's
// empty value means "no fingerprint" (a removed user: the kv has no
// delete).
const kvRenderFP = "render.fp."

// renderFingerprint is a hash of exactly what renderSame compares: notify,
// the time zone's name and the lead times per source. The default lead
// times are in it once, and a source only when its lead times differ from
// them, so adding or reordering sources without lead times of their own
// changes nobody's fingerprint. sources is cfg.Sources in name order.
func renderFingerprint(cfg *config.Config, sources []*config.Source, u *config.User) string {
	def := cfg.LeadTimesFor(u, nil)
	var b strings.Builder
	fmt.Fprintf(&b, "notify=%s;tz=%s;lead=%v", u.Notify, u.Location.String(), def)
	for _, src := range sources {
		if lt := cfg.LeadTimesFor(u, src); !slices.Equal(lt, def) {
			fmt.Fprintf(&b, ";%s=%v", src.Name, lt)
		}
	}
	sum := sha256.Sum256([]byte(b.String()))
	return hex.EncodeToString(sum[:16])
}

// renderFingerprints is every user's fingerprint, in cfg.Users' order.
func renderFingerprints(cfg *config.Config) []string {
	sources := make([]*config.Source, len(cfg.Sources))
	for i := range cfg.Sources {
		sources[i] = &cfg.Sources[i]
	}
	slices.SortFunc(sources, func(a, b *config.Source) int { return strings.Compare(a.Name, b.Name) })
	fps := make([]string, len(cfg.Users))
	for i := range cfg.Users {
		fps[i] = renderFingerprint(cfg, sources, &cfg.Users[i])
	}
	return fps
}

// StartRerender takes the re-render lock for the start's checks and
// returns them to run, in the background once the listeners are up: the
// rendering rules (rerenderIfStale), then every user's rendering inputs
// (rerenderStale against no old config: users whose lead times, notify or
// time zone differ from the fingerprint stored with their objects are
// re-rendered, users the store has no fingerprint of get objects for the
// tasks that already name them; with nothing changed, one read and no
// write), each logged with its duration. A reload's
// re-render (SetConfig) waits until run has returned: the two never run at
// once, and the reload's, which compares with the config before it, comes
// after the start's and is not lost. Call run exactly once.
//
// Why serving meanwhile is correct: a phone polling before run is done
// reads what the store holds, the objects as the last run left them (none
// yet for a user new to the store), which is a consistent state; each
// object the re-render then rewrites gets a new ETag and moves its
// collection's sync token, so the phone's next poll fetches the change as
// it fetches any other. A webhook or a phone write meanwhile renders with
// the current config under the store's writer; the re-render commits in
// batches between other writers and re-rendering is idempotent (Resync),
// so the objects end as a re-render before listening would have left
// them. A reload meanwhile swaps the config at once (logins use it) and
// re-renders what it changed after run.
func (s *Service) StartRerender() (run func(context.Context) error) {
	s.rerenderMu.Lock()
	return func(ctx context.Context) error {
		defer s.rerenderMu.Unlock()
		start := time.Now()
		if _, err := s.rerenderIfStale(ctx); err != nil {
			return fmt.Errorf("re-render stored objects: %w", err)
		}
		rules := time.Since(start)
		// Config changes made while stopped: users whose lead times, time
		// zone or notify changed, and users added meanwhile.
		if err := s.rerenderStale(ctx, nil, s.Config()); err != nil {
			return fmt.Errorf("re-render changed users: %w", err)
		}
		s.log.Info("start re-render checks done", "rules_took", rules.Round(time.Millisecond),
			"users_took", (time.Since(start) - rules).Round(time.Millisecond),
			"took", time.Since(start).Round(time.Millisecond))
		return nil
	}
}

// rerenderAfterReload re-renders what a reload from old to cfg changed,
// after any re-render under way (the start's, or an earlier reload's).
func (s *Service) rerenderAfterReload(ctx context.Context, old, cfg *config.Config) {
	s.rerenderMu.Lock()
	defer s.rerenderMu.Unlock()
	if err := s.rerenderStale(ctx, old, cfg); err != nil {
		s.log.Error("re-render after config change", "err", err)
	}
}

type kvPair struct{ key, value string }

// rerenderStale re-renders the objects of users whose rendering inputs
// changed, and creates objects for users new to the store, then records
// their fingerprints. It runs at start (old nil) and on a reload (old is
// the config before it). A user is stale when the fingerprint stored with
// the objects differs from the config's: that covers changes made while
// duebridge was stopped and those another replica's reload already
// recorded. On a reload the old config is compared as well: a change this
// process's own writes (webhooks rendering with the old config) may have
// missed is re-rendered even if another replica already recorded it.
//
// Users who were configured before have an object in one of their
// reminder lists for every task they see (a hidden or cancelled task has
// none and renders nothing), so their tasks are found through their own
// objects, by the objects' primary key: one changed user out of a
// million costs that user's tasks, not a walk over every task. A user new
// to the store has no objects yet, and the store keeps no index of tasks
// by assignee: for them the sources' tasks are walked (in batches).
//
// Upgrade rule: a store with no render fingerprint at all (the first start
// of a version that keeps them, on an existing store; or a fresh store)
// gets the current fingerprints recorded without re-rendering anything
// beyond what the old config comparison asks: until then reloads kept
// the objects in step, and re-rendering every task at the first start
// after an upgrade is not wanted. A fresh store has no objects to
// re-render.
//
// A fingerprint is recorded only after that user's re-render committed:
// a start that fails or is stopped half-way re-renders those users again
// at the next start (what was already done re-renders to the same bytes
// and writes nothing). Removed users' fingerprints are cleared, so a user
// added back later gets the tasks that named them meanwhile. Several
// replicas doing this at once is harmless: re-rendering is idempotent and
// they record the same fingerprints.
func (s *Service) rerenderStale(ctx context.Context, old, cfg *config.Config) error {
	// Every stored fingerprint in one statement, as the scheduler's alert
	// plans: one read per user would cost a million reads at every start.
	stored := map[string]string{}
	recorded := false
	err := s.st.Read(ctx, func(tx store.Tx) error {
		return tx.GetPrefix(kvRenderFP, func(k, v string) error {
			if name := k[len(kvRenderFP):]; name == "" {
				recorded = true
			} else {
				stored[name] = v
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("read render fingerprints: %w", err)
	}
	recorded = recorded || len(stored) > 0
	fps := renderFingerprints(cfg)
	var changed, added []string
	var changedFP, addedFP, rest []kvPair
	for i := range cfg.Users {
		u := &cfg.Users[i]
		have := stored[u.Name]
		delete(stored, u.Name) // what stays is users no longer configured
		p := kvPair{kvRenderFP + u.Name, fps[i]}
		var a *config.User
		if old != nil {
			a = old.User(u.Name)
		}
		switch {
		case (old != nil && a == nil) || (recorded && have == ""):
			added, addedFP = append(added, u.Name), append(addedFP, p)
		case (old != nil && !renderSame(old, cfg, a, u)) || (recorded && have != fps[i]):
			changed, changedFP = append(changed, u.Name), append(changedFP, p)
		case have != fps[i]:
			rest = append(rest, p) // the upgrade rule: record, not re-render
		}
	}
	if !recorded {
		rest = append(rest, kvPair{kvRenderFP, "1"})
	}
	for name, v := range stored {
		if v != "" {
			rest = append(rest, kvPair{kvRenderFP + name, ""})
		}
	}
	stored = nil
	if len(changed)+len(added) > 0 {
		s.log.Info("rendering inputs changed; re-rendering", "changed_users", len(changed), "added_users", len(added))
	}
	if len(changed)+len(added) == len(cfg.Users) && len(cfg.Users) > 0 {
		// Everyone: one walk over the tasks reads each task once.
		if err := s.resyncWith(ctx, cfg, nil); err != nil {
			return err
		}
		return s.recordRenderFingerprints(ctx, slices.Concat(changedFP, addedFP, rest))
	}
	if len(changed) > 0 {
		if err := s.resyncInBatches(ctx, cfg, userWalk{users: changed}); err != nil {
			return fmt.Errorf("re-render changed users: %w", err)
		}
		if err := s.recordRenderFingerprints(ctx, changedFP); err != nil {
			return err
		}
	}
	if len(added) > 0 {
		users := make(map[string]bool, len(added))
		for _, name := range added {
			users[name] = true
		}
		if err := s.resyncWith(ctx, cfg, users); err != nil {
			return err
		}
		if err := s.recordRenderFingerprints(ctx, addedFP); err != nil {
			return err
		}
	}
	return s.recordRenderFingerprints(ctx, rest)
}

// recordRenderFingerprints writes the pairs, replanBatch to a write
// transaction.
func (s *Service) recordRenderFingerprints(ctx context.Context, pairs []kvPair) error {
	err := updateInBatches(ctx, s.st, pairs, replanBatch, func(p kvPair) string { return p.key }, func(tx store.Tx, p kvPair) error {
		return tx.Set(p.key, p.value)
	})
	if err != nil {
		return fmt.Errorf("record render fingerprints: %w", err)
	}
	return nil
}

// recordAllRenderFingerprints records every user's fingerprint (after a
// re-render of everything).
func (s *Service) recordAllRenderFingerprints(ctx context.Context, cfg *config.Config) error {
	fps := renderFingerprints(cfg)
	pairs := make([]kvPair, 0, len(fps)+1)
	for i := range cfg.Users {
		pairs = append(pairs, kvPair{kvRenderFP + cfg.Users[i].Name, fps[i]})
	}
	return s.recordRenderFingerprints(ctx, append(pairs, kvPair{kvRenderFP, "1"}))
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
	return s.resyncWith(ctx, s.Config(), users)
}

// resyncWith is Resync rendering with cfg: a re-render records cfg's
// fingerprints afterwards, so it renders with cfg even if a reload swapped
// the service's config meanwhile (that reload's own re-render follows).
func (s *Service) resyncWith(ctx context.Context, cfg *config.Config, users map[string]bool) error {
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

// rerenderIfStale re-renders every user's objects once when the store's
// objects were made by other rendering rules than render.Version, and then
// records the version. It reports whether it re-rendered. Several processes
// starting at once may each re-render; the result is the same. rerenderMu
// must be held.
func (s *Service) rerenderIfStale(ctx context.Context) (bool, error) {
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
	cfg := s.Config()
	if err := s.resyncWith(ctx, cfg, nil); err != nil {
		return false, err
	}
	// Every user's objects are now rendered with cfg.
	if err := s.recordAllRenderFingerprints(ctx, cfg); err != nil {
		return false, err
	}
	if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.Set(renderVersionKey, render.Version) }); err != nil {
		return false, fmt.Errorf("record render version: %w", err)
	}
	s.log.Info("re-rendered stored objects for new rendering rules", "from", have, "to", render.Version,
		"took", time.Since(start).Round(time.Millisecond))
	return true, nil
}
