package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
)

// gitlab maps GitLab's issue and work item events (project or group
// webhooks). Task ids are "<project id>#<iid>": the numeric project id
// survives renames and moves of the project, and it is what the API takes.
type gitlab struct{}

// GitLab's delivery headers.
const (
	gitlabTokenHeader       = "X-Gitlab-Token"
	gitlabEventHeader       = "X-Gitlab-Event"
	gitlabEventUUIDHeader   = "X-Gitlab-Event-UUID"
	gitlabIdempotencyHeader = "Idempotency-Key"
)

func (gitlab) defaultAPI() string { return "https://gitlab.com/api/v4" }

// verify: GitLab sends the webhook's secret token itself in X-Gitlab-Token.
// Both sides are hashed first so the comparison takes the same time
// whatever the lengths.
func (gitlab) verify(secret string, h http.Header, _ []byte, _ time.Time) error {
	got := h.Get(gitlabTokenHeader)
	if got == "" {
		return fmt.Errorf("missing %s header", gitlabTokenHeader)
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(secret))
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return fmt.Errorf("%s does not match the source's secret", gitlabTokenHeader)
	}
	return nil
}

// deliveryID: Idempotency-Key stays the same across GitLab's retries of one
// event; older GitLab versions send only X-Gitlab-Event-UUID.
func (gitlab) deliveryID(h http.Header) string {
	if k := h.Get(gitlabIdempotencyHeader); k != "" {
		return k
	}
	return h.Get(gitlabEventUUIDHeader)
}

type glUser struct {
	Username string `json:"username"`
}

type glLabel struct {
	Title string `json:"title"`
}

type glAttrs struct {
	IID            *int64    `json:"iid"`
	ProjectID      *int64    `json:"project_id"`
	Title          *string   `json:"title"`
	Description    *string   `json:"description"`
	URL            string    `json:"url"`
	State          string    `json:"state"`
	Action         string    `json:"action"`
	Type           string    `json:"type"`
	DueDate        *string   `json:"due_date"`
	StartDate      *string   `json:"start_date"`
	UpdatedAt      *string   `json:"updated_at"`
	MovedToID      *int64    `json:"moved_to_id"`
	DuplicatedToID *int64    `json:"duplicated_to_id"`
	Severity       string    `json:"severity"`
	Labels         []glLabel `json:"labels"`
}

type glEvent struct {
	ObjectKind *string `json:"object_kind"`
	Project    *struct {
		ID   *int64 `json:"id"`
		Name string `json:"name"`
	} `json:"project"`
	ObjectAttributes *glAttrs  `json:"object_attributes"`
	Assignees        []glUser  `json:"assignees"`
	Assignee         *glUser   `json:"assignee"`
	Labels           []glLabel `json:"labels"`
}

// gitlabTaskTypes are the work item types that are someone's to-do.
// Epics, objectives, key results, requirements and test cases are plans or
// records rather than tasks.
var gitlabTaskTypes = map[string]bool{"": true, "Issue": true, "Task": true, "Incident": true}

func (gitlab) tasks(_ context.Context, m *mapping, h http.Header, body []byte) ([]bridge.TaskInput, string, error) {
	switch event := h.Get(gitlabEventHeader); event {
	case "":
		return nil, "", fieldErr(gitlabEventHeader, "required header")
	case "Issue Hook", "Confidential Issue Hook", "Work Item Hook":
	default:
		return nil, fmt.Sprintf("GitLab %q events carry no task changes", event), nil
	}
	var ev glEvent
	if err := decodeJSON(body, &ev); err != nil {
		return nil, "", err
	}
	if ev.ObjectKind == nil {
		return nil, "", missing("object_kind")
	}
	if k := *ev.ObjectKind; k != "issue" && k != "work_item" {
		return nil, fmt.Sprintf("GitLab %q objects are not tasks", k), nil
	}
	a := ev.ObjectAttributes
	if a == nil {
		return nil, "", missing("object_attributes")
	}
	if !gitlabTaskTypes[a.Type] {
		return nil, fmt.Sprintf("GitLab %s work items are not tasks", a.Type), nil
	}
	switch {
	case a.IID == nil:
		return nil, "", missing("object_attributes.iid")
	case a.Title == nil:
		return nil, "", missing("object_attributes.title")
	}
	projectID := a.ProjectID
	if projectID == nil && ev.Project != nil {
		projectID = ev.Project.ID
	}
	if projectID == nil {
		return nil, "", missing("object_attributes.project_id")
	}
	updated, err := requiredTime("object_attributes.updated_at", a.UpdatedAt)
	if err != nil {
		return nil, "", err
	}
	in := bridge.TaskInput{
		ID:          fmt.Sprintf("%d#%d", *projectID, *a.IID),
		Title:       *a.Title,
		Description: str(a.Description),
		URL:         a.URL,
		UpdatedAt:   updated,
	}
	labels := ev.Labels
	if len(labels) == 0 {
		labels = a.Labels
	}
	for _, l := range labels {
		in.Labels = append(in.Labels, l.Title)
	}
	users := ev.Assignees
	if len(users) == 0 && ev.Assignee != nil {
		users = []glUser{*ev.Assignee} // the deprecated single assignee
	}
	for _, u := range users {
		in.Assignees = m.addAssignee(in.Assignees, u.Username)
	}
	fallback := ""
	if ev.Project != nil {
		fallback = ev.Project.Name
	}
	in.Project = m.project(in.Labels, fallback)
	// Incidents carry a severity; issues follow the label conventions.
	in.Priority = priorityFromLabels(in.Labels)
	if p := priorityWord(a.Severity); in.Priority == "" && p != "" {
		in.Priority = p
	}
	if in.Due, err = parseDate("object_attributes.due_date", a.DueDate); err != nil {
		return nil, "", err
	}
	if in.Start, err = parseDate("object_attributes.start_date", a.StartDate); err != nil {
		return nil, "", err
	}
	if !in.Start.IsZero() && !in.Due.IsZero() && in.Start.Time.After(in.Due.Time) {
		in.Start = in.Due // GitLab does not stop a start after the due date; we would refuse it
	}
	switch a.State {
	case "opened", "":
		in.Status = "open"
	case "closed", "locked":
		in.Status = "done"
		if a.DuplicatedToID != nil {
			in.Status = "cancelled"
		}
	default:
		return nil, "", fieldErr("object_attributes.state", "unknown state %q (want opened or closed)", a.State)
	}
	if a.MovedToID != nil {
		// Moved to another project: GitLab closes this one and opens a new
		// issue there, which arrives as its own event if the hook covers it.
		in.Deleted = true
		in.UpdatedAt = deleteTime(in.UpdatedAt, m.now)
	}
	return []bridge.TaskInput{m.finish(in)}, "", nil
}

// setStatus: PUT /projects/:id/issues/:iid with state_event close or reopen.
func (gitlab) setStatus(ctx context.Context, api *apiClient, id string, done bool) error {
	project, iid, ok := strings.Cut(id, "#")
	if _, err := strconv.ParseUint(iid, 10, 64); !ok || err != nil || project == "" {
		return fmt.Errorf("task id %q is not <project id>#<iid>", id)
	}
	event := "reopen"
	if done {
		event = "close"
	}
	hdr := http.Header{"PRIVATE-TOKEN": {api.token}}
	path := "/projects/" + url.PathEscape(project) + "/issues/" + iid
	if err := api.do(ctx, http.MethodPut, path, hdr, map[string]string{"state_event": event}, nil); err != nil {
		return fmt.Errorf("gitlab: set %s: %w", id, err)
	}
	return nil
}
