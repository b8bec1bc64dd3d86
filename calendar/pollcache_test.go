package calendar_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/duebridge/duebridge/calendar"
)

// quotaCounter is the real backend, counting its quota reads.
type quotaCounter struct {
	calendar.Backend
	reads atomic.Int32
}

func (b *quotaCounter) Quota(ctx context.Context, user string) (int64, int64, error) {
	b.reads.Add(1)
	return b.Backend.Quota(ctx, user)
}

// homePollBody is the part of iOS's home PROPFIND that matters here.
const homePollBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:propfind xmlns:A="DAV:" xmlns:C="http://calendarserver.org/ns/"><A:prop>` +
	`<A:displayname/><C:getctag/><A:quota-available-bytes/><A:quota-used-bytes/><A:resourcetype/><A:sync-token/>` +
	`</A:prop></A:propfind>`

// TestHomePollRemembersQuota: a phone's repeated home poll reads the
// user's quota once while nothing changed; a reminder written on the
// phone, and a new budget in the config, show at the next poll.
func TestHomePollRemembersQuota(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	be := &quotaCounter{Backend: e.svc.CalDAV()}
	srv := httptest.NewServer(calendar.NewHandler(be, calendar.Options{}))
	t.Cleanup(srv.Close)
	e.srv = srv
	const list = "/dav/alice/calendars/release-tasks/"
	poll := func() (used, avail string) {
		t.Helper()
		resp, body := e.do("PROPFIND", "/dav/alice/calendars/", "alice", homePollBody, "Depth", "1")
		r := e.ms(resp, body).response(list)
		return mustProp(t, r, nsDAV, "quota-used-bytes").Inner, mustProp(t, r, nsDAV, "quota-available-bytes").Inner
	}
	used0, avail0 := poll()
	for range 3 {
		if u, a := poll(); u != used0 || a != avail0 {
			t.Fatalf("quota moved with nothing changed: %s/%s, then %s/%s", used0, avail0, u, a)
		}
	}
	if n := be.reads.Load(); n != 1 {
		t.Fatalf("4 unchanged home polls read the quota %d times, want 1", n)
	}

	reminder := newReminderText("Q-1", "Buy milk")
	if resp, out := e.do("PUT", list+"q-1.ics", "alice", reminder, "Content-Type", "text/calendar", "If-None-Match", "*"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, out)
	}
	used1, _ := poll()
	want, _ := strconv.Atoi(used0)
	if used1 != strconv.Itoa(want+len(reminder)) {
		t.Fatalf("after a %d-byte reminder quota-used-bytes = %s, was %s", len(reminder), used1, used0)
	}

	cfg := *e.svc.Config()
	cfg.Limits.OwnReminderBytesPerUser = 100000
	e.svc.SetConfig(context.Background(), &cfg)
	if _, a := poll(); a != strconv.Itoa(100000-want-len(reminder)) {
		t.Fatalf("after a new budget quota-available-bytes = %s", a)
	}
	if n := be.reads.Load(); n != 3 {
		t.Fatalf("quota read %d times, want 3 (first poll, after the write, after the new budget)", n)
	}
}

// TestPropfindBodyRemembered: the same PROPFIND body answered many times
// gives the same answer, and a different body its own one.
func TestPropfindBodyRemembered(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.seed()
	var first string
	for i := range 3 {
		resp, body := e.do("PROPFIND", "/dav/alice/calendars/", "alice", homePollBody, "Depth", "1")
		if resp.StatusCode != http.StatusMultiStatus {
			t.Fatalf("poll %d: %d", i, resp.StatusCode)
		}
		if i == 0 {
			first = body
		} else if body != first {
			t.Fatalf("poll %d answered differently:\n%s\n---\n%s", i, first, body)
		}
	}
	other := strings.Replace(homePollBody, `<A:displayname/>`, ``, 1)
	_, body := e.do("PROPFIND", "/dav/alice/calendars/", "alice", other, "Depth", "1")
	if strings.Contains(body, "displayname") {
		t.Fatalf("a body without displayname answered it:\n%s", body)
	}
}
