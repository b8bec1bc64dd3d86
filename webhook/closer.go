package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
)

// Closer closes and reopens issues through the trackers' own APIs when a
// user completes or un-completes a task on a phone. It plugs into
// bridge.CallbackOptions.Tracker; the task id formats it parses are the
// ones this package's adapters write, which is why it lives here.
type Closer struct {
	client *http.Client
}

// CloserOptions for NewCloser. Zero values are fine.
type CloserOptions struct {
	// Client; if nil, one with a 15s timeout is used.
	Client *http.Client
}

// NewCloser returns a Closer.
func NewCloser(o CloserOptions) *Closer {
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 15 * time.Second, CheckRedirect: sameHostRedirects}
	}
	return &Closer{client: o.Client}
}

// Deliver sets the issue behind a completion to closed (status "done") or
// open in its tracker. It reports handled=false, doing nothing, for sources
// it has no API for: generic ones, or trackers without sources[].api_token.
// An error is retried by the callback worker with backoff.
func (c *Closer) Deliver(ctx context.Context, src *config.Source, body bridge.CallbackBody) (bool, error) {
	tr, ok := trackers[src.Kind]
	if !ok || src.APIToken == "" {
		return false, nil
	}
	base := strings.TrimRight(src.APIURL, "/")
	if base == "" {
		base = tr.defaultAPI()
	}
	if base == "" {
		return true, fmt.Errorf("source %s: api_url is required to update %s issues", src.Name, src.Kind)
	}
	var done bool
	switch body.Status {
	case "done":
		done = true
	case "open":
	default:
		return true, fmt.Errorf("completion status %q is neither done nor open", body.Status)
	}
	api := &apiClient{client: c.client, base: base, token: src.APIToken}
	return true, tr.setStatus(ctx, api, body.ID, done)
}

// apiClient makes authenticated JSON calls to one tracker's API.
type apiClient struct {
	client *http.Client
	base   string // no trailing slash
	token  string
}

// do sends a JSON request (in may be nil) and decodes a JSON answer into
// out (if not nil). Anything but a 2xx is an error carrying the start of
// the tracker's answer, which usually says what is wrong (bad token,
// missing permission, unknown issue).
func (a *apiClient) do(ctx context.Context, method, path string, hdr http.Header, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", "duebridge")
	resp, err := a.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, clip(strings.TrimSpace(string(raw)), 300))
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: unexpected answer: %w", method, path, err)
		}
	}
	return nil
}

// sameHostRedirects follows redirects only within the API's host: Go drops
// Authorization on a cross-host redirect, but not GitLab's PRIVATE-TOKEN.
func sameHostRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("too many redirects")
	}
	if req.URL.Host != via[0].URL.Host {
		return fmt.Errorf("refusing to follow a redirect from %s to another host (%s) with the API token", via[0].URL.Host, req.URL.Host)
	}
	return nil
}
