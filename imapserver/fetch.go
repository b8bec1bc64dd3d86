package imapserver

import (
	"bufio"
	"bytes"
	"container/list"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"
)

// fetchChunk is how many messages one backend read loads for FETCH and
// SEARCH: large enough to amortise the query, small enough to bound memory.
const fetchChunk = 128

func (s *session) Fetch(w *goimapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	sel := s.sel.Load()
	st := sel.st
	markSeen := false
	if !sel.readOnly {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	st.mu.Lock()
	items := sel.resolve(numSet)
	var seenNow map[imap.UID]bool
	if markSeen {
		var err error
		if seenNow, err = s.markSeen(sel, items); err != nil {
			st.mu.Unlock()
			return err
		}
	}
	st.mu.Unlock()

	need := needsOf(options)
	lowerNames := fieldLists(options)
	for chunk := range slices.Chunk(items, fetchChunk) {
		loaded, err := s.load(st, chunk, need)
		if err != nil {
			return err
		}
		for i, it := range chunk {
			if loaded[i].missing {
				continue // expunged since the command began
			}
			if err := writeFetch(w, it, &loaded[i], options, lowerNames, seenNow[it.meta.uid]); err != nil {
				return err
			}
		}
	}
	return nil
}

// markSeen sets \Seen on the items that lack it (a non-PEEK body fetch) and
// updates their metadata; it returns which ones changed. Call with st.mu.
func (s *session) markSeen(sel *selection, items []item) (map[imap.UID]bool, error) {
	st := sel.st
	var uids []uint32
	for _, it := range items {
		if !slices.Contains(it.meta.flags, imap.FlagSeen) {
			uids = append(uids, uint32(it.meta.uid))
		}
	}
	if len(uids) == 0 {
		return nil, nil
	}
	changed, err := s.backend().StoreFlags(s.ctx(), s.user, st.key.name, uids, FlagsAdd, []string{string(imap.FlagSeen)})
	if err != nil {
		return nil, fmt.Errorf("set \\Seen: %w", err)
	}
	if _, err := st.refreshLocked(s.ctx(), s.backend(), sel.tracker); err != nil {
		return nil, err
	}
	seen := make(map[imap.UID]bool, len(changed))
	for _, m := range changed {
		seen[imap.UID(m.UID)] = true
	}
	for i := range items {
		if idx := st.index(items[i].meta.uid); idx >= 0 {
			items[i].meta = st.msgs[idx]
		}
	}
	return seen, nil
}

// need says what a FETCH or SEARCH needs beyond metadata.
type need struct {
	parsed bool // header, envelope or body structure (cacheable)
	data   bool // the full message
}

func needsOf(o *imap.FetchOptions) need {
	var n need
	n.parsed = o.Envelope || o.BodyStructure != nil
	for _, bs := range o.BodySection {
		if headerOnly(bs) {
			n.parsed = true
		} else {
			n.data = true
		}
	}
	if len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0 {
		n.data = true
	}
	return n
}

// headerOnly reports a section served from the header alone:
// BODY[HEADER], BODY[HEADER.FIELDS (...)], BODY[HEADER.FIELDS.NOT (...)].
func headerOnly(bs *imap.FetchItemBodySection) bool {
	return len(bs.Part) == 0 && bs.Specifier == imap.PartSpecifierHeader
}

// loadedMsg is what load found for one item.
type loadedMsg struct {
	parsed  *parsedMsg
	data    []byte
	missing bool
}

// load reads what items need: parsed headers and structures from the cache
// where possible, message bytes in one backend read for the rest.
func (s *session) load(st *mailboxState, items []item, n need) ([]loadedMsg, error) {
	out := make([]loadedMsg, len(items))
	if !n.parsed && !n.data {
		return out, nil
	}
	var uids []uint32
	for i, it := range items {
		if n.parsed {
			out[i].parsed = s.srv.cache.get(cacheKey{st.key, st.uidValidity, it.meta.uid})
		}
		if n.data || out[i].parsed == nil {
			uids = append(uids, uint32(it.meta.uid))
		}
	}
	if len(uids) == 0 {
		return out, nil
	}
	data, err := s.backend().Bodies(s.ctx(), s.user, st.key.name, uids)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	for i, it := range items {
		if !n.data && out[i].parsed != nil {
			continue
		}
		b, ok := data[uint32(it.meta.uid)]
		if !ok {
			out[i].missing = true
			continue
		}
		out[i].data = b
		if n.parsed && out[i].parsed == nil {
			out[i].parsed = parseMessage(b)
			s.srv.cache.put(cacheKey{st.key, st.uidValidity, it.meta.uid}, out[i].parsed)
		}
	}
	return out, nil
}

// fieldLists returns, per body section of a FETCH, the lower-cased names
// of a HEADER.FIELDS or HEADER.FIELDS.NOT section (nil for other sections).
func fieldLists(o *imap.FetchOptions) [][]string {
	out := make([][]string, len(o.BodySection))
	for i, bs := range o.BodySection {
		if !headerOnly(bs) {
			continue
		}
		names := bs.HeaderFields
		if len(names) == 0 {
			names = bs.HeaderFieldsNot
		}
		if len(names) == 0 {
			continue
		}
		out[i] = make([]string, len(names))
		for j, n := range names {
			out[i][j] = strings.ToLower(n)
		}
	}
	return out
}

func writeFetch(w *goimapserver.FetchWriter, it item, m *loadedMsg, o *imap.FetchOptions, lowerNames [][]string, seenNow bool) error {
	rw := w.CreateMessage(it.seq)
	if o.UID {
		rw.WriteUID(it.meta.uid)
	}
	// A fetch that just set \Seen reports the new flags with the data.
	if o.Flags || seenNow {
		rw.WriteFlags(it.meta.flags)
	}
	if o.InternalDate {
		rw.WriteInternalDate(it.meta.date)
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(it.meta.size)
	}
	if o.Envelope {
		rw.WriteEnvelope(m.parsed.envelope)
	}
	if o.BodyStructure != nil {
		rw.WriteBodyStructure(m.parsed.structure)
	}
	for i, bs := range o.BodySection {
		if names := lowerNames[i]; names != nil && m.parsed != nil && m.parsed.crlf && bs.Partial == nil {
			size, pick := m.parsed.headerFields(names, len(bs.HeaderFieldsNot) > 0)
			wc := rw.WriteBodySection(echoSection(bs), int64(size))
			var err error
			for b := range pick {
				if _, err = wc.Write(b); err != nil {
					break
				}
			}
			if cerr := wc.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
			continue
		}
		src := m.data
		if src == nil && headerOnly(bs) {
			src = m.parsed.header
		}
		b := goimapserver.ExtractBodySection(bytes.NewReader(src), bs)
		if err := writeLiteral(rw.WriteBodySection(echoSection(bs), int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bs := range o.BinarySection {
		b := goimapserver.ExtractBinarySection(bytes.NewReader(m.data), bs)
		if err := writeLiteral(rw.WriteBinarySection(bs, int64(len(b))), b); err != nil {
			return err
		}
	}
	for _, bss := range o.BinarySectionSize {
		rw.WriteBinarySectionSize(bss, goimapserver.ExtractBinarySectionSize(bytes.NewReader(m.data), bss))
	}
	return rw.Close()
}

func writeLiteral(wc interface {
	Write([]byte) (int, error)
	Close() error
}, b []byte) error {
	_, err := wc.Write(b)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// parsedMsg is what FETCH ENVELOPE/BODYSTRUCTURE/BODY[HEADER...] and
// SEARCH HEADER need. Messages never change, so it stays valid for as long
// as the UID exists.
type parsedMsg struct {
	header    []byte // the header block, blank line included
	fields    []rawField
	crlf      bool // every header line ends in CRLF: fields serve HEADER.FIELDS
	envelope  *imap.Envelope
	structure imap.BodyStructure
}

// rawField is one header field as it appears in header (folded lines and
// line end included), with its name lower-cased for matching.
type rawField struct {
	key string
	raw []byte
}

func parseMessage(data []byte) *parsedMsg {
	end := headerEnd(data)
	p := &parsedMsg{header: bytes.Clone(data[:end])}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(p.header)))
	if err != nil {
		h = textproto.Header{}
	}
	p.envelope = goimapserver.ExtractEnvelope(h)
	p.structure = goimapserver.ExtractBodyStructure(bytes.NewReader(data))
	p.fields = splitFields(p.header)
	// go-message writes header lines with CRLF whatever they had; serve
	// bare-LF headers through it to give the same bytes.
	p.crlf = bytes.Count(p.header, []byte("\n")) == bytes.Count(p.header, []byte("\r\n"))
	return p
}

// splitFields cuts a header block into fields: a line and the continuation
// lines (starting with a space or tab) that follow it.
func splitFields(h []byte) []rawField {
	var out []rawField
	for len(h) > 0 {
		if h[0] == '\r' || h[0] == '\n' {
			break // the blank line ending the header
		}
		end := 0
		for {
			i := bytes.IndexByte(h[end:], '\n')
			if i < 0 {
				end = len(h)
				break
			}
			end += i + 1
			if end >= len(h) || (h[end] != ' ' && h[end] != '\t') {
				break
			}
		}
		name, _, _ := bytes.Cut(h[:end], []byte{':'})
		out = append(out, rawField{key: strings.ToLower(string(bytes.TrimSpace(name))), raw: h[:end]})
		h = h[end:]
	}
	return out
}

// headerFields writes BODY[HEADER.FIELDS (...)] or BODY[HEADER.FIELDS.NOT
// (...)] from the cached fields, with the bytes go-imap's
// ExtractBodySection would give, without parsing the header again: iOS asks
// for header fields of every message on each sync. names are lower-cased.
func (p *parsedMsg) headerFields(names []string, not bool) (size int, pick func(yield func([]byte) bool)) {
	keep := func(f *rawField) bool { return slices.Contains(names, f.key) != not }
	for i := range p.fields {
		if keep(&p.fields[i]) {
			size += len(p.fields[i].raw)
		}
	}
	size += 2
	return size, func(yield func([]byte) bool) {
		for i := range p.fields {
			if keep(&p.fields[i]) && !yield(p.fields[i].raw) {
				return
			}
		}
		yield([]byte("\r\n"))
	}
}

// headerEnd returns the length of the header block, blank line included.
func headerEnd(b []byte) int {
	switch {
	case bytes.HasPrefix(b, []byte("\r\n")):
		return 2
	case bytes.HasPrefix(b, []byte("\n")):
		return 1
	}
	if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
		return i + 4
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		return i + 2
	}
	return len(b)
}

// cost is the cache's estimate of a parsed message's memory.
func (p *parsedMsg) cost() int { return 2*len(p.header) + 48*len(p.fields) + 1024 }

type cacheKey struct {
	mbox     mboxKey
	validity uint32
	uid      imap.UID
}

// msgCache is an LRU of parsed messages, bounded in (estimated) bytes and
// shared by all sessions: iOS fetches envelopes and structures of the same
// messages on every sync.
type msgCache struct {
	mu    sync.Mutex
	max   int
	bytes int
	ll    *list.List
	m     map[cacheKey]*list.Element
}

type cacheEntry struct {
	key cacheKey
	p   *parsedMsg
}

func newMsgCache(max int) *msgCache {
	return &msgCache{max: max, ll: list.New(), m: map[cacheKey]*list.Element{}}
}

func (c *msgCache) get(k cacheKey) *parsedMsg {
	if c.max <= 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok {
		return nil
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry).p
}

func (c *msgCache) put(k cacheKey, p *parsedMsg) {
	if c.max <= 0 || p.cost() > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		return
	}
	c.m[k] = c.ll.PushFront(&cacheEntry{k, p})
	c.bytes += p.cost()
	for c.bytes > c.max {
		e := c.ll.Back()
		ce := e.Value.(*cacheEntry)
		c.ll.Remove(e)
		delete(c.m, ce.key)
		c.bytes -= ce.p.cost()
	}
}

// echoSection returns the section as the answer names it. go-imap writes
// HEADER.FIELDS names as quoted strings; clients send atoms (iOS Mail:
// "HEADER.FIELDS (DATE FROM ...)") and some find the answer's section by
// comparing the text, as Dovecot, Cyrus and Gmail echo atoms. So names that
// are atoms go out as atoms, inside the specifier the library writes
// verbatim; any other name stays a quoted string.
func echoSection(bs *imap.FetchItemBodySection) *imap.FetchItemBodySection {
	names, kind := bs.HeaderFields, "FIELDS"
	if len(names) == 0 {
		names, kind = bs.HeaderFieldsNot, "FIELDS.NOT"
	}
	if len(names) == 0 || bs.Specifier != imap.PartSpecifierHeader {
		return bs
	}
	var b strings.Builder
	b.WriteString("HEADER." + kind + " (")
	for i, n := range names {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch {
		case isAtom(n):
			b.WriteString(n)
		case isQuotable(n):
			b.WriteString(quoteIMAP(n))
		default:
			return bs // a literal: leave it to the library
		}
	}
	b.WriteByte(')')
	out := *bs
	out.Specifier = imap.PartSpecifier(b.String())
	out.HeaderFields, out.HeaderFieldsNot = nil, nil
	return &out
}

// isAtom reports whether s is an IMAP atom (RFC 3501 ATOM-CHAR), without
// "]", which would end the section.
func isAtom(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch <= ' ' || ch >= 0x7f || strings.IndexByte(`(){%*"\]`, ch) >= 0 {
			return false
		}
	}
	return true
}

// isQuotable reports whether quoteIMAP keeps s intact: printable ASCII.
func isQuotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
