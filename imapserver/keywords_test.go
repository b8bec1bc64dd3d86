package imapserver_test

import (
	"strings"
	"testing"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestKeywordsInFlags: a keyword set with STORE is announced in FLAGS, to
// the session that set it and to others (before the FETCH that carries
// it), and at the next SELECT.
func TestKeywordsInFlags(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "Ship release", "alice"))
	a, b := selected(t, ts), selected(t, ts)
	a.send(`1 STORE 1 +FLAGS ($Work)`)
	var sawFlags bool
	for {
		l := a.next(`.`)
		if strings.HasPrefix(l, "1 ") {
			if !strings.HasPrefix(l, "1 OK ") {
				t.Fatalf("STORE: %q", l)
			}
			break
		}
		if l == `* FLAGS (\Seen \Answered \Flagged \Deleted \Draft $Work)` {
			sawFlags = true
		}
	}
	if !sawFlags {
		t.Error("the storing session was not told the new FLAGS")
	}
	b.send("2 NOOP")
	b.next(`^\* FLAGS \(\\Seen \\Answered \\Flagged \\Deleted \\Draft \$Work\)$`)
	b.next(`^\* 1 FETCH \((UID 1 )?FLAGS \(\$Work\)\)$`)
	b.next(`^2 OK `)
	c := ts.raw(t)
	c.next(`^\* OK `)
	c.send("1 LOGIN alice alice-pw", "2 SELECT INBOX")
	c.expect(`^\* FLAGS \(\\Seen \\Answered \\Flagged \\Deleted \\Draft \$Work\)$`)
	c.expect(`^\* OK \[PERMANENTFLAGS \(\\Seen \\Answered \\Flagged \\Deleted \\Draft \$Work \\\*\)\]`)
	c.expect(`^2 OK `)
}

// TestKeywordLimits: keywords per message, per mailbox and their length
// are bounded; a STORE over a limit is NO [LIMIT] naming it, changes
// nothing and is counted.
func TestKeywordLimits(t *testing.T) {
	t.Parallel()
	cfg := testsvc.Config(t)
	cfg.Limits.IMAPKeywordsPerMessage = 2
	cfg.Limits.IMAPKeywordsPerMailbox = 3
	cfg.Limits.IMAPKeywordBytes = 10
	ts := serve(t, testsvc.New(t, testsvc.Options{Config: cfg}), Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "One", "alice"))
	testsvc.Ingest(t, ts.svc, task("T-2", "Two", "alice"))
	rc := selected(t, ts)
	metric := ts.srv.KeywordLimitCount

	rc.send(`1 STORE 1 +FLAGS.SILENT (k1 k2 k3)`)
	rc.next(`^1 NO \[LIMIT\] .*at most 2 keywords \(limits\.imap_keywords_per_message\)$`)
	rc.send(`2 STORE 1 +FLAGS.SILENT (k1 k2)`)
	rc.expect(`^2 OK `)
	rc.send(`3 STORE 1 +FLAGS.SILENT (k3)`)
	rc.next(`^3 NO \[LIMIT\] .*\(limits\.imap_keywords_per_message\)$`)
	rc.send(`4 STORE 2 +FLAGS.SILENT (abcdefghijk)`)
	rc.next(`^4 NO \[LIMIT\] Keywords are limited to 10 bytes \(limits\.imap_keyword_bytes\)$`)
	rc.send(`5 STORE 2 +FLAGS.SILENT (k3)`)
	rc.expect(`^5 OK `)
	rc.send(`6 STORE 2 +FLAGS.SILENT (k4)`)
	rc.next(`^6 NO \[LIMIT\] .*at most 3 different keywords \(limits\.imap_keywords_per_mailbox\)$`)
	// Replacing within the limits works; removing always does.
	rc.send(`7 STORE 2 FLAGS.SILENT (k1)`)
	rc.expect(`^7 OK `)
	rc.send(`8 STORE 1:2 -FLAGS.SILENT (k1 k2 k3 k4)`)
	rc.expect(`^8 OK `)
	rc.send(`9 FETCH 1:2 FLAGS`)
	rc.next(`^\* 1 FETCH \(FLAGS \(\)\)$`)
	rc.next(`^\* 2 FETCH \(FLAGS \(\)\)$`)
	rc.next(`^9 OK `)
	if metric("imap_keywords_per_message") != 2 || metric("imap_keyword_bytes") != 1 || metric("imap_keywords_per_mailbox") != 1 {
		t.Errorf("metric: message=%v bytes=%v mailbox=%v", metric("imap_keywords_per_message"), metric("imap_keyword_bytes"), metric("imap_keywords_per_mailbox"))
	}
}
