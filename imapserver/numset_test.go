package imapserver

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

// TestStaticSetsAfterStar: "n:*" with n above the largest number means the
// last message (RFC 9051 6.4.8). Replacing "*" must keep the set one that
// Contains can search: "4,6:*" with 3 messages holds 3, and so does the
// same UID set with UID 3 the largest.
func TestStaticSetsAfterStar(t *testing.T) {
	// As go-imap parses "4,6:*" (0 is "*").
	var seqs imap.SeqSet
	seqs.AddNum(4)
	seqs.AddRange(6, 0)
	if got := staticSeqSet(seqs, 3); !got.Contains(3) {
		t.Errorf("static %v of 4,6:* with 3 messages = %v, does not contain 3", seqs, got)
	}
	var uids imap.UIDSet
	uids.AddNum(4)
	uids.AddRange(6, 0)
	if got := staticUIDSet(uids, 3); !got.Contains(3) {
		t.Errorf("static %v of 4,6:* with UID 3 the largest = %v, does not contain 3", uids, got)
	}
	// Ordinary sets stay what they were.
	uids = nil
	uids.AddRange(1, 2)
	uids.AddNum(7)
	uids.AddRange(9, 0)
	got := staticUIDSet(uids, 12)
	for _, c := range []struct {
		uid  imap.UID
		want bool
	}{{1, true}, {2, true}, {3, false}, {7, true}, {8, false}, {9, true}, {12, true}, {13, false}} {
		if got.Contains(c.uid) != c.want {
			t.Errorf("static 1:2,7,9:* (max 12) = %v: Contains(%d) = %v", got, c.uid, !c.want)
		}
	}
}
