package render

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	texttemplate "text/template"
	"time"

	"github.com/duebridge/duebridge/config"
)

// DigestInput is everything a digest mail depends on; rendering is pure.
type DigestInput struct {
	User  *config.User
	From  string
	Host  string
	Date  time.Time
	Day   time.Time // the digest's slot, in the user's zone
	Until time.Time // tasks due before it are listed
	// Tasks in the order shown: RankByUrgency's.
	Tasks []RankedTask
	// More tasks were due than listed; Truncated: even more may exist.
	More      int
	Truncated bool
}

// Urgent reports whether any listed task is urgent: the digest is then
// \Flagged and marked in its subject like any urgent mail.
func (in DigestInput) Urgent() bool {
	return len(in.Tasks) > 0 && in.Tasks[0].Urgency >= UrgentScore
}

// DigestMessageID is one per user and day, so a digest written twice by
// mistake would show as the same message.
func DigestMessageID(in DigestInput) string {
	return fmt.Sprintf("digest-%s-%s@%s", mailSafe(in.User.Name), in.Day.Format("20060102"), in.Host)
}

// DigestSubject is the digest's subject line.
func DigestSubject(in DigestInput) string {
	n := len(in.Tasks) + in.More
	noun := "deadlines"
	if n == 1 {
		noun = "deadline"
	}
	s := fmt.Sprintf("Today: %d %s (%s)", n, noun, in.Day.Format("Mon, 2 Jan"))
	if in.Urgent() {
		s = "[URGENT] " + s
	}
	return s
}

type digestItem struct {
	Mark     string // "!" for urgent
	Title    string
	Due      string
	Overdue  bool
	Priority string
	Status   string
	Urgency  int
	URL      string
}

type digestView struct {
	Heading string
	Items   []digestItem
	More    string
}

var digestText = texttemplate.Must(texttemplate.New("text").Parse(`{{.Heading}}

{{range .Items}}{{printf "%-2s" .Mark}}{{printf "%3d" .Urgency}}  {{.Title}}
       due {{.Due}}{{if .Overdue}} (overdue){{end}} · {{.Priority}} · {{.Status}}
{{if .URL}}       {{.URL}}
{{end}}{{end}}{{if .More}}
{{.More}}
{{end}}
-- 
duebridge daily digest · most urgent first (score 0-100)
`))

var digestHTML = htmltemplate.Must(htmltemplate.New("html").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"></head>
<body style="font-family:-apple-system,Helvetica,Arial,sans-serif;line-height:1.4">
<p style="color:#555">{{.Heading}}</p>
<table cellpadding="4" style="border-collapse:collapse">
{{range .Items}}<tr style="border-top:1px solid #ddd">
<td style="color:#c00;font-weight:bold">{{.Mark}}</td>
<td style="color:#888">{{.Urgency}}</td>
<td>{{if .URL}}<a href="{{.URL}}">{{.Title}}</a>{{else}}{{.Title}}{{end}}<br>
<small style="color:#555">due {{if .Overdue}}<b style="color:#c00">{{.Due}} (overdue)</b>{{else}}{{.Due}}{{end}} · {{.Priority}} · {{.Status}}</small></td>
</tr>
{{end}}</table>
{{if .More}}<p>{{.More}}</p>{{end}}
<p style="color:#888;font-size:small">duebridge daily digest · most urgent first (score 0-100)</p>
</body></html>
`))

// DigestMail renders the daily digest: multipart/alternative, text and HTML.
func DigestMail(in DigestInput) ([]byte, error) {
	loc := UserLocation(in.User)
	v := digestView{Heading: fmt.Sprintf("Your open tasks due by %s, most urgent first.", in.Until.In(loc).Format("Mon, 2 Jan 15:04 MST"))}
	for _, r := range in.Tasks {
		it := digestItem{Title: oneLine(r.Task.Title), Due: FormatDue(r.Task.Due, loc), Overdue: !r.Due.After(in.Date),
			Priority: r.Task.Priority, Status: statusNames[r.Task.Status], Urgency: r.Urgency, URL: r.Task.URL}
		if r.Urgency >= UrgentScore {
			it.Mark = "!"
		}
		v.Items = append(v.Items, it)
	}
	switch {
	case in.Truncated:
		v.More = fmt.Sprintf("… and at least %d more.", in.More)
	case in.More > 0:
		v.More = fmt.Sprintf("… and %d more.", in.More)
	}

	h, err := mailHeader(in.Date, DigestSubject(in), in.From, in.User, in.Host, DigestMessageID(in), MailDigest, in.Urgent())
	if err != nil {
		return nil, err
	}
	var text, html bytes.Buffer
	if err := digestText.Execute(&text, v); err != nil {
		return nil, fmt.Errorf("render digest text: %w", err)
	}
	if err := digestHTML.Execute(&html, v); err != nil {
		return nil, fmt.Errorf("render digest html: %w", err)
	}
	return composeMail(h, DigestMessageID(in), text.Bytes(), html.Bytes(), nil)
}
