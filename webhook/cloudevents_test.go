package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/webhook"
)

// ceTask is a task record at version v, as a CloudEvent's data.
func ceTask(id string, v int) map[string]any {
	return map[string]any{"id": id, "title": fmt.Sprintf("Deploy window v%d", v), "assignees": []string{"alice"},
		"status": "open", "version": v}
}

func ceEvent(id string, data any) map[string]any {
	return map[string]any{"specversion": "1.0", "id": id, "source": "/ops/deploys", "type": "com.example.task.updated",
		"datacontenttype": "application/json", "time": time.Now().UTC().Add(-time.Minute).Format(time.RFC3339),
		"traceparent": "00-x", "data": data}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// postCE sends a signed CloudEvents request of the given Content-Type.
func postCE(t *testing.T, srv *httptest.Server, ct string, body []byte, hdr ...string) reply {
	t.Helper()
	return post(t, srv, "tracker", body, webhook.Sign(testsvc.Secret, body), append([]string{"Content-Type", ct}, hdr...)...)
}

func counts(r reply) (int, int) {
	a, _ := r.body["accepted"].(float64)
	i, _ := r.body["ignored"].(float64)
	return int(a), int(i)
}

func wantCounts(t *testing.T, step string, r reply, accepted, ignored int) {
	t.Helper()
	if a, i := counts(r); r.status != 200 || a != accepted || i != ignored {
		t.Errorf("%s: %d %v, want 200 accepted %d ignored %d", step, r.status, r.body, accepted, ignored)
	}
}

func storedTitle(t *testing.T, svc *bridge.Service, id string) string {
	t.Helper()
	var title string
	err := testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
		tk, err := tx.Task("tracker", id)
		if err == nil {
			title = tk.Title
		}
		return err
	})
	if err != nil {
		t.Fatalf("task %s: %v", id, err)
	}
	return title
}

// TestCloudEventsStructured: an event in the JSON format carries the task
// record in data; its source and id make a re-sent event a no-op, even
// with other data (the ordering rule alone would apply that).
func TestCloudEventsStructured(t *testing.T) {
	t.Parallel()
	srv, svc := newServer(t)
	wantCounts(t, "first", postCE(t, srv, "application/cloudevents+json; charset=utf-8", mustJSON(t, ceEvent("ev-1", ceTask("D-1", 1)))), 1, 0)
	before := snapshot(t, svc)
	r := postCE(t, srv, "application/cloudevents+json", mustJSON(t, ceEvent("ev-1", ceTask("D-1", 2))))
	wantCounts(t, "same event id again", r, 0, 1)
	if snapshot(t, svc) != before {
		t.Error("a re-sent event changed the store")
	}
	wantCounts(t, "next event", postCE(t, srv, "application/cloudevents+json", mustJSON(t, ceEvent("ev-2", ceTask("D-1", 2)))), 1, 0)
	if got := storedTitle(t, svc, "D-1"); got != "Deploy window v2" {
		t.Errorf("title %q after ev-2", got)
	}
	// The same id from another source is another event.
	ev := ceEvent("ev-1", ceTask("D-1", 3))
	ev["source"] = "/ops/other"
	wantCounts(t, "same id, other source", postCE(t, srv, "application/cloudevents+json", mustJSON(t, ev)), 1, 0)
}

// TestCloudEventsBinary: attributes in ce-* headers, the task record as the
// body; ce-id (with ce-source) is the replay key.
func TestCloudEventsBinary(t *testing.T) {
	t.Parallel()
	srv, svc := newServer(t)
	hdr := func(id string) []string {
		return []string{"ce-specversion", "1.0", "ce-id", id, "ce-source", "/ops/deploys", "ce-type", "com.example.task.updated"}
	}
	wantCounts(t, "first", postCE(t, srv, "application/json", mustJSON(t, ceTask("B-1", 1)), hdr("b-1")...), 1, 0)
	before := snapshot(t, svc)
	wantCounts(t, "same ce-id", postCE(t, srv, "application/json", mustJSON(t, ceTask("B-1", 2)), hdr("b-1")...), 0, 1)
	if snapshot(t, svc) != before {
		t.Error("a re-sent event changed the store")
	}
	wantCounts(t, "new ce-id", postCE(t, srv, "application/json", mustJSON(t, ceTask("B-1", 2)), hdr("b-2")...), 1, 0)
	// An array of records in one event is one unit.
	body := mustJSON(t, []any{ceTask("B-2", 1), ceTask("B-3", 1)})
	wantCounts(t, "array", postCE(t, srv, "application/json", body, hdr("b-3")...), 2, 0)
	wantCounts(t, "array again", postCE(t, srv, "application/json", body, hdr("b-3")...), 0, 2)
}

// TestCloudEventsBatch: a batch is applied in one transaction; events
// already handled are counted as ignored and the rest applied.
func TestCloudEventsBatch(t *testing.T) {
	t.Parallel()
	srv, svc := newServer(t)
	const ct = "application/cloudevents-batch+json"
	batch := []any{ceEvent("e1", ceTask("A-1", 1)), ceEvent("e2", ceTask("A-2", 1)), ceEvent("e3", ceTask("A-3", 1))}
	wantCounts(t, "batch", postCE(t, srv, ct, mustJSON(t, batch)), 3, 0)
	batch = []any{ceEvent("e2", ceTask("A-2", 5)), ceEvent("e4", ceTask("A-2", 2)), ceEvent("e3", ceTask("A-3", 5))}
	wantCounts(t, "batch with two re-sent", postCE(t, srv, ct, mustJSON(t, batch)), 1, 2)
	if got := storedTitle(t, svc, "A-2"); got != "Deploy window v2" {
		t.Errorf("A-2 title %q, want v2 (e4's, not the re-sent e2's)", got)
	}
	// A record the core refuses is named by its event's index in the
	// batch, even when re-sent events before it were left out.
	before := snapshot(t, svc)
	bad := ceTask("A-9", 1)
	bad["priority"] = "urgent!!"
	batch = []any{ceEvent("e1", ceTask("A-1", 9)), ceEvent("e5", ceTask("A-5", 1)), ceEvent("e6", bad)}
	r := postCE(t, srv, ct, mustJSON(t, batch))
	if r.status != 400 || r.body["index"] != float64(2) || r.body["field"] != "priority" {
		t.Errorf("bad record in a batch: %d %v, want 400 naming index 2, priority", r.status, r.body)
	}
	if snapshot(t, svc) != before {
		t.Error("a refused batch changed the store")
	}
	// Nothing of a refused batch is remembered: sent again, fixed, it applies.
	batch[2] = ceEvent("e6", ceTask("A-9", 1))
	wantCounts(t, "fixed batch", postCE(t, srv, ct, mustJSON(t, batch)), 2, 1)
}

// TestCloudEventsRefused: malformed events are a 400 naming the attribute
// or data field, a bad signature a 401, and the store is unchanged.
func TestCloudEventsRefused(t *testing.T) {
	t.Parallel()
	srv, svc := newServer(t)
	const st, bt = "application/cloudevents+json", "application/cloudevents-batch+json"
	with := func(edit func(map[string]any)) []byte {
		ev := ceEvent("x", ceTask("R-1", 1))
		edit(ev)
		return mustJSON(t, ev)
	}
	badDue := ceTask("R-1", 1)
	badDue["due"] = "tomorrow"
	binary := []string{"ce-specversion", "1.0", "ce-id", "r", "ce-source", "/s", "ce-type", "t"}
	before := snapshot(t, svc)
	for _, c := range []struct {
		name, ct string
		body     []byte
		hdr      []string
		field    string
		index    any
	}{
		{"no specversion", st, with(func(m map[string]any) { delete(m, "specversion") }), nil, "specversion", nil},
		{"old specversion", st, with(func(m map[string]any) { m["specversion"] = "0.3" }), nil, "specversion", nil},
		{"no id", st, with(func(m map[string]any) { delete(m, "id") }), nil, "id", nil},
		{"no source", st, with(func(m map[string]any) { m["source"] = "" }), nil, "source", nil},
		{"no type", st, with(func(m map[string]any) { delete(m, "type") }), nil, "type", nil},
		{"id not a string", st, with(func(m map[string]any) { m["id"] = 7 }), nil, "id", nil},
		{"data_base64", st, with(func(m map[string]any) { delete(m, "data"); m["data_base64"] = "e30=" }), nil, "data_base64", nil},
		{"no data", st, with(func(m map[string]any) { delete(m, "data") }), nil, "data", nil},
		{"xml data", st, with(func(m map[string]any) { m["datacontenttype"] = "application/xml" }), nil, "datacontenttype", nil},
		{"bad due in data", st, with(func(m map[string]any) { m["data"] = badDue }), nil, "data.due", nil},
		{"unknown field in data", st, with(func(m map[string]any) { m["data"] = map[string]any{"id": "R", "titel": "x"} }), nil, "data.titel", nil},
		{"not an object", st, []byte(`[1]`), nil, "body", nil},
		{"malformed", st, []byte(`{"specversion":`), nil, "body", nil},
		{"batch not an array", bt, with(func(map[string]any) {}), nil, "body", nil},
		{"empty batch", bt, []byte(`[]`), nil, "body", nil},
		{"bad due in batch", bt, mustJSON(t, []any{ceEvent("a", ceTask("R-2", 1)), ceEvent("b", badDue)}), nil, "data.due", float64(1)},
		{"array data in batch", bt, mustJSON(t, []any{ceEvent("a", []any{ceTask("R-2", 1)})}), nil, "data", float64(0)},
		{"binary without ce-id", "application/json", mustJSON(t, ceTask("R-1", 1)), []string{"ce-specversion", "1.0", "ce-source", "/s", "ce-type", "t"}, "ce-id", nil},
		{"binary old specversion", "application/json", mustJSON(t, ceTask("R-1", 1)), []string{"ce-specversion", "0.3", "ce-id", "r", "ce-source", "/s", "ce-type", "t"}, "ce-specversion", nil},
		{"binary bad due", "application/json", mustJSON(t, badDue), binary, "due", nil},
	} {
		r := postCE(t, srv, c.ct, c.body, c.hdr...)
		if r.status != 400 || r.body["field"] != c.field || r.body["index"] != c.index {
			t.Errorf("%s: %d %v, want 400 field %q index %v", c.name, r.status, r.body, c.field, c.index)
		}
	}
	body := mustJSON(t, ceEvent("x", ceTask("R-1", 1)))
	r := post(t, srv, "tracker", body, webhook.Sign("not-the-secret", body), "Content-Type", st)
	if r.status != 401 {
		t.Errorf("wrong secret: %d %v, want 401", r.status, r.body)
	}
	r = post(t, srv, "tracker", body, "", "Content-Type", st)
	if r.status != 401 {
		t.Errorf("unsigned: %d %v, want 401", r.status, r.body)
	}
	if snapshot(t, svc) != before {
		t.Error("refused events changed the store")
	}
	// The refusals are not remembered: the good event under those ids applies.
	wantCounts(t, "good after refusals", postCE(t, srv, st, body), 1, 0)
}
