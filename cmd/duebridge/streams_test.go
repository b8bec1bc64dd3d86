package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// TestKafkaSourceAcrossServerRestart runs the real server with a kafka
// source against an in-process broker, stops it while records flow,
// starts it again on the same data and checks that nothing was lost.
func TestKafkaSourceAcrossServerRestart(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "alice")
	b, _ := os.ReadFile(cfgPath)
	b = append(b, fmt.Sprintf("  - name: ops\n    kind: kafka\n    secret: ops-secret-123\n    stream:\n      brokers: [%q]\n      topics: [tasks]\n", cluster.ListenAddrs()[0])...)
	writeAtomic(t, cfgPath, string(b))

	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	const ids = 100
	produceVersions := func(from, to int) {
		var rs []*kgo.Record
		for v := from; v <= to; v++ {
			for i := range ids {
				id := fmt.Sprintf("O-%d", i)
				val, _ := json.Marshal(map[string]any{"id": id, "title": fmt.Sprintf("%s v%d", id, v), "version": v, "assignees": []string{"alice"}})
				rs = append(rs, &kgo.Record{Topic: "tasks", Key: []byte(id), Value: val})
			}
		}
		if err := prod.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	versionsAt := func(svc *bridge.Service, want int64) (n int) {
		testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
			for i := range ids {
				if task, err := tx.Task("ops", fmt.Sprintf("O-%d", i)); err == nil && task.Version == want {
					n++
				}
			}
			return nil
		})
		return n
	}
	run := func() (*bridge.Service, string, func()) {
		cfg, err := config.Load(cfgPath)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan *bridge.Service, 1)
		var base string
		done := make(chan error, 1)
		go func() {
			done <- serve(ctx, cfg, serveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Opened: func(svc *bridge.Service, st store.Store) { testsvc.Track(t, svc, st) },
				Ready:  func(a Addrs, svc *bridge.Service) { base = "http://" + a.HTTP.String(); ready <- svc }})
		}()
		select {
		case svc := <-ready:
			return svc, base, func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("serve: %v", err)
				}
			}
		case err := <-done:
			t.Fatalf("serve: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("serve not ready")
		}
		return nil, "", nil
	}

	produceVersions(1, 10)
	svc, _, stop := run()
	waitFor(t, 30*time.Second, "first records applied", func() bool { return versionsAt(svc, 1)+versionsAt(svc, 10) > 0 })
	stop() // mid-stream, or just after: either way nothing may be lost
	produceVersions(11, 12)

	svc, base, stop := run()
	defer stop()
	waitFor(t, 30*time.Second, "every task at version 12", func() bool { return versionsAt(svc, 12) == ids })
	code, metrics := get(t, base+"/metrics")
	metrics = replicaLabel.ReplaceAllString(metrics, "") // every sample also names its replica
	if code != 200 || !strings.Contains(metrics, `duebridge_stream_lag{source="ops"}`) ||
		!strings.Contains(metrics, `duebridge_stream_records_total{outcome="applied",source="ops"}`) {
		t.Errorf("/metrics lacks the stream metrics (%d)", code)
	}
}

// TestNATSSourceWiring: a nats source in the config consumes from an
// embedded JetStream server once serve runs.
func TestNATSSourceWiring(t *testing.T) {
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "INC", Subjects: []string{"inc.>"}}); err != nil {
		t.Fatal(err)
	}
	ce := `{"specversion":"1.0","id":"e1","source":"/pager","type":"task","data":{"id":"N-1","title":"Postmortem","version":1,"assignees":["alice"]}}`
	if _, err := js.Publish(ctx, "inc.tasks", []byte(ce)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := writeConfig(t, dir, "alice")
	b, _ := os.ReadFile(cfgPath)
	b = append(b, fmt.Sprintf("  - name: inc\n    kind: nats\n    secret: inc-secret-123\n    stream:\n      url: %s\n      stream: INC\n", ns.ClientURL())...)
	writeAtomic(t, cfgPath, string(b))
	r := start(t, cfgPath)
	waitFor(t, 20*time.Second, "N-1 stored", func() bool {
		found := false
		testsvc.Store(t, r.svc).View(ctx, func(tx store.Tx) error {
			task, err := tx.Task("inc", "N-1")
			found = err == nil && task.Title == "Postmortem"
			return nil
		})
		return found
	})
}
