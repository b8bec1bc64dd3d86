package bridge

import "testing"

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
