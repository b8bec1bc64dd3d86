package bridge

import (
	"context"
	"errors"
	"fmt"
)

// StreamSink applies records from event streams (Kafka, NATS) with Ingest;
// it implements the stream package's Sink. Decode is the task record
// decoder (the webhook's JSON contract), injected so the core does not
// import an adapter.
type StreamSink struct {
	s      *Service
	decode func([]byte) ([]TaskInput, error)
}

// NewStreamSink returns a sink over s decoding records with decode.
func NewStreamSink(s *Service, decode func([]byte) ([]TaskInput, error)) *StreamSink {
	return &StreamSink{s: s, decode: decode}
}

// Apply decodes and validates each record and ingests the good ones in one
// transaction (one fsync for a whole poll). bad[i] says why record i was left
// out; err means nothing was stored.
func (k *StreamSink) Apply(ctx context.Context, source string, values [][]byte) (bad []error, err error) {
	bad = make([]error, len(values))
	var tasks []TaskInput
	var owner []int // record index of each task
	for i, v := range values {
		in, err := k.decode(v)
		if err != nil {
			bad[i] = fmt.Errorf("decode: %w", err)
			continue
		}
		var fe *FieldError
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
		_, err := k.s.Ingest(ctx, source, tasks)
		var fe *FieldError
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
