package bridge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/duebridge/duebridge/calendar"
	"github.com/duebridge/duebridge/store"
)

// TestCalDAVOneStatementReadsAreReads: the CalDAV reads of one SELECT (a
// phone poll's lists, a list's ctag, the quota) run as store Reads,
// without BEGIN and ROLLBACK around them; a read of several statements (a
// list's changes with their data) is still one View, one snapshot.
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
		// The sync-collection a phone sends after a changed list: the
		// collection and its changes in one SELECT.
		{"incremental Changes", func() error { _, _, err := be.Changes(ctx, "alice", colls[0].Name, 0, false); return err }, 1, 1},
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

// TestIncrementalChangesAsBefore: the one-statement incremental Changes
// answers what the View path (the one with data) answers, data aside, for
// every revision of a list with a change and a removal, an expired token
// and an unknown list: the phone's sync-collection answer is unchanged.
func TestIncrementalChangesAsBefore(t *testing.T) {
	ctx := context.Background()
	cfg := groupConfig(t)
	s := sqliteService(t, cfg.DataDir, cfg)
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-1", "alice"), groupTask("T-2", "alice")}); err != nil {
		t.Fatal(err)
	}
	t1 := groupTask("T-1", "alice")
	t1.Title, t1.Version = "changed", 2
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{t1}); err != nil {
		t.Fatal(err)
	}
	t2 := groupTask("T-2", "alice")
	t2.Deleted, t2.Version = true, 2
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{t2}); err != nil {
		t.Fatal(err)
	}
	be := s.CalDAV()
	colls, err := be.Collections(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range append(colls, calendar.Collection{Name: "no-such-list", Seq: 3}) {
		for since := int64(0); since <= c.Seq+1; since++ {
			gc, got, gerr := be.Changes(ctx, "alice", c.Name, since, false)
			wc, want, werr := be.Changes(ctx, "alice", c.Name, since, true)
			for i := range want {
				want[i].Data = nil
			}
			if gc != wc || !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) ||
				errors.Is(gerr, calendar.ErrSyncTokenExpired) != errors.Is(werr, calendar.ErrSyncTokenExpired) ||
				errors.Is(gerr, calendar.ErrNotFound) != errors.Is(werr, calendar.ErrNotFound) {
				t.Errorf("%s since %d:\n got %+v %+v %v\nwant %+v %+v %v", c.Name, since, gc, got, gerr, wc, want, werr)
			}
		}
	}
}
