package config

import (
	"bytes"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// At a million users go-yaml's node tree of the whole file (about 3 KB a
// user) is most of a start's CPU and nearly all of its peak memory.
// scanUsers reads the top-level users list straight from the bytes when it
// is written in the plain block form the load tool and most admins write:
//
//	users:
//	  - name: alice
//	    password_hash: "$argon2id$..."
//	    app_passwords:
//	      - name: phone
//	        hash: '...'
//	    lead_times:
//	      - 15m
//	    identities:
//	      github: alice
//
// Each user becomes a small node tree of its own, decoded by decodeUser
// (users.go) as in the node path, so the key and type rules live in one
// place; the nodes are reused for the next user. The rest of the file goes
// through splitTop with the list's lines blanked (line numbers kept), and
// must show "users:" there as a top-level key with nothing under it, which
// proves the scanner found the real list. Anything the scanner is not sure
// of (flow style, anchors, tags, multi-line or block scalars, tabs, CR,
// control characters, odd indentation, a plain scalar go-yaml might read as
// something else) makes it decline, and the node path runs on the whole
// file as before: same result, same error texts (TestScanUsersMatchViper).

// scanUsersOn switches the scanner; tests turn it off to compare.
var scanUsersOn = true

func scanUsersIf(b []byte) (map[string]any, []rawUser, bool) {
	if !scanUsersOn {
		return nil, nil, false
	}
	return scanUsers(b)
}

// scanUsers decodes the users list of b; ok is false when it declines.
func scanUsers(b []byte) (rest map[string]any, users []rawUser, ok bool) {
	start, line := usersLine(b)
	if start < 0 {
		return nil, nil, false
	}
	s := userScanner{b: b, pos: start, strs: map[string]string{}}
	s.skipLine() // "users:"
	s.next()
	if s.eof || s.peekItem() < 0 {
		return nil, nil, false
	}
	indent := s.indent
	if !validBlock(b[start:]) {
		return nil, nil, false
	}
	// Room for every line that looks like an item of the list (an upper
	// bound), so a million users are not copied as the slice grows.
	item := append(append([]byte{'\n'}, bytes.Repeat([]byte{' '}, indent)...), "- "...)
	users = make([]rawUser, 0, bytes.Count(b[start:], item)+1)
	for !s.eof && s.indent == indent && s.peekItem() == indent {
		s.used = 0
		n := s.node(yaml.MappingNode, "!!map")
		if !s.mapItem(indent, n) {
			return nil, nil, false
		}
		var u rawUser
		if !decodeUser(n, &u) {
			return nil, nil, false
		}
		users = append(users, u)
	}
	// The list ends at a line in column 0 that is not an item of it.
	if !s.eof && (s.indent != 0 || s.b[s.pos] == '-') {
		return nil, nil, false
	}
	end := s.pos
	if s.eof {
		end = len(b)
	}
	// The rest keeps every line where it was, so its errors name the
	// right line; "users:" stays, with nothing under it now.
	lineEnd := start + bytes.IndexByte(b[start:], '\n') + 1
	blanked := b[lineEnd:end]
	restB := make([]byte, 0, len(b)-len(blanked)+bytes.Count(blanked, []byte{'\n'}))
	restB = append(restB, b[:lineEnd]...)
	restB = append(restB, bytes.Repeat([]byte{'\n'}, bytes.Count(blanked, []byte{'\n'}))...)
	restB = append(restB, b[end:]...)
	top, key, list, ok := splitTop(restB)
	if !ok || key == nil || key.Line != line || key.Column != 1 || key.Style != 0 ||
		list.Kind != yaml.ScalarNode || list.Tag != "!!null" || list.Value != "" || !plain(list) {
		return nil, nil, false
	}
	if rest, ok = restMap(top, key); !ok {
		return nil, nil, false
	}
	return rest, users, true
}

// usersLine finds the first line that is "users:" in column 0 (maybe with
// spaces and a comment after it): its offset and 1-based number.
func usersLine(b []byte) (start, line int) {
	for i := 0; i < len(b); {
		if bytes.HasPrefix(b[i:], []byte("users:")) {
			rest := b[i+len("users:"):]
			if nl := bytes.IndexByte(rest, '\n'); nl >= 0 {
				rest = rest[:nl]
			}
			if t := bytes.TrimLeft(rest, " "); len(t) == 0 || (t[0] == '#' && len(t) < len(rest)) {
				return i, bytes.Count(b[:i], []byte{'\n'}) + 1
			}
		}
		nl := bytes.IndexByte(b[i:], '\n')
		if nl < 0 {
			break
		}
		i += nl + 1
	}
	return -1, 0
}

// validBlock: every character from the users line to the end of the file
// is one go-yaml reads without complaint in a scalar or a comment (so a
// control character, invalid UTF-8 or a tab cannot vanish with the blanked
// lines). Checked past the list too: the scanner cannot tell cheaply where
// it will end, and the rest is usually short.
func validBlock(b []byte) bool {
	for i := 0; i < len(b); {
		if plainByte[b[i]] {
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError || !printableRune(r) {
			return false
		}
		i += size
	}
	return true
}

// plainByte: '\n' and printable ASCII; a table keeps validBlock's loop
// tight (it reads the whole file).
var plainByte = func() (t [256]bool) {
	t['\n'] = true
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	return t
}()

// printableRune: a non-ASCII rune YAML allows in content that go-yaml does
// not take for a line break or a byte order mark.
func printableRune(r rune) bool {
	switch {
	case r == 0x2028, r == 0x2029, r == 0xFEFF:
		return false
	case r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

// userScanner walks the list line by line. pos is the start of the current
// content line (blank and comment-only lines are skipped), indent its
// indentation.
type userScanner struct {
	b      []byte
	pos    int
	indent int
	eof    bool
	// nodes are reused from one user to the next: decodeUser copies out
	// what it keeps.
	nodes []*yaml.Node
	used  int
	// strs holds the keys, allocated once; tags the tags of plain scalars
	// that needed go-yaml's own resolution, resolved once.
	strs map[string]string
	tags map[string]string
}

func (s *userScanner) skipLine() {
	if nl := bytes.IndexByte(s.b[s.pos:], '\n'); nl >= 0 {
		s.pos += nl + 1
	} else {
		s.pos = len(s.b)
	}
}

// next moves to the next content line at or after pos.
func (s *userScanner) next() {
	for s.pos < len(s.b) {
		i := s.pos
		for i < len(s.b) && s.b[i] == ' ' {
			i++
		}
		if i < len(s.b) && s.b[i] != '\n' && s.b[i] != '#' {
			s.indent = i - s.pos
			return
		}
		s.skipLine()
	}
	s.eof = true
}

// peekItem: the column of the "- " that starts the current line, or -1.
func (s *userScanner) peekItem() int {
	i := s.pos + s.indent
	if i+1 < len(s.b) && s.b[i] == '-' && s.b[i+1] == ' ' {
		return s.indent
	}
	return -1
}

// rest is the current line from column col, without the newline.
func (s *userScanner) rest(col int) []byte {
	l := s.b[s.pos+col:]
	if nl := bytes.IndexByte(l, '\n'); nl >= 0 {
		l = l[:nl]
	}
	return l
}

func (s *userScanner) node(kind yaml.Kind, tag string) *yaml.Node {
	if s.used == len(s.nodes) {
		s.nodes = append(s.nodes, new(yaml.Node))
	}
	n := s.nodes[s.used]
	s.used++
	*n = yaml.Node{Kind: kind, Tag: tag, Content: n.Content[:0]}
	return n
}

// mapItem reads a sequence item "- key: ..." whose dash is at col.
func (s *userScanner) mapItem(col int, n *yaml.Node) bool {
	return keyLen(s.rest(col+2)) > 0 && s.mapping(col+2, n)
}

// scalarItem reads a sequence item "- value" whose dash is at col.
func (s *userScanner) scalarItem(col int) *yaml.Node {
	text := s.rest(col + 2)
	if len(text) == 0 || text[0] == ' ' {
		return nil // "-  x": unusual indentation
	}
	v := s.scalar(text)
	if v == nil {
		return nil
	}
	s.skipLine()
	s.next()
	if !s.eof && s.indent > col {
		return nil // continued over lines
	}
	return v
}

// mapping reads "key: value" entries at col, the first on the current line
// (maybe after "- ").
func (s *userScanner) mapping(col int, n *yaml.Node) bool {
	for {
		text := s.rest(col)
		k := keyLen(text)
		if k <= 0 {
			return false
		}
		key := s.key(text[:k])
		if key == nil {
			return false
		}
		n.Content = append(n.Content, key)
		after := text[k+1:] // past ':'
		if t := bytes.TrimLeft(after, " "); len(t) > 0 && t[0] != '#' {
			v := s.scalar(after[1:])
			if v == nil {
				return false
			}
			n.Content = append(n.Content, v)
			s.skipLine()
			s.next()
			if !s.eof && s.indent > col {
				return false // continued over lines
			}
		} else {
			if len(t) > 0 && len(t) == len(after) {
				return false // "key:#": not a comment
			}
			s.skipLine()
			s.next()
			v, ok := s.block(col)
			if !ok {
				return false
			}
			n.Content = append(n.Content, v)
		}
		if s.eof || s.indent < col {
			return true
		}
		if s.indent != col {
			return false
		}
	}
}

// block reads the value of a key at col written on the lines below it: a
// sequence at col or deeper, or a mapping deeper.
func (s *userScanner) block(col int) (*yaml.Node, bool) {
	if s.eof || s.indent < col {
		return nil, false // empty: null, which viper treats its own way
	}
	ind := s.indent
	if s.peekItem() == ind {
		n := s.node(yaml.SequenceNode, "!!seq")
		for !s.eof && s.indent == ind && s.peekItem() == ind {
			var e *yaml.Node
			if keyLen(s.rest(ind+2)) > 0 {
				if e = s.node(yaml.MappingNode, "!!map"); !s.mapItem(ind, e) {
					return nil, false
				}
			} else if e = s.scalarItem(ind); e == nil {
				return nil, false
			}
			n.Content = append(n.Content, e)
		}
		if !s.eof && s.indent > ind {
			return nil, false
		}
		return n, true
	}
	if ind == col {
		return nil, false
	}
	n := s.node(yaml.MappingNode, "!!map")
	if !s.mapping(ind, n) {
		return nil, false
	}
	return n, true
}

// keyLen: the length of a "key:" at the start of text, where key is lower
// case letters, digits and _ and the colon ends the line or comes before a
// space; 0 if text does not start so.
func keyLen(text []byte) int {
	i := 0
	for i < len(text) && (text[i] >= 'a' && text[i] <= 'z' || text[i] >= '0' && text[i] <= '9' || text[i] == '_') {
		i++
	}
	if i == 0 || i >= len(text) || text[i] != ':' || (i+1 < len(text) && text[i+1] != ' ') {
		return 0
	}
	return i
}

func (s *userScanner) key(k []byte) *yaml.Node {
	str, ok := s.strs[string(k)]
	if !ok {
		if len(s.strs) > 1000 { // identity kinds are few; never grow without bound
			return nil
		}
		str = string(k)
		s.strs[str] = str
	}
	tag := s.resolve(str)
	if tag == "" {
		return nil
	}
	n := s.node(yaml.ScalarNode, tag)
	n.Value = str
	return n
}

// scalar reads a one-line scalar value: double-quoted with no escapes but
// \" and \\, single-quoted, or plain. nil if it is none of these or
// anything follows it but a comment.
func (s *userScanner) scalar(text []byte) *yaml.Node {
	text = bytes.TrimLeft(text, " ")
	if len(text) == 0 {
		return nil
	}
	var (
		val   []byte
		style yaml.Style
		tail  []byte
	)
	switch q := text[0]; q {
	case '"', '\'':
		style = yaml.DoubleQuotedStyle
		if q == '\'' {
			style = yaml.SingleQuotedStyle
		}
		i, escaped := 1, false
		for ; i < len(text); i++ {
			c := text[i]
			if q == '"' && c == '\\' {
				if i+1 >= len(text) || (text[i+1] != '"' && text[i+1] != '\\') {
					return nil
				}
				escaped = true
				i++
				continue
			}
			if c == q {
				if q == '\'' && i+1 < len(text) && text[i+1] == '\'' {
					escaped = true
					i++
					continue
				}
				break
			}
		}
		if i >= len(text) {
			return nil // no closing quote: continued over lines
		}
		val, tail = text[1:i], text[i+1:]
		if escaped {
			val = unescape(val, q)
		}
	default:
		// Plain: printable ASCII, no indicator first, nothing that could
		// end it early or make it a flow collection, a key or a comment.
		end := len(text)
		if c := bytes.Index(text, []byte(" #")); c >= 0 {
			end = c
		}
		val = bytes.TrimRight(text[:end], " ")
		tail = text[len(val):]
		if len(val) == 0 || bytes.IndexByte([]byte("-?:,[]{}#&*!|>'\"%@`"), val[0]) >= 0 ||
			val[len(val)-1] == ':' || bytes.Contains(val, []byte(": ")) {
			return nil
		}
		for _, c := range val {
			if c < 0x20 || c >= 0x7f || c == '#' || c == ',' || c == '[' || c == ']' || c == '{' || c == '}' {
				return nil
			}
		}
	}
	if t := bytes.TrimLeft(tail, " "); len(t) > 0 && (t[0] != '#' || len(t) == len(tail)) {
		return nil
	}
	n := s.node(yaml.ScalarNode, "!!str")
	n.Style = style
	n.Value = string(val)
	if style == 0 {
		if n.Tag = s.resolve(n.Value); n.Tag == "" {
			return nil
		}
	}
	return n
}

func unescape(v []byte, q byte) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if (q == '"' && v[i] == '\\') || (q == '\'' && v[i] == '\'') {
			i++
		}
		out = append(out, v[i])
	}
	return out
}

// resolve gives a plain scalar's tag as go-yaml v3 does (resolve.go): the
// few words of its table are booleans and nulls, other words strings;
// what starts with a digit, a sign, '.' or '<' (numbers, timestamps,
// .inf, the merge key) goes to go-yaml itself, once per distinct text. ""
// if it does not read back as the same one plain scalar.
func (s *userScanner) resolve(v string) string {
	switch v[0] {
	case 'y', 'Y', 'n', 'N', 't', 'T', 'f', 'F', 'o', 'O', '~':
		switch v {
		case "true", "True", "TRUE", "false", "False", "FALSE":
			return "!!bool"
		case "~", "null", "Null", "NULL":
			return "!!null"
		}
		return "!!str"
	case '+', '-', '.', '<', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
	default:
		return "!!str"
	}
	if tag, ok := s.tags[v]; ok {
		return tag
	}
	var doc yaml.Node
	tag := ""
	if yaml.Unmarshal([]byte(v), &doc) == nil && len(doc.Content) == 1 {
		if n := doc.Content[0]; n.Kind == yaml.ScalarNode && n.Style == 0 && n.Value == v {
			tag = n.Tag
		}
	}
	if s.tags == nil {
		s.tags = map[string]string{}
	}
	if len(s.tags) < 10000 {
		s.tags[v] = tag
	}
	return tag
}
