package webhook

import "testing"

// TestGitLabIssueLifecycle walks one issue through GitLab's issue hook
// actions (open, update, close, reopen, moved) and checks the stored task.
func TestGitLabIssueLifecycle(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "gitlab")
	const id = "15#23"
	const title = "Ship release 2.1 to everyone"
	e.run([]step{
		{name: "open", d: delivery{file: "issue-open.json"}, accepted: 1, id: id, want: want{
			title: "Ship release 2.1", status: "open", assignees: []string{"alice"}, project: "Diaspora",
			priority: "high", url: "https://gitlab.example.com/mike/diaspora/-/issues/23", updated: "2026-11-20T09:00:00Z"}},
		{name: "comment", d: delivery{file: "note-issue.json"}, skipped: true},
		{name: "title", d: delivery{file: "issue-update-title.json"}, accepted: 1, id: id, want: want{
			title: title, assignees: []string{"alice"}}},
		{name: "assigned", d: delivery{file: "issue-update-assign.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"alice", "bob"}}},
		{name: "unassigned", d: delivery{file: "issue-update-unassign.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}}},
		{name: "labels: label_projects", d: delivery{file: "issue-update-label.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, project: "Release 2.1"}},
		{name: "due_date", d: delivery{file: "issue-update-due.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "close", d: delivery{file: "issue-close.json"}, accepted: 1, id: id, want: want{
			status: "done", assignees: []string{"bob"}, due: "2026-12-01", updated: "2026-11-20T09:30:00Z"}},
		{name: "late title update", d: delivery{file: "issue-update-title.json"}, ignored: 1, id: id, want: want{
			status: "done", assignees: []string{"bob"}, due: "2026-12-01", project: "Release 2.1"}},
		{name: "reopen", d: delivery{file: "issue-reopen.json"}, accepted: 1, id: id, want: want{
			status: "open", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "moved to another project", d: delivery{file: "issue-close-moved.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01", deleted: true}},
	})
}

// TestGitLabWorkItems: tasks are tasks; epics are plans and are skipped.
func TestGitLabWorkItems(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "gitlab")
	e.run([]step{
		{name: "task", d: delivery{file: "work_item-task.json"}, accepted: 1, id: "15#24", want: want{
			title: "Write the announcement", status: "open", assignees: []string{"bob"}, due: "2026-11-28"}},
		{name: "epic", d: delivery{file: "work_item-epic.json"}, skipped: true},
	})
}

// TestGitLabIdempotencyKeyFirst: GitLab keeps Idempotency-Key across its
// retries; the per-event X-Gitlab-Event-UUID is only the fallback.
func TestGitLabIdempotencyKeyFirst(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "gitlab")
	e.mustPost(delivery{file: "issue-open.json", id: "retry-key-1"}, 200)
	before := e.snapshot()
	// A retry: same key, and (as headers.json says) a new X-Gitlab-Event-UUID.
	r := e.mustPost(delivery{file: "issue-update-title.json", id: "retry-key-1"}, 200)
	if r.body["skipped"] == nil || e.snapshot() != before {
		t.Errorf("a retry with the same Idempotency-Key was applied: %s", r.raw)
	}
}
