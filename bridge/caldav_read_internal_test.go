package bridge

import (
	"context"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// TestCalDAVOneStatementReadsAreReads: the CalDAV reads of one SELECT (a
// phone poll's lists, a list's ctag, the quota) run as store Reads,
// without BEGIN and ROLLBACK around them; a read of several statements (a
// list's changes) is still one View, one snapshot.
func TestCalDAVOneStatementReadsAreReads(t *testing.T) {
	ctx := context.Background()
	var cs *countingStore
	cfg := groupConfig(t)
	s := sqliteService(t, cfg.DataDir, cfg, func(st store.Store) store.Store {
		cs = &countingStore{Store: st}
		return cs
	})
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-1", "alice")}); err != nil {
		t.Fatal(err)
	}
	be := s.CalDAV()
	colls, err := be.Collections(ctx, "alice")
	if err != nil || len(colls) == 0 {
		t.Fatalf("Collections: %v, %v", colls, err)
	}
	for _, c := range []struct {
		name         string
		read         func() error
		views, reads int64
	}{
		{"Collections", func() error { _, err := be.Collections(ctx, "alice"); return err }, 1, 1},
		{"Collection", func() error { _, err := be.Collection(ctx, "alice", colls[0].Name); return err }, 1, 1},
		{"Quota", func() error { _, _, err := be.Quota(ctx, "alice"); return err }, 1, 1},
		{"Changes", func() error { _, _, err := be.Changes(ctx, "alice", colls[0].Name, 0, true); return err }, 1, 0},
	} {
		views, reads := cs.views.Load(), cs.reads.Load()
		if err := c.read(); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if v, r := cs.views.Load()-views, cs.reads.Load()-reads; v != c.views || r != c.reads {
			t.Errorf("%s: %d store reads of which %d Reads, want %d and %d", c.name, v, r, c.views, c.reads)
		}
	}
}
