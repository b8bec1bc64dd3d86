package iphone

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-ical"
)

// TestMarks: PRIORITY as Reminders shows it (IOS.md §12).
func TestMarks(t *testing.T) {
	for v, want := range map[string]string{"": "", "0": "", "1": "!!!", "3": "!!!", "5": "!!", "6": "!", "9": "!", "x": ""} {
		if got := marks(v); got != want {
			t.Errorf("PRIORITY:%s shows %q, want %q", v, got, want)
		}
	}
}

// TestAlarmTimes: absolute and relative triggers; Apple's ACTION:NONE
// placeholder and acknowledged alarms do not fire.
func TestAlarmTimes(t *testing.T) {
	due := time.Date(2031, 3, 4, 17, 0, 0, 0, time.UTC) // any date: nothing here reads the clock
	lines := []string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//t//EN", "BEGIN:VTODO", "UID:a", "DTSTAMP:20310101T000000Z",
		"DUE:" + due.Format("20060102T150405Z"),
		"BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:x", "TRIGGER:-PT1H", "END:VALARM",
		"BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:x", "TRIGGER;VALUE=DATE-TIME:20310303T170000Z", "END:VALARM",
		"BEGIN:VALARM", "ACTION:NONE", "TRIGGER;VALUE=DATE-TIME:19760401T005545Z", "X-APPLE-DEFAULT-ALARM:TRUE", "END:VALARM",
		"BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:x", "TRIGGER:-PT2H", "ACKNOWLEDGED:20310101T000000Z", "END:VALARM",
		"END:VTODO", "END:VCALENDAR", ""}
	cal, err := ical.NewDecoder(strings.NewReader(strings.Join(lines, "\r\n"))).Decode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := alarmTimes(cal.Children[0])
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Time{due.Add(-24 * time.Hour), due.Add(-time.Hour)}
	if len(got) != len(want) || !got[0].Equal(want[0]) || !got[1].Equal(want[1]) {
		t.Errorf("alarms at %v, want %v", got, want)
	}
}
