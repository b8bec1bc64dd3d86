package iphone

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-ical"
)

var errorsAs = errors.As

// App is the app that shows an item and fires its alarms.
type App string

const (
	Reminders App = "Reminders" // VTODO
	Calendar  App = "Calendar"  // VEVENT
)

// Notification is one alert the person sees.
type Notification struct {
	App   App
	Title string // the item's SUMMARY
	At    time.Time
}

func (n Notification) String() string {
	return fmt.Sprintf("%s %q at %s", n.App, n.Title, n.At.UTC().Format(time.RFC3339))
}

// Item is one reminder or event as the phone holds it.
type Item struct {
	App       App
	UID       string
	Title     string
	Completed bool
	// Marks is what Reminders shows for PRIORITY: 1 "!!!", 5 "!!", 9 "!",
	// 0 or absent none (IOS.md §12); other values as iOS rounds them.
	Marks  string
	Alarms []time.Time // when each alarm fires (ACTION:NONE placeholders excluded)
	Href   string
	coll   *Collection
	comp   *ical.Component
}

// Items returns every reminder and event of the local copy, sorted by app
// and title.
func (p *Phone) Items() ([]Item, error) {
	var out []Item
	for _, c := range p.Collections() {
		for _, o := range c.Objects {
			cal, err := ical.NewDecoder(strings.NewReader(o.Data)).Decode()
			if err != nil {
				return nil, fmt.Errorf("%s: iOS cannot read it: %w", o.Href, err)
			}
			for _, comp := range cal.Children {
				var app App
				switch comp.Name {
				case ical.CompToDo:
					app = Reminders
				case ical.CompEvent:
					app = Calendar
				default:
					continue
				}
				it := Item{App: app, Href: o.Href, coll: c, comp: comp, UID: text(comp, ical.PropUID),
					Title: text(comp, ical.PropSummary)}
				it.Completed = app == Reminders && (text(comp, ical.PropStatus) == "COMPLETED" || text(comp, ical.PropPercentComplete) == "100")
				if app == Reminders {
					it.Marks = marks(text(comp, ical.PropPriority))
				}
				it.Alarms, err = alarmTimes(comp)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", o.Href, err)
				}
				out = append(out, it)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].App != out[j].App {
			return out[i].App < out[j].App
		}
		return out[i].Title < out[j].Title
	})
	return out, nil
}

func text(c *ical.Component, name string) string {
	if p := c.Props.Get(name); p != nil {
		return p.Value
	}
	return ""
}

// marks maps PRIORITY as Reminders shows it: 1-4 high (!!!), 5 medium (!!),
// 6-9 low (!), 0 or absent none.
func marks(v string) string {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	switch {
	case err != nil || n <= 0:
		return ""
	case n < 5:
		return "!!!"
	case n == 5:
		return "!!"
	}
	return "!"
}

// alarmTimes resolves the VALARM triggers of an item: absolute
// (VALUE=DATE-TIME) or relative to the start (DTSTART, or DUE for a
// reminder without one) or, with RELATED=END, to DUE/DTEND.
func alarmTimes(c *ical.Component) ([]time.Time, error) {
	var out []time.Time
	for _, a := range c.Children {
		if a.Name != ical.CompAlarm || text(a, ical.PropAction) == "NONE" || a.Props.Get("ACKNOWLEDGED") != nil {
			continue
		}
		trig := a.Props.Get(ical.PropTrigger)
		if trig == nil {
			continue
		}
		if trig.ValueType() == ical.ValueDateTime {
			t, err := trig.DateTime(time.UTC)
			if err != nil {
				return nil, fmt.Errorf("TRIGGER %q: %w", trig.Value, err)
			}
			out = append(out, t)
			continue
		}
		d, err := trig.Duration()
		if err != nil {
			return nil, fmt.Errorf("TRIGGER %q: %w", trig.Value, err)
		}
		anchor := anchorOf(c, trig.Params.Get(ical.ParamRelated) == "END")
		if anchor.IsZero() {
			continue // iOS has nothing to fire it against
		}
		out = append(out, anchor.Add(d))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out, nil
}

func anchorOf(c *ical.Component, end bool) time.Time {
	names := []string{ical.PropDateTimeStart, ical.PropDue}
	if end {
		names = []string{ical.PropDue, ical.PropDateTimeEnd}
	}
	for _, n := range names {
		if p := c.Props.Get(n); p != nil {
			if t, err := p.DateTime(time.UTC); err == nil {
				return t
			}
		}
	}
	return time.Time{}
}

// Notifications returns the alerts the person sees with the phone's clock
// going from `from` (exclusive) to `to` (inclusive): every alarm of every
// open reminder (Reminders) and of every event (Calendar), in time order.
func (p *Phone) Notifications(from, to time.Time) ([]Notification, error) {
	items, err := p.Items()
	if err != nil {
		return nil, err
	}
	var out []Notification
	for _, it := range items {
		if it.Completed {
			continue // a completed reminder does not alert
		}
		for _, at := range it.Alarms {
			if at.After(from) && !at.After(to) {
				out = append(out, Notification{App: it.App, Title: it.Title, At: at})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].At.Equal(out[j].At) {
			return out[i].At.Before(out[j].At)
		}
		return out[i].App < out[j].App
	})
	return out, nil
}

// Reminder returns the reminder titled title, or an error.
func (p *Phone) Reminder(title string) (Item, error) {
	items, err := p.Items()
	if err != nil {
		return Item{}, err
	}
	var found []Item
	for _, it := range items {
		if it.App == Reminders && it.Title == title {
			found = append(found, it)
		}
	}
	if len(found) != 1 {
		return Item{}, fmt.Errorf("Reminders shows %d items titled %q, want 1", len(found), title)
	}
	return found[0], nil
}

// SetDone ticks (done) or un-ticks a reminder as Reminders writes it (IOS.md
// §5.2): the whole object with STATUS, COMPLETED, PERCENT-COMPLETE, new
// DTSTAMP and LAST-MODIFIED, Apple's PRODID and X-APPLE-SORT-ORDER, PUT with
// If-Match. A 2xx answer with an ETag means the server stored exactly this
// body: the phone keeps its copy. Without an ETag it fetches the object on
// the next sync.
func (p *Phone) SetDone(ctx context.Context, title string, done bool, now time.Time) error {
	it, err := p.Reminder(title)
	if err != nil {
		return err
	}
	o := it.coll.Objects[it.Href]
	cal, err := ical.NewDecoder(strings.NewReader(o.Data)).Decode()
	if err != nil {
		return err
	}
	cal.Props.SetText(ical.PropProductID, "-//Apple Inc.//iOS 18.0.1//EN")
	for _, c := range cal.Children {
		if c.Name != ical.CompToDo {
			continue
		}
		stamp := now.UTC().Truncate(time.Second)
		c.Props.SetDateTime(ical.PropDateTimeStamp, stamp)
		c.Props.SetDateTime(ical.PropLastModified, stamp)
		if c.Props.Get("X-APPLE-SORT-ORDER") == nil {
			c.Props.SetText("X-APPLE-SORT-ORDER", "740793996")
		}
		if done {
			c.Props.SetText(ical.PropStatus, "COMPLETED")
			c.Props.SetDateTime(ical.PropCompleted, stamp)
			c.Props.SetText(ical.PropPercentComplete, "100")
		} else {
			c.Props.SetText(ical.PropStatus, "NEEDS-ACTION")
			c.Props.Del(ical.PropCompleted)
			c.Props.Del(ical.PropPercentComplete)
		}
	}
	var b strings.Builder
	if err := ical.NewEncoder(&b).Encode(cal); err != nil {
		return err
	}
	body := b.String()
	resp, rb, err := p.do(ctx, http.MethodPut, it.Href, "", body, true,
		map[string]string{"If-Match": o.ETag, "Content-Type": "text/calendar; charset=utf-8"})
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Method: "PUT", Target: it.Href, Code: resp.StatusCode, Body: string(rb)}
	}
	// RFC 4791 §5.3.4: an ETag in the answer says the stored object is
	// byte-identical to the body; without one the phone must fetch it.
	o.Data, o.ETag = body, resp.Header.Get("ETag")
	return nil
}
