package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	htmltemplate "html/template"
	texttemplate "text/template"
	"time"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// digests writes the daily digest of every user who opted in and whose slot
// has come, and returns the next slot of any of them (zero if nobody takes
// a digest). Each slot is handled once: its local date is stored with the
// mail. After downtime only the latest missed slot is sent; a user seen for
// the first time starts with the next slot rather than one already past.
func (sc *Scheduler) digests(ctx context.Context, cfg *config.Config, now time.Time) (time.Time, error) {
	var next time.Time
	earliest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		if !u.Digest {
			continue
		}
		slot, day := digestSlot(u, now)
		// Most ticks find nothing to do: decide on a read, and take the
		// write lock only to send or to record a first sighting.
		var last string
		err := sc.s.st.View(ctx, func(tx store.Tx) error {
			var err error
			last, err = tx.Get(kvDigestSent + u.Name)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			return err
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("digest of %s: %w", u.Name, err)
		}
		if last != "" && last >= day { // dates in ISO form compare as strings
			earliest(nextDigestSlot(u, now))
			continue
		}
		if end, quiet := QuietUntil(u, now); quiet && last != "" {
			earliest(end)
			continue
		}
		err = sc.s.st.Update(ctx, func(tx store.Tx) error {
			// Re-read inside the write transaction: the mark and the mail
			// are written together, so a slot is never sent twice.
			cur, err := tx.Get(kvDigestSent + u.Name)
			switch {
			case errors.Is(err, store.ErrNotFound):
				// First sighting: start with the next slot, not one past.
				return tx.Set(kvDigestSent+u.Name, day)
			case err != nil:
				return err
			case cur >= day:
				return nil
			}
			if err := sc.writeDigest(tx, cfg, u, slot, now); err != nil {
				return err
			}
			return tx.Set(kvDigestSent+u.Name, day)
		})
		if err != nil {
			return time.Time{}, fmt.Errorf("digest of %s: %w", u.Name, err)
		}
		earliest(nextDigestSlot(u, now))
	}
	return next, nil
}

// writeDigest lists the user's open tasks due before the next slot (overdue
// ones included), most urgent first, in one mail; nothing is written when
// there is nothing to list.
func (sc *Scheduler) writeDigest(tx store.Tx, cfg *config.Config, u *config.User, slot, now time.Time) error {
	loc := userLocation(u)
	until := nextDigestSlot(u, slot)
	// The stored due time of an all-day task is midnight UTC, up to a day
	// away from the instant it means in the user's zone: read a day more and
	// decide on DueInstant.
	tasks, err := tx.AlertTasks(u.Name, until.Add(24*time.Hour), digestScan)
	if err != nil {
		return err
	}
	var list []*store.Task
	for i := range tasks {
		t := &tasks[i]
		if t.Open() && DueInstant(t.Due, loc).Before(until) {
			list = append(list, t)
		}
	}
	if len(list) == 0 {
		return nil
	}
	ranked := RankByUrgency(list, loc, now)
	in := DigestInput{User: u, Day: slot.In(loc), Until: until, Tasks: ranked, Truncated: len(tasks) == digestScan}
	if len(ranked) > digestLimit {
		in.Tasks, in.More = ranked[:digestLimit], len(ranked)-digestLimit
	}
	p := &firePass{sc: sc, tx: tx, cfg: cfg, now: now, inbox: map[string]bool{}}
	var mi MailInput
	if err := p.fill(&mi); err != nil {
		return err
	}
	in.From, in.Host, in.Date = mi.From, mi.Host, mi.Date
	data, err := DigestMail(in)
	if err != nil {
		return fmt.Errorf("render digest for %s: %w", u.Name, err)
	}
	return p.append(u, "", "", DigestMessageID(in), data, in.Urgent(), MailDigest)
}

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
	loc := userLocation(in.User)
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
