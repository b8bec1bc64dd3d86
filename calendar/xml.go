package calendar

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Namespaces of the properties iOS asks for (IOS.md §1.3).
const (
	nsDAV    = "DAV:"
	nsCalDAV = "urn:ietf:params:xml:ns:caldav"
	nsCS     = "http://calendarserver.org/ns/"
	nsApple  = "http://apple.com/ns/ical/"
)

// prefixes used in our answers; other namespaces get a local declaration.
var prefixes = map[string]string{nsDAV: "d", nsCalDAV: "c", nsCS: "cs", nsApple: "ic"}

// maxXMLBody bounds request bodies: a multiget of 50 hrefs is a few KB.
const maxXMLBody = 1 << 20

// node is a generic XML element: request bodies are small, and walking a
// tree is simpler than a struct per report.
type node struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Children []node     `xml:",any"`
	Text     string     `xml:",chardata"`
}

func (n *node) is(ns, local string) bool {
	return n != nil && n.XMLName.Space == ns && n.XMLName.Local == local
}

func (n *node) child(ns, local string) *node {
	if n == nil {
		return nil
	}
	for i := range n.Children {
		if n.Children[i].is(ns, local) {
			return &n.Children[i]
		}
	}
	return nil
}

func (n *node) all(ns, local string) []*node {
	var out []*node
	for i := range n.Children {
		if n.Children[i].is(ns, local) {
			out = append(out, &n.Children[i])
		}
	}
	return out
}

func (n *node) attr(local string) (string, bool) {
	for _, a := range n.Attrs {
		if a.Name.Local == local && (a.Name.Space == "" || a.Name.Space == n.XMLName.Space) {
			return a.Value, true
		}
	}
	return "", false
}

// names lists the element names of n's children (a DAV:prop).
func (n *node) names() []xml.Name {
	if n == nil {
		return nil
	}
	out := make([]xml.Name, len(n.Children))
	for i := range n.Children {
		out[i] = n.Children[i].XMLName
	}
	return out
}

var errBadXML = errors.New("malformed XML body")

// readXML decodes a request body and returns it raw too; an empty body
// gives a nil node. The Content-Type is not checked: clients disagree on it,
// the content does not.
func readXML(r *http.Request) (*node, []byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxXMLBody+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: read body: %v", errBadXML, err)
	}
	if len(body) > maxXMLBody {
		return nil, nil, fmt.Errorf("%w: body over %d bytes", errBadXML, maxXMLBody)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, body, nil
	}
	var n node
	if err := xml.Unmarshal(body, &n); err != nil {
		return nil, body, fmt.Errorf("%w: %v", errBadXML, err)
	}
	if err := n.checkNames(); err != nil {
		return nil, body, err
	}
	return &n, body, nil
}

// checkNames refuses element names that are not XML names: encoding/xml
// accepts "<:/>" and the like, and property names are echoed back, so a
// bad one would make our answer malformed.
func (n *node) checkNames() error {
	if !xmlName(n.XMLName.Local) {
		return fmt.Errorf("%w: element name %q", errBadXML, n.XMLName.Local)
	}
	for i := range n.Children {
		if err := n.Children[i].checkNames(); err != nil {
			return err
		}
	}
	return nil
}

// xmlName reports whether s is an XML NCName (letters, digits, marks,
// '_', '-', '.'; not starting with a digit, '-' or '.').
func xmlName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case unicode.IsLetter(r) || r == '_':
		case i > 0 && (unicode.IsDigit(r) || r == '-' || r == '.' || unicode.Is(unicode.M, r)):
		default:
			return false
		}
	}
	return true
}

// escapeText escapes character data. CR becomes &#13; so calendar-data keeps
// the exact octets of the stored object (XML parsers turn a raw CRLF into
// LF); characters XML 1.0 cannot carry become U+FFFD.
func escapeText(b *bytes.Buffer, s string) {
	last := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		var rep string
		switch {
		case r == '&':
			rep = "&amp;"
		case r == '<':
			rep = "&lt;"
		case r == '>':
			rep = "&gt;"
		case r == '\r':
			rep = "&#13;"
		case r == '\n' || r == '\t':
		case r < 0x20 || r == 0xFFFE || r == 0xFFFF || (r == utf8.RuneError && size == 1):
			rep = "\uFFFD"
		}
		if rep != "" {
			b.WriteString(s[last:i])
			b.WriteString(rep)
			last = i + size
		}
		i += size
	}
	b.WriteString(s[last:])
}

func escaped(s string) string {
	var b bytes.Buffer
	escapeText(&b, s)
	return b.String()
}

// propResult is one property in an answer: inner is its content, already
// XML (escaped); status 200, 403, 404 or 424.
type propResult struct {
	name   xml.Name
	status int
	inner  string
}

// multistatus writes a 207 body by hand: faster than encoding/xml and in
// full control of prefixes and of calendar-data escaping.
type multistatus struct {
	b bytes.Buffer
	// minimal drops 404 propstats (Prefer: return=minimal, Brief: t).
	minimal bool
	// w, when set, receives the document in pieces of about spillBytes
	// once it grows past that: a report over many large objects is
	// never held whole in memory. Small answers still go out in one
	// write with a Content-Length.
	w       http.ResponseWriter
	started bool
}

// spillBytes is how much of a streamed multistatus is buffered.
const spillBytes = 64 << 10

// stream makes the document go to w as it is built (see multistatus.w).
func (m *multistatus) stream(w http.ResponseWriter) *multistatus {
	m.w = w
	return m
}

// spill writes what is buffered once it is large enough.
func (m *multistatus) spill() {
	if m.w == nil || m.b.Len() < spillBytes {
		return
	}
	if !m.started {
		m.started = true
		m.w.Header().Set("Content-Type", `application/xml; charset="utf-8"`)
		m.w.WriteHeader(http.StatusMultiStatus)
	}
	m.w.Write(m.b.Bytes())
	m.b.Reset()
}

func newMultistatus(minimal bool) *multistatus {
	m := &multistatus{minimal: minimal}
	m.b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	m.b.WriteString(`<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" xmlns:ic="http://apple.com/ns/ical/">`)
	return m
}

// open writes the start tag of name (self-closing when empty is true).
func (m *multistatus) open(name xml.Name, empty bool) {
	m.b.WriteByte('<')
	if p, ok := prefixes[name.Space]; ok {
		m.b.WriteString(p)
		m.b.WriteByte(':')
		m.b.WriteString(name.Local)
	} else if name.Space == "" {
		// No namespace; our answers declare no default one.
		m.b.WriteString(name.Local)
	} else {
		m.b.WriteString("x:")
		m.b.WriteString(name.Local)
		m.b.WriteString(` xmlns:x="`)
		m.b.WriteString(strings.ReplaceAll(escaped(name.Space), `"`, "&quot;"))
		m.b.WriteByte('"')
	}
	if empty {
		m.b.WriteString("/>")
		return
	}
	m.b.WriteByte('>')
}

func (m *multistatus) close(name xml.Name) {
	m.b.WriteString("</")
	if p, ok := prefixes[name.Space]; ok {
		m.b.WriteString(p)
		m.b.WriteByte(':')
	} else if name.Space != "" {
		m.b.WriteString("x:")
	}
	m.b.WriteString(name.Local)
	m.b.WriteByte('>')
}

func statusLine(code int) string {
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code)
}

// response writes one DAV:response with its propstats, grouped by status in
// order of first appearance.
func (m *multistatus) response(href string, props []propResult) {
	m.b.WriteString("<d:response><d:href>")
	escapeText(&m.b, href)
	m.b.WriteString("</d:href>")
	var buf [4]int
	statuses := buf[:0]
	for _, p := range props {
		if (p.status != http.StatusNotFound || !m.minimal) && !slices.Contains(statuses, p.status) {
			statuses = append(statuses, p.status)
		}
	}
	for _, st := range statuses {
		m.b.WriteString("<d:propstat><d:prop>")
		for _, p := range props {
			if p.status != st {
				continue
			}
			if p.inner == "" {
				m.open(p.name, true)
				continue
			}
			m.open(p.name, false)
			m.b.WriteString(p.inner)
			m.close(p.name)
		}
		m.b.WriteString("</d:prop><d:status>")
		m.b.WriteString(statusLine(st))
		m.b.WriteString("</d:status></d:propstat>")
	}
	m.b.WriteString("</d:response>")
	m.spill()
}

// status writes a DAV:response that carries only a status (sync-collection
// removals, unknown hrefs of a multiget).
func (m *multistatus) status(href string, code int) {
	m.b.WriteString("<d:response><d:href>")
	escapeText(&m.b, href)
	m.b.WriteString("</d:href><d:status>")
	m.b.WriteString(statusLine(code))
	m.b.WriteString("</d:status></d:response>")
	m.spill()
}

func (m *multistatus) syncToken(tok string) {
	m.b.WriteString("<d:sync-token>")
	escapeText(&m.b, tok)
	m.b.WriteString("</d:sync-token>")
}

// send finishes the document and writes it with status 207.
func (m *multistatus) send(w http.ResponseWriter) {
	m.b.WriteString("</d:multistatus>\n")
	if m.started {
		w.Write(m.b.Bytes())
		return
	}
	w.Header().Set("Content-Type", `application/xml; charset="utf-8"`)
	w.Header().Set("Content-Length", strconv.Itoa(m.b.Len()))
	w.WriteHeader(http.StatusMultiStatus)
	w.Write(m.b.Bytes())
}

// davError answers code with a DAV:error body naming a precondition
// (RFC 4918 §16), e.g. DAV:valid-sync-token.
func davError(w http.ResponseWriter, code int, cond xml.Name, detail string) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	b.WriteString(`<d:error xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">`)
	m := multistatus{}
	m.open(cond, true)
	b.Write(m.b.Bytes())
	if detail != "" {
		b.WriteString("<d:responsedescription>")
		escapeText(&b, detail)
		b.WriteString("</d:responsedescription>")
	}
	b.WriteString("</d:error>\n")
	w.Header().Set("Content-Type", `application/xml; charset="utf-8"`)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// hrefXML is the content of a property holding one href.
func hrefXML(href string) string {
	return "<d:href>" + escaped(href) + "</d:href>"
}

// preferMinimal reports whether the client asked to leave out 404 propstats.
func preferMinimal(r *http.Request) bool {
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("Brief")), "t") {
		return true
	}
	for _, v := range r.Header.Values("Prefer") {
		for _, p := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(p), "return=minimal") {
				return true
			}
		}
	}
	return false
}
