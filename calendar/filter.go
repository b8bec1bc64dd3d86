package calendar

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

// calendar-query filters (RFC 4791 §9.7), evaluated here because
// go-webdav's matcher answers false for every time-range on anything but a
// VEVENT, which hides all reminders from a client asking for "tasks due this
// week".

type timeRange struct{ start, end time.Time } // zero: unbounded

type compFilter struct {
	name       string
	notDefined bool
	tr         *timeRange
	props      []propFilter
	comps      []compFilter
}

type propFilter struct {
	name       string
	notDefined bool
	tr         *timeRange
	text       *textMatch
	params     []paramFilter
}

type paramFilter struct {
	name       string
	notDefined bool
	text       *textMatch
}

type textMatch struct {
	text   string
	negate bool
	octet  bool // i;octet: case-sensitive; default i;ascii-casemap
}

const utcFormat = "20060102T150405Z"

var (
	minTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

func parseTimeRange(n *node) (*timeRange, error) {
	var tr timeRange
	s, hasStart := n.attr("start")
	e, hasEnd := n.attr("end")
	if !hasStart && !hasEnd {
		return nil, fmt.Errorf("time-range without start or end")
	}
	var err error
	if hasStart {
		if tr.start, err = time.Parse(utcFormat, strings.TrimSpace(s)); err != nil {
			return nil, fmt.Errorf("time-range start %q: not a UTC date-time", s)
		}
	}
	if hasEnd {
		if tr.end, err = time.Parse(utcFormat, strings.TrimSpace(e)); err != nil {
			return nil, fmt.Errorf("time-range end %q: not a UTC date-time", e)
		}
	}
	if hasStart && hasEnd && !tr.end.After(tr.start) {
		return nil, fmt.Errorf("time-range end not after start")
	}
	return &tr, nil
}

// bounds returns the range with unbounded ends made concrete.
func (tr timeRange) bounds() (time.Time, time.Time) {
	s, e := tr.start, tr.end
	if s.IsZero() {
		s = minTime
	}
	if e.IsZero() {
		e = maxTime
	}
	return s, e
}

func parseTextMatch(n *node) *textMatch {
	tm := &textMatch{text: n.Text}
	if v, _ := n.attr("negate-condition"); v == "yes" {
		tm.negate = true
	}
	if v, _ := n.attr("collation"); v == "i;octet" {
		tm.octet = true
	}
	return tm
}

func (tm *textMatch) match(s string) bool {
	var ok bool
	if tm.octet {
		ok = strings.Contains(s, tm.text)
	} else {
		ok = strings.Contains(strings.ToLower(s), strings.ToLower(tm.text))
	}
	return ok != tm.negate
}

func parseCompFilter(n *node) (compFilter, error) {
	name, ok := n.attr("name")
	if !ok || name == "" {
		return compFilter{}, fmt.Errorf("comp-filter without name")
	}
	f := compFilter{name: strings.ToUpper(name)}
	for i := range n.Children {
		c := &n.Children[i]
		switch {
		case c.is(nsCalDAV, "is-not-defined"):
			f.notDefined = true
		case c.is(nsCalDAV, "time-range"):
			tr, err := parseTimeRange(c)
			if err != nil {
				return f, err
			}
			f.tr = tr
		case c.is(nsCalDAV, "prop-filter"):
			pf, err := parsePropFilter(c)
			if err != nil {
				return f, err
			}
			f.props = append(f.props, pf)
		case c.is(nsCalDAV, "comp-filter"):
			cf, err := parseCompFilter(c)
			if err != nil {
				return f, err
			}
			f.comps = append(f.comps, cf)
		}
	}
	return f, nil
}

func parsePropFilter(n *node) (propFilter, error) {
	name, ok := n.attr("name")
	if !ok || name == "" {
		return propFilter{}, fmt.Errorf("prop-filter without name")
	}
	f := propFilter{name: strings.ToUpper(name)}
	for i := range n.Children {
		c := &n.Children[i]
		switch {
		case c.is(nsCalDAV, "is-not-defined"):
			f.notDefined = true
		case c.is(nsCalDAV, "time-range"):
			tr, err := parseTimeRange(c)
			if err != nil {
				return f, err
			}
			f.tr = tr
		case c.is(nsCalDAV, "text-match"):
			f.text = parseTextMatch(c)
		case c.is(nsCalDAV, "param-filter"):
			pn, ok := c.attr("name")
			if !ok || pn == "" {
				return f, fmt.Errorf("param-filter without name")
			}
			pf := paramFilter{name: strings.ToUpper(pn)}
			if c.child(nsCalDAV, "is-not-defined") != nil {
				pf.notDefined = true
			}
			if tm := c.child(nsCalDAV, "text-match"); tm != nil {
				pf.text = parseTextMatch(tm)
			}
			f.params = append(f.params, pf)
		}
	}
	return f, nil
}

// mayMatch reports whether a VCALENDAR filter can match objects of a
// collection holding only comp (VTODO or VEVENT); if not, the objects need
// not be parsed at all.
func (f compFilter) mayMatch(comp string) bool {
	if f.name != ical.CompCalendar || f.notDefined {
		return true
	}
	for _, c := range f.comps {
		if c.notDefined {
			continue
		}
		switch c.name {
		case ical.CompEvent, ical.CompToDo, ical.CompJournal, ical.CompFreeBusy:
			if c.name != comp {
				return false
			}
		}
	}
	return true
}

// matchCalendar evaluates the top-level filter on an object. ev carries
// the user's zone, the request's context and the object's work budget.
func (f compFilter) matchCalendar(cal *ical.Calendar, ev *evaluation) bool {
	if f.name != ical.CompCalendar {
		return f.notDefined
	}
	if f.notDefined {
		return false
	}
	return f.match(cal.Component, nil, ev)
}

func (f compFilter) match(c, parent *ical.Component, ev *evaluation) bool {
	loc := ev.loc
	if f.tr != nil && !overlaps(c, parent, *f.tr, ev) {
		return false
	}
	for _, pf := range f.props {
		if !pf.match(c, loc) {
			return false
		}
	}
	for _, cf := range f.comps {
		found := false
		for _, child := range c.Children {
			if child.Name != cf.name {
				continue
			}
			if cf.notDefined || cf.match(child, c, ev) {
				found = true
				break
			}
		}
		if found == cf.notDefined {
			return false
		}
	}
	return true
}

func (f propFilter) match(c *ical.Component, loc *time.Location) bool {
	props := c.Props[f.name]
	if f.notDefined {
		return len(props) == 0
	}
	for i := range props {
		if f.matchOne(&props[i], loc) {
			return true
		}
	}
	return false
}

func (f propFilter) matchOne(p *ical.Prop, loc *time.Location) bool {
	if f.tr != nil {
		t, _, err := propTime(p, loc)
		if err != nil {
			return false
		}
		s, e := f.tr.bounds()
		if t.Before(s) || !t.Before(e) {
			return false
		}
	}
	if f.text != nil {
		v := p.Value
		if s, err := p.Text(); err == nil {
			v = s
		}
		if !f.text.match(v) {
			return false
		}
	}
	for _, pf := range f.params {
		vals := p.Params.Values(pf.name)
		if pf.notDefined {
			if len(vals) > 0 {
				return false
			}
			continue
		}
		if len(vals) == 0 {
			return false
		}
		if pf.text != nil {
			ok := false
			for _, v := range vals {
				ok = ok || pf.text.match(v)
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

// propTime reads a DATE or DATE-TIME property. Dates and floating times
// are read in loc (the user's zone); a TZID the host does not know counts
// as UTC rather than failing the match.
func propTime(p *ical.Prop, loc *time.Location) (t time.Time, isDate bool, err error) {
	if loc == nil {
		loc = time.UTC
	}
	v := strings.TrimSpace(p.Value)
	if p.ValueType() == ical.ValueDate || len(v) == 8 {
		t, err = time.ParseInLocation("20060102", v, loc)
		return t, true, err
	}
	if strings.HasSuffix(v, "Z") {
		t, err = time.Parse(utcFormat, v)
		return t, false, err
	}
	if tzid := p.Params.Get(ical.ParamTimezoneID); tzid != "" {
		if l, lerr := time.LoadLocation(tzid); lerr == nil {
			loc = l
		} else {
			loc = time.UTC
		}
	}
	t, err = time.ParseInLocation("20060102T150405", v, loc)
	return t, false, err
}

func compTime(c *ical.Component, name string, loc *time.Location) (time.Time, bool, bool) {
	p := c.Props.Get(name)
	if p == nil {
		return time.Time{}, false, false
	}
	t, isDate, err := propTime(p, loc)
	if err != nil {
		return time.Time{}, false, false
	}
	return t, isDate, true
}

func compDuration(c *ical.Component) (time.Duration, bool) {
	p := c.Props.Get(ical.PropDuration)
	if p == nil {
		return 0, false
	}
	d, err := p.Duration()
	return d, err == nil
}

// overlaps implements RFC 4791 §9.9 for VEVENT, VTODO, VJOURNAL and VALARM.
func overlaps(c, parent *ical.Component, tr timeRange, ev *evaluation) bool {
	s, e := tr.bounds()
	loc := ev.loc
	switch c.Name {
	case ical.CompEvent, ical.CompToDo:
		if c.Props.Get(ical.PropRecurrenceRule) != nil {
			if ok, handled := overlapsRecurring(c, s, e, ev); handled {
				return ok
			}
		}
		if c.Name == ical.CompEvent {
			return eventOverlaps(c, s, e, loc)
		}
		return todoOverlaps(c, s, e, loc)
	case ical.CompJournal:
		start, isDate, ok := compTime(c, ical.PropDateTimeStart, loc)
		if !ok {
			return false
		}
		if isDate {
			return s.Before(start.AddDate(0, 0, 1)) && e.After(start)
		}
		return !s.After(start) && e.After(start)
	case ical.CompAlarm:
		for _, t := range alarmTimes(c, parent, loc) {
			if !t.Before(s) && t.Before(e) {
				return true
			}
		}
		return false
	}
	return true
}

func eventOverlaps(c *ical.Component, s, e time.Time, loc *time.Location) bool {
	start, isDate, ok := compTime(c, ical.PropDateTimeStart, loc)
	if !ok {
		return false
	}
	if end, _, ok := compTime(c, ical.PropDateTimeEnd, loc); ok {
		return s.Before(end) && e.After(start)
	}
	if d, ok := compDuration(c); ok {
		if d > 0 {
			return s.Before(start.Add(d)) && e.After(start)
		}
		return !s.After(start) && e.After(start)
	}
	if isDate {
		return s.Before(start.AddDate(0, 0, 1)) && e.After(start)
	}
	return !s.After(start) && e.After(start)
}

func todoOverlaps(c *ical.Component, s, e time.Time, loc *time.Location) bool {
	start, _, hasStart := compTime(c, ical.PropDateTimeStart, loc)
	due, _, hasDue := compTime(c, ical.PropDue, loc)
	dur, hasDur := compDuration(c)
	completed, _, hasCompleted := compTime(c, ical.PropCompleted, loc)
	created, _, hasCreated := compTime(c, ical.PropCreated, loc)
	switch {
	case hasStart && hasDur:
		return !s.After(start.Add(dur)) && (e.After(start) || !e.Before(start.Add(dur)))
	case hasStart && hasDue:
		return (s.Before(due) || !s.After(start)) && (e.After(start) || !e.Before(due))
	case hasStart:
		return !s.After(start) && e.After(start)
	case hasDue:
		return s.Before(due) && !e.Before(due)
	case hasCompleted && hasCreated:
		return (!s.After(created) || !s.After(completed)) && (!e.Before(created) || !e.Before(completed))
	case hasCompleted:
		return !s.After(completed) && !e.Before(completed)
	case hasCreated:
		return e.After(created)
	}
	return true
}

// alarmTimes lists when an alarm fires: its trigger, plus repetitions.
func alarmTimes(a, parent *ical.Component, loc *time.Location) []time.Time {
	trig := a.Props.Get(ical.PropTrigger)
	if trig == nil {
		return nil
	}
	var base time.Time
	if trig.ValueType() == ical.ValueDateTime {
		t, _, err := propTime(trig, loc)
		if err != nil {
			return nil
		}
		base = t
	} else {
		d, err := trig.Duration()
		if err != nil || parent == nil {
			return nil
		}
		anchor, ok := alarmAnchor(parent, strings.EqualFold(trig.Params.Get("RELATED"), "END"), loc)
		if !ok {
			return nil
		}
		base = anchor.Add(d)
	}
	out := []time.Time{base}
	if rp := a.Props.Get(ical.PropRepeat); rp != nil {
		n, err := strconv.Atoi(strings.TrimSpace(rp.Value))
		d, ok := compDuration(a)
		if err == nil && ok && d > 0 {
			for i := 1; i <= min(n, 100); i++ {
				out = append(out, base.Add(time.Duration(i)*d))
			}
		}
	}
	return out
}

// alarmAnchor is the time a relative trigger counts from: the parent's
// start, or with RELATED=END its end (DTEND, DUE, or start plus DURATION).
func alarmAnchor(p *ical.Component, end bool, loc *time.Location) (time.Time, bool) {
	start, _, hasStart := compTime(p, ical.PropDateTimeStart, loc)
	if !end {
		if hasStart {
			return start, true
		}
		if p.Name == ical.CompToDo { // a VTODO without DTSTART counts from DUE
			due, _, ok := compTime(p, ical.PropDue, loc)
			return due, ok
		}
		return time.Time{}, false
	}
	for _, name := range []string{ical.PropDateTimeEnd, ical.PropDue} {
		if t, _, ok := compTime(p, name, loc); ok {
			return t, true
		}
	}
	if d, ok := compDuration(p); ok && hasStart {
		return start.Add(d), true
	}
	return start, hasStart
}
