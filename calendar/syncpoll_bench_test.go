package calendar_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/render"
)

// phoneSyncBody and phoneMultigetBody are what the load tool's phones
// send (cmd/duebridge-load/dav.go, modelled on iOS).
func phoneSyncBody(token string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<A:sync-collection xmlns:A="DAV:">` + "\n  <A:sync-token>" + token +
		"</A:sync-token>\n  <A:sync-level>1</A:sync-level>\n" +
		"  <A:prop>\n    <A:getetag/>\n    <A:getcontenttype/>\n  </A:prop>\n</A:sync-collection>\n"
}

func phoneMultigetBody(hrefs []string) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<B:calendar-multiget xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav">` + "\n" +
		"  <A:prop>\n    <A:getetag/>\n    <B:calendar-data/>\n    <B:schedule-tag/>\n  </A:prop>\n")
	for _, h := range hrefs {
		b.WriteString("  <A:href>" + h + "</A:href>\n")
	}
	b.WriteString("</B:calendar-multiget>\n")
	return b.String()
}

// phoneSync is the server side of a phone's poll that found a changed
// list: the sync-collection REPORT from its last token (three changes in
// a list of 200) and the calendar-multiget of the changed hrefs, each as
// the phones send it (Prefer: return=minimal, Brief: t, a device
// password), straight into the handler.
type phoneSync struct {
	e        *env
	h        http.Handler
	pw       string
	sync     string
	multiget string
	w        *pollWriter
	body     *strings.Reader
}

const phoneSyncColl = "/dav/alice/calendars/bench-tasks/"

func newPhoneSync(tb testing.TB) *phoneSync {
	e := newEnv(tb, envOptions{})
	fill(tb, e, "bench-tasks", 200)
	_, pw, err := e.svc.IssueDevicePassword(context.Background(), "alice", "iPhone")
	if err != nil {
		tb.Fatal(err)
	}
	p := &phoneSync{e: e, h: e.srv.Config.Handler, pw: pw, w: &pollWriter{h: http.Header{}}, body: strings.NewReader("")}
	_, full := e.do("REPORT", phoneSyncColl, "alice", phoneSyncBody(""), "Depth", "1")
	tok := syncTokenOf(tb, []byte(full))
	var hrefs []string
	for _, i := range []int{10, 50, 150} {
		touch(tb, e, "bench-tasks", i)
		hrefs = append(hrefs, phoneSyncColl+render.ObjectName("tracker", fmt.Sprintf("B-%06d", i)))
	}
	p.sync = phoneSyncBody(tok)
	p.multiget = phoneMultigetBody(hrefs)
	return p
}

// do sends one REPORT and returns the answer's status and size.
func (p *phoneSync) do(tb testing.TB, body, depth string, w http.ResponseWriter) {
	p.body.Reset(body)
	req := httptest.NewRequest("REPORT", phoneSyncColl, io.NopCloser(p.body))
	req.SetBasicAuth("alice", p.pw)
	if depth != "" {
		req.Header.Set("Depth", depth)
	}
	req.Header.Set("Content-Type", "text/xml; charset=utf-8")
	req.Header.Set("Prefer", "return=minimal")
	req.Header.Set("Brief", "t")
	req.Header.Set("Accept", "*/*")
	req.Header.Set("User-Agent", "iOS/18.1.1 (22B91) dataaccessd/1.0")
	p.h.ServeHTTP(w, req)
}

func (p *phoneSync) run(tb testing.TB, body, depth string) {
	clear(p.w.h)
	p.w.status, p.w.n = 0, 0
	p.do(tb, body, depth, p.w)
	if p.w.status != http.StatusMultiStatus {
		tb.Fatalf("REPORT: HTTP %d", p.w.status)
	}
}

// BenchmarkPhoneSyncHandler is the server's own part of the two requests
// a poll that found a changed list adds: sync-collection and the
// calendar-multiget of the three changed objects.
func BenchmarkPhoneSyncHandler(b *testing.B) {
	p := newPhoneSync(b)
	b.Run("sync-collection", func(b *testing.B) {
		p.run(b, p.sync, "1")
		loopCPU(b, func() { p.run(b, p.sync, "1") })
	})
	b.Run("multiget", func(b *testing.B) {
		p.run(b, p.multiget, "")
		loopCPU(b, func() { p.run(b, p.multiget, "") })
	})
	// after-change is the pair as a phone meets it: the three objects
	// change again before each pair (the write is left out of the
	// figures), so the multiget finds none of them cached.
	b.Run("after-change", func(b *testing.B) {
		b.ReportAllocs()
		var cpu time.Duration
		n := 0
		for b.Loop() {
			b.StopTimer()
			for _, i := range []int{10, 50, 150} {
				touch(b, p.e, "bench-tasks", i)
			}
			b.StartTimer()
			c0 := cpuTime()
			p.run(b, p.sync, "1")
			p.run(b, p.multiget, "")
			cpu += cpuTime() - c0
			n++
		}
		b.ReportMetric(float64(cpu)/float64(max(n, 1)), "cpu-ns/op")
	})
}
