package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// loadToolConfig is a config as cmd/duebridge-load writes it: every value
// double-quoted (strconv.Quote), one app password a user.
func loadToolConfig(n int) []byte {
	var b strings.Builder
	b.WriteString("# written by duebridge-load; throwaway\ndata_dir: \"/tmp/x/data\"\nstore: sqlite\n" +
		"http:\n  listen: 127.0.0.1:8080\n  public_url: http://127.0.0.1:8080\nlimits:\n  imap_conns_per_user: 20\n" +
		"sources:\n  - name: \"load\"\n    secret: \"0123456789abcdef\"\nusers:\n")
	for i := range n {
		u := fmt.Sprintf("u%06d", i)
		fmt.Fprintf(&b, "  - name: %q\n    email: %q\n    password_hash: %q\n    app_passwords:\n      - name: \"prep\"\n        hash: %q\n",
			u, u+"@load.test", argonHash, aliceHash)
	}
	return []byte(b.String())
}

const scanHead = "sources:\n  - name: t\n    secret: 0123456789abcdef\n"

// TestScanUsersTakesThePlainForm: the block forms admins and the load tool
// write are read by the scanner (else a million users silently cost a node
// tree again), and give what the node path and viper give.
func TestScanUsersTakesThePlainForm(t *testing.T) {
	user := "  - name: alice\n    password_hash: \"" + aliceHash + "\"\n"
	for name, y := range map[string]string{
		"generated": string(bigConfig(3)),
		"load tool": string(loadToolConfig(3)),
		"every field": scanHead + "users:\n" + user + "    email: '\"Alice\" <alice@example.com>'\n    notify: both\n" +
			"    timezone: Europe/Berlin\n    digest: true\n    digest_at: \"07:30\"\n    admin: false\n" +
			"    lead_times:\n      - 15m\n      - '1h'\n    identities:\n      github: Octocat\n      jira: \"alice\"\n" +
			"    quiet_hours:\n      start: \"22:00\"\n      end: '07:00'\n      allow_urgent: true\n" +
			"    app_passwords:\n    - name: phone\n      hash: \"" + argonHash + "\"\n    - name: mac\n      hash: '" + aliceHash + "'\n",
		"items in column 0":     scanHead + "users:\n- name: alice\n  password_hash: \"" + aliceHash + "\"\n- name: bob\n  password_hash: \"" + aliceHash + "\"\nmail:\n  from: a@b.c\n",
		"comments, blank lines": "# top\nusers:   # everyone\n\n  # ops\n  - name: alice   # first\n    password_hash: \"" + aliceHash + "\" # hash\n#x\n\n" + strings.TrimPrefix(scanHead, ""),
		"escapes and umlauts":   scanHead + "users:\n" + user + "    email: \"\\\"J\u00fcrgen \\\\ K\\\" <j@example.com>\"\n",
		"quotes in quotes":      scanHead + "users:\n" + user + "    email: 'O''Brien <ob@example.com>'\n",
		"wide indentation":      scanHead + "users:\n     - name: alice\n       password_hash: \"" + aliceHash + "\"\n       lead_times:\n           - 2h\n",
		"errors of the users":   scanHead + "users:\n  - name: alice\n    password_hash: nope\n    notify: loud\n  - name: alice\n    password_hash: \"" + aliceHash + "\"\n",
	} {
		if _, _, ok := scanUsers([]byte(y)); !ok {
			t.Errorf("%s: the scanner declined\n%s", name, y)
		}
		loadBothWays(t, name, []byte(y))
	}
	_, users, _ := scanUsers(bigConfig(3))
	want := rawUser{Name: "user0000001", Email: "user0000001@example.com", PasswordHash: argonHash,
		AppPasswords: []rawAppPassword{{Name: "phone", Hash: argonHash}}, Notify: "both", TimeZone: "Europe/Berlin",
		QuietHours: &rawQuietHours{Start: "22:00", End: "07:00", AllowUrgent: true}, Digest: true,
		LeadTimes: []string{"15m"}, Identities: map[string]string{"github": "u1"}}
	if len(users) != 3 || !reflect.DeepEqual(users[1], want) {
		t.Errorf("users[1] = %+v\nwant %+v", users[1], want)
	}
}

// TestScanUsersDeclines: whatever the scanner is not sure of, it leaves to
// the node path (and viper), and the result is theirs.
func TestScanUsersDeclines(t *testing.T) {
	user := "  - name: alice\n    password_hash: \"" + aliceHash + "\"\n"
	for _, y := range []string{
		scanHead + "users:\n" + user + "    lead_times: [15m]\n",
		scanHead + "users:\n" + user + "    quiet_hours: {start: \"22:00\", end: \"07:00\"}\n",
		scanHead + "users: [{name: alice, password_hash: x}]\n",
		scanHead + "users:\n" + user + "    email: &e a@b.c\n",
		scanHead + "users:\n" + user + "    email: !!str a@b.c\n",
		scanHead + "users:\n" + user + "    email: *e\n",
		scanHead + "users:\n" + user + "    notify: |\n      both\n",
		scanHead + "users:\n" + user + "    notify: >\n      both\n",
		scanHead + "users:\n" + user + "    email: a@b.c\n      x@y.z\n",
		scanHead + "users:\n" + user + "    email: \"a@b.c\n      \"\n",
		scanHead + "users:\n" + user + "    email: 'a@b.c\n      '\n",
		scanHead + "users:\n" + user + "\temail: a@b.c\n",
		scanHead + "users:\n" + user + "    email: a@b.c\t\n",
		scanHead + "users:\n" + user + "    email: a@b.c\r\n",
		scanHead + "users:\n" + user + "    email: \"a\x01b\"\n",
		scanHead + "users:\n" + user + "    email: \"a\xffb\"\n",
		scanHead + "users:\n" + user + "    # \x7f\n",
		scanHead + "users:\n" + user + "    email: \"a\\tb\"\n",
		scanHead + "users:\n" + user + "    email: a@b.c #x\n    email: b@b.c\n",
		scanHead + "users:\n" + user + "    Email: a@b.c\n",
		scanHead + "users:\n" + user + "    \"email\": a@b.c\n",
		scanHead + "users:\n" + user + "    email:\n",
		scanHead + "users:\n" + user + "    email: ~\n",
		scanHead + "users:\n" + user + "    email: 12\n",
		scanHead + "users:\n" + user + "    admin: yes\n",
		scanHead + "users:\n" + user + "    email: a@b.c#x\n",
		scanHead + "users:\n" + user + "    email: \"a@b.c\"#x\n",
		scanHead + "users:\n" + user + "    email: a: b\n",
		scanHead + "users:\n" + user + "    email: <<\n",
		scanHead + "users:\n" + user + "   email: a@b.c\n",
		scanHead + "users:\n" + user + "      email: a@b.c\n",
		scanHead + "users:\n" + user + "    lead_times:\n      - 15m\n       - 1h\n",
		scanHead + "users:\n" + user + "    lead_times:\n      -  15m\n",
		scanHead + "users:\n" + user + "    lead_times:\n      - - 15m\n",
		scanHead + "users:\n" + user + "    lead_times:\n      -\n",
		scanHead + "users:\n" + user + "    identities:\n    github: x\n",
		scanHead + "users:\n" + user + " - name: bob\n",
		scanHead + "users:\n  -  name: alice\n",
		scanHead + "users:\n  - alice\n",
		scanHead + "users:\n" + user + "  -\n",
		scanHead + "users:\n" + user + " x: 1\n",
		scanHead + "users:\n" + user + "---\nusers: []\n",
		scanHead + "users:\n" + user + "users:\n" + user,
		scanHead + "Users: []\nusers:\n" + user,
		scanHead + "users:\n" + user + "htpp: {listen: x\n",
		"x: \"abc\nusers:\n" + user + "  \"\n",
		"x: {a: 1,\nusers:\n" + user + "}\n",
		"--- |\nusers:\n" + user,
		"x: 1\n  users:\n" + user,
		"users:\n",
		"users:\nmail: {}\n",
		"users: # x\n\n",
	} {
		if _, _, ok := scanUsers([]byte(y)); ok {
			t.Errorf("the scanner took\n%s", y)
		}
		loadBothWays(t, y, []byte(y))
	}
}

// FuzzScanUsersMatchViper puts fuzzed keys, values and indentation into
// the block form the scanner reads, so most inputs reach its scalar and
// indentation rules (a free-form fuzzer mostly makes it decline early),
// and compares the result with the node path and viper.
func FuzzScanUsersMatchViper(f *testing.F) {
	f.Add("email", `"a@b.c"`, "15m", "phone", uint8(2), uint8(2))
	f.Add("notify", "both # x", "'1h'", `"mac"`, uint8(0), uint8(0))
	f.Add("timezone", "Europe/Berlin", "2h", "x'y", uint8(4), uint8(1))
	f.Add("admin", "true", "-1h", `"a\"b"`, uint8(1), uint8(3))
	f.Add("digest_at", `'07:30'`, "0x10", "a: b", uint8(2), uint8(0))
	f.Fuzz(func(t *testing.T, key, v1, v2, v3 string, ind, sub uint8) {
		in, sb := strings.Repeat(" ", int(ind%6)), strings.Repeat(" ", int(sub%4))
		y := scanHead + "users:\n" +
			in + "- name: alice\n" +
			in + "  password_hash: \"" + aliceHash + "\"\n" +
			in + "  " + key + ": " + v1 + "\n" +
			in + "  lead_times:\n" + in + "  " + sb + "- " + v2 + "\n" +
			in + "  app_passwords:\n" + in + "  " + sb + "- name: " + v3 + "\n" +
			in + "  " + sb + "  hash: \"" + argonHash + "\"\n" +
			in + "- name: bob\n" + in + "  password_hash: '" + aliceHash + "'\n" +
			"mail:\n  from: a@b.c\n"
		loadBothWays(t, "fuzz", []byte(y))
	})
}

// TestScanResolveMatchesYAML: the scanner tags a plain scalar as go-yaml
// does, for every word in go-yaml's table, its near misses and the values
// users hold.
func TestScanResolveMatchesYAML(t *testing.T) {
	s := userScanner{}
	for _, v := range strings.Fields(`true True TRUE false False FALSE tRUE yes Yes no No on On off Off y Y n N
		~ null Null NULL nULL nil .nan .NaN .inf -.inf +.Inf .5 1.5 1e3 0x1f 0o17 017 1_000 -1 +1 15m 1h 07:30 22:00
		2001-12-14 2001-12-14T21:59:43Z 1:2:3 << <x both Europe/Berlin o f t ~x alice a@b.c 12abc -x +x .x`) {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(v), &doc); err != nil {
			t.Fatal(v, err)
		}
		if got, want := s.resolve(v), doc.Content[0].Tag; got != want {
			t.Errorf("%q: scanner %s, go-yaml %s", v, got, want)
		}
	}
}

// TestScanRunesYAMLReads: every non-ASCII rune the scanner lets through
// (printableRune) is one go-yaml reads unchanged in a quoted scalar and
// in a comment, so a character go-yaml refuses cannot vanish with the
// blanked lines. Boundaries of the ranges and a sample between them.
func TestScanRunesYAMLReads(t *testing.T) {
	var rs []rune
	for _, r := range []rune{0x7f, 0x80, 0x84, 0x85, 0x9f, 0xa0, 0xd7ff, 0xd800, 0xdfff, 0xe000, 0xfeff, 0xfffd, 0xfffe, 0xffff,
		0x10000, 0x10ffff, 0x2027, 0x2028, 0x2029, 0x202a} {
		rs = append(rs, r)
	}
	for r := rune(0xa0); r <= 0x10ffff; r += 211 {
		rs = append(rs, r)
	}
	for _, r := range rs {
		if !printableRune(r) {
			continue
		}
		var m map[string]string
		y := "x: \"a" + string(r) + "\" # " + string(r) + "\n"
		if err := yaml.Unmarshal([]byte(y), &m); err != nil || m["x"] != "a"+string(r) {
			t.Errorf("%U: go-yaml reads %q as %q, %v", r, y, m["x"], err)
		}
	}
}
