package store_test

// The record of applied webhook deliveries (migration 71), on both backends
// through runSuite; helpers from store_test.go.

import (
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

func testDeliveries(t *testing.T, b backend) {
	e := newEnv(t, b)
	at := t0.UnixNano()
	seen := func(source string, keys []string, since int64) map[string]bool {
		t.Helper()
		var out map[string]bool
		e.view(func(tx store.Tx) error {
			var err error
			out, err = tx.(store.DeliveryTx).DeliveriesSeen(source, keys, since)
			return err
		})
		return out
	}
	e.update(func(tx store.Tx) error {
		return tx.(store.DeliveryRecorder).RecordDeliveries("gh", []string{"d1", "d2"}, at)
	})
	if got := seen("gh", []string{"d1", "d3"}, at); !got["d1"] || len(got) != 1 {
		t.Errorf("seen = %v, want only d1", got)
	}
	if got := seen("jira", []string{"d1"}, at); len(got) != 0 {
		t.Errorf("another source's key counted: %v", got)
	}
	if got := seen("gh", []string{"d1"}, at+1); len(got) != 0 {
		t.Errorf("a key older than the window counted: %v", got)
	}
	// Recording again moves seen_at on (no conflict error).
	later := t0.Add(time.Hour).UnixNano()
	e.update(func(tx store.Tx) error {
		return tx.(store.DeliveryRecorder).RecordDeliveries("gh", []string{"d2"}, later)
	})
	// Pruning is bounded: one of the two old rows (d1 only: d2 moved on)
	// goes per call of limit 1.
	e.update(func(tx store.Tx) error {
		return tx.(store.DeliveryRecorder).RecordDeliveries("gl", []string{"x"}, at)
	})
	e.update(func(tx store.Tx) error { return tx.(store.DeliveryTx).PruneDeliveries(later, 1) })
	if got := len(seen("gh", []string{"d1"}, 0)) + len(seen("gl", []string{"x"}, 0)); got != 1 {
		t.Errorf("after a prune of limit 1, %d of the 2 old rows left, want 1", got)
	}
	e.update(func(tx store.Tx) error { return tx.(store.DeliveryTx).PruneDeliveries(later, 10) })
	if got := len(seen("gh", []string{"d1"}, 0)) + len(seen("gl", []string{"x"}, 0)); got != 0 {
		t.Errorf("old rows left after prune: %d", got)
	}
	if got := seen("gh", []string{"d2"}, later); !got["d2"] {
		t.Error("prune dropped a row within the window")
	}
}

// testClaimDeliveries: ClaimDeliveries answers what DeliveriesSeen did
// before RecordDeliveries, in one statement per key: a new key is recorded,
// one seen within the window is a replay and stays as it was, an expired
// one is recorded anew, a key twice in one claim is not its own replay,
// and another source's key is another key.
func testClaimDeliveries(t *testing.T, b backend) {
	e := newEnv(t, b)
	at := t0.UnixNano()
	claim := func(source string, keys []string, since, now int64) bool {
		t.Helper()
		var fresh bool
		e.update(func(tx store.Tx) (err error) {
			fresh, err = tx.(store.DeliveryTx).ClaimDeliveries(source, keys, since, now)
			return err
		})
		return fresh
	}
	seenAt := func(source, key string, since int64) bool {
		t.Helper()
		var got map[string]bool
		e.view(func(tx store.Tx) (err error) {
			got, err = tx.(store.DeliveryTx).DeliveriesSeen(source, []string{key}, since)
			return err
		})
		return got[key]
	}
	if !claim("gh", []string{"d1", "d2", "d1"}, at-10, at) {
		t.Error("new keys (one twice): claimed as a replay")
	}
	if !seenAt("gh", "d1", at) || !seenAt("gh", "d2", at) {
		t.Error("claimed keys not recorded at the claim's time")
	}
	later := at + 100
	if claim("gh", []string{"d3", "d2"}, at-10, later) {
		t.Error("a key seen within the window: not a replay")
	}
	if seenAt("gh", "d2", at+1) {
		t.Error("a replayed key's time moved on")
	}
	if !claim("gl", []string{"d2"}, at-10, later) {
		t.Error("another source's key counted as a replay")
	}
	// The window has passed for d1 (since after its record): recorded anew.
	if !claim("gh", []string{"d1"}, at+1, later) || !seenAt("gh", "d1", later) {
		t.Error("an expired key: not claimed anew at the claim's time")
	}
}
