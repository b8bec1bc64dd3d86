package webhook

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
	"github.com/prometheus/client_golang/prometheus"
)

// TestGitHubIssueLifecycle walks one issue through every mapped action, as
// GitHub delivers them, and checks the stored task after each.
func TestGitHubIssueLifecycle(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	const id = "octo-org/hello-world#1347"
	const title = "Ship release 2.1 to everyone"
	e.run([]step{
		{name: "opened", d: delivery{file: "issues-opened.json"}, accepted: 1, id: id, want: want{
			title: "Ship release 2.1", status: "open", assignees: []string{"alice"}, project: "hello-world",
			priority: "high", url: "https://github.com/octo-org/hello-world/issues/1347", updated: "2026-11-20T09:00:00Z"}},
		{name: "ping", d: delivery{file: "ping.json"}, skipped: true},
		{name: "comment", d: delivery{file: "issue_comment-created.json"}, skipped: true},
		{name: "edited", d: delivery{file: "issues-edited.json"}, accepted: 1, id: id, want: want{
			title: title, status: "open", assignees: []string{"alice"}}},
		{name: "assigned", d: delivery{file: "issues-assigned.json"}, accepted: 1, id: id, want: want{
			title: title, assignees: []string{"alice", "bob"}}},
		{name: "unassigned", d: delivery{file: "issues-unassigned.json"}, accepted: 1, id: id, want: want{
			title: title, assignees: []string{"bob"}}},
		{name: "labeled: label_projects", d: delivery{file: "issues-labeled.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, project: "Release 2.1"}},
		{name: "milestoned: due_on", d: delivery{file: "issues-milestoned.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "closed", d: delivery{file: "issues-closed.json"}, accepted: 1, id: id, want: want{
			status: "done", assignees: []string{"bob"}, due: "2026-12-01", updated: "2026-11-20T09:30:00Z"}},
		{name: "late edited", d: delivery{file: "issues-edited.json"}, ignored: 1, id: id, want: want{
			status: "done", title: title, assignees: []string{"bob"}, due: "2026-12-01", project: "Release 2.1",
			updated: "2026-11-20T09:30:00Z"}},
		{name: "reopened", d: delivery{file: "issues-reopened.json"}, accepted: 1, id: id, want: want{
			status: "open", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "closed as not planned", d: delivery{file: "issues-closed-not-planned.json"}, accepted: 1, id: id, want: want{
			status: "cancelled", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "deleted", d: delivery{file: "issues-deleted.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01", deleted: true, updated: "2026-11-20T09:45:00Z"}},
		{name: "edited after delete", d: delivery{file: "issues-edited.json"}, ignored: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01", deleted: true}},
	})
	if objs := e.objectsOf("alice"); len(objs) != 0 {
		t.Errorf("alice still has %v after unassignment and delete", objs)
	}
	if objs := e.objectsOf("bob"); len(objs) != 0 {
		t.Errorf("bob still has %v after the delete", objs)
	}
}

// TestGitHubAssignedShowsOnPhone checks that an assignment reaches the
// assignee's calendar: the mapping is only worth anything if it does.
func TestGitHubAssignedShowsOnPhone(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	e.mustPost(delivery{file: "issues-opened.json"}, 200)
	e.mustPost(delivery{file: "issues-milestoned.json"}, 200)
	if objs := e.objectsOf("bob"); len(objs) != 2 { // VTODO and VEVENT
		t.Errorf("bob's objects: %v, want a reminder and an event", objs)
	}
	if objs := e.objectsOf("alice"); len(objs) != 0 {
		t.Errorf("alice's objects: %v, want none (unassigned)", objs)
	}
}

// TestGitHubTransfer: the issue disappears under its old id and lives on
// under the new repository's.
func TestGitHubTransfer(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	e.run([]step{
		{name: "opened", d: delivery{file: "issues-opened-for-transfer.json"}, accepted: 1,
			id: "octo-org/hello-world#1349", want: want{title: "Plan 2.2", assignees: []string{"alice"}}},
		{name: "transferred", d: delivery{file: "issues-transferred.json"}, accepted: 2,
			id: "octo-org/hello-world#1349", want: want{assignees: []string{"alice"}, deleted: true}},
	})
	e.check("transferred", "octo-org/roadmap#12", want{title: "Plan 2.2", status: "open", assignees: []string{"alice"},
		project: "roadmap", url: "https://github.com/octo-org/roadmap/issues/12"})
}

// TestGitHubPullRequestsAreNotTasks: GitHub's documented milestoned example
// is a pull request; those are skipped, not stored.
func TestGitHubPullRequestsAreNotTasks(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	r := e.mustPost(delivery{file: "issues-milestoned.json", edit: func(m map[string]any) {
		m["issue"].(map[string]any)["pull_request"] = map[string]any{"url": "https://api.github.com/repos/octo-org/hello-world/pulls/1347"}
	}}, 200)
	if r.body["skipped"] == nil || e.task("octo-org/hello-world#1347") != nil {
		t.Errorf("pull request stored: %s", r.raw)
	}
}

// TestGitHubSHA1SignatureAlone is refused: GitHub always sends
// X-Hub-Signature-256, and SHA-1 is not good enough on its own.
func TestGitHubSHA1SignatureAlone(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	r := e.mustPost(delivery{file: "issues-opened.json", drop: []string{"X-Hub-Signature-256"}}, 401)
	if msg, _ := r.body["error"].(string); !slices.Contains([]string{"missing X-Hub-Signature-256 header"}, msg) {
		t.Errorf("error %q", msg)
	}
}

// TestGitHubMilestoneDueDate: GitHub announces a milestone's new due date
// once, in a milestone event; every stored task in the milestone moves,
// late issue events cannot bring the old date back, and a task taken out
// of the milestone no longer follows it.
func TestGitHubMilestoneDueDate(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	const id = "octo-org/hello-world#1347"
	e.run([]step{
		{name: "opened", d: delivery{file: "issues-opened.json"}, accepted: 1, id: id, want: want{assignees: []string{"alice"}}},
		{name: "milestoned", d: delivery{file: "issues-milestoned.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "milestone closed", d: delivery{file: "milestone-closed.json"}, skipped: true},
		{name: "milestone due_on edited", d: delivery{file: "milestone-edited.json"}, accepted: 1, id: id, want: want{
			title: "Ship release 2.1 to everyone", status: "open", assignees: []string{"bob"}, due: "2026-12-08",
			project: "Release 2.1", priority: "high", updated: "2026-11-20T09:41:00Z"}},
		{name: "late milestoned", d: delivery{file: "issues-milestoned.json"}, ignored: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-08"}},
		{name: "demilestoned", d: delivery{file: "issues-demilestoned.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: ""}},
		{name: "late milestoned again", d: delivery{file: "issues-milestoned.json"}, ignored: 1, id: id, want: want{
			assignees: []string{"bob"}, due: ""}},
		{name: "milestone edited, task no longer in it", d: delivery{file: "milestone-edited.json", edit: func(m map[string]any) {
			m["milestone"].(map[string]any)["due_on"] = "2026-12-15T08:00:00Z"
		}}, skipped: true},
	})
	e.check("end", id, want{assignees: []string{"bob"}, due: ""})
}

// TestGitHubMilestoneDeleted: deleting a milestone takes it, and its due
// date, off its issues.
func TestGitHubMilestoneDeleted(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	const id = "octo-org/hello-world#1347"
	e.run([]step{
		{name: "milestoned", d: delivery{file: "issues-milestoned.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "milestone deleted", d: delivery{file: "milestone-deleted.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "", updated: "2026-11-20T09:44:00Z"}},
	})
	if objs := e.objectsOf("bob"); len(objs) != 1 {
		t.Errorf("bob's objects %v, want the reminder only (no due date, no event)", objs)
	}
}

// TestGitHubMilestoneIndexWithTasks: the milestone index is stored in the
// delivery's own transaction, so a delivery whose index update fails
// stores nothing and is retried, rather than storing the task and leaving
// the index behind (the next milestone event would miss the task).
func TestGitHubMilestoneIndexWithTasks(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	const id = "octo-org/hello-world#1347"
	// A milestone list the index cannot read: its update must fail.
	err := testsvc.Store(t, e.svc).Update(context.Background(), func(tx store.Tx) error {
		return tx.Set("webhook/github/github/milestone/1002604", "not json")
	})
	if err != nil {
		t.Fatal(err)
	}
	before := e.snapshot()
	e.mustPost(delivery{file: "issues-milestoned.json"}, 503)
	if after := e.snapshot(); after != before {
		t.Errorf("the task was stored without its milestone index:\n%s", after)
	}
}

// fakeIngester is the core as a ten-line fake: it records deliveries.
type fakeIngester struct {
	now func() time.Time
	cfg *config.Config
	reg *prometheus.Registry
	got []bridge.Delivery
}

func (f *fakeIngester) Config() *config.Config         { return f.cfg }
func (f *fakeIngester) Now() time.Time                 { return f.now() }
func (f *fakeIngester) Registry() *prometheus.Registry { return f.reg }
func (f *fakeIngester) IngestDelivery(_ context.Context, _ string, d bridge.Delivery) (bridge.Result, error) {
	f.got = append(f.got, d)
	return bridge.Result{Accepted: len(d.Tasks)}, nil
}
func (f *fakeIngester) GroupTasks(context.Context, string, bridge.GroupIndex, string) ([]bridge.TaskInput, error) {
	return nil, nil
}

// TestGitHubDeliveryCarriesMilestone: one IngestDelivery call carries the
// issue and where it now is in the milestone index, as of its own time.
func TestGitHubDeliveryCarriesMilestone(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "github")
	fake := &fakeIngester{now: e.clock.Now, cfg: e.svc.Config(), reg: prometheus.NewRegistry()}
	mux := http.NewServeMux()
	mux.Handle("POST /hooks/{source}", NewHandler(fake, Options{}))
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.mustPost(delivery{file: "issues-milestoned.json"}, 200)
	if len(fake.got) != 1 {
		t.Fatalf("%d deliveries, want 1", len(fake.got))
	}
	d := fake.got[0]
	if len(d.Tasks) != 1 || len(d.Members) != 1 {
		t.Fatalf("delivery %+v, want one task and its membership", d)
	}
	if m := d.Members[0]; m.Task != d.Tasks[0].ID || m.Group != "1002604" || !m.At.Equal(d.Tasks[0].UpdatedAt) {
		t.Errorf("membership %+v for task %s updated %v", m, d.Tasks[0].ID, d.Tasks[0].UpdatedAt)
	}
	if d.Index != milestoneIndex("github") {
		t.Errorf("index %+v", d.Index)
	}
}

// TestTrackerKindsHaveAdapters: config declares the tracker kinds; each
// has an adapter here, and no adapter serves a kind config refuses.
func TestTrackerKindsHaveAdapters(t *testing.T) {
	for _, k := range config.TrackerKinds {
		if trackers[k] == nil {
			t.Errorf("config.TrackerKinds has %q, which has no adapter", k)
		}
	}
	for k := range trackers {
		if !config.IsTrackerKind(k) {
			t.Errorf("adapter for %q, which config.TrackerKinds lacks", k)
		}
	}
}
