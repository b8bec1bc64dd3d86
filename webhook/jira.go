package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
)

// jira maps Jira's issue webhooks (Jira Cloud admin webhooks with a secret,
// and Jira Data Center, which signs the same way). Task ids are the issue's
// numeric id, which, unlike its key, survives a move to another project;
// the REST API takes either.
type jira struct{}

// Jira's delivery headers.
const (
	jiraSignatureHeader  = "X-Hub-Signature"
	jiraIdentifierHeader = "X-Atlassian-Webhook-Identifier"
)

// defaultAPI: every Jira site has its own address; sources[].api_url is the
// site, e.g. https://your-domain.atlassian.net.
func (jira) defaultAPI() string { return "" }

// verify checks X-Hub-Signature: "sha256=" and the hex HMAC-SHA256 of the
// raw body under the webhook's secret.
func (jira) verify(secret string, h http.Header, body []byte, _ time.Time) error {
	return verifyHubSignature(jiraSignatureHeader, secret, h.Get(jiraSignatureHeader), body)
}

// deliveryID: X-Atlassian-Webhook-Identifier is unique per delivery within
// a site and unchanged across Jira's retries.
func (jira) deliveryID(h http.Header) string { return h.Get(jiraIdentifierHeader) }

type jiraUser struct {
	AccountID    string `json:"accountId"`
	Name         string `json:"name"` // Data Center user name
	Key          string `json:"key"`  // Data Center user key
	EmailAddress string `json:"emailAddress"`
}

type jiraNamed struct {
	Key  string `json:"key"`
	Name string `json:"name"`
}

type jiraFields struct {
	Summary     *string         `json:"summary"`
	Description json.RawMessage `json:"description"`
	Assignee    *jiraUser       `json:"assignee"`
	DueDate     *string         `json:"duedate"`
	Priority    *jiraNamed      `json:"priority"`
	Status      *struct {
		Name           string    `json:"name"`
		StatusCategory jiraNamed `json:"statusCategory"`
	} `json:"status"`
	Resolution *jiraNamed `json:"resolution"`
	Labels     []string   `json:"labels"`
	Updated    *string    `json:"updated"`
	Project    *jiraNamed `json:"project"`
}

type jiraEvent struct {
	Timestamp          int64  `json:"timestamp"`
	WebhookEvent       string `json:"webhookEvent"`
	IssueEventTypeName string `json:"issue_event_type_name"`
	Issue              *struct {
		ID     *string     `json:"id"`
		Key    string      `json:"key"`
		Self   string      `json:"self"`
		Fields *jiraFields `json:"fields"`
	} `json:"issue"`
}

// jiraNoise are issue_updated causes that change nothing a task holds:
// Jira reports comments and work logs as issue updates too.
var jiraNoise = map[string]bool{
	"issue_commented": true, "issue_comment_edited": true, "issue_comment_deleted": true,
	"issue_work_logged": true, "issue_worklog_updated": true, "issue_worklog_deleted": true,
}

// jiraCancelled are resolutions that close an issue without doing it.
var jiraCancelled = map[string]bool{
	"won't do": true, "won't fix": true, "duplicate": true, "cannot reproduce": true,
	"declined": true, "incomplete": true, "obsolete": true,
}

func (jira) tasks(_ context.Context, m *mapping, _ http.Header, body []byte) ([]bridge.TaskInput, string, error) {
	var ev jiraEvent
	if err := decodeJSON(body, &ev); err != nil {
		return nil, "", err
	}
	switch ev.WebhookEvent {
	case "":
		return nil, "", missing("webhookEvent")
	case "jira:issue_created", "jira:issue_updated", "jira:issue_deleted":
	default:
		return nil, fmt.Sprintf("Jira %q events carry no task changes", ev.WebhookEvent), nil
	}
	if ev.WebhookEvent == "jira:issue_updated" && jiraNoise[ev.IssueEventTypeName] {
		return nil, fmt.Sprintf("Jira %q updates carry no task changes", ev.IssueEventTypeName), nil
	}
	is := ev.Issue
	switch {
	case is == nil:
		return nil, "", missing("issue")
	case is.ID == nil || *is.ID == "":
		return nil, "", missing("issue.id")
	case is.Fields == nil:
		return nil, "", missing("issue.fields")
	case is.Fields.Summary == nil:
		return nil, "", missing("issue.fields.summary")
	}
	f := is.Fields
	updated, err := requiredTime("issue.fields.updated", f.Updated)
	if err != nil {
		return nil, "", err
	}
	in := bridge.TaskInput{
		ID:          *is.ID,
		Title:       *f.Summary,
		Description: jiraText(f.Description),
		URL:         jiraBrowseURL(is.Self, is.Key),
		Labels:      f.Labels,
		UpdatedAt:   updated,
	}
	if a := f.Assignee; a != nil {
		in.Assignees = m.addAssignee(nil, a.AccountID, a.Name, a.Key, a.EmailAddress)
	}
	fallback := ""
	if f.Project != nil {
		fallback = f.Project.Name
	}
	in.Project = m.project(in.Labels, fallback)
	if f.Priority != nil {
		in.Priority = priorityWord(f.Priority.Name)
	}
	if in.Due, err = parseDate("issue.fields.duedate", f.DueDate); err != nil {
		return nil, "", err
	}
	if f.Status == nil {
		return nil, "", missing("issue.fields.status")
	}
	// The status category is the part of a workflow every Jira site shares;
	// status names are each team's own.
	switch f.Status.StatusCategory.Key {
	case "new", "undefined", "":
		in.Status = "open"
	case "indeterminate":
		in.Status = "in_progress"
	case "done":
		in.Status = "done"
		if f.Resolution != nil && jiraCancelled[strings.ToLower(f.Resolution.Name)] {
			in.Status = "cancelled"
		}
	default:
		return nil, "", fieldErr("issue.fields.status.statusCategory.key", "unknown status category %q", f.Status.StatusCategory.Key)
	}
	if ev.WebhookEvent == "jira:issue_deleted" {
		in.Deleted = true
		at := m.now
		if t := time.UnixMilli(ev.Timestamp); t.After(at) {
			at = t // Jira's clock is ahead of ours: its event time still orders the delete last
		}
		in.UpdatedAt = deleteTime(in.UpdatedAt, at)
	}
	return []bridge.TaskInput{m.finish(in)}, "", nil
}

// jiraBrowseURL turns the issue's REST address
// (https://site/rest/api/2/issue/10001, maybe under a context path on Data
// Center) into the page people open: https://site/browse/KEY.
func jiraBrowseURL(self, key string) string {
	i := strings.Index(self, "/rest/api/")
	if i < 0 || key == "" {
		return ""
	}
	u, err := url.Parse(self[:i])
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return ""
	}
	return self[:i] + "/browse/" + url.PathEscape(key)
}

// jiraText reads a description: plain text (wiki markup) in the REST v2
// shape admin webhooks send, or an Atlassian Document Format tree in the
// v3 shape, from which the text nodes are kept.
func jiraText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var doc adfNode
	if json.Unmarshal(raw, &doc) != nil {
		return ""
	}
	var b strings.Builder
	doc.text(&b)
	return strings.TrimSpace(b.String())
}

type adfNode struct {
	Type    string    `json:"type"`
	Text    string    `json:"text"`
	Content []adfNode `json:"content"`
}

func (n *adfNode) text(b *strings.Builder) {
	switch n.Type {
	case "text":
		b.WriteString(n.Text)
	case "hardBreak":
		b.WriteByte('\n')
	}
	for i := range n.Content {
		n.Content[i].text(b)
	}
	switch n.Type {
	case "paragraph", "heading", "listItem", "codeBlock", "blockquote":
		b.WriteByte('\n')
	}
}

// setStatus moves the issue with a workflow transition into a status of
// category "done" (close) or "new" (reopen; "indeterminate" if the
// workflow has no way back to a to-do status). Jira has no "close" call:
// which transitions exist is each workflow's own.
func (jira) setStatus(ctx context.Context, api *apiClient, id string, done bool) error {
	auth := "Bearer " + api.token // a Data Center personal access token
	if strings.Contains(api.token, ":") {
		// Jira Cloud: "email:api-token" as basic credentials.
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(api.token))
	}
	hdr := http.Header{"Authorization": {auth}}
	issue := "/rest/api/2/issue/" + url.PathEscape(id)

	var cur struct {
		Fields struct {
			Status struct {
				StatusCategory jiraNamed `json:"statusCategory"`
			} `json:"status"`
		} `json:"fields"`
	}
	if err := api.do(ctx, http.MethodGet, issue+"?fields=status", hdr, nil, &cur); err != nil {
		return fmt.Errorf("jira: read %s: %w", id, err)
	}
	if (cur.Fields.Status.StatusCategory.Key == "done") == done {
		return nil // already there: a retry after success, or someone was quicker
	}
	want := []string{"new", "indeterminate"}
	if done {
		want = []string{"done"}
	}
	var ts struct {
		Transitions []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
			To   struct {
				StatusCategory jiraNamed `json:"statusCategory"`
			} `json:"to"`
		} `json:"transitions"`
	}
	if err := api.do(ctx, http.MethodGet, issue+"/transitions", hdr, nil, &ts); err != nil {
		return fmt.Errorf("jira: transitions of %s: %w", id, err)
	}
	for _, cat := range want {
		for _, t := range ts.Transitions {
			if t.To.StatusCategory.Key != cat {
				continue
			}
			body := map[string]any{"transition": map[string]string{"id": t.ID}}
			if err := api.do(ctx, http.MethodPost, issue+"/transitions", hdr, body, nil); err != nil {
				return fmt.Errorf("jira: transition %s with %q: %w", id, t.Name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("jira: %s has no transition to a %q status from where it is", id, want[0])
}
