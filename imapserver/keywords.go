package imapserver

import (
	"fmt"
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"
)

// Keywords are the flags a client makes up ("$Work", "Later"). SELECT's
// FLAGS lists those in use in the mailbox, and a STORE that brings a new
// one announces the new list (RFC 3501 7.2.6) to every session. They are
// bounded per message, per mailbox and in length
// (limits.imap_keywords_per_message, _per_mailbox, imap_keyword_bytes):
// unbounded, one client could grow every FETCH and the mailbox's state.

func isKeyword(f imap.Flag) bool { return !strings.HasPrefix(string(f), `\`) }

// addKeywords adds the keywords among flags to the mailbox's announced
// list; it reports whether the list grew. Call with st.mu held.
func (st *mailboxState) addKeywords(flags []imap.Flag) bool {
	grew := false
	for _, f := range flags {
		if isKeyword(f) && !hasFlag(st.keywords, f) {
			st.keywords = append(st.keywords, f)
			grew = true
		}
	}
	if grew {
		slices.SortFunc(st.keywords, func(a, b imap.Flag) int {
			return strings.Compare(strings.ToLower(string(a)), strings.ToLower(string(b)))
		})
	}
	return grew
}

// flagList is what FLAGS announces: the system flags, then the keywords.
func (st *mailboxState) flagList() []imap.Flag {
	return append(slices.Clone(systemFlags), st.keywords...)
}

// keywordLimitError is a STORE refused by a keyword limit.
type keywordLimitError struct {
	limit string // the config key under limits., also the metric's label
	resp  *imap.Error
}

// keywordError is the answer to a STORE over a keyword limit: NO [LIMIT]
// naming the config key.
func keywordError(limit, format string, args ...any) *keywordLimitError {
	return &keywordLimitError{limit: limit, resp: &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
		Text: fmt.Sprintf(format, args...) + " (limits." + limit + ")"}}
}

// checkKeywords refuses a STORE that would break a keyword limit, before
// anything is written. Call with st.mu held and st refreshed.
func checkKeywords(lim Limits, st *mailboxState, items []item, op FlagOp, names []string) *keywordLimitError {
	var add []imap.Flag
	for _, n := range names {
		f := imap.Flag(n)
		if !isKeyword(f) {
			continue
		}
		if lim.KeywordBytes > 0 && len(n) > lim.KeywordBytes {
			return keywordError("imap_keyword_bytes", "Keywords are limited to %d bytes", lim.KeywordBytes)
		}
		if !hasFlag(add, f) {
			add = append(add, f)
		}
	}
	if len(add) == 0 || op == FlagsRemove {
		return nil
	}
	if lim.KeywordsPerMessage > 0 {
		for _, it := range items {
			n := len(add)
			if op == FlagsAdd {
				for _, f := range it.meta.flags {
					if isKeyword(f) && !hasFlag(add, f) {
						n++
					}
				}
			}
			if n > lim.KeywordsPerMessage {
				return keywordError("imap_keywords_per_message", "A message can have at most %d keywords", lim.KeywordsPerMessage)
			}
		}
	}
	if lim.KeywordsPerMailbox > 0 {
		// Keywords in use now (announced ones may no longer be).
		var inUse []imap.Flag
		for _, m := range st.msgs {
			for _, f := range m.flags {
				if isKeyword(f) && !hasFlag(inUse, f) {
					inUse = append(inUse, f)
				}
			}
		}
		n := len(inUse)
		for _, f := range add {
			if !hasFlag(inUse, f) {
				n++
			}
		}
		if n > lim.KeywordsPerMailbox {
			return keywordError("imap_keywords_per_mailbox", "A mailbox can have at most %d different keywords", lim.KeywordsPerMailbox)
		}
	}
	return nil
}
