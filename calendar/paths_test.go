package calendar

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
)

func TestParseTarget(t *testing.T) {
	cases := []struct {
		path string
		want target
	}{
		{"/", target{kind: kindServerRoot}},
		{"/dav", target{kind: kindRoot}},
		{"/dav/", target{kind: kindRoot}},
		{"/dav/alice/", target{kind: kindPrincipal, user: "alice"}},
		{"/dav/alice", target{kind: kindPrincipal, user: "alice"}},
		{"/dav/ana%40example.com/", target{kind: kindPrincipal, user: "ana@example.com"}},
		{"/dav/alice/calendars/", target{kind: kindHome, user: "alice"}},
		{"/dav/alice/calendars/release-tasks/", target{kind: kindCollection, user: "alice", coll: "release-tasks"}},
		{"/dav/alice/calendars/release-tasks/tracker-T-1.ics", target{kind: kindObject, user: "alice", coll: "release-tasks", name: "tracker-T-1.ics"}},
		{"/dav/alice/calendars/c/a%2Fb.ics", target{}}, // an encoded slash never splits a name into a path
		{"/dav/alice/other/", target{}},
		{"/dav/alice/calendars/c/o/extra", target{}},
		{"/dav/../etc/", target{}},
		{"/davx/alice/", target{}},
		{"/dav/alice/calendars/c/%ZZ", target{}},
	}
	for _, c := range cases {
		if got := parseTarget(c.path); got != c.want {
			t.Errorf("parseTarget(%q) = %+v, want %+v", c.path, got, c.want)
		}
	}
	if h := objHref("ana@example.com", "p-tasks", "a b.ics"); h != "/dav/ana@example.com/calendars/p-tasks/a%20b.ics" {
		t.Errorf("objHref = %q", h)
	}
	if got := hrefTarget("http://host:8080/dav/alice/calendars/p/x.ics"); got.kind != kindObject || got.name != "x.ics" {
		t.Errorf("absolute href: %+v", got)
	}
}

func TestTokens(t *testing.T) {
	tok := syncToken("abc123", 42)
	if seq, ok := parseToken("abc123", tok); !ok || seq != 42 {
		t.Fatalf("round trip: %d %v", seq, ok)
	}
	for _, bad := range []string{"", "42", tok + "x", syncToken("other", 42), "https://duebridge.invalid/sync/abc123/-1",
		"http://example.com/ns/sync/42"} {
		if _, ok := parseToken("abc123", bad); ok {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestETagList(t *testing.T) {
	h := http.Header{}
	h.Add("If-Match", `"a", W/"b"`)
	h.Add("If-Match", `c`)
	h.Add("If-Match", `*`)
	got := etagList(h.Values("If-Match"))
	if want := []string{`"a"`, `W/"b"`, `"c"`, `*`}; !slices.Equal(got, want) {
		t.Fatalf("etagList = %q, want %q", got, want)
	}
}

func TestEscapeText(t *testing.T) {
	got := escaped("a&b<c>\r\nd\x01\"")
	if want := "a&amp;b&lt;c&gt;&#13;\nd\uFFFD\""; got != want {
		t.Fatalf("escaped = %q, want %q", got, want)
	}
}

// TestHrefTargetPlainPath checks that hrefs taking the fast path parse as
// they do through url.Parse.
func TestHrefTargetPlainPath(t *testing.T) {
	for _, h := range []string{"/dav/alice/calendars/p-tasks/x.ics", "/dav/alice/calendars/p-tasks/a:b@c+d,e;f=g!$&'()*~.ics",
		"/dav/alice/calendars/", "/dav/", "/", "//host/dav/alice/", "/dav/alice%40example.com/calendars/x/y.ics",
		"/dav/alice/calendars/x/y z.ics", "/dav/alice/calendars/x/y.ics?q=1", "/dav/alice/calendars/x/y.ics#f",
		"http://h/dav/alice/calendars/x/y.ics", "/dav/alice/calendars/x/%zz", "/dav/alice/calendars/../x/y.ics"} {
		u, err := url.Parse(h)
		want := target{}
		if err == nil {
			want = parseTarget(u.EscapedPath())
		}
		if got := hrefTarget(h); got != want {
			t.Errorf("hrefTarget(%q) = %+v, want %+v", h, got, want)
		}
		if plainPath(h) && (err != nil || u.EscapedPath() != h) {
			t.Errorf("plainPath(%q), but url.Parse gives %q, %v", h, u.EscapedPath(), err)
		}
	}
}
