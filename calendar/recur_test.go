package calendar

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
)

func parseComp(t *testing.T, text string) *ical.Component {
	t.Helper()
	cal, err := ical.NewDecoder(strings.NewReader(text)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	return cal.Children[0]
}

const poison = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VTODO\r\nUID:p\r\nDTSTAMP:20260101T000000Z\r\n" +
	"DTSTART:00010101T000000Z\r\nRRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1\r\nEND:VTODO\r\nEND:VCALENDAR\r\n"

// TestRecurrenceStepsBounded: issue 13's reminder costs a handful of steps
// for a month's range, and a year's range with a February in it stays
// well within the budget; a rule that cannot be judged in the budget is
// given up, counted, and treated as matching.
func TestRecurrenceStepsBounded(t *testing.T) {
	c := parseComp(t, poison)
	now := time.Now().UTC()
	for _, span := range []time.Duration{24 * time.Hour, 30 * 24 * time.Hour, 400 * 24 * time.Hour} {
		ev := newEvaluation(context.Background(), time.UTC, 0)
		ok, handled := overlapsRecurring(c, now, now.Add(span), ev)
		used := ev.steps
		if ok || !handled || ev.exhausted {
			t.Fatalf("span %v: ok %v handled %v exhausted %v", span, ok, handled, ev.exhausted)
		}
		// At most a few steps per day of the range (a jump per day, plus
		// the hours and minutes walked inside a February day).
		if limit := 3*int(span/(24*time.Hour)) + 200; used > limit {
			t.Fatalf("span %v: %d steps, want at most %d", span, used, limit)
		}
		t.Logf("span %v: %d steps", span, used)
	}
	// COUNT forbids jumping: FREQ=SECONDLY from the year 1 walks every
	// second until the budget is gone, then counts as matching.
	heavy := parseComp(t, strings.Replace(strings.Replace(poison, "BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1", "COUNT=2000000000", 1), "DTSTART:00010101T000000Z", "DTSTART:00010102T000000Z", 1))
	ev := newEvaluation(context.Background(), time.UTC, 1000)
	if ok, _ := overlapsRecurring(heavy, now, now.Add(time.Hour), ev); !ok || !ev.exhausted || ev.budget != 0 {
		t.Fatalf("over budget: ok %v exhausted %v budget left %d", ok, ev.exhausted, ev.budget)
	}
	// The request's budget bounds many heavy objects together.
	shared := 2500
	total := 0
	for range 5 {
		ev := newEvaluation(context.Background(), time.UTC, 1000)
		ev.shared = &shared
		if ok, _ := overlapsRecurring(heavy, now, now.Add(time.Hour), ev); !ok || !ev.exhausted {
			t.Fatal("a heavy object within the request budget not given up")
		}
		total += ev.steps
	}
	if total != 2500 {
		t.Fatalf("5 heavy objects took %d steps, want the request's 2500", total)
	}
	// A request that is gone stops the walk at the next check.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	ev = newEvaluation(ctx, time.UTC, 0)
	if ok, _ := overlapsRecurring(heavy, now, now.Add(time.Hour), ev); !ok || ev.steps > 1024 {
		t.Fatalf("cancelled request: ok %v, %d steps", ok, ev.steps)
	}
}

// TestRecurrenceExact: filters applied here and jumps give the instances
// rrule-go gives.
func TestRecurrenceExact(t *testing.T) {
	cases := []struct {
		rule, start, end string
		want             bool
	}{
		{"FREQ=DAILY;BYDAY=MO", "20261207T000000Z", "20261207T235959Z", true}, // a Monday
		{"FREQ=DAILY;BYDAY=MO", "20261208T000000Z", "20261213T235959Z", false},
		{"FREQ=HOURLY;BYHOUR=9;BYMONTH=3", "20270301T083000Z", "20270301T093000Z", true},
		{"FREQ=HOURLY;BYHOUR=9;BYMONTH=3", "20270401T000000Z", "20280228T000000Z", false},
		{"FREQ=MINUTELY;INTERVAL=7;BYMONTHDAY=-1", "20261231T100000Z", "20261231T100700Z", true},
		{"FREQ=MINUTELY;INTERVAL=7;BYMONTHDAY=-1", "20261230T100000Z", "20261230T110000Z", false},
		{"FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=1;BYMINUTE=1;BYSECOND=7", "20280229T010100Z", "20280229T010110Z", true},
		{"FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=29;BYHOUR=1;BYMINUTE=1;BYSECOND=7", "20270101T000000Z", "20280228T000000Z", false},
		{"FREQ=WEEKLY;INTERVAL=2;BYMONTH=1", "20270104T000000Z", "20270105T000000Z", true},
		{"FREQ=WEEKLY;INTERVAL=2;BYMONTH=1", "20270111T000000Z", "20270112T000000Z", false},
		{"FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "20280229T000000Z", "20280301T000000Z", true},
		{"FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3", "20270331T000000Z", "20270401T000000Z", true},
		{"FREQ=MONTHLY;BYMONTHDAY=31;COUNT=3", "20270731T000000Z", "20270801T000000Z", false},
	}
	for _, c := range cases {
		// DTSTART a Monday, 2018-01-01.
		comp := parseComp(t, strings.Replace(strings.Replace(poison, "RRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1", "RRULE:"+c.rule, 1),
			"DTSTART:00010101T000000Z", "DTSTART:20180101T000000Z", 1))
		if strings.Contains(c.rule, "COUNT") {
			comp = parseComp(t, strings.Replace(strings.Replace(poison, "RRULE:FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1", "RRULE:"+c.rule, 1),
				"DTSTART:00010101T000000Z", "DTSTART:20270131T000000Z", 1))
		}
		s, _ := time.Parse(utcFormat, c.start)
		e, _ := time.Parse(utcFormat, c.end)
		ev := newEvaluation(context.Background(), time.UTC, 0)
		got, handled := overlapsRecurring(comp, s, e, ev)
		if got != c.want || !handled || ev.exhausted {
			t.Errorf("%s in [%s, %s): %v (handled %v exhausted %v), want %v", c.rule, c.start, c.end, got, handled, ev.exhausted, c.want)
		}
	}
}

// BenchmarkRecurrenceBudget: the cost of one object that uses up the whole
// default budget (FREQ=SECONDLY with COUNT, walked second by second).
func BenchmarkRecurrenceBudget(b *testing.B) {
	cal, err := ical.NewDecoder(strings.NewReader(strings.Replace(strings.Replace(poison,
		"BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1", "COUNT=2000000000", 1),
		"DTSTART:00010101T000000Z", "DTSTART:00010102T000000Z", 1))).Decode()
	if err != nil {
		b.Fatal(err)
	}
	c := cal.Children[0]
	now := time.Now().UTC()
	for b.Loop() {
		ev := newEvaluation(context.Background(), time.UTC, 0)
		if ok, _ := overlapsRecurring(c, now, now.Add(time.Hour), ev); !ok || !ev.exhausted {
			b.Fatal("budget not used up")
		}
	}
}
