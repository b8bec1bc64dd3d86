package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const minimalUser = "users:\n  - name: alice\n    password_hash: \"" + aliceHash + "\"\n"

// Relative paths in the file resolve against the file's directory, not the
// working directory (the README's TLS snippet with --config cfg/tls.yaml).
func TestRelativePathsResolveAgainstConfigDir(t *testing.T) {
	dir := t.TempDir()
	cfgDir := filepath.Join(dir, "cfg")
	if err := os.MkdirAll(filepath.Join(cfgDir, "certs"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"certs/server.crt", "certs/server.key", "secret.txt"} {
		if err := os.WriteFile(filepath.Join(cfgDir, f), []byte("long-enough-secret"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(cfgDir, "tls.yaml")
	content := minimalUser + "data_dir: ./data\ntls:\n  cert_file: ./certs/server.crt\n  key_file: certs/server.key\n" +
		"sources:\n  - name: t\n    secret_file: secret.txt\n"
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir) // the parent directory, as in the issue
	c, err := Load("cfg/tls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.TLS.CertFile != filepath.Join("cfg", "certs", "server.crt") || c.TLS.KeyFile != filepath.Join("cfg", "certs", "server.key") {
		t.Errorf("tls files = %q %q", c.TLS.CertFile, c.TLS.KeyFile)
	}
	if c.DataDir != filepath.Join("cfg", "data") {
		t.Errorf("data_dir = %q", c.DataDir)
	}
	if c.Sources[0].Secret != "long-enough-secret" {
		t.Errorf("secret_file not read from beside the config: %q", c.Sources[0].Secret)
	}
	// Absolute paths and paths from the environment are left alone.
	t.Setenv("DUEBRIDGE_DATA_DIR", "rel/from/env")
	c, err = Load("cfg/tls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "rel/from/env" {
		t.Errorf("env data_dir = %q", c.DataDir)
	}
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	t.Setenv("DUEBRIDGE_HTTP_LISTEN", "bogus")
	t.Setenv("DUEBRIDGE_NOTIFICATIONS_LEAD_TIMES", "1h,1d")
	_, err := Load(writeConfig(t, minimalUser))
	if err == nil {
		t.Fatal("bad env value accepted")
	}
	for _, want := range []string{
		"\n  http.listen (from DUEBRIDGE_HTTP_LISTEN): bad listen address \"bogus\"",
		"\n  notifications.lead_times[1] (from DUEBRIDGE_NOTIFICATIONS_LEAD_TIMES): bad duration",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	// A wrong type from the environment names the variable too.
	t.Setenv("DUEBRIDGE_HTTP_LISTEN", "")
	t.Setenv("DUEBRIDGE_NOTIFICATIONS_LEAD_TIMES", "")
	t.Setenv("DUEBRIDGE_LIMITS_LOCKOUT_FAILURES", "ten")
	_, err = Load(writeConfig(t, minimalUser))
	if err == nil || !strings.Contains(err.Error(), "limits.lockout_failures (from DUEBRIDGE_LIMITS_LOCKOUT_FAILURES)") {
		t.Errorf("type error from env: %v", err)
	}
}

func TestEnvListsAndUnknownVariables(t *testing.T) {
	t.Setenv("DUEBRIDGE_USERS", "abc")
	t.Setenv("DUEBRIDGE_HTTP_LISTN", "0.0.0.0:1")
	t.Setenv("DUEBRIDGE_TEST_SOMETHING", "1") // test switches are not config
	c, err := Load(writeConfig(t, minimalUser))
	if err != nil {
		t.Fatalf("DUEBRIDGE_USERS broke the start: %v", err)
	}
	if len(c.Users) != 1 || c.Users[0].Name != "alice" {
		t.Errorf("users = %+v", c.Users)
	}
	want := []string{
		"environment variable DUEBRIDGE_HTTP_LISTN ignored: no such config key (did you mean DUEBRIDGE_HTTP_LISTEN?)",
		"environment variable DUEBRIDGE_USERS ignored: users and sources come from the config file only",
	}
	if !slices.Equal(c.Warnings, want) {
		t.Errorf("warnings =\n%q\nwant\n%q", c.Warnings, want)
	}
}

func TestEffectiveConfig(t *testing.T) {
	t.Setenv("DUEBRIDGE_IMAP_LISTEN", "127.0.0.1:2143")
	t.Setenv("DUEBRIDGE_POSTGRES_URL", "postgres://u:hunter2@db/x")
	c, err := Load(writeConfig(t, minimalUser+"http:\n  listen: 127.0.0.1:9000\nsources:\n  - name: t\n    secret: s3cr3t-value\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Setting{}
	var all strings.Builder
	for _, s := range c.Effective() {
		got[s.Key] = s
		all.WriteString(s.Key + "=" + s.Value + "\n")
	}
	check := func(key, value string, origin Origin) {
		t.Helper()
		if s := got[key]; s.Value != value || s.Origin != origin {
			t.Errorf("%s = %+v, want %q from %s", key, s, value, origin)
		}
	}
	check("http.listen", "127.0.0.1:9000", FromFile)
	check("imap.listen", "127.0.0.1:2143", FromEnv)
	check("postgres_url", "***", FromEnv)
	check("limits.lockout_window", "15m0s", FromDefault)
	check("notifications.lead_times", "24h0m0s,1h0m0s", FromDefault)
	if got["imap.listen"].Env != "DUEBRIDGE_IMAP_LISTEN" {
		t.Errorf("env origin does not name the variable: %+v", got["imap.listen"])
	}
	for _, secret := range []string{"hunter2", "s3cr3t-value", aliceHash[7:]} {
		if strings.Contains(all.String(), secret) {
			t.Errorf("effective config shows a secret %q:\n%s", secret, all.String())
		}
	}
	if !strings.Contains(got["users[0]"].Value, "password_hash=$2a$10$***") {
		t.Errorf("users[0] = %q", got["users[0]"].Value)
	}
	if len(c.Effective()) != len(keys)+2 {
		t.Errorf("Effective has %d lines, want every key plus a user and a source", len(c.Effective()))
	}
}

func TestErrorsOnePerLineWithSuggestions(t *testing.T) {
	_, err := Load(writeConfig(t, "htpp:\n  listen: x\nusers:\n  - name: alice\n    password_hash: \""+aliceHash+"\"\n    timzone: Europe/Berlin\n"+
		"limits:\n  lockout_window: soon\nstore: mysql\n"))
	if err == nil {
		t.Fatal("accepted")
	}
	msg := err.Error()
	for _, want := range []string{"unknown key htpp (did you mean http?)", "unknown key users[0].timzone (did you mean users[0].timezone?)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	_, err = Load(writeConfig(t, "limits:\n  lockout_window: soon\nstore: mysql\n"))
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], ":") || strings.Contains(err.Error(), "; ") {
		t.Errorf("want one problem per line:\n%s", err)
	}
	for _, l := range lines[1:] {
		if !strings.HasPrefix(l, "  ") {
			t.Errorf("line not indented: %q", l)
		}
	}
}

func TestImpossibleHashesRefused(t *testing.T) {
	for name, h := range map[string]string{
		"bcrypt cost 99":       "$2a$99$" + aliceHash[7:],
		"bcrypt cost 31":       "$2a$31$" + aliceHash[7:],
		"bcrypt bad alphabet":  aliceHash[:30] + "!" + aliceHash[31:],
		"argon2id m too small": "$argon2id$v=19$m=1,t=1,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id t huge":      "$argon2id$v=19$m=65536,t=100000,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id junk params": "$argon2id$v=19$m=65536,t=1,p=4x$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"argon2id short salt":  "$argon2id$v=19$m=65536,t=1,p=4$YQ$aGFzaGhhc2hoYXNoaGFzaA",
	} {
		if IsPasswordHash(h) {
			t.Errorf("%s: IsPasswordHash(%q) = true", name, h)
		}
		_, err := Load(writeConfig(t, "users:\n  - name: alice\n    password_hash: \""+h+"\"\n"))
		if err == nil || !strings.Contains(err.Error(), "users[0].password_hash") {
			t.Errorf("%s: Load = %v", name, err)
		}
	}
	for _, h := range []string{aliceHash, argonHash} {
		if !IsPasswordHash(h) {
			t.Errorf("good hash refused: %q (%s)", h, hashProblem(h))
		}
	}
}

func TestPublicURLWithPathRefused(t *testing.T) {
	_, err := Load(writeConfig(t, minimalUser+"http:\n  public_url: https://example.com/tasks\n"))
	if err == nil || !strings.Contains(err.Error(), "http.public_url") || !strings.Contains(err.Error(), "has a path") {
		t.Errorf("public_url with a path: %v", err)
	}
	c := mustLoad(t, writeConfig(t, minimalUser+"http:\n  public_url: https://example.com/\n"))
	if c.HTTP.PublicURL.String() != "https://example.com" {
		t.Errorf("public_url = %v", c.HTTP.PublicURL)
	}
}

func TestEmailWithDisplayName(t *testing.T) {
	c := mustLoad(t, writeConfig(t, "users:\n  - name: alice\n    email: '\"Alice Example\" <alice@example.com>'\n    password_hash: \""+aliceHash+"\"\n"))
	if u := c.Users[0]; u.Email != "alice@example.com" || u.EmailName != "Alice Example" {
		t.Errorf("email = %q, name = %q", u.Email, u.EmailName)
	}
	// The same address under a display name is still a duplicate.
	_, err := Load(writeConfig(t, "users:\n  - name: alice\n    email: 'Alice <Alice@Example.com>'\n    password_hash: \""+aliceHash+"\"\n"+
		"  - name: bob\n    email: alice@example.com\n    password_hash: \""+aliceHash+"\"\n"))
	if err == nil || !strings.Contains(err.Error(), "users[1].email: duplicate email") {
		t.Errorf("duplicate address behind a display name: %v", err)
	}
}

// The configuration reference (docs/configuration.md) is generated from the
// key table, so it cannot drift: DUEBRIDGE_TEST_UPDATE=1 go test ./config
// -run TestKeyReference rewrites it.
func TestKeyReferenceInREADME(t *testing.T) {
	for _, k := range knownKeys() {
		if lookupKey(k) == nil && listKeyDocs[k] == "" && (strings.HasPrefix(k, "users") || strings.HasPrefix(k, "sources")) {
			t.Errorf("list key %s has no line in listKeyDocs", k)
		}
	}
	const begin, end = "<!-- config-reference:begin -->\n", "<!-- config-reference:end -->"
	path := filepath.Join("..", "docs", "configuration.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q ... %q markers", path, begin, end)
	}
	want := s[:i+len(begin)] + Reference() + s[j:]
	if want == s {
		return
	}
	if os.Getenv("DUEBRIDGE_TEST_UPDATE") != "" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s's key reference is out of date; run DUEBRIDGE_TEST_UPDATE=1 go test ./config -run TestKeyReference", path)
}

// FuzzLoad: any file is either refused with an error or loads into a config
// whose effective listing masks every secret it holds; nothing panics.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.yaml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("users:\n  - name: a\n    email: '\"A\" <a@example.com>'\n    password_hash: \"" + aliceHash + "\"\nsources:\n  - name: s\n    secret: fuzz-secret-1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := load("", b)
		if err != nil {
			if c != nil {
				t.Fatal("a config and an error")
			}
			return
		}
		var all strings.Builder
		for _, s := range c.Effective() {
			all.WriteString(s.Value + "\n")
		}
		for _, s := range c.Sources {
			if len(s.Secret) >= 8 && strings.Contains(all.String(), s.Secret) {
				t.Fatalf("source secret %q shown", s.Secret)
			}
		}
		if c.PostgresURL != "" && strings.Contains(all.String(), c.PostgresURL) {
			t.Fatal("postgres_url shown")
		}
	})
}
