package calendar_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/config"
)

// TestRecurrenceBudgetFromConfig: limits.recurrence_steps and
// limits.recurrence_steps_per_request bound the work of a time-range
// query. A daily reminder whose 400 instances all lie before the window
// needs a few hundred steps: under the defaults it is judged exactly (no
// match); with either budget set below that, it is counted as matching
// unexpanded and as a limit hit.
func TestRecurrenceBudgetFromConfig(t *testing.T) {
	for _, c := range []struct {
		name   string
		config func(*config.Config)
		cut    bool
	}{
		{"defaults", nil, false},
		{"per object", func(c *config.Config) { c.Limits.RecurrenceSteps = 50 }, true},
		{"per request", func(c *config.Config) { c.Limits.RecurrenceStepsPerRequest = 50 }, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, envOptions{config: c.config})
			e.seed()
			const coll = "/dav/alice/calendars/release-tasks/"
			start := e.now.AddDate(0, 0, -500).Format("20060102T150405Z")
			daily := strings.NewReplacer("UID:p", "UID:daily", "DTSTART:00010101T000000Z", "DTSTART:"+start,
				"FREQ=SECONDLY;BYMONTH=2;BYMONTHDAY=30;BYHOUR=1;BYMINUTE=1", "FREQ=DAILY;COUNT=400").Replace(poisonReminder)
			if resp, out := e.do("PUT", coll+"daily.ics", "alice", daily, "Content-Type", "text/calendar"); resp.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: %d %s", resp.StatusCode, out)
			}
			m := e.ms(e.do("REPORT", coll, "alice", queryBody(e.now, e.now.AddDate(0, 0, 30)), "Depth", "1"))
			if got := m.response(coll+"daily.ics") != nil; got != c.cut {
				t.Fatalf("matched %v, want %v: %v", got, c.cut, m.hrefs())
			}
			want := 0.0
			if c.cut {
				want = 1
			}
			if n := e.limitHits("recurrence_steps"); n != want {
				t.Fatalf("recurrence_steps hits %v, want %v", n, want)
			}
		})
	}
}
