package webhook

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
)

// gitea maps the "issues" webhook events of Gitea and of Forgejo, its fork:
// the same payloads under each one's own header names (Forgejo also sends
// the X-Gitea-* copies; the adapter reads the X-Forgejo-* ones for a
// forgejo source). Task ids are "owner/repo#123", as for GitHub.
type gitea struct {
	// brand is the header prefix, "Gitea" or "Forgejo".
	brand string
}

func (g gitea) header(name string) string { return "X-" + g.brand + "-" + name }

// defaultAPI: Gitea and Forgejo are self-hosted; api_url names the instance.
func (gitea) defaultAPI() string { return "" }

// verify checks X-Gitea-Signature / X-Forgejo-Signature: the hex HMAC-SHA256
// of the raw body under the webhook's secret, without GitHub's "sha256="
// prefix.
func (g gitea) verify(secret string, h http.Header, body []byte, _ time.Time) error {
	name := g.header("Signature")
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return fmt.Errorf("missing %s header", name)
	}
	return checkHMAC(name, secret, v, body)
}

// deliveryID: X-Gitea-Delivery is the UUID of the hook task; the "Replay"
// button re-sends under a new one, which the ordering rule absorbs.
func (g gitea) deliveryID(h http.Header) string { return h.Get(g.header("Delivery")) }

type giteaUser struct {
	Login    string `json:"login"`
	Username string `json:"username"`
}

type giteaMilestone struct {
	DueOn *string `json:"due_on"`
}

type giteaIssue struct {
	forgeIssue
	DueDate     *string         `json:"due_date"`
	Assignee    *giteaUser      `json:"assignee"`
	Assignees   []giteaUser     `json:"assignees"`
	Milestone   *giteaMilestone `json:"milestone"`
	PullRequest *struct{}       `json:"pull_request"`
}

type giteaIssuesEvent struct {
	Action     *string     `json:"action"`
	Issue      *giteaIssue `json:"issue"`
	Repository *ghRepo     `json:"repository"`
}

func (g gitea) tasks(_ context.Context, m *mapping, h http.Header, body []byte) ([]bridge.TaskInput, string, error) {
	eventHdr := g.header("Event")
	event := h.Get(eventHdr)
	switch event {
	case "":
		return nil, "", fieldErr(eventHdr, "required header")
	case "issues":
		// Gitea sends its issue_assign, issue_label and issue_milestone
		// hook events under this one event name too, told apart by action.
	default:
		return nil, fmt.Sprintf("%s %q events carry no task changes", g.brand, event), nil
	}
	var ev giteaIssuesEvent
	if err := decodeJSON(body, &ev); err != nil {
		return nil, "", err
	}
	if err := issueEventMissing(ev.Action, ev.Issue != nil, ev.Repository); err != nil {
		return nil, "", err
	}
	if ev.Issue.PullRequest != nil {
		return nil, "pull requests are not tasks", nil
	}
	in, err := g.task(m, ev.Issue, ev.Repository)
	if err != nil {
		return nil, "", err
	}
	if *ev.Action == "deleted" {
		in.Deleted = true
		in.UpdatedAt = deleteTime(in.UpdatedAt, m.now)
	}
	// Every other action (opened, edited, closed, reopened, assigned,
	// unassigned, label_updated, label_cleared, milestoned, demilestoned)
	// carries the whole issue as it is now.
	return []bridge.TaskInput{in}, "", nil
}

func (g gitea) task(m *mapping, is *giteaIssue, repo *ghRepo) (bridge.TaskInput, error) {
	in, err := is.forgeIssue.task(m, "issue", repo)
	if err != nil {
		return bridge.TaskInput{}, err
	}
	users := is.Assignees
	if len(users) == 0 && is.Assignee != nil {
		users = []giteaUser{*is.Assignee}
	}
	for _, u := range users {
		in.Assignees = m.addAssignee(in.Assignees, u.Login, u.Username)
	}
	// The issue's own due date wins; without one, its milestone's. Both are
	// dates the user picked, sent as a time on that day.
	if in.Due, err = giteaDue("issue.due_date", is.DueDate); err != nil {
		return bridge.TaskInput{}, err
	}
	if in.Due.IsZero() && is.Milestone != nil {
		if in.Due, err = giteaDue("issue.milestone.due_on", is.Milestone.DueOn); err != nil {
			return bridge.TaskInput{}, err
		}
	}
	return m.finish(in), nil
}

// giteaDue reads a due date. Gitea stores the chosen day as 23:59:59 in the
// server's zone and sends it with that offset, so the day is the date in
// the offset it is written in, not in UTC.
func giteaDue(field string, s *string) (bridge.When, error) {
	if str(s) == "" {
		return bridge.When{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return bridge.When{}, fieldErr(field, "not a date-time: %q", *s)
	}
	if t.Year() < 1970 || t.Year() > 9999 {
		return bridge.When{}, fieldErr(field, "year out of range: %q", *s)
	}
	return bridge.When{Time: time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), AllDay: true}, nil
}

// setStatus: PATCH /api/v1/repos/{owner}/{repo}/issues/{index} with state
// closed or open, authenticated with an access token.
func (g gitea) setStatus(ctx context.Context, api *apiClient, id string, done bool) error {
	repo, num, ok := strings.Cut(id, "#")
	if _, err := strconv.ParseUint(num, 10, 64); !ok || err != nil || strings.Count(repo, "/") != 1 {
		return fmt.Errorf("task id %q is not owner/repo#number", id)
	}
	owner, name, _ := strings.Cut(repo, "/")
	state := "open"
	if done {
		state = "closed"
	}
	hdr := http.Header{"Authorization": {"token " + api.token}, "Accept": {"application/json"}}
	path := "/api/v1/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/issues/" + num
	if err := api.do(ctx, http.MethodPatch, path, hdr, map[string]string{"state": state}, nil); err != nil {
		return fmt.Errorf("%s: set %s: %w", strings.ToLower(g.brand), id, err)
	}
	return nil
}
