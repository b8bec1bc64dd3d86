package bridge

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/calendar"
)

// TestCalDAVOneStatementReadsAreReads: the CalDAV reads of one SELECT (a
// phone poll's lists, a list's ctag, the quota) run as store Reads,
// without BEGIN and ROLLBACK around them; a read of several statements (a
// list's changes with their data) is still one View, one snapshot.
func TestCalDAVOneStatementReadsAreReads(t *testing.T) {
	ctx := context.Background()
	cfg := groupConfig(t)
	s, cs := countingService(t, cfg.DataDir, cfg)
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

// TestObjectsByNameReads: a multiget's read takes no transaction when the
// list is unchanged between its statements (the collection alone when the
// cache has every object, then the missing objects with the collection),
// answers what one snapshot (the View) answers, and falls back to that
// View when a write comes between its two statements.
func TestObjectsByNameReads(t *testing.T) {
	ctx := context.Background()
	cfg := groupConfig(t)
	s, cs := countingService(t, cfg.DataDir, cfg)
	if _, err := s.Ingest(ctx, "tracker", []TaskInput{groupTask("T-1", "alice"), groupTask("T-2", "alice")}); err != nil {
		t.Fatal(err)
	}
	be := s.CalDAV()
	b := be.(caldavBackend)
	colls, err := be.Collections(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	var coll string
	var all []string
	for _, c := range colls {
		_, objs, err := be.Objects(ctx, "alice", c.Name, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) > 0 {
			coll = c.Name
			for _, o := range objs {
				all = append(all, o.Name)
			}
			break
		}
	}
	if coll == "" {
		t.Fatal("no list with objects")
	}
	ask := func(names []string, between func()) func(int64) []string {
		return func(int64) []string {
			if between != nil {
				between()
				between = nil
			}
			return names
		}
	}
	for _, c := range []struct {
		name         string
		names        []string
		views, reads int64
	}{
		{"all cached", nil, 1, 1},
		{"some missing", append([]string{"no-such.ics"}, all...), 2, 2},
	} {
		views, reads := cs.views.Load(), cs.reads.Load()
		gc, got, gerr := be.ObjectsByName(ctx, "alice", coll, ask(c.names, nil))
		if v, r := cs.views.Load()-views, cs.reads.Load()-reads; v != c.views || r != c.reads {
			t.Errorf("%s: %d store reads of which %d Reads, want %d and %d", c.name, v, r, c.views, c.reads)
		}
		wc, want, werr := b.objectsByNameView(ctx, "alice", coll, ask(c.names, nil))
		if gc != wc || !reflect.DeepEqual(got, want) || gerr != nil || werr != nil {
			t.Errorf("%s:\n got %+v %s %v\nwant %+v %s %v", c.name, gc, brief(got), gerr, wc, brief(want), werr)
		}
	}
	// A write between the statements: the answer is one snapshot's.
	t1 := groupTask("T-1", "alice")
	t1.Title, t1.Version = "changed", 2
	var seqs []int64
	names := func(seq int64) []string {
		seqs = append(seqs, seq)
		if len(seqs) == 1 {
			if _, err := s.Ingest(ctx, "tracker", []TaskInput{t1}); err != nil {
				t.Fatal(err)
			}
		}
		return all
	}
	gc, got, err := be.ObjectsByName(ctx, "alice", coll, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(seqs) != 2 || seqs[1] == seqs[0] || seqs[1] != gc.Seq {
		t.Errorf("names saw revisions %v, the answer is at %d; want a second call at the answer's revision", seqs, gc.Seq)
	}
	wc, want, err := b.objectsByNameView(ctx, "alice", coll, func(int64) []string { return all })
	if err != nil || gc != wc || !reflect.DeepEqual(got, want) {
		t.Errorf("after a write between:\n got %+v %s\nwant %+v %s (%v)", gc, brief(got), wc, brief(want), err)
	}
	if _, _, err := be.ObjectsByName(ctx, "alice", "no-such-list", ask(all, nil)); !errors.Is(err, calendar.ErrNotFound) {
		t.Errorf("unknown list: %v, want ErrNotFound", err)
	}
}

// brief lists objects by name, ETag and revision, for failure messages.
func brief(objs []calendar.Object) string {
	var b strings.Builder
	for _, o := range objs {
		fmt.Fprintf(&b, "[%s %s seq %d, %d bytes]", o.Name, o.ETag, o.Seq, len(o.Data))
	}
	return b.String()
}
