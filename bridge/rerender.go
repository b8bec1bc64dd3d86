package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// rerenderChanged re-renders the objects of users whose rendering inputs
// changed with a config reload (lead times, notify, time zone), and creates
// objects for users who were added while tasks already named them.
func (s *Service) rerenderChanged(ctx context.Context, old, cfg *config.Config) error {
	changed := map[string]bool{}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		if !renderSame(old, cfg, old.User(u.Name), u) {
			changed[u.Name] = true
		}
	}
	if len(changed) == 0 {
		return nil
	}
	return s.Resync(ctx, changed)
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

// Resync re-renders every task assigned to the given users (nil = all
// users), one transaction per source.
func (s *Service) Resync(ctx context.Context, users map[string]bool) error {
	cfg := s.Config()
	for _, src := range cfg.Sources {
		start := time.Now()
		err := s.st.Update(ctx, func(tx store.Tx) error {
			tasks, err := tx.TasksBySource(src.Name, false)
			if err != nil {
				return err
			}
			w := s.newWriter(tx, cfg)
			for i := range tasks {
				t := &tasks[i]
				for _, name := range t.Assignees {
					u := cfg.User(name)
					if u == nil || (users != nil && !users[name]) {
						continue
					}
					if err := w.syncObjects(u, t, true, false); err != nil {
						return err
					}
				}
			}
			return nil
		})
		s.metrics.StoreLatency.WithLabelValues("resync").Observe(time.Since(start).Seconds())
		if err != nil && !errors.Is(err, context.Canceled) {
			return fmt.Errorf("resync source %s: %w", src.Name, err)
		}
	}
	return nil
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
	if err := s.Resync(ctx, nil); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err // Resync stopped early: try again at the next start
	}
	if err := s.st.Update(ctx, func(tx store.Tx) error { return tx.Set(renderVersionKey, render.Version) }); err != nil {
		return false, fmt.Errorf("record render version: %w", err)
	}
	s.log.Info("re-rendered stored objects for new rendering rules", "from", have, "to", render.Version,
		"took", time.Since(start).Round(time.Millisecond))
	return true, nil
}
