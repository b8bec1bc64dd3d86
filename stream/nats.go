package stream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSOptions configure a NATS JetStream source.
type NATSOptions struct {
	Source     string // the source name the records are ingested as
	URL        string
	Stream     string   // the JetStream stream
	Subjects   []string // filter subjects; none = the whole stream
	Durable    string   // durable consumer name
	DeadLetter string   // subject for malformed messages (in some stream); "" = log and skip
	TLS        *tls.Config
	Username   string
	Password   string
	Logger     *slog.Logger
	Metrics    *Metrics
	// Batch bounds the messages handled per fetch (default 500).
	Batch int
	// MaxRecordBytes: larger messages are malformed (0 = no limit).
	MaxRecordBytes int64
	// AckWait is how long JetStream waits for an ack before redelivering
	// (default 30s). Transient store failures are retried within it.
	AckWait time.Duration
}

// NATS consumes task records with a durable JetStream pull consumer.
type NATS struct {
	o    NATSOptions
	sink Sink
	log  *slog.Logger
	m    *Metrics
}

// NewNATS returns a NATS consumer; Run starts it.
func NewNATS(sink Sink, o NATSOptions) *NATS {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	return &NATS{o: o, sink: sink, log: o.Logger.With("source", o.Source, "kind", "nats"), m: o.Metrics}
}

// Run consumes until ctx ends. A message is acked after it is durable (or
// terminated after a malformed one was dead-lettered or logged); a crash in
// between redelivers it after AckWait, which the ordering rule absorbs.
func (n *NATS) Run(ctx context.Context) error {
	opts := []nats.Option{nats.Name("duebridge " + n.o.Source), nats.MaxReconnects(-1)}
	if n.o.TLS != nil {
		opts = append(opts, nats.Secure(n.o.TLS))
	}
	if n.o.Username != "" {
		opts = append(opts, nats.UserInfo(n.o.Username, n.o.Password))
	}
	var nc *nats.Conn
	for attempt := 0; ; attempt++ {
		var err error
		if nc, err = nats.Connect(n.o.URL, opts...); err == nil {
			break
		}
		n.m.Errors.WithLabelValues(n.o.Source, "fetch").Inc()
		n.log.Warn("nats connect", "url", n.o.URL, "err", err)
		if err := sleep(ctx, retryDelay(attempt)); err != nil {
			return nil
		}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	var cons jetstream.Consumer
	for attempt := 0; ; attempt++ {
		cons, err = js.CreateOrUpdateConsumer(ctx, n.o.Stream, jetstream.ConsumerConfig{
			Durable: n.o.Durable, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
			FilterSubjects: n.o.Subjects, AckWait: n.o.AckWait,
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		n.m.Errors.WithLabelValues(n.o.Source, "fetch").Inc()
		n.log.Warn("nats consumer", "stream", n.o.Stream, "durable", n.o.Durable, "err", err)
		if err := sleep(ctx, retryDelay(attempt)); err != nil {
			return nil
		}
	}
	n.log.Info("nats source consuming", "url", n.o.URL, "stream", n.o.Stream, "durable", n.o.Durable)
	idle := false
	for attempt := 0; ctx.Err() == nil; {
		msgs, err := n.fetch(ctx, cons, idle)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			n.m.Errors.WithLabelValues(n.o.Source, "fetch").Inc()
			n.log.Warn("nats fetch", "err", err)
			sleep(ctx, retryDelay(attempt))
			attempt++
			continue
		}
		attempt = 0
		idle = len(msgs) == 0
		if idle {
			continue
		}
		if err := n.handle(ctx, js, msgs); err != nil {
			return nil // ctx ended: the unacked messages come again
		}
	}
	return nil
}

// fetch returns what is there, at once, up to Batch; when idle it waits
// for one message (up to 5s), so an idle source costs a request per wait.
func (n *NATS) fetch(ctx context.Context, cons jetstream.Consumer, idle bool) ([]jetstream.Msg, error) {
	var b jetstream.MessageBatch
	var err error
	if idle {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		b, err = cons.Fetch(1, jetstream.FetchContext(wctx))
	} else {
		b, err = cons.FetchNoWait(n.o.Batch)
	}
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, nats.ErrTimeout) && !errors.Is(err, jetstream.ErrNoMessages) {
		return msgs, err
	}
	return msgs, nil
}

func (n *NATS) handle(ctx context.Context, js jetstream.JetStream, msgs []jetstream.Msg) error {
	values := make([][]byte, len(msgs))
	for i, m := range msgs {
		values[i] = m.Data()
	}
	bad, err := applyAll(ctx, n.sink, n.o.Source, values, n.o.MaxRecordBytes, n.m, n.log)
	if err != nil {
		return err
	}
	applied := 0
	for i, m := range msgs {
		if bad[i] != nil {
			if err := n.deadLetter(ctx, js, m, bad[i]); err != nil {
				return err
			}
			// Term: JetStream never redelivers it.
			if err := m.Term(); err != nil {
				n.m.Errors.WithLabelValues(n.o.Source, "commit").Inc()
			}
			continue
		}
		applied++
		if err := m.Ack(); err != nil {
			// Redelivered after AckWait; the ordering rule absorbs it.
			n.m.Errors.WithLabelValues(n.o.Source, "commit").Inc()
			n.log.Warn("nats ack", "err", err)
		}
	}
	n.m.Records.WithLabelValues(n.o.Source, "applied").Add(float64(applied))
	if md, err := msgs[len(msgs)-1].Metadata(); err == nil {
		n.m.Lag.WithLabelValues(n.o.Source).Set(float64(md.NumPending))
	}
	return nil
}

// deadLetter logs and counts a malformed message and, if configured,
// publishes it to the dead-letter subject, waiting for JetStream's ack.
func (n *NATS) deadLetter(ctx context.Context, js jetstream.JetStream, m jetstream.Msg, cause error) error {
	origin := m.Subject()
	if md, err := m.Metadata(); err == nil {
		origin = fmt.Sprintf("%s/%s/%d", md.Stream, m.Subject(), md.Sequence.Stream)
	}
	n.log.Warn("nats message skipped: malformed", "origin", origin, "err", cause)
	if n.o.DeadLetter == "" {
		n.m.Records.WithLabelValues(n.o.Source, "malformed").Inc()
		return nil
	}
	dl := nats.NewMsg(n.o.DeadLetter)
	dl.Data = m.Data()
	dl.Header.Set("Duebridge-Error", cause.Error())
	dl.Header.Set("Duebridge-Origin", origin)
	for attempt := 0; ; attempt++ {
		_, err := js.PublishMsg(ctx, dl)
		if err == nil {
			n.m.Records.WithLabelValues(n.o.Source, "dead_lettered").Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		n.m.Errors.WithLabelValues(n.o.Source, "dead_letter").Inc()
		n.log.Warn("nats dead-letter publish", "subject", n.o.DeadLetter, "err", err)
		if err := sleep(ctx, retryDelay(attempt)); err != nil {
			return err
		}
	}
}
