package imapserver

import (
	"slices"

	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestReaderStateMachine drives the wrapper's reader (conn.fill) step by
// step with a scripted client and a fake library that answers "+" to
// synchronising literals when told to, and checks what it hands on, what
// it answers itself and the state after each step.
func TestReaderStateMachine(t *testing.T) {
	t.Parallel()
	srv := New(newFakeBackend(Limits{LiteralBytes: 100}), Options{Logger: discardLogger(), Version: "1"})
	t.Cleanup(func() { srv.Close() })

	type step struct {
		piece string
		state readState
	}
	for _, tc := range []struct {
		name  string
		in    string
		auth  bool
		plus  bool // the library asks for literals
		steps []step
		wrote string // the wrapper's own answers (and the fake "+"), in order
	}{
		{name: "command", in: "a NOOP\r\n", steps: []step{{"a NOOP\r\n", stCommand}}},
		{name: "quoted string cut by the line's end", in: "a LIST \"\" \"\r\nb NOOP\r\n", steps: []step{{"b NOOP\r\n", stCommand}},
			wrote: "a BAD Quoted string not closed before the end of the line\r\n"},
		{name: "no tag: the library's to refuse", in: " ID\r\n", steps: []step{{" ID\r\n", stCommand}}},
		{name: "literals", in: "a LOGIN {5}\r\nalice {2}\r\npw\r\nb NOOP\r\n", plus: true, steps: []step{
			{"a LOGIN {5}\r\n", stLiteral}, {"alice", stContinued}, {" {2}\r\n", stLiteral}, {"pw", stContinued},
			{"\r\n", stCommand}, {"b NOOP\r\n", stCommand}}, wrote: "+ go\r\n+ go\r\n"},
		{name: "literal refused by the library", in: "a X {5}\r\nb NOOP\r\n", steps: []step{
			{"a X {5}\r\n", stLiteral}, {"b NOOP\r\n", stCommand}}},
		{name: "empty literal", in: "a SEARCH TEXT {0}\r\n\r\n", plus: true, steps: []step{
			{"a SEARCH TEXT {0}\r\n", stContinued}, {"\r\n", stCommand}}},
		{name: "literal over the limit refused whole", in: "a SEARCH TEXT {101}\r\nb NOOP\r\n", steps: []step{
			{"b NOOP\r\n", stCommand}}, wrote: "a NO [TOOBIG] Literals are limited to 100 bytes\r\n"},
		{name: "non-synchronising literal over LITERAL-", in: "a SEARCH TEXT {4097+}\r\n", steps: nil,
			wrote: "* BYE Non-synchronizing literals are limited to 4096 bytes\r\n"},
		{name: "ID answered here", in: "a ID (\"name\" {3}\r\niOS)\r\nb NOOP\r\n", steps: []step{{"b NOOP\r\n", stCommand}},
			wrote: "+ Ready for literal data\r\n* ID (\"name\" \"duebridge\" \"version\" \"1\" \"vendor\" \"duebridge\")\r\na OK ID completed\r\n"},
		{name: "nested too deeply", in: "a SEARCH " + strings.Repeat("(", 101) + "\r\nb NOOP\r\n", steps: []step{{"b NOOP\r\n", stCommand}},
			wrote: "a BAD Lists are nested too deeply (at most 100 levels)\r\n"},
		{name: "nesting across a literal", in: "a SEARCH " + strings.Repeat("(", 60) + "TEXT {1}\r\nx" + strings.Repeat("(", 60) + "\r\n", plus: true,
			steps: []step{{"a SEARCH " + strings.Repeat("(", 60) + "TEXT {1}\r\n", stLiteral}, {"x", stContinued}},
			wrote: "+ go\r\n* BYE Lists are nested too deeply (at most 100 levels)\r\n"},
		{name: "parentheses in quoted strings", in: "a SEARCH SUBJECT \"" + strings.Repeat("(", 200) + "\"\r\n", steps: []step{
			{"a SEARCH SUBJECT \"" + strings.Repeat("(", 200) + "\"\r\n", stCommand}}},
		{name: "idle", in: "a IDLE\r\nDONE\r\nb NOOP\r\n", auth: true, steps: []step{
			{"a IDLE\r\n", stIdle}, {"DONE\r\n", stCommand}, {"b NOOP\r\n", stCommand}}},
		{name: "IDLE before login is the library's to refuse", in: "a IDLE\r\nb NOOP\r\n", steps: []step{
			{"a IDLE\r\n", stCommand}, {"b NOOP\r\n", stCommand}}},
		{name: "long line whole", in: "a SEARCH " + strings.Repeat("ALL ", 1000) + "\r\n", steps: []step{
			{"a SEARCH " + strings.Repeat("ALL ", 1000) + "\r\n", stCommand}}},
		{name: "line over the command limit", in: "a SEARCH " + strings.Repeat("ALL ", 13000) + "\r\n", steps: nil,
			wrote: "* BYE Command line too long\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &scriptedConn{r: strings.NewReader(tc.in)}
			c := newConn(srv, tr, false)
			defer c.Close()
			c.auth.Store(tc.auth)
			var got []step
			buf := make([]byte, 1<<16)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					got = append(got, step{string(buf[:n]), c.state})
					if lit, sync, ok := trailingLiteral(buf[:n]); ok && sync && lit > 0 && tc.plus && strings.HasSuffix(string(buf[:n]), "\n") {
						c.Write([]byte("+ go\r\n"))
					}
				}
				if err != nil {
					break
				}
			}
			if !slices.Equal(got, tc.steps) {
				t.Errorf("steps:\n got %+v\nwant %+v", got, tc.steps)
			}
			if w := string(tr.written()); w != tc.wrote {
				t.Errorf("wrote %q, want %q", w, tc.wrote)
			}
		})
	}
	// The literal over the limit and the non-synchronising one are counted.
	if got := testutil.ToFloat64(srv.metrics.literals); got != 2 {
		t.Errorf("duebridge_imap_literal_limit_total = %v, want 2", got)
	}
}
