// Package iphone is a model of an iPhone's CalDAV and IMAP accounts for
// tests. It behaves like the phone, not like a client library: it discovers
// from the bare host with iOS's requests and headers, polls the home with
// iOS's Depth 1 body, syncs changed collections with sync-collection (a
// refused token means a full resync) and calendar-multiget in batches of 50,
// keeps a local copy and follows the ETag rule of RFC 4791 §5.3.4 (a write
// answer without ETag means "fetch it again"). It completes and reopens
// reminders the way Reminders writes them, and it says what the person
// holding the phone sees: the notifications the Reminders and Calendar apps
// fire on a virtual clock, the priority marks of each reminder, and the Mail
// list read through iOS's header FETCH, parsed strictly.
//
// The request bodies and headers are those of /work/shared/IOS.md (§1–§5,
// §9, §12); where iOS's exact bytes are not captured it uses Apple's own
// client model of the same CoreDAV stack.
package iphone

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// Phone is one iPhone with one CalDAV account (Calendar and Reminders) and
// one IMAP account (Mail) for User.
type Phone struct {
	Base     string // http(s)://host:port, the bare host the user typed
	User     string
	Password string
	IMAPAddr string // host:port of the IMAP listener
	Client   *http.Client

	principal string
	home      string
	colls     map[string]*Collection // by href
	// Log records every request line and status, for failure messages.
	Log []string
}

// Collection is the local copy of one calendar or reminders list.
type Collection struct {
	Href       string
	Name       string
	Components []string // VTODO: a Reminders list; VEVENT: a Calendar calendar
	CTag       string
	SyncToken  string
	Objects    map[string]*Object // by href
	// FullResyncs counts sync tokens the server refused (403).
	FullResyncs int
}

// Object is the phone's copy of one resource.
type Object struct {
	Href string
	ETag string // "" when the phone must fetch it again
	Data string
}

// New returns a phone that will use base (the bare host) for CalDAV and
// imapAddr for Mail.
func New(base, user, password, imapAddr string) *Phone {
	return &Phone{Base: strings.TrimRight(base, "/"), User: user, Password: password, IMAPAddr: imapAddr,
		Client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		colls:  map[string]*Collection{}}
}

const (
	nsDAV = "DAV:"
	nsCal = "urn:ietf:params:xml:ns:caldav"
	nsCS  = "http://calendarserver.org/ns/"

	// wellKnownBody is the 181-byte discovery PROPFIND (IOS.md §1.2 #1).
	wellKnownBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:propfind xmlns:A="DAV:"><A:prop><A:current-user-principal/><A:principal-URL/><A:resourcetype/></A:prop></A:propfind>`

	principalBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:propfind xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav" xmlns:C="http://calendarserver.org/ns/"><A:prop>` +
		`<B:calendar-home-set/><B:calendar-user-address-set/><A:current-user-principal/><A:displayname/>` +
		`<C:dropbox-home-URL/><C:email-address-set/><C:notification-URL/><A:principal-collection-set/>` +
		`<A:principal-URL/><A:resource-id/><B:schedule-inbox-URL/><B:schedule-outbox-URL/><A:supported-report-set/>` +
		`</A:prop></A:propfind>`

	// HomeBody is the home's Depth 1 PROPFIND (IOS.md §1.3), sent on
	// every background poll: 38 properties, most answered 404.
	HomeBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:propfind xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav" xmlns:C="http://calendarserver.org/ns/" xmlns:D="http://apple.com/ns/ical/" xmlns:E="http://me.com/_namespace/"><A:prop>` +
		`<A:add-member/><C:allowed-sharing-modes/><D:autoprovisioned/><E:bulk-requests/><B:calendar-alarm/>` +
		`<D:calendar-color/><B:calendar-description/><B:calendar-free-busy-set/><D:calendar-order/>` +
		`<B:calendar-timezone/><A:current-user-privilege-set/><B:default-alarm-vevent-date/>` +
		`<B:default-alarm-vevent-datetime/><A:displayname/><C:getctag/><C:invite/><D:language-code/>` +
		`<D:location-code/><A:owner/><C:pre-publish-url/><C:publish-url/><C:push-transports/><C:pushkey/>` +
		`<A:quota-available-bytes/><A:quota-used-bytes/><D:refreshrate/><A:resource-id/><A:resourcetype/>` +
		`<B:schedule-calendar-transp/><B:schedule-default-calendar-URL/><C:source/><C:subscribed-strip-alarms/>` +
		`<C:subscribed-strip-attachments/><C:subscribed-strip-todos/><B:supported-calendar-component-set/>` +
		`<B:supported-calendar-component-sets/><A:supported-report-set/><A:sync-token/>` +
		`</A:prop></A:propfind>`

	syncBody = `<?xml version="1.0" encoding="UTF-8"?>
<A:sync-collection xmlns:A="DAV:"><A:sync-token>%s</A:sync-token><A:sync-level>1</A:sync-level>` +
		`<A:prop><A:getetag/><A:getcontenttype/></A:prop></A:sync-collection>`

	multigetHead = `<?xml version="1.0" encoding="UTF-8"?>
<B:calendar-multiget xmlns:A="DAV:" xmlns:B="urn:ietf:params:xml:ns:caldav"><A:prop><A:getetag/>` +
		`<B:calendar-data/><B:schedule-tag/></A:prop>`

	// multigetBatch is how many hrefs iOS asks for at once.
	multigetBatch = 50
	userAgent     = "iOS/18.1.1 (22B91) dataaccessd/1.0"
)

// multistatus is the part of a 207 answer the phone reads.
type multistatus struct {
	Responses []struct {
		Href     string `xml:"DAV: href"`
		Status   string `xml:"DAV: status"`
		Propstat []struct {
			Status string `xml:"DAV: status"`
			Prop   struct {
				Principal   string `xml:"DAV: current-user-principal>href"`
				Home        string `xml:"calendar-home-set>href"` // path elements match by local name
				DisplayName string `xml:"DAV: displayname"`
				CTag        string `xml:"http://calendarserver.org/ns/ getctag"`
				SyncToken   string `xml:"DAV: sync-token"`
				ETag        string `xml:"DAV: getetag"`
				Data        string `xml:"urn:ietf:params:xml:ns:caldav calendar-data"`
				Comps       []struct {
					Name string `xml:"name,attr"`
				} `xml:"urn:ietf:params:xml:ns:caldav supported-calendar-component-set>comp"`
				Calendar *struct{} `xml:"resourcetype>calendar"`
			} `xml:"DAV: prop"`
		} `xml:"DAV: propstat"`
	} `xml:"DAV: response"`
	SyncToken string `xml:"DAV: sync-token"`
}

// do sends one DAV request as dataaccessd does; auth false sends none.
func (p *Phone) do(ctx context.Context, method, target, depth, body string, auth bool, hdr map[string]string) (*http.Response, []byte, error) {
	u := target
	if !strings.HasPrefix(u, "http") {
		u = p.Base + target
	}
	req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	req.Header.Set("Accept-Language", "en-GB,en;q=0.9")
	if method == "PROPFIND" {
		req.Header.Set("Prefer", "return=minimal")
		req.Header.Set("Brief", "t")
	}
	if body != "" && method != http.MethodPut {
		req.Header.Set("Content-Type", "text/xml")
	}
	if depth != "" {
		req.Header.Set("Depth", depth)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if auth {
		req.SetBasicAuth(p.User, p.Password)
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	p.Log = append(p.Log, fmt.Sprintf("%s %s -> %d", method, req.URL.Path, resp.StatusCode))
	return resp, b, err
}

func (p *Phone) multistatus(ctx context.Context, method, target, depth, body string) (*multistatus, error) {
	resp, b, err := p.do(ctx, method, target, depth, body, true, nil)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusMultiStatus {
		return nil, &StatusError{Method: method, Target: target, Code: resp.StatusCode, Body: string(b)}
	}
	var ms multistatus
	if err := xml.Unmarshal(b, &ms); err != nil {
		return nil, fmt.Errorf("%s %s: parse 207: %w", method, target, err)
	}
	return &ms, nil
}

// StatusError is an answer the phone did not expect.
type StatusError struct {
	Method, Target string
	Code           int
	Body           string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %.300s", e.Method, e.Target, e.Code, e.Body)
}

// Discover adds the account as iOS does: PROPFIND /.well-known/caldav
// without credentials, following redirects without them until a 401 with a
// Basic challenge, then again with the password; then the principal and its
// calendar-home-set.
func (p *Phone) Discover(ctx context.Context) error {
	target := "/.well-known/caldav"
	for hops := 0; ; hops++ {
		if hops > 5 {
			return fmt.Errorf("discovery: too many redirects from /.well-known/caldav")
		}
		resp, _, err := p.do(ctx, "PROPFIND", target, "0", wellKnownBody, false, nil)
		if err != nil {
			return err
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
			ref, err := url.Parse(loc)
			if err != nil {
				return fmt.Errorf("discovery: bad Location %q: %w", loc, err)
			}
			target = ref.Path
			if ref.IsAbs() {
				target = loc
			}
			continue
		}
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			return fmt.Errorf("discovery: %s answered %d without a Basic challenge; iOS sends no password then", target, resp.StatusCode)
		}
		break
	}
	ms, err := p.multistatus(ctx, "PROPFIND", target, "0", wellKnownBody)
	if err != nil {
		return err
	}
	for _, r := range ms.Responses {
		for _, ps := range r.Propstat {
			if ps.Prop.Principal != "" {
				p.principal = ps.Prop.Principal
			}
		}
	}
	if p.principal == "" {
		return fmt.Errorf("discovery: no current-user-principal at %s", target)
	}
	ms, err = p.multistatus(ctx, "PROPFIND", p.principal, "0", principalBody)
	if err != nil {
		return err
	}
	for _, r := range ms.Responses {
		for _, ps := range r.Propstat {
			if ps.Prop.Home != "" {
				p.home = ps.Prop.Home
			}
		}
	}
	if p.home == "" {
		return fmt.Errorf("discovery: principal %s has no calendar-home-set", p.principal)
	}
	return nil
}

// Sync is one poll: the home's Depth 1 PROPFIND, then for every collection
// whose ctag moved a sync-collection REPORT from the stored token (empty
// the first time; a 403 means start again from empty and drop what the
// server no longer lists) and a multiget of what changed. Objects whose
// write answer carried no ETag are fetched too.
func (p *Phone) Sync(ctx context.Context) error {
	if p.home == "" {
		if err := p.Discover(ctx); err != nil {
			return err
		}
	}
	ms, err := p.multistatus(ctx, "PROPFIND", p.home, "1", HomeBody)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, r := range ms.Responses {
		var prop = struct {
			name, ctag string
			comps      []string
			calendar   bool
		}{}
		for _, ps := range r.Propstat {
			if !strings.Contains(ps.Status, "200") {
				continue
			}
			if ps.Prop.Calendar != nil {
				prop.calendar = true
			}
			if ps.Prop.DisplayName != "" {
				prop.name = ps.Prop.DisplayName
			}
			if ps.Prop.CTag != "" {
				prop.ctag = ps.Prop.CTag
			}
			for _, c := range ps.Prop.Comps {
				prop.comps = append(prop.comps, c.Name)
			}
		}
		if !prop.calendar {
			continue
		}
		seen[r.Href] = true
		c := p.colls[r.Href]
		if c == nil {
			c = &Collection{Href: r.Href, Objects: map[string]*Object{}}
			p.colls[r.Href] = c
		}
		c.Name, c.Components = prop.name, prop.comps
		if c.CTag == prop.ctag && !c.stale() {
			continue
		}
		if err := p.syncCollection(ctx, c); err != nil {
			return err
		}
		c.CTag = prop.ctag
	}
	for href := range p.colls {
		if !seen[href] {
			delete(p.colls, href)
		}
	}
	return nil
}

func (c *Collection) stale() bool {
	for _, o := range c.Objects {
		if o.ETag == "" {
			return true
		}
	}
	return false
}

func (p *Phone) syncCollection(ctx context.Context, c *Collection) error {
	full := c.SyncToken == ""
	ms, err := p.multistatus(ctx, "REPORT", c.Href, "1", fmt.Sprintf(syncBody, xmlEscape(c.SyncToken)))
	var se *StatusError
	if err != nil && errorsAs(err, &se) && se.Code == http.StatusForbidden && strings.Contains(se.Body, "valid-sync-token") {
		// A restored server: start again from an empty token.
		c.FullResyncs++
		full = true
		ms, err = p.multistatus(ctx, "REPORT", c.Href, "1", fmt.Sprintf(syncBody, ""))
	}
	if err != nil {
		return err
	}
	listed := map[string]bool{}
	var fetch []string
	for _, r := range ms.Responses {
		if r.Href == c.Href {
			continue
		}
		if strings.Contains(r.Status, "404") {
			delete(c.Objects, r.Href)
			continue
		}
		listed[r.Href] = true
		etag := ""
		for _, ps := range r.Propstat {
			if ps.Prop.ETag != "" {
				etag = ps.Prop.ETag
			}
		}
		if o := c.Objects[r.Href]; o == nil || o.ETag != etag {
			// Same ETag: the phone skips it (IOS.md §2, token details).
			fetch = append(fetch, r.Href)
		}
	}
	for href, o := range c.Objects {
		if full && !listed[href] {
			delete(c.Objects, href)
		} else if o.ETag == "" && !listed[href] {
			fetch = append(fetch, href)
		}
	}
	if err := p.multiget(ctx, c, fetch); err != nil {
		return err
	}
	c.SyncToken = ms.SyncToken
	return nil
}

func (p *Phone) multiget(ctx context.Context, c *Collection, hrefs []string) error {
	sort.Strings(hrefs)
	for len(hrefs) > 0 {
		n := min(len(hrefs), multigetBatch)
		var b strings.Builder
		b.WriteString(multigetHead)
		for _, h := range hrefs[:n] {
			b.WriteString("<A:href>" + xmlEscape(h) + "</A:href>")
		}
		b.WriteString("</B:calendar-multiget>")
		hrefs = hrefs[n:]
		ms, err := p.multistatus(ctx, "REPORT", c.Href, "", b.String())
		if err != nil {
			return err
		}
		for _, r := range ms.Responses {
			if strings.Contains(r.Status, "404") {
				delete(c.Objects, r.Href)
				continue
			}
			for _, ps := range r.Propstat {
				if ps.Prop.Data != "" {
					c.Objects[r.Href] = &Object{Href: r.Href, ETag: ps.Prop.ETag, Data: ps.Prop.Data}
				}
			}
		}
	}
	return nil
}

// Collections returns the local collections, sorted by href.
func (p *Phone) Collections() []*Collection {
	out := make([]*Collection, 0, len(p.colls))
	for _, c := range p.colls {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Href < out[j].Href })
	return out
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}
