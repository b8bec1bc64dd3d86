package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/stream"
	"github.com/duebridge/duebridge/webhook"
)

// streamRunner is one started consumer of a kafka or nats source.
type streamRunner interface{ Run(context.Context) error }

// startStreams builds a consumer per kafka/nats source of cfg. Records are
// decoded with the webhook's contract and ingested by the core. Sources
// added or changed by a reload start with the next restart.
func startStreams(cfg *config.Config, svc *bridge.Service, log *slog.Logger, goRun func(string, func() error), ctx context.Context) error {
	var metrics *stream.Metrics
	sink := webhook.NewStreamSink(svc)
	for _, src := range cfg.Sources {
		s := src.Stream
		if s == nil {
			continue
		}
		if metrics == nil {
			metrics = stream.NewMetrics(svc.Registry())
		}
		tlsConf, err := streamTLS(s)
		if err != nil {
			return fmt.Errorf("source %s: %w", src.Name, err)
		}
		var r streamRunner
		switch src.Kind {
		case "kafka":
			r = stream.NewKafka(sink, stream.KafkaOptions{Source: src.Name, Brokers: s.Brokers, Topics: s.Topics, Group: s.Group,
				DeadLetter: s.DeadLetter, TLS: tlsConf, SASL: s.SASL, Username: s.Username, Password: s.Password,
				Logger: log, Metrics: metrics, MaxRecordBytes: cfg.Limits.WebhookBodyBytes})
		case "nats":
			r = stream.NewNATS(sink, stream.NATSOptions{Source: src.Name, URL: s.URL, Stream: s.Stream, Subjects: s.Subjects,
				Durable: s.Durable, DeadLetter: s.DeadLetter, TLS: tlsConf, Username: s.Username, Password: s.Password,
				Logger: log, Metrics: metrics, MaxRecordBytes: cfg.Limits.WebhookBodyBytes})
		default:
			continue
		}
		goRun("source "+src.Name, func() error { return r.Run(ctx) })
	}
	return nil
}

func streamTLS(s *config.Stream) (*tls.Config, error) {
	if !s.TLS {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read stream ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("stream ca_file %s: no PEM certificates", s.CAFile)
		}
	}
	return c, nil
}
