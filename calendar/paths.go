package calendar

import (
	"net/url"
	"strings"
)

// URL layout: the resource type follows from the number of segments below
// the prefix, as in go-webdav's caldav package and most CalDAV servers:
//
//	/dav/                                     root
//	/dav/<user>/                              principal
//	/dav/<user>/calendars/                    calendar home
//	/dav/<user>/calendars/<collection>/       calendar collection
//	/dav/<user>/calendars/<collection>/<name> calendar object
//
// Collection names come from render.CollectionNames ("<project>-tasks",
// "<project>-deadlines"), so none is ever called "default", a name iOS is
// reported to hide.
const (
	// Prefix is where the DAV tree is mounted.
	Prefix   = "/dav/"
	homeName = "calendars"
)

type kind int

const (
	kindUnknown    kind = iota
	kindServerRoot      // "/": iOS walks from the bare host
	kindRoot            // /dav/
	kindPrincipal
	kindHome
	kindCollection
	kindObject
)

// target is a parsed request path.
type target struct {
	kind             kind
	user, coll, name string
}

// parseTarget splits an escaped URL path. Segments are unescaped one by one,
// so "%2F" inside a name never splits it and "alice%40example.com" is the
// user "alice@example.com" (iOS escapes the @).
func parseTarget(escaped string) target {
	if escaped == "/" || escaped == "" {
		return target{kind: kindServerRoot}
	}
	rest, ok := strings.CutPrefix(escaped, strings.TrimSuffix(Prefix, "/"))
	if !ok || (rest != "" && rest[0] != '/') {
		return target{}
	}
	rest = strings.Trim(rest, "/")
	if rest == "" {
		return target{kind: kindRoot}
	}
	raw := strings.Split(rest, "/")
	segs := make([]string, len(raw))
	for i, s := range raw {
		u, err := url.PathUnescape(s)
		if err != nil || u == "" || u == "." || u == ".." || strings.ContainsAny(u, "/\x00") || len(u) > 255 {
			return target{}
		}
		segs[i] = u
	}
	t := target{user: segs[0]}
	switch {
	case len(segs) == 1:
		t.kind = kindPrincipal
	case segs[1] != homeName:
		return target{}
	case len(segs) == 2:
		t.kind = kindHome
	case len(segs) == 3:
		t.kind, t.coll = kindCollection, segs[2]
	case len(segs) == 4:
		t.kind, t.coll, t.name = kindObject, segs[2], segs[3]
	default:
		return target{}
	}
	return t
}

// hrefTarget parses an href from a request body: a path or an absolute URL.
func hrefTarget(href string) target {
	href = strings.TrimSpace(href)
	if plainPath(href) {
		return parseTarget(href) // what url.Parse(href).EscapedPath() gives
	}
	u, err := url.Parse(href)
	if err != nil {
		return target{}
	}
	return parseTarget(u.EscapedPath())
}

// plainPath reports whether href is an absolute path that url.Parse
// would return as it is (no escapes, query, fragment or authority): a
// multiget's hrefs, which need not pay for the parse.
func plainPath(href string) bool {
	if len(href) == 0 || href[0] != '/' || strings.HasPrefix(href, "//") {
		return false
	}
	for i := 0; i < len(href); i++ {
		c := href[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/@:+,;=!$&'()*", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

func esc(s string) string { return url.PathEscape(s) }

func principalHref(user string) string { return Prefix + esc(user) + "/" }
func homeHref(user string) string      { return principalHref(user) + homeName + "/" }
func collHref(user, coll string) string {
	return homeHref(user) + esc(coll) + "/"
}
func objHref(user, coll, name string) string { return collHref(user, coll) + esc(name) }

// href returns the canonical href of a target.
func (t target) href() string {
	switch t.kind {
	case kindServerRoot:
		return "/"
	case kindRoot:
		return Prefix
	case kindPrincipal:
		return principalHref(t.user)
	case kindHome:
		return homeHref(t.user)
	case kindCollection:
		return collHref(t.user, t.coll)
	case kindObject:
		return objHref(t.user, t.coll, t.name)
	}
	return ""
}
