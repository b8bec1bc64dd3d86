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
	ID        *int64  `json:"id"`
	DueOn     *string `json:"due_on"`
	UpdatedAt *string `json:"updated_at"`
}

// forgeIssue is the part of an issue GitHub, Gitea and Forgejo send alike
// (Gitea's API copies GitHub's), mapped once by task.
type forgeIssue struct {
	Number    *int64    `json:"number"`
	Title     *string   `json:"title"`
	Body      *string   `json:"body"`
	HTMLURL   string    `json:"html_url"`
	State     string    `json:"state"`
	Labels    []ghLabel `json:"labels"`
	UpdatedAt *string   `json:"updated_at"`
}

// task maps the shared fields of the issue at path in repo: id, title,
// description, URL, update time, labels, project, priority, and the state
// (closed is "done"; the caller refines it). Assignees and due dates are
// the caller's: the forges send them differently.
func (is *forgeIssue) task(m *mapping, path string, repo *ghRepo) (bridge.TaskInput, error) {
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
	default:
		return bridge.TaskInput{}, fieldErr(path+".state", "unknown state %q (want open or closed)", is.State)
	}
	return in, nil
}

// issueEventMissing names the first part an issues event of GitHub, Gitea
// or Forgejo lacks: the action, the issue, or the repository's full name.
func issueEventMissing(action *string, hasIssue bool, repo *ghRepo) error {
	switch {
	case action == nil || *action == "":
		return missing("action")
	case !hasIssue:
		return missing("issue")
	case repo == nil || repo.FullName == "":
		return missing("repository.full_name")
	}
	return nil
}

type ghIssue struct {
	forgeIssue
	StateReason *string         `json:"state_reason"`
	Assignee    *ghUser         `json:"assignee"`
	Assignees   []ghUser        `json:"assignees"`
	Milestone   *ghMilestone    `json:"milestone"`
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

func (g github) tasks(ctx context.Context, m *mapping, h http.Header, body []byte) ([]bridge.TaskInput, string, error) {
	m.index = milestoneIndex(m.src.Name)
	event := h.Get(githubEventHeader)
	switch event {
	case "":
		return nil, "", fieldErr(githubEventHeader, "required header")
	case "ping":
		return nil, "ping: the webhook is set up", nil
	case "issues":
	case "milestone":
		return g.milestoneTasks(ctx, m, body)
	default:
		// Comments, reactions, pushes...: nothing a task record holds.
		return nil, fmt.Sprintf("GitHub %q events carry no task changes", event), nil
	}
	var ev ghIssuesEvent
	if err := decodeJSON(body, &ev); err != nil {
		return nil, "", err
	}
	if err := issueEventMissing(ev.Action, ev.Issue != nil, ev.Repository); err != nil {
		return nil, "", err
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
		m.member(in.ID, "", in.UpdatedAt)
		return []bridge.TaskInput{in}, "", nil
	case "transferred":
		// The issue left this repository: it is gone under its old id and
		// lives on under the new one (which this source may or may not
		// also receive events for; the records agree either way).
		in.Deleted = true
		in.UpdatedAt = deleteTime(in.UpdatedAt, m.now)
		m.member(in.ID, "", in.UpdatedAt)
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
	in, err := is.forgeIssue.task(m, path, repo)
	if err != nil {
		return bridge.TaskInput{}, err
	}
	if r := str(is.StateReason); in.Status == "done" && (r == "not_planned" || r == "duplicate") {
		in.Status = "cancelled"
	}
	users := is.Assignees
	if len(users) == 0 && is.Assignee != nil {
		users = []ghUser{*is.Assignee} // older payloads carry only the first
	}
	for _, u := range users {
		in.Assignees = m.addAssignee(in.Assignees, u.Login)
	}
	milestone := ""
	if ms := is.Milestone; ms != nil {
		if in.Due, err = milestoneDue(path+".milestone.due_on", ms.DueOn); err != nil {
			return bridge.TaskInput{}, err
		}
		if ms.ID != nil {
			milestone = strconv.FormatInt(*ms.ID, 10)
		}
	}
	m.member(in.ID, milestone, in.UpdatedAt)
	return m.finish(in), nil
}

// milestoneDue reads a milestone's due_on. A milestone has a date, not a
// time: GitHub stores the chosen day at a fixed hour (07:00 or 08:00 UTC,
// Pacific midnight), so the UTC date is the day.
func milestoneDue(field string, dueOn *string) (bridge.When, error) {
	if str(dueOn) == "" {
		return bridge.When{}, nil
	}
	due, err := parseTime(field, *dueOn)
	if err != nil {
		return bridge.When{}, err
	}
	return bridge.When{Time: time.Date(due.Year(), due.Month(), due.Day(), 0, 0, 0, 0, time.UTC), AllDay: true}, nil
}

// The milestone index. GitHub announces a milestone's new due date once, in
// a "milestone" event, not with each of its issues; to move their due
// dates the adapter has the core keep, with the tasks, which tasks are in
// which milestone. Its keys are the ones it has always had in the store.
func milestoneIndex(source string) bridge.GroupIndex {
	return bridge.GroupIndex{
		Groups: "webhook/github/" + source + "/milestone/",
		Tasks:  "webhook/github/" + source + "/issue-milestone/",
	}
}

type ghMilestoneEvent struct {
	Action    *string      `json:"action"`
	Milestone *ghMilestone `json:"milestone"`
}

// milestoneTasks handles a "milestone" event: when its due date changes,
// or it is deleted (which takes it off its issues), every stored task in
// it gets the new due date. Each keeps its own content otherwise, and is
// ordered at the later of its own time and the milestone's, so an issue
// event from before the change cannot bring the old date back, and one
// from after it wins.
func (github) milestoneTasks(ctx context.Context, m *mapping, body []byte) ([]bridge.TaskInput, string, error) {
	var ev ghMilestoneEvent
	if err := decodeJSON(body, &ev); err != nil {
		return nil, "", err
	}
	switch {
	case ev.Action == nil || *ev.Action == "":
		return nil, "", missing("action")
	case ev.Milestone == nil:
		return nil, "", missing("milestone")
	case ev.Milestone.ID == nil:
		return nil, "", missing("milestone.id")
	}
	if *ev.Action != "edited" && *ev.Action != "deleted" {
		return nil, fmt.Sprintf("milestone %s: due dates unchanged", *ev.Action), nil
	}
	due, err := milestoneDue("milestone.due_on", ev.Milestone.DueOn)
	if err != nil {
		return nil, "", err
	}
	at := m.now
	if ev.Milestone.UpdatedAt != nil {
		if at, err = parseTime("milestone.updated_at", *ev.Milestone.UpdatedAt); err != nil {
			return nil, "", err
		}
	}
	msID := strconv.FormatInt(*ev.Milestone.ID, 10)
	if *ev.Action == "deleted" {
		due = bridge.When{}
	}
	stored, err := m.stored.GroupTasks(ctx, m.src.Name, m.index, msID)
	if err != nil {
		return nil, "", fmt.Errorf("read milestone %s: %w", msID, err)
	}
	var out []bridge.TaskInput
	for _, in := range stored {
		if in.Due == due {
			continue
		}
		in.Due = due
		if at.After(in.UpdatedAt) {
			in.UpdatedAt = at
		}
		out = append(out, in)
		if *ev.Action == "deleted" {
			m.member(in.ID, "", in.UpdatedAt)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Sprintf("milestone %s: no stored task has a different due date", *ev.Action), nil
	}
	return out, "", nil
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
