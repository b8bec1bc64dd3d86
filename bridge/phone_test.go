package bridge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// ownReminder is a reminder a phone creates; pad lengthens its summary.
func ownReminder(uid string, pad int) string {
	return strings.Join([]string{"BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Apple Inc.//iOS 18.0.1//EN",
		"BEGIN:VTODO", "DTSTAMP:20261123T100000Z", "UID:" + uid, "SUMMARY:" + strings.Repeat("x", pad),
		"END:VTODO", "END:VCALENDAR", ""}, "\r\n")
}

// ownUsage reads what the store holds of alice's own reminders.
func (e *davEnv) ownUsage() (count, bytes int64) {
	e.t.Helper()
	err := testsvc.Store(e.t, e.svc).View(context.Background(), func(tx store.Tx) error {
		var err error
		count, bytes, err = tx.OwnUsage("alice")
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return count, bytes
}

// limitHits reads duebridge_caldav_limit_hits_total{limit}.
func (e *davEnv) limitHits(limit string) float64 {
	e.t.Helper()
	mfs, err := e.svc.Registry().Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "duebridge_caldav_limit_hits_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// refusedQuota checks a 507 with the DAV:quota-not-exceeded precondition
// (RFC 4331 §6).
func (e *davEnv) refusedQuota(resp *http.Response, body string) {
	e.t.Helper()
	if resp.StatusCode != http.StatusInsufficientStorage || !strings.Contains(body, "quota-not-exceeded") {
		e.t.Fatalf("answered %d, want 507 DAV:quota-not-exceeded: %s", resp.StatusCode, body)
	}
}

// TestOwnReminderBudgets: a user's own reminders are bounded in number
// (limits.own_reminders_per_user) and bytes (own_reminder_bytes_per_user).
// A new reminder over the count, or a write that would grow the bytes past
// the limit, is refused with 507 and leaves the store as it was; updates
// that do not grow past the limit still apply, and tracker tasks do not
// count (issue 13, budgets).
func TestOwnReminderBudgets(t *testing.T) {
	const perObject = 200
	e := newDavEnv(t, func(c *config.Config) {
		c.Limits.OwnRemindersPerUser = 3
		c.Limits.OwnReminderBytesPerUser = 4 * perObject
	})
	e.seedRelease("") // a tracker task in the same list: not an own reminder
	const coll = "/dav/alice/calendars/release-tasks/"
	put := func(name, body string) (*http.Response, string) {
		return e.do("PUT", coll+name, body, "Content-Type", "text/calendar")
	}
	sized := func(uid string, n int) string { // a reminder of exactly n bytes
		return ownReminder(uid, n-len(ownReminder(uid, 0)))
	}
	for i := range 3 {
		if resp, out := put(fmt.Sprintf("r%d.ics", i), sized(fmt.Sprintf("r%d", i), perObject)); resp.StatusCode != http.StatusCreated {
			t.Fatalf("reminder %d: %d %s", i, resp.StatusCode, out)
		}
	}
	if n, b := e.ownUsage(); n != 3 || b != 3*perObject {
		t.Fatalf("usage %d objects %d bytes, want 3 and %d", n, b, 3*perObject)
	}

	// Count: a fourth is refused, even a tiny one.
	e.refusedQuota(put("r3.ics", ownReminder("r3", 0)))
	if e.limitHits("own_reminders") != 1 {
		t.Fatalf("own_reminders hits %v, want 1", e.limitHits("own_reminders"))
	}
	if resp, _ := e.do("GET", coll+"r3.ics", ""); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the refused reminder is readable: %d", resp.StatusCode)
	}

	// Bytes: an update may grow up to the limit, not past it.
	if resp, out := put("r0.ics", sized("r0", 2*perObject)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("growing to the limit: %d %s", resp.StatusCode, out)
	}
	before, beforeData := e.get(coll + "r1.ics")
	e.refusedQuota(put("r1.ics", sized("r1", perObject+1)))
	if e.limitHits("own_reminder_bytes") != 1 {
		t.Fatalf("own_reminder_bytes hits %v, want 1", e.limitHits("own_reminder_bytes"))
	}
	if etag, data := e.get(coll + "r1.ics"); etag != before || data != beforeData {
		t.Fatalf("a refused update changed the object: %s", data)
	}
	if n, b := e.ownUsage(); n != 3 || b != 4*perObject {
		t.Fatalf("usage %d objects %d bytes after refusals, want 3 and %d", n, b, 4*perObject)
	}

	// At the limit, an update that shrinks applies, and a delete frees a
	// place for a new reminder.
	if resp, out := put("r0.ics", sized("r0", perObject)); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("shrinking: %d %s", resp.StatusCode, out)
	}
	if resp, out := e.do("DELETE", coll+"r2.ics", ""); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d %s", resp.StatusCode, out)
	}
	if resp, out := put("r3.ics", sized("r3", perObject)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("after a delete: %d %s", resp.StatusCode, out)
	}

	// RFC 4331 quota properties on the list: what the user's own
	// reminders use and what is left; a deadlines calendar has none.
	for _, c := range []struct{ coll, used, avail string }{
		{coll, "<d:quota-used-bytes>600</d:quota-used-bytes>", "<d:quota-available-bytes>200</d:quota-available-bytes>"},
		{"/dav/alice/calendars/release-deadlines/", "", ""},
	} {
		resp, out := e.do("PROPFIND", c.coll, `<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop>`+
			`<d:quota-used-bytes/><d:quota-available-bytes/></d:prop></d:propfind>`, "Depth", "0", "Content-Type", "text/xml")
		if resp.StatusCode != http.StatusMultiStatus || !strings.Contains(out, c.used) || !strings.Contains(out, c.avail) {
			t.Fatalf("PROPFIND %s quota: %d %s", c.coll, resp.StatusCode, out)
		}
		if c.used == "" && (strings.Contains(out, "quota-used-bytes>6") || !strings.Contains(out, "404")) {
			t.Fatalf("a deadlines calendar answers quota: %s", out)
		}
	}

	// The tracker task stays writable: it is not the user's own.
	etag, data := e.get(releaseTodo)
	e.put(releaseTodo, etag, edit(t, data, map[string]string{"STATUS": "COMPLETED", "PERCENT-COMPLETE": "100"}), vdirsyncer)
}
