package bridge

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestClientKey(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", ""},
		{"192.0.2.1:993", "192.0.2.1"},
		{"192.0.2.1", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:443", "fe80::/64"},
		{"@", "@"}, // a unix socket's address: used as it is
	} {
		if got := clientKey(c.in); got != c.want {
			t.Errorf("clientKey(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// Failure records are kept under the user name as sent; a client could
// send names of an HTTP header's or an IMAP literal's size, and up to
// maxGuardKeys records of them stayed in memory. Names longer than any
// user's are kept under a bounded prefix.
func TestGuardKeysBounded(t *testing.T) {
	g := newGuard(nil)
	lim := limits{failures: 10, window: time.Hour}
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	long := strings.Repeat("x", 1<<20)
	for i := range 20 {
		g.failure(long+strconv.Itoa(i), "192.0.2.1", attempt{}, now, lim)
	}
	for k := range g.keys {
		if len(k) > 2+maxKeyName {
			t.Fatalf("a failure record is kept under a key of %d bytes", len(k))
		}
	}
	// The over-long names share one record: it is locked like any other.
	if _, locked := g.locked(long+"x", "", now); !locked {
		t.Error("over-long names are not locked out after repeated failures")
	}
	// A real user name is unaffected.
	if _, locked := g.locked("alice", "", now); locked {
		t.Error("alice locked by failures of other names")
	}
}
