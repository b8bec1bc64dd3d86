package imapserver

import (
	"bufio"
	"bytes"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Search evaluates criteria on metadata in memory and reads headers (from
// the cache) or bodies only when the criteria ask for them.
func (s *session) Search(kind goimapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	sel := s.sel.Load()
	st := sel.st
	st.mu.Lock()
	all := sel.resolve(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}})
	var maxSeq uint32
	var maxUID imap.UID
	if n := len(all); n > 0 {
		maxSeq, maxUID = all[n-1].seq, all[n-1].meta.uid
	}
	st.mu.Unlock()
	c := staticCriteria(*criteria, maxSeq, maxUID)

	n := criteriaNeeds(&c)
	var seqs imap.SeqSet
	var uids imap.UIDSet
	data := &imap.SearchData{}
	for chunk := range slices.Chunk(all, fetchChunk) {
		loaded, err := s.load(st, chunk, n)
		if err != nil {
			return nil, err
		}
		for i, it := range chunk {
			if loaded[i].missing || !matches(&c, it, &loaded[i]) {
				continue
			}
			num := it.seq
			if kind == goimapserver.NumKindUID {
				num = uint32(it.meta.uid)
				uids.AddNum(it.meta.uid)
			} else {
				seqs.AddNum(it.seq)
			}
			if data.Min == 0 || num < data.Min {
				data.Min = num
			}
			data.Max = max(data.Max, num)
			data.Count++
		}
	}
	if kind == goimapserver.NumKindUID {
		data.All = uids
		if uids == nil {
			data.All = imap.UIDSet{}
		}
	} else {
		data.All = seqs
		if seqs == nil {
			data.All = imap.SeqSet{}
		}
	}
	return data, nil
}

// staticCriteria resolves "*" in the criteria's sets against the client's
// view of the mailbox.
func staticCriteria(c imap.SearchCriteria, maxSeq uint32, maxUID imap.UID) imap.SearchCriteria {
	seqs := make([]imap.SeqSet, len(c.SeqNum))
	for i, s := range c.SeqNum {
		seqs[i] = staticSeqSet(s, maxSeq)
	}
	c.SeqNum = seqs
	uids := make([]imap.UIDSet, 0, len(c.UID))
	for _, u := range c.UID {
		if imap.IsSearchRes(u) {
			u = imap.UIDSet{} // SEARCHRES is not offered: "$" is empty
		}
		uids = append(uids, staticUIDSet(u, maxUID))
	}
	c.UID = uids
	not := make([]imap.SearchCriteria, len(c.Not))
	for i := range c.Not {
		not[i] = staticCriteria(c.Not[i], maxSeq, maxUID)
	}
	c.Not = not
	or := make([][2]imap.SearchCriteria, len(c.Or))
	for i := range c.Or {
		or[i] = [2]imap.SearchCriteria{staticCriteria(c.Or[i][0], maxSeq, maxUID), staticCriteria(c.Or[i][1], maxSeq, maxUID)}
	}
	c.Or = or
	return c
}

func criteriaNeeds(c *imap.SearchCriteria) need {
	var n need
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		n.parsed = true
	}
	if len(c.Body) > 0 || len(c.Text) > 0 {
		n.data = true
	}
	for i := range c.Not {
		sub := criteriaNeeds(&c.Not[i])
		n.parsed, n.data = n.parsed || sub.parsed, n.data || sub.data
	}
	for i := range c.Or {
		for j := range c.Or[i] {
			sub := criteriaNeeds(&c.Or[i][j])
			n.parsed, n.data = n.parsed || sub.parsed, n.data || sub.data
		}
	}
	return n
}

func matches(c *imap.SearchCriteria, it item, m *loadedMsg) bool {
	for _, set := range c.SeqNum {
		if !set.Contains(it.seq) {
			return false
		}
	}
	for _, set := range c.UID {
		if !set.Contains(it.meta.uid) {
			return false
		}
	}
	if !inDateRange(it.meta.date, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if !hasFlag(it.meta.flags, f) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if hasFlag(it.meta.flags, f) {
			return false
		}
	}
	if c.Larger > 0 && it.meta.size <= c.Larger {
		return false
	}
	if c.Smaller > 0 && it.meta.size >= c.Smaller {
		return false
	}
	if len(c.Header) > 0 || !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		h := m.header()
		for _, f := range c.Header {
			if !headerContains(h, f.Key, f.Value) {
				return false
			}
		}
		if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
			date, err := (&mail.Header{Header: gomessage.Header{Header: h}}).Date()
			if err != nil || !inDateRange(date, c.SentSince, c.SentBefore) {
				return false
			}
		}
	}
	for _, text := range c.Body {
		if !entityContains(m.data, text, false) {
			return false
		}
	}
	for _, text := range c.Text {
		if !entityContains(m.data, text, true) {
			return false
		}
	}
	for i := range c.Not {
		if matches(&c.Not[i], it, m) {
			return false
		}
	}
	for i := range c.Or {
		if !matches(&c.Or[i][0], it, m) && !matches(&c.Or[i][1], it, m) {
			return false
		}
	}
	return true
}

// hasFlag compares flags case-insensitively, as IMAP does.
func hasFlag(flags []imap.Flag, f imap.Flag) bool {
	return slices.ContainsFunc(flags, func(g imap.Flag) bool { return strings.EqualFold(string(g), string(f)) })
}

// inDateRange compares dates only, ignoring time and zone (RFC 9051 6.4.4).
func inDateRange(t, since, before time.Time) bool {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	if !before.IsZero() && !d.Before(before) {
		return false
	}
	return true
}

func (m *loadedMsg) header() textproto.Header {
	src := m.data
	if m.parsed != nil {
		src = m.parsed.header
	}
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(src)))
	if err != nil {
		return textproto.Header{}
	}
	return h
}

// headerContains is SEARCH HEADER: a case-insensitive substring of any field
// of that name; an empty value asks only that the field exists.
func headerContains(h textproto.Header, key, value string) bool {
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	value = strings.ToLower(value)
	mh := gomessage.Header{Header: h}
	for fields.Next() {
		v, err := mh.Text(key)
		if err != nil {
			v = fields.Value()
		}
		if strings.Contains(strings.ToLower(v), value) || strings.Contains(strings.ToLower(fields.Value()), value) {
			return true
		}
	}
	return false
}

// entityContains is SEARCH BODY/TEXT: a case-insensitive substring of a
// decoded text part (and, for TEXT, of a header field).
func entityContains(data []byte, text string, withHeader bool) bool {
	e, err := gomessage.Read(bytes.NewReader(data))
	if e == nil {
		return false
	}
	_ = err // unknown charsets still give a readable entity
	return walkContains(e, strings.ToLower(text), withHeader)
}

func walkContains(e *gomessage.Entity, text string, withHeader bool) bool {
	if withHeader {
		// The header as written, unfolded (so "subject: assigned" and a
		// field name match, as in Dovecot), then each value decoded.
		var raw bytes.Buffer
		textproto.WriteHeader(&raw, e.Header.Header)
		unfolded := bytes.ReplaceAll(bytes.ReplaceAll(raw.Bytes(), []byte("\r\n "), []byte(" ")), []byte("\r\n\t"), []byte(" "))
		if bytes.Contains(bytes.ToLower(unfolded), []byte(text)) {
			return true
		}
		for f := e.Header.Fields(); f.Next(); {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			if strings.Contains(strings.ToLower(v), text) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				return false
			}
			if walkContains(p, text, withHeader) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if !strings.HasPrefix(t, "text/") {
		return false
	}
	b, err := io.ReadAll(io.LimitReader(e.Body, 4<<20))
	if err != nil && len(b) == 0 {
		return false
	}
	return bytes.Contains(bytes.ToLower(b), []byte(text))
}
