package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/duebridge/duebridge/store"
)

// testDevicePasswords: rows round-trip, list per user and in all, last use
// only moves forward, and a revocation deletes the row (only the owner's)
// and lands in the revocation log other processes read.
func testDevicePasswords(t *testing.T, b backend) {
	e := newEnv(t, b)
	ctx := context.Background()
	hash := bytes.Repeat([]byte{7}, 32)
	update := func(fn func(store.Tx) error) error { return e.s.Update(ctx, fn) }
	view := func(fn func(store.Tx) error) {
		t.Helper()
		if err := e.s.View(ctx, fn); err != nil {
			t.Fatal(err)
		}
	}
	var seq0 int64
	view(func(tx store.Tx) (err error) { seq0, err = tx.LastDeviceRevocation(); return })
	err := update(func(tx store.Tx) error {
		for _, d := range []store.DevicePassword{
			{ID: "a1", User: "alice", Name: "iPhone", Hash: hash, Created: t0},
			{ID: "a2", User: "alice", Name: "iPad", Hash: hash, Created: t0.Add(time.Second)},
			{ID: "b1", User: "bob", Name: "iPhone", Hash: hash, Created: t0},
		} {
			if err := tx.AddDevicePassword(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := update(func(tx store.Tx) error {
		return tx.AddDevicePassword(&store.DevicePassword{ID: "a1", User: "bob", Name: "x", Hash: hash, Created: t0})
	}); err == nil {
		t.Fatal("a second row with the same ID was stored")
	}
	view(func(tx store.Tx) error {
		d, err := tx.DevicePassword("a2")
		if err != nil || d.User != "alice" || d.Name != "iPad" || !bytes.Equal(d.Hash, hash) || !d.Created.Equal(t0.Add(time.Second)) || !d.LastUsed.IsZero() {
			t.Fatalf("a2 = %+v, %v", d, err)
		}
		if _, err := tx.DevicePassword("nope"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown ID: %v", err)
		}
		alice, _ := tx.DevicePasswords("alice")
		all, _ := tx.DevicePasswords("")
		if len(alice) != 2 || alice[0].ID != "a1" || len(all) != 3 || all[2].ID != "b1" {
			t.Fatalf("alice %+v, all %+v", alice, all)
		}
		return nil
	})
	used := t0.Add(time.Hour)
	if err := update(func(tx store.Tx) error {
		if err := tx.TouchDevicePasswords(map[string]time.Time{"a1": used, "gone": used}); err != nil {
			return err
		}
		return tx.TouchDevicePasswords(map[string]time.Time{"a1": t0}) // older: ignored
	}); err != nil {
		t.Fatal(err)
	}
	view(func(tx store.Tx) error {
		if d, _ := tx.DevicePassword("a1"); !d.LastUsed.Equal(used) {
			t.Fatalf("last use %v, want %v", d.LastUsed, used)
		}
		return nil
	})
	if err := update(func(tx store.Tx) error { return tx.RevokeDevicePassword("bob", "a1") }); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob revoking alice's device: %v", err)
	}
	if err := update(func(tx store.Tx) error { return tx.RevokeDevicePassword("alice", "a1") }); err != nil {
		t.Fatal(err)
	}
	view(func(tx store.Tx) error {
		if _, err := tx.DevicePassword("a1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("revoked row: %v", err)
		}
		revs, err := tx.DeviceRevocations(seq0, 10)
		if err != nil || len(revs) != 1 || revs[0].User != "alice" || revs[0].DeviceID != "a1" || !revs[0].Revoked.Equal(t0) {
			t.Fatalf("revocations %+v, %v", revs, err)
		}
		if last, _ := tx.LastDeviceRevocation(); last != revs[0].Seq {
			t.Fatalf("last revocation %d, want %d", last, revs[0].Seq)
		}
		return nil
	})
}
