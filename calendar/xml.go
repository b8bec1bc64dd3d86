package calendar

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	if n, ok := parseXMLFast(body); ok {
		return n, body, nil
	}
	n, err := parseXML(body)
	if err != nil {
		return nil, body, err
	}
	return n, body, nil
}

// parseXMLFast parses the plain XML that CalDAV clients send: ASCII names
// and text, an optional <?xml?> declaration, no entity references,
// comments, CDATA or DOCTYPE. Every name and text of the tree is a
// substring of one copy of body, so a multiget of 100 hrefs costs a
// handful of allocations instead of thousands. ok is false for anything
// else, malformed input included; parseXML then gives the answer (and
// the error) of encoding/xml. FuzzParseXML holds both to xml.Unmarshal.
func parseXMLFast(body []byte) (root *node, ok bool) {
	type frame struct {
		raw  string // the name as written, for the end tag
		n    node
		more []byte // text, once it comes in more than one piece
		undo []nsUndo
		kids int // where its children start in kids
	}
	// Children wait in one shared stack and get an exactly sized slice
	// when their parent ends: no regrowing a parent's list per child.
	var kids []node
	s := string(body)
	p := skipSpace(s, 0)
	if strings.HasPrefix(s[p:], "<?xml") && p+5 < len(s) && isSpace(s[p+5]) {
		end := strings.Index(s[p:], "?>")
		if end < 0 || !plainDecl(s[p+5:p+end]) {
			return nil, false
		}
		p = skipSpace(s, p+end+2)
	}
	var stack []frame
	var ns map[string]string
	// pop ends the innermost element: its namespace bindings end, it joins
	// its parent's children; the root is returned.
	pop := func() *node {
		f := &stack[len(stack)-1]
		for i := len(f.undo) - 1; i >= 0; i-- {
			if u := f.undo[i]; u.ok {
				ns[u.prefix] = u.old
			} else {
				delete(ns, u.prefix)
			}
		}
		if f.more != nil {
			f.n.Text = string(f.more)
		}
		if len(kids) > f.kids {
			f.n.Children = slices.Clone(kids[f.kids:])
			clear(kids[f.kids:]) // no stale references to the copied nodes
			kids = kids[:f.kids]
		}
		n := f.n
		stack = stack[:len(stack)-1]
		if len(stack) == 0 {
			return &n
		}
		kids = append(kids, n)
		return nil
	}
	for p < len(s) {
		if s[p] != '<' { // text
			q := p
			for q < len(s) && s[q] != '<' {
				if c := s[q]; c >= utf8.RuneSelf || c < 0x20 && c != '\n' && c != '\t' || c == '&' || c == ']' {
					return nil, false // entities, "]]>", \r, non-ASCII: encoding/xml's rules
				}
				q++
			}
			if len(stack) == 0 {
				return nil, false // text before the root element
			}
			f := &stack[len(stack)-1]
			switch {
			case f.n.Text == "" && f.more == nil:
				f.n.Text = s[p:q]
			case f.more == nil:
				f.more = append(append(make([]byte, 0, len(f.n.Text)+q-p+16), f.n.Text...), s[p:q]...)
			default:
				f.more = append(f.more, s[p:q]...)
			}
			p = q
			continue
		}
		if p+1 < len(s) && s[p+1] == '/' { // end tag
			if len(stack) == 0 {
				return nil, false
			}
			f := &stack[len(stack)-1]
			q := p + 2 + len(f.raw)
			if !strings.HasPrefix(s[p+2:], f.raw) {
				return nil, false
			}
			q = skipSpace(s, q)
			if q >= len(s) || s[q] != '>' {
				return nil, false
			}
			p = q + 1
			if root = pop(); root != nil {
				return root, true // what follows the root is ignored, as by xml.Unmarshal
			}
			continue
		}
		// start tag
		if len(stack) >= maxXMLDepth {
			return nil, false
		}
		raw, q, ok := scanName(s, p+1)
		if !ok {
			return nil, false
		}
		f := frame{raw: raw, kids: len(kids)}
		var attrs []xml.Attr
		empty := false
		for {
			q = skipSpace(s, q)
			if q >= len(s) {
				return nil, false
			}
			if s[q] == '>' {
				q++
				break
			}
			if s[q] == '/' {
				if q+1 >= len(s) || s[q+1] != '>' {
					return nil, false
				}
				q, empty = q+2, true
				break
			}
			if q == 0 || !isSpace(s[q-1]) {
				return nil, false // attributes not separated by space
			}
			aname, r, ok := scanName(s, q)
			if !ok {
				return nil, false
			}
			r = skipSpace(s, r)
			if r >= len(s) || s[r] != '=' {
				return nil, false
			}
			r = skipSpace(s, r+1)
			if r >= len(s) || s[r] != '"' && s[r] != '\'' {
				return nil, false
			}
			end := strings.IndexByte(s[r+1:], s[r])
			if end < 0 {
				return nil, false
			}
			val := s[r+1 : r+1+end]
			for i := 0; i < len(val); i++ {
				if c := val[i]; c >= utf8.RuneSelf || c < 0x20 && c != '\n' && c != '\t' || c == '&' || c == '<' {
					return nil, false
				}
			}
			attrs = append(attrs, xml.Attr{Name: splitName(aname), Value: val})
			q = r + 1 + end + 1
		}
		for _, a := range attrs {
			var prefix string
			switch {
			case a.Name.Space == "xmlns":
				prefix = a.Name.Local
			case a.Name.Space == "" && a.Name.Local == "xmlns":
			default:
				continue
			}
			if ns == nil {
				ns = map[string]string{}
			}
			old, had := ns[prefix]
			f.undo = append(f.undo, nsUndo{prefix, old, had})
			ns[prefix] = a.Value
		}
		f.n.XMLName = resolveName(ns, splitName(raw), true)
		for i := range attrs {
			attrs[i].Name = resolveName(ns, attrs[i].Name, false)
		}
		f.n.Attrs = attrs
		p = q
		stack = append(stack, f)
		if empty {
			if root = pop(); root != nil {
				return root, true
			}
		}
	}
	return nil, false // unexpected end
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

func skipSpace(s string, p int) int {
	for p < len(s) && isSpace(s[p]) {
		p++
	}
	return p
}

// scanName reads an ASCII name at s[p:]: an NCName, or two joined by one
// colon. ok is false for anything else (left to encoding/xml).
func scanName(s string, p int) (name string, end int, ok bool) {
	q, colons := p, 0
	for q < len(s) {
		c := s[q]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
		case '0' <= c && c <= '9', c == '-', c == '.':
			if q == p || s[q-1] == ':' {
				return "", 0, false
			}
		case c == ':':
			if q == p || s[q-1] == ':' || colons > 0 {
				return "", 0, false
			}
			colons++
		default:
			if q == p || s[q-1] == ':' {
				return "", 0, false
			}
			return s[p:q], q, true
		}
		q++
	}
	return "", 0, false // the document ends inside a name
}

// splitName splits a scanned name at its colon.
func splitName(s string) xml.Name {
	if prefix, local, ok := strings.Cut(s, ":"); ok {
		return xml.Name{Space: prefix, Local: local}
	}
	return xml.Name{Local: s}
}

// plainDecl reports whether the content of an <?xml?> declaration is one
// encoding/xml takes without complaint: version 1.0, UTF-8.
func plainDecl(content string) bool {
	for _, f := range strings.Fields(content) {
		k, v, ok := strings.Cut(f, "=")
		if !ok || len(v) < 2 || v[0] != v[len(v)-1] || v[0] != '"' && v[0] != '\'' {
			return false
		}
		v = v[1 : len(v)-1]
		switch {
		case k == "version" && v == "1.0":
		case k == "encoding" && strings.EqualFold(v, "utf-8"):
		case k == "standalone" && (v == "yes" || v == "no"):
		default:
			return false
		}
	}
	return true
}

// maxXMLDepth is encoding/xml's own nesting limit for Unmarshal.
const maxXMLDepth = 10000

// parseXML builds the tree of body's first element from the decoder's raw
// tokens, resolving namespaces and checking that end tags match as
// Decoder.Token does: the same tree xml.Unmarshal into a node gives (tested
// side by side), without its reflection, which was most of the time a
// multiget of 100 hrefs spent parsing its body.
func parseXML(body []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	type frame struct {
		raw  xml.Name // as written, for the end tag
		n    node
		text []byte
		undo []nsUndo // bindings this element's xmlns attributes replaced
	}
	var stack []frame
	ns := map[string]string{}
	for {
		tok, err := d.RawToken()
		if err == io.EOF {
			if len(stack) > 0 {
				return nil, fmt.Errorf("%w: unexpected EOF", errBadXML)
			}
			return nil, fmt.Errorf("%w: no element", errBadXML)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errBadXML, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) >= maxXMLDepth {
				return nil, fmt.Errorf("%w: nested deeper than %d", errBadXML, maxXMLDepth)
			}
			if !xmlName(t.Name.Local) {
				return nil, fmt.Errorf("%w: element name %q", errBadXML, t.Name.Local)
			}
			f := frame{raw: t.Name}
			for _, a := range t.Attr {
				var prefix string
				switch {
				case a.Name.Space == "xmlns":
					prefix = a.Name.Local
				case a.Name.Space == "" && a.Name.Local == "xmlns":
					prefix = ""
				default:
					continue
				}
				old, ok := ns[prefix]
				f.undo = append(f.undo, nsUndo{prefix, old, ok})
				ns[prefix] = a.Value
			}
			f.n.XMLName = resolveName(ns, t.Name, true)
			if len(t.Attr) > 0 {
				f.n.Attrs = make([]xml.Attr, len(t.Attr))
				for i, a := range t.Attr {
					f.n.Attrs[i] = xml.Attr{Name: resolveName(ns, a.Name, false), Value: a.Value}
				}
			}
			stack = append(stack, f)
		case xml.EndElement:
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: unexpected end element </%s>", errBadXML, t.Name.Local)
			}
			f := &stack[len(stack)-1]
			if f.raw != t.Name {
				return nil, fmt.Errorf("%w: element <%s> closed by </%s>", errBadXML, f.raw.Local, t.Name.Local)
			}
			for i := len(f.undo) - 1; i >= 0; i-- {
				if u := f.undo[i]; u.ok {
					ns[u.prefix] = u.old
				} else {
					delete(ns, u.prefix)
				}
			}
			if len(f.text) > 0 {
				f.n.Text = string(f.text)
			}
			n := f.n
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return &n, nil
			}
			p := &stack[len(stack)-1].n
			p.Children = append(p.Children, n)
		case xml.CharData:
			if len(stack) > 0 {
				f := &stack[len(stack)-1]
				f.text = append(f.text, t...)
			}
		}
	}
}

// nsUndo restores a namespace binding when its element ends.
type nsUndo struct {
	prefix, old string
	ok          bool
}

// resolveName translates a raw name's prefix as Decoder.Token does: the
// default namespace applies to elements only, "xml" is predeclared, an
// unknown prefix is left as it is.
func resolveName(ns map[string]string, n xml.Name, elem bool) xml.Name {
	switch {
	case n.Space == "xmlns":
		return n
	case n.Space == "" && !elem:
		return n
	case n.Space == "xml":
		n.Space = "http://www.w3.org/XML/1998/namespace"
	case n.Space == "" && n.Local == "xmlns":
		return n
	}
	if v, ok := ns[n.Space]; ok {
		n.Space = v
	}
	return n
}

// Element names are checked while parsing: encoding/xml accepts "<:/>"
// and the like, and property names are echoed back, so a bad one would
// make our answer malformed.

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

// appendEscaped appends s escaped as character data. CR becomes &#13; so
// calendar-data keeps the exact octets of the stored object (XML parsers
// turn a raw CRLF into LF); characters XML 1.0 cannot carry become U+FFFD.
func appendEscaped[S ~string | ~[]byte](b []byte, s S) []byte {
	last := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '&' && c != '<' && c != '>' {
			i++ // the common case: printable ASCII that needs nothing
			continue
		}
		r, size := rune(c), 1
		if c >= utf8.RuneSelf {
			r, size = utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		}
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
			b = append(b, s[last:i]...)
			b = append(b, rep...)
			last = i + size
		}
		i += size
	}
	return append(b, s[last:]...)
}

// needsEscape reports whether appendEscaped would change s.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\n' && c != '\t' || c >= utf8.RuneSelf || c == '&' || c == '<' || c == '>' {
			return true
		}
	}
	return false
}

// escapeText writes s escaped as character data to b.
func escapeText(b *bytes.Buffer, s string) {
	b.Write(appendEscaped(b.AvailableBuffer(), s))
}

// escaped returns s escaped as character data; s itself when nothing needs
// escaping (sync tokens, ETags and most names: no allocation).
func escaped(s string) string {
	if !needsEscape(s) {
		return s
	}
	return string(appendEscaped(make([]byte, 0, len(s)+16), s))
}

// propResult is one property in an answer: inner is its content, already
// XML (escaped); status 200, 403, 404 or 424.
type propResult struct {
	name   xml.Name
	status int
	inner  string
}

// multistatus streams a 207 body. Each response is appended to a pooled
// buffer, which goes to the client whenever it holds spillBytes or more:
// a report over thousands of objects is never held whole in memory (the
// buffer is bounded by spillBytes plus one response), and an answer that
// fits the buffer still goes out in one write with a Content-Length.
// Written by hand: faster than encoding/xml and in full control of
// prefixes and of calendar-data escaping.
//
// Until the first byte is out, an error still gets its proper status (see
// Handler.failedIn); after it, the answer can only be cut off.
type multistatus struct {
	w   http.ResponseWriter
	buf *[]byte // from msBuffers; nil once sent or dropped
	// minimal drops 404 propstats (Prefer: return=minimal, Brief: t).
	minimal bool
	started bool  // the status line and headers are out
	werr    error // the first failed write: the client is gone
	// results is reused by props for each resource: the home poll's 11
	// resources × 38 properties were 11 slices of ~2 KB per request.
	results []propResult
}

// spillBytes is how much of a multistatus is buffered before it is written.
const spillBytes = 64 << 10

// msBuffers recycles multistatus buffers: allocating (and zeroing) a fresh
// one per request was a tenth of a home PROPFIND's CPU.
var msBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, spillBytes+spillBytes/2)
	return &b
}}

const msHead = `<?xml version="1.0" encoding="utf-8"?>` + "\n" +
	`<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" xmlns:ic="http://apple.com/ns/ical/">`

// newMultistatus starts a 207 answer to w; nothing is written to w before
// the buffer fills or send is called.
func newMultistatus(w http.ResponseWriter, minimal bool) *multistatus {
	m := &multistatus{w: w, minimal: minimal, buf: msBuffers.Get().(*[]byte)}
	*m.buf = append((*m.buf)[:0], msHead...)
	return m
}

// spill writes what is buffered once it is large enough.
func (m *multistatus) spill() {
	if len(*m.buf) >= spillBytes {
		m.flush()
	}
}

// flush writes the buffer to w, with the status line and headers first.
func (m *multistatus) flush() {
	if !m.started {
		m.started = true
		m.w.Header().Set("Content-Type", `application/xml; charset="utf-8"`)
		m.w.WriteHeader(http.StatusMultiStatus)
	}
	if m.werr == nil {
		_, m.werr = m.w.Write(*m.buf)
	}
	*m.buf = (*m.buf)[:0]
}

// release returns the buffer to the pool; m is unusable afterwards.
func (m *multistatus) release() {
	if m.buf == nil {
		return
	}
	if cap(*m.buf) <= 4*spillBytes { // one huge object must not pin its buffer
		msBuffers.Put(m.buf)
	}
	m.buf = nil
}

// send finishes the document and writes what is left of it.
func (m *multistatus) send() {
	b := append(*m.buf, "</d:multistatus>\n"...)
	*m.buf = b
	if !m.started {
		m.w.Header().Set("Content-Type", `application/xml; charset="utf-8"`)
		m.w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		m.w.WriteHeader(http.StatusMultiStatus)
		m.started = true
	}
	if m.werr == nil {
		_, m.werr = m.w.Write(b)
	}
	m.release()
}

// failedIn is Handler.failed for an error met while m is being written.
// Before the first byte is out, the buffered document is dropped and the
// error answered with its own status. After it, the status line said 207,
// so the answer is cut off (the client sees a truncated body, never a
// well-formed partial one) and the error logged. It reports whether there
// was an error; when it returns true, m is done.
func (h *Handler) failedIn(m *multistatus, w http.ResponseWriter, r *http.Request, err error) bool {
	if err == nil {
		return false
	}
	m.release()
	if !m.started {
		return h.failed(w, r, err)
	}
	if errors.Is(err, context.Canceled) || err == m.werr {
		h.log.Debug("caldav answer cut off: the client went away", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		h.log.Error("caldav answer cut off after its first bytes", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// stopped returns why the rest of the answer is not worth producing: a
// write failed or the request's context ended (the client went away).
func (m *multistatus) stopped(ctx context.Context) error {
	if m.werr != nil {
		return m.werr
	}
	return ctx.Err()
}

// appendOpen appends the start tag of name (self-closing when empty).
func appendOpen(b []byte, name xml.Name, empty bool) []byte {
	b = append(b, '<')
	if p, ok := prefixes[name.Space]; ok {
		b = append(b, p...)
		b = append(b, ':')
		b = append(b, name.Local...)
	} else if name.Space == "" {
		// No namespace; our answers declare no default one.
		b = append(b, name.Local...)
	} else {
		b = append(b, "x:"...)
		b = append(b, name.Local...)
		b = append(b, ` xmlns:x="`...)
		b = append(b, strings.ReplaceAll(escaped(name.Space), `"`, "&quot;")...)
		b = append(b, '"')
	}
	if empty {
		return append(b, "/>"...)
	}
	return append(b, '>')
}

func appendClose(b []byte, name xml.Name) []byte {
	b = append(b, "</"...)
	if p, ok := prefixes[name.Space]; ok {
		b = append(b, p...)
		b = append(b, ':')
	} else if name.Space != "" {
		b = append(b, "x:"...)
	}
	b = append(b, name.Local...)
	return append(b, '>')
}

// statusLine is the content of a DAV:status; the codes we answer are
// constants, so the common case allocates nothing.
func statusLine(code int) string {
	switch code {
	case http.StatusOK:
		return "HTTP/1.1 200 OK"
	case http.StatusNotFound:
		return "HTTP/1.1 404 Not Found"
	case http.StatusForbidden:
		return "HTTP/1.1 403 Forbidden"
	case http.StatusFailedDependency:
		return "HTTP/1.1 424 Failed Dependency"
	case http.StatusInsufficientStorage:
		return "HTTP/1.1 507 Insufficient Storage"
	}
	return "HTTP/1.1 " + strconv.Itoa(code) + " " + http.StatusText(code)
}

// response writes one DAV:response with its propstats, grouped by status in
// order of first appearance.
func (m *multistatus) response(href string, props []propResult) {
	b := append(*m.buf, "<d:response><d:href>"...)
	b = appendEscaped(b, href)
	b = append(b, "</d:href>"...)
	var stBuf [4]int
	statuses := stBuf[:0]
	for _, p := range props {
		if (p.status != http.StatusNotFound || !m.minimal) && !slices.Contains(statuses, p.status) {
			statuses = append(statuses, p.status)
		}
	}
	for _, st := range statuses {
		b = append(b, "<d:propstat><d:prop>"...)
		for _, p := range props {
			if p.status != st {
				continue
			}
			if p.inner == "" {
				b = appendOpen(b, p.name, true)
				continue
			}
			b = appendOpen(b, p.name, false)
			b = append(b, p.inner...)
			b = appendClose(b, p.name)
		}
		b = append(b, "</d:prop><d:status>"...)
		b = append(b, statusLine(st)...)
		b = append(b, "</d:status></d:propstat>"...)
	}
	*m.buf = append(b, "</d:response>"...)
	m.spill()
}

// props writes the DAV:response, at href, of r's properties that q asks
// for.
func (m *multistatus) props(href string, r resource, q propReq) {
	if m.minimal && q.tags != nil && !q.allProp && !q.propName {
		m.found(href, r, q)
		return
	}
	m.results = r.appendResults(m.results[:0], q)
	m.response(href, m.results)
}

// found is props for a minimal answer to a list of properties (every
// phone poll): the properties r has, in one 200 propstat, written as they
// are looked up with q's ready-made tags. It writes what response would.
func (m *multistatus) found(href string, r resource, q propReq) {
	b := append(*m.buf, "<d:response><d:href>"...)
	b = appendEscaped(b, href)
	b = append(b, "</d:href>"...)
	start := len(b)
	b = append(b, "<d:propstat><d:prop>"...)
	any := false
	for i, n := range q.props {
		v, ok := r.get(n)
		if !ok {
			continue
		}
		any = true
		t := &q.tags[i]
		if v == "" {
			b = append(b, t.empty...)
			continue
		}
		b = append(b, t.open...)
		b = append(b, v...)
		b = append(b, t.close...)
	}
	if any {
		b = append(b, "</d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>"...)
	} else {
		b = b[:start]
	}
	*m.buf = append(b, "</d:response>"...)
	m.spill()
}

// status writes a DAV:response that carries only a status (sync-collection
// removals, unknown hrefs of a multiget).
func (m *multistatus) status(href string, code int) {
	b := append(*m.buf, "<d:response><d:href>"...)
	b = appendEscaped(b, href)
	b = append(b, "</d:href><d:status>"...)
	b = append(b, statusLine(code)...)
	*m.buf = append(b, "</d:status></d:response>"...)
	m.spill()
}

func (m *multistatus) syncToken(tok string) {
	b := append(*m.buf, "<d:sync-token>"...)
	b = appendEscaped(b, tok)
	*m.buf = append(b, "</d:sync-token>"...)
}

// davError answers code with a DAV:error body naming a precondition
// (RFC 4918 §16), e.g. DAV:valid-sync-token.
func davError(w http.ResponseWriter, code int, cond xml.Name, detail string) {
	b := make([]byte, 0, 256+len(detail))
	b = append(b, `<?xml version="1.0" encoding="utf-8"?>`+"\n"...)
	b = append(b, `<d:error xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">`...)
	b = appendOpen(b, cond, true)
	if detail != "" {
		b = append(b, "<d:responsedescription>"...)
		b = appendEscaped(b, detail)
		b = append(b, "</d:responsedescription>"...)
	}
	b = append(b, "</d:error>\n"...)
	w.Header().Set("Content-Type", `application/xml; charset="utf-8"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
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
