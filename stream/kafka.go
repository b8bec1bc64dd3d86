package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// KafkaOptions configure a Kafka source.
type KafkaOptions struct {
	Source     string // the source name the records are ingested as
	Brokers    []string
	Topics     []string
	Group      string
	DeadLetter string      // topic for malformed records; "" = log and skip
	TLS        *tls.Config // nil = plain TCP
	SASL       string      // "", plain, scram-sha-256, scram-sha-512
	Username   string
	Password   string
	Logger     *slog.Logger
	Metrics    *Metrics // nil = unregistered
	// MaxPoll bounds the records handled per poll (default 1000).
	MaxPoll int
	// MaxRecordBytes: larger records are malformed (0 = no limit).
	MaxRecordBytes int64
}

// Kafka consumes task records from Kafka topics in a consumer group.
type Kafka struct {
	o    KafkaOptions
	sink Sink
	log  *slog.Logger
	m    *Metrics

	mu  sync.Mutex
	lag map[string]map[int32]int64 // topic → partition → lag
}

// NewKafka returns a Kafka consumer; Run starts it.
func NewKafka(sink Sink, o KafkaOptions) *Kafka {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.MaxPoll <= 0 {
		o.MaxPoll = 1000
	}
	return &Kafka{o: o, sink: sink, log: o.Logger.With("source", o.Source, "kind", "kafka"), m: o.Metrics,
		lag: map[string]map[int32]int64{}}
}

func (k *Kafka) clientOpts() ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(k.o.Brokers...),
		kgo.ConsumerGroup(k.o.Group),
		kgo.ConsumeTopics(k.o.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), // a new group reads everything
		// Offsets are committed by hand, after the records are durable.
		kgo.DisableAutoCommit(),
		// No rebalance between a poll and its commit: the partitions we
		// commit are still ours.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { k.forget(lost) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, lost map[string][]int32) { k.forget(lost) }),
	}
	if k.o.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(k.o.TLS))
	}
	var mech sasl.Mechanism
	switch k.o.SASL {
	case "":
	case "plain":
		mech = plain.Auth{User: k.o.Username, Pass: k.o.Password}.AsMechanism()
	case "scram-sha-256":
		mech = scram.Auth{User: k.o.Username, Pass: k.o.Password}.AsSha256Mechanism()
	case "scram-sha-512":
		mech = scram.Auth{User: k.o.Username, Pass: k.o.Password}.AsSha512Mechanism()
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q", k.o.SASL)
	}
	if mech != nil {
		opts = append(opts, kgo.SASL(mech))
	}
	return opts, nil
}

// Run consumes until ctx ends. Records are applied partition by partition
// in offset order; the offsets of a poll are committed after every record
// of it was applied (or skipped as malformed). A crash in between
// redelivers them, which the ordering rule absorbs.
func (k *Kafka) Run(ctx context.Context) error {
	opts, err := k.clientOpts()
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.CloseAllowingRebalance()
	k.log.Info("kafka source consuming", "brokers", k.o.Brokers, "topics", k.o.Topics, "group", k.o.Group)
	failing := 0
	for {
		fetches := cl.PollRecords(ctx, k.o.MaxPoll)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		errs := 0
		for _, fe := range fetches.Errors() {
			if errors.Is(fe.Err, context.Canceled) {
				continue
			}
			errs++
			k.m.Errors.WithLabelValues(k.o.Source, "fetch").Inc()
			k.log.Warn("kafka fetch", "topic", fe.Topic, "partition", fe.Partition, "err", fe.Err)
		}
		if errs > 0 && fetches.NumRecords() == 0 {
			// Brokers unreachable or refusing: do not spin on the error.
			cl.AllowRebalance()
			if sleep(ctx, retryDelay(failing)) != nil {
				return nil
			}
			failing++
			continue
		}
		failing = 0
		var perr error
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			if perr != nil || len(p.Records) == 0 {
				return
			}
			perr = k.partition(ctx, cl, p)
		})
		if perr != nil {
			// ctx ended mid-poll: nothing of this poll is committed.
			cl.AllowRebalance()
			return nil
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil {
			cl.AllowRebalance()
			if ctx.Err() != nil {
				return nil
			}
			// The records stay uncommitted and come again after a
			// rebalance or restart; the ordering rule absorbs them.
			k.m.Errors.WithLabelValues(k.o.Source, "commit").Inc()
			k.log.Warn("kafka commit", "err", err)
			continue
		}
		cl.AllowRebalance()
	}
}

// partition applies one partition's records of a poll.
func (k *Kafka) partition(ctx context.Context, cl *kgo.Client, p kgo.FetchTopicPartition) error {
	values := make([][]byte, len(p.Records))
	for i, r := range p.Records {
		values[i] = r.Value
	}
	bad, err := applyAll(ctx, k.sink, k.o.Source, values, k.o.MaxRecordBytes, k.m, k.log)
	if err != nil {
		return err
	}
	applied := 0
	for i, e := range bad {
		if e == nil {
			applied++
			continue
		}
		r := p.Records[i]
		if err := k.deadLetter(ctx, cl, r, e); err != nil {
			return err
		}
	}
	k.m.Records.WithLabelValues(k.o.Source, "applied").Add(float64(applied))
	last := p.Records[len(p.Records)-1]
	k.setLag(p.Topic, p.Partition, p.HighWatermark-(last.Offset+1))
	return nil
}

// deadLetter logs and counts a malformed record and, if configured, copies
// it to the dead-letter topic (retrying until that is durable: the record
// must not be committed before its copy exists).
func (k *Kafka) deadLetter(ctx context.Context, cl *kgo.Client, r *kgo.Record, cause error) error {
	k.log.Warn("kafka record skipped: malformed", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", cause)
	if k.o.DeadLetter == "" {
		k.m.Records.WithLabelValues(k.o.Source, "malformed").Inc()
		return nil
	}
	dl := &kgo.Record{Topic: k.o.DeadLetter, Key: r.Key, Value: r.Value, Headers: append(r.Headers[:len(r.Headers):len(r.Headers)],
		kgo.RecordHeader{Key: "duebridge-error", Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: "duebridge-origin", Value: fmt.Appendf(nil, "%s/%d/%d", r.Topic, r.Partition, r.Offset)})}
	for attempt := 0; ; attempt++ {
		err := cl.ProduceSync(ctx, dl).FirstErr()
		if err == nil {
			k.m.Records.WithLabelValues(k.o.Source, "dead_lettered").Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		k.m.Errors.WithLabelValues(k.o.Source, "dead_letter").Inc()
		k.log.Warn("kafka dead-letter produce", "topic", k.o.DeadLetter, "err", err)
		if err := sleep(ctx, retryDelay(attempt)); err != nil {
			return err
		}
	}
}

func (k *Kafka) setLag(topic string, partition int32, lag int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.lag[topic] == nil {
		k.lag[topic] = map[int32]int64{}
	}
	k.lag[topic][partition] = max(lag, 0)
	k.publishLag()
}

func (k *Kafka) forget(lost map[string][]int32) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for t, ps := range lost {
		for _, p := range ps {
			delete(k.lag[t], p)
		}
	}
	k.publishLag()
}

func (k *Kafka) publishLag() {
	var sum int64
	for _, ps := range k.lag {
		for _, l := range ps {
			sum += l
		}
	}
	k.m.Lag.WithLabelValues(k.o.Source).Set(float64(sum))
}
