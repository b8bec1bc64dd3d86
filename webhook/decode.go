package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
)

// MaxBatch is the largest number of tasks one request may carry.
const MaxBatch = 10_000

// wireTask is the contract's JSON. Pointers tell "absent" from "empty" where
// it matters; unknown fields are refused so typos are not silently lost.
type wireTask struct {
	ID          *string         `json:"id"`
	Title       *string         `json:"title"`
	Description string          `json:"description"`
	URL         string          `json:"url"`
	Project     string          `json:"project"`
	Assignees   []string        `json:"assignees"`
	Labels      []string        `json:"labels"`
	Start       string          `json:"start"`
	Due         string          `json:"due"`
	Status      string          `json:"status"`
	Priority    string          `json:"priority"`
	UpdatedAt   string          `json:"updated_at"`
	Version     json.RawMessage `json:"version"`
	Deleted     bool            `json:"deleted"`
}

// Decode parses a body holding one task object or an array of them. Errors
// are *bridge.FieldError naming the field (with the index in a batch); the
// values are validated when they are ingested.
func Decode(body []byte) ([]bridge.TaskInput, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, &bridge.FieldError{Index: -1, Field: "body", Reason: "empty; want a task object or an array of them"}
	}
	batch := trimmed[0] == '['
	var raws []json.RawMessage
	if batch {
		if err := json.Unmarshal(trimmed, &raws); err != nil {
			return nil, &bridge.FieldError{Index: -1, Field: "body", Reason: "malformed JSON: " + jsonReason(err)}
		}
		if len(raws) == 0 {
			return nil, &bridge.FieldError{Index: -1, Field: "body", Reason: "empty array"}
		}
		if len(raws) > MaxBatch {
			return nil, &bridge.FieldError{Index: -1, Field: "body", Reason: fmt.Sprintf("more than %d tasks in one request", MaxBatch)}
		}
	} else {
		raws = []json.RawMessage{trimmed}
	}
	out := make([]bridge.TaskInput, len(raws))
	for i, raw := range raws {
		idx := -1
		if batch {
			idx = i
		}
		in, err := decodeOne(raw)
		if err != nil {
			err.Index = idx
			return nil, err
		}
		out[i] = in // validated by bridge.Ingest, the one place for every source
	}
	return out, nil
}

func decodeOne(raw []byte) (bridge.TaskInput, *bridge.FieldError) {
	fe := func(field, format string, a ...any) *bridge.FieldError {
		return &bridge.FieldError{Field: field, Reason: fmt.Sprintf(format, a...)}
	}
	var w wireTask
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return bridge.TaskInput{}, fe(te.Field, "must be a %s, not %s", jsonType(te.Type.String()), te.Value)
		}
		if msg := err.Error(); strings.HasPrefix(msg, "json: unknown field ") {
			return bridge.TaskInput{}, fe(strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`), "unknown field")
		}
		return bridge.TaskInput{}, fe("body", "malformed JSON: %s", jsonReason(err))
	}
	if dec.More() {
		return bridge.TaskInput{}, fe("body", "trailing data after the JSON value")
	}
	if w.ID == nil {
		return bridge.TaskInput{}, fe("id", "required")
	}
	in := bridge.TaskInput{
		ID: *w.ID, Description: w.Description, URL: w.URL, Project: w.Project,
		Assignees: w.Assignees, Labels: w.Labels, Status: w.Status, Priority: w.Priority, Deleted: w.Deleted,
	}
	if w.Title != nil {
		in.Title = *w.Title
	}
	var err error
	if in.Start, err = parseWhen(w.Start); err != nil {
		return in, fe("start", "%v", err)
	}
	if in.Due, err = parseWhen(w.Due); err != nil {
		return in, fe("due", "%v", err)
	}
	if w.UpdatedAt != "" {
		t, err := time.Parse(time.RFC3339Nano, w.UpdatedAt)
		if err != nil {
			return in, fe("updated_at", "not an RFC 3339 date-time: %q", w.UpdatedAt)
		}
		in.UpdatedAt = t.UTC()
	}
	if len(w.Version) > 0 && string(w.Version) != "null" {
		var v json.Number
		if err := json.Unmarshal(w.Version, &v); err != nil {
			return in, fe("version", "must be a non-negative integer")
		}
		n, err := v.Int64()
		if err != nil || n < 0 {
			return in, fe("version", "must be a non-negative integer, got %s", v)
		}
		in.Version = n
	}
	return in, nil
}

// parseWhen reads an RFC 3339 date-time, or a date alone for all-day.
func parseWhen(s string) (bridge.When, error) {
	if s == "" {
		return bridge.When{}, nil
	}
	if len(s) == len("2006-01-02") {
		d, err := time.Parse("2006-01-02", s)
		if err != nil {
			return bridge.When{}, fmt.Errorf("not a date (YYYY-MM-DD): %q", s)
		}
		return bridge.When{Time: d, AllDay: true}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return bridge.When{}, fmt.Errorf("not an RFC 3339 date-time or a YYYY-MM-DD date: %q", s)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return bridge.When{}, fmt.Errorf("year out of range: %q", s)
	}
	return bridge.When{Time: t.UTC().Truncate(time.Second)}, nil
}

func jsonReason(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonType(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "array of strings"
	case goType == "string" || goType == "*string":
		return "string"
	case goType == "bool":
		return "boolean"
	}
	return goType
}
