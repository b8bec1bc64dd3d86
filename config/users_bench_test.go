package config

import (
	"bytes"
	"fmt"
	"testing"
)

// BenchmarkLoadUsers loads a config of 10,000 users (every common field
// set) and reports the cost per user; a 1,000,000-user file costs about
// 100 times this at start and on every reload.
func BenchmarkLoadUsers(b *testing.B) {
	const n = 10000
	y := bigConfig(n)
	b.SetBytes(int64(len(y)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := load("bench.yaml", y)
		if err != nil {
			b.Fatal(err)
		}
		if len(c.Users) != n {
			b.Fatalf("%d users", len(c.Users))
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/user")
}

// TestLoadUsersAllocations bounds what loading costs per user, in
// allocations (deterministic, unlike time): through viper's generic maps
// and mapstructure a user cost about 440, with a zone file read for each;
// from go-yaml's node tree about 185; read by the scanner about 55. The
// bound fails if the block form stops being scanned.
func TestLoadUsersAllocations(t *testing.T) {
	const n = 1000
	y := bigConfig(n)
	perUser := testing.AllocsPerRun(3, func() {
		if _, err := load("allocs.yaml", y); err != nil {
			t.Fatal(err)
		}
	}) / n
	if perUser > 100 {
		t.Errorf("loading %d users: %.0f allocations a user, want at most 100", n, perUser)
	}
	t.Logf("%.0f allocations a user", perUser)
}

// bigConfig is a config with n users in the plain block form (the form
// scanUsers reads), each with every commonly used field.
func bigConfig(n int) []byte {
	var b bytes.Buffer
	b.WriteString("sources:\n  - name: load\n    secret: 0123456789abcdef\nusers:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: \"user%07d\"\n    email: \"user%07d@example.com\"\n    password_hash: %q\n"+
			"    app_passwords:\n      - name: phone\n        hash: %q\n    notify: both\n    timezone: Europe/Berlin\n"+
			"    quiet_hours:\n      start: \"22:00\"\n      end: \"07:00\"\n      allow_urgent: true\n    digest: true\n"+
			"    lead_times:\n      - 15m\n    identities:\n      github: u%d\n", i, i, argonHash, argonHash, i)
	}
	return b.Bytes()
}

// BenchmarkUserByName looks up the last of 10,000 loaded users: every login
// and request does this, and a reload once per user of both configs.
func BenchmarkUserByName(b *testing.B) {
	c, err := load("bench.yaml", bigConfig(10000))
	if err != nil {
		b.Fatal(err)
	}
	name := c.Users[len(c.Users)-1].Name
	for b.Loop() {
		if c.User(name) == nil {
			b.Fatal("not found")
		}
	}
}

// TestUserByName: the index Load builds answers like a scan, also for a
// copy whose users were replaced or extended by hand.
func TestUserByName(t *testing.T) {
	c, err := load("t.yaml", bigConfig(3))
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Users {
		if u := c.User(c.Users[i].Name); u != &c.Users[i] {
			t.Errorf("User(%q) = %p, want users[%d]", c.Users[i].Name, u, i)
		}
	}
	if u := c.User("nobody"); u != nil {
		t.Errorf("User(nobody) = %+v", u)
	}
	cp := *c
	cp.Users = []User{{Name: "x"}, {Name: "y"}, {Name: "z"}} // same length, other users
	if u := cp.User("y"); u != &cp.Users[1] {
		t.Errorf("replaced users: User(y) = %p", u)
	}
	if u := cp.User(c.Users[0].Name); u != nil {
		t.Errorf("replaced users: the old first user is still found")
	}
	ext := *c
	ext.Users = append(ext.Users, User{Name: "late"})
	if u := ext.User("late"); u == nil || u.Name != "late" {
		t.Errorf("extended users: User(late) = %v", u)
	}
}
