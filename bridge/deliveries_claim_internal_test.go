package bridge

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"

	"github.com/duebridge/duebridge/store"
)

// deliveryCalls counts the delivery-record calls of a service's write
// transactions.
type deliveryCalls struct {
	store.Store
	mu    sync.Mutex
	calls map[string]int
}

func (d *deliveryCalls) take() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.calls
	d.calls = map[string]int{}
	return c
}

func (d *deliveryCalls) note(m string) {
	d.mu.Lock()
	d.calls[m]++
	d.mu.Unlock()
}

func (d *deliveryCalls) Update(ctx context.Context, fn func(store.Tx) error) error {
	return d.Store.Update(ctx, func(tx store.Tx) error { return fn(&deliveryCallsTx{Tx: tx, d: d}) })
}

type deliveryCallsTx struct {
	store.Tx
	d *deliveryCalls
}

func (t *deliveryCallsTx) dt() store.DeliveryTx { return t.Tx.(store.DeliveryTx) }

func (t *deliveryCallsTx) DeliveriesSeen(source string, keys []string, since int64) (map[string]bool, error) {
	t.d.note("DeliveriesSeen")
	return t.dt().DeliveriesSeen(source, keys, since)
}

func (t *deliveryCallsTx) ClaimDeliveries(source string, keys []string, since, at int64) (bool, error) {
	t.d.note("ClaimDeliveries")
	return t.dt().ClaimDeliveries(source, keys, since, at)
}

func (t *deliveryCallsTx) PruneDeliveries(before int64, limit int) error {
	t.d.note("PruneDeliveries")
	return t.dt().PruneDeliveries(before, limit)
}

// TestSignedDeliveryIsOneClaim: a signed webhook's replay key is checked
// and recorded by one statement in the ingest's transaction (it was a
// SELECT and an INSERT); a second delivery with the same key is still a
// replay that stores nothing.
func TestSignedDeliveryIsOneClaim(t *testing.T) {
	ctx := context.Background()
	c := groupConfig(t)
	var dc *deliveryCalls
	s := sqliteService(t, c.DataDir, c, func(st store.Store) store.Store {
		dc = &deliveryCalls{Store: st, calls: map[string]int{}}
		return dc
	})
	d := Delivery{Tasks: []TaskInput{groupTask("T-1", "alice")}, Keys: []string{"signed:abc"}}
	if _, err := s.IngestDelivery(ctx, "tracker", d); err != nil {
		t.Fatal(err)
	}
	if got, want := dc.take(), map[string]int{"ClaimDeliveries": 1, "PruneDeliveries": 1}; !maps.Equal(got, want) {
		t.Errorf("a signed webhook's delivery record: %v, want %v", got, want)
	}
	again := Delivery{Tasks: []TaskInput{groupTask("T-2", "alice")}, Keys: []string{"signed:abc"}}
	if _, err := s.IngestDelivery(ctx, "tracker", again); !errors.Is(err, ErrReplayed) {
		t.Fatalf("the same key again: %v, want ErrReplayed", err)
	}
	err := s.st.View(ctx, func(tx store.Tx) error {
		if _, err := tx.Task("tracker", "T-2"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("a replay stored its task: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
