package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/duebridge/duebridge/bridge"
)

// task is the webhook's task record (shared/CONTRACT.md).
type task struct {
	ID        string   `json:"id"`
	Title     string   `json:"title"`
	Project   string   `json:"project,omitempty"`
	Assignees []string `json:"assignees,omitempty"`
	Due       string   `json:"due,omitempty"`
	Status    string   `json:"status,omitempty"`
	Priority  string   `json:"priority,omitempty"`
	Version   int64    `json:"version,omitempty"`
	URL       string   `json:"url,omitempty"`
	Desc      string   `json:"description,omitempty"`
}

// hook posts signed task records to POST /hooks/{source}.
type hook struct {
	hc     *http.Client
	url    string
	secret []byte
}

func newHook(baseURL, source, secret string, tr http.RoundTripper) *hook {
	return &hook{
		hc:     &http.Client{Transport: tr, Timeout: 60 * time.Second},
		url:    strings.TrimSuffix(baseURL, "/") + "/hooks/" + source,
		secret: []byte(secret),
	}
}

// send posts tasks (one object when there is one, else an array) and
// returns once the server has acknowledged them as durable.
func (h *hook) send(ctx context.Context, tasks []task) error {
	var body []byte
	var err error
	if len(tasks) == 1 {
		body, err = json.Marshal(tasks[0])
	} else {
		body, err = json.Marshal(tasks)
	}
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", h.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Duebridge-Signature", bridge.Sign(string(h.secret), body))
	resp, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webhook: HTTP %d %s", resp.StatusCode, truncate(strings.TrimSpace(string(b)), 200))
	}
	var res struct {
		Accepted int `json:"accepted"`
		Ignored  int `json:"ignored"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("webhook: answer %q: %w", truncate(string(b), 100), err)
	}
	if res.Accepted+res.Ignored != len(tasks) {
		return fmt.Errorf("webhook: %d accepted + %d ignored of %d", res.Accepted, res.Ignored, len(tasks))
	}
	return nil
}
