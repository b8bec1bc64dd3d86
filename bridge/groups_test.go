package bridge_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestIngestDeliveryGroupIndex: memberships move a task between groups in
// the ingest's transaction, only as of the record that is stored: a late
// record that ingest ignores moves nothing.
func TestIngestDeliveryGroupIndex(t *testing.T) {
	t.Parallel()
	svc := testsvc.New(t, testsvc.Options{})
	ctx := context.Background()
	idx := bridge.GroupIndex{Groups: "test/group/", Tasks: "test/task-group/"}
	t0 := time.Now().UTC().Truncate(time.Second)
	deliver := func(at time.Time, group string, deleted bool, want bridge.Result) {
		t.Helper()
		in := bridge.TaskInput{ID: "a", Title: "A", Assignees: []string{"alice"}, UpdatedAt: at, Deleted: deleted}
		res, err := svc.IngestDelivery(ctx, "tracker", bridge.Delivery{Tasks: []bridge.TaskInput{in}, Index: idx,
			Members: []bridge.Membership{{Task: "a", Group: group, At: at}}})
		if err != nil || res != want {
			t.Fatalf("ingest at %v: %+v, %v; want %+v", at, res, err, want)
		}
	}
	members := func(group string) []string {
		t.Helper()
		tasks, err := svc.GroupTasks(ctx, "tracker", idx, group)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, in := range tasks {
			ids = append(ids, in.ID)
		}
		return ids
	}
	check := func(step string, g1, g2 []string) {
		t.Helper()
		if got := members("g1"); !slices.Equal(got, g1) {
			t.Errorf("%s: g1 = %v, want %v", step, got, g1)
		}
		if got := members("g2"); !slices.Equal(got, g2) {
			t.Errorf("%s: g2 = %v, want %v", step, got, g2)
		}
	}
	deliver(t0.Add(time.Minute), "g1", false, bridge.Result{Accepted: 1})
	check("in g1", []string{"a"}, nil)
	deliver(t0, "g2", false, bridge.Result{Ignored: 1})
	check("late record", []string{"a"}, nil)
	deliver(t0.Add(2*time.Minute), "g2", false, bridge.Result{Accepted: 1})
	check("moved", nil, []string{"a"})
	deliver(t0.Add(3*time.Minute), "", true, bridge.Result{Accepted: 1})
	check("deleted", nil, nil)

	_, err := svc.IngestDelivery(ctx, "tracker", bridge.Delivery{Members: []bridge.Membership{{Task: "a", Group: "g1"}}})
	if err == nil {
		t.Error("memberships without an index were accepted")
	}
}
