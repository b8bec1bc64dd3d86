package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const testdata = "../testdata/config"

// Passwords behind the hashes in testdata/config (see the comment in valid.yaml).
const (
	alicePassword    = "alice-password"
	bobPassword      = "bob-password"
	aliceAppPassword = "alice-phone-app-pw"
	aliceHash        = "$2a$10$Jh8/dyrNUx0fQBhT/Dv19u77SfqsCE7oD.zCSS1Ky6Zj.XyhU3Ygy"
	argonHash        = "$argon2id$v=19$m=65536,t=1,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
)

// writeConfig puts content into a fresh file and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "duebridge.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load(%q): %v", path, err)
	}
	return c
}

func TestLoadInvalidFiles(t *testing.T) {
	tests := []struct {
		file string
		// key is the key as the user wrote it; the message must contain it.
		key string
		// also must appear in the message too ("" = nothing more).
		also string
		// never must not appear (secrets, plain passwords).
		never string
	}{
		{file: "invalid_unknown_top_key.yaml", key: "htpp", also: "unknown key"},
		{file: "invalid_unknown_nested_key.yaml", key: "users[0].pasword_hash", also: "unknown key"},
		{file: "invalid_listen.yaml", key: "http.listen", also: "127.0.0.1.8080"},
		{file: "invalid_lead_time.yaml", key: "notifications.lead_times[0]", also: `"1d"`},
		{file: "invalid_duplicate_users.yaml", key: "users[1].name", also: "duplicate"},
		{file: "invalid_jira_token_no_url.yaml", key: "sources[0].api_url", also: "required with api_token"},
		{file: "invalid_forgejo_token_no_url.yaml", key: "sources[0].api_url", also: "required with api_token for a forgejo source"},
		{file: "invalid_no_password_hash.yaml", key: "users[0].password_hash", also: "required"},
		{file: "invalid_plain_password_hash.yaml", key: "users[0].password_hash", also: "not a bcrypt or argon2id hash", never: "correct-horse-battery"},
		{file: "invalid_password_key.yaml", key: "users[0].password:", also: "plain passwords are not accepted", never: "correct-horse-battery"},
		{file: "invalid_source_no_secret.yaml", key: "sources[0].secret", also: "required"},
		{file: "invalid_store.yaml", key: "store", also: `"mysql"`},
		{file: "invalid_postgres_no_url.yaml", key: "postgres_url", also: "required with store: postgres"},
		{file: "invalid_timezone.yaml", key: "users[0].timezone", also: "Europe/Berlln"},
		{file: "invalid_notify.yaml", key: "users[0].notify", also: `"sms"`},
		{file: "invalid_quiet_hours.yaml", key: "users[0].quiet_hours.start", also: `"25:00"`},
		{file: "invalid_callback_url.yaml", key: "sources[0].callback_url", also: "not an absolute http(s) URL"},
		{file: "invalid_duplicate_sources.yaml", key: "sources[1].name", also: "duplicate source"},
		{file: "invalid_syntax.yaml", key: "invalid_syntax.yaml:4:", also: "YAML syntax error: did not find expected '-' indicator\n     email: alice@example.com\n     ^"},
	}
	// Every invalid file in testdata must be covered by the table.
	files, err := filepath.Glob(filepath.Join(testdata, "invalid_*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var inTable []string
	for _, tt := range tests {
		inTable = append(inTable, tt.file)
	}
	for _, f := range files {
		if !slices.Contains(inTable, filepath.Base(f)) {
			t.Errorf("%s has no row in the table", f)
		}
	}

	for _, tt := range tests {
		t.Run(strings.TrimSuffix(tt.file, ".yaml"), func(t *testing.T) {
			path := filepath.Join(testdata, tt.file)
			if _, err := os.Stat(path); err != nil {
				t.Fatal(err)
			}
			c, err := Load(path)
			if err == nil {
				t.Fatalf("Load accepted %s: %+v", tt.file, c)
			}
			if c != nil {
				t.Errorf("Load returned a config along with the error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.key) {
				t.Errorf("error does not name %q:\n%s", tt.key, msg)
			}
			if tt.also != "" && !strings.Contains(msg, tt.also) {
				t.Errorf("error does not contain %q:\n%s", tt.also, msg)
			}
			if tt.never != "" && strings.Contains(msg, tt.never) {
				t.Errorf("error repeats %q:\n%s", tt.never, msg)
			}
			if !strings.Contains(msg, path) {
				t.Errorf("error does not name the file %s:\n%s", path, msg)
			}
		})
	}
}

// Inline cases: refusals that need no file of their own, and a few edge cases.
func TestLoadInvalidInline(t *testing.T) {
	user := "users:\n  - name: alice\n    password_hash: \"" + aliceHash + "\"\n"
	tests := []struct {
		name, yaml string
		keys       []string
		never      string
	}{
		{"unknown nested section key", user + "http:\n  listen: 127.0.0.1:8080\n  port: 80\n", []string{"unknown key http.port"}, ""},
		{"unknown source key", user + "sources:\n  - name: t\n    secret: long-enough\n    secert: x\n", []string{"sources[0].secert"}, ""},
		{"lead time not a list element", user + "notifications:\n  lead_times: [24h, 1x]\n", []string{"notifications.lead_times[1]"}, ""},
		{"lead time without unit", user + "notifications:\n  lead_times: [60]\n", []string{"notifications.lead_times[0]"}, ""},
		{"negative lead time", user + "notifications:\n  lead_times: [-1h]\n", []string{"notifications.lead_times[0]: must be positive"}, ""},
		{"duplicate lead time", user + "notifications:\n  lead_times: [1h, 60m]\n", []string{"notifications.lead_times[1]: duplicate"}, ""},
		{"user lead time", "users:\n  - name: alice\n    password_hash: \"" + aliceHash + "\"\n    lead_times: [1w]\n", []string{"users[0].lead_times[0]"}, ""},
		{"source lead time", user + "sources:\n  - name: t\n    secret: long-enough\n    lead_times: [soon]\n", []string{"sources[0].lead_times[0]"}, ""},
		{"bad login delay", user + "limits:\n  login_failure_delay: 1 second\n", []string{"limits.login_failure_delay"}, ""},
		{"device cache ttl too long", user + "limits:\n  device_cache_ttl: 48h\n", []string{"limits.device_cache_ttl: must be between 1s and 24h"}, ""},
		{"device cache off", user + "limits:\n  device_cache_entries: 0\n", []string{"limits.device_cache_entries"}, ""},
		{"sync health off", user + "limits:\n  sync_health_users: 0\n", []string{"limits.sync_health_users"}, ""},
		{"limit not a number", user + "limits:\n  webhook_body_bytes: 8MiB\n", []string{"limits.webhook_body_bytes"}, ""},
		{"limit zero", user + "limits:\n  imap_conns_per_user: 0\n", []string{"limits.imap_conns_per_user"}, ""},
		{"listen host name", user + "imap:\n  listen: mail.example.com:1143\n", []string{"imap.listen"}, ""},
		{"listen port", user + "http:\n  listen: 127.0.0.1:99999\n", []string{"http.listen"}, ""},
		{"listen empty", user + "http:\n  listen: \"\"\n", []string{"http.listen: required"}, ""},
		{"public url", user + "http:\n  public_url: tasks.example.com\n", []string{"http.public_url"}, ""},
		{"mail from", user + "mail:\n  from: not a mail address\n", []string{"mail.from"}, ""},
		{"short secret", user + "sources:\n  - name: t\n    secret: short\n", []string{"sources[0].secret: too short"}, "short\""},
		{"source name", user + "sources:\n  - name: My Tracker\n    secret: long-enough\n", []string{"sources[0].name"}, ""},
		{"argon2id that can never match", "users:\n  - name: zed\n    password_hash: \"$argon2id$v=19$m=0,t=1,p=4$c2FsdA$a2V5\"\n", []string{"users[0].password_hash"}, ""},
		{"source name with a dash", user + "sources:\n  - name: tracker-web\n    secret: long-enough\n", []string{"sources[0].name"}, ""},
		{"source kind", user + "sources:\n  - name: t\n    kind: bugzilla\n    secret: long-enough\n", []string{"sources[0].kind"}, ""},
		{"secret and secret_file", user + "sources:\n  - name: t\n    secret: long-enough\n    secret_file: /nonexistent/secret\n", []string{"sources[0].secret_file"}, ""},
		{"user name", "users:\n  - name: alice smith\n    password_hash: \"" + aliceHash + "\"\n", []string{"users[0].name"}, ""},
		{"user without name", "users:\n  - password_hash: \"" + aliceHash + "\"\n", []string{"users[0].name: required"}, ""},
		{"user email", "users:\n  - name: alice\n    email: alice\n    password_hash: \"" + aliceHash + "\"\n", []string{"users[0].email"}, ""},
		{"duplicate email", user + "    email: a@example.com\n  - name: bob\n    email: A@example.com\n    password_hash: \"" + aliceHash + "\"\n", []string{"users[1].email: duplicate"}, ""},
		{"truncated bcrypt", "users:\n  - name: alice\n    password_hash: \"" + aliceHash[:40] + "\"\n", []string{"users[0].password_hash"}, ""},
		{"app password", user + "    app_passwords:\n      - name: phone\n        hash: hunter2hunter2\n", []string{"users[0].app_passwords[0].hash"}, "hunter2"},
		{"duplicate app password", user + "    app_passwords:\n      - name: phone\n        hash: \"" + aliceHash + "\"\n      - name: phone\n        hash: \"" + argonHash + "\"\n", []string{"users[0].app_passwords[1].name"}, ""},
		{"quiet hours end", user + "    quiet_hours:\n      start: \"22:00\"\n      end: 7am\n", []string{"users[0].quiet_hours.end"}, ""},
		{"quiet hours equal", user + "    quiet_hours:\n      start: \"22:00\"\n      end: \"22:00\"\n", []string{"users[0].quiet_hours: start and end are equal"}, ""},
		{"digest_at", user + "    digest_at: \"8\"\n", []string{"users[0].digest_at"}, ""},
		{"identity kind", user + "    identities:\n      bitbucket: alice\n", []string{"users[0].identities.bitbucket"}, ""},
		{"identity claimed twice", user + "    identities:\n      github: Octocat\n  - name: bob\n    password_hash: \"" + aliceHash + "\"\n    identities:\n      github: octocat \n", []string{`users[1].identities.github: "octocat" is also users[0]'s`}, ""},
		{"tls half", user + "tls:\n  cert_file: /nonexistent/cert.pem\n", []string{"tls: cert_file and key_file", "tls.cert_file"}, ""},
		{"tls listen without tls", user + "imap:\n  tls_listen: 127.0.0.1:993\n", []string{"imap.tls_listen"}, ""},
		{"users not a list", "users: alice\n", []string{"users"}, ""},
		// Everything wrong at once: the admin sees all of it in one go.
		{"all problems at once", "store: mysql\nusers:\n  - name: alice\n    password_hash: x\n  - name: alice\n    password_hash: \"" + aliceHash + "\"\n    notify: sms\nsources:\n  - name: t\n", []string{"store", "users[0].password_hash", "users[1].name", "users[1].notify", "sources[0].secret"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeConfig(t, tt.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			for _, k := range tt.keys {
				if !strings.Contains(err.Error(), k) {
					t.Errorf("error does not contain %q:\n%v", k, err)
				}
			}
			if tt.never != "" && strings.Contains(err.Error(), tt.never) {
				t.Errorf("error repeats %q:\n%v", tt.never, err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.yaml")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("Load(missing) = %v, want an error naming the file", err)
	}
}

func TestLoadValid(t *testing.T) {
	path := filepath.Join(testdata, "valid.yaml")
	c := mustLoad(t, path)

	if c.Path != path || c.Demo {
		t.Errorf("Path, Demo = %q, %v", c.Path, c.Demo)
	}
	if c.DataDir != "/var/lib/duebridge" || c.Store != "postgres" ||
		c.PostgresURL != "postgres://duebridge:secret@db.internal:5432/duebridge?sslmode=disable" {
		t.Errorf("store: %q %q %q", c.DataDir, c.Store, c.PostgresURL)
	}
	if c.StoreSource() != c.PostgresURL {
		t.Errorf("StoreSource = %q", c.StoreSource())
	}
	if c.HTTP.Listen != "0.0.0.0:8443" {
		t.Errorf("http.listen = %q", c.HTTP.Listen)
	}
	// The trailing slash is dropped so callers can append paths.
	if got := c.HTTP.PublicURL.String(); got != "https://tasks.example.com" {
		t.Errorf("http.public_url = %q", got)
	}
	if c.IMAP != (IMAP{Listen: "0.0.0.0:1143", TLSListen: "0.0.0.0:993"}) {
		t.Errorf("imap = %+v", c.IMAP)
	}
	if c.Submission != (Submission{Listen: "0.0.0.0:587", TLSListen: "0.0.0.0:465"}) {
		t.Errorf("submission = %+v", c.Submission)
	}
	if !slices.Equal(c.TLS.ACMEHosts, []string{"tasks.example.com", "mail.example.com"}) ||
		c.TLS.ACMEEmail != "admin@example.com" || c.TLS.CertFile != "" || !c.TLS.Enabled() {
		t.Errorf("tls = %+v", c.TLS)
	}
	if c.Mail.From != "duebridge <tasks@example.com>" {
		t.Errorf("mail.from = %q", c.Mail.From)
	}
	if want := []time.Duration{24 * time.Hour, time.Hour, 10 * time.Minute}; !slices.Equal(c.Notifications.LeadTimes, want) {
		t.Errorf("notifications.lead_times = %v, want %v", c.Notifications.LeadTimes, want)
	}
	wantLimits := Limits{
		WebhookBodyBytes: 1 << 20, ICalObjectBytes: 64 << 10, ClientPropsBytes: 16 << 10, IMAPLiteralBytes: 2 << 20,
		IMAPConnsPerUser: 5, ConnsPerAddress: 100, LoginFailureDelay: 2 * time.Second, LockoutFailures: 5, LockoutWindow: 30 * time.Minute, DevicesPerUser: 50, DeviceCacheEntries: 1000000, DeviceCacheTTL: 20 * time.Minute, SyncHealthUsers: 100000, SQLiteWALMB: 64, MultigetHrefs: 1000,
		IMAPKeywordsPerMessage: 50, IMAPKeywordsPerMailbox: 250, IMAPKeywordBytes: 64,
		SubmissionAuthTimeout: time.Minute, SubmissionUnauthConns: 50, SubmissionUnauthPerAddress: 10,
		TaskTitleBytes: 1024, TaskDescriptionBytes: 64 << 10, TaskURLBytes: 2048, TaskLabelBytes: 256, TaskLabels: 100,
		WebhookTimestampWindow: 5 * time.Minute,
		OwnRemindersPerUser:    5000, OwnReminderBytesPerUser: 50 << 20, RecurrenceSteps: 100_000, RecurrenceStepsPerRequest: 1_000_000,
	}
	if c.Limits != wantLimits {
		t.Errorf("limits = %+v, want %+v", c.Limits, wantLimits)
	}
	if c.Setup != (Setup{ProfilePasswords: true, SignProfiles: true}) {
		t.Errorf("setup = %+v", c.Setup)
	}

	// Users.
	if len(c.Users) != 2 {
		t.Fatalf("%d users, want 2", len(c.Users))
	}
	alice, bob := c.User("alice"), c.User("bob")
	if alice == nil || bob == nil || c.User("carol") != nil {
		t.Fatalf("User lookup: alice=%v bob=%v", alice, bob)
	}
	if alice.Email != "alice@example.com" || alice.Notify != NotifyBoth || alice.Location.String() != "Europe/Berlin" {
		t.Errorf("alice = %+v", alice)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(alice.PasswordHash), []byte(alicePassword)); err != nil {
		t.Errorf("alice's hash does not verify: %v", err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(bob.PasswordHash), []byte(bobPassword)); err != nil {
		t.Errorf("bob's hash does not verify: %v", err)
	}
	if len(alice.AppPasswords) != 2 || alice.AppPasswords[0].Name != "phone" ||
		alice.AppPasswords[1] != (AppPassword{Name: "tablet", Hash: argonHash}) {
		t.Fatalf("alice.app_passwords = %+v", alice.AppPasswords)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(alice.AppPasswords[0].Hash), []byte(aliceAppPassword)); err != nil {
		t.Errorf("alice's app password does not verify: %v", err)
	}
	if alice.QuietHours == nil || *alice.QuietHours != (QuietHours{Start: 22 * time.Hour, End: 7*time.Hour + 30*time.Minute, AllowUrgent: true}) {
		t.Errorf("alice.quiet_hours = %+v", alice.QuietHours)
	}
	if !alice.Digest || alice.DigestAt != 7*time.Hour+15*time.Minute {
		t.Errorf("alice digest = %v at %v", alice.Digest, alice.DigestAt)
	}
	if want := []time.Duration{48 * time.Hour, 2 * time.Hour, 15 * time.Minute}; !slices.Equal(alice.LeadTimes, want) {
		t.Errorf("alice.lead_times = %v", alice.LeadTimes)
	}
	if !reflect.DeepEqual(alice.Identities, map[string]string{"github": "alice-gh", "jira": "alice.j"}) {
		t.Errorf("alice.identities = %v", alice.Identities)
	}
	// bob: the per-user defaults.
	if bob.Notify != NotifyMail || bob.Location.String() != "America/New_York" || bob.QuietHours != nil ||
		bob.Digest || bob.DigestAt != 8*time.Hour || bob.LeadTimes != nil || bob.AppPasswords != nil {
		t.Errorf("bob = %+v", bob)
	}

	// Sources.
	if len(c.Sources) != 2 {
		t.Fatalf("%d sources, want 2", len(c.Sources))
	}
	tr, gh := c.Source("tracker"), c.Source("gh")
	if tr == nil || gh == nil || c.Source("nope") != nil {
		t.Fatalf("Source lookup: tracker=%v gh=%v", tr, gh)
	}
	if tr.Kind != "generic" || tr.Secret != "change-me-please" || tr.CallbackURL == nil ||
		tr.CallbackURL.String() != "https://tracker.example.com/duebridge/done" || tr.CallbackURL.Host != "tracker.example.com" {
		t.Errorf("tracker = %+v", tr)
	}
	if !reflect.DeepEqual(tr.LabelProjects, map[string]string{"infra": "Infrastructure"}) || !slices.Equal(tr.LeadTimes, []time.Duration{72 * time.Hour}) {
		t.Errorf("tracker label_projects=%v lead_times=%v", tr.LabelProjects, tr.LeadTimes)
	}
	if gh.Kind != "github" || gh.Secret != "another-long-secret" || gh.CallbackURL != nil ||
		gh.APIToken != "ghp_exampletoken" || gh.APIURL != "https://api.github.com" || gh.LeadTimes != nil {
		t.Errorf("gh = %+v", gh)
	}

	// Lead times: user, else source, else global.
	if got := c.LeadTimesFor(alice, tr); !slices.Equal(got, alice.LeadTimes) {
		t.Errorf("LeadTimesFor(alice, tracker) = %v", got)
	}
	if got := c.LeadTimesFor(bob, tr); !slices.Equal(got, tr.LeadTimes) {
		t.Errorf("LeadTimesFor(bob, tracker) = %v", got)
	}
	if got := c.LeadTimesFor(bob, gh); !slices.Equal(got, c.Notifications.LeadTimes) {
		t.Errorf("LeadTimesFor(bob, gh) = %v", got)
	}
	if got := c.LeadTimesFor(nil, nil); !slices.Equal(got, c.Notifications.LeadTimes) {
		t.Errorf("LeadTimesFor(nil, nil) = %v", got)
	}
}

// checkDefaults asserts the values a file that says nothing else gets.
func checkDefaults(t *testing.T, c *Config) {
	t.Helper()
	// The default data_dir sits beside the config file (or in the working
	// directory without one).
	wantData := "./data"
	if c.Path != "" {
		wantData = filepath.Join(filepath.Dir(c.Path), "data")
	}
	if c.DataDir != wantData || c.Store != "sqlite" || c.PostgresURL != "" || c.StoreSource() != wantData {
		t.Errorf("store defaults: data_dir=%q store=%q postgres_url=%q", c.DataDir, c.Store, c.PostgresURL)
	}
	if c.HTTP.Listen != "127.0.0.1:8080" || c.HTTP.PublicURL == nil || c.HTTP.PublicURL.String() != "http://127.0.0.1:8080" {
		t.Errorf("http defaults: %q %v", c.HTTP.Listen, c.HTTP.PublicURL)
	}
	if c.IMAP != (IMAP{Listen: "127.0.0.1:1143"}) || c.Submission != (Submission{}) {
		t.Errorf("imap/submission defaults: %+v %+v", c.IMAP, c.Submission)
	}
	if c.TLS.Enabled() || c.TLS.CertFile != "" || len(c.TLS.ACMEHosts) != 0 {
		t.Errorf("tls defaults: %+v", c.TLS)
	}
	if !slices.Equal(c.Notifications.LeadTimes, []time.Duration{24 * time.Hour, time.Hour}) {
		t.Errorf("lead_times default = %v, want [24h 1h]", c.Notifications.LeadTimes)
	}
	want := Limits{
		WebhookBodyBytes: 8 << 20, ICalObjectBytes: 256 << 10, ClientPropsBytes: 16 << 10, IMAPLiteralBytes: 1 << 20, IMAPConnsPerUser: 20, ConnsPerAddress: 100,
		LoginFailureDelay: time.Second, LockoutFailures: 10, LockoutWindow: 15 * time.Minute, DevicesPerUser: 50, DeviceCacheEntries: 1000000, DeviceCacheTTL: 20 * time.Minute, SyncHealthUsers: 100000, SQLiteWALMB: 64, MultigetHrefs: 1000,
		IMAPKeywordsPerMessage: 50, IMAPKeywordsPerMailbox: 250, IMAPKeywordBytes: 64,
		SubmissionAuthTimeout: time.Minute, SubmissionUnauthConns: 50, SubmissionUnauthPerAddress: 10,
		TaskTitleBytes: 1024, TaskDescriptionBytes: 64 << 10, TaskURLBytes: 2048, TaskLabelBytes: 256, TaskLabels: 100,
		WebhookTimestampWindow: 5 * time.Minute,
		OwnRemindersPerUser:    5000, OwnReminderBytesPerUser: 50 << 20, RecurrenceSteps: 100_000, RecurrenceStepsPerRequest: 1_000_000,
	}
	if c.Limits != want {
		t.Errorf("limits defaults = %+v, want %+v", c.Limits, want)
	}
	if c.Mail.From == "" || c.Setup != (Setup{}) {
		t.Errorf("mail/setup defaults: %q %+v", c.Mail.From, c.Setup)
	}
}

func TestLoadMinimal(t *testing.T) {
	c := mustLoad(t, filepath.Join(testdata, "minimal.yaml"))
	checkDefaults(t, c)
	if len(c.Users) != 1 || len(c.Sources) != 0 {
		t.Fatalf("users=%d sources=%d", len(c.Users), len(c.Sources))
	}
	u := c.Users[0]
	if u.Name != "alice" || u.Email != "" || u.Notify != NotifyAlarms || u.Location != time.UTC ||
		u.QuietHours != nil || u.DigestAt != 8*time.Hour || u.LeadTimes != nil {
		t.Errorf("alice = %+v", u)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(alicePassword)); err != nil {
		t.Errorf("hash does not verify: %v", err)
	}
}

func TestLoadNoFile(t *testing.T) {
	c := mustLoad(t, "")
	checkDefaults(t, c)
	if c.Path != "" || len(c.Users) != 0 {
		t.Errorf("Path=%q users=%d", c.Path, len(c.Users))
	}
}

func TestLoadEdgeCases(t *testing.T) {
	t.Run("empty sections keep their defaults", func(t *testing.T) {
		c := mustLoad(t, writeConfig(t, "tls:\nhttp:\nlimits:\nusers:\n"))
		checkDefaults(t, c)
	})
	t.Run("unquoted clock times stay strings", func(t *testing.T) {
		// YAML 1.1 would read 07:30 as a base-60 number; yaml.v3 must not.
		c := mustLoad(t, writeConfig(t, "users:\n  - name: a\n    password_hash: \""+aliceHash+"\"\n    digest_at: 07:30\n    quiet_hours: {start: 23:00, end: 06:00}\n"))
		u := c.Users[0]
		if u.DigestAt != 7*time.Hour+30*time.Minute || u.QuietHours.Start != 23*time.Hour || u.QuietHours.End != 6*time.Hour {
			t.Errorf("digest_at=%v quiet=%+v", u.DigestAt, u.QuietHours)
		}
	})
	t.Run("lead times as a comma string", func(t *testing.T) {
		c := mustLoad(t, writeConfig(t, "notifications:\n  lead_times: \"48h, 90m\"\n"))
		if want := []time.Duration{48 * time.Hour, 90 * time.Minute}; !slices.Equal(c.Notifications.LeadTimes, want) {
			t.Errorf("lead_times = %v", c.Notifications.LeadTimes)
		}
	})
	t.Run("empty lead times mean none", func(t *testing.T) {
		c := mustLoad(t, writeConfig(t, "notifications:\n  lead_times: []\nusers:\n  - name: a\n    password_hash: \""+aliceHash+"\"\n    lead_times: []\n"))
		if len(c.Notifications.LeadTimes) != 0 {
			t.Errorf("lead_times = %v", c.Notifications.LeadTimes)
		}
		if u := c.Users[0]; u.LeadTimes == nil || len(c.LeadTimesFor(&u, nil)) != 0 {
			t.Errorf("user lead_times = %#v: an explicit [] must override the global list", u.LeadTimes)
		}
	})
	t.Run("public url follows listen and tls", func(t *testing.T) {
		c := mustLoad(t, writeConfig(t, "http:\n  listen: 127.0.0.1:9000\ntls:\n  acme_hosts: [x.example.com]\n"))
		if got := c.HTTP.PublicURL.String(); got != "https://127.0.0.1:9000" {
			t.Errorf("derived public_url with tls = %q", got)
		}
		c = mustLoad(t, writeConfig(t, "http:\n  listen: \"[::1]:9000\"\n"))
		if got := c.HTTP.PublicURL.String(); got != "http://[::1]:9000" {
			t.Errorf("derived public_url = %q", got)
		}
	})
	t.Run("secret_file", func(t *testing.T) {
		dir := t.TempDir()
		sf := filepath.Join(dir, "tracker.secret")
		if err := os.WriteFile(sf, []byte("file-secret-value\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := mustLoad(t, writeConfig(t, "sources:\n  - name: t\n    secret_file: "+sf+"\n"))
		if c.Sources[0].Secret != "file-secret-value" {
			t.Errorf("secret = %q", c.Sources[0].Secret)
		}
		empty := filepath.Join(dir, "empty.secret")
		os.WriteFile(empty, []byte("\n"), 0o600)
		if _, err := Load(writeConfig(t, "sources:\n  - name: t\n    secret_file: "+empty+"\n")); err == nil || !strings.Contains(err.Error(), "sources[0].secret_file") {
			t.Errorf("empty secret file: %v", err)
		}
		if _, err := Load(writeConfig(t, "sources:\n  - name: t\n    secret_file: "+filepath.Join(dir, "missing")+"\n")); err == nil || !strings.Contains(err.Error(), "sources[0].secret_file") {
			t.Errorf("missing secret file: %v", err)
		}
	})
	t.Run("tls files", func(t *testing.T) {
		dir := t.TempDir()
		cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		os.WriteFile(cert, []byte("x"), 0o600)
		os.WriteFile(key, []byte("x"), 0o600)
		c := mustLoad(t, writeConfig(t, "tls:\n  cert_file: "+cert+"\n  key_file: "+key+"\nimap:\n  tls_listen: 127.0.0.1:993\n"))
		if !c.TLS.Enabled() || c.HTTP.PublicURL.Scheme != "https" || c.IMAP.TLSListen != "127.0.0.1:993" {
			t.Errorf("tls=%+v public_url=%v", c.TLS, c.HTTP.PublicURL)
		}
		_, err := Load(writeConfig(t, "tls:\n  cert_file: "+cert+"\n  key_file: "+filepath.Join(dir, "nokey.pem")+"\n"))
		if err == nil || !strings.Contains(err.Error(), "tls.key_file") {
			t.Errorf("missing key file: %v", err)
		}
	})
	t.Run("label_projects keys are folded to lower case", func(t *testing.T) {
		// viper lower-cases every map key; consumers must look labels up
		// with strings.ToLower (documented on Source.LabelProjects).
		c := mustLoad(t, writeConfig(t, "sources:\n  - name: t\n    secret: long-enough\n    label_projects:\n      Bug: Bugs\n"))
		if !reflect.DeepEqual(c.Sources[0].LabelProjects, map[string]string{"bug": "Bugs"}) {
			t.Errorf("label_projects = %v", c.Sources[0].LabelProjects)
		}
	})
}

func TestEnvOverrides(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for _, f := range []string{cert, key} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("DUEBRIDGE_HTTP_LISTEN", "0.0.0.0:9999")
	// minimal.yaml has no tls section: the env variables must still apply.
	t.Setenv("DUEBRIDGE_TLS_CERT_FILE", cert)
	t.Setenv("DUEBRIDGE_TLS_KEY_FILE", key)
	t.Setenv("DUEBRIDGE_NOTIFICATIONS_LEAD_TIMES", "2h,30m")
	t.Setenv("DUEBRIDGE_LIMITS_IMAP_CONNS_PER_USER", "3")
	t.Setenv("DUEBRIDGE_LIMITS_LOCKOUT_WINDOW", "1h")
	t.Setenv("DUEBRIDGE_SETUP_SIGN_PROFILES", "true")
	t.Setenv("DUEBRIDGE_DATA_DIR", "/srv/duebridge")

	c := mustLoad(t, filepath.Join(testdata, "minimal.yaml"))
	if c.HTTP.Listen != "0.0.0.0:9999" {
		t.Errorf("http.listen = %q", c.HTTP.Listen)
	}
	if c.TLS.CertFile != cert || c.TLS.KeyFile != key || !c.TLS.Enabled() {
		t.Errorf("tls = %+v", c.TLS)
	}
	if got := c.HTTP.PublicURL.String(); got != "https://0.0.0.0:9999" {
		t.Errorf("derived public_url = %q", got)
	}
	if want := []time.Duration{2 * time.Hour, 30 * time.Minute}; !slices.Equal(c.Notifications.LeadTimes, want) {
		t.Errorf("lead_times = %v, want %v", c.Notifications.LeadTimes, want)
	}
	if c.Limits.IMAPConnsPerUser != 3 || c.Limits.LockoutWindow != time.Hour || !c.Setup.SignProfiles || c.DataDir != "/srv/duebridge" {
		t.Errorf("limits=%+v setup=%+v data_dir=%q", c.Limits, c.Setup, c.DataDir)
	}
	if len(c.Users) != 1 || c.Users[0].Name != "alice" {
		t.Errorf("users from the file lost: %+v", c.Users)
	}

	// The environment also wins over a value the file sets.
	c = mustLoad(t, filepath.Join(testdata, "valid.yaml"))
	if c.HTTP.Listen != "0.0.0.0:9999" || c.DataDir != "/srv/duebridge" || len(c.Notifications.LeadTimes) != 2 {
		t.Errorf("over valid.yaml: listen=%q data_dir=%q lead_times=%v", c.HTTP.Listen, c.DataDir, c.Notifications.LeadTimes)
	}
	// And applies with no file at all.
	c = mustLoad(t, "")
	if c.HTTP.Listen != "0.0.0.0:9999" || c.TLS.CertFile != cert {
		t.Errorf("no file: listen=%q cert=%q", c.HTTP.Listen, c.TLS.CertFile)
	}
}

func TestEnvOverrideRefused(t *testing.T) {
	t.Setenv("DUEBRIDGE_NOTIFICATIONS_LEAD_TIMES", "2h,1d")
	t.Setenv("DUEBRIDGE_IMAP_LISTEN", "nonsense")
	_, err := Load(filepath.Join(testdata, "minimal.yaml"))
	if err == nil {
		t.Fatal("bad env values accepted")
	}
	for _, k := range []string{"notifications.lead_times[1]", "imap.listen"} {
		if !strings.Contains(err.Error(), k) {
			t.Errorf("error does not name %s: %v", k, err)
		}
	}
}

// Every leaf key of the YAML (outside the users and sources lists) needs a
// declaration with a default, or DUEBRIDGE_* cannot reach it when the file leaves it out
// (LIBRARIES.md §5.2).
func TestKeysCoverEveryLeafKey(t *testing.T) {
	var keys []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			k := prefix + f.Tag.Get("mapstructure")
			switch {
			case k == "users" || k == "sources":
			case f.Type.Kind() == reflect.Struct:
				walk(k+".", f.Type)
			default:
				keys = append(keys, k)
			}
		}
	}
	walk("", reflect.TypeOf(raw{}))
	for _, k := range keys {
		if lookupKey(k) == nil {
			t.Errorf("no declaration (config.keys) for %s", k)
		}
	}
	for _, k := range declared() {
		if !slices.Contains(keys, k) {
			t.Errorf("declaration for unknown key %s", k)
		}
	}
	if len(keys) < 20 {
		t.Fatalf("walked only %d keys: %v", len(keys), keys)
	}
}

func TestIsPasswordHash(t *testing.T) {
	for s, want := range map[string]bool{
		aliceHash:                  true,
		"$2b$" + aliceHash[4:]:     true,
		"$2y$" + aliceHash[4:]:     true,
		argonHash:                  true,
		aliceHash[:59]:             false,
		"$argon2i$v=19$m=1$a$b":    false,
		"$argon2id$v=19$m=1$a":     false,
		"correct-horse-battery":    false,
		"":                         false,
		"{SSHA}abcdefghijklmnop==": false,
	} {
		if got := IsPasswordHash(s); got != want {
			t.Errorf("IsPasswordHash(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestRestartRequired(t *testing.T) {
	base := mustLoad(t, filepath.Join(testdata, "valid.yaml"))
	same := mustLoad(t, filepath.Join(testdata, "valid.yaml"))
	if got := RestartRequired(base, same); len(got) != 0 {
		t.Errorf("identical configs: %v", got)
	}

	// Keys that take effect live are not reported.
	live := *same
	live.Users = live.Users[:1]
	live.Mail.From = "x <x@example.com>"
	live.Notifications.LeadTimes = []time.Duration{time.Minute}
	live.Sources = nil
	live.Limits.LockoutFailures = 99
	if got := RestartRequired(base, &live); len(got) != 0 {
		t.Errorf("live changes reported as needing a restart: %v", got)
	}

	changed := *same
	changed.DataDir = "/elsewhere"
	changed.Store = "sqlite"
	changed.PostgresURL = ""
	changed.HTTP.Listen = "127.0.0.1:1"
	changed.IMAP.Listen = "127.0.0.1:2"
	changed.IMAP.TLSListen = ""
	changed.Submission.Listen = "127.0.0.1:3"
	changed.Submission.TLSListen = "127.0.0.1:4"
	changed.TLS.CertFile = "/c.pem"
	changed.TLS.KeyFile = "/k.pem"
	want := []string{"data_dir", "store", "postgres_url", "http.listen", "imap.listen", "imap.tls_listen",
		"submission.listen", "submission.tls_listen", "tls.cert_file", "tls.key_file"}
	if got := RestartRequired(base, &changed); !slices.Equal(got, want) {
		t.Errorf("RestartRequired = %v, want %v", got, want)
	}

	one := *same
	one.HTTP.Listen = "127.0.0.1:1"
	if got := RestartRequired(base, &one); !slices.Equal(got, []string{"http.listen"}) {
		t.Errorf("only http.listen changed: %v", got)
	}
}

func TestDemo(t *testing.T) {
	dir := t.TempDir()
	c, err := Demo(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Demo || c.Path != "" || c.DataDir != dir || c.Store != "sqlite" {
		t.Errorf("demo: Demo=%v Path=%q DataDir=%q Store=%q", c.Demo, c.Path, c.DataDir, c.Store)
	}
	if c.HTTP.Listen != "127.0.0.1:8080" || c.IMAP.Listen != "127.0.0.1:1143" || c.TLS.Enabled() {
		t.Errorf("demo listeners: %q %q tls=%v", c.HTTP.Listen, c.IMAP.Listen, c.TLS.Enabled())
	}
	if len(c.Users) != 2 || len(DemoUsers) != 2 {
		t.Fatalf("demo users: %d (DemoUsers %d)", len(c.Users), len(DemoUsers))
	}
	for i, up := range DemoUsers {
		u := c.User(up[0])
		if u == nil || u != &c.Users[i] {
			t.Fatalf("demo user %s missing", up[0])
		}
		if !IsPasswordHash(u.PasswordHash) || !strings.HasPrefix(u.PasswordHash, "$2") {
			t.Errorf("%s: not a bcrypt hash: %q", u.Name, u.PasswordHash)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(up[1])); err != nil {
			t.Errorf("%s: hash does not verify the demo password: %v", u.Name, err)
		}
		if err := bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), []byte(up[1]+"x")); err == nil {
			t.Errorf("%s: hash verifies a wrong password", u.Name)
		}
		if u.Email != up[0]+"@example.com" || u.Notify != NotifyAlarms || u.Location != time.UTC || u.DigestAt != 8*time.Hour {
			t.Errorf("demo user = %+v", u)
		}
	}
	if len(c.Sources) != 1 {
		t.Fatalf("demo sources: %+v", c.Sources)
	}
	s := c.Source(DemoSource)
	if s == nil || s.Secret != DemoSecret || s.Kind != "generic" || s.CallbackURL != nil {
		t.Errorf("demo source = %+v", s)
	}
	if !slices.Equal(c.LeadTimesFor(&c.Users[0], s), []time.Duration{24 * time.Hour, time.Hour}) {
		t.Errorf("demo lead times = %v", c.LeadTimesFor(&c.Users[0], s))
	}

	// Two calls do not share state (fresh hashes, fresh slices).
	c2, err := Demo("")
	if err != nil {
		t.Fatal(err)
	}
	if c2.DataDir != "data" || len(c2.Users) != 2 || len(c2.Sources) != 1 {
		t.Errorf("Demo(\"\"): data_dir=%q users=%d sources=%d", c2.DataDir, len(c2.Users), len(c2.Sources))
	}
	if c2.Users[0].PasswordHash == c.Users[0].PasswordHash {
		t.Errorf("demo hashes reused between calls (no fresh salt)")
	}
}

func TestDemoEnv(t *testing.T) {
	t.Setenv("DUEBRIDGE_HTTP_LISTEN", "127.0.0.1:18080")
	c, err := Demo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTP.Listen != "127.0.0.1:18080" || c.HTTP.PublicURL.String() != "http://127.0.0.1:18080" {
		t.Errorf("demo ignores DUEBRIDGE_HTTP_LISTEN: %q %v", c.HTTP.Listen, c.HTTP.PublicURL)
	}
	t.Setenv("DUEBRIDGE_HTTP_LISTEN", "bad")
	if _, err := Demo(t.TempDir()); err == nil || !strings.Contains(err.Error(), "http.listen") {
		t.Errorf("Demo with a bad env value: %v", err)
	}
}

// TestKeepRestartKeys: every key RestartRequired reports is put back, and
// keys that apply live are left as edited.
func TestKeepRestartKeys(t *testing.T) {
	base := mustLoad(t, filepath.Join(testdata, "valid.yaml"))
	changed := *mustLoad(t, filepath.Join(testdata, "valid.yaml"))
	changed.DataDir, changed.PostgresURL = "/elsewhere", "postgres://x/y"
	changed.HTTP.Listen, changed.IMAP.Listen, changed.IMAP.TLSListen = "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:5"
	changed.Submission.Listen, changed.Submission.TLSListen = "127.0.0.1:3", "127.0.0.1:4"
	changed.TLS.CertFile, changed.TLS.KeyFile = "/c.pem", "/k.pem"
	changed.TLS.ACMEHosts, changed.TLS.ACMEEmail = []string{"x.example.com"}, "a@example.com"
	changed.Mail.From = "y <y@example.com>"
	changed.IMAP.ProxyProtocol, changed.Submission.ProxyProtocol = true, true
	changed.Limits.ConnsPerAddress = 7
	if len(RestartRequired(base, &changed)) == 0 {
		t.Fatal("test edit changes no restart key")
	}
	kept := KeepRestartKeys(base, &changed)
	if got := RestartRequired(base, kept); len(got) != 0 {
		t.Errorf("keys still differing after KeepRestartKeys: %v", got)
	}
	if kept.Mail.From != changed.Mail.From {
		t.Error("a live key was put back")
	}
}

func declared() []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.Name)
	}
	return out
}
