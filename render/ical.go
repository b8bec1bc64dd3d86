package render

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/emersion/go-ical"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/store"
)

// ProdID identifies duebridge in every iCalendar object it writes.
const ProdID = "-//duebridge//duebridge 1.0//EN"

// AllDayAnchor is the local time of day an all-day due date means for alarms
// and reminder mails: the start of a working day in the user's zone. A due
// date of 2026-12-01 with lead time 1h alerts at 08:00 local on that day.
const AllDayAnchor = 9 * time.Hour

// DueInstant is the instant a due time means for alerts: the time itself, or
// for an all-day date AllDayAnchor on that date in loc.
func DueInstant(w store.When, loc *time.Location) time.Time {
	if !w.AllDay {
		return w.Time
	}
	if loc == nil {
		loc = time.UTC
	}
	y, m, d := w.Time.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, loc).Add(AllDayAnchor).UTC()
}

// CollectionNames returns the URL names of a project's two collections for a
// user: the Reminders list (VTODO) and the deadlines calendar (VEVENT). The
// slug keeps ASCII letters and digits; a project named in another script
// (or named "inbox", the list of tasks without a project) gets a short hash
// of the name, so it never shares a list with another project. Names that
// differ only in case or punctuation ("evil", "EVIL!") have one slug: the
// writer gives the second of them the hashed form (writer.collectionNames),
// so existing lists keep their names and ordinary ones stay readable.
func CollectionNames(project string) (todos, events string) {
	if lossy(project) || project == "inbox" {
		return HashedCollectionNames(project)
	}
	slug := store.Slug(project)
	if slug == "" {
		slug = "inbox"
	}
	return slug + "-tasks", slug + "-deadlines"
}

// lossy reports whether Slug drops a letter or digit of s.
func lossy(s string) bool {
	for _, r := range s {
		if r > unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return true
		}
	}
	return false
}

// HashedCollectionNames are CollectionNames with the project's hash added.
func HashedCollectionNames(project string) (todos, events string) {
	slug := store.Slug(project)
	h := sha256.Sum256([]byte(project))
	if slug != "" {
		slug += "-"
	}
	slug += "p" + hex.EncodeToString(h[:4])
	return slug + "-tasks", slug + "-deadlines"
}

// CollectionDisplayNames returns the names shown on the phone, on one line,
// without control characters or bidi controls (a U+202E in a project name
// would show the list's name reversed).
func CollectionDisplayNames(project string) (todos, events string) {
	name := cleanName(project)
	if name == "" {
		name = "Tasks"
	}
	return name, name + " deadlines"
}

// cleanName makes a one-line display name: line ends and tabs become
// spaces, control and bidi formatting characters go, spaces are trimmed.
func cleanName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '\r' || r == '\n' || r == '\t':
			return ' '
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || isBidiControl(r):
			return -1
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// isBidiControl reports the explicit directional formatting characters
// (embeddings, overrides, isolates, marks) that can make text display in
// an order other than its own.
func isBidiControl(r rune) bool {
	return (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) || r == 0x200e || r == 0x200f || r == 0x061c
}

// ObjectName is the URL segment of a task's object: stable, ASCII, and
// distinct for distinct (source, id).
func ObjectName(source, id string) string {
	var b strings.Builder
	b.WriteString(source)
	b.WriteByte('-')
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	b.WriteString(".ics")
	return b.String()
}

// TodoUID and EventUID are the iCalendar UIDs of a task's VTODO and VEVENT.
// They differ so a client that indexes UIDs across calendars keeps both.
func TodoUID(source, id string) string  { return "task-" + source + "-" + id + "@duebridge" }
func EventUID(source, id string) string { return "deadline-" + source + "-" + id + "@duebridge" }

// ETag is the strong entity tag of object bytes.
func ETag(data []byte) string {
	h := sha256.Sum256(data)
	return `"` + hex.EncodeToString(h[:12]) + `"`
}

// PhoneState is what a user's phone set on a task that the tracker does not
// own, kept per user (store.UserTask.Extra) and merged into every rendering.
type PhoneState struct {
	// Alarms are VALARM components the phone wrote, as iCalendar text
	// (BEGIN:VALARM ... END:VALARM), kept so iOS does not switch them off.
	Alarms string `json:"alarms,omitempty"`
	// Props are other properties to round-trip (X-APPLE-SORT-ORDER ...), as
	// iCalendar content lines.
	Props []string `json:"props,omitempty"`
	// Bumps counts phone edits, added to SEQUENCE so it rises on them too.
	Bumps int `json:"bumps,omitempty"`
	// Acked holds the ACKNOWLEDGED values the phone set on duebridge's own
	// alarms (dismissed on the device), keyed by AckKey, so they are not
	// dropped on the next rendering. A moved due date gives new keys, so the
	// re-armed alarm fires again.
	Acked map[string]string `json:"acked,omitempty"`
}

// AckKey identifies one firing of one of our alarms: its UID and trigger.
func AckKey(uid, trigger string) string { return uid + "|" + trigger }

// ParsePhoneState decodes UserTask.Extra ("" is the zero state).
func ParsePhoneState(extra string) (PhoneState, error) {
	var p PhoneState
	if extra == "" {
		return p, nil
	}
	err := json.Unmarshal([]byte(extra), &p)
	return p, err
}

// Encode returns the form stored in UserTask.Extra.
func (p PhoneState) Encode() string {
	if p.Alarms == "" && len(p.Props) == 0 && p.Bumps == 0 && len(p.Acked) == 0 {
		return ""
	}
	b, _ := json.Marshal(p)
	return string(b)
}

// Input is what one rendering of a task for one user depends on.
type Input struct {
	Task      *store.Task
	User      *config.User
	LeadTimes []time.Duration
	Phone     PhoneState
}

// priorityValue maps our priority to iCalendar PRIORITY (1 highest, 9
// lowest, 0 undefined). iOS shows 1 as "!!!", 5 as "!!", 9 as "!" and 0 (or
// none) without marks, so an ordinary task must carry no PRIORITY at all:
// urgent 1, high 5, low 9, normal 0 (the property is left out).
func priorityValue(p string) int {
	switch p {
	case "urgent":
		return 1
	case "high":
		return 5
	case "low":
		return 9
	}
	return 0
}

func setWhen(props ical.Props, name string, w store.When) {
	if w.AllDay {
		props.SetDate(name, w.Time)
	} else {
		props.SetDateTime(name, w.Time.UTC())
	}
}

// alarms returns our VALARMs: one per lead time, absolute UTC triggers (so
// all-day items fire in the user's zone, not the phone's guess), none for
// tasks that are closed, have no due time, or whose user gets alerts by mail
// only, and none that would have fired before the task last changed (a fresh
// assignment is announced by mail, not by a burst of stale alarms).
func alarms(in Input) []*ical.Component {
	t := in.Task
	if !t.Open() || t.Due.IsZero() || in.User.Notify == config.NotifyMail {
		return nil
	}
	due := DueInstant(t.Due, in.User.Location)
	var out []*ical.Component
	for _, lead := range in.LeadTimes {
		at := due.Add(-lead)
		if at.Before(t.Modified) {
			continue
		}
		a := ical.NewComponent(ical.CompAlarm)
		uid := AlarmUID(t, lead)
		setText(a.Props, ical.PropUID, uid)
		setRaw(a.Props, "X-WR-ALARMUID", uid)
		setText(a.Props, ical.PropAction, "DISPLAY")
		setText(a.Props, ical.PropDescription, alarmText(cleanText(t.Title), lead))
		trig := ical.NewProp(ical.PropTrigger)
		trig.SetDateTime(at.UTC())
		trig.SetValueType(ical.ValueDateTime)
		a.Props.Set(trig)
		if ack, ok := in.Phone.Acked[AckKey(uid, trig.Value)]; ok {
			setRaw(a.Props, "ACKNOWLEDGED", ack)
		}
		setRaw(a.Props, "X-DUEBRIDGE-LEAD", formatLead(lead))
		out = append(out, a)
	}
	return out
}

// setText is ical.Props.SetText without its cost: go-ical escapes rune by
// rune through a strings.Builder, a third of a VTODO's render, and most
// values (UIDs, statuses, titles) need no escaping at all. The result is
// the same property: the same VALUE parameter rule (SetValueType) and, for
// valid UTF-8, the same escapes byte for byte; other text goes through
// go-ical, which also replaces its invalid bytes.
func setText(props ical.Props, name, text string) {
	if !utf8.ValidString(text) {
		props.SetText(name, text)
		return
	}
	p := ical.NewProp(name)
	p.SetValueType(ical.ValueText)
	p.Value = escapeText(text)
	props.Set(p)
}

// escapeText escapes a TEXT value (RFC 5545 §3.3.11) as go-ical does:
// backslash, semicolon and comma get a backslash, a line feed becomes \n.
func escapeText(s string) string {
	if !strings.ContainsAny(s, "\\;,\n") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\', ';', ',':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// setRaw sets an X- property without the VALUE=TEXT parameter SetText adds.
func setRaw(props ical.Props, name, value string) {
	p := ical.NewProp(name)
	p.Value = value
	props.Set(p)
}

// AlarmUID is the UID of the VALARM rendered lead before t is due: stable,
// so a phone that drops our X-DUEBRIDGE-LEAD marker still sends it back.
func AlarmUID(t *store.Task, lead time.Duration) string {
	h := sha256.Sum256([]byte(t.Source + "\x00" + t.ID + "\x00" + lead.String()))
	return strings.ToUpper(hex.EncodeToString(h[:16]))
}

func alarmText(title string, lead time.Duration) string {
	return fmt.Sprintf("Due in %s: %s", humanDuration(lead), title)
}

// humanDuration writes 24h as "1 day", 90m as "1h30m", 1h as "1 hour".
func humanDuration(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		n := int(d / (24 * time.Hour))
		if n == 1 {
			return "1 day"
		}
		return strconv.Itoa(n) + " days"
	case d%time.Hour == 0:
		n := int(d / time.Hour)
		if n == 1 {
			return "1 hour"
		}
		return strconv.Itoa(n) + " hours"
	case d%time.Minute == 0 && d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + " minutes"
	}
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}

func formatLead(d time.Duration) string {
	return "-PT" + strconv.FormatInt(int64(d/time.Second), 10) + "S"
}

func baseComponent(name, uid string, in Input) *ical.Component {
	t := in.Task
	c := ical.NewComponent(name)
	setText(c.Props, ical.PropUID, uid)
	c.Props.SetDateTime(ical.PropDateTimeStamp, t.Modified.UTC())
	c.Props.SetDateTime(ical.PropLastModified, t.Modified.UTC())
	c.Props.SetDateTime(ical.PropCreated, t.Created.UTC())
	seq := ical.NewProp(ical.PropSequence)
	seq.Value = strconv.Itoa(t.Sequence + in.Phone.Bumps)
	c.Props.Set(seq)
	setText(c.Props, ical.PropSummary, cleanText(t.Title))
	if desc := description(t); desc != "" {
		setText(c.Props, ical.PropDescription, desc)
	}
	if u, err := url.Parse(t.URL); err == nil && t.URL != "" && u.IsAbs() {
		c.Props.SetURI(ical.PropURL, u)
	}
	if n := priorityValue(t.Priority); n != 0 {
		prio := ical.NewProp(ical.PropPriority)
		prio.Value = strconv.Itoa(n)
		c.Props.Set(prio)
	}
	if len(t.Labels) > 0 {
		labels := make([]string, len(t.Labels))
		for i, l := range t.Labels {
			labels[i] = cleanText(l)
		}
		cat := ical.NewProp(ical.PropCategories)
		cat.SetTextList(labels)
		c.Props.Set(cat)
	}
	return c
}

func description(t *store.Task) string {
	d := cleanText(t.Description)
	if t.URL != "" {
		if d != "" {
			d += "\n\n"
		}
		d += t.URL
	}
	return d
}

// cleanText normalises line ends (go-ical refuses CR) and drops other
// control characters that are not allowed in iCalendar text.
func cleanText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// Todo returns the VTODO object (Reminders) of a task for one user.
func Todo(in Input) ([]byte, error) {
	t := in.Task
	c := baseComponent(ical.CompToDo, TodoUID(t.Source, t.ID), in)
	switch t.Status {
	case "in_progress":
		setText(c.Props, ical.PropStatus, "IN-PROCESS")
	case "done":
		setText(c.Props, ical.PropStatus, "COMPLETED")
		done := t.CompletedAt
		if done.IsZero() {
			done = t.Modified
		}
		c.Props.SetDateTime(ical.PropCompleted, done.UTC())
		pc := ical.NewProp(ical.PropPercentComplete)
		pc.Value = "100"
		c.Props.Set(pc)
	case "cancelled":
		setText(c.Props, ical.PropStatus, "CANCELLED")
	default:
		setText(c.Props, ical.PropStatus, "NEEDS-ACTION")
	}
	if !t.Due.IsZero() {
		setWhen(c.Props, ical.PropDue, t.Due)
		if !t.Start.IsZero() && !t.Start.Time.After(t.Due.Time) {
			// DTSTART must have DUE's value type (RFC 5545 §3.6.2).
			setWhen(c.Props, ical.PropDateTimeStart, store.When{Time: t.Start.Time, AllDay: t.Due.AllDay})
		}
	} else if !t.Start.IsZero() {
		setWhen(c.Props, ical.PropDateTimeStart, t.Start)
	}
	c.Children = append(c.Children, alarms(in)...)
	if err := mergePhone(c, in.Phone); err != nil {
		return nil, err
	}
	return encode(c)
}

// Event returns the deadline VEVENT (Calendar) of a task for one user,
// or nil if the task has no due time.
func Event(in Input) ([]byte, error) {
	t := in.Task
	if t.Due.IsZero() {
		return nil, nil
	}
	c := baseComponent(ical.CompEvent, EventUID(t.Source, t.ID), in)
	if t.Status == "done" {
		setText(c.Props, ical.PropSummary, "Done: "+cleanText(t.Title))
	}
	setText(c.Props, ical.PropStatus, "CONFIRMED")
	setText(c.Props, ical.PropTransparency, "TRANSPARENT") // a deadline does not make anyone busy
	if t.Due.AllDay {
		c.Props.SetDate(ical.PropDateTimeStart, t.Due.Time)
		c.Props.SetDate(ical.PropDateTimeEnd, t.Due.Time.AddDate(0, 0, 1))
	} else {
		// No DTEND: a DATE-TIME DTSTART alone is an instant (RFC 5545 §3.6.1).
		c.Props.SetDateTime(ical.PropDateTimeStart, t.Due.Time.UTC())
	}
	// No alarms here: the reminder carries them. Both apps fire their own
	// objects' alarms, so alarms on both would alert twice (and the
	// deadline's cannot be snoozed or completed).
	return encode(c)
}

// mergePhone adds the phone's own alarms and properties to a VTODO.
func mergePhone(c *ical.Component, p PhoneState) error {
	if p.Alarms == "" && len(p.Props) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:x\r\nDTSTAMP:20000101T000000Z\r\n")
	for _, line := range p.Props {
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	b.WriteString(p.Alarms)
	b.WriteString("END:VTODO\r\nEND:VCALENDAR\r\n")
	cal, err := ical.NewDecoder(strings.NewReader(b.String())).Decode()
	if err != nil {
		return fmt.Errorf("decode phone state: %w", err)
	}
	for _, child := range cal.Children {
		for name, props := range child.Props {
			if name == ical.PropUID || name == ical.PropDateTimeStamp {
				continue
			}
			c.Props[name] = props
		}
		c.Children = append(c.Children, child.Children...)
	}
	return nil
}

func encode(c *ical.Component) ([]byte, error) {
	cal := ical.NewCalendar()
	setText(cal.Props, ical.PropVersion, "2.0")
	setText(cal.Props, ical.PropProductID, ProdID)
	setText(cal.Props, ical.PropCalendarScale, "GREGORIAN")
	cal.Children = append(cal.Children, c)
	buf := encodeBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 { // an outsized one goes to the collector
			encodeBufs.Put(buf)
		}
	}()
	buf.Reset()
	if err := ical.NewEncoder(buf).Encode(cal); err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.Name, err)
	}
	return Fold(buf.Bytes()), nil // a copy: the buffer goes back to the pool
}

// encodeBufs keeps the encoder's buffers: grown from empty for every
// object, they were an object's size in garbage again, twice per webhook.
var encodeBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Fold folds content lines longer than 75 octets (RFC 5545 §3.1), never
// inside a UTF-8 sequence. go-ical does not fold.
func Fold(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/64)
	for len(b) > 0 {
		i := bytes.Index(b, []byte("\r\n"))
		var line []byte
		if i < 0 {
			line, b = b, nil
		} else {
			line, b = b[:i], b[i+2:]
		}
		limit := 75
		for len(line) > limit {
			cut := limit
			for cut > 0 && !utf8.RuneStart(line[cut]) {
				cut--
			}
			out.Write(line[:cut])
			out.WriteString("\r\n ")
			line = line[cut:]
			limit = 74 // the leading space counts
		}
		out.Write(line)
		if i >= 0 {
			out.WriteString("\r\n")
		}
	}
	return out.Bytes()
}
