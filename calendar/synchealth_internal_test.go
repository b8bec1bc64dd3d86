package calendar

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/duebridge/duebridge/internal/fakeclock"
)

const phoneUA = "iOS/18.1.1 (22B91) dataaccessd/1.0"

// lists are a user's ten collections, named afresh per user as a store
// read returns them.
func lists(n int) []Collection {
	c := make([]Collection, n)
	for i := range c {
		c[i] = Collection{Name: fmt.Sprintf("project-%d-tasks", i), Todos: true, Seq: int64(i + 1)}
	}
	return c
}

// TestSyncHealthForgetsLeastRecentlySeen: past limits.sync_health_users
// the user seen least recently is forgotten, with its last-sync series,
// and the metrics say so. Without the bound a million phones kept a
// million records and a million series.
func TestSyncHealthForgetsLeastRecentlySeen(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := fakeclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	limit := 3
	h := newSyncHealth(reg, clk.Now, func() int { return limit })
	series := func(user string) int { // "" counts every user's
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, mf := range mfs {
			if mf.GetName() != "duebridge_caldav_last_sync_timestamp_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "user" && (user == "" || l.GetValue() == user) {
						n++
					}
				}
			}
		}
		return n
	}
	sync := func(user, ua string) {
		clk.Advance(time.Minute)
		h.synced(user, ua, "tasks", syncIncremental, 7, 1)
	}
	sync("u0", phoneUA)
	sync("u1", phoneUA)
	sync("u1", "macOS/15.1 (24B83) CalendarAgent/1000") // a second client family
	sync("u2", phoneUA)
	clk.Advance(time.Minute)
	h.poll("u0", phoneUA, lists(2)...) // u0 seen again: u1 is now the least recent
	if n := series("u1"); n != 2 {
		t.Fatalf("u1 has %d last-sync series before eviction, want 2", n)
	}
	sync("u3", phoneUA)

	if _, ok := h.users["u1"]; ok || len(h.users) != 3 {
		t.Fatalf("kept %d users, u1 kept %v; want u0, u2, u3", len(h.users), ok)
	}
	for _, u := range []string{"u0", "u2", "u3"} {
		if h.users[u] == nil || series(u) != 1 {
			t.Errorf("%s: kept %v, %d series", u, h.users[u] != nil, series(u))
		}
	}
	if n := series("u1"); n != 0 {
		t.Errorf("evicted u1 still has %d last-sync series", n)
	}
	if got := testutil.ToFloat64(h.kept); got != 3 {
		t.Errorf("duebridge_caldav_sync_health_users = %v, want 3", got)
	}
	if got := testutil.ToFloat64(h.evictions); got != 1 {
		t.Errorf("duebridge_caldav_sync_health_evictions_total = %v, want 1", got)
	}

	// A reload lowers the bound: the next new user makes room down to it.
	limit = 2
	sync("u4", phoneUA)
	if len(h.users) != 2 || h.users["u3"] == nil || h.users["u4"] == nil {
		t.Fatalf("after lowering the bound to 2: %d users, u3 %v u4 %v", len(h.users), h.users["u3"] != nil, h.users["u4"] != nil)
	}
	if got := testutil.ToFloat64(h.evictions); got != 3 {
		t.Errorf("evictions = %v, want 3", got)
	}
	if got := series(""); got != 2 {
		t.Errorf("%d last-sync series, want 2 (one per kept user)", got)
	}
	// The recency list and the map agree.
	n := 0
	for u := h.head; u != nil; u = u.next {
		if h.users[u.name] != u {
			t.Fatalf("list holds %s, map does not", u.name)
		}
		n++
	}
	if n != len(h.users) || h.head.name != "u4" || h.tail.name != "u3" {
		t.Fatalf("recency list: %d entries, head %s, tail %s", n, h.head.name, h.tail.name)
	}
}

// maxHealthBytesPerUser bounds what one user's sync health costs with ten
// lists and one phone (a home poll, a sync of one list), its last-sync
// series included: 2,657 bytes when times were time.Time, counts a map,
// lists a map of pointers and every request's User-Agent and list names
// kept; 1,145 with times in Unix nanoseconds and a gauge series per user
// (~420 of it); ~516 with times in seconds after the start and the series
// read from the records when scraped.
const maxHealthBytesPerUser = 600

// heapPerUser is the heap the records of users users hold, each with ten
// lists polled once and the first synced lists synced once, with fresh
// strings as requests bring them.
func heapPerUser(users, synced int) int64 {
	clk := fakeclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	h := newSyncHealth(prometheus.NewRegistry(), clk.Now, func() int { return users })
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range users {
		// Made here, as each request makes them: what the records keep
		// of them counts, the rest is garbage the GC below frees.
		name, colls, ua := fmt.Sprintf("user-%06d", i), lists(10), strings.Clone(phoneUA)
		h.poll(name, ua, colls...)
		for _, c := range colls[:synced] {
			h.synced(name, ua, c.Name, syncIncremental, 1, 0)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(h)
	return (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(users)
}

// TestSyncHealthMemoryPerUser measures the heap a user's record holds,
// over 10,000 users.
func TestSyncHealthMemoryPerUser(t *testing.T) {
	per := heapPerUser(10000, 1)
	t.Logf("sync health: %d heap bytes per user (10 lists, one device)", per)
	if per > maxHealthBytesPerUser {
		t.Fatalf("%d heap bytes per user, want at most %d", per, maxHealthBytesPerUser)
	}
}

// BenchmarkSyncHealthMemory reports the heap bytes per user (B/user) of
// 20,000 users with ten lists and one phone: polled once, and polled and
// every list synced (as iOS does on its first sync).
func BenchmarkSyncHealthMemory(b *testing.B) {
	for _, c := range []struct {
		name   string
		synced int
	}{{"polled", 0}, {"synced", 10}} {
		b.Run(c.name, func(b *testing.B) {
			var per int64
			for b.Loop() {
				per = heapPerUser(20000, c.synced)
			}
			b.ReportMetric(float64(per), "B/user")
		})
	}
}

// TestSyncHealthPollAllocatesNothing: a repeated poll, on every phone's
// path, allocates nothing.
func TestSyncHealthPollAllocatesNothing(t *testing.T) {
	h := newSyncHealth(prometheus.NewRegistry(), time.Now, func() int { return 0 })
	colls := lists(10)
	h.poll("alice", phoneUA, colls...)
	if n := testing.AllocsPerRun(100, func() { h.poll("alice", phoneUA, colls...) }); n != 0 {
		t.Fatalf("a repeated poll allocates %v times", n)
	}
}

// BenchmarkSyncHealthPoll is the sync-health part of a home poll over ten
// lists, among 10,000 remembered users.
func BenchmarkSyncHealthPoll(b *testing.B) {
	h := newSyncHealth(prometheus.NewRegistry(), time.Now, func() int { return 0 })
	const users = 10000
	names := make([]string, users)
	colls := lists(10)
	for i := range names {
		names[i] = fmt.Sprintf("user-%06d", i)
		h.poll(names[i], phoneUA, colls...)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		h.poll(names[i%users], phoneUA, colls...)
		i++
	}
}

// TestLastSyncSeriesAcrossServers: servers built on one registry share the
// last-sync metric; a user both have seen is one series per client family,
// with the later sync, and a device's time is its sync's to the second.
func TestLastSyncSeriesAcrossServers(t *testing.T) {
	reg := prometheus.NewRegistry()
	clk := fakeclock.New(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	a := newSyncHealth(reg, clk.Now, func() int { return 0 })
	b := newSyncHealth(reg, clk.Now, func() int { return 0 })
	a.synced("ana", phoneUA, "tasks", syncFull, 3, 1)
	clk.Advance(90*time.Second + 400*time.Millisecond)
	b.synced("ana", phoneUA, "tasks", syncIncremental, 4, 1)
	b.synced("bo", phoneUA, "tasks", syncFull, 4, 1)
	a.poll("cy", phoneUA, lists(1)...) // polled, never synced: no series

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "duebridge_caldav_last_sync_timestamp_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			got[l["user"]+"/"+l["client"]] = m.GetGauge().GetValue()
		}
	}
	later := float64(clk.Now().Unix())
	if len(got) != 2 || got["ana/ios"] != later || got["bo/ios"] != later {
		t.Fatalf("series %v, want ana/ios and bo/ios at %v", got, later)
	}
}

// BenchmarkLastSyncScrape is the last-sync gauge's part of a /metrics
// scrape at 100,000 synced users: the walk over the records, under the lock
// a poll's health record waits for, then the series sent.
func BenchmarkLastSyncScrape(b *testing.B) {
	h := newSyncHealth(prometheus.NewRegistry(), time.Now, func() int { return 0 })
	for i := range 100000 {
		h.synced(fmt.Sprintf("user-%06d", i), phoneUA, "tasks", syncIncremental, 3, 1)
	}
	m := &lastSyncMetric{desc: prometheus.NewDesc("last_sync", "", []string{"user", "client"}, nil)}
	m.add(h)
	ch := make(chan prometheus.Metric, 1024)
	done := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		done <- n
	}()
	for b.Loop() {
		m.Collect(ch)
	}
	close(ch)
	<-done
}
