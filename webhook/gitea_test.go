package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
)

// TestGiteaIssueLifecycle walks one issue through every mapped action, as
// Gitea and Forgejo deliver them (the same payloads under each one's own
// headers), and checks the stored task after each.
func TestGiteaIssueLifecycle(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"gitea", "forgejo"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newTrackerEnv(t, kind)
			const id = "infra/deploys#31"
			const title = "Rotate the deploy keys everywhere"
			e.run([]step{
				{name: "opened", d: delivery{file: "issues-opened.json"}, accepted: 1, id: id, want: want{
					title: "Rotate the deploy keys", status: "open", assignees: []string{"alice"}, project: "deploys",
					priority: "high", url: "https://git.example.com/infra/deploys/issues/31", updated: "2026-11-20T09:00:00Z"}},
				{name: "comment", d: delivery{file: "issue_comment-created.json"}, skipped: true},
				{name: "edited", d: delivery{file: "issues-edited.json"}, accepted: 1, id: id, want: want{
					title: title, status: "open", assignees: []string{"alice"}}},
				{name: "assigned", d: delivery{file: "issues-assigned.json"}, accepted: 1, id: id, want: want{
					title: title, assignees: []string{"alice", "bob"}}},
				{name: "unassigned", d: delivery{file: "issues-unassigned.json"}, accepted: 1, id: id, want: want{
					title: title, assignees: []string{"bob"}}},
				{name: "label_updated: label_projects", d: delivery{file: "issues-label_updated.json"}, accepted: 1, id: id, want: want{
					assignees: []string{"bob"}, project: "Release 2.1"}},
				// 23:59:59-05:00 is the next day in UTC: the day is the one written.
				{name: "due_date set", d: delivery{file: "issues-edited-due.json"}, accepted: 1, id: id, want: want{
					assignees: []string{"bob"}, due: "2026-12-01"}},
				{name: "milestoned: the issue's own date wins", d: delivery{file: "issues-milestoned.json"}, accepted: 1, id: id, want: want{
					assignees: []string{"bob"}, due: "2026-12-01"}},
				{name: "due_date removed: the milestone's", d: delivery{file: "issues-edited-due-removed.json"}, accepted: 1, id: id, want: want{
					assignees: []string{"bob"}, due: "2026-12-10"}},
				{name: "closed", d: delivery{file: "issues-closed.json"}, accepted: 1, id: id, want: want{
					status: "done", assignees: []string{"bob"}, due: "2026-12-10", updated: "2026-11-20T09:35:00Z"}},
				{name: "late edited", d: delivery{file: "issues-edited.json"}, ignored: 1, id: id, want: want{
					status: "done", assignees: []string{"bob"}, due: "2026-12-10"}},
				{name: "reopened", d: delivery{file: "issues-reopened.json"}, accepted: 1, id: id, want: want{
					status: "open", assignees: []string{"bob"}, due: "2026-12-10"}},
				{name: "deleted", d: delivery{file: "issues-deleted.json"}, accepted: 1, id: id, want: want{
					assignees: []string{"bob"}, due: "2026-12-10", deleted: true, updated: "2026-11-20T09:45:00Z"}},
				{name: "edited after delete", d: delivery{file: "issues-edited.json"}, ignored: 1, id: id, want: want{
					assignees: []string{"bob"}, due: "2026-12-10", deleted: true}},
			})
			if objs := e.objectsOf("bob"); len(objs) != 0 {
				t.Errorf("bob still has %v after the delete", objs)
			}
		})
	}
}

// TestGiteaHeadersAreTheKinds: a forgejo source reads X-Forgejo-Signature
// only, and a gitea source X-Gitea-Signature only; the other's header,
// even correctly signed, is a 401.
func TestGiteaHeadersAreTheKinds(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "gitea")
	e.headers = map[string]string{"Content-Type": "application/json", "X-Forgejo-Event": "issues",
		"X-Forgejo-Delivery": "{delivery}", "X-Forgejo-Signature": "{hmac-sha256}", "X-Gitea-Event": "issues"}
	r := e.mustPost(delivery{file: "issues-opened.json"}, 401)
	if r.body["error"] != "missing X-Gitea-Signature header" {
		t.Errorf("reply %s", r.raw)
	}
	e.headers["X-Gitea-Signature"] = "sha256={hmac-sha256}" // GitHub's form is not Gitea's
	r = e.mustPost(delivery{file: "issues-opened.json"}, 401)
	if r.body["error"] != "X-Gitea-Signature is not 64 hex digits" {
		t.Errorf("reply %s", r.raw)
	}
	e.headers["X-Gitea-Signature"] = "{hmac-sha256}"
	delete(e.headers, "X-Gitea-Event")
	r = e.mustPost(delivery{file: "issues-opened.json"}, 400)
	if r.body["field"] != "X-Gitea-Event" {
		t.Errorf("reply %s, want the missing event header named", r.raw)
	}
}

// TestGiteaBadDueDate: a due_date that is not a date-time is a 400 naming it.
func TestGiteaBadDueDate(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "gitea")
	before := e.snapshot()
	r := e.mustPost(delivery{file: "issues-opened.json", edit: func(m map[string]any) {
		m["issue"].(map[string]any)["due_date"] = "next friday"
	}}, 400)
	if r.body["field"] != "issue.due_date" {
		t.Errorf("reply %s", r.raw)
	}
	if e.snapshot() != before {
		t.Error("a refused delivery changed the store")
	}
}

// TestGiteaPullRequestsAreNotTasks: an issues payload about a pull
// request (its issue has pull_request set) is skipped.
func TestGiteaPullRequestsAreNotTasks(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "forgejo")
	r := e.mustPost(delivery{file: "issues-opened.json", edit: func(m map[string]any) {
		m["issue"].(map[string]any)["pull_request"] = map[string]any{"merged": false}
	}}, 200)
	if r.body["skipped"] == nil || e.task("infra/deploys#31") != nil {
		t.Errorf("pull request stored: %s", r.raw)
	}
}

// TestGiteaCloser: completing a task closes the issue through the
// instance's API (api_url), with the token; reopening opens it.
func TestGiteaCloser(t *testing.T) {
	t.Parallel()
	type call struct{ method, path, auth, state string }
	var calls []call
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var body struct{ State string }
		json.Unmarshal(b, &body)
		calls = append(calls, call{r.Method, r.URL.Path, r.Header.Get("Authorization"), body.State})
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"number":31,"state":"` + body.State + `"}`))
	}))
	t.Cleanup(api.Close)
	c := NewCloser(CloserOptions{Client: api.Client()})
	src := &config.Source{Name: "forge", Kind: config.KindForgejo, APIToken: "tok123", APIURL: api.URL}
	for _, status := range []string{"done", "open"} {
		handled, err := c.Deliver(context.Background(), src, bridge.CallbackBody{ID: "infra/deploys#31", Status: status})
		if !handled || err != nil {
			t.Fatalf("%s: handled %v err %v", status, handled, err)
		}
	}
	want := []call{{"PATCH", "/api/v1/repos/infra/deploys/issues/31", "token tok123", "closed"},
		{"PATCH", "/api/v1/repos/infra/deploys/issues/31", "token tok123", "open"}}
	if len(calls) != 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Errorf("calls %+v, want %+v", calls, want)
	}
	src.APIURL = ""
	if handled, err := c.Deliver(context.Background(), src, bridge.CallbackBody{ID: "infra/deploys#31", Status: "done"}); !handled || err == nil {
		t.Errorf("no api_url: handled %v err %v, want an error naming api_url", handled, err)
	}
}
