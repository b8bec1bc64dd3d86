package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"

	"github.com/duebridge/duebridge/bridge"
)

// CloudEvents over HTTP (the CNCF envelope, HTTP protocol binding 1.0) on
// the generic webhook: the event's data is a task record in the contract's
// format. The request is signed exactly as a plain one; the event's
// source and id name it for the replay window, as a tracker's delivery id
// does.
const (
	ceStructuredType = "application/cloudevents+json"
	ceBatchType      = "application/cloudevents-batch+json"
	// ceSpecVersion is the binary-mode header that marks a CloudEvent.
	ceSpecVersion = "Ce-Specversion"
)

// ceUnit is what one request carries: its task records, in units that are
// each replayed or not as a whole (one per CloudEvent; one for a plain
// request), with the index each record's errors are reported under.
type ceUnit struct {
	key   string // replay key; "" for a plain request
	tasks []bridge.TaskInput
	index int // the event's place in a batch, -1 outside one
}

// ceEvent is a CloudEvent in the JSON event format. Extension attributes
// are allowed, and ignored.
type ceEvent struct {
	SpecVersion     *string         `json:"specversion"`
	ID              *string         `json:"id"`
	Source          *string         `json:"source"`
	Type            *string         `json:"type"`
	DataContentType *string         `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
	DataBase64      *string         `json:"data_base64"`
}

// decodeRequest reads a generic webhook body in whichever mode the request
// is in: a plain task record or array of them, or a CloudEvent in binary,
// structured or batch mode.
func decodeRequest(h http.Header, body []byte) ([]ceUnit, error) {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type")) // checked by ServeHTTP
	switch {
	case mt == ceStructuredType:
		ev, err := decodeEvent(body, -1)
		if err != nil {
			return nil, err
		}
		return []ceUnit{ev}, nil
	case mt == ceBatchType:
		return decodeEventBatch(body)
	case h.Get(ceSpecVersion) != "":
		return decodeBinary(h, body)
	}
	tasks, err := Decode(body)
	if err != nil {
		return nil, err
	}
	return []ceUnit{{tasks: tasks, index: -1}}, nil
}

// ceKey is an event's replay key: CloudEvents makes source and id unique
// together, and repeats them when an event is re-sent.
func ceKey(source, id string) string { return "ce:" + source + "\x00" + id }

// decodeBinary reads binary mode: the event attributes in ce-* headers, the
// body the data (the task record, or an array of them).
func decodeBinary(h http.Header, body []byte) ([]ceUnit, error) {
	if v := h.Get(ceSpecVersion); v != "1.0" {
		return nil, fieldErr("ce-specversion", "unsupported CloudEvents version %q (want 1.0)", v)
	}
	for _, name := range []string{"ce-id", "ce-source", "ce-type"} {
		if h.Get(name) == "" {
			return nil, fieldErr(name, "required header in CloudEvents binary mode")
		}
	}
	tasks, err := Decode(body)
	if err != nil {
		return nil, err
	}
	return []ceUnit{{key: ceKey(h.Get("ce-source"), h.Get("ce-id")), tasks: tasks, index: -1}}, nil
}

// decodeEventBatch reads batch mode: a JSON array of structured events,
// each carrying one task record; errors name the event's index.
func decodeEventBatch(body []byte) ([]ceUnit, error) {
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '[' {
		return nil, fieldErr("body", "must be a JSON array of CloudEvents in batch mode")
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, fieldErr("body", "malformed JSON: %s (want an array of CloudEvents)", jsonReason(err))
	}
	if len(raws) == 0 {
		return nil, fieldErr("body", "empty array")
	}
	if len(raws) > MaxBatch {
		return nil, fieldErr("body", "more than %d events in one request", MaxBatch)
	}
	out := make([]ceUnit, len(raws))
	for i, raw := range raws {
		u, err := decodeEvent(raw, i)
		if err != nil {
			return nil, err
		}
		out[i] = u
	}
	return out, nil
}

// decodeEvent reads one event in the JSON event format; index is its place
// in a batch (-1 outside one).
func decodeEvent(raw []byte, index int) (ceUnit, error) {
	fe := func(field, format string, a ...any) *bridge.FieldError {
		return &bridge.FieldError{Index: index, Field: field, Reason: fmt.Sprintf(format, a...)}
	}
	var ev ceEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return ceUnit{}, fe(te.Field, "must be a %s, not %s", jsonKind(te.Type.String()), te.Value)
		}
		if errors.As(err, &te) {
			return ceUnit{}, fe("body", "must be a CloudEvent object, not %s", te.Value)
		}
		return ceUnit{}, fe("body", "malformed JSON: %s", jsonReason(err))
	}
	switch {
	case ev.SpecVersion == nil:
		return ceUnit{}, fe("specversion", "required")
	case *ev.SpecVersion != "1.0":
		return ceUnit{}, fe("specversion", "unsupported CloudEvents version %q (want 1.0)", *ev.SpecVersion)
	case str(ev.ID) == "":
		return ceUnit{}, fe("id", "required")
	case str(ev.Source) == "":
		return ceUnit{}, fe("source", "required")
	case str(ev.Type) == "":
		return ceUnit{}, fe("type", "required")
	case ev.DataBase64 != nil:
		return ceUnit{}, fe("data_base64", "not accepted: send the task record as JSON in data")
	}
	if ct := str(ev.DataContentType); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return ceUnit{}, fe("datacontenttype", "must be application/json, not %q", ct)
		}
	}
	data := bytes.TrimSpace(ev.Data)
	if len(data) == 0 || string(data) == "null" {
		return ceUnit{}, fe("data", "required: the task record")
	}
	if index >= 0 && data[0] != '{' {
		return ceUnit{}, fe("data", "must be one task object in a batch")
	}
	tasks, err := Decode(data)
	if err != nil {
		var de *bridge.FieldError
		if errors.As(err, &de) {
			// Name the field inside data; in a batch the event's index
			// is the one that helps, a data array's index otherwise.
			e := &bridge.FieldError{Index: de.Index, Field: "data." + de.Field, Reason: de.Reason}
			if de.Field == "body" {
				e.Field = "data"
			}
			if index >= 0 {
				e.Index = index
			}
			return ceUnit{}, e
		}
		return ceUnit{}, err
	}
	return ceUnit{key: ceKey(*ev.Source, *ev.ID), tasks: tasks, index: index}, nil
}
