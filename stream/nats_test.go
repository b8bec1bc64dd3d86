package stream_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/stream"
	"github.com/duebridge/duebridge/webhook"
)

// natsServer starts an embedded NATS server with JetStream on 127.0.0.1:0.
func natsServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestNATSAtLeastOnceAcrossRestart(t *testing.T) {
	srv := natsServer(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, subj := range map[string]string{"TASKS": "tasks.>", "DEAD": "dead.tasks"} {
		if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}}); err != nil {
			t.Fatal(err)
		}
	}
	publish := func(subj string, values [][]byte) {
		t.Helper()
		for _, v := range values {
			if _, err := js.Publish(ctx, subj, v); err != nil {
				t.Fatal(err)
			}
		}
	}

	svc := testsvc.New(t, testsvc.Options{})
	sink := webhook.NewStreamSink(svc)
	metrics := stream.NewMetrics(nil)
	const ids = 40
	opts := stream.NATSOptions{Source: "tracker", URL: srv.ClientURL(), Stream: "TASKS", Durable: "duebridge-tracker",
		DeadLetter: "dead.tasks", Logger: quiet, Metrics: metrics, Batch: 25, AckWait: time.Second}
	_, values := workload(ids, 1, 5)
	publish("tasks.ops", values)
	publish("tasks.ops", malformed)

	// First run: killed after about half the records are durable, before
	// their acks.
	rctx, cancel := context.WithCancel(ctx)
	first := &countingSink{next: sink, limit: int64(len(values) / 2), cancel: cancel}
	done := make(chan error, 1)
	go func() { done <- stream.NewNATS(first, opts).Run(rctx) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("first consumer did not stop")
	}
	if first.applied.Load() >= int64(len(values)) {
		t.Fatalf("first consumer applied everything (%d); the test wants a mid-stream stop", first.applied.Load())
	}

	_, values2 := workload(ids, 6, 8)
	publish("tasks.ops", values2)
	rctx2, cancel2 := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := stream.NewNATS(sink, opts).Run(rctx2); err != nil {
			t.Error(err)
		}
	}()
	waitVersions(t, svc, ids, 8, 30*time.Second)
	waitFor(t, "dead letters", func() bool {
		return testutil.ToFloat64(metrics.Records.WithLabelValues("tracker", "dead_lettered")) >= float64(len(malformed))
	})
	waitFor(t, "lag 0", func() bool { return testutil.ToFloat64(metrics.Lag.WithLabelValues("tracker")) == 0 })
	// The messages of the killed run were durable but never acked: after
	// AckWait JetStream redelivers them, and they are acked then.
	cons, err := js.Consumer(ctx, "TASKS", "duebridge-tracker")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all acked", func() bool {
		info, err := cons.Info(ctx)
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	cancel2()
	wg.Wait()

	accepted := testsvc.Metric(t, svc, "duebridge_webhook_tasks_total", "source", "tracker", "result", "accepted")
	ignored := testsvc.Metric(t, svc, "duebridge_webhook_tasks_total", "source", "tracker", "result", "ignored")
	if total := float64(len(values) + len(values2)); accepted != total {
		t.Errorf("accepted %v records, want %v (one per distinct update)", accepted, total)
	}
	if ignored == 0 {
		t.Error("no redelivery was absorbed; the kill before the ack did not happen")
	}
	t.Logf("accepted %v, ignored (redelivered) %v", accepted, ignored)
	// The dead-letter stream holds the malformed messages with the reason.
	dead, err := js.Stream(ctx, "DEAD")
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= uint64(len(malformed)); seq++ {
		m, err := dead.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		if m.Header.Get("Duebridge-Error") == "" || string(m.Data) != string(malformed[seq-1]) {
			t.Errorf("dead letter %d: %q header %q", seq, m.Data, m.Header.Get("Duebridge-Error"))
		}
	}
}
