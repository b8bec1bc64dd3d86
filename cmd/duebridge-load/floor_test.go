package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// TestMain lets this test binary be the Go floor server too: --floor go
// starts os.Executable() with floorServeCmd, as the load tool does itself.
func TestMain(m *testing.M) {
	floorServeMain(os.Args)
	os.Exit(m.Run())
}

// TestFloorEndToEnd runs the phones mode briefly with --floor against both
// floors: the answer is recorded from a real duebridge, the floor answers
// it to the byte on a full and a resumed handshake, returning phones
// resume their TLS sessions, and every scheduled poll completes without
// errors against the floor's process (its CPU measured apart).
func TestFloorEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts duebridge and the floors")
	}
	ctx, bin := testServer(t)
	for _, kind := range []string{"go", "haproxy"} {
		t.Run(kind, func(t *testing.T) {
			if kind == "haproxy" {
				if _, err := os.Stat("/usr/sbin/haproxy"); err != nil {
					t.Skip("no HAProxy at /usr/sbin/haproxy")
				}
			}
			o, err := parseFlags([]string{"--bin", bin, "--hash", "bcrypt-min", "--quiet", "--phones", "40", "--phone-users", "40",
				"--phone-rate", "40", "--duration", "2s", "--tls", "--device-passwords", "--returning", "10", "--floor", kind, "--max-time", "1m"})
			if err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			rep, err := run(ctx, o, &logs)
			if err != nil {
				t.Fatalf("%v\n%s", err, logs.String())
			}
			var out bytes.Buffer
			rep.print(&out)
			t.Log(out.String())
			label := "floor " + kind + ": "
			fig := func(name string) float64 {
				t.Helper()
				v, ok := rep.Fig(name)
				if !ok {
					t.Fatalf("no figure %q in the report", name)
				}
				return v
			}
			if !strings.HasPrefix(rep.Target, "https://127.0.0.1:") || strings.Contains(logs.String(), rep.Target+" imap") {
				t.Errorf("report's target %q: want the floor's, not duebridge's", rep.Target)
			}
			if n := fig("floor: recorded home answer (body)"); n < 5000 {
				t.Errorf("recorded answer of %.0f bytes: want a home of 10 lists", n)
			}
			if n := fig("floor: check polls answered the recording to the byte"); n != 2 {
				t.Errorf("%.0f check polls answered the recording, want 2", n)
			}
			if n := fig("floor: check polls resumed (the second should)"); n != 1 {
				t.Errorf("%.0f check polls resumed, want 1", n)
			}
			if n := fig("returning polls that resumed"); n != 10 {
				t.Errorf("%.0f of 10 returning polls resumed their TLS session", n)
			}
			poll := rep.Op(label + "phone poll (PROPFIND + syncs + multigets)")
			if poll.Count < 78 || poll.Errors != 0 {
				t.Errorf("timed phase: %d polls completed, %d failed; want ≥ 78 of 80 scheduled, none failed", poll.Count, poll.Errors)
			}
			if cpu := fig(label + "timed phase: server CPU per phone poll"); cpu <= 0 {
				t.Errorf("floor's CPU per poll %.3f ms: the floor process was not measured", cpu)
			}
			// The verdict itself depends on the machine's load; that there
			// is one, named for the floor, does not.
			if !strings.Contains(strings.Join(rep.Notes, "\n"), "phones: "+label) {
				t.Errorf("no verdict for the floor in %q", rep.Notes)
			}
		})
	}
}
