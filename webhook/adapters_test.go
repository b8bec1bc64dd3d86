package webhook

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/internal/testsvc"
)

// trackerSample names, per kind, the samples the behaviours common to all
// trackers are tested with.
type trackerSample struct {
	kind      string
	good      string // a create event
	goodID    string // the task id it stores
	ignored   string // an event that carries nothing for us
	unknown   string // a create assigned to a stranger (and to alice, where the tracker allows several)
	unknownID string
	unknownTo []string // the assignees that remain
	bad       string   // a payload missing a required field
	badField  string
	authHdr   string // the header carrying the signature or token
	// token: the tracker sends a shared secret rather than a signature of
	// the body (GitLab), so a changed body cannot be told from the original.
	token bool
}

var trackerSamples = []trackerSample{
	{kind: "github", good: "issues-opened.json", goodID: "octo-org/hello-world#1347", ignored: "issue_comment-created.json",
		unknown: "issues-opened-unknown-assignee.json", unknownID: "octo-org/hello-world#1348", unknownTo: []string{"alice"},
		bad: "issues-bad-missing-number.json", badField: "issue.number", authHdr: "X-Hub-Signature-256"},
	{kind: "gitlab", good: "issue-open.json", goodID: "15#23", ignored: "note-issue.json",
		unknown: "issue-open-unknown-assignee.json", unknownID: "15#25", unknownTo: []string{"alice"},
		bad: "issue-bad-missing-iid.json", badField: "object_attributes.iid", authHdr: "X-Gitlab-Token", token: true},
	{kind: "jira", good: "issue_created.json", goodID: "10002", ignored: "comment_created.json",
		unknown: "issue_created-unknown-assignee.json", unknownID: "10003", unknownTo: nil,
		bad: "issue_updated-bad-missing-summary.json", badField: "issue.fields.summary", authHdr: "X-Hub-Signature"},
	{kind: "linear", good: "issue-create.json", goodID: "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9", ignored: "comment-create.json",
		unknown: "issue-create-unknown-assignee.json", unknownID: "d2f5e6a7-1b2c-4d3e-8f4a-5b6c7d8e9f0a", unknownTo: nil,
		bad: "issue-bad-missing-id.json", badField: "data.id", authHdr: "Linear-Signature"},
	{kind: "gitea", good: "issues-opened.json", goodID: "infra/deploys#31", ignored: "issue_comment-created.json",
		unknown: "issues-opened-unknown-assignee.json", unknownID: "infra/deploys#32", unknownTo: []string{"alice"},
		bad: "issues-bad-missing-number.json", badField: "issue.number", authHdr: "X-Gitea-Signature"},
	{kind: "forgejo", good: "issues-opened.json", goodID: "infra/deploys#31", ignored: "issue_comment-created.json",
		unknown: "issues-opened-unknown-assignee.json", unknownID: "infra/deploys#32", unknownTo: []string{"alice"},
		bad: "issues-bad-missing-number.json", badField: "issue.number", authHdr: "X-Forgejo-Signature"},
}

// TestTrackerBadSignature: a delivery signed with another secret, or not
// signed, is a 401 and stores nothing; the right secret then works.
func TestTrackerBadSignature(t *testing.T) {
	t.Parallel()
	for _, s := range trackerSamples {
		t.Run(s.kind, func(t *testing.T) {
			t.Parallel()
			e := newTrackerEnv(t, s.kind)
			before := e.snapshot()
			for name, d := range map[string]delivery{
				"wrong secret":               {file: s.good, secret: "not-the-secret-at-all"},
				"no signature":               {file: s.good, drop: []string{s.authHdr}},
				"body changed after signing": {file: s.good, tamper: true},
			} {
				if d.tamper && s.token {
					continue
				}
				r := e.mustPost(d, 401)
				if r.body["error"] == nil {
					t.Errorf("%s: reply %s names no reason", name, r.raw)
				}
				if e.snapshot() != before {
					t.Errorf("%s: a refused delivery changed the store", name)
				}
			}
			if got := e.metric("duebridge_webhook_tasks_total", map[string]string{"source": s.kind, "result": "rejected"}); got < 2 {
				t.Errorf("rejected deliveries counted %v, want one per refusal", got)
			}
			r := e.mustPost(delivery{file: s.good}, 200)
			if a, _ := r.counts(); a != 1 || e.task(s.goodID) == nil {
				t.Errorf("good delivery after refusals: %s", r.raw)
			}
		})
	}
}

// TestTrackerReplay: the same delivery id again is answered 2xx and
// changes nothing; the same body under a new id (a tracker that sends an
// event twice) is ignored by the ordering rule.
func TestTrackerReplay(t *testing.T) {
	t.Parallel()
	for _, s := range trackerSamples {
		t.Run(s.kind, func(t *testing.T) {
			t.Parallel()
			e := newTrackerEnv(t, s.kind)
			e.mustPost(delivery{file: s.good, id: "delivery-1"}, 200)
			before := e.snapshot()
			r := e.mustPost(delivery{file: s.good, id: "delivery-1"}, 200)
			if msg, _ := r.body["skipped"].(string); !strings.Contains(msg, "already handled") {
				t.Errorf("replay: %s, want a skip naming the repeated delivery", r.raw)
			}
			if e.snapshot() != before {
				t.Error("a replayed delivery changed the store")
			}
			r = e.mustPost(delivery{file: s.good, id: "delivery-2"}, 200)
			if a, i := r.counts(); a != 0 || i != 1 {
				t.Errorf("same event under a new delivery id: %s, want accepted 0 ignored 1", r.raw)
			}
			if e.snapshot() != before {
				t.Error("a repeated event changed the store")
			}
			if got := e.metric("duebridge_webhook_deliveries_total", map[string]string{"source": s.kind, "result": "duplicate"}); got != 1 {
				t.Errorf("duplicate deliveries counted %v, want 1", got)
			}
		})
	}
}

// TestTrackerIgnoredEvent: an event that carries nothing for a task is a
// 2xx with the reason, and nothing is stored.
func TestTrackerIgnoredEvent(t *testing.T) {
	t.Parallel()
	for _, s := range trackerSamples {
		t.Run(s.kind, func(t *testing.T) {
			t.Parallel()
			e := newTrackerEnv(t, s.kind)
			before := e.snapshot()
			r := e.mustPost(delivery{file: s.ignored}, 200)
			if r.body["skipped"] == nil {
				t.Errorf("reply %s, want the reason it was skipped", r.raw)
			}
			if e.snapshot() != before {
				t.Error("an ignored event changed the store")
			}
		})
	}
}

// TestTrackerUnknownAssignee: an assignee no user claims is left out of
// the task and counted in the metrics; the task is still stored, so a
// later assignment to a known user works.
func TestTrackerUnknownAssignee(t *testing.T) {
	t.Parallel()
	for _, s := range trackerSamples {
		t.Run(s.kind, func(t *testing.T) {
			t.Parallel()
			e := newTrackerEnv(t, s.kind)
			r := e.mustPost(delivery{file: s.unknown}, 200)
			if a, _ := r.counts(); a != 1 {
				t.Fatalf("reply %s, want the task stored", r.raw)
			}
			e.check("unknown assignee", s.unknownID, want{status: "open", assignees: s.unknownTo})
			if got := e.metric("duebridge_webhook_unknown_assignees_total", map[string]string{"source": s.kind}); got != 1 {
				t.Errorf("unknown assignees counted %v, want 1", got)
			}
		})
	}
}

// TestTrackerBadPayload: a payload that lacks what the tracker documents
// is a 400 naming the field, stores nothing, and is not remembered as
// handled: the tracker's next good delivery works, even under the same id.
func TestTrackerBadPayload(t *testing.T) {
	t.Parallel()
	for _, s := range trackerSamples {
		t.Run(s.kind, func(t *testing.T) {
			t.Parallel()
			e := newTrackerEnv(t, s.kind)
			before := e.snapshot()
			r := e.mustPost(delivery{file: s.bad, id: "delivery-1"}, 400)
			if r.body["field"] != s.badField || !strings.Contains(r.body["error"].(string), s.badField) {
				t.Errorf("reply %s, want field %q named", r.raw, s.badField)
			}
			for _, body := range []string{`{"action": "opened", "issue": {`, `[]`} {
				r = e.mustPost(delivery{file: s.good, body: []byte(body)}, 400)
				if r.body["field"] != "body" || strings.Contains(r.raw, "webhook.") {
					t.Errorf("body %s: %s, want field body and no Go type names", body, r.raw)
				}
			}
			if e.snapshot() != before {
				t.Error("a bad payload changed the store")
			}
			r = e.mustPost(delivery{file: s.good, id: "delivery-1"}, 200)
			if a, _ := r.counts(); a != 1 || e.task(s.goodID) == nil {
				t.Errorf("good delivery after a bad one: %s", r.raw)
			}
		})
	}
}

// TestTrackerGenericUnchanged: a generic source next to tracker sources
// still takes the contract's format and X-Duebridge-Signature, and a
// tracker's signature means nothing there.
func TestTrackerGenericUnchanged(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	body := []byte(`{"id":"T-1","title":"Generic task","assignees":["alice"]}`)
	post := func(hdr, value string) int {
		req, _ := http.NewRequest("POST", e.srv.URL+"/hooks/tracker", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(hdr, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := post("X-Hub-Signature-256", Sign(testsvc.Secret, body)); got != 401 {
		t.Errorf("generic source with a GitHub signature: %d, want 401", got)
	}
	if got := post(SignatureHeader, Sign(testsvc.Secret, body)); got != 200 {
		t.Errorf("generic source with its own signature: %d, want 200", got)
	}
}
