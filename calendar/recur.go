package calendar

import (
	"context"
	"slices"
	"time"

	"github.com/emersion/go-ical"
	"github.com/teambition/rrule-go"
)

// DefaultRecurrenceSteps (limits.recurrence_steps) is the work one object's recurrences may cost a
// time-range test: the candidate instances and jumps walked, all
// components of the object together. BenchmarkRecurrenceBudget: about
// 60 ms for the whole budget.
const DefaultRecurrenceSteps = 100_000

// RequestRecurrenceSteps (limits.recurrence_steps_per_request) bounds the steps of all objects of one request
// together, so that many heavy objects cannot add up: once spent, every
// further recurrence of the request counts as matching unexpanded. Both
// are defaults: Backend.Limits may set others.
const RequestRecurrenceSteps = 10 * DefaultRecurrenceSteps

// evaluation is what evaluating a filter on one object needs beyond the
// filter: the user's zone, the request's context (a client that hung up
// stops the walk) and the object's recurrence work budget.
type evaluation struct {
	ctx    context.Context
	loc    *time.Location
	budget int // steps left
	steps  int // steps taken
	// shared, when set, is the request's budget, spent along with budget.
	shared *int
	// exhausted: a recurrence was cut off by the budget or the context and
	// counted as overlapping.
	exhausted bool
}

func newEvaluation(ctx context.Context, loc *time.Location, steps int) *evaluation {
	if loc == nil {
		loc = time.UTC
	}
	if steps <= 0 {
		steps = DefaultRecurrenceSteps
	}
	return &evaluation{ctx: ctx, loc: loc, budget: steps}
}

// step spends one unit of work; false when the budget or the request is
// gone.
func (ev *evaluation) step() bool {
	if ev.budget <= 0 || (ev.shared != nil && *ev.shared <= 0) {
		return false
	}
	ev.budget--
	ev.steps++
	if ev.shared != nil {
		*ev.shared--
	}
	if ev.steps%1024 == 0 && ev.ctx.Err() != nil {
		ev.budget = 0
		return false
	}
	return true
}

// giveUp records that a recurrence could not be judged within the budget
// (or at all): it counts as overlapping. A false match costs the client a
// look at the object; a wrong miss would hide it.
func (ev *evaluation) giveUp() (ok, handled bool) {
	ev.exhausted = true
	return true, true
}

// overlapsRecurring checks the instances of a recurring component against
// [s, e). handled is false when the recurrence cannot be read; the caller
// then judges the first instance alone.
//
// Why not rrule-go's iterator alone: one call of it walks period after
// period until an instance matches, up to the year 9999, with no way to
// stop it. FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30 (Feb 30 never comes) from
// the year 1 walks 3.6 million days inside a single call, about 30 s. So
// the rule handed to rrule-go keeps only the parts that generate instances
// (every period then yields at once); the parts that merely filter
// (BYMONTH, BYMONTHDAY, BYYEARDAY, BYDAY, BYHOUR, BYMINUTE, BYSECOND where
// RFC 5545 §3.3.10 makes them limits) are applied here, one step of the
// budget per candidate. Without COUNT the walk may also start anywhere on
// the rule's grid, so it starts just before the range and, when a
// candidate fails a filter, jumps to the grid point where the filter can
// next pass (next hour, day, month) instead of walking every second.
func overlapsRecurring(c *ical.Component, s, e time.Time, ev *evaluation) (ok, handled bool) {
	start, isDate, hasStart := compTime(c, ical.PropDateTimeStart, ev.loc)
	if !hasStart {
		return false, false
	}
	opt, err := c.Props.RecurrenceRule()
	if err != nil || opt == nil {
		return false, false
	}
	var dur time.Duration
	endName := ical.PropDateTimeEnd
	if c.Name == ical.CompToDo {
		endName = ical.PropDue
	}
	if end, _, ok := compTime(c, endName, ev.loc); ok {
		dur = end.Sub(start)
	} else if d, ok := compDuration(c); ok {
		dur = d
	} else if isDate {
		dur = 24 * time.Hour
	}
	hits := func(t time.Time) bool { // t's instance ends after s (or starts at or after it)
		return (dur > 0 && t.After(s.Add(-dur))) || (dur <= 0 && !t.Before(s))
	}
	excluded := map[int64]bool{}
	for i := range c.Props[ical.PropExceptionDates] {
		if t, _, err := propTime(&c.Props[ical.PropExceptionDates][i], ev.loc); err == nil {
			excluded[t.Unix()] = true
		}
	}
	for i := range c.Props[ical.PropRecurrenceDates] {
		t, _, err := propTime(&c.Props[ical.PropRecurrenceDates][i], ev.loc)
		if err == nil && !excluded[t.Unix()] && hits(t) && t.Before(e) {
			return true, true
		}
	}

	w, ok := newWalk(*opt, start.Truncate(time.Second))
	if !ok {
		return ev.giveUp()
	}
	if w.count == 0 {
		// The first instance that can overlap starts after s-dur; begin
		// one grid period before that.
		w.restart(s.Add(-max(dur, 0)))
	}
	if w.opt.Dtstart.IsZero() {
		// rrule-go reads a zero DTSTART (0001-01-01T00:00:00Z, which
		// anyone can write) as "now"; its instances would be wrong.
		return ev.giveUp()
	}
	n := 0
	for {
		if !ev.step() {
			return ev.giveUp()
		}
		t, more := w.next()
		if !more {
			return false, true
		}
		if !t.Before(e) {
			// Past the range; candidates come in order.
			return false, true
		}
		if skip, to := w.filter(t); skip {
			if w.count == 0 {
				w.restart(to)
			}
			continue
		}
		n++
		if w.count > 0 && n > w.count {
			return false, true
		}
		if excluded[t.Unix()] || !hits(t) {
			continue
		}
		return t.Before(e), true
	}
}

// walk iterates the generating part of a rule and filters with the rest.
type walk struct {
	opt   rrule.ROption // the generating rule given to rrule-go
	dt    time.Time     // the rule's DTSTART
	count int           // COUNT, applied here after filtering
	lim   limits
	it    rrule.Next
}

// limits are the rule parts applied here as filters.
type limits struct {
	month, monthDay, yearDay, hour, minute, second []int
	weekday                                        []int // 0 = Monday, as rrule-go counts
}

func newWalk(opt rrule.ROption, dtstart time.Time) (*walk, bool) {
	w := &walk{dt: dtstart, count: opt.Count}
	opt.Count = 0
	opt.Dtstart = dtstart
	if len(opt.Byeaster) > 0 {
		return nil, false // not RFC 5545; rrule-go's own walk is unbounded
	}
	if opt.Freq != rrule.YEARLY && len(opt.Byweekno) > 0 {
		return nil, false // RFC 5545 allows BYWEEKNO with YEARLY only
	}
	limited := false
	take := func(dst *[]int, src *[]int, when bool) {
		if when && len(*src) > 0 {
			*dst, *src, limited = *src, nil, true
		}
	}
	f := opt.Freq
	take(&w.lim.month, &opt.Bymonth, f >= rrule.MONTHLY)
	if f == rrule.WEEKLY || f == rrule.MONTHLY {
		// Not allowed with WEEKLY (BYMONTHDAY, BYYEARDAY) or MONTHLY
		// (BYYEARDAY); stripping them would change rrule-go's defaults.
		if len(opt.Byyearday) > 0 || (f == rrule.WEEKLY && len(opt.Bymonthday) > 0) {
			return nil, false
		}
	}
	take(&w.lim.monthDay, &opt.Bymonthday, f >= rrule.DAILY)
	take(&w.lim.yearDay, &opt.Byyearday, f >= rrule.DAILY)
	if f >= rrule.DAILY && len(opt.Byweekday) > 0 {
		for _, d := range opt.Byweekday {
			if d.N() != 0 {
				return nil, false // BYDAY=1MO is an expansion of MONTHLY and YEARLY only
			}
			w.lim.weekday = append(w.lim.weekday, d.Day())
		}
		opt.Byweekday, limited = nil, true
	}
	take(&w.lim.hour, &opt.Byhour, f >= rrule.HOURLY)
	take(&w.lim.minute, &opt.Byminute, f >= rrule.MINUTELY)
	take(&w.lim.second, &opt.Bysecond, f >= rrule.SECONDLY)
	if limited && len(opt.Bysetpos) > 0 {
		return nil, false // BYSETPOS picks among the filtered set of a period
	}
	w.opt = opt
	r, err := rrule.NewRRule(opt)
	if err != nil {
		return nil, false
	}
	w.it = r.Iterator()
	return w, true
}

func (w *walk) next() (time.Time, bool) { return w.it() }

// filter reports whether t fails the limits and, if so, the earliest time
// at which the failing limit can pass again.
func (w *walk) filter(t time.Time) (skip bool, to time.Time) {
	y, m, d := t.Date()
	loc := t.Location()
	switch {
	case len(w.lim.month) > 0 && !slices.Contains(w.lim.month, int(m)):
		return true, time.Date(y, m+1, 1, 0, 0, 0, 0, loc)
	case len(w.lim.monthDay) > 0 && !dayIn(w.lim.monthDay, d, daysIn(y, m)),
		len(w.lim.yearDay) > 0 && !dayIn(w.lim.yearDay, t.YearDay(), daysIn(y, 13)),
		len(w.lim.weekday) > 0 && !slices.Contains(w.lim.weekday, (int(t.Weekday())+6)%7):
		return true, time.Date(y, m, d+1, 0, 0, 0, 0, loc)
	case len(w.lim.hour) > 0 && !slices.Contains(w.lim.hour, t.Hour()):
		return true, time.Date(y, m, d, t.Hour()+1, 0, 0, 0, loc)
	case len(w.lim.minute) > 0 && !slices.Contains(w.lim.minute, t.Minute()):
		return true, time.Date(y, m, d, t.Hour(), t.Minute()+1, 0, 0, loc)
	case len(w.lim.second) > 0 && !slices.Contains(w.lim.second, t.Second()):
		return true, t.Add(time.Second)
	}
	return false, time.Time{}
}

// dayIn matches a day number against values that may count from the end
// (-1 is the last of n days).
func dayIn(vals []int, day, n int) bool {
	for _, v := range vals {
		if v == day || (v < 0 && n+v+1 == day) {
			return true
		}
	}
	return false
}

// daysIn is the length of month m of year y; m 13 means the whole year.
func daysIn(y int, m time.Month) int {
	if m == 13 {
		return time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC).YearDay()
	}
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// restart moves the walk to the first point of the rule's grid at or
// after "to" less one period. Valid only without COUNT: the instances of a
// rule without COUNT do not depend on where on its grid it starts (the
// grid counts whole periods from DTSTART in wall-clock time, as rrule-go
// does; YEARLY and MONTHLY move by whole 400-year cycles, after which
// dates and weekdays repeat).
func (w *walk) restart(to time.Time) {
	step, unit := w.period()
	if step <= 0 {
		return
	}
	// Wall-clock arithmetic: the fields of both times read as UTC.
	naive := func(t time.Time) time.Time {
		t = t.In(w.dt.Location())
		y, m, d := t.Date()
		return time.Date(y, m, d, t.Hour(), t.Minute(), t.Second(), 0, time.UTC)
	}
	from, target := naive(w.dt), naive(to)
	var k int64
	switch unit {
	case 0: // months
		months := int64(target.Year()-from.Year())*12 + int64(target.Month()-from.Month())
		k = months/int64(step) - 1
	default:
		// In seconds: a time.Duration spans only 292 years, and DTSTART
		// may be in the year 1.
		k = (target.Unix()-from.Unix())/int64(unit/time.Second)/int64(step) - 1
	}
	if k <= 0 {
		return
	}
	var nd time.Time
	if unit == 0 {
		nd = time.Date(w.dt.Year(), w.dt.Month()+time.Month(k*int64(step)), w.dt.Day(), w.dt.Hour(), w.dt.Minute(), w.dt.Second(), 0, w.dt.Location())
	} else {
		f := time.Unix(from.Unix()+k*int64(step)*int64(unit/time.Second), 0).UTC()
		nd = time.Date(f.Year(), f.Month(), f.Day(), f.Hour(), f.Minute(), f.Second(), 0, w.dt.Location())
	}
	if !nd.After(w.opt.Dtstart) {
		return
	}
	opt := w.opt
	opt.Dtstart = nd
	r, err := rrule.NewRRule(opt)
	if err != nil {
		return
	}
	w.opt, w.it = opt, r.Iterator()
}

// period is the rule's grid step: step units of unit (unit 0: months).
// YEARLY and MONTHLY step in whole 400-year cycles so that DTSTART's day
// of month (and Feb 29) exists at every grid point.
func (w *walk) period() (step int, unit time.Duration) {
	i := max(w.opt.Interval, 1)
	switch w.opt.Freq {
	case rrule.YEARLY:
		return lcm(i*12, 4800), 0
	case rrule.MONTHLY:
		return lcm(i, 4800), 0
	case rrule.WEEKLY:
		return i * 7, 24 * time.Hour
	case rrule.DAILY:
		return i, 24 * time.Hour
	case rrule.HOURLY:
		return i, time.Hour
	case rrule.MINUTELY:
		return i, time.Minute
	case rrule.SECONDLY:
		return i, time.Second
	}
	return 0, 0
}

func lcm(a, b int) int {
	x, y := a, b
	for y != 0 {
		x, y = y, x%y
	}
	return a / x * b
}
