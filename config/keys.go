package config

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"
)

// key declares one scalar config key (everything outside the users and
// sources lists) in one place: its default, whether a reload applies it,
// whether its value is a secret or a file path, a one-line description, and
// how to read its effective value from a *Config. The defaults viper needs,
// the DUEBRIDGE_* variables, RestartRequired, `check-config --print` and
// the key reference in docs/configuration.md (TestKeyReferenceInREADME) all come from this
// table. Adding a key: a field in raw (for decoding), a row here, and its
// validation in validate; TestKeysCoverEveryLeafKey ties raw to this table.
type key struct {
	Name    string
	Default any
	Restart bool // takes effect only on restart (listeners, store)
	Secret  bool // masked when printed
	Path    bool // a file path: relative ones resolve against the config file's directory
	Doc     string
	Value   func(*Config) any
}

var keys = []key{
	{Name: "data_dir", Default: "./data", Restart: true, Path: true, Doc: "SQLite database directory", Value: func(c *Config) any { return c.DataDir }},
	{Name: "store", Default: "sqlite", Restart: true, Doc: "sqlite or postgres", Value: func(c *Config) any { return c.Store }},
	{Name: "postgres_url", Default: "", Restart: true, Secret: true, Doc: "connection URL with store: postgres", Value: func(c *Config) any { return c.PostgresURL }},
	{Name: "instance", Default: "", Restart: true, Doc: "this process's name in metrics (label replica); default host name:HTTP port", Value: func(c *Config) any { return c.Instance }},
	{Name: "http.listen", Default: "127.0.0.1:8080", Restart: true, Doc: "CalDAV, webhooks, setup page, metrics", Value: func(c *Config) any { return c.HTTP.Listen }},
	{Name: "http.public_url", Default: "", Doc: "the URL phones and trackers reach (default: from http.listen); no path", Value: func(c *Config) any { return urlString(c.HTTP.PublicURL) }},
	{Name: "http.trusted_proxies", Default: []string{}, Doc: "CIDRs whose X-Forwarded-For / Forwarded name the client (reverse proxies)", Value: func(c *Config) any { return prefixStrings(c.HTTP.TrustedProxies) }},
	{Name: "imap.listen", Default: "127.0.0.1:1143", Restart: true, Doc: "IMAP, STARTTLS when TLS is configured", Value: func(c *Config) any { return c.IMAP.Listen }},
	{Name: "imap.tls_listen", Default: "", Restart: true, Doc: "IMAP with implicit TLS (\"\" = off)", Value: func(c *Config) any { return c.IMAP.TLSListen }},
	{Name: "imap.proxy_protocol", Default: false, Restart: true, Doc: "IMAP listeners expect a PROXY protocol v1/v2 header", Value: func(c *Config) any { return c.IMAP.ProxyProtocol }},
	{Name: "submission.listen", Default: "", Restart: true, Doc: "SMTP submission (STARTTLS), the outgoing server iOS needs (\"\" = off)", Value: func(c *Config) any { return c.Submission.Listen }},
	{Name: "submission.tls_listen", Default: "", Restart: true, Doc: "SMTP submission with implicit TLS (\"\" = off)", Value: func(c *Config) any { return c.Submission.TLSListen }},
	{Name: "submission.proxy_protocol", Default: false, Restart: true, Doc: "submission listeners expect a PROXY protocol v1/v2 header", Value: func(c *Config) any { return c.Submission.ProxyProtocol }},
	{Name: "tls.cert_file", Default: "", Restart: true, Path: true, Doc: "PEM certificate chain (re-read when it changes)", Value: func(c *Config) any { return c.TLS.CertFile }},
	{Name: "tls.key_file", Default: "", Restart: true, Path: true, Doc: "PEM private key", Value: func(c *Config) any { return c.TLS.KeyFile }},
	{Name: "tls.ca_file", Default: "", Path: true, Doc: "CA the setup profile installs (duebridge dev-cert)", Value: func(c *Config) any { return c.TLS.CAFile }},
	{Name: "tls.ticket_keys_file", Default: "", Restart: true, Path: true, Doc: "session ticket keys shared by replicas and restarts, TLS 1.3 only (duebridge ticket-keys rotate; re-read when it changes)", Value: func(c *Config) any { return c.TLS.TicketKeysFile }},
	{Name: "tls.acme_hosts", Default: []string{}, Restart: true, Doc: "host names to get Let's Encrypt certificates for", Value: func(c *Config) any { return c.TLS.ACMEHosts }},
	{Name: "tls.acme_email", Default: "", Restart: true, Doc: "contact address for Let's Encrypt", Value: func(c *Config) any { return c.TLS.ACMEEmail }},
	{Name: "mail.from", Default: "duebridge <tasks@duebridge.invalid>", Doc: "From: of the mail duebridge files into IMAP", Value: func(c *Config) any { return c.Mail.From }},
	{Name: "mail.coalesce_window", Default: "2m", Doc: "phone ticks and un-ticks of one task within this window make one mail (0 = off)", Value: func(c *Config) any { return c.Mail.CoalesceWindow.String() }},
	{Name: "notifications.lead_times", Default: []string{"24h", "1h"}, Doc: "alarms before a due date", Value: func(c *Config) any { return durationStrings(c.Notifications.LeadTimes) }},
	{Name: "retention.mail_days", Default: 365, Doc: "INBOX mails older than this many days are expunged (0 = keep forever)", Value: func(c *Config) any { return c.Retention.MailDays }},
	{Name: "retention.trash_days", Default: 30, Doc: "mails are expunged this many days after they entered Trash (0 = keep forever)", Value: func(c *Config) any { return c.Retention.TrashDays }},
	{Name: "retention.tombstone_days", Default: 400, Doc: "deleted calendar objects and tasks are forgotten after this many days (0 = keep forever)", Value: func(c *Config) any { return c.Retention.TombstoneDays }},
	{Name: "limits.webhook_body_bytes", Default: int64(8 << 20), Doc: "largest webhook body", Value: func(c *Config) any { return c.Limits.WebhookBodyBytes }},
	{Name: "limits.ical_object_bytes", Default: int64(256 << 10), Doc: "largest calendar object a phone may PUT", Value: func(c *Config) any { return c.Limits.ICalObjectBytes }},
	{Name: "limits.client_props_bytes", Default: int64(16 << 10), Doc: "client-private X- properties kept per object", Value: func(c *Config) any { return c.Limits.ClientPropsBytes }},
	{Name: "limits.imap_literal_bytes", Default: int64(1 << 20), Doc: "largest IMAP literal", Value: func(c *Config) any { return c.Limits.IMAPLiteralBytes }},
	{Name: "limits.imap_conns_per_user", Default: 20, Doc: "concurrent IMAP connections per user", Value: func(c *Config) any { return c.Limits.IMAPConnsPerUser }},
	{Name: "limits.own_reminders_per_user", Default: 5000, Doc: "reminders a user may create in the duebridge lists", Value: func(c *Config) any { return c.Limits.OwnRemindersPerUser }},
	{Name: "limits.own_reminder_bytes_per_user", Default: int64(50 << 20), Doc: "bytes of a user's own reminders, all together", Value: func(c *Config) any { return c.Limits.OwnReminderBytesPerUser }},
	{Name: "limits.recurrence_steps", Default: 100000, Doc: "work one object's recurrences may cost a time-range query", Value: func(c *Config) any { return c.Limits.RecurrenceSteps }},
	{Name: "limits.recurrence_steps_per_request", Default: 1000000, Doc: "recurrence work of one CalDAV request, all objects together", Value: func(c *Config) any { return c.Limits.RecurrenceStepsPerRequest }},
	{Name: "limits.multiget_hrefs", Default: 1000, Doc: "distinct hrefs in one calendar-multiget", Value: func(c *Config) any { return c.Limits.MultigetHrefs }},
	{Name: "limits.imap_keywords_per_message", Default: 50, Doc: "IMAP keywords on one message", Value: func(c *Config) any { return c.Limits.IMAPKeywordsPerMessage }},
	{Name: "limits.imap_keywords_per_mailbox", Default: 250, Doc: "distinct IMAP keywords in one mailbox", Value: func(c *Config) any { return c.Limits.IMAPKeywordsPerMailbox }},
	{Name: "limits.imap_keyword_bytes", Default: 64, Doc: "longest IMAP keyword", Value: func(c *Config) any { return c.Limits.IMAPKeywordBytes }},
	{Name: "limits.conns_per_address", Default: 100, Restart: true, Doc: "concurrent connections per client address (IPv6: /64) on each listener", Value: func(c *Config) any { return c.Limits.ConnsPerAddress }},
	{Name: "limits.login_failure_delay", Default: "1s", Doc: "delay per recent failed login", Value: func(c *Config) any { return c.Limits.LoginFailureDelay.String() }},
	{Name: "limits.lockout_failures", Default: 10, Doc: "failures of one name or address that lock it", Value: func(c *Config) any { return c.Limits.LockoutFailures }},
	{Name: "limits.devices_per_user", Default: 50, Doc: "device passwords one user may hold", Value: func(c *Config) any { return c.Limits.DevicesPerUser }},
	{Name: "limits.device_cache_entries", Default: 1000000, Doc: "device passwords whose store row is kept in memory after a successful login (~230 bytes each)", Value: func(c *Config) any { return c.Limits.DeviceCacheEntries }},
	{Name: "limits.sync_health_users", Default: 100000, Doc: "users whose CalDAV sync health (/admin/sync, the last-sync gauge) is kept in memory, ~0.5 KB each (ten lists, one phone); past it the least recently seen is forgotten", Value: func(c *Config) any { return c.Limits.SyncHealthUsers }},
	{Name: "limits.sqlite_wal_mb", Default: 64, Restart: true, Doc: "SQLite only: size of the write-ahead log (MiB) past which the store starts it over (holding writers for about one commit); bounds the log's disk use and the copy a start after a crash makes before serving", Value: func(c *Config) any { return c.Limits.SQLiteWALMB }},
	{Name: "limits.device_cache_ttl", Default: "20m", Doc: "how long a remembered device row answers logins before the store is read again (1s-24h): longer than an iPhone's 15-minute poll; revocations evict at once, so it only bounds a missed one", Value: func(c *Config) any { return c.Limits.DeviceCacheTTL.String() }},
	{Name: "limits.lockout_window", Default: "15m", Doc: "counting window and lock duration", Value: func(c *Config) any { return c.Limits.LockoutWindow.String() }},
	{Name: "limits.submission_auth_timeout", Default: "60s", Doc: "time from connecting to a successful AUTH on submission", Value: func(c *Config) any { return c.Limits.SubmissionAuthTimeout.String() }},
	{Name: "limits.submission_unauth_conns", Default: 50, Doc: "submission connections not yet logged in, in all", Value: func(c *Config) any { return c.Limits.SubmissionUnauthConns }},
	{Name: "limits.submission_unauth_per_address", Default: 10, Doc: "submission connections not yet logged in, per client address", Value: func(c *Config) any { return c.Limits.SubmissionUnauthPerAddress }},
	{Name: "limits.task_title_bytes", Default: 1024, Doc: "longest task title", Value: func(c *Config) any { return c.Limits.TaskTitleBytes }},
	{Name: "limits.task_description_bytes", Default: 64 << 10, Doc: "longest task description", Value: func(c *Config) any { return c.Limits.TaskDescriptionBytes }},
	{Name: "limits.task_url_bytes", Default: 2048, Doc: "longest task url", Value: func(c *Config) any { return c.Limits.TaskURLBytes }},
	{Name: "limits.task_label_bytes", Default: 256, Doc: "longest label", Value: func(c *Config) any { return c.Limits.TaskLabelBytes }},
	{Name: "limits.task_labels", Default: 100, Doc: "labels per task", Value: func(c *Config) any { return c.Limits.TaskLabels }},
	{Name: "limits.webhook_timestamp_window", Default: "5m", Doc: "how far a signed X-Duebridge-Timestamp may be from now", Value: func(c *Config) any { return c.Limits.WebhookTimestampWindow.String() }},
	{Name: "setup.profile_passwords", Default: false, Doc: "put the password into the setup profile", Value: func(c *Config) any { return c.Setup.ProfilePasswords }},
	{Name: "feeds.refresh", Default: "1h", Doc: "how often calendar feed subscribers are asked to poll (15m-168h)", Value: func(c *Config) any { return c.Feeds.Refresh.String() }},
	{Name: "setup.sign_profiles", Default: false, Doc: "sign the setup profile with the server certificate", Value: func(c *Config) any { return c.Setup.SignProfiles }},
}

// lookupKey returns the declaration of a scalar key, or nil.
func lookupKey(name string) *key {
	for i := range keys {
		if keys[i].Name == name {
			return &keys[i]
		}
	}
	return nil
}

// EnvVar is the environment variable that overrides a scalar key.
func EnvVar(name string) string {
	return "DUEBRIDGE_" + strings.ToUpper(strings.ReplaceAll(name, ".", "_"))
}

// Origin says where a key's effective value came from.
type Origin string

const (
	FromDefault Origin = "default"
	FromFile    Origin = "file"
	FromEnv     Origin = "env"
)

// Setting is one line of the effective configuration.
type Setting struct {
	Key    string
	Value  string // secrets are masked
	Origin Origin
	Env    string // the variable, when Origin is FromEnv
}

// Effective lists every scalar key of c with its value (secrets masked) and
// where the value came from, then a summary line per user and source.
func (c *Config) Effective() []Setting {
	var out []Setting
	for _, k := range keys {
		s := Setting{Key: k.Name, Value: format(k.Value(c)), Origin: c.origins[k.Name]}
		if s.Origin == "" {
			s.Origin = FromDefault
		}
		if s.Origin == FromEnv {
			s.Env = EnvVar(k.Name)
		}
		if k.Secret && s.Value != "" {
			s.Value = "***"
		}
		out = append(out, s)
	}
	for i, u := range c.Users {
		v := fmt.Sprintf("name=%s email=%s password_hash=%s app_passwords=%d notify=%s timezone=%s admin=%v",
			u.Name, u.Email, maskHash(u.PasswordHash), len(u.AppPasswords), u.Notify, u.Location, u.Admin)
		out = append(out, Setting{Key: fmt.Sprintf("users[%d]", i), Value: v, Origin: FromFile})
	}
	for i, s := range c.Sources {
		v := fmt.Sprintf("name=%s kind=%s secret=*** callback_url=%s", s.Name, s.Kind, urlString(s.CallbackURL))
		if s.APIToken != "" {
			v += " api_token=***"
		}
		out = append(out, Setting{Key: fmt.Sprintf("sources[%d]", i), Value: v, Origin: FromFile})
	}
	return out
}

// maskHash keeps the algorithm and cost of a password hash, never its salt or key.
func maskHash(h string) string {
	if i := strings.LastIndex(h, "$"); strings.HasPrefix(h, "$argon2id$") && i > 0 {
		j := strings.LastIndex(h[:i], "$")
		return h[:j+1] + "***"
	}
	if len(h) > 7 && strings.HasPrefix(h, "$2") {
		return h[:7] + "***"
	}
	return "***"
}

func format(v any) string {
	switch v := v.(type) {
	case []string:
		return strings.Join(v, ",")
	default:
		return fmt.Sprint(v)
	}
}

func durationStrings(ds []time.Duration) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

func urlString(u interface{ String() string }) string {
	if reflect.ValueOf(u).IsNil() {
		return ""
	}
	return u.String()
}

// envOverrides returns the DUEBRIDGE_* variables that set a scalar key
// (key name → variable), and warnings for DUEBRIDGE_* variables that name
// no key. Only non-empty variables count, as viper only uses those.
func envOverrides(environ []string) (set map[string]string, warnings []string) {
	set = map[string]string{}
	known := map[string]string{}
	for _, k := range keys {
		known[EnvVar(k.Name)] = k.Name
	}
	for _, kv := range environ {
		name, val, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "DUEBRIDGE_") || val == "" {
			continue
		}
		if k, ok := known[name]; ok {
			set[k] = name
			continue
		}
		rest := strings.TrimPrefix(name, "DUEBRIDGE_")
		switch {
		case strings.HasPrefix(rest, "TEST_"), strings.HasPrefix(rest, "BENCH_"):
			// test and benchmark switches, not config
		case rest == "USERS" || rest == "SOURCES" || strings.HasPrefix(rest, "USERS_") || strings.HasPrefix(rest, "SOURCES_"):
			warnings = append(warnings, fmt.Sprintf("environment variable %s ignored: users and sources come from the config file only", name))
		default:
			w := fmt.Sprintf("environment variable %s ignored: no such config key", name)
			if s := nearest(name, slices.Collect(mapKeys(known))); s != "" {
				w += fmt.Sprintf(" (did you mean %s?)", s)
			}
			warnings = append(warnings, w)
		}
	}
	slices.Sort(warnings)
	return set, warnings
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// knownKeys lists every key a config file may hold, list elements written
// with "[]" ("users[].email"), from raw's mapstructure tags.
func knownKeys() []string {
	var out []string
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := prefix + f.Tag.Get("mapstructure")
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			out = append(out, name)
			switch {
			case ft.Kind() == reflect.Struct:
				walk(name+".", ft)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(name+"[].", ft.Elem())
			}
		}
	}
	walk("", reflect.TypeOf(raw{}))
	return out
}

// suggestKey returns the known key closest to an unknown one
// ("users[0].timzone" → "users[0].timezone"), or "".
func suggestKey(unknown string) string {
	norm := listIndex.ReplaceAllString(unknown, "[]")
	parent := ""
	if i := strings.LastIndex(norm, "."); i >= 0 {
		parent = norm[:i+1]
	}
	var siblings []string
	for _, k := range knownKeys() {
		// Only keys at the same level: a misspelt leaf is nearly always
		// meant for the section it sits in.
		if strings.HasPrefix(k, parent) && !strings.Contains(k[len(parent):], ".") {
			siblings = append(siblings, k)
		}
	}
	best := nearest(norm, siblings)
	if best == "" {
		return ""
	}
	// Put the original indices back.
	return unknown[:strings.LastIndex(unknown, ".")+1] + best[len(parent):]
}

// nearest returns the candidate within a small edit distance of s, or "".
func nearest(s string, candidates []string) string {
	best, bestD := "", 0
	limit := max(1, min(3, len(s)/4))
	for _, c := range candidates {
		d := editDistance(strings.ToLower(s), strings.ToLower(c))
		if d <= limit && (best == "" || d < bestD || (d == bestD && c < best)) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, with a swap of two neighbours
// counted as one edit (the commonest typo).
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// getenviron is os.Environ; a variable so the load path reads it once.
var getenviron = os.Environ

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// Origin returns where a scalar key's value came from (FromDefault for a
// Config not made by Load).
func (c *Config) Origin(key string) Origin {
	if o := c.origins[key]; o != "" {
		return o
	}
	return FromDefault
}
