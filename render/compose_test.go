package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"
)

// composeWithGoMessage is how composeMail wrote mails with go-message's
// writers: the reference its hand-written framing must match byte for byte.
func composeWithGoMessage(h gomail.Header, msgID string, text, html, ics []byte) ([]byte, error) {
	sum := sha256.Sum256([]byte(msgID))
	boundary := "=_db" + hex.EncodeToString(sum[:12])
	alternative := func(h *message.Header) {
		h.SetContentType("multipart/alternative", map[string]string{"boundary": boundary + "a"})
	}
	var buf bytes.Buffer
	var top, alt *message.Writer
	var err error
	if ics == nil {
		alternative(&h.Header)
		if top, err = message.CreateWriter(&buf, h.Header); err != nil {
			return nil, err
		}
		alt = top
	} else {
		h.SetContentType("multipart/mixed", map[string]string{"boundary": boundary + "m"})
		if top, err = message.CreateWriter(&buf, h.Header); err != nil {
			return nil, err
		}
		var ah message.Header
		alternative(&ah)
		if alt, err = top.CreatePart(ah); err != nil {
			return nil, err
		}
	}
	for _, part := range []struct {
		ctype string
		body  []byte
	}{{"text/plain", text}, {"text/html", html}} {
		var ph message.Header
		ph.SetContentType(part.ctype, map[string]string{"charset": "utf-8"})
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		w, err := alt.CreatePart(ph)
		if err != nil {
			return nil, err
		}
		w.Write(part.body)
		w.Close()
	}
	if ics != nil {
		alt.Close()
		var ch message.Header
		ch.SetContentType("text/calendar", map[string]string{"charset": "utf-8", "method": "PUBLISH", "name": "task.ics"})
		ch.SetContentDisposition("attachment", map[string]string{"filename": "task.ics"})
		ch.Set("Content-Transfer-Encoding", "base64")
		aw, err := top.CreatePart(ch)
		if err != nil {
			return nil, err
		}
		aw.Write(ics)
		aw.Close()
	}
	if err := top.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// TestComposeMailMatchesGoMessage: the hand-written MIME framing gives the
// bytes go-message's writers gave, with and without the attachment, for
// bodies that need quoted-printable soft breaks and escapes, and for
// attachments whose base64 ends mid-line and exactly at a line's end.
func TestComposeMailMatchesGoMessage(t *testing.T) {
	texts := []string{"", "plain", "ends with a newline\n", "F\u00e4llig = caf\u00e9 \u2014 \r\n" + strings.Repeat("long line ", 30) + "\n\n-- \nsig",
		"trailing space \nand tab\t\n" + strings.Repeat("x", 200)}
	icsLens := []int{-1, 0, 1, 2, 3, 56, 57, 58, 114, 171, 1000}
	for i, text := range texts {
		for _, n := range icsLens {
			var ics []byte
			if n >= 0 {
				ics = bytes.Repeat([]byte("BEGIN:VCALENDAR\r\n\u00e4"), n/18+1)[:n]
			}
			header := func() gomail.Header {
				h, err := mailHeader(time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC), "Subject \u00e4 "+text[:min(len(text), 20)],
					"duebridge <tasks@example.com>", nil, "duebridge.test", "<m@duebridge.test>", MailAssigned, i%2 == 0)
				if err != nil {
					t.Fatal(err)
				}
				h.Set("X-Duebridge-Task", "tracker/T-1")
				return h
			}
			html := "<p>" + strings.ToUpper(text) + "</p>\n"
			want, err := composeWithGoMessage(header(), "m@duebridge.test", []byte(text), []byte(html), ics)
			if err != nil {
				t.Fatal(err)
			}
			got, err := composeMail(header(), "m@duebridge.test", []byte(text), []byte(html), ics)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("text %d, attachment of %d bytes:\n got %q\nwant %q", i, n, got, want)
			}
		}
	}
}
