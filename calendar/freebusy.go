package calendar

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/emersion/go-ical"
)

// deadlineBusy is the busy time a timed deadline stands for: it is an
// instant (DTSTART alone), and free-busy periods need a length. The half
// hour before a deadline is when its work is being finished.
const deadlineBusy = 30 * time.Minute

// freeBusy answers CALDAV:free-busy-query (RFC 4791 §7.10), mandatory on
// every calendar collection that grants read-free-busy, which all of ours
// do: a VFREEBUSY whose busy time is the collection's events overlapping
// the range, merged. Events here are deadlines: an all-day one is that day
// busy in the user's zone, a timed one the half hour before it
// (deadlineBusy). Deadline events are marked TRANSP:TRANSPARENT so that
// they do not block the user's own calendars when subscribed elsewhere;
// the query is answered from them anyway, since a free-busy answer that
// is always empty would tell nothing. Cancelled events are left out.
// Reminders lists hold VTODOs, which carry no busy time: their answer is
// an empty VFREEBUSY.
func (h *Handler) freeBusy(w http.ResponseWriter, r *http.Request, u *User, t target, body *node) {
	trn := body.child(nsCalDAV, "time-range")
	if trn == nil {
		http.Error(w, "free-busy-query needs a time-range", http.StatusBadRequest)
		return
	}
	tr, err := parseTimeRange(trn)
	if err != nil || tr.start.IsZero() || tr.end.IsZero() {
		msg := "free-busy-query needs a time-range with start and end"
		if err != nil {
			msg = err.Error()
		}
		http.Error(w, msg, http.StatusBadRequest)
		return
	}
	c, objs, err := h.be.Objects(r.Context(), u.Name, t.coll, true)
	if h.failed(w, r, err) {
		return
	}
	loc := u.Location
	if loc == nil {
		loc = time.UTC
	}
	var busy []period
	if component(c) != ical.CompEvent {
		objs = nil // VTODOs carry no busy time
	}
	for i := range objs {
		cal, err := ical.NewDecoder(bytes.NewReader(objs[i].Data)).Decode()
		if err != nil {
			continue
		}
		for _, c := range cal.Children {
			if p, ok := eventBusy(c, loc); ok && p.end.After(tr.start) && p.start.Before(tr.end) {
				busy = append(busy, period{start: later(p.start, tr.start), end: earlier(p.end, tr.end)})
			}
		}
	}
	out, err := freeBusyCalendar(mergePeriods(busy), tr.start, tr.end, h.be.Now())
	if err != nil {
		h.serverError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/calendar; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}

type period struct{ start, end time.Time }

// eventBusy is the busy time of one VEVENT, in UTC.
func eventBusy(c *ical.Component, loc *time.Location) (period, bool) {
	if c.Name != ical.CompEvent {
		return period{}, false
	}
	if st := c.Props.Get(ical.PropStatus); st != nil && st.Value == "CANCELLED" {
		return period{}, false
	}
	start, isDate, ok := compTime(c, ical.PropDateTimeStart, loc)
	if !ok {
		return period{}, false
	}
	var end time.Time
	if e, _, ok := compTime(c, ical.PropDateTimeEnd, loc); ok {
		end = e
	} else if d, ok := compDuration(c); ok && d > 0 {
		end = start.Add(d)
	} else if isDate {
		end = start.AddDate(0, 0, 1)
	} else {
		start, end = start.Add(-deadlineBusy), start
	}
	if !end.After(start) {
		return period{}, false
	}
	return period{start: start.UTC(), end: end.UTC()}, true
}

func mergePeriods(ps []period) []period {
	slices.SortFunc(ps, func(a, b period) int { return a.start.Compare(b.start) })
	var out []period
	for _, p := range ps {
		if n := len(out); n > 0 && !p.start.After(out[n-1].end) {
			if p.end.After(out[n-1].end) {
				out[n-1].end = p.end
			}
			continue
		}
		out = append(out, p)
	}
	return out
}

// freeBusyCalendar renders the VCALENDAR of a free-busy answer.
func freeBusyCalendar(busy []period, start, end, now time.Time) ([]byte, error) {
	fb := ical.NewComponent(ical.CompFreeBusy)
	// A UID is required (RFC 5545 §3.6.4); the answer is a function of
	// the range, so is its UID.
	fb.Props.SetText(ical.PropUID, "duebridge-free-busy-"+start.UTC().Format(utcFormat)+"-"+end.UTC().Format(utcFormat))
	fb.Props.SetDateTime(ical.PropDateTimeStamp, now.UTC())
	fb.Props.SetDateTime(ical.PropDateTimeStart, start.UTC())
	fb.Props.SetDateTime(ical.PropDateTimeEnd, end.UTC())
	for _, p := range busy {
		prop := ical.NewProp(ical.PropFreeBusy)
		prop.Params.Set(ical.ParamFreeBusyType, "BUSY")
		prop.Value = p.start.UTC().Format(utcFormat) + "/" + p.end.UTC().Format(utcFormat)
		fb.Props.Add(prop)
	}
	cal := ical.NewCalendar()
	cal.Props.SetText(ical.PropVersion, "2.0")
	cal.Props.SetText(ical.PropProductID, "-//duebridge//free-busy//EN")
	cal.Children = append(cal.Children, fb)
	var b bytes.Buffer
	if err := ical.NewEncoder(&b).Encode(cal); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
