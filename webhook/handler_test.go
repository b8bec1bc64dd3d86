package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/webhook"
)

func newServer(t testing.TB) (*httptest.Server, *bridge.Service) {
	t.Helper()
	svc := testsvc.New(t, testsvc.Options{})
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", webhook.NewHandler(svc, webhook.Options{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, svc
}

type reply struct {
	status int
	body   map[string]any
}

func post(t testing.TB, srv *httptest.Server, source string, body []byte, sig string, hdr ...string) reply {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/hooks/"+source, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set(webhook.SignatureHeader, sig)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode}
	if err := json.Unmarshal(raw, &r.body); err != nil {
		t.Fatalf("reply is not JSON (%d): %q", resp.StatusCode, raw)
	}
	return r
}

func signed(t testing.TB, srv *httptest.Server, body []byte) reply {
	t.Helper()
	return post(t, srv, "tracker", body, webhook.Sign(testsvc.Secret, body))
}

// snapshot is everything the store holds for source "tracker", to prove a
// refused request changed nothing.
func snapshot(t testing.TB, svc *bridge.Service) string {
	t.Helper()
	return testsvc.StoreState(t, svc, "tracker")
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "webhook", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestContractStatuses(t *testing.T) {
	srv, svc := newServer(t)
	good := readFile(t, "single.json")
	if r := signed(t, srv, good); r.status != 200 || r.body["accepted"] != 1.0 {
		t.Fatalf("good single task: %d %v", r.status, r.body)
	}
	before := snapshot(t, svc)

	big := append([]byte(`[`), bytes.Repeat([]byte(`{"id":"x","title":"y"},`), 400_000)...)
	big = append(big[:len(big)-1], ']')

	cases := []struct {
		name      string
		source    string
		body      []byte
		sig       string
		ctype     string
		status    int
		wantInErr string
		field     string
	}{
		{name: "unknown source", source: "nope", body: good, sig: webhook.Sign(testsvc.Secret, good), status: 404, wantInErr: `unknown source "nope"`},
		{name: "missing signature", source: "tracker", body: good, status: 401, wantInErr: "missing X-Duebridge-Signature"},
		{name: "wrong secret", source: "tracker", body: good, sig: webhook.Sign("other-secret", good), status: 401, wantInErr: "does not match"},
		{name: "signature of another body", source: "tracker", body: good, sig: webhook.Sign(testsvc.Secret, []byte("{}")), status: 401, wantInErr: "does not match"},
		{name: "not sha256=", source: "tracker", body: good, sig: "md5=abc", status: 401, wantInErr: "sha256="},
		{name: "bad hex", source: "tracker", body: good, sig: "sha256=zz", status: 401, wantInErr: "64 hex digits"},
		{name: "too large", source: "tracker", body: big, status: 413, wantInErr: "larger than"},
		{name: "wrong content type", source: "tracker", body: good, ctype: "text/plain", status: 415, wantInErr: "application/json"},
	}
	for _, f := range []struct{ file, field, msg string }{
		{"bad_json.json", "body", "malformed JSON"},
		{"missing_id.json", "id", "required"},
		{"missing_title.json", "title", "required"},
		{"bad_due.json", "due", "RFC 3339"},
		{"bad_status.json", "status", "unknown status"},
		{"bad_priority.json", "priority", "unknown priority"},
		{"bad_updated_at.json", "updated_at", "RFC 3339"},
		{"bad_version.json", "version", "integer"},
		{"unknown_field.json", "assignee", "unknown field"},
		{"wrong_type.json", "assignees", "array"},
		{"batch_one_bad.json", "due", "not an RFC 3339"},
		{"empty_batch.json", "body", "empty array"},
	} {
		body := readFile(t, f.file)
		cases = append(cases, struct {
			name      string
			source    string
			body      []byte
			sig       string
			ctype     string
			status    int
			wantInErr string
			field     string
		}{name: f.file, source: "tracker", body: body, sig: webhook.Sign(testsvc.Secret, body), status: 400, wantInErr: f.msg, field: f.field})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			hdr := []string{}
			if c.ctype != "" {
				hdr = append(hdr, "Content-Type", c.ctype)
			}
			r := post(t, srv, c.source, c.body, c.sig, hdr...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d (%v)", r.status, c.status, r.body)
			}
			msg, _ := r.body["error"].(string)
			if !strings.Contains(msg, c.wantInErr) {
				t.Errorf("error %q does not mention %q", msg, c.wantInErr)
			}
			if c.field != "" && r.body["field"] != c.field {
				t.Errorf("field %v, want %q", r.body["field"], c.field)
			}
			if after := snapshot(t, svc); after != before {
				t.Errorf("store changed by a refused request:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	// The good data beside the refusals is intact and still updatable.
	next := bytes.Replace(good, []byte(`"version": 42`), []byte(`"version": 43`), 1)
	if r := signed(t, srv, next); r.status != 200 || r.body["accepted"] != 1.0 {
		t.Fatalf("good update after refusals: %d %v", r.status, r.body)
	}
}

func TestBatchWithOneBadTaskStoresNothing(t *testing.T) {
	srv, svc := newServer(t)
	before := snapshot(t, svc)
	r := signed(t, srv, readFile(t, "batch_one_bad.json"))
	if r.status != 400 || r.body["index"] != 2.0 {
		t.Fatalf("got %d %v, want 400 at index 2", r.status, r.body)
	}
	if after := snapshot(t, svc); after != before {
		t.Fatalf("store changed:\n%s", after)
	}
	r = signed(t, srv, readFile(t, "batch.json"))
	if r.status != 200 || r.body["accepted"] != 3.0 {
		t.Fatalf("good batch: %d %v", r.status, r.body)
	}
}

func taskJSON(id string, version int, updated, status, due string, extra string) []byte {
	s := fmt.Sprintf(`{"id":%q,"title":"Task %s","assignees":["alice"],"status":%q,"due":%q`, id, id, status, due)
	if version > 0 {
		s += fmt.Sprintf(`,"version":%d`, version)
	}
	if updated != "" {
		s += fmt.Sprintf(`,"updated_at":%q`, updated)
	}
	return []byte(s + extra + "}")
}

func storedTask(t testing.TB, svc *bridge.Service, id string) *store.Task {
	t.Helper()
	var tk *store.Task
	err := testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		tk, err = tx.Task("tracker", id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestOrderingNeverMovesBack(t *testing.T) {
	srv, svc := newServer(t)
	steps := []struct {
		name             string
		body             []byte
		accepted, ignore float64
		wantStatus       string
		wantDue          string
	}{
		{"v2 first", taskJSON("A", 2, "", "in_progress", "2026-12-02T10:00:00Z", ""), 1, 0, "in_progress", "2026-12-02"},
		{"v1 late", taskJSON("A", 1, "", "open", "2026-12-01T10:00:00Z", ""), 0, 1, "in_progress", "2026-12-02"},
		{"v2 again (duplicate)", taskJSON("A", 2, "", "in_progress", "2026-12-02T10:00:00Z", ""), 0, 1, "in_progress", "2026-12-02"},
		{"v3", taskJSON("A", 3, "", "done", "2026-12-03T10:00:00Z", ""), 1, 0, "done", "2026-12-03"},
		{"ts newer", taskJSON("B", 0, "2026-11-23T10:00:00Z", "open", "2026-12-05", ""), 1, 0, "", ""},
		{"ts older", taskJSON("B", 0, "2026-11-23T09:00:00Z", "done", "2026-12-06", ""), 0, 1, "", ""},
		{"ts equal, same content", taskJSON("B", 0, "2026-11-23T10:00:00Z", "open", "2026-12-05", ""), 0, 1, "", ""},
		{"delete v5", []byte(`{"id":"A","deleted":true,"version":5}`), 1, 0, "done", ""},
		{"v4 after delete", taskJSON("A", 4, "", "open", "2026-12-09T10:00:00Z", ""), 0, 1, "done", ""},
		{"delete of unknown, then older create", []byte(`{"id":"C","deleted":true,"version":9}`), 1, 0, "", ""},
		{"older create after delete", taskJSON("C", 8, "", "open", "2026-12-09", ""), 0, 1, "", ""},
	}
	for _, s := range steps {
		r := signed(t, srv, s.body)
		if r.status != 200 || r.body["accepted"] != s.accepted || r.body["ignored"] != s.ignore {
			t.Fatalf("%s: %d %v, want accepted %v ignored %v", s.name, r.status, r.body, s.accepted, s.ignore)
		}
		if s.wantStatus != "" {
			tk := storedTask(t, svc, "A")
			if tk.Status != s.wantStatus || (s.wantDue != "" && tk.Due.Time.Format("2006-01-02") != s.wantDue) {
				t.Fatalf("%s: stored %s due %v, want %s %s", s.name, tk.Status, tk.Due.Time, s.wantStatus, s.wantDue)
			}
		}
	}
	if tk := storedTask(t, svc, "A"); !tk.Deleted || tk.Version != 5 {
		t.Fatalf("A should be a deleted tombstone at v5: %+v", tk)
	}
	if tk := storedTask(t, svc, "B"); tk.Status != "open" {
		t.Fatalf("B moved back: %+v", tk)
	}
	if tk := storedTask(t, svc, "C"); !tk.Deleted {
		t.Fatalf("C was resurrected by an older update: %+v", tk)
	}
	// alice's lists hold nothing of the deleted task A.
	err := testsvc.Store(t, svc).View(context.Background(), func(tx store.Tx) error {
		objs, err := tx.ObjectsOfUser("alice")
		for _, o := range objs {
			if o.Source == "tracker" && o.TaskID == "A" {
				t.Errorf("deleted task still has an object: %+v", o)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNewerRecordWithSameContentKeepsObjects(t *testing.T) {
	srv, svc := newServer(t)
	if r := signed(t, srv, taskJSON("S", 1, "", "open", "2026-12-02T10:00:00Z", "")); r.body["accepted"] != 1.0 {
		t.Fatal(r.body)
	}
	before := snapshot(t, svc)
	seq := storedTask(t, svc, "S").Sequence
	if r := signed(t, srv, taskJSON("S", 2, "", "open", "2026-12-02T10:00:00Z", "")); r.body["accepted"] != 1.0 {
		t.Fatal(r.body)
	}
	tk := storedTask(t, svc, "S")
	if tk.Version != 2 || tk.Sequence != seq {
		t.Fatalf("version %d sequence %d, want 2 and unchanged %d", tk.Version, tk.Sequence, seq)
	}
	// Collections (ctags) and mail are untouched: phones have nothing to fetch.
	after := snapshot(t, svc)
	if strings.Replace(after, "v2", "v1", 1) == before {
		return
	}
	beforeColl := before[strings.Index(before, "coll"):]
	afterColl := after[strings.Index(after, "coll"):]
	if beforeColl != afterColl {
		t.Fatalf("collections or mail changed:\n%s\n%s", beforeColl, afterColl)
	}
	// A later version still older than the stored one is ignored.
	if r := signed(t, srv, taskJSON("S", 1, "", "done", "2026-12-02T10:00:00Z", "")); r.body["ignored"] != 1.0 {
		t.Fatal(r.body)
	}
}

// The store keeps instants as Unix nanoseconds (to 2262): dates past that
// wrapped, and a far due time left an alert schedule the scheduler re-read
// on every tick without pause. They are refused like any bad date.
func TestDatesOutOfStoreRangeRefused(t *testing.T) {
	srv, svc := newServer(t)
	before := snapshot(t, svc)
	for field, body := range map[string]string{
		"due":        `{"id":"far","title":"t","assignees":["alice"],"due":"2300-01-01"}`,
		"start":      `{"id":"far","title":"t","start":"2300-01-01T00:00:00Z"}`,
		"updated_at": `{"id":"far","title":"t","updated_at":"2300-01-01T00:00:00Z"}`,
	} {
		r := signed(t, srv, []byte(body))
		if r.status != 400 || r.body["field"] != field {
			t.Errorf("%s in 2300: %d %v, want 400 naming %s", field, r.status, r.body, field)
		}
	}
	if after := snapshot(t, svc); after != before {
		t.Errorf("store changed:\n%s\n%s", before, after)
	}
}

// A delete may carry only the id. Its tombstone must still order later
// deliveries by what was stored before it: it used to take the delete's
// absent version and updated_at, so a late (older, or repeated) update
// brought the deleted task back.
func TestBareDeleteKeepsOrdering(t *testing.T) {
	srv, svc := newServer(t)
	steps := []struct {
		name             string
		body             []byte
		accepted, ignore float64
	}{
		{"V v3", taskJSON("V", 3, "", "open", "2026-12-02", ""), 1, 0},
		{"V bare delete", []byte(`{"id":"V","deleted":true}`), 1, 0},
		{"V v2 late", taskJSON("V", 2, "", "open", "2026-12-01", ""), 0, 1},
		{"V v3 repeated", taskJSON("V", 3, "", "open", "2026-12-02", ""), 0, 1},
		{"U ts", taskJSON("U", 0, "2026-11-23T10:00:00Z", "open", "2026-12-02", ""), 1, 0},
		{"U bare delete", []byte(`{"id":"U","deleted":true}`), 1, 0},
		{"U older ts late", taskJSON("U", 0, "2026-11-23T09:00:00Z", "open", "2026-12-01", ""), 0, 1},
		{"U same ts repeated", taskJSON("U", 0, "2026-11-23T10:00:00Z", "open", "2026-12-02", ""), 0, 1},
	}
	for _, s := range steps {
		r := signed(t, srv, s.body)
		if r.status != 200 || r.body["accepted"] != s.accepted || r.body["ignored"] != s.ignore {
			t.Fatalf("%s: %d %v, want accepted %v ignored %v", s.name, r.status, r.body, s.accepted, s.ignore)
		}
	}
	for _, id := range []string{"V", "U"} {
		if tk := storedTask(t, svc, id); !tk.Deleted {
			t.Errorf("%s was resurrected by a late update: %+v", id, tk)
		}
	}
	// The tracker's next state does bring it back.
	if r := signed(t, srv, taskJSON("V", 4, "", "open", "2026-12-03", "")); r.body["accepted"] != 1.0 {
		t.Fatalf("V v4 after the delete: %v", r.body)
	}
	if tk := storedTask(t, svc, "V"); tk.Deleted || tk.Version != 4 {
		t.Errorf("V after v4: %+v", tk)
	}
}
