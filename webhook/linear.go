package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
)

// linear maps Linear's data change webhooks for issues. Task ids are the
// issue's UUID, which outlives its identifier (ENG-123 changes when the
// issue moves team).
type linear struct{}

// Linear's delivery headers and the freshness Linear asks receivers to
// enforce on webhookTimestamp.
const (
	linearSignatureHeader = "Linear-Signature"
	linearDeliveryHeader  = "Linear-Delivery"
	linearEventHeader     = "Linear-Event"
	linearMaxSkew         = time.Minute
)

func (linear) defaultAPI() string { return "https://api.linear.app" }

// verify checks Linear-Signature, the hex HMAC-SHA256 of the raw body under
// the webhook's signing secret, then that the body's webhookTimestamp
// (Unix milliseconds, covered by the signature) is within a minute of now,
// which is what makes a captured request useless for a replay later.
func (linear) verify(secret string, h http.Header, body []byte, now time.Time) error {
	sig := strings.TrimSpace(h.Get(linearSignatureHeader))
	if sig == "" {
		return fmt.Errorf("missing %s header", linearSignatureHeader)
	}
	if err := checkHMAC(linearSignatureHeader, secret, sig, body); err != nil {
		return err
	}
	var p struct {
		WebhookTimestamp *float64 `json:"webhookTimestamp"`
	}
	if err := decodeJSON(body, &p); err != nil {
		return err
	}
	if p.WebhookTimestamp == nil {
		return fieldErr("webhookTimestamp", "required: it is what proves the delivery is fresh")
	}
	at := time.UnixMilli(int64(*p.WebhookTimestamp))
	if skew := now.Sub(at); math.Abs(float64(skew)) > float64(linearMaxSkew) {
		return fmt.Errorf("webhookTimestamp is %s away from now (at most %s allowed): stale or replayed delivery",
			skew.Abs().Round(time.Second), linearMaxSkew)
	}
	return nil
}

// deliveryID: Linear-Delivery is a UUID per delivery.
func (linear) deliveryID(h http.Header) string { return h.Get(linearDeliveryHeader) }

type linUser struct {
	ID    string `json:"id"`
	Email string `json:"email"`
}

type linNamed struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

type linIssue struct {
	ID          *string    `json:"id"`
	Title       *string    `json:"title"`
	Description *string    `json:"description"`
	URL         string     `json:"url"`
	Priority    *float64   `json:"priority"`
	DueDate     *string    `json:"dueDate"`
	UpdatedAt   *string    `json:"updatedAt"`
	State       *linNamed  `json:"state"`
	Team        *linNamed  `json:"team"`
	Project     *linNamed  `json:"project"`
	Labels      []linNamed `json:"labels"`
	Assignee    *linUser   `json:"assignee"`
	AssigneeID  *string    `json:"assigneeId"`
	Trashed     *bool      `json:"trashed"`
}

type linEvent struct {
	Action *string         `json:"action"`
	Type   *string         `json:"type"`
	Data   json.RawMessage `json:"data"`
	URL    string          `json:"url"`
}

func (linear) tasks(_ context.Context, m *mapping, h http.Header, body []byte) ([]bridge.TaskInput, string, error) {
	var ev linEvent
	if err := decodeJSON(body, &ev); err != nil {
		return nil, "", err
	}
	typ := h.Get(linearEventHeader)
	if ev.Type != nil {
		typ = *ev.Type
	}
	switch typ {
	case "":
		return nil, "", missing("type")
	case "Issue":
	default:
		return nil, fmt.Sprintf("Linear %q events carry no task changes", typ), nil
	}
	if ev.Action == nil || *ev.Action == "" {
		return nil, "", missing("action")
	}
	if len(ev.Data) == 0 || string(ev.Data) == "null" {
		return nil, "", missing("data")
	}
	var is linIssue
	if err := decodeJSON(ev.Data, &is); err != nil {
		var fe *bridge.FieldError
		if errors.As(err, &fe) && fe.Field != "body" {
			fe.Field = "data." + fe.Field
		}
		return nil, "", err
	}
	switch {
	case is.ID == nil || *is.ID == "":
		return nil, "", missing("data.id")
	case is.Title == nil:
		return nil, "", missing("data.title")
	}
	updated, err := requiredTime("data.updatedAt", is.UpdatedAt)
	if err != nil {
		return nil, "", err
	}
	in := bridge.TaskInput{
		ID:          *is.ID,
		Title:       *is.Title,
		Description: str(is.Description),
		URL:         is.URL,
		UpdatedAt:   updated,
	}
	if in.URL == "" {
		in.URL = ev.URL
	}
	for _, l := range is.Labels {
		in.Labels = append(in.Labels, l.Name)
	}
	switch {
	case is.Assignee != nil:
		in.Assignees = m.addAssignee(nil, is.Assignee.ID, is.Assignee.Email)
	case str(is.AssigneeID) != "":
		in.Assignees = m.addAssignee(nil, *is.AssigneeID)
	}
	fallback := ""
	switch {
	case is.Project != nil && is.Project.Name != "":
		fallback = is.Project.Name
	case is.Team != nil:
		fallback = is.Team.Name
	}
	in.Project = m.project(in.Labels, fallback)
	if is.Priority != nil {
		// 0 no priority, 1 urgent, 2 high, 3 medium, 4 low.
		switch *is.Priority {
		case 1:
			in.Priority = "urgent"
		case 2:
			in.Priority = "high"
		case 4:
			in.Priority = "low"
		}
	}
	if in.Due, err = parseDate("data.dueDate", is.DueDate); err != nil {
		return nil, "", err
	}
	if is.State == nil {
		return nil, "", missing("data.state")
	}
	switch is.State.Type {
	case "triage", "backlog", "unstarted":
		in.Status = "open"
	case "started":
		in.Status = "in_progress"
	case "completed":
		in.Status = "done"
	case "canceled", "duplicate":
		in.Status = "cancelled"
	default:
		return nil, "", fieldErr("data.state.type", "unknown workflow state type %q", is.State.Type)
	}
	if *ev.Action == "remove" || (is.Trashed != nil && *is.Trashed) {
		in.Deleted = true
		in.UpdatedAt = deleteTime(in.UpdatedAt, m.now)
	}
	return []bridge.TaskInput{m.finish(in)}, "", nil
}

// setStatus moves the issue into its team's first workflow state of type
// "completed" (close) or "unstarted" (reopen; "backlog" if the team has no
// unstarted state) with the GraphQL issueUpdate mutation.
func (linear) setStatus(ctx context.Context, api *apiClient, id string, done bool) error {
	auth := "Bearer " + api.token // an OAuth access token
	if strings.HasPrefix(api.token, "lin_api_") {
		auth = api.token // personal API keys go bare, as Linear documents
	}
	hdr := http.Header{"Authorization": {auth}}
	var q struct {
		Issue *struct {
			State struct {
				Type string `json:"type"`
			} `json:"state"`
			Team struct {
				States struct {
					Nodes []struct {
						ID       string  `json:"id"`
						Type     string  `json:"type"`
						Position float64 `json:"position"`
					} `json:"nodes"`
				} `json:"states"`
			} `json:"team"`
		} `json:"issue"`
	}
	const query = `query DuebridgeIssueStates($id: String!) {
  issue(id: $id) { state { type } team { states { nodes { id type position } } } }
}`
	if err := linearCall(ctx, api, hdr, query, map[string]any{"id": id}, &q); err != nil {
		return fmt.Errorf("linear: read %s: %w", id, err)
	}
	if q.Issue == nil {
		return fmt.Errorf("linear: no issue %s", id)
	}
	want := []string{"unstarted", "backlog"}
	if done {
		want = []string{"completed"}
	}
	cur := q.Issue.State.Type
	if done && cur == "completed" || !done && cur != "completed" && cur != "canceled" {
		return nil // already there: a retry after success, or someone was quicker
	}
	for _, typ := range want {
		best, pos := "", math.Inf(1)
		for _, s := range q.Issue.Team.States.Nodes {
			if s.Type == typ && s.Position < pos {
				best, pos = s.ID, s.Position
			}
		}
		if best == "" {
			continue
		}
		var r struct {
			IssueUpdate struct {
				Success bool `json:"success"`
			} `json:"issueUpdate"`
		}
		const mutation = `mutation DuebridgeSetState($id: String!, $stateId: String!) {
  issueUpdate(id: $id, input: { stateId: $stateId }) { success }
}`
		if err := linearCall(ctx, api, hdr, mutation, map[string]any{"id": id, "stateId": best}, &r); err != nil {
			return fmt.Errorf("linear: update %s: %w", id, err)
		}
		if !r.IssueUpdate.Success {
			return fmt.Errorf("linear: update %s: not successful", id)
		}
		return nil
	}
	return fmt.Errorf("linear: the team of %s has no %q workflow state", id, want[0])
}

// linearCall runs one GraphQL operation. GraphQL reports errors in a 200
// answer, so those are checked too.
func linearCall(ctx context.Context, api *apiClient, hdr http.Header, query string, vars map[string]any, data any) error {
	var resp struct {
		Data   json.RawMessage `json:"data"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := api.do(ctx, http.MethodPost, "/graphql", hdr, map[string]any{"query": query, "variables": vars}, &resp); err != nil {
		return err
	}
	if len(resp.Errors) > 0 {
		msgs := make([]string, len(resp.Errors))
		for i, e := range resp.Errors {
			msgs[i] = e.Message
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	if len(resp.Data) == 0 || string(resp.Data) == "null" {
		return errors.New("empty answer")
	}
	return json.Unmarshal(resp.Data, data)
}
