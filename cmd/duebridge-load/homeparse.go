package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
	"unsafe"
)

const (
	nsDAVName = "DAV:"
	nsCalName = "urn:ietf:params:xml:ns:caldav"
	nsCSName  = "http://calendarserver.org/ns/"
)

// parseHome reads the calendars of a home PROPFIND answer, which the load
// tool does on every poll on the same cores as the server. It checks
// well-formed XML (end tags match, namespaces resolved from the
// declarations in scope), a DAV:multistatus root, and takes a response's
// properties only from propstats with a 2xx status.
//
// The plain XML servers send (ASCII names, no comments, CDATA, entity
// references or DOCTYPE) is read by scanHome, a scanner over the bytes that
// allocates only the strings it keeps: about a tenth of the CPU of the
// encoding/xml tokenizer. Anything else, malformed input included, goes to
// parseHomeXML, which gives the answer (and the error) of encoding/xml.
// FuzzParseHome holds both to the same results.
func parseHome(b []byte) ([]collection, error) {
	if cols, ok := scanHome(b); ok {
		return cols, nil
	}
	return parseHomeXML(b)
}

// homeBuilder collects the calendars from a multistatus, element by
// element, whichever tokenizer feeds it.
type homeBuilder struct {
	stack   []homeElem
	decls   []nsDecl // namespace declarations in scope, innermost last
	out     []collection
	col     collection
	isCal   bool
	ps      homePropstat
	text    []byte
	capture bool
	sawRoot bool
}

type homeElem struct {
	raw  xml.Name // as written, for matching the end tag
	name xml.Name // resolved
}

// nsDecl is one xmlns attribute, declared on the element at depth.
type nsDecl struct {
	depth       int
	prefix, uri string
}

type homePropstat struct {
	status, ctag, token, comp string
	cal                       bool
}

func (h *homeBuilder) resolve(prefix string) (string, bool) {
	for i := len(h.decls) - 1; i >= 0; i-- {
		if h.decls[i].prefix == prefix {
			return h.decls[i].uri, true
		}
	}
	return "", prefix == ""
}

// parent is the n-th ancestor of the top element (1 = its parent).
func (h *homeBuilder) parent(n int) xml.Name {
	if len(h.stack) > n {
		return h.stack[len(h.stack)-1-n].name
	}
	return xml.Name{}
}

var (
	davMultistatus  = xml.Name{Space: nsDAVName, Local: "multistatus"}
	davResponse     = xml.Name{Space: nsDAVName, Local: "response"}
	davPropstat     = xml.Name{Space: nsDAVName, Local: "propstat"}
	davResourcetype = xml.Name{Space: nsDAVName, Local: "resourcetype"}
	davProp         = xml.Name{Space: nsDAVName, Local: "prop"}
	davHref         = xml.Name{Space: nsDAVName, Local: "href"}
	davStatus       = xml.Name{Space: nsDAVName, Local: "status"}
	davSyncToken    = xml.Name{Space: nsDAVName, Local: "sync-token"}
	calCalendar     = xml.Name{Space: nsCalName, Local: "calendar"}
	calComp         = xml.Name{Space: nsCalName, Local: "comp"}
	csGetCTag       = xml.Name{Space: nsCSName, Local: "getctag"}
)

// start handles a start tag with its attributes (names as written).
func (h *homeBuilder) start(raw xml.Name, attrs []xml.Attr) error {
	depth := len(h.stack)
	for _, a := range attrs {
		switch {
		case a.Name.Space == "xmlns":
			h.decls = append(h.decls, nsDecl{depth, a.Name.Local, a.Value})
		case a.Name.Space == "" && a.Name.Local == "xmlns":
			h.decls = append(h.decls, nsDecl{depth, "", a.Value})
		}
	}
	space, ok := h.resolve(raw.Space)
	if !ok {
		return fmt.Errorf("parse multistatus: undeclared prefix %q", raw.Space)
	}
	n := xml.Name{Space: space, Local: raw.Local}
	h.stack = append(h.stack, homeElem{raw: raw, name: n})
	if len(h.stack) == 1 {
		if n != davMultistatus {
			return fmt.Errorf("parse multistatus: root %s %s", n.Space, n.Local)
		}
		h.sawRoot = true
	}
	switch {
	case n == davResponse:
		h.col, h.isCal = collection{}, false
	case n == davPropstat:
		h.ps = homePropstat{}
	case n == calCalendar && h.parent(1) == davResourcetype:
		h.ps.cal = true
	case n == calComp && h.parent(1).Local == "supported-calendar-component-set":
		for _, a := range attrs {
			if a.Name.Local == "name" && a.Name.Space == "" && h.ps.comp == "" {
				h.ps.comp = strings.Clone(a.Value) // a.Value may share the answer's buffer
			}
		}
	case n == davHref && h.parent(1) == davResponse,
		n == davStatus && h.parent(1) == davPropstat,
		n == csGetCTag && h.parent(1) == davProp,
		n == davSyncToken && h.parent(1) == davProp:
		h.text = h.text[:0]
		h.capture = true
	}
	return nil
}

func (h *homeBuilder) chardata(b []byte) {
	if h.capture {
		h.text = append(h.text, b...)
	}
}

// end handles an end tag (its name as written).
func (h *homeBuilder) end(raw xml.Name) error {
	if len(h.stack) == 0 || h.stack[len(h.stack)-1].raw != raw {
		return fmt.Errorf("parse multistatus: unexpected end tag %s", raw.Local)
	}
	n := h.stack[len(h.stack)-1].name
	if h.capture {
		switch n.Local {
		case "href":
			h.col.Path = hrefPath(string(h.text))
		case "status":
			h.ps.status = string(h.text)
		case "getctag":
			h.ps.ctag = string(h.text)
		case "sync-token":
			h.ps.token = string(h.text)
		}
		h.capture = false
	}
	switch n {
	case davPropstat:
		if statusOK(h.ps.status) {
			h.isCal = h.isCal || h.ps.cal
			if h.ps.ctag != "" {
				h.col.CTag = h.ps.ctag
			}
			if h.ps.token != "" {
				h.col.Token = h.ps.token
			}
			if h.ps.comp != "" {
				h.col.Comp = h.ps.comp
			}
		}
	case davResponse:
		if h.isCal {
			if h.col.CTag == "" {
				h.col.CTag = h.col.Token // servers without getctag: the token moves too
			}
			h.out = append(h.out, h.col)
		}
	}
	h.stack = h.stack[:len(h.stack)-1]
	for len(h.decls) > 0 && h.decls[len(h.decls)-1].depth >= len(h.stack) {
		h.decls = h.decls[:len(h.decls)-1]
	}
	return nil
}

func (h *homeBuilder) done() ([]collection, error) {
	if !h.sawRoot || len(h.stack) > 0 {
		return nil, errors.New("parse multistatus: truncated document")
	}
	return h.out, nil
}

// parseHomeXML is parseHome with the encoding/xml tokenizer: no reflection
// and no namespace translation per token.
func parseHomeXML(b []byte) ([]collection, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	var h homeBuilder
	for {
		tok, err := d.RawToken()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("parse multistatus: %w", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			err = h.start(t.Name, t.Attr)
		case xml.CharData:
			h.chardata(t)
		case xml.EndElement:
			err = h.end(t.Name)
		}
		if err != nil {
			return nil, err
		}
	}
	return h.done()
}

// scanHome is parseHome for plain XML: an optional <?xml version="1.0"
// encoding="utf-8"?> declaration, then elements with ASCII names (at most
// one colon), attributes in quotes without '&' or '<', and text without
// '&', ']' or '\r'. ok is false for anything else, and for anything
// malformed: parseHomeXML then decides.
func scanHome(b []byte) (cols []collection, ok bool) {
	// s shares b's bytes (the answer's buffer is pooled and reused after
	// the parse): what is kept is copied, text by homeBuilder.end and
	// attribute values by start.
	s := unsafe.String(unsafe.SliceData(b), len(b))
	p := scanSpace(s, 0)
	if strings.HasPrefix(s[p:], "<?xml") {
		end := strings.Index(s[p:], "?>")
		if end < 0 || !plainDecl(s[p+len("<?xml"):p+end]) {
			return nil, false
		}
		p = scanSpace(s, p+end+2)
	}
	// Room for the depth and the namespaces of a multistatus: no regrowing.
	h := homeBuilder{stack: make([]homeElem, 0, 16), decls: make([]nsDecl, 0, 8)}
	attrs := make([]xml.Attr, 0, 4)
	for p < len(s) {
		if s[p] != '<' {
			q := p
			for q < len(s) && s[q] != '<' {
				c := s[q]
				switch {
				case c == '&' || c == ']' || c == '\r':
					return nil, false
				case c >= 0x80:
					r, n := utf8.DecodeRuneInString(s[q:])
					if r == utf8.RuneError || !xmlChar(r) {
						return nil, false
					}
					q += n
					continue
				case c < 0x20 && c != '\t' && c != '\n':
					return nil, false
				}
				q++
			}
			if len(h.stack) == 0 && scanSpace(s[p:q], 0) != q-p {
				return nil, false // text outside the root
			}
			h.chardata(b[p:q])
			p = q
			continue
		}
		p++
		if p < len(s) && s[p] == '/' {
			name, q, good := scanName(s, p+1)
			if !good {
				return nil, false
			}
			q = scanSpace(s, q)
			if q >= len(s) || s[q] != '>' || h.end(name) != nil {
				return nil, false
			}
			p = q + 1
			continue
		}
		if len(h.stack) == 0 && h.sawRoot {
			return nil, false // a second root
		}
		name, q, good := scanName(s, p)
		if !good {
			return nil, false
		}
		attrs = attrs[:0]
		for {
			r := scanSpace(s, q)
			if r >= len(s) {
				return nil, false
			}
			if s[r] == '>' || strings.HasPrefix(s[r:], "/>") {
				q = r
				break
			}
			if r == q {
				return nil, false // no space before an attribute
			}
			an, r, good := scanName(s, r)
			if !good || r+1 >= len(s) || s[r] != '=' || (s[r+1] != '"' && s[r+1] != '\'') {
				return nil, false
			}
			end := strings.IndexByte(s[r+2:], s[r+1])
			if end < 0 {
				return nil, false
			}
			v := s[r+2 : r+2+end]
			if strings.ContainsAny(v, "&<\r\n\t") || !plainText(v) {
				return nil, false
			}
			attrs = append(attrs, xml.Attr{Name: an, Value: v})
			q = r + 2 + end + 1
		}
		if h.start(name, attrs) != nil {
			return nil, false
		}
		if s[q] == '/' {
			if h.end(name) != nil {
				return nil, false
			}
			q++
		}
		p = q + 1
	}
	cols, err := h.done()
	return cols, err == nil
}

// plainDecl accepts the content of an XML declaration that says version
// 1.0 and, if anything, UTF-8 (what encoding/xml reads without help).
func plainDecl(d string) bool {
	f := strings.Fields(d)
	if len(f) == 0 || len(f) > 2 || f[0] != `version="1.0"` && f[0] != `version='1.0'` {
		return false
	}
	return len(f) == 1 || strings.EqualFold(f[1], `encoding="utf-8"`) || strings.EqualFold(f[1], `encoding='utf-8'`)
}

// scanName reads an element or attribute name at s[p:]: ASCII letters,
// digits, '-', '_' and '.', not starting with a digit, '-' or '.', with at
// most one colon inside (prefix:local). It returns the name split at the
// colon, as encoding/xml's RawToken does, and where it ends.
func scanName(s string, p int) (xml.Name, int, bool) {
	q, colon := p, -1
	for q < len(s) {
		c := s[q]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_':
		case '0' <= c && c <= '9', c == '-', c == '.':
			if q == p || q == colon+1 {
				return xml.Name{}, 0, false
			}
		case c == ':':
			if q == p || colon >= 0 {
				return xml.Name{}, 0, false
			}
			colon = q
		default:
			goto done
		}
		q++
	}
done:
	if q == p || q == colon+1 {
		return xml.Name{}, 0, false
	}
	if colon < 0 {
		return xml.Name{Local: s[p:q]}, q, true
	}
	return xml.Name{Space: s[p:colon], Local: s[colon+1 : q]}, q, true
}

func scanSpace(s string, p int) int {
	for p < len(s) && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r') {
		p++
	}
	return p
}

// plainText reports whether s is valid UTF-8 made of XML characters.
func plainText(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || !xmlChar(r) {
			return false
		}
	}
	return true
}

// xmlChar is XML 1.0's Char production.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
