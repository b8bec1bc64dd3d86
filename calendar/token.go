package calendar

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// Sync tokens and ctags are made of the store's revision (Seq): a
// collection's Seq is the revision of the last change inside it, so the
// token names exactly the state a client saw. RFC 6578 wants a URI:
//
//	https://duebridge.invalid/sync/<epoch>/<seq>
//
// The epoch is a random value kept in the database (Backend.SyncEpoch). A
// fresh or restored database gets a new one, so a phone's token from
// another database is refused (403 valid-sync-token) and the phone re-syncs
// in full, instead of being told "nothing changed" against revisions that
// mean something else.
const tokenPrefix = "https://duebridge.invalid/sync/"

// epochCache keeps the epoch once read: it never changes while the
// database is the same.
type epochCache struct {
	mu    sync.Mutex
	epoch string
}

func (e *epochCache) get(ctx context.Context, be Backend) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.epoch != "" {
		return e.epoch, nil
	}
	epoch, err := be.SyncEpoch(ctx)
	if err != nil {
		return "", fmt.Errorf("sync epoch: %w", err)
	}
	e.epoch = epoch
	return epoch, nil
}

// collectionTags is syncToken and ctag of one list in one allocation: a
// home poll asks for both of every list, and each was two (the number,
// then the concatenation).
func collectionTags(epoch string, seq int64) (token, ctag string) {
	var num [20]byte
	n := strconv.AppendInt(num[:0], seq, 10)
	var b strings.Builder
	b.Grow(len(tokenPrefix) + 2*len(epoch) + 2 + 2*len(n))
	b.WriteString(tokenPrefix)
	b.WriteString(epoch)
	b.WriteByte('/')
	b.Write(n)
	mid := b.Len()
	b.WriteString(epoch)
	b.WriteByte('-')
	b.Write(n)
	s := b.String()
	return s[:mid], s[mid:]
}

func syncToken(epoch string, seq int64) string {
	return tokenPrefix + epoch + "/" + strconv.FormatInt(seq, 10)
}

// ctag is the CalendarServer getctag: opaque, changes with the sync token.
func ctag(epoch string, seq int64) string {
	return epoch + "-" + strconv.FormatInt(seq, 10)
}

// parseToken returns the revision in a token of this store; ok is false for
// anything else (another epoch, a foreign format, a negative number).
func parseToken(epoch, tok string) (seq int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(tok), tokenPrefix)
	if !found {
		return 0, false
	}
	ep, num, found := strings.Cut(rest, "/")
	if !found || ep != epoch {
		return 0, false
	}
	seq, err := strconv.ParseInt(num, 10, 64)
	if err != nil || seq < 0 {
		return 0, false
	}
	return seq, true
}
