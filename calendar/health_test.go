package calendar_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
)

type healthReport struct {
	Users []struct {
		User    string `json:"user"`
		Devices []struct {
			UserAgent   string         `json:"user_agent"`
			Client      string         `json:"client"`
			LastKind    string         `json:"last_sync_kind"`
			LastReset   time.Time      `json:"last_token_reset"`
			Counts      map[string]int `json:"counts"`
			Collections map[string]struct {
				Kind string `json:"kind"`
				Seq  int64  `json:"token_seq"`
			} `json:"collections"`
			Behind []struct {
				Collection string `json:"collection"`
				DeviceSeq  int64  `json:"device_seq"`
				CurrentSeq int64  `json:"current_seq"`
			} `json:"behind"`
		} `json:"devices"`
	} `json:"users"`
}

func (e *env) health(user string) healthReport {
	e.t.Helper()
	resp, body := e.do("GET", "/admin/sync", user, "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		e.t.Fatalf("GET /admin/sync: %d %s", resp.StatusCode, body)
	}
	var rep healthReport
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		e.t.Fatalf("bad JSON: %v\n%s", err, body)
	}
	return rep
}

// TestSyncHealth: per user and device, the last sync and its kind, token
// resets, and which collections changed since the device last synced.
func TestSyncHealth(t *testing.T) {
	e := newEnv(t, envOptions{isAdmin: func(u string) bool { return u == "carol" }})
	e.seed()
	const coll = "/dav/alice/calendars/release-tasks/"
	phone := []string{"User-Agent", "iOS/18.1.1 (22B91) dataaccessd/1.0"}
	mac := []string{"User-Agent", "macOS/15.1 (24B83) CalendarAgent/1000"}

	e.do("PROPFIND", coll, "alice", fixture(t, "poll_calendar_propfind.xml"), append(phone, "Depth", "0")...)
	m := e.ms(e.do("REPORT", coll, "alice", syncBody(t, ""), phone...))
	e.do("REPORT", coll, "alice", syncBody(t, "bogus"), mac...)

	rep := e.health("alice")
	if len(rep.Users) != 1 || rep.Users[0].User != "alice" || len(rep.Users[0].Devices) != 2 {
		t.Fatalf("alice's report: %+v", rep)
	}
	for _, d := range rep.Users[0].Devices {
		switch d.Client {
		case "ios":
			if d.LastKind != "full" || d.Counts["poll"] != 1 || d.Counts["full"] != 1 || d.Collections["release-tasks"].Kind != "full" {
				t.Errorf("phone: %+v", d)
			}
			if len(d.Behind) != 0 {
				t.Errorf("phone behind before any change: %+v", d.Behind)
			}
		case "macos":
			if d.Counts["token_reset"] != 1 || d.LastReset.IsZero() {
				t.Errorf("mac: %+v", d)
			}
		default:
			t.Errorf("unexpected device %+v", d)
		}
	}

	// A new deadline arrives: the phone is now behind until it syncs.
	testsvc.Ingest(t, e.svc, bridge.TaskInput{ID: "T-9", Title: "New", Project: "Release", Assignees: []string{"alice"},
		UpdatedAt: e.now, Version: 1})
	for _, d := range e.health("alice").Users[0].Devices {
		if d.Client == "ios" && (len(d.Behind) != 1 || d.Behind[0].Collection != "release-tasks" || d.Behind[0].CurrentSeq <= d.Behind[0].DeviceSeq) {
			t.Errorf("phone should be behind on release-tasks: %+v", d.Behind)
		}
	}
	e.ms(e.do("REPORT", coll, "alice", syncBody(t, m.SyncToken), phone...))
	for _, d := range e.health("alice").Users[0].Devices {
		if d.Client == "ios" && (len(d.Behind) != 0 || d.LastKind != "incremental") {
			t.Errorf("phone after incremental sync: kind %s behind %+v", d.LastKind, d.Behind)
		}
	}

	// bob sees only himself; carol (admin) sees everyone.
	if rep := e.health("bob"); len(rep.Users) != 1 || rep.Users[0].User != "bob" || len(rep.Users[0].Devices) != 0 {
		t.Fatalf("bob's report: %+v", rep)
	}
	if rep := e.health("carol"); len(rep.Users) != 3 {
		t.Fatalf("admin report has %d users", len(rep.Users))
	}
	if resp, _ := e.do("GET", "/admin/sync", "", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("anonymous /admin/sync: %d", resp.StatusCode)
	}

	// And in metrics.
	reg := e.svc.Registry()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found, kinds := false, 0
	for _, mf := range mfs {
		if mf.GetName() == "duebridge_caldav_syncs_total" {
			kinds = len(mf.GetMetric())
		}
		if mf.GetName() == "duebridge_caldav_last_sync_timestamp_seconds" {
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				found = found || (labels["user"] == "alice" && labels["client"] == "ios" && m.GetGauge().GetValue() > 0)
			}
		}
	}
	if !found || kinds < 4 {
		t.Fatalf("metrics: last-sync gauge for alice's iOS device %v, %d sync kinds counted", found, kinds)
	}
}

// TestSyncHealthBound: over the real server, limits.sync_health_users
// keeps the users seen most recently; the one forgotten leaves
// /admin/sync and /metrics alike, and the note says what is kept.
func TestSyncHealthBound(t *testing.T) {
	e := newEnv(t, envOptions{isAdmin: func(u string) bool { return u == "carol" },
		config: func(c *config.Config) { c.Limits.SyncHealthUsers = 1 }})
	e.seed()
	phone := []string{"User-Agent", "iOS/18.1.1 (22B91) dataaccessd/1.0"}
	e.ms(e.do("REPORT", "/dav/alice/calendars/release-tasks/", "alice", syncBody(t, ""), phone...))
	e.ms(e.do("REPORT", "/dav/bob/calendars/release-tasks/", "bob", syncBody(t, ""), phone...))

	resp, body := e.do("GET", "/admin/sync", "carol", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /admin/sync: %d %s", resp.StatusCode, body)
	}
	var rep struct {
		Note  string `json:"note"`
		Users []struct {
			User    string            `json:"user"`
			Devices []json.RawMessage `json:"devices"`
		} `json:"users"`
	}
	if err := json.Unmarshal([]byte(body), &rep); err != nil {
		t.Fatal(err)
	}
	devices := map[string]int{}
	for _, u := range rep.Users {
		devices[u.User] = len(u.Devices)
	}
	if devices["alice"] != 0 || devices["bob"] != 1 || !strings.Contains(rep.Note, "for the 1 users seen most recently") {
		t.Fatalf("with room for one user: devices %v, note %q", devices, rep.Note)
	}

	mfs, err := e.svc.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			values[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if _, ok := values["duebridge_caldav_last_sync_timestamp_seconds,client=ios,user=alice"]; ok {
		t.Errorf("alice was forgotten but her last-sync series remains")
	}
	if values["duebridge_caldav_last_sync_timestamp_seconds,client=ios,user=bob"] == 0 ||
		values["duebridge_caldav_sync_health_users"] != 1 || values["duebridge_caldav_sync_health_evictions_total"] != 1 {
		t.Errorf("metrics: %v", values)
	}
}
