package imapserver_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// selected is a raw connection logged in as alice with INBOX selected.
func selected(t *testing.T, ts *testServer) *rawConn {
	t.Helper()
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	rc.send("L1 LOGIN alice alice-pw", "L2 SELECT INBOX")
	rc.expect(`^L2 OK `)
	return rc
}

// TestSearchSmallerThenOtherKey: go-imap beta.8 dropped SMALLER when a
// later key was ANDed in (SENTSINCE, LARGER), so every message matched.
func TestSearchSmallerThenOtherKey(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "Ship release", "alice"))
	testsvc.Ingest(t, ts.svc, task("T-2", "Rotate keys", "alice"))
	rc := selected(t, ts)
	since := time.Now().AddDate(0, 0, -30).Format("2-Jan-2006")
	rc.send("1 SEARCH SMALLER 10 SENTSINCE " + since)
	rc.next(`^\* SEARCH$`)
	rc.next(`^1 OK `)
	rc.send("2 SEARCH SMALLER 10 LARGER 1")
	rc.next(`^\* SEARCH$`)
	rc.next(`^2 OK `)
	rc.send("3 SEARCH SMALLER 100000000 SENTSINCE " + since)
	rc.next(`^\* SEARCH 1 2$`)
	rc.next(`^3 OK `)
}

// TestSearchTextMatchesHeader: RFC 3501 6.4.4, TEXT is header or body.
func TestSearchTextMatchesHeader(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "Ship release", "alice"))
	rc := selected(t, ts)
	// The subject is "Assigned to you: Task ..." and the To address
	// alice@example.com appears only in the header.
	rc.send(`1 SEARCH TEXT "alice@example.com"`)
	rc.next(`^\* SEARCH 1$`)
	rc.next(`^1 OK `)
	rc.send(`2 SEARCH TEXT "Assigned to you"`)
	rc.next(`^\* SEARCH 1$`)
	rc.next(`^2 OK `)
	// Header text as it stands in the message: a field name, a name with
	// its value.
	rc.send(`4 SEARCH TEXT "subject: assigned"`)
	rc.next(`^\* SEARCH 1$`)
	rc.next(`^4 OK `)
	rc.send(`5 SEARCH TEXT "Message-ID"`)
	rc.next(`^\* SEARCH 1$`)
	rc.next(`^5 OK `)
	rc.send(`3 SEARCH TEXT "no-such-text-anywhere"`)
	rc.next(`^\* SEARCH$`)
	rc.next(`^3 OK `)
}

// TestHeaderFieldsEchoedAsAtoms: iOS Mail's header FETCH names fields as
// atoms; the answer names the section exactly so (Dovecot, Cyrus, Gmail).
func TestHeaderFieldsEchoedAsAtoms(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "Ship release", "alice"))
	rc := selected(t, ts)
	rc.send("1 UID FETCH 1 (UID BODY.PEEK[HEADER.FIELDS (DATE FROM Subject X-Priority)])")
	line := rc.next(`^\* 1 FETCH `)
	t.Logf("S: %s", line)
	if !strings.Contains(line, "BODY[HEADER.FIELDS (DATE FROM Subject X-Priority)] {") {
		t.Errorf("section not echoed with atoms: %q", line)
	}
	rc.expect(`^1 OK `)
	// A name that is no atom stays a quoted string; NOT works the same.
	rc.send(`2 FETCH 1 (BODY.PEEK[HEADER.FIELDS.NOT ("X Odd" Received)])`)
	line = rc.next(`^\* 1 FETCH `)
	if !strings.Contains(line, `BODY[HEADER.FIELDS.NOT ("X Odd" RECEIVED)] {`) && !strings.Contains(line, `BODY[HEADER.FIELDS.NOT ("X Odd" Received)] {`) {
		t.Errorf("mixed names: %q", line)
	}
	rc.expect(`^2 OK `)
	// Part prefixes keep working.
	rc.send(`3 FETCH 1 (BODY.PEEK[1.MIME] BODY.PEEK[HEADER])`)
	line = rc.next(`^\* 1 FETCH `)
	if !strings.Contains(line, `BODY[1.MIME] {`) {
		t.Errorf("part section: %q", line)
	}
	rc.expect(`^3 OK `)
}

// TestCapabilityAfterLoginHasID: ID is answered in every state, so it is
// advertised in every state.
func TestCapabilityAfterLoginHasID(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	rc := selected(t, ts)
	rc.send("1 CAPABILITY")
	line := rc.next(`^\* CAPABILITY `)
	if !strings.Contains(line+" ", " ID ") {
		t.Errorf("no ID after login: %q", line)
	}
	rc.next(`^1 OK `)
}

// TestLongID: RFC 2971 allows 30 fields of 1024 bytes; an ID of 20 KiB is
// answered, not ended with BYE.
func TestLongID(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	var b strings.Builder
	b.WriteString("1 ID (")
	for i := range 20 {
		fmt.Fprintf(&b, `"field%d" "%s" `, i, strings.Repeat("v", 1000))
	}
	b.WriteString(`"name" "Long")`)
	rc.send(b.String())
	rc.next(`^\* ID \(`)
	rc.next(`^1 OK `)
	// The same as literals.
	rc.send(`2 ID ("name" {5000}`)
	rc.next(`^\+ `)
	rc.send(strings.Repeat("x", 5000) + ` "os" {6000}`)
	rc.next(`^\+ `)
	rc.send(strings.Repeat("y", 6000) + `)`)
	rc.next(`^\* ID \(`)
	rc.next(`^2 OK `)
	rc.send("3 LOGIN alice alice-pw")
	rc.expect(`^3 OK `)
}

// TestClientErrorsAreNotServerBugs: a client's mistakes are answered BAD
// (or NO) naming the problem, never NO [SERVERBUG].
func TestClientErrorsAreNotServerBugs(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, Options{})
	testsvc.Ingest(t, ts.svc, task("T-1", "Ship release", "alice"))
	rc := selected(t, ts)
	for i, cmd := range []string{
		`SELECT "&"`,
		`STATUS "&Jjo" (MESSAGES)`,
		`LIST "" "&"`,
		`LIST "" "&AGE-"`,
		`LSUB "&Jjo-&Jjo-" "*"`,
		`UID FETCH 0 FLAGS`,
		`UID FETCH 0:1 FLAGS`,
		`FETCH 4294967296 FLAGS`,
		`UID STORE 4294967296 +FLAGS (\Seen)`,
		`SEARCH ` + strings.Repeat("(", 1000) + "ALL" + strings.Repeat(")", 1000),
		`SEARCH SUBJECT "` + strings.Repeat("x", 2000) + `" ` + strings.Repeat("(", 1000) + "ALL" + strings.Repeat(")", 1000),
	} {
		tag := fmt.Sprintf("E%d", i)
		rc.send(tag + " " + cmd)
		line := rc.expect(`^` + tag + ` `)
		if strings.Contains(line, "SERVERBUG") || !(strings.HasPrefix(line, tag+" BAD ") || strings.HasPrefix(line, tag+" NO ")) {
			t.Errorf("%s: %q", cmd, line)
		}
	}
	rc.send("Z NOOP")
	rc.expect(`^Z OK `)

	// Bad base64 in AUTHENTICATE, as initial response and as a reply.
	rc = ts.raw(t)
	rc.next(`^\* OK `)
	rc.send("A1 AUTHENTICATE PLAIN !!!notbase64")
	line := rc.next(`^A1 `)
	if !strings.HasPrefix(line, "A1 BAD ") || strings.Contains(line, "SERVERBUG") {
		t.Errorf("bad initial response: %q", line)
	}
	rc.send("A2 AUTHENTICATE PLAIN")
	rc.next(`^\+`)
	rc.send("!!!notbase64")
	line = rc.next(`^A2 `)
	if !strings.HasPrefix(line, "A2 BAD ") || strings.Contains(line, "SERVERBUG") {
		t.Errorf("bad response: %q", line)
	}
}

// TestAuthenticateRefusedBeforePrompt: without TLS on a server that has it,
// AUTHENTICATE PLAIN is refused at once; a "+" would invite the password in
// clear.
func TestAuthenticateRefusedBeforePrompt(t *testing.T) {
	t.Parallel()
	server, _ := devTLS(t)
	ts := newTestServer(t, Options{TLSConfig: server})
	rc := ts.raw(t)
	rc.next(`^\* OK `)
	rc.send("1 AUTHENTICATE PLAIN")
	rc.next(`^1 NO \[PRIVACYREQUIRED\] `)
	rc.send("2 NOOP")
	rc.next(`^2 OK `)
}

// TestLogoutFreesSlotAtOnce: at the per-user cap, a login right after
// another connection's OK LOGOUT succeeds.
func TestLogoutFreesSlotAtOnce(t *testing.T) {
	t.Parallel()
	cfg := testsvc.Config(t)
	cfg.Limits.IMAPConnsPerUser = 1
	ts := serve(t, testsvc.New(t, testsvc.Options{Config: cfg}), Options{})
	for i := range 30 {
		a := ts.raw(t)
		a.next(`^\* OK `)
		a.send("1 LOGIN alice alice-pw")
		a.expect(`^1 OK `)
		a.send("2 LOGOUT")
		a.next(`^\* BYE`)
		a.next(`^2 OK `)
		b := ts.raw(t)
		b.next(`^\* OK `)
		b.send("1 LOGIN alice alice-pw")
		line := b.expect(`^1 `)
		if !strings.HasPrefix(line, "1 OK ") {
			t.Fatalf("round %d: login after LOGOUT: %q", i, line)
		}
		b.send("2 LOGOUT")
		b.expect(`^2 OK `)
		a.c.Close()
		b.c.Close()
	}
}
