package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	texttemplate "text/template"
	"time"

	gomail "github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// MailEvent is why a notification mail is written.
type MailEvent string

const (
	MailAssigned   MailEvent = "assigned"
	MailUnassigned MailEvent = "unassigned"
	MailDueChanged MailEvent = "due_changed"
	MailDone       MailEvent = "done"
	MailCancelled  MailEvent = "cancelled"
	MailReopened   MailEvent = "reopened"
	MailDeleted    MailEvent = "deleted"
	MailDueSoon    MailEvent = "due_soon"
	MailOverdue    MailEvent = "overdue"
	MailDigest     MailEvent = "digest"
)

var subjects = map[MailEvent]string{
	MailAssigned:   "Assigned to you",
	MailUnassigned: "No longer assigned to you",
	MailDueChanged: "Due date changed",
	MailDone:       "Done",
	MailCancelled:  "Cancelled",
	MailReopened:   "Reopened",
	MailDeleted:    "Removed",
	MailDueSoon:    "Due soon",
	MailOverdue:    "Overdue",
}

// MailInput is everything one notification mail depends on. Rendering is
// pure: the same input gives the same bytes.
type MailInput struct {
	Event  MailEvent
	Task   *store.Task
	OldDue store.When // for MailDueChanged
	User   *config.User
	From   string        // mail.from
	Host   string        // public host name, for Message-IDs
	Lead   time.Duration // for MailDueSoon: how long before the due time
	Date   time.Time
	// Seq makes the Message-ID unique per event; the store revision is used.
	Seq    int64
	Urgent bool // subject marker; the caller also sets \Flagged
}

// ThreadID is the Message-ID all mails of one task refer to, so clients
// thread them together.
func ThreadID(source, id, host string) string {
	return "task-" + mailSafe(source) + "-" + mailSafe(id) + "@" + host
}

// MessageID of one notification: deterministic, so a retried write of the
// same event yields the same ID.
func MessageID(in MailInput) string {
	return fmt.Sprintf("task-%s-%s.%d.%s@%s", mailSafe(in.Task.Source), mailSafe(in.Task.ID), in.Seq, in.Event, in.Host)
}

func mailSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// Subject of a notification mail.
func Subject(in MailInput) string {
	s := subjects[in.Event] + ": " + oneLine(in.Task.Title)
	if in.Event == MailDueSoon && in.Lead > 0 {
		s = "Due in " + humanDuration(in.Lead) + ": " + oneLine(in.Task.Title)
	}
	if in.Urgent {
		s = "[URGENT] " + s
	}
	return s
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(cleanText(s)), " ")
}

type mailView struct {
	Heading  string
	Title    string
	Project  string
	Status   string
	Priority string
	Due      string
	OldDue   string
	URL      string
	Body     string
	Source   string
	ID       string
}

var textTmpl = texttemplate.Must(texttemplate.New("text").Parse(`{{.Heading}}

{{.Title}}
{{if .Project}}Project:  {{.Project}}
{{end}}{{if .Due}}Due:      {{.Due}}{{if .OldDue}} (was {{.OldDue}}){{end}}
{{end}}Status:   {{.Status}}
Priority: {{.Priority}}
{{if .URL}}Link:     {{.URL}}
{{end}}{{if .Body}}
{{.Body}}
{{end}}
-- 
duebridge · {{.Source}} {{.ID}}
`))

var htmlTmpl = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"></head>
<body style="font-family:-apple-system,Helvetica,Arial,sans-serif;line-height:1.4">
<p style="color:#555">{{.Heading}}</p>
<h2 style="margin:0 0 .5em">{{if .URL}}<a href="{{.URL}}">{{.Title}}</a>{{else}}{{.Title}}{{end}}</h2>
<table cellpadding="2">
{{if .Project}}<tr><td style="color:#555">Project</td><td>{{.Project}}</td></tr>{{end}}
{{if .Due}}<tr><td style="color:#555">Due</td><td><b>{{.Due}}</b>{{if .OldDue}} <s>{{.OldDue}}</s>{{end}}</td></tr>{{end}}
<tr><td style="color:#555">Status</td><td>{{.Status}}</td></tr>
<tr><td style="color:#555">Priority</td><td>{{.Priority}}</td></tr>
</table>
{{if .Body}}<p style="white-space:pre-wrap">{{.Body}}</p>{{end}}
<p style="color:#888;font-size:small">duebridge · {{.Source}} {{.ID}}</p>
</body></html>
`))

// FormatDue writes a due time for people, in the user's zone.
func FormatDue(w store.When, loc *time.Location) string {
	if w.IsZero() {
		return ""
	}
	if w.AllDay {
		return w.Time.Format("Mon, 2 Jan 2006") + " (all day)"
	}
	if loc == nil {
		loc = time.UTC
	}
	return w.Time.In(loc).Format("Mon, 2 Jan 2006 15:04 MST")
}

var statusNames = map[string]string{"open": "Open", "in_progress": "In progress", "done": "Done", "cancelled": "Cancelled"}

// NotificationMail renders one notification: multipart/mixed with a
// multipart/alternative (text, HTML) and the task as a text/calendar
// attachment (METHOD:PUBLISH). It returns the RFC 5322 bytes.
func NotificationMail(in MailInput) ([]byte, error) {
	t := in.Task
	loc := time.UTC
	if in.User != nil && in.User.Location != nil {
		loc = in.User.Location
	}
	v := mailView{
		Heading: headings(in), Title: oneLine(t.Title), Project: t.Project,
		Status: statusNames[t.Status], Priority: t.Priority,
		Due: FormatDue(t.Due, loc), URL: t.URL, Body: cleanText(t.Description),
		Source: t.Source, ID: t.ID,
	}
	if in.Event == MailDueChanged {
		v.OldDue = FormatDue(in.OldDue, loc)
	}
	h, err := mailHeader(in.Date, Subject(in), in.From, in.User, in.Host, MessageID(in), in.Event, in.Urgent)
	if err != nil {
		return nil, err
	}
	thread := ThreadID(t.Source, t.ID, in.Host)
	h.SetMsgIDList("In-Reply-To", []string{thread})
	h.SetMsgIDList("References", []string{thread})
	h.Set("X-Duebridge-Task", t.Source+"/"+t.ID)
	if t.URL != "" {
		h.Set("X-Duebridge-URL", t.URL)
	}
	// The two parts are copied into the mail (quoted-printable), so their
	// buffers go back to the encoder's pool.
	text, html := encodeBufs.Get().(*bytes.Buffer), encodeBufs.Get().(*bytes.Buffer)
	defer func() {
		for _, b := range []*bytes.Buffer{text, html} {
			if b.Cap() <= 64<<10 {
				encodeBufs.Put(b)
			}
		}
	}()
	text.Reset()
	html.Reset()
	if err := textTmpl.Execute(text, v); err != nil {
		return nil, fmt.Errorf("render text: %w", err)
	}
	if err := htmlTmpl.Execute(html, v); err != nil {
		return nil, fmt.Errorf("render html: %w", err)
	}
	ics, err := publishCalendar(in)
	if err != nil {
		return nil, err
	}
	return composeMail(h, MessageID(in), text.Bytes(), html.Bytes(), ics)
}

// mailHeader fills the headers every duebridge mail carries.
func mailHeader(date time.Time, subject, fromAddr string, u *config.User, host, msgID string, ev MailEvent, urgent bool) (gomail.Header, error) {
	var h gomail.Header
	h.SetDate(date)
	h.SetSubject(subject)
	from, err := mail.ParseAddress(fromAddr)
	if err != nil {
		return h, fmt.Errorf("mail.from: %w", err)
	}
	h.SetAddressList("From", []*gomail.Address{{Name: from.Name, Address: from.Address}})
	if u != nil {
		to := u.Email
		if to == "" {
			to = u.Name + "@" + host
		}
		h.SetAddressList("To", []*gomail.Address{{Name: u.Name, Address: to}})
	}
	h.SetMessageID(msgID)
	h.Set("Auto-Submitted", "auto-generated")
	h.Set("X-Duebridge-Event", string(ev))
	if urgent {
		h.Set("X-Priority", "1")
		h.Set("Importance", "high")
	}
	return h, nil
}

// composeMail writes h and a multipart/alternative of text and HTML, inside a
// multipart/mixed with the calendar attachment when ics is not nil. The
// boundaries derive from the Message-ID, so the same input gives the same
// bytes; "=_" cannot occur in quoted-printable or base64 output.
//
// The multipart framing is written here rather than with go-message's
// writers, byte for byte what they write (TestComposeMailMatchesGoMessage):
// a notification is rendered inside the ingest transaction, and their
// copied headers and per-part buffers were two thirds of its allocations
// and a third of its CPU.
func composeMail(h gomail.Header, msgID string, text, html, ics []byte) ([]byte, error) {
	sum := sha256.Sum256([]byte(msgID))
	boundary := "=_db" + hex.EncodeToString(sum[:12])
	var buf bytes.Buffer
	// Headers, framing, a little quoted-printable growth, base64's 4/3 and its line breaks.
	buf.Grow(1536 + (len(text)+len(html))*9/8 + (len(ics)+2)/3*4*78/76)
	alt := boundary + "a"
	if ics == nil {
		h.SetContentType("multipart/alternative", map[string]string{"boundary": alt})
	} else {
		h.SetContentType("multipart/mixed", map[string]string{"boundary": boundary + "m"})
	}
	// What message.CreateWriter does to the header of a multipart entity.
	if !h.Has("Mime-Version") {
		h.Set("MIME-Version", "1.0")
	}
	h.Del("Content-Transfer-Encoding")
	if err := textproto.WriteHeader(&buf, h.Header.Header); err != nil {
		return nil, err
	}
	if ics != nil {
		buf.WriteString("--" + boundary + "m\r\n")
		var ah textproto.Header
		ah.Set("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": alt}))
		if err := textproto.WriteHeader(&buf, ah); err != nil {
			return nil, err
		}
	}
	for i, part := range []struct {
		header []byte
		body   []byte
	}{{textPartHeader, text}, {htmlPartHeader, html}} {
		if i > 0 {
			buf.WriteString("\r\n")
		}
		buf.WriteString("--" + alt + "\r\n")
		buf.Write(part.header)
		qp := quotedprintable.NewWriter(&buf)
		qp.Write(part.body)
		if err := qp.Close(); err != nil {
			return nil, err
		}
	}
	buf.WriteString("\r\n--" + alt + "--\r\n")
	if ics != nil {
		buf.WriteString("\r\n--" + boundary + "m\r\n")
		buf.Write(icsPartHeader)
		writeBase64Lines(&buf, ics)
		buf.WriteString("\r\n--" + boundary + "m--\r\n")
	}
	return buf.Bytes(), nil
}

// The part headers, as go-message writes them (fields in reverse order of
// setting).
var (
	textPartHeader = partHeader("text/plain", map[string]string{"charset": "utf-8"}, "quoted-printable", "")
	htmlPartHeader = partHeader("text/html", map[string]string{"charset": "utf-8"}, "quoted-printable", "")
	icsPartHeader  = partHeader("text/calendar", map[string]string{"charset": "utf-8", "method": "PUBLISH", "name": "task.ics"},
		"base64", mime.FormatMediaType("attachment", map[string]string{"filename": "task.ics"}))
)

func partHeader(ctype string, params map[string]string, encoding, disposition string) []byte {
	var h textproto.Header
	h.Set("Content-Type", mime.FormatMediaType(ctype, params))
	if disposition != "" {
		h.Set("Content-Disposition", disposition)
	}
	h.Set("Content-Transfer-Encoding", encoding)
	var b bytes.Buffer
	if err := textproto.WriteHeader(&b, h); err != nil {
		panic(err) // a bytes.Buffer does not fail
	}
	return b.Bytes()
}

// writeBase64Lines writes data in base64, 76 characters to a line, lines
// separated (not ended) by CRLF.
func writeBase64Lines(buf *bytes.Buffer, data []byte) {
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(data)))
	base64.StdEncoding.Encode(enc, data)
	for len(enc) > 76 {
		buf.Write(enc[:76])
		buf.WriteString("\r\n")
		enc = enc[76:]
	}
	buf.Write(enc)
}

// publishCalendar is the task as a METHOD:PUBLISH VTODO, without alarms
// (a mail attachment should not set alarms when imported).
func publishCalendar(in MailInput) ([]byte, error) {
	u := in.User
	if u == nil {
		u = &config.User{Location: time.UTC}
	}
	data, err := Todo(Input{Task: in.Task, User: &config.User{Name: u.Name, Location: u.Location, Notify: config.NotifyMail}})
	if err != nil {
		return nil, err
	}
	// Insert METHOD after VERSION: RFC 5546 needs it for an iTIP object.
	return bytes.Replace(data, []byte("BEGIN:VCALENDAR\r\n"), []byte("BEGIN:VCALENDAR\r\nMETHOD:PUBLISH\r\n"), 1), nil
}

func headings(in MailInput) string {
	t := in.Task
	switch in.Event {
	case MailAssigned:
		return "A task was assigned to you."
	case MailUnassigned:
		return "This task is no longer assigned to you."
	case MailDueChanged:
		return "The due date of your task moved."
	case MailDone:
		if t.CompletedBy != "" {
			return "Marked done by " + t.CompletedBy + "."
		}
		return "This task is done."
	case MailCancelled:
		return "This task was cancelled."
	case MailReopened:
		return "This task was reopened."
	case MailDeleted:
		return "This task was removed from " + t.Source + "."
	case MailDueSoon:
		return "This task is due in " + humanDuration(in.Lead) + "."
	case MailOverdue:
		return "This task is overdue."
	}
	return ""
}
