package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/stream"
	"github.com/duebridge/duebridge/webhook"
)

// BenchmarkKafkaDurable measures records applied durably per second: from
// a kfake topic through the consumer, decode, one SQLite transaction per
// partition poll, to the committed offset. Producing is outside the timer.
func BenchmarkKafkaDurable(b *testing.B) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "tasks"))
	if err != nil {
		b.Fatal(err)
	}
	defer cluster.Close()
	prod, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	rs := make([]*kgo.Record, b.N)
	for i := range rs {
		rs[i] = &kgo.Record{Topic: "tasks", Value: record(fmt.Sprintf("T-%d", i%1000), i/1000+1)}
	}
	if err := prod.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		b.Fatal(err)
	}
	svc := testsvc.New(b, testsvc.Options{})
	metrics := stream.NewMetrics(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	applied := metrics.Records.WithLabelValues("tracker", "applied")
	b.ResetTimer()
	start := time.Now()
	go stream.NewKafka(webhook.NewStreamSink(svc), stream.KafkaOptions{Source: "tracker",
		Brokers: cluster.ListenAddrs(), Topics: []string{"tasks"}, Group: "bench", Logger: quiet, Metrics: metrics}).Run(ctx)
	for testutil.ToFloat64(applied) < float64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
