package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// loadBothWays loads y with the users list read by the scanner
// (usersscan.go), decoded from the node tree (users.go) and through viper
// alone, and fails unless all give the same config or error. When the
// scanner takes y, the node path must take it too, with the same users
// and the same rest of the document.
func loadBothWays(t *testing.T, name string, y []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "duebridge.yaml")
	fast, fastErr := load(p, y)
	scanUsersOn = false
	node, nodeErr := load(p, y)
	fastUsers = false
	slow, slowErr := load(p, y)
	fastUsers, scanUsersOn = true, true
	if fmt.Sprint(fastErr) != fmt.Sprint(slowErr) || fmt.Sprint(nodeErr) != fmt.Sprint(slowErr) {
		t.Errorf("%s: scanner says\n%v\nnode tree says\n%v\nviper says\n%v", name, fastErr, nodeErr, slowErr)
		return
	}
	if !reflect.DeepEqual(fast, slow) || !reflect.DeepEqual(node, slow) {
		t.Errorf("%s: scanner gives\n%+v\nnode tree gives\n%+v\nviper gives\n%+v", name, fast, node, slow)
	}
	if rest, users, ok := scanUsers(y); ok {
		nrest, nusers, nok := splitUsers(y)
		if !nok || !reflect.DeepEqual(rest, nrest) || !reflect.DeepEqual(users, nusers) {
			t.Errorf("%s: the scanner took it, the node path %v:\n%+v %+v\n%+v %+v", name, nok, rest, users, nrest, nusers)
		}
	}
}

// TestFastUsersMatchViper: whatever the users list holds, the direct
// decoding (users.go) and viper agree: same config, same error text. Only
// the plain form is decoded directly; the odd forms here must fall back.
func TestFastUsersMatchViper(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatal("no testdata", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		loadBothWays(t, filepath.Base(f), b)
	}
	head := "sources:\n  - name: t\n    secret: 0123456789abcdef\nusers:\n"
	user := "  - name: alice\n    password_hash: \"" + aliceHash + "\"\n"
	for _, tail := range []string{
		"    email: '\"Alice\" <alice@example.com>'\n    notify: both\n    timezone: Europe/Berlin\n    digest: true\n    digest_at: \"07:30\"\n    admin: false\n",
		"    app_passwords:\n      - name: phone\n        hash: \"" + argonHash + "\"\n      - name: mac\n        hash: \"" + aliceHash + "\"\n",
		"    quiet_hours: {start: \"22:00\", end: \"07:00\", allow_urgent: true}\n",
		"    lead_times: [15m, 1h]\n    identities: {github: Octocat, jira: alice}\n",
		"    Name: bob\n",
		"    digest: yes\n",
		"    digest: 1\n",
		"    admin: True\n",
		"    email: 123\n",
		"    email: !!str 123\n",
		"    lead_times: \"15m, 1h\"\n",
		"    lead_times: []\n",
		"    identities: {GitHub: x}\n",
		"    identities: {}\n",
		"    identities: {github: 7}\n",
		"    quiet_hours: {}\n",
		"    quiet_hours:\n",
		"    quiet_hours: {start: \"22:00\", end: \"07:00\", urgent: true}\n",
		"    app_passwords: []\n",
		"    app_passwords: [{name: a, hash: x, extra: y}]\n",
		"    timzone: Europe/Berlin\n",
		"    name: again\n",
		"    password: hunter2hunter2\n",
		"    notify:\n",
		"  - {}\n",
		"  -\n",
		"  - name: carol\n    <<: {password_hash: x}\n",
		"  - &b {name: bob, password_hash: x}\n  - *b\n",
		"htpp: {listen: x}\n",
		"Users: []\n",
		"users: []\n",
		"---\nusers: []\n",
	} {
		loadBothWays(t, strings.TrimSpace(tail), []byte(head+user+tail))
	}
	for _, y := range []string{"", "users:\n", "users: []\n", "users: x\n", "[1, 2]\n", "users:\n  - name: a\n    password_hash: x\nusers: []\n", "x: &a [1]\nusers: *a\n"} {
		loadBothWays(t, y, []byte(y))
	}
}

// TestFastUsersTakesThePlainForm: a generated config in the plain form is
// decoded directly (else the speed-up would silently be lost), and the
// users keep every field.
func TestFastUsersTakesThePlainForm(t *testing.T) {
	y := bigConfig(3)
	_, users, ok := splitUsers(y)
	if !ok {
		t.Fatal("a plain users list was not decoded directly")
	}
	want := rawUser{Name: "user0000001", Email: "user0000001@example.com", PasswordHash: argonHash,
		AppPasswords: []rawAppPassword{{Name: "phone", Hash: argonHash}}, Notify: "both", TimeZone: "Europe/Berlin",
		QuietHours: &rawQuietHours{Start: "22:00", End: "07:00", AllowUrgent: true}, Digest: true,
		LeadTimes: []string{"15m"}, Identities: map[string]string{"github": "u1"}}
	if !reflect.DeepEqual(users[1], want) {
		t.Errorf("users[1] = %+v\nwant %+v", users[1], want)
	}
	loadBothWays(t, "generated", y)
}

// TestArgon2idParams: the parameter field is accepted exactly when it is
// "m=M,t=T,p=P" in canonical decimals, as the fmt.Sscanf-and-reprint check
// it replaced accepted it.
func TestArgon2idParams(t *testing.T) {
	for _, s := range []string{"m=65536,t=3,p=4", "m=0,t=0,p=0", "m=18446744073709551615,t=1,p=1",
		"m=65536,t=3,p=04", "m=+1,t=1,p=1", "m=-1,t=1,p=1", "m=18446744073709551616,t=1,p=1", "m=1,t=2,p=3x",
		"m=1,t=2,p=3,", "m=1,t=2", "t=1,m=2,p=3", "m=1,,t=2,p=3", "m= 1,t=2,p=3", "", "m=1,t=2,p=3,q=4", "m=,t=1,p=1"} {
		var m, tt, p uint64
		n, err := fmt.Sscanf(s, "m=%d,t=%d,p=%d", &m, &tt, &p)
		want := err == nil && n == 3 && fmt.Sprintf("m=%d,t=%d,p=%d", m, tt, p) == s
		gm, gt, gp, ok := argon2idParams(s)
		if ok != want || (ok && (gm != m || gt != tt || gp != p)) {
			t.Errorf("%q: got %d,%d,%d %v; Sscanf gives %d,%d,%d %v", s, gm, gt, gp, ok, m, tt, p, want)
		}
	}
}

// FuzzFastUsersMatchViper: for any document, reading the users list with
// the scanner, decoding it from the node tree and through viper give the
// same config or the same error.
func FuzzFastUsersMatchViper(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(bigConfig(2))
	f.Add(loadToolConfig(2))
	f.Add([]byte("# c\nusers:  # all\n- name: a  # x\n  password_hash: 'x''y'\n  lead_times:\n  - 15m\n  identities:\n    github: \"a\\\"b\"\n\nmail:\n  from: a@b.c\n"))
	f.Add([]byte("users:\n  - name: a\n    password_hash: x\n    identities: {github: a}\n    quiet_hours: {start: \"22:00\", end: \"07:00\"}\n"))
	f.Fuzz(func(t *testing.T, y []byte) {
		loadBothWays(t, "fuzz", y)
	})
}

// TestEmptyKeyPartNamedStably: with several keys that have an empty part,
// the error names the same one on every load (the first in order), not
// whichever viper's map gave first; the fuzz target compares error texts
// between loads and found it.
func TestEmptyKeyPartNamedStably(t *testing.T) {
	y := []byte(".a:\n  x: 1\n  y: 2\n  z: 3\n  w: 4\n")
	for range 30 {
		_, err := load("c.yaml", y)
		if want := `unknown key ".a.w"`; err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v, want one naming %s", err, want)
		}
	}
}
