package imapserver

import (
	"bytes"
	"time"

	"github.com/emersion/go-imap/v2"
	dto "github.com/prometheus/client_model/go"
)

// Hooks for the external tests (package imapserver_test), which run on the
// real core: bridge imports this package, so they cannot live inside it.

// FuzzSeeds and CheckResponses are shared by the fuzz targets.
var (
	FuzzSeeds      = fuzzSeeds
	CheckResponses = checkResponses
)

// SetHandshakeTimeout shortens the TLS handshake limit.
func (s *Server) SetHandshakeTimeout(d time.Duration) { s.handshakeTimeout = d }

// OpenMessages reports how many messages the server holds for an open
// mailbox, or -1 if no session has it open.
func (s *Server) OpenMessages(user, mailbox string) int {
	st := s.reg.lookup(mboxKey{user, mailbox})
	if st == nil {
		return -1
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.msgs)
}

// KeywordLimitCount reads duebridge_imap_keyword_limit_total{limit}.
func (s *Server) KeywordLimitCount(limit string) float64 {
	var m dto.Metric
	s.metrics.keywordLimit.WithLabelValues(limit).Write(&m)
	return m.GetCounter().GetValue()
}

// RefreshPanics reads duebridge_imap_refresh_panics_total.
func (s *Server) RefreshPanics() float64 {
	var m dto.Metric
	s.metrics.panics.Write(&m)
	return m.GetCounter().GetValue()
}

// HeaderFieldsFast is what the header-field fast path writes for a
// HEADER.FIELDS(.NOT) section of data; ok is false where it does not apply
// (a header with bare LFs).
func HeaderFieldsFast(data []byte, bs *imap.FetchItemBodySection) (out []byte, size int, ok bool) {
	p := parseMessage(data)
	if !p.crlf {
		return nil, 0, false
	}
	lower := fieldLists(&imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{bs}})
	size, pick := p.headerFields(lower[0], len(bs.HeaderFieldsNot) > 0)
	var b bytes.Buffer
	for chunk := range pick {
		b.Write(chunk)
	}
	return b.Bytes(), size, true
}

// ReadBuffersHeld reports how many connections hold a read buffer.
func (s *Server) ReadBuffersHeld() int64 { return s.readBufsHeld.Load() }
