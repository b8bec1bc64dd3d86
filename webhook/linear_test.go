package webhook

import (
	"strings"
	"testing"
	"time"
)

// TestLinearIssueLifecycle walks one issue through Linear's Issue
// create/update/remove webhooks and checks the stored task.
func TestLinearIssueLifecycle(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "linear")
	const id = "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9"
	const title = "Ship release 2.1 to everyone"
	e.run([]step{
		{name: "create", d: delivery{file: "issue-create.json"}, accepted: 1, id: id, want: want{
			title: "Ship release 2.1", status: "open", assignees: []string{"alice"}, project: "Launch",
			priority: "high", url: "https://linear.app/acme/issue/ENG-123/ship-release-21", updated: "2026-11-20T09:00:00Z"}},
		{name: "comment", d: delivery{file: "comment-create.json"}, skipped: true},
		{name: "title", d: delivery{file: "issue-update-title.json"}, accepted: 1, id: id, want: want{
			title: title, assignees: []string{"alice"}}},
		{name: "assigned", d: delivery{file: "issue-update-assign.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}}},
		{name: "unassigned", d: delivery{file: "issue-update-unassign.json"}, accepted: 1, id: id, want: want{
			assignees: nil}},
		{name: "labels: label_projects", d: delivery{file: "issue-update-labels.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, project: "Release 2.1"}},
		{name: "dueDate and priority", d: delivery{file: "issue-update-due.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01", priority: "urgent"}},
		{name: "started", d: delivery{file: "issue-update-started.json"}, accepted: 1, id: id, want: want{
			status: "in_progress", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "completed", d: delivery{file: "issue-update-done.json"}, accepted: 1, id: id, want: want{
			status: "done", assignees: []string{"bob"}, due: "2026-12-01", updated: "2026-11-20T09:30:00Z"}},
		{name: "late title update", d: delivery{file: "issue-update-title.json"}, ignored: 1, id: id, want: want{
			status: "done", title: title, assignees: []string{"bob"}, due: "2026-12-01", project: "Release 2.1"}},
		{name: "reopened", d: delivery{file: "issue-update-reopen.json"}, accepted: 1, id: id, want: want{
			status: "open", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "canceled", d: delivery{file: "issue-update-canceled.json"}, accepted: 1, id: id, want: want{
			status: "cancelled", assignees: []string{"bob"}, due: "2026-12-01"}},
		{name: "removed", d: delivery{file: "issue-remove.json"}, accepted: 1, id: id, want: want{
			assignees: []string{"bob"}, due: "2026-12-01", deleted: true, updated: "2026-11-20T09:45:00Z"}},
	})
}

// TestLinearStaleTimestamp: a correctly signed delivery whose
// webhookTimestamp is more than a minute off is refused, which is what
// stops a captured request from being replayed later.
func TestLinearStaleTimestamp(t *testing.T) {
	t.Parallel()
	e := newTrackerEnv(t, "linear")
	for _, skew := range []time.Duration{2 * time.Minute, -2 * time.Minute} {
		e.clock.Set(testNow.Add(skew))
		before := e.snapshot()
		r := e.mustPost(delivery{file: "issue-create.json"}, 401)
		if msg, _ := r.body["error"].(string); !strings.Contains(msg, "webhookTimestamp") {
			t.Errorf("skew %s: error %q does not name webhookTimestamp", skew, msg)
		}
		if e.snapshot() != before {
			t.Errorf("skew %s: a stale delivery changed the store", skew)
		}
	}
	e.clock.Set(testNow.Add(50 * time.Second)) // within the minute
	e.mustPost(delivery{file: "issue-create.json"}, 200)
	e.clock.Set(testNow)
	r := e.mustPost(delivery{file: "issue-create.json", edit: func(m map[string]any) { delete(m, "webhookTimestamp") }}, 400)
	if r.body["field"] != "webhookTimestamp" {
		t.Errorf("without webhookTimestamp: %s, want field webhookTimestamp", r.raw)
	}
}
