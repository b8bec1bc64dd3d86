package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"
)

// The request bodies iOS sends (shared/IOS.md §1.3 and §2, from Apple's own
// client simulator and server-side dumps of iOS/macOS requests).

// homePropfindBody is the calendar-home Depth:1 PROPFIND iOS sends on every
// poll: about 38 properties, most of which a bridge answers 404.
const homePropfindBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:propfind xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav" xmlns:C="http://calendarserver.org/ns/" xmlns:D="http://apple.com/ns/ical/" xmlns:E="http://me.com/_namespace/">
  <A:prop>
    <A:add-member/>
    <C:allowed-sharing-modes/>
    <D:autoprovisioned/>
    <E:bulk-requests/>
    <B:calendar-alarm/>
    <D:calendar-color/>
    <B:calendar-description/>
    <B:calendar-free-busy-set/>
    <D:calendar-order/>
    <B:calendar-timezone/>
    <A:current-user-privilege-set/>
    <B:default-alarm-vevent-date/>
    <B:default-alarm-vevent-datetime/>
    <A:displayname/>
    <C:getctag/>
    <C:invite/>
    <D:language-code/>
    <D:location-code/>
    <A:owner/>
    <C:pre-publish-url/>
    <C:publish-url/>
    <C:push-transports/>
    <C:pushkey/>
    <A:quota-available-bytes/>
    <A:quota-used-bytes/>
    <D:refreshrate/>
    <A:resource-id/>
    <A:resourcetype/>
    <B:schedule-calendar-transp/>
    <B:schedule-default-calendar-URL/>
    <C:source/>
    <C:subscribed-strip-alarms/>
    <C:subscribed-strip-attachments/>
    <C:subscribed-strip-todos/>
    <B:supported-calendar-component-set/>
    <B:supported-calendar-component-sets/>
    <A:supported-report-set/>
    <A:sync-token/>
  </A:prop>
</A:propfind>
`

// homePropfindBodyBytes is homePropfindBody made []byte once, not per poll.
var homePropfindBodyBytes = []byte(homePropfindBody)

const principalPropfindBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:propfind xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav">
  <A:prop>
    <B:calendar-home-set/>
    <A:current-user-principal/>
    <A:displayname/>
    <A:principal-URL/>
  </A:prop>
</A:propfind>
`

const wellKnownBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:propfind xmlns:A="DAV:">
  <A:prop>
    <A:current-user-principal/>
    <A:principal-URL/>
    <A:resourcetype/>
  </A:prop>
</A:propfind>
`

func syncBody(token string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<A:sync-collection xmlns:A="DAV:">` + "\n  <A:sync-token>")
	xml.EscapeText(&b, []byte(token))
	b.WriteString("</A:sync-token>\n  <A:sync-level>1</A:sync-level>\n" +
		"  <A:prop>\n    <A:getetag/>\n    <A:getcontenttype/>\n  </A:prop>\n</A:sync-collection>\n")
	return b.Bytes()
}

func multigetBody(hrefs []string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<B:calendar-multiget xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav">` + "\n" +
		"  <A:prop>\n    <A:getetag/>\n    <B:calendar-data/>\n    <B:schedule-tag/>\n  </A:prop>\n")
	for _, h := range hrefs {
		b.WriteString("  <A:href>")
		xml.EscapeText(&b, []byte(h))
		b.WriteString("</A:href>\n")
	}
	b.WriteString("</B:calendar-multiget>\n")
	return b.Bytes()
}

func mkcalendarBody(display, comp string) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<B:mkcalendar xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav"><A:set><A:prop><A:displayname>`)
	xml.EscapeText(&b, []byte(display))
	b.WriteString(`</A:displayname><B:supported-calendar-component-set><B:comp name="`)
	xml.EscapeText(&b, []byte(comp))
	b.WriteString(`"/></B:supported-calendar-component-set></A:prop></A:set></B:mkcalendar>`)
	return b.Bytes()
}

// multistatus is the part of a 207 answer the load tool reads.
type multistatus struct {
	Responses []msResponse `xml:"DAV: response"`
	SyncToken string       `xml:"DAV: sync-token"`
}

type msResponse struct {
	Href      string       `xml:"DAV: href"`
	Status    string       `xml:"DAV: status"`
	Propstats []msPropstat `xml:"DAV: propstat"`
}

type msPropstat struct {
	Status string `xml:"DAV: status"`
	Prop   msProp `xml:"DAV: prop"`
}

type msProp struct {
	GetCTag      string `xml:"http://calendarserver.org/ns/ getctag"`
	SyncToken    string `xml:"DAV: sync-token"`
	ETag         string `xml:"DAV: getetag"`
	CalendarData string `xml:"urn:ietf:params:xml:ns:caldav calendar-data"`
	ResourceType struct {
		Calendar *struct{} `xml:"urn:ietf:params:xml:ns:caldav calendar"`
	} `xml:"DAV: resourcetype"`
	CompSet struct {
		Comps []struct {
			Name string `xml:"name,attr"`
		} `xml:"urn:ietf:params:xml:ns:caldav comp"`
	} `xml:"urn:ietf:params:xml:ns:caldav supported-calendar-component-set"`
	Principal struct {
		Href string `xml:"DAV: href"`
	} `xml:"DAV: current-user-principal"`
	Home struct {
		Href string `xml:"DAV: href"`
	} `xml:"urn:ietf:params:xml:ns:caldav calendar-home-set"`
}

// ok reports whether a propstat or response status line is 2xx.
// It is strings.Fields(s)[1] starting with "2", without the slice: the
// home poll checks one per propstat.
func statusOK(s string) bool {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	i := strings.IndexFunc(s, unicode.IsSpace)
	if i < 0 {
		return false
	}
	return strings.HasPrefix(strings.TrimLeftFunc(s[i:], unicode.IsSpace), "2")
}

// davClient is a CalDAV client with Basic credentials, one per simulated
// device or worker (they may share a transport).
type davClient struct {
	hc         *http.Client
	base       *url.URL // scheme and host
	user, pass string
	authz      string
	ua         string
	// onTLS, if set, sees each response's TLS state (nil over plain HTTP).
	onTLS func(*tls.ConnectionState)
	// ios and minimal send headers iOS sends on every DAV request (IOS.md
	// §1.1) that change the server's work: Connection: close (ios), and
	// Prefer: return=minimal and Brief: t (minimal).
	ios, minimal bool
}

// ErrInvalidToken is a 403 (or 409/412) on sync-collection: the client
// starts over from an empty token, as Apple's does.
var ErrInvalidToken = errors.New("sync token refused")

type httpStatusError struct {
	method, path string
	code         int
	body         string
}

func (e *httpStatusError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d %s", e.method, e.path, e.code, strings.TrimSpace(e.body))
}

func newTransport(maxConns int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        maxConns,
		MaxIdleConnsPerHost: maxConns,
		IdleConnTimeout:     60 * time.Second,
		DisableCompression:  true,
	}
}

func newDAVClient(base *url.URL, tr http.RoundTripper, user, pass string) *davClient {
	c := &davClient{
		hc: &http.Client{Transport: tr, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		base: base, user: user, pass: pass,
		ua: "iOS/18.1.1 (22B91) dataaccessd/1.0 duebridge-load",
	}
	if user != "" {
		c.authz = "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	return c
}

// do sends one request and reads the whole answer. Redirects are returned,
// not followed (Go would turn a PROPFIND into a GET).
func (c *davClient) do(ctx context.Context, method, path, depth string, body []byte, hdr ...string) (int, http.Header, []byte, error) {
	var buf bytes.Buffer
	code, h, err := c.doInto(ctx, &buf, method, path, depth, body, hdr...)
	if err != nil && code == 0 {
		return 0, nil, nil, err
	}
	if err != nil {
		return code, h, nil, err
	}
	return code, h, buf.Bytes(), nil
}

// answerBufs holds the buffers the answers of polls are read into: the
// home answer (16-22 KB) read by io.ReadAll cost the load tool about
// twice its size in garbage per poll, which a phone does not pay on the
// server's cores.
var answerBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// pooledAnswer is a buffer from answerBufs and what gives it back; the
// answer must not be used after that.
func pooledAnswer() (*bytes.Buffer, func()) {
	buf := answerBufs.Get().(*bytes.Buffer)
	buf.Reset()
	return buf, func() {
		if buf.Cap() <= 1<<20 { // a rare huge answer is not kept
			answerBufs.Put(buf)
		}
	}
}

// doInto is do reading the answer's body into buf (appended).
func (c *davClient) doInto(ctx context.Context, buf *bytes.Buffer, method, path, depth string, body []byte, hdr ...string) (int, http.Header, error) {
	u := *c.base
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	u.Path = ""
	u.RawPath = ""
	target := u.String() + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		if strings.HasPrefix(method, "PUT") {
			req.Header.Set("Content-Type", "text/calendar; charset=utf-8")
		} else {
			req.Header.Set("Content-Type", "text/xml; charset=utf-8")
		}
	}
	if depth != "" {
		req.Header.Set("Depth", depth)
	}
	req.Header.Set("User-Agent", c.ua)
	req.Header.Set("Accept", "*/*")
	if c.authz != "" {
		req.Header.Set("Authorization", c.authz)
	}
	req.Close = c.ios
	if c.minimal {
		req.Header.Set("Prefer", "return=minimal")
		req.Header.Set("Brief", "t")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if c.onTLS != nil {
		c.onTLS(resp.TLS)
	}
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return resp.StatusCode, resp.Header, err
	}
	return resp.StatusCode, resp.Header, nil
}

func (c *davClient) multistatus(ctx context.Context, method, path, depth string, body []byte) (*multistatus, error) {
	buf, release := pooledAnswer()
	defer release() // encoding/xml copies what it keeps
	code, _, err := c.doInto(ctx, buf, method, path, depth, body)
	if err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if code != http.StatusMultiStatus {
		if method == "REPORT" && (code == 403 || code == 409 || code == 412) && bytes.Contains(body, []byte("sync-collection")) {
			return nil, ErrInvalidToken
		}
		return nil, &httpStatusError{method, path, code, truncate(string(b), 200)}
	}
	var ms multistatus
	if err := xml.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("%s %s: parse multistatus: %w", method, path, err)
	}
	return &ms, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// hrefPath turns an href (absolute path or URL) into a path.
func hrefPath(h string) string {
	h = strings.TrimSpace(h)
	if strings.HasPrefix(h, "http://") || strings.HasPrefix(h, "https://") {
		if u, err := url.Parse(h); err == nil {
			return u.EscapedPath()
		}
	}
	return h
}

// discover walks from /.well-known/caldav (or the server root) to the
// principal and the calendar home, as iOS does; it returns the home path.
func (c *davClient) discover(ctx context.Context) (string, error) {
	path := "/.well-known/caldav"
	var principal string
	for hops := 0; hops < 5 && principal == ""; hops++ {
		code, h, b, err := c.do(ctx, "PROPFIND", path, "0", []byte(wellKnownBody))
		if err != nil {
			return "", err
		}
		switch {
		case code >= 300 && code < 400:
			loc := h.Get("Location")
			if loc == "" {
				return "", fmt.Errorf("redirect from %s without Location", path)
			}
			path = hrefPath(loc)
			continue
		case code == http.StatusMultiStatus:
			var ms multistatus
			if err := xml.Unmarshal(b, &ms); err != nil {
				return "", err
			}
			for _, r := range ms.Responses {
				for _, ps := range r.Propstats {
					if statusOK(ps.Status) && ps.Prop.Principal.Href != "" {
						principal = hrefPath(ps.Prop.Principal.Href)
					}
				}
			}
			if principal == "" && path != "/" {
				path = "/"
				continue
			}
		case path != "/":
			path = "/" // no well-known: walk from the root like iOS does
			continue
		default:
			return "", &httpStatusError{"PROPFIND", path, code, truncate(string(b), 200)}
		}
		if principal == "" {
			return "", errors.New("no current-user-principal in the answer")
		}
	}
	if principal == "" {
		return "", errors.New("discovery: too many redirects")
	}
	ms, err := c.multistatus(ctx, "PROPFIND", principal, "0", []byte(principalPropfindBody))
	if err != nil {
		return "", err
	}
	for _, r := range ms.Responses {
		for _, ps := range r.Propstats {
			if statusOK(ps.Status) && ps.Prop.Home.Href != "" {
				return hrefPath(ps.Prop.Home.Href), nil
			}
		}
	}
	return "", fmt.Errorf("principal %s has no calendar-home-set", principal)
}

// collection is one calendar in a home listing.
type collection struct {
	Path  string
	CTag  string
	Token string
	Comp  string // VTODO or VEVENT (the first component of the set)
}

// homeDepth1 is the iOS home poll: PROPFIND Depth 1 with the ~38-property
// body; the answer must be a 207 (parsed by parseHome).
func (c *davClient) homeDepth1(ctx context.Context, home string) ([]collection, error) {
	buf, release := pooledAnswer()
	defer release() // parseHome copies what it keeps
	code, _, err := c.doInto(ctx, buf, "PROPFIND", home, "1", homePropfindBodyBytes)
	if err != nil {
		return nil, err
	}
	b := buf.Bytes()
	if code != http.StatusMultiStatus {
		return nil, &httpStatusError{"PROPFIND", home, code, truncate(string(b), 200)}
	}
	cols, err := parseHome(b)
	if err != nil {
		return nil, fmt.Errorf("PROPFIND %s: %w", home, err)
	}
	return cols, nil
}

// syncResult is what one sync-collection REPORT returned.
type syncResult struct {
	Changed []string // hrefs with a 200 (new or changed)
	Removed int
	Token   string
}

func (c *davClient) syncCollection(ctx context.Context, coll, token string) (*syncResult, error) {
	ms, err := c.multistatus(ctx, "REPORT", coll, "1", syncBody(token))
	if err != nil {
		return nil, err
	}
	res := &syncResult{Token: ms.SyncToken}
	for _, r := range ms.Responses {
		p := hrefPath(r.Href)
		if strings.HasSuffix(p, "/") && strings.TrimSuffix(p, "/") == strings.TrimSuffix(coll, "/") {
			continue // the collection itself
		}
		if r.Status != "" && strings.Contains(r.Status, " 404") {
			res.Removed++
			continue
		}
		ok := len(r.Propstats) == 0 && statusOK(r.Status)
		for _, ps := range r.Propstats {
			if statusOK(ps.Status) {
				ok = true
			}
		}
		if ok {
			res.Changed = append(res.Changed, p)
		}
	}
	return res, nil
}

// multiget fetches hrefs in one calendar-multiget; it returns the objects
// (href → calendar data) that came back with data.
func (c *davClient) multiget(ctx context.Context, coll string, hrefs []string) (map[string]string, error) {
	ms, err := c.multistatus(ctx, "REPORT", coll, "", multigetBody(hrefs))
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(ms.Responses))
	for _, r := range ms.Responses {
		for _, ps := range r.Propstats {
			if statusOK(ps.Status) && ps.Prop.CalendarData != "" {
				out[hrefPath(r.Href)] = ps.Prop.CalendarData
			}
		}
	}
	if len(out) < len(hrefs) {
		return out, fmt.Errorf("multiget %s: %d of %d objects came back", coll, len(out), len(hrefs))
	}
	return out, nil
}
