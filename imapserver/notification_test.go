package imapserver_test

import (
	"bytes"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// A notification fetched over IMAP parses with go-message into all its
// parts: text and HTML alternatives and the task as text/calendar
// (METHOD:PUBLISH), with the headers that thread a task's mails.
func TestNotificationParsed(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	in := task("T-42", "Ship release 2.1 — ünïcode", "alice")
	in.Priority = "urgent"
	in.Description = "Tag, build, publish."
	testsvc.Ingest(t, ts.svc, in)
	in.Due.Time = in.Due.Time.Add(24 * 3600e9)
	in.UpdatedAt = in.UpdatedAt.Add(1e9)
	testsvc.Ingest(t, ts.svc, in)

	c := ts.login(t, "alice", nil)
	mustSelect(t, c, "INBOX")
	body := &imap.FetchItemBodySection{}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil || len(msgs) != 2 {
		t.Fatalf("FETCH BODY[]: %d messages, %v", len(msgs), err)
	}
	// BODY[] (not PEEK) marks the messages seen.
	for _, m := range msgs {
		if !slices.Contains(m.Flags, imap.FlagSeen) || !slices.Contains(m.Flags, imap.FlagFlagged) {
			t.Errorf("flags after FETCH BODY[] of an urgent task: %v", m.Flags)
		}
	}

	var threadIDs [][]string
	for i, m := range msgs {
		raw := m.FindBodySection(body)
		mr, err := mail.CreateReader(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("message %d: %v", i+1, err)
		}
		h := mr.Header
		subject, _ := h.Subject()
		msgID, _ := h.MessageID()
		inReplyTo, _ := h.MsgIDList("In-Reply-To")
		refs, _ := h.MsgIDList("References")
		from, _ := h.AddressList("From")
		date, _ := h.Date()
		if !strings.Contains(subject, "Ship release 2.1 — ünïcode") || !strings.HasPrefix(subject, "[URGENT]") {
			t.Errorf("message %d subject %q", i+1, subject)
		}
		if msgID == "" || len(inReplyTo) != 1 || !slices.Equal(inReplyTo, refs) || len(from) != 1 || date.IsZero() {
			t.Errorf("message %d headers: id %q in-reply-to %v references %v from %v date %v", i+1, msgID, inReplyTo, refs, from, date)
		}
		threadIDs = append(threadIDs, inReplyTo)
		if got := h.Get("X-Duebridge-URL"); got != "https://tracker.example.com/T-42" {
			t.Errorf("message %d X-Duebridge-URL %q", i+1, got)
		}

		var kinds []string
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("message %d part: %v", i+1, err)
			}
			b, _ := io.ReadAll(p.Body)
			switch ph := p.Header.(type) {
			case *mail.InlineHeader:
				ct, _, _ := ph.ContentType()
				kinds = append(kinds, ct)
				if ct == "text/plain" && !strings.Contains(string(b), "Tag, build, publish.") {
					t.Errorf("text part lacks the description:\n%s", b)
				}
				if ct == "text/html" && !strings.Contains(string(b), `href="https://tracker.example.com/T-42"`) {
					t.Errorf("HTML part lacks the task link:\n%s", b)
				}
			case *mail.AttachmentHeader:
				ct, params, _ := ph.ContentType()
				kinds = append(kinds, ct)
				name, _ := ph.Filename()
				if ct != "text/calendar" || !strings.EqualFold(params["method"], "PUBLISH") || name != "task.ics" {
					t.Errorf("attachment %s %v %q", ct, params, name)
				}
				for _, want := range []string{"BEGIN:VCALENDAR", "METHOD:PUBLISH", "BEGIN:VTODO", "SUMMARY:Ship release 2.1", "URL:https://tracker.example.com/T-42"} {
					if !bytes.Contains(b, []byte(want)) {
						t.Errorf("calendar part lacks %q:\n%s", want, b)
					}
				}
			}
		}
		if want := []string{"text/plain", "text/html", "text/calendar"}; !slices.Equal(kinds, want) {
			t.Errorf("message %d parts %v, want %v", i+1, kinds, want)
		}

		// The whole MIME tree reads with go-message's generic reader too.
		e, err := gomessage.Read(bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		if ct, _, _ := e.Header.ContentType(); ct != "multipart/mixed" {
			t.Errorf("top-level type %q", ct)
		}
	}
	if !slices.Equal(threadIDs[0], threadIDs[1]) {
		t.Errorf("the two mails of one task are not threaded: %v", threadIDs)
	}
}
