package bridge

import (
	"testing"
	"time"

	"github.com/duebridge/duebridge/config"
)

func TestQuietUntil(t *testing.T) {
	t.Parallel()
	berlin, _ := time.LoadLocation("Europe/Berlin")
	u := &config.User{Location: berlin, QuietHours: &config.QuietHours{Start: 22 * time.Hour, End: 7 * time.Hour}}
	day := &config.User{Location: berlin, QuietHours: &config.QuietHours{Start: 12 * time.Hour, End: 14 * time.Hour}}
	cases := []struct {
		u     *config.User
		now   time.Time
		quiet bool
		end   time.Time
	}{
		{u, time.Date(2026, 3, 28, 21, 59, 0, 0, berlin), false, time.Time{}},
		{u, time.Date(2026, 3, 28, 22, 0, 0, 0, berlin), true, time.Date(2026, 3, 29, 7, 0, 0, 0, berlin)},
		// The night summer time starts (29 March): still 07:00 local.
		{u, time.Date(2026, 3, 29, 3, 30, 0, 0, berlin), true, time.Date(2026, 3, 29, 7, 0, 0, 0, berlin)},
		{u, time.Date(2026, 3, 29, 7, 0, 0, 0, berlin), false, time.Time{}},
		{day, time.Date(2026, 3, 29, 13, 0, 0, 0, berlin), true, time.Date(2026, 3, 29, 14, 0, 0, 0, berlin)},
		{day, time.Date(2026, 3, 29, 14, 0, 0, 0, berlin), false, time.Time{}},
		{&config.User{Location: berlin}, time.Date(2026, 3, 29, 3, 0, 0, 0, berlin), false, time.Time{}},
	}
	for _, c := range cases {
		end, quiet := quietUntil(c.u, c.now)
		if quiet != c.quiet || !end.Equal(c.end) {
			t.Errorf("quietUntil(%s) = %s, %v; want %s, %v", c.now, end, quiet, c.end, c.quiet)
		}
	}
	if got := time.Date(2026, 3, 29, 7, 0, 0, 0, berlin).Sub(time.Date(2026, 3, 28, 22, 0, 0, 0, berlin)); got != 8*time.Hour {
		t.Fatalf("sanity: the DST night is %s long", got)
	}
}
