package calendar

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
)

func comp(t *testing.T, lines ...string) *ical.Calendar {
	t.Helper()
	text := "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\n" + strings.Join(lines, "\r\n") + "\r\nEND:VCALENDAR\r\n"
	cal, err := ical.NewDecoder(strings.NewReader(text)).Decode()
	if err != nil {
		t.Fatal(err)
	}
	return cal
}

func rangeFilter(name, start, end string) compFilter {
	tr := &timeRange{}
	if start != "" {
		tr.start, _ = time.Parse(utcFormat, start)
	}
	if end != "" {
		tr.end, _ = time.Parse(utcFormat, end)
	}
	return compFilter{name: "VCALENDAR", comps: []compFilter{{name: name, tr: tr}}}
}

// TestTimeRanges follows RFC 4791 §9.9 for the shapes duebridge stores and
// phones send.
func TestTimeRanges(t *testing.T) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	cases := []struct {
		name       string
		lines      []string
		start, end string
		want       bool
	}{
		{"todo due inside", []string{"BEGIN:VTODO", "UID:a", "DUE:20261201T170000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", true},
		{"todo due after", []string{"BEGIN:VTODO", "UID:a", "DUE:20261203T170000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", false},
		{"todo due at end", []string{"BEGIN:VTODO", "UID:a", "DUE:20261202T000000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", true},
		{"todo due at start", []string{"BEGIN:VTODO", "UID:a", "DUE:20261201T000000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", false},
		{"todo all-day due", []string{"BEGIN:VTODO", "UID:a", "DUE;VALUE=DATE:20261201", "END:VTODO"}, "20261130T000000Z", "20261201T120000Z", true},
		{"todo start and due spanning", []string{"BEGIN:VTODO", "UID:a", "DTSTART:20261120T000000Z", "DUE:20261210T000000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", true},
		{"todo start only, before", []string{"BEGIN:VTODO", "UID:a", "DTSTART:20261120T000000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", false},
		{"todo completed only", []string{"BEGIN:VTODO", "UID:a", "COMPLETED:20261201T100000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", true},
		{"todo created only", []string{"BEGIN:VTODO", "UID:a", "CREATED:20261101T100000Z", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", true},
		{"todo without dates", []string{"BEGIN:VTODO", "UID:a", "END:VTODO"}, "20261201T000000Z", "20261202T000000Z", true},
		{"todo TZID due", []string{"BEGIN:VTODO", "UID:a", "DUE;TZID=Europe/Berlin:20261201T003000", "END:VTODO"}, "20261130T220000Z", "20261130T233500Z", true},
		{"todo floating due in user's zone", []string{"BEGIN:VTODO", "UID:a", "DUE:20261201T003000", "END:VTODO"}, "20261130T230000Z", "20261130T234000Z", true},
		{"todo unknown TZID read as UTC", []string{"BEGIN:VTODO", "UID:a", "DUE;TZID=Mars/Olympus:20261201T120000", "END:VTODO"}, "20261201T110000Z", "20261201T130000Z", true},
		{"event instant inside", []string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART:20261201T170000Z", "END:VEVENT"}, "20261201T000000Z", "20261202T000000Z", true},
		{"event all-day", []string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART;VALUE=DATE:20261201", "DTEND;VALUE=DATE:20261202", "END:VEVENT"}, "20261201T120000Z", "20261201T130000Z", true},
		{"event ends at start", []string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART:20261130T100000Z", "DTEND:20261201T000000Z", "END:VEVENT"}, "20261201T000000Z", "20261202T000000Z", false},
		{"open-ended range", []string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART:20301201T170000Z", "END:VEVENT"}, "20261201T000000Z", "", true},
		{"recurring event hits", []string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART:20260105T090000Z", "DTEND:20260105T100000Z", "RRULE:FREQ=WEEKLY", "END:VEVENT"}, "20261207T000000Z", "20261208T000000Z", true},
		{"recurring event misses", []string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART:20260105T090000Z", "DTEND:20260105T100000Z", "RRULE:FREQ=WEEKLY", "END:VEVENT"}, "20261208T000000Z", "20261209T000000Z", false},
		{"recurring event, instance excluded", []string{"BEGIN:VEVENT", "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART:20260105T090000Z", "DTEND:20260105T100000Z", "RRULE:FREQ=WEEKLY", "EXDATE:20261207T090000Z", "END:VEVENT"}, "20261207T000000Z", "20261208T000000Z", false},
	}
	for _, c := range cases {
		cal := comp(t, c.lines...)
		name := cal.Children[0].Name
		if got := rangeFilter(name, c.start, c.end).matchCalendar(cal, newEvaluation(context.Background(), berlin, 0)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestAlarmAndPropFilters(t *testing.T) {
	cal := comp(t, "BEGIN:VTODO", "UID:a", "SUMMARY:Ship Release", "STATUS:NEEDS-ACTION", "DUE:20261201T170000Z",
		"BEGIN:VALARM", "ACTION:DISPLAY", "TRIGGER;RELATED=END:-PT1H", "END:VALARM", "END:VTODO")
	alarm := compFilter{name: "VCALENDAR", comps: []compFilter{{name: "VTODO", comps: []compFilter{{name: "VALARM",
		tr: &timeRange{start: time.Date(2026, 12, 1, 15, 30, 0, 0, time.UTC), end: time.Date(2026, 12, 1, 16, 30, 0, 0, time.UTC)}}}}}}
	if !alarm.matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0)) {
		t.Error("alarm one hour before DUE not found in range")
	}
	text := func(s string, negate bool) compFilter {
		return compFilter{name: "VCALENDAR", comps: []compFilter{{name: "VTODO", props: []propFilter{{name: "SUMMARY",
			text: &textMatch{text: s, negate: negate}}}}}}
	}
	if !text("release", false).matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0)) || text("release", true).matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0)) {
		t.Error("case-insensitive text-match")
	}
	notDone := compFilter{name: "VCALENDAR", comps: []compFilter{{name: "VTODO", props: []propFilter{{name: "COMPLETED", notDefined: true}}}}}
	if !notDone.matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0)) {
		t.Error("is-not-defined COMPLETED")
	}
	noEvents := compFilter{name: "VCALENDAR", comps: []compFilter{{name: "VEVENT", notDefined: true}}}
	if !noEvents.matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0)) || !noEvents.mayMatch("VTODO") {
		t.Error("comp-filter is-not-defined")
	}
	if rangeFilter("VEVENT", "20260101T000000Z", "").mayMatch("VTODO") {
		t.Error("a VEVENT filter may not match a VTODO list")
	}
}

// TestTimeRangeRecurrenceBounded: a recurrence with billions of instances
// before the range (a phone can PUT one as its own reminder) is answered at
// once, counted as overlapping, instead of pinning a CPU for hours.
func TestTimeRangeRecurrenceBounded(t *testing.T) {
	for _, name := range []string{"VTODO", "VEVENT"} {
		cal := comp(t, "BEGIN:"+name, "UID:a", "DTSTAMP:20261101T000000Z", "DTSTART:19000101T000000Z",
			"RRULE:FREQ=SECONDLY", "END:"+name)
		done := make(chan bool, 1)
		go func() {
			done <- rangeFilter(name, "21000101T000000Z", "21000101T010000Z").matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0))
		}()
		select {
		case got := <-done:
			if !got {
				t.Errorf("%s: an unbounded recurrence does not match; want it counted as overlapping", name)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: time-range test of FREQ=SECONDLY from 1900 still running after 10 s", name)
		}
	}
	// Within the bound the answer stays exact.
	cal := comp(t, "BEGIN:VTODO", "UID:a", "DTSTART:20260101T000000Z", "RRULE:FREQ=MINUTELY;INTERVAL=30", "END:VTODO")
	if rangeFilter("VTODO", "20260101T001000Z", "20260101T002000Z").matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0)) {
		t.Error("a 10-minute range between two half-hourly instances matches")
	}
	if !rangeFilter("VTODO", "20260101T001000Z", "20260101T003100Z").matchCalendar(cal, newEvaluation(context.Background(), time.UTC, 0)) {
		t.Error("a range holding an instance does not match")
	}
}
