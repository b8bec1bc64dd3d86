package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/store"
)

// github maps GitHub's "issues" webhook events (repository or organization
// webhooks, content type application/json). Task ids are "owner/repo#123".
type github struct{}

// GitHub's delivery headers.
const (
	githubSignatureHeader = "X-Hub-Signature-256"
	githubEventHeader     = "X-GitHub-Event"
	githubDeliveryHeader  = "X-GitHub-Delivery"
)

func (github) defaultAPI() string { return "https://api.github.com" }

// verify checks X-Hub-Signature-256: "sha256=" and the hex HMAC-SHA256 of
// the raw body under the webhook's secret. GitHub's older SHA-1
// X-Hub-Signature is not accepted: GitHub always sends both.
func (github) verify(secret string, h http.Header, body []byte, _ time.Time) error {
	return verifyHubSignature(githubSignatureHeader, secret, h.Get(githubSignatureHeader), body)
}

// verifyHubSignature checks a "sha256=<hex HMAC-SHA256 of the body>" header,
// the WebSub form GitHub and Jira both use.
func verifyHubSignature(name, secret, value string, body []byte) error {
	if value == "" {
		return fmt.Errorf("missing %s header", name)
	}
	hexSig, ok := strings.CutPrefix(value, "sha256=")
	if !ok {
		return fmt.Errorf("%s must be sha256=<hex HMAC-SHA256 of the body>", name)
	}
	return checkHMAC(name, secret, strings.TrimSpace(hexSig), body)
}

// checkHMAC compares a hex HMAC-SHA256 of body against hexSig in constant time.
func checkHMAC(name, secret, hexSig string, body []byte) error {
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return fmt.Errorf("%s is not 64 hex digits", name)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	if !hmac.Equal(got, m.Sum(nil)) {
		return fmt.Errorf("%s does not match the body and the source's secret", name)
	}
	return nil
}

// deliveryID: X-GitHub-Delivery is a GUID per event that GitHub keeps when
// an admin redelivers it.
func (github) deliveryID(h http.Header) string { return h.Get(githubDeliveryHeader) }

type ghUser struct {
	Login string `json:"login"`
}

type ghLabel struct {
	Name string `json:"name"`
}

type ghMilestone struct {
	DueOn *string `json:"due_on"`
}

type ghIssue struct {
	Number      *int64          `json:"number"`
	Title       *string         `json:"title"`
	Body        *string         `json:"body"`
	HTMLURL     string          `json:"html_url"`
	State       string          `json:"state"`
	StateReason *string         `json:"state_reason"`
	Assignee    *ghUser         `json:"assignee"`
	Assignees   []ghUser        `json:"assignees"`
	Labels      []ghLabel       `json:"labels"`
	Milestone   *ghMilestone    `json:"milestone"`
	UpdatedAt   *string         `json:"updated_at"`
	PullRequest json.RawMessage `json:"pull_request"`
}

type ghRepo struct {
	FullName string `json:"full_name"`
	Name     string `json:"name"`
}

type ghIssuesEvent struct {
	Action     *string  `json:"action"`
	Issue      *ghIssue `json:"issue"`
	Repository *ghRepo  `json:"repository"`
	Changes    struct {
		NewIssue      *ghIssue `json:"new_issue"`
		NewRepository *ghRepo  `json:"new_repository"`
	} `json:"changes"`
}

func (g github) tasks(m *mapping, h http.Header, body []byte) ([]bridge.TaskInput, string, error) {
	event := h.Get(githubEventHeader)
	switch event {
	case "":
		return nil, "", fieldErr(githubEventHeader, "required header")
	case "ping":
		return nil, "ping: the webhook is set up", nil
	case "issues":
	default:
		// Comments, reactions, pushes, milestone edits...: nothing a task
		// record holds. A milestone's new due date reaches its issues with
		// their next event, which carries the milestone.
		return nil, fmt.Sprintf("GitHub %q events carry no task changes", event), nil
	}
	var ev ghIssuesEvent
	if err := decodeJSON(body, &ev); err != nil {
		return nil, "", err
	}
	switch {
	case ev.Action == nil || *ev.Action == "":
		return nil, "", missing("action")
	case ev.Issue == nil:
		return nil, "", missing("issue")
	case ev.Repository == nil || ev.Repository.FullName == "":
		return nil, "", missing("repository.full_name")
	}
	if len(ev.Issue.PullRequest) > 0 && string(ev.Issue.PullRequest) != "null" {
		return nil, "pull requests are not tasks", nil
	}
	in, err := g.task(m, "issue", ev.Issue, ev.Repository)
	if err != nil {
		return nil, "", err
	}
	switch *ev.Action {
	case "deleted":
		in.Deleted = true
		in.UpdatedAt = deleteTime(in.UpdatedAt, m.now)
		return []bridge.TaskInput{in}, "", nil
	case "transferred":
		// The issue left this repository: it is gone under its old id and
		// lives on under the new one (which this source may or may not
		// also receive events for; the records agree either way).
		in.Deleted = true
		in.UpdatedAt = deleteTime(in.UpdatedAt, m.now)
		out := []bridge.TaskInput{in}
		if ni, nr := ev.Changes.NewIssue, ev.Changes.NewRepository; ni != nil && nr != nil && nr.FullName != "" {
			moved, err := g.task(m, "changes.new_issue", ni, nr)
			if err != nil {
				return nil, "", err
			}
			out = append(out, moved)
		}
		return out, "", nil
	}
	// Every other action (opened, edited, closed, reopened, assigned,
	// unassigned, labeled, milestoned, ...) carries the whole issue as it
	// is now, so one mapping serves them all.
	return []bridge.TaskInput{in}, "", nil
}

// task maps one GitHub issue object; path names it in error messages.
func (github) task(m *mapping, path string, is *ghIssue, repo *ghRepo) (bridge.TaskInput, error) {
	switch {
	case is.Number == nil:
		return bridge.TaskInput{}, missing(path + ".number")
	case is.Title == nil:
		return bridge.TaskInput{}, missing(path + ".title")
	}
	updated, err := requiredTime(path+".updated_at", is.UpdatedAt)
	if err != nil {
		return bridge.TaskInput{}, err
	}
	in := bridge.TaskInput{
		ID:          fmt.Sprintf("%s#%d", repo.FullName, *is.Number),
		Title:       *is.Title,
		Description: str(is.Body),
		URL:         is.HTMLURL,
		UpdatedAt:   updated,
	}
	for _, l := range is.Labels {
		in.Labels = append(in.Labels, l.Name)
	}
	users := is.Assignees
	if len(users) == 0 && is.Assignee != nil {
		users = []ghUser{*is.Assignee} // older payloads carry only the first
	}
	for _, u := range users {
		in.Assignees = m.addAssignee(in.Assignees, u.Login)
	}
	name := repo.Name
	if name == "" {
		name = repo.FullName
	}
	in.Project = m.project(in.Labels, name)
	in.Priority = priorityFromLabels(in.Labels)
	switch is.State {
	case "open", "":
		in.Status = "open"
	case "closed":
		in.Status = "done"
		if r := str(is.StateReason); r == "not_planned" || r == "duplicate" {
			in.Status = "cancelled"
		}
	default:
		return bridge.TaskInput{}, fieldErr(path+".state", "unknown state %q (want open or closed)", is.State)
	}
	if is.Milestone != nil && str(is.Milestone.DueOn) != "" {
		due, err := parseTime(path+".milestone.due_on", *is.Milestone.DueOn)
		if err != nil {
			return bridge.TaskInput{}, err
		}
		// A milestone has a date, not a time: GitHub stores the chosen day
		// at a fixed hour (07:00 or 08:00 UTC, Pacific midnight).
		d := due.UTC()
		in.Due = store.When{Time: time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, time.UTC), AllDay: true}
	}
	return finish(in), nil
}

// setStatus: PATCH /repos/{owner}/{repo}/issues/{number} with state
// closed (reason completed) or open.
func (github) setStatus(ctx context.Context, api *apiClient, id string, done bool) error {
	repo, num, ok := strings.Cut(id, "#")
	if _, err := strconv.ParseUint(num, 10, 64); !ok || err != nil || strings.Count(repo, "/") != 1 {
		return fmt.Errorf("task id %q is not owner/repo#number", id)
	}
	owner, name, _ := strings.Cut(repo, "/")
	body := map[string]string{"state": "open"}
	if done {
		body = map[string]string{"state": "closed", "state_reason": "completed"}
	}
	hdr := http.Header{
		"Authorization":        {"Bearer " + api.token},
		"Accept":               {"application/vnd.github+json"},
		"X-GitHub-Api-Version": {"2022-11-28"},
	}
	path := "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/issues/" + num
	if err := api.do(ctx, http.MethodPatch, path, hdr, body, nil); err != nil {
		return fmt.Errorf("github: set %s: %w", id, err)
	}
	return nil
}
