package webhook

import (
	"context"
	"errors"
	"fmt"

	"github.com/duebridge/duebridge/bridge"
)

// StreamIngester is what a StreamSink needs of the core.
type StreamIngester interface {
	// Ingest stores task records from source in one transaction; a
	// *bridge.FieldError names a bad one and nothing is stored.
	Ingest(ctx context.Context, source string, inputs []bridge.TaskInput) (bridge.Result, error)
}

var _ StreamIngester = (*bridge.Service)(nil)

// StreamSink applies records from event streams (Kafka, NATS) with Ingest;
// it implements the stream package's Sink. A record is what a webhook body
// is (Decode's JSON contract).
type StreamSink struct {
	core StreamIngester
}

// NewStreamSink returns a sink ingesting into core.
func NewStreamSink(core StreamIngester) *StreamSink { return &StreamSink{core: core} }

// Apply decodes and validates each record and ingests the good ones in one
// transaction (one fsync for a whole poll). bad[i] says why record i was left
// out; err means nothing was stored.
func (k *StreamSink) Apply(ctx context.Context, source string, values [][]byte) (bad []error, err error) {
	bad = make([]error, len(values))
	var tasks []bridge.TaskInput
	var owner []int // record index of each task
	for i, v := range values {
		in, err := Decode(v)
		if err != nil {
			bad[i] = fmt.Errorf("decode: %w", err)
			continue
		}
		var fe *bridge.FieldError
		for j := range in {
			if fe = in[j].Validate(); fe != nil {
				if len(in) > 1 {
					fe.Index = j
				}
				break
			}
		}
		if fe != nil {
			bad[i] = fe
			continue
		}
		for range in {
			owner = append(owner, i)
		}
		tasks = append(tasks, in...)
	}
	for len(tasks) > 0 {
		_, err := k.core.Ingest(ctx, source, tasks)
		var fe *bridge.FieldError
		if !errors.As(err, &fe) {
			return bad, err // nil, or transient: nothing stored
		}
		// Validated above, so this is unexpected; drop the named record and
		// try the rest rather than retry a deterministic failure forever.
		t := max(fe.Index, 0)
		rec := owner[t]
		bad[rec] = fe
		keep, keepOwner := tasks[:0], owner[:0]
		for j := range tasks {
			if owner[j] != rec {
				keep, keepOwner = append(keep, tasks[j]), append(keepOwner, owner[j])
			}
		}
		tasks, owner = keep, keepOwner
	}
	return bad, nil
}
