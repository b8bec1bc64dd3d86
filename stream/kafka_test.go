package stream_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/stream"
	"github.com/duebridge/duebridge/webhook"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// record is the i-th update of task id: version i.
func record(id string, version int) []byte {
	b, _ := json.Marshal(map[string]any{"id": id, "title": fmt.Sprintf("%s v%d", id, version), "version": version,
		"assignees": []string{"alice"}, "due": time.Now().UTC().Add(48 * time.Hour).Truncate(time.Second).Format(time.RFC3339)})
	return b
}

func cloudEvent(id string, version int) []byte {
	b, _ := json.Marshal(map[string]any{"specversion": "1.0", "id": fmt.Sprintf("ce-%s-%d", id, version), "source": "/ops",
		"type": "com.example.task", "datacontenttype": "application/json", "data": json.RawMessage(record(id, version))})
	return b
}

// workload is the updates of ids tasks, versions 1..n each; every fifth
// is a CloudEvent. Returned in produce order.
func workload(ids, from, to int) (keys []string, values [][]byte) {
	for v := from; v <= to; v++ {
		for i := range ids {
			id := fmt.Sprintf("T-%d", i)
			val := record(id, v)
			if (i+v)%5 == 0 {
				val = cloudEvent(id, v)
			}
			keys, values = append(keys, id), append(values, val)
		}
	}
	return keys, values
}

var malformed = [][]byte{
	[]byte(`{"id": "bad-1", "title": `),                                      // broken JSON
	[]byte(`{"id": "bad-2", "title": "x", "colour": "red"}`),                 // unknown field
	[]byte(`{"id": "bad-3", "title": "x", "status": "maybe"}`),               // bad value
	[]byte(`{"specversion": "1.0", "id": "c", "source": "/s", "type": "t"}`), // CloudEvent without data
}

// countingSink applies through the real sink and cancels after limit
// records: a consumer killed between apply and commit.
type countingSink struct {
	next    stream.Sink
	applied atomic.Int64
	limit   int64
	cancel  context.CancelFunc
}

func (c *countingSink) Apply(ctx context.Context, source string, values [][]byte) ([]error, error) {
	bad, err := c.next.Apply(ctx, source, values)
	if err == nil && c.applied.Add(int64(len(values))) >= c.limit && c.cancel != nil {
		// Durable, but the process "dies" before it can commit or ack.
		c.cancel()
		return nil, errors.New("killed after the store commit")
	}
	return bad, err
}

func produce(t *testing.T, cl *kgo.Client, topic string, keys []string, values [][]byte) {
	t.Helper()
	rs := make([]*kgo.Record, len(values))
	for i := range values {
		rs[i] = &kgo.Record{Topic: topic, Key: []byte(keys[i]), Value: values[i]}
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// finalVersions waits until every task T-0..ids-1 has version want.
func waitVersions(t *testing.T, svc *bridge.Service, ids int, want int64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		missing := 0
		err := testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
			for i := range ids {
				task, err := tx.Task("tracker", fmt.Sprintf("T-%d", i))
				if err != nil || task.Version != want {
					missing++
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d tasks not at version %d after %s", missing, ids, want, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestKafkaAtLeastOnceAcrossRestart(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "tasks", "dead"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	svc := testsvc.New(t, testsvc.Options{})
	sink := webhook.NewStreamSink(svc)
	reg := prometheus.NewRegistry()
	metrics := stream.NewMetrics(reg)
	const ids = 40
	opts := stream.KafkaOptions{Source: "tracker", Brokers: brokers, Topics: []string{"tasks"}, Group: "duebridge-tracker",
		DeadLetter: "dead", Logger: quiet, Metrics: metrics, MaxPoll: 25}

	keys, values := workload(ids, 1, 5)
	produce(t, prod, "tasks", keys, values)
	produce(t, prod, "tasks", []string{"x", "x", "x", "x"}, malformed)

	// First run: killed after about half the records are durable.
	ctx, cancel := context.WithCancel(context.Background())
	first := &countingSink{next: sink, limit: int64(len(values) / 2), cancel: cancel}
	done := make(chan error, 1)
	go func() { done <- stream.NewKafka(first, opts).Run(ctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("first consumer did not stop")
	}
	cancel()
	if first.applied.Load() >= int64(len(values)) {
		t.Fatalf("first consumer applied everything (%d); the test wants a mid-stream stop", first.applied.Load())
	}

	// More records while it is down, then a restart in the same group.
	keys2, values2 := workload(ids, 6, 8)
	produce(t, prod, "tasks", keys2, values2)
	ctx2, cancel2 := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := stream.NewKafka(sink, opts).Run(ctx2); err != nil {
			t.Error(err)
		}
	}()
	waitVersions(t, svc, ids, 8, 30*time.Second)
	waitFor(t, "lag 0", func() bool { return testutil.ToFloat64(metrics.Lag.WithLabelValues("tracker")) == 0 })
	waitFor(t, "dead letters", func() bool {
		return testutil.ToFloat64(metrics.Records.WithLabelValues("tracker", "dead_lettered")) >= float64(len(malformed))
	})
	cancel2()
	wg.Wait()

	// Every record applied once in effect: each version was accepted exactly
	// once; redeliveries were ignored by the ordering rule.
	accepted := testsvc.Metric(t, svc, "duebridge_webhook_tasks_total", "source", "tracker", "result", "accepted")
	ignored := testsvc.Metric(t, svc, "duebridge_webhook_tasks_total", "source", "tracker", "result", "ignored")
	total := float64(len(values) + len(values2))
	if accepted != total {
		t.Errorf("accepted %v records, want %v (one per distinct update)", accepted, total)
	}
	if ignored == 0 {
		t.Error("no redelivery was absorbed; the kill before the commit did not happen")
	}
	t.Logf("accepted %v, ignored (redelivered) %v", accepted, ignored)
	if got := testutil.ToFloat64(metrics.Records.WithLabelValues("tracker", "dead_lettered")); got != float64(len(malformed)) {
		t.Errorf("dead-lettered %v, want %d", got, len(malformed))
	}
	// Nothing of a malformed record reached the store.
	testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
		for _, id := range []string{"bad-1", "bad-2", "bad-3"} {
			if _, err := tx.Task("tracker", id); err == nil {
				t.Errorf("malformed record %s was stored", id)
			}
		}
		return nil
	})

	// The dead-letter topic holds the malformed records with the reason.
	dl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("dead"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	seen := map[string]string{}
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer pcancel()
	for len(seen) < len(malformed) && pctx.Err() == nil {
		dl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			for _, h := range r.Headers {
				if h.Key == "duebridge-error" {
					seen[string(r.Value)] = string(h.Value)
				}
			}
		})
	}
	for _, m := range malformed {
		if seen[string(m)] == "" {
			t.Errorf("dead-letter topic lacks %s (or its duebridge-error header)", m)
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flakySink fails its first calls without storing anything, like a store
// that is briefly unreachable.
type flakySink struct {
	next  stream.Sink
	fails atomic.Int64
}

func (f *flakySink) Apply(ctx context.Context, source string, values [][]byte) ([]error, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, errors.New("store unreachable")
	}
	return f.next.Apply(ctx, source, values)
}

// A malformed or oversized record is counted and skipped without blocking
// its partition; a store failure is retried, and the offsets wait for it.
func TestKafkaMalformedSkippedWithoutDeadLetter(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	// One partition: the good record after the bad ones must still apply.
	produce(t, prod, "tasks", []string{"x", "x", "x", "x"}, malformed)
	produce(t, prod, "tasks", []string{"x"}, [][]byte{[]byte(`{"id":"big","title":"` + strings.Repeat("x", 300) + `"}`)})
	produce(t, prod, "tasks", []string{"T-0"}, [][]byte{record("T-0", 1)})

	svc := testsvc.New(t, testsvc.Options{})
	metrics := stream.NewMetrics(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	flaky := &flakySink{next: webhook.NewStreamSink(svc)}
	flaky.fails.Store(2)
	k := stream.NewKafka(flaky, stream.KafkaOptions{Source: "tracker", MaxRecordBytes: 256,
		Brokers: cluster.ListenAddrs(), Topics: []string{"tasks"}, Group: "g", Logger: quiet, Metrics: metrics})
	done := make(chan error, 1)
	go func() { done <- k.Run(ctx) }()
	waitVersions(t, svc, 1, 1, 10*time.Second)
	waitFor(t, "malformed count", func() bool {
		return testutil.ToFloat64(metrics.Records.WithLabelValues("tracker", "malformed")) == float64(len(malformed)+1)
	})
	// The group's offset moves past everything, the bad records included.
	adm, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	waitFor(t, "commit past the last record", func() bool { return committedOffset(t, adm, "g", "tasks", 0) == int64(len(malformed)+2) })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(metrics.Errors.WithLabelValues("tracker", "apply")); n != 2 {
		t.Errorf("apply errors %v, want 2", n)
	}
}

func TestUnwrap(t *testing.T) {
	task := `{"id":"1","title":"t"}`
	for _, c := range []struct {
		in, want string
		bad      bool
	}{
		{task, task, false},
		{`[` + task + `]`, `[` + task + `]`, false},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data":` + task + `}`, task, false},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"application/vnd.x+json; charset=utf-8","data":` + task + `}`, task, false},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data_base64":"eyJpZCI6IjEiLCJ0aXRsZSI6InQifQ=="}`, task, false},
		{`{"specversion":"0.3","id":"a","source":"/s","type":"t","data":` + task + `}`, "", true},
		{`{"specversion":"1.0","source":"/s","type":"t","data":` + task + `}`, "", true},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"t","datacontenttype":"text/xml","data":"<x/>"}`, "", true},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"t","data_base64":"%%%"}`, "", true},
		{`{"specversion":"1.0","id":"a","source":"/s","type":"t"}`, "", true},
	} {
		got, err := stream.Unwrap([]byte(c.in))
		if c.bad {
			if err == nil || !errors.Is(err, stream.ErrMalformed) {
				t.Errorf("Unwrap(%s) = %s, %v; want ErrMalformed", c.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != c.want {
			t.Errorf("Unwrap(%s) = %s, %v; want %s", c.in, got, err, c.want)
		}
	}
}

func committedOffset(t *testing.T, cl *kgo.Client, group, topic string, partition int32) int64 {
	t.Helper()
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = group
	rt := kmsg.NewOffsetFetchRequestTopic()
	rt.Topic = topic
	rt.Partitions = []int32{partition}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(context.Background(), cl)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range resp.Topics {
		for _, p := range tp.Partitions {
			if p.Partition == partition {
				return p.Offset
			}
		}
	}
	return -1 // nothing committed yet
}
