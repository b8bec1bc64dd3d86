package webhook

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// apiCall is one request a fake tracker API received.
type apiCall struct {
	method, path, query string
	header              http.Header
	body                map[string]any
}

// fakeAPI is a tracker API on 127.0.0.1:0 that records every request and
// answers with reply (default: 200 {}).
type fakeAPI struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []apiCall
	reply func(c apiCall) (int, string)
}

func newFakeAPI(t *testing.T, reply func(c apiCall) (int, string)) *fakeAPI {
	t.Helper()
	f := &fakeAPI{reply: reply}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		c := apiCall{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, header: r.Header}
		if len(raw) > 0 {
			if err := json.Unmarshal(raw, &c.body); err != nil {
				t.Errorf("%s %s: body is not JSON: %q", r.Method, r.URL.Path, raw)
			}
		}
		f.mu.Lock()
		f.calls = append(f.calls, c)
		f.mu.Unlock()
		status, body := http.StatusOK, "{}"
		if f.reply != nil {
			status, body = f.reply(c)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) recorded() []apiCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]apiCall(nil), f.calls...)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// checkCall compares one recorded request with what the tracker documents.
func checkCall(t *testing.T, c apiCall, method, path, authHeader, auth string, body any) {
	t.Helper()
	if c.method != method || c.path != path {
		t.Errorf("request %s %s, want %s %s", c.method, c.path, method, path)
	}
	if got := c.header.Get(authHeader); got != auth {
		t.Errorf("%s %s: %s = %q, want %q", method, path, authHeader, got, auth)
	}
	if body != nil && jsonString(c.body) != jsonString(body) {
		t.Errorf("%s %s: body %s, want %s", method, path, jsonString(c.body), jsonString(body))
	}
}

func deliver(t *testing.T, src *config.Source, id, status string) (bool, error) {
	t.Helper()
	return NewCloser(CloserOptions{}).Deliver(context.Background(), src,
		bridge.CallbackBody{Source: src.Name, ID: id, Status: status, User: "alice", ChangedAt: testNow, EventID: "e1"})
}

func TestCloserGitHub(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	src := &config.Source{Name: "gh", Kind: "github", APIToken: "ghp_token", APIURL: api.srv.URL + "/"}
	for _, status := range []string{"done", "open"} {
		if handled, err := deliver(t, src, "octo-org/hello-world#1347", status); !handled || err != nil {
			t.Fatalf("%s: handled %v, err %v", status, handled, err)
		}
	}
	calls := api.recorded()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	checkCall(t, calls[0], "PATCH", "/repos/octo-org/hello-world/issues/1347", "Authorization", "Bearer ghp_token",
		map[string]string{"state": "closed", "state_reason": "completed"})
	checkCall(t, calls[1], "PATCH", "/repos/octo-org/hello-world/issues/1347", "Authorization", "Bearer ghp_token",
		map[string]string{"state": "open"})
	if v := calls[0].header.Get("X-GitHub-Api-Version"); v != "2022-11-28" {
		t.Errorf("X-GitHub-Api-Version %q", v)
	}
	if a := calls[0].header.Get("Accept"); a != "application/vnd.github+json" {
		t.Errorf("Accept %q", a)
	}
}

func TestCloserGitLab(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	src := &config.Source{Name: "gl", Kind: "gitlab", APIToken: "glpat-token", APIURL: api.srv.URL + "/api/v4"}
	for _, status := range []string{"done", "open"} {
		if handled, err := deliver(t, src, "15#23", status); !handled || err != nil {
			t.Fatalf("%s: handled %v, err %v", status, handled, err)
		}
	}
	calls := api.recorded()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want 2", len(calls))
	}
	checkCall(t, calls[0], "PUT", "/api/v4/projects/15/issues/23", "PRIVATE-TOKEN", "glpat-token", map[string]string{"state_event": "close"})
	checkCall(t, calls[1], "PUT", "/api/v4/projects/15/issues/23", "PRIVATE-TOKEN", "glpat-token", map[string]string{"state_event": "reopen"})
}

// jiraAPI answers like a Jira site whose issue is in category cat, with
// the transitions a default software workflow offers.
func jiraAPI(cat *string) func(c apiCall) (int, string) {
	return func(c apiCall) (int, string) {
		switch {
		case c.method == "GET" && c.path == "/rest/api/2/issue/10002" && c.query == "fields=status":
			return 200, `{"id":"10002","key":"REL-7","fields":{"status":{"name":"x","statusCategory":{"key":"` + *cat + `"}}}}`
		case c.method == "GET" && c.path == "/rest/api/2/issue/10002/transitions":
			return 200, `{"expand":"transitions","transitions":[
				{"id":"11","name":"To Do","to":{"name":"To Do","statusCategory":{"key":"new"}}},
				{"id":"21","name":"In Progress","to":{"name":"In Progress","statusCategory":{"key":"indeterminate"}}},
				{"id":"31","name":"Done","to":{"name":"Done","statusCategory":{"key":"done"}}}]}`
		case c.method == "POST" && c.path == "/rest/api/2/issue/10002/transitions":
			return 204, ""
		}
		return 404, `{"errorMessages":["Issue does not exist or you do not have permission to see it."],"errors":{}}`
	}
}

func TestCloserJira(t *testing.T) {
	t.Parallel()
	cat := "new"
	api := newFakeAPI(t, jiraAPI(&cat))
	src := &config.Source{Name: "j", Kind: "jira", APIToken: "alice@example.com:ATATT3x", APIURL: api.srv.URL}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice@example.com:ATATT3x"))

	if handled, err := deliver(t, src, "10002", "done"); !handled || err != nil {
		t.Fatalf("done: handled %v, err %v", handled, err)
	}
	calls := api.recorded()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want status, transitions, transition", len(calls))
	}
	checkCall(t, calls[0], "GET", "/rest/api/2/issue/10002", "Authorization", basic, nil)
	checkCall(t, calls[1], "GET", "/rest/api/2/issue/10002/transitions", "Authorization", basic, nil)
	checkCall(t, calls[2], "POST", "/rest/api/2/issue/10002/transitions", "Authorization", basic,
		map[string]any{"transition": map[string]string{"id": "31"}})

	// Already done (a retry after success): no transition.
	cat = "done"
	if _, err := deliver(t, src, "10002", "done"); err != nil {
		t.Fatal(err)
	}
	if n := len(api.recorded()); n != 4 {
		t.Errorf("done twice: %d calls, want one more status read only", n)
	}
	// Reopen picks the to-do transition.
	if _, err := deliver(t, src, "10002", "open"); err != nil {
		t.Fatal(err)
	}
	calls = api.recorded()
	checkCall(t, calls[len(calls)-1], "POST", "/rest/api/2/issue/10002/transitions", "Authorization", basic,
		map[string]any{"transition": map[string]string{"id": "11"}})

	// A Data Center personal access token goes as a bearer token.
	src.APIToken = "NjQ0MzY3OTk5"
	cat = "new"
	if _, err := deliver(t, src, "10002", "done"); err != nil {
		t.Fatal(err)
	}
	if got := api.recorded()[len(api.recorded())-1].header.Get("Authorization"); got != "Bearer NjQ0MzY3OTk5" {
		t.Errorf("PAT authorization %q", got)
	}
}

func TestCloserJiraNeedsSite(t *testing.T) {
	t.Parallel()
	src := &config.Source{Name: "j", Kind: "jira", APIToken: "alice@example.com:tok"}
	handled, err := deliver(t, src, "10002", "done")
	if !handled || err == nil || !strings.Contains(err.Error(), "api_url") {
		t.Errorf("handled %v, err %v; want an error naming api_url", handled, err)
	}
}

func TestCloserJiraNoDoneTransition(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, func(c apiCall) (int, string) {
		if strings.HasSuffix(c.path, "/transitions") {
			return 200, `{"transitions":[{"id":"21","name":"Start","to":{"statusCategory":{"key":"indeterminate"}}}]}`
		}
		return 200, `{"fields":{"status":{"statusCategory":{"key":"new"}}}}`
	})
	src := &config.Source{Name: "j", Kind: "jira", APIToken: "a@b.c:tok", APIURL: api.srv.URL}
	if _, err := deliver(t, src, "10002", "done"); err == nil || !strings.Contains(err.Error(), "no transition") {
		t.Errorf("err %v, want one saying there is no transition", err)
	}
}

func TestCloserLinear(t *testing.T) {
	t.Parallel()
	state := "unstarted"
	api := newFakeAPI(t, func(c apiCall) (int, string) {
		q, _ := c.body["query"].(string)
		if strings.Contains(q, "issueUpdate") {
			return 200, `{"data":{"issueUpdate":{"success":true}}}`
		}
		return 200, `{"data":{"issue":{"state":{"type":"` + state + `"},"team":{"states":{"nodes":[
			{"id":"s-todo","type":"unstarted","position":1},
			{"id":"s-backlog","type":"backlog","position":0},
			{"id":"s-shipped","type":"completed","position":5},
			{"id":"s-done","type":"completed","position":4},
			{"id":"s-wip","type":"started","position":2}]}}}}}`
	})
	src := &config.Source{Name: "lin", Kind: "linear", APIToken: "lin_api_0123456789abcdef", APIURL: api.srv.URL}
	const id = "2174add1-f7c8-44e3-bbf3-2d60b5ea8bc9"
	if handled, err := deliver(t, src, id, "done"); !handled || err != nil {
		t.Fatalf("done: handled %v, err %v", handled, err)
	}
	calls := api.recorded()
	if len(calls) != 2 {
		t.Fatalf("%d calls, want a query and a mutation", len(calls))
	}
	checkCall(t, calls[0], "POST", "/graphql", "Authorization", "lin_api_0123456789abcdef", nil)
	if v := jsonString(calls[0].body["variables"]); v != `{"id":"`+id+`"}` {
		t.Errorf("query variables %s", v)
	}
	checkCall(t, calls[1], "POST", "/graphql", "Authorization", "lin_api_0123456789abcdef", nil)
	if v := jsonString(calls[1].body["variables"]); v != `{"id":"`+id+`","stateId":"s-done"}` {
		t.Errorf("mutation variables %s, want the first completed state", v)
	}

	// Reopen: the first unstarted state; an OAuth token goes as Bearer.
	state = "completed"
	src.APIToken = "oauth-access-token"
	if _, err := deliver(t, src, id, "open"); err != nil {
		t.Fatal(err)
	}
	calls = api.recorded()
	last := calls[len(calls)-1]
	checkCall(t, last, "POST", "/graphql", "Authorization", "Bearer oauth-access-token", nil)
	if v := jsonString(last.body["variables"]); v != `{"id":"`+id+`","stateId":"s-todo"}` {
		t.Errorf("reopen variables %s", v)
	}
}

func TestCloserLinearGraphQLError(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, func(apiCall) (int, string) {
		return 200, `{"errors":[{"message":"Entity not found: Issue"}],"data":null}`
	})
	src := &config.Source{Name: "lin", Kind: "linear", APIToken: "lin_api_x", APIURL: api.srv.URL}
	if _, err := deliver(t, src, "nope", "done"); err == nil || !strings.Contains(err.Error(), "Entity not found") {
		t.Errorf("err %v, want the GraphQL error", err)
	}
}

// TestCloserNotHandled: generic sources and trackers without api_token are
// left to the generic callback.
func TestCloserNotHandled(t *testing.T) {
	t.Parallel()
	for _, src := range []*config.Source{
		{Name: "tracker", Kind: "generic", APIToken: "x"},
		{Name: "gh", Kind: "github"},
	} {
		if handled, err := deliver(t, src, "octo-org/hello-world#1", "done"); handled || err != nil {
			t.Errorf("%s: handled %v, err %v", src.Kind, handled, err)
		}
	}
}

// TestCloserAPIErrorIsRetried: a refusal from the tracker is an error (the
// worker retries it) that carries the tracker's answer.
func TestCloserAPIErrorIsRetried(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, func(apiCall) (int, string) {
		return 401, `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest"}`
	})
	src := &config.Source{Name: "gh", Kind: "github", APIToken: "expired", APIURL: api.srv.URL}
	_, err := deliver(t, src, "octo-org/hello-world#1347", "done")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "Bad credentials") {
		t.Errorf("err %v", err)
	}
	if _, err := deliver(t, src, "not-a-github-id", "done"); err == nil {
		t.Error("a malformed task id was accepted")
	}
}

// TestCompletionClosesGitHubIssue runs the whole way back: the issue comes
// in over the webhook, alice completes it on her phone, and the callback
// worker closes it through the GitHub API, with no callback_url set.
func TestCompletionClosesGitHubIssue(t *testing.T) {
	t.Parallel()
	api := newFakeAPI(t, nil)
	e := newTrackerEnv(t, "github", func(s *config.Source) {
		s.APIToken, s.APIURL = "ghp_token", api.srv.URL
	})
	e.mustPost(delivery{file: "issues-opened.json"}, 200)
	const id = "octo-org/hello-world#1347"
	if err := e.svc.Complete(context.Background(), "alice", "github", id, true, testNow); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		var pending int
		err := testsvc.Store(t, e.svc).View(context.Background(), func(tx store.Tx) error {
			var err error
			pending, _, err = tx.OutboxCounts()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if pending == 0 && len(api.recorded()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("completion not delivered: %d pending, API calls %v", pending, api.recorded())
		}
		time.Sleep(10 * time.Millisecond)
	}
	calls := api.recorded()
	if len(calls) != 1 {
		t.Fatalf("%d API calls, want 1", len(calls))
	}
	checkCall(t, calls[0], "PATCH", "/repos/octo-org/hello-world/issues/1347", "Authorization", "Bearer ghp_token",
		map[string]string{"state": "closed", "state_reason": "completed"})

	// GitHub then tells us the issue is closed; the task stays done and
	// remembers who did it.
	e.mustPost(delivery{file: "issues-opened.json", edit: func(m map[string]any) {
		is := m["issue"].(map[string]any)
		m["action"], is["state"], is["state_reason"], is["updated_at"] = "closed", "closed", "completed", "2026-11-20T09:46:00Z"
	}}, 200)
	if tk := e.task(id); tk.Status != "done" || tk.CompletedBy != "alice" {
		t.Errorf("after GitHub's closed event: status %s, completed by %q", tk.Status, tk.CompletedBy)
	}
}

// TestCloserRedirectKeepsToken: a redirect to another host is not followed,
// so GitLab's PRIVATE-TOKEN (which Go would forward) never leaves the API host.
func TestCloserRedirectKeepsToken(t *testing.T) {
	var leaked atomic.Bool
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("PRIVATE-TOKEN") != "" {
			leaked.Store(true)
		}
	}))
	defer other.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, strings.Replace(other.URL, "127.0.0.1", "localhost", 1)+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer api.Close()
	req, _ := http.NewRequest("PUT", api.URL+"/api/v4/projects/1/issues/2", nil)
	req.Header.Set("PRIVATE-TOKEN", "glpat-secret")
	client := &http.Client{CheckRedirect: sameHostRedirects}
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
	}
	if err == nil || leaked.Load() {
		t.Fatalf("cross-host redirect followed (err %v, token leaked %v)", err, leaked.Load())
	}
}
