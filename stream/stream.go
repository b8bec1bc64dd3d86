// Package stream consumes task records from event brokers: Kafka (consumer
// groups, via franz-go) and NATS JetStream (durable consumers). Each
// message's value is one task record in the webhook's JSON, or a CloudEvent
// (structured JSON mode) carrying one in data.
//
// Delivery is at-least-once: a message is acknowledged (Kafka offset
// committed, JetStream message acked) only after the Sink reported it
// durable. A redelivered message is absorbed by the ordering rule of the
// core (same version or updated_at is ignored). A malformed message is
// logged, counted and skipped, or copied to a dead-letter topic/subject
// first; it never blocks its partition.
package stream

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrMalformed marks a record that can never be applied (bad JSON, a bad
// field). Errors wrapping it are skipped (or dead-lettered), not retried.
var ErrMalformed = errors.New("malformed record")

// Sink applies task records; cmd wires it to the core's Ingest.
type Sink interface {
	// Apply applies the records of one source, in order. bad has one entry
	// per value: nil, or why the record was left out (it can never apply:
	// bad JSON, a bad field). err non-nil means nothing was stored (a
	// transient failure: the caller retries). When err is nil, every record
	// without a bad entry is durable.
	Apply(ctx context.Context, source string, values [][]byte) (bad []error, err error)
}

// Unwrap returns the task record of a message: the value itself, or the
// data of a CloudEvent (structured JSON mode, specversion 1.0), which must
// be JSON (datacontenttype absent or a JSON type) or data_base64 of JSON.
func Unwrap(value []byte) ([]byte, error) {
	v := bytes.TrimLeft(value, " \t\r\n")
	if len(v) == 0 || v[0] != '{' || !bytes.Contains(v, []byte(`"specversion"`)) {
		return value, nil
	}
	var ce struct {
		SpecVersion     *string         `json:"specversion"`
		ID              string          `json:"id"`
		Source          string          `json:"source"`
		Type            string          `json:"type"`
		DataContentType string          `json:"datacontenttype"`
		Data            json.RawMessage `json:"data"`
		DataBase64      *string         `json:"data_base64"`
	}
	if err := json.Unmarshal(v, &ce); err != nil || ce.SpecVersion == nil {
		// Not a CloudEvent after all (or broken JSON): the decoder names it.
		return value, nil
	}
	bad := func(format string, a ...any) ([]byte, error) {
		return nil, fmt.Errorf("%w: cloudevent: %s", ErrMalformed, fmt.Sprintf(format, a...))
	}
	if *ce.SpecVersion != "1.0" {
		return bad("specversion %q (want 1.0)", *ce.SpecVersion)
	}
	if ce.ID == "" || ce.Source == "" || ce.Type == "" {
		return bad("id, source and type are required")
	}
	if ce.DataContentType != "" {
		mt, _, err := mime.ParseMediaType(ce.DataContentType)
		if err != nil || (mt != "application/json" && !(len(mt) > 5 && mt[len(mt)-5:] == "+json")) {
			return bad("datacontenttype %q (want application/json)", ce.DataContentType)
		}
	}
	switch {
	case ce.DataBase64 != nil && len(ce.Data) > 0:
		return bad("both data and data_base64")
	case ce.DataBase64 != nil:
		b, err := base64.StdEncoding.DecodeString(*ce.DataBase64)
		if err != nil {
			return bad("data_base64 is not base64")
		}
		return b, nil
	case len(ce.Data) == 0 || string(ce.Data) == "null":
		return bad("no data")
	}
	return ce.Data, nil
}

// Metrics of the stream consumers, labelled by source.
type Metrics struct {
	Records *prometheus.CounterVec // source, outcome: applied | malformed | dead_lettered
	Errors  *prometheus.CounterVec // source, op: fetch | apply | commit | dead_letter
	Lag     *prometheus.GaugeVec   // source: messages not yet applied, as the broker last said
}

// NewMetrics makes the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_stream_records_total", Help: "Stream records by source and outcome (applied, malformed, dead_lettered).",
		}, []string{"source", "outcome"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "duebridge_stream_errors_total", Help: "Stream consumer errors by source and operation (fetch, apply, commit, dead_letter).",
		}, []string{"source", "op"}),
		Lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "duebridge_stream_lag", Help: "Records of a stream source the broker holds that are not applied yet.",
		}, []string{"source"}),
	}
	if reg != nil {
		reg.MustRegister(m.Records, m.Errors, m.Lag)
	}
	return m
}

// retryDelay is the pause after a transient failure: doubling from 100ms
// to 30s.
func retryDelay(attempt int) time.Duration {
	d := 100 * time.Millisecond << min(attempt, 9)
	return min(d, 30*time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// applyAll unwraps values and applies them, retrying transient failures
// until ctx ends. It returns the per-record errors (ErrMalformed).
func applyAll(ctx context.Context, sink Sink, source string, values [][]byte, maxBytes int64, m *Metrics, log *slog.Logger) ([]error, error) {
	bad := make([]error, len(values))
	records := make([][]byte, 0, len(values))
	idx := make([]int, 0, len(values))
	for i, v := range values {
		if maxBytes > 0 && int64(len(v)) > maxBytes {
			bad[i] = fmt.Errorf("%w: %d bytes, over limits.webhook_body_bytes (%d)", ErrMalformed, len(v), maxBytes)
			continue
		}
		r, err := Unwrap(v)
		if err != nil {
			bad[i] = err
			continue
		}
		records = append(records, r)
		idx = append(idx, i)
	}
	if len(records) == 0 {
		return bad, nil
	}
	for attempt := 0; ; attempt++ {
		b, err := sink.Apply(ctx, source, records)
		if err == nil {
			for j, e := range b {
				if e != nil {
					bad[idx[j]] = e
				}
			}
			return bad, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		m.Errors.WithLabelValues(source, "apply").Inc()
		log.Warn("stream records not applied; retrying", "records", len(records), "attempt", attempt+1, "err", err)
		if err := sleep(ctx, retryDelay(attempt)); err != nil {
			return nil, err
		}
	}
}
