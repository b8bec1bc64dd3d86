package webhook_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/webhook"
)

// A label has a size cap (limits.task_label_bytes): one 8 MB webhook of
// long labels stored 84 MB, rendered into every assignee's objects.
func TestLabelCaps(t *testing.T) {
	srv, svc := newServer(t)
	before := snapshot(t, svc)
	long := strings.Repeat("x", 257)
	body := []byte(`[{"id":"a","title":"A","assignees":["alice"]},{"id":"b","title":"B","assignees":["alice"],"labels":["ok","` + long + `"]}]`)
	r := signed(t, srv, body)
	if r.status != 400 || r.body["field"] != "labels[1]" || r.body["index"] != 1.0 ||
		!strings.Contains(fmt.Sprint(r.body["error"]), "limits.task_label_bytes") {
		t.Fatalf("over-long label: %d %v, want 400 naming labels[1] at index 1", r.status, r.body)
	}
	many := make([]string, 101)
	for i := range many {
		many[i] = `"l` + strconv.Itoa(i) + `"`
	}
	r = signed(t, srv, []byte(`{"id":"c","title":"C","labels":[`+strings.Join(many, ",")+`]}`))
	if r.status != 400 || r.body["field"] != "labels" {
		t.Fatalf("101 labels: %d %v, want 400 naming labels", r.status, r.body)
	}
	r = signed(t, srv, []byte(`{"id":"c","title":"`+strings.Repeat("t", 1025)+`"}`))
	if r.status != 400 || r.body["field"] != "title" || !strings.Contains(fmt.Sprint(r.body["error"]), "limits.task_title_bytes") {
		t.Fatalf("long title: %d %v", r.status, r.body)
	}
	if after := snapshot(t, svc); after != before {
		t.Fatalf("a refused request changed the store:\n%s\n---\n%s", before, after)
	}
}

// An update without a version after versioned ones keeps the stored
// version, so a replay of an old version stays ignored (it moved a done
// task back to open).
func TestUnversionedUpdateKeepsOrdering(t *testing.T) {
	srv, svc := newServer(t)
	send := func(body string) map[string]any {
		t.Helper()
		r := signed(t, srv, []byte(body))
		if r.status != 200 {
			t.Fatalf("%s: %d %v", body, r.status, r.body)
		}
		return r.body
	}
	send(`{"id":"o","title":"T","status":"open","version":3}`)
	send(`{"id":"o","title":"T","status":"done","version":5}`)
	send(`{"id":"o","title":"T renamed","status":"done"}`) // no version
	if r := send(`{"id":"o","title":"T","status":"open","version":3}`); r["ignored"] != 1.0 {
		t.Errorf("replay of version 3 after an unversioned update: %v, want ignored", r)
	}
	if s := snapshot(t, svc); !strings.Contains(s, "task o T renamed done v5") {
		t.Errorf("store after the replay:\n%s\nwant task o T renamed done v5", s)
	}
}

// X-Duebridge-Timestamp is signed with the body and refused outside the
// window; a replay of a signed request inside the window is not applied
// again; require_timestamp refuses the old body-only signature.
func TestSignedTimestamp(t *testing.T) {
	srv, svc := newServer(t)
	now := svc.Now()
	body := []byte(`{"id":"ts","title":"T","status":"open"}`)
	ts, sig := webhook.SignAt(testsvc.Secret, now, body)
	if r := post(t, srv, "tracker", body, sig, webhook.TimestampHeader, ts); r.status != 200 || r.body["accepted"] != 1.0 {
		t.Fatalf("timestamped request: %d %v", r.status, r.body)
	}
	// The same request again, e.g. captured and replayed after the task
	// changed: not applied.
	signed(t, srv, []byte(`{"id":"ts","title":"T","status":"done"}`))
	before := snapshot(t, svc)
	if r := post(t, srv, "tracker", body, sig, webhook.TimestampHeader, ts); r.status != 200 || r.body["accepted"] != 0.0 {
		t.Fatalf("replayed timestamped request: %d %v, want 200 with nothing accepted", r.status, r.body)
	}
	// A body-only signature with a timestamp header, a stale timestamp,
	// and a timestamp the signature does not cover are refused.
	old := now.Add(-6 * time.Minute)
	ots, osig := webhook.SignAt(testsvc.Secret, old, body)
	for name, h := range map[string][2]string{
		"stale":          {ots, osig},
		"future":         {strconv.FormatInt(now.Add(6*time.Minute).Unix(), 10), ""},
		"body-only sig":  {ts, webhook.Sign(testsvc.Secret, body)},
		"not a number":   {"yesterday", sig},
		"other time sig": {strconv.FormatInt(now.Unix()+1, 10), sig},
	} {
		s := h[1]
		if s == "" {
			_, s = webhook.SignAt(testsvc.Secret, now.Add(6*time.Minute), body)
		}
		if r := post(t, srv, "tracker", body, s, webhook.TimestampHeader, h[0]); r.status != 401 {
			t.Errorf("%s: %d %v, want 401", name, r.status, r.body)
		}
	}
	if after := snapshot(t, svc); after != before {
		t.Fatalf("refused requests changed the store:\n%s\n---\n%s", before, after)
	}
	// require_timestamp: the body-only signature is refused.
	cfg := *svc.Config()
	cfg.Sources = append(cfg.Sources[:0:0], cfg.Sources...)
	cfg.Source("tracker").RequireTimestamp = true
	svc.SetConfig(t.Context(), &cfg)
	if r := signed(t, srv, body); r.status != 401 || !strings.Contains(fmt.Sprint(r.body["error"]), webhook.TimestampHeader) {
		t.Fatalf("body-only signature with require_timestamp: %d %v, want 401 naming the header", r.status, r.body)
	}
}
