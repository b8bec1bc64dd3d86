package webhook

import "testing"

// TestJiraIssueLifecycle walks one issue through Jira's issue webhooks and
// checks the stored task. Jira's times carry the site's offset (+0100).
func TestJiraIssueLifecycle(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "jira")
	const id = "10002"
	const title = "Ship release 2.1 to everyone"
	e.run([]step{
		{name: "created", d: delivery{file: "issue_created.json"}, accepted: 1, id: id, want: want{
			title: "Ship release 2.1", status: "open", assignees: []string{"alice"}, project: "Release Train",
			priority: "high", url: "https://your-domain.atlassian.net/browse/REL-7", updated: "2026-11-20T09:00:00Z"}},
		{name: "comment_created", d: delivery{file: "comment_created.json"}, skipped: true},
		{name: "issue_commented", d: delivery{file: "issue_updated-commented.json"}, skipped: true},
		{name: "summary", d: delivery{file: "issue_updated-summary.json"}, accepted: 1, id: id, want: want{
			title: title, assignees: []string{"alice"}}},
		{name: "assigned", d: delivery{file: "issue_updated-assigned.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}}},
		{name: "unassigned", d: delivery{file: "issue_updated-unassigned.json"}, accepted: 1, id: id, want: want{
			assignees: nil}},
		{name: "labels: label_projects", d: delivery{file: "issue_updated-labels.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, project: "Release 2.1"}},
		{name: "duedate and priority", d: delivery{file: "issue_updated-duedate.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01", priority: "urgent"}},
		{name: "done", d: delivery{file: "issue_updated-done.json"}, accepted: 1, id: id, want: want{
			status: "done", assignees: []string{"bob"}, due: "2026-12-01", updated: "2026-11-20T09:30:00Z"}},
		{name: "late summary update", d: delivery{file: "issue_updated-summary.json"}, ignored: 1, id: id, want: want{
			status: "done", title: title, assignees: []string{"bob"}, due: "2026-12-01", project: "Release 2.1"}},
		{name: "reopened", d: delivery{file: "issue_updated-reopened.json"}, accepted: 1, id: id, want: want{
			status: "open", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "resolved won't do", d: delivery{file: "issue_updated-wont-do.json"}, accepted: 1, id: id, want: want{
			status: "cancelled", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "deleted", d: delivery{file: "issue_deleted.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01", deleted: true, updated: "2026-11-20T09:45:00Z"}},
	})
}

// TestJiraDescriptionADF: a v3-shaped description (Atlassian Document
// Format) is reduced to its text.
func TestJiraDescriptionADF(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "jira")
	e.mustPost(delivery{file: "issue_created.json", edit: func(m map[string]any) {
		f := m["issue"].(map[string]any)["fields"].(map[string]any)
		f["description"] = map[string]any{"type": "doc", "version": 1, "content": []any{
			map[string]any{"type": "paragraph", "content": []any{
				map[string]any{"type": "text", "text": "Tag, build"},
				map[string]any{"type": "text", "text": " and announce 2.1."},
			}},
		}}
	}}, 200)
	if got := e.task("10002").Description; got != "Tag, build and announce 2.1." {
		t.Errorf("description %q", got)
	}
}
