package render

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	gomail "github.com/emersion/go-message/mail"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

func sampleMail(ev MailEvent) MailInput {
	task := sampleTask()
	task.Title = "Fällig: Ship release 2.1"
	return MailInput{Event: ev, Task: task, User: alice(config.NotifyAlarms, berlin), From: "duebridge <tasks@example.com>",
		Host: "duebridge.test", Date: t0, Seq: 17, OldDue: store.When{Time: time.Date(2026, 11, 30, 17, 0, 0, 0, time.UTC)}}
}

func TestNotificationMailGolden(t *testing.T) {
	data, err := NotificationMail(sampleMail(MailDueChanged))
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "mail-due-changed.eml", data)
}

func TestNotificationMailStructure(t *testing.T) {
	in := sampleMail(MailAssigned)
	in.Urgent = true
	data, err := NotificationMail(in)
	if err != nil {
		t.Fatal(err)
	}
	r, err := gomail.CreateReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	h := r.Header
	subj, _ := h.Subject()
	if subj != "[URGENT] Assigned to you: Fällig: Ship release 2.1" {
		t.Errorf("subject %q", subj)
	}
	if id, _ := h.MessageID(); id != "task-tracker-T-123.17.assigned@duebridge.test" {
		t.Errorf("Message-ID %q", id)
	}
	refs, _ := h.MsgIDList("References")
	irt, _ := h.MsgIDList("In-Reply-To")
	if len(refs) != 1 || refs[0] != "task-tracker-T-123@duebridge.test" || len(irt) != 1 || irt[0] != refs[0] {
		t.Errorf("threading headers: refs %v in-reply-to %v", refs, irt)
	}
	if d, _ := h.Date(); !d.Equal(t0) {
		t.Errorf("Date %v", d)
	}
	from, _ := h.AddressList("From")
	to, _ := h.AddressList("To")
	if len(from) != 1 || from[0].Address != "tasks@example.com" || len(to) != 1 || to[0].Address != "alice@example.com" {
		t.Errorf("From %v To %v", from, to)
	}
	if h.Get("Auto-Submitted") != "auto-generated" || h.Get("X-Priority") != "1" {
		t.Error("Auto-Submitted or X-Priority missing")
	}

	// multipart/mixed: multipart/alternative (text, html) + text/calendar.
	var types []string
	var ics, text string
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ct, params, _ := p.Header.(interface {
			ContentType() (string, map[string]string, error)
		}).ContentType()
		body, _ := io.ReadAll(p.Body)
		types = append(types, ct)
		switch ct {
		case "text/calendar":
			if params["method"] != "PUBLISH" {
				t.Errorf("calendar part method %q", params["method"])
			}
			ics = string(body)
		case "text/plain":
			text = string(body)
		}
	}
	if strings.Join(types, ",") != "text/plain,text/html,text/calendar" {
		t.Errorf("parts %v", types)
	}
	if !strings.Contains(ics, "METHOD:PUBLISH") || !strings.Contains(ics, "BEGIN:VTODO") || strings.Contains(ics, "BEGIN:VALARM") {
		t.Errorf("calendar part:\n%s", ics)
	}
	if !strings.Contains(text, "Due:      Tue, 1 Dec 2026 18:00 CET") || !strings.Contains(text, "https://tracker.example.com/T-123") {
		t.Errorf("text part:\n%s", text)
	}

	// The top-level structure as a generic MIME tree.
	e, err := message.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if ct, _, _ := e.Header.ContentType(); ct != "multipart/mixed" {
		t.Errorf("top-level %s", ct)
	}
}

// TestMailPartsAreNotShared: mails rendered at once (a batch renders on
// every core) each keep their own bytes after the buffers of their text
// and HTML parts went back to the pool.
func TestMailPartsAreNotShared(t *testing.T) {
	const n = 32
	input := func(i int) MailInput {
		in := sampleMail(MailAssigned)
		task := *in.Task
		task.ID = fmt.Sprintf("T-%d", i)
		task.Title = strings.Repeat("Title ", 1+i)
		task.Description = strings.Repeat("A longer description. ", i)
		in.Task = &task
		return in
	}
	out := make([][]byte, n)
	done := make(chan struct{})
	for i := range n {
		go func() {
			defer func() { done <- struct{}{} }()
			b, err := NotificationMail(input(i))
			if err != nil {
				t.Error(err)
			}
			out[i] = b
		}()
	}
	for range n {
		<-done
	}
	for i := range n {
		want, err := NotificationMail(input(i))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out[i], want) {
			t.Errorf("mail %d changed after its part buffers were reused", i)
		}
	}
}
