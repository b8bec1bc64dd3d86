package calendar_test

import (
	"strings"
	"testing"
)

// TestPropfindStreamsLargeAnswer checks that a PROPFIND whose answer is
// larger than the writer's buffer goes out as it is produced (chunked, no
// Content-Length) and complete, while a small one still carries a
// Content-Length.
func TestPropfindStreamsLargeAnswer(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	fill(t, e, "big-tasks", 1500)
	body := `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:getcontenttype/></d:prop></d:propfind>`

	resp, out := e.do("PROPFIND", "/dav/alice/calendars/big-tasks/", "alice", body, "Depth", "1")
	if resp.StatusCode != 207 {
		t.Fatalf("status %d: %.300s", resp.StatusCode, out)
	}
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 {
		t.Errorf("answer of %d bytes sent with Content-Length %d, transfer encoding %v: built in memory, not streamed",
			len(out), resp.ContentLength, resp.TransferEncoding)
	}
	if n := strings.Count(out, "<d:response>"); n != 1501 {
		t.Errorf("%d responses, want 1,501 (the collection and its objects)", n)
	}
	if err := wellFormed([]byte(out)); err != nil {
		t.Errorf("streamed answer: %v", err)
	}

	resp, out = e.do("PROPFIND", "/dav/alice/calendars/big-tasks/", "alice", body, "Depth", "0")
	if resp.StatusCode != 207 || resp.ContentLength != int64(len(out)) {
		t.Errorf("small answer: status %d, Content-Length %d for %d bytes", resp.StatusCode, resp.ContentLength, len(out))
	}
}
