package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
)

// raw mirrors the YAML exactly; UnmarshalExact refuses anything else.
type raw struct {
	DataDir     string `mapstructure:"data_dir"`
	Store       string `mapstructure:"store"`
	PostgresURL string `mapstructure:"postgres_url"`
	Instance    string `mapstructure:"instance"`
	HTTP        struct {
		Listen         string   `mapstructure:"listen"`
		PublicURL      string   `mapstructure:"public_url"`
		TrustedProxies []string `mapstructure:"trusted_proxies"`
	} `mapstructure:"http"`
	IMAP struct {
		Listen        string `mapstructure:"listen"`
		TLSListen     string `mapstructure:"tls_listen"`
		ProxyProtocol bool   `mapstructure:"proxy_protocol"`
	} `mapstructure:"imap"`
	Submission struct {
		Listen        string `mapstructure:"listen"`
		TLSListen     string `mapstructure:"tls_listen"`
		ProxyProtocol bool   `mapstructure:"proxy_protocol"`
	} `mapstructure:"submission"`
	TLS struct {
		CertFile       string   `mapstructure:"cert_file"`
		KeyFile        string   `mapstructure:"key_file"`
		CAFile         string   `mapstructure:"ca_file"`
		TicketKeysFile string   `mapstructure:"ticket_keys_file"`
		ACMEHosts      []string `mapstructure:"acme_hosts"`
		ACMEEmail      string   `mapstructure:"acme_email"`
	} `mapstructure:"tls"`
	Users   []rawUser   `mapstructure:"users"`
	Sources []rawSource `mapstructure:"sources"`
	Mail    struct {
		From           string `mapstructure:"from"`
		CoalesceWindow string `mapstructure:"coalesce_window"`
	} `mapstructure:"mail"`
	Notifications struct {
		LeadTimes []string `mapstructure:"lead_times"`
	} `mapstructure:"notifications"`
	Retention struct {
		MailDays      int `mapstructure:"mail_days"`
		TrashDays     int `mapstructure:"trash_days"`
		TombstoneDays int `mapstructure:"tombstone_days"`
	} `mapstructure:"retention"`
	Limits struct {
		WebhookBodyBytes  int64  `mapstructure:"webhook_body_bytes"`
		ICalObjectBytes   int64  `mapstructure:"ical_object_bytes"`
		ClientPropsBytes  int64  `mapstructure:"client_props_bytes"`
		IMAPLiteralBytes  int64  `mapstructure:"imap_literal_bytes"`
		IMAPConnsPerUser  int    `mapstructure:"imap_conns_per_user"`
		MultigetHrefs     int    `mapstructure:"multiget_hrefs"`
		OwnReminders      int    `mapstructure:"own_reminders_per_user"`
		OwnReminderBytes  int64  `mapstructure:"own_reminder_bytes_per_user"`
		RecurrenceSteps   int    `mapstructure:"recurrence_steps"`
		RecurrenceStepsRq int    `mapstructure:"recurrence_steps_per_request"`
		IMAPKeywordsMsg   int    `mapstructure:"imap_keywords_per_message"`
		IMAPKeywordsMbox  int    `mapstructure:"imap_keywords_per_mailbox"`
		IMAPKeywordBytes  int    `mapstructure:"imap_keyword_bytes"`
		ConnsPerAddress   int    `mapstructure:"conns_per_address"`
		LoginFailureDelay string `mapstructure:"login_failure_delay"`
		LockoutFailures   int    `mapstructure:"lockout_failures"`
		LockoutWindow     string `mapstructure:"lockout_window"`
		DevicesPerUser    int    `mapstructure:"devices_per_user"`
		DeviceCacheMax    int    `mapstructure:"device_cache_entries"`
		DeviceCacheTTL    string `mapstructure:"device_cache_ttl"`
		SyncHealthUsers   int    `mapstructure:"sync_health_users"`
		SQLiteWALMB       int    `mapstructure:"sqlite_wal_mb"`

		SubmissionAuthTimeout      string `mapstructure:"submission_auth_timeout"`
		SubmissionUnauthConns      int    `mapstructure:"submission_unauth_conns"`
		SubmissionUnauthPerAddress int    `mapstructure:"submission_unauth_per_address"`

		TaskTitleBytes         int    `mapstructure:"task_title_bytes"`
		TaskDescriptionBytes   int    `mapstructure:"task_description_bytes"`
		TaskURLBytes           int    `mapstructure:"task_url_bytes"`
		TaskLabelBytes         int    `mapstructure:"task_label_bytes"`
		TaskLabels             int    `mapstructure:"task_labels"`
		WebhookTimestampWindow string `mapstructure:"webhook_timestamp_window"`
	} `mapstructure:"limits"`
	Setup struct {
		ProfilePasswords bool `mapstructure:"profile_passwords"`
		SignProfiles     bool `mapstructure:"sign_profiles"`
	} `mapstructure:"setup"`
	Feeds struct {
		Refresh string `mapstructure:"refresh"`
	} `mapstructure:"feeds"`
}

type rawUser struct {
	Name         string            `mapstructure:"name"`
	Email        string            `mapstructure:"email"`
	PasswordHash string            `mapstructure:"password_hash"`
	Password     string            `mapstructure:"password"` // refused: only here to name the mistake
	AppPasswords []rawAppPassword  `mapstructure:"app_passwords"`
	Notify       string            `mapstructure:"notify"`
	TimeZone     string            `mapstructure:"timezone"`
	QuietHours   *rawQuietHours    `mapstructure:"quiet_hours"`
	Digest       bool              `mapstructure:"digest"`
	DigestAt     string            `mapstructure:"digest_at"`
	LeadTimes    []string          `mapstructure:"lead_times"`
	Identities   map[string]string `mapstructure:"identities"`
	Admin        bool              `mapstructure:"admin"`
}

type rawAppPassword struct {
	Name string `mapstructure:"name"`
	Hash string `mapstructure:"hash"`
}

type rawQuietHours struct {
	Start       string `mapstructure:"start"`
	End         string `mapstructure:"end"`
	AllowUrgent bool   `mapstructure:"allow_urgent"`
}

type rawSource struct {
	Name          string            `mapstructure:"name"`
	Kind          string            `mapstructure:"kind"`
	Secret        string            `mapstructure:"secret"`
	SecretFile    string            `mapstructure:"secret_file"`
	CallbackURL   string            `mapstructure:"callback_url"`
	APIToken      string            `mapstructure:"api_token"`
	APIURL        string            `mapstructure:"api_url"`
	LabelProjects map[string]string `mapstructure:"label_projects"`
	LeadTimes     []string          `mapstructure:"lead_times"`
	// RequireTimestamp: generic webhooks must carry a signed X-Duebridge-Timestamp.
	RequireTimestamp bool       `mapstructure:"require_timestamp"`
	Stream           *rawStream `mapstructure:"stream"`
}

// rawStream is the broker connection of a kafka or nats source.
type rawStream struct {
	Brokers    []string `mapstructure:"brokers"`
	Topics     []string `mapstructure:"topics"`
	Group      string   `mapstructure:"group"`
	URL        string   `mapstructure:"url"`
	Stream     string   `mapstructure:"stream"`
	Subjects   []string `mapstructure:"subjects"`
	Durable    string   `mapstructure:"durable"`
	DeadLetter string   `mapstructure:"dead_letter"`
	TLS        bool     `mapstructure:"tls"`
	CAFile     string   `mapstructure:"ca_file"`
	SASL       string   `mapstructure:"sasl"`
	Username   string   `mapstructure:"username"`
	Password   string   `mapstructure:"password"`
}

// Load reads path (YAML) with environment overrides and validates the result.
// path "" reads only defaults and the environment. Every error names the key
// (and the DUEBRIDGE_* variable when the value came from one), one per line.
// Relative paths in the file (and the default data_dir) resolve against the
// file's directory, as nginx, Caddy and Dovecot do; relative paths from the
// environment resolve against the working directory.
func Load(path string) (*Config, error) {
	if path == "" {
		return load("", nil)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	// Read into a buffer of the file's size: io.ReadAll's doubling would
	// allocate about twice a large file (330 MB at a million users).
	size := 0
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
		size = int(fi.Size())
	}
	buf := bytes.NewBuffer(make([]byte, 0, size+bytes.MinRead))
	if _, err := buf.ReadFrom(f); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return load(path, buf.Bytes())
}

// load is Load on the file's bytes (nil: no file, defaults and environment
// only); path is used in messages, to resolve relative paths, and as
// Config.Path.
func load(path string, b []byte) (*Config, error) {
	v := viper.New() // never the global instance: reloads must not share state
	v.SetConfigType("yaml")
	// Each scalar key is bound to its own variable (not AutomaticEnv), so
	// DUEBRIDGE_USERS cannot replace the users list with a string.
	env, warnings := envOverrides(getenviron())
	var users []rawUser // decoded by scanUsers or splitUsers, when they could (usersscan.go, users.go)
	for _, k := range keys {
		v.SetDefault(k.Name, k.Default)
		if err := v.BindEnv(k.Name, EnvVar(k.Name)); err != nil {
			return nil, fmt.Errorf("bind %s: %w", EnvVar(k.Name), err)
		}
	}
	if b != nil {
		if rest, us, ok := fastSplit(b); ok {
			users = us
			if err := v.MergeConfigMap(rest); err != nil {
				return nil, fmt.Errorf("config %s: %w", displayPath(path), err)
			}
		} else if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
			return nil, syntaxError(path, b, err)
		}
		// A key with an empty part (".x", "a..b") reached the decoder as
		// "'' has invalid keys: ", naming nothing (found by fuzz/). Sorted:
		// AllKeys comes in map order, and with two such keys the message
		// named either (found by FuzzFastUsersMatchViper).
		for _, k := range slices.Sorted(slices.Values(v.AllKeys())) {
			if slices.Contains(strings.Split(k, "."), "") {
				return nil, fmt.Errorf("config %s: unknown key %q (a key has an empty name between dots)", displayPath(path), k)
			}
		}
	}
	var rc raw
	hook := mapstructure.ComposeDecodeHookFunc(mapstructure.StringToSliceHookFunc(","))
	if err := v.UnmarshalExact(&rc, viper.DecodeHook(hook)); err != nil {
		return nil, fmt.Errorf("config %s:\n%w", displayPath(path), cleanDecodeError(err, env))
	}
	if users != nil {
		rc.Users = users
	}
	origins := map[string]Origin{}
	for _, k := range keys {
		switch {
		case env[k.Name] != "":
			origins[k.Name] = FromEnv
		case b != nil && v.InConfig(k.Name):
			origins[k.Name] = FromFile
		default:
			origins[k.Name] = FromDefault
		}
	}
	if path != "" {
		rc.resolvePaths(filepath.Dir(path), origins)
	}
	c, err := rc.validate(env)
	if err != nil {
		return nil, fmt.Errorf("config %s:\n%w", displayPath(path), err)
	}
	c.Path = path
	c.Warnings = warnings
	c.userIndex = make(map[string]int, len(c.Users))
	for i := range c.Users {
		if _, dup := c.userIndex[c.Users[i].Name]; !dup {
			c.userIndex[c.Users[i].Name] = i
		}
	}
	if len(c.Users) > 0 {
		c.indexed = &c.Users[0]
	}
	c.origins = origins
	return c, nil
}

// resolvePaths makes the file paths that came from the file or a default
// absolute against dir, the config file's directory.
func (r *raw) resolvePaths(dir string, origins map[string]Origin) {
	fix := func(p *string, origin Origin) {
		if *p != "" && origin != FromEnv && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	for name, p := range map[string]*string{
		"data_dir": &r.DataDir, "tls.cert_file": &r.TLS.CertFile, "tls.key_file": &r.TLS.KeyFile, "tls.ca_file": &r.TLS.CAFile,
		"tls.ticket_keys_file": &r.TLS.TicketKeysFile,
	} {
		fix(p, origins[name])
	}
	for i := range r.Sources {
		fix(&r.Sources[i].SecretFile, FromFile)
	}
}

func displayPath(p string) string {
	if p == "" {
		return "(environment)"
	}
	return p
}

var (
	invalidKeysRE = regexp.MustCompile(`'([^']*)' has invalid keys: ([^\n]+)`)
	listIndex     = regexp.MustCompile(`\[\d+\]`)
)

// cleanDecodeError turns mapstructure's "” has invalid keys: htpp" into
// "unknown key htpp (did you mean http?)", one problem per line, and names
// the variable behind a value that came from the environment.
func cleanDecodeError(err error, env map[string]string) error {
	msg := strings.ReplaceAll(err.Error(), "decoding failed due to the following error(s):\n\n", "")
	e := errs{env: env}
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if m := invalidKeysRE.FindStringSubmatch(line); m != nil {
			for _, k := range strings.Split(m[2], ", ") {
				if m[1] != "" {
					k = m[1] + "." + k
				}
				hint := ""
				if s := suggestKey(k); s != "" {
					hint = fmt.Sprintf(" (did you mean %s?)", s)
				}
				e.addLine("unknown key " + k + hint)
			}
			continue
		}
		// "'limits.lockout_failures' cannot parse value as 'int'..."
		if k, rest, ok := strings.Cut(strings.TrimPrefix(line, "'"), "' "); ok && strings.HasPrefix(line, "'") {
			e.add(k, "%s", rest)
			continue
		}
		e.addLine(line)
	}
	return e.err()
}

// errs collects "key: message" problems so an admin sees all of them at once.
type errs struct {
	list []string
	// env maps a key to the DUEBRIDGE_* variable that set it: a problem
	// with such a value names the variable, not the file.
	env map[string]string
}

func (e *errs) add(key, format string, a ...any) {
	label := key
	if v := e.env[listIndex.ReplaceAllString(key, "")]; v != "" {
		label = key + " (from " + v + ")"
	}
	e.list = append(e.list, label+": "+fmt.Sprintf(format, a...))
}

func (e *errs) addLine(msg string) { e.list = append(e.list, msg) }

// err is every problem, one per line, indented under the "config FILE:" line.
func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	return errors.New("  " + strings.Join(e.list, "\n  "))
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)
	// No "-" in source names: object names and UIDs are "<source>-<id>", so
	// a dash would let two (source, id) pairs share one calendar object.
	sourceRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,63}$`)
	hhmmRE   = regexp.MustCompile(`^([01]\d|2[0-3]):([0-5]\d)$`)
)

func (r *raw) validate(env map[string]string) (*Config, error) {
	e := errs{env: env}
	c := &Config{
		DataDir:     r.DataDir,
		Store:       r.Store,
		PostgresURL: r.PostgresURL,
		Instance:    r.Instance,
		HTTP:        HTTP{Listen: r.HTTP.Listen},
		IMAP:        IMAP{Listen: r.IMAP.Listen, TLSListen: r.IMAP.TLSListen, ProxyProtocol: r.IMAP.ProxyProtocol},
		Submission: Submission{Listen: r.Submission.Listen, TLSListen: r.Submission.TLSListen,
			ProxyProtocol: r.Submission.ProxyProtocol},
		TLS: TLS{CertFile: r.TLS.CertFile, KeyFile: r.TLS.KeyFile, CAFile: r.TLS.CAFile, TicketKeysFile: r.TLS.TicketKeysFile,
			ACMEHosts: r.TLS.ACMEHosts, ACMEEmail: r.TLS.ACMEEmail},
		Mail:  Mail{From: r.Mail.From},
		Setup: Setup{ProfilePasswords: r.Setup.ProfilePasswords, SignProfiles: r.Setup.SignProfiles},
	}
	switch r.Store {
	case "sqlite":
		if r.DataDir == "" {
			e.add("data_dir", "must not be empty with store: sqlite")
		}
	case "postgres":
		if r.PostgresURL == "" {
			e.add("postgres_url", "required with store: postgres")
		}
	default:
		e.add("store", "unknown store %q (want sqlite or postgres)", r.Store)
	}

	checkAddr(&e, "http.listen", r.HTTP.Listen, true)
	checkAddr(&e, "imap.listen", r.IMAP.Listen, false)
	checkAddr(&e, "imap.tls_listen", r.IMAP.TLSListen, false)
	checkAddr(&e, "submission.listen", r.Submission.Listen, false)
	checkAddr(&e, "submission.tls_listen", r.Submission.TLSListen, false)

	pub := r.HTTP.PublicURL
	if pub == "" {
		scheme := "http"
		if c.TLS.Enabled() {
			scheme = "https"
		}
		pub = scheme + "://" + r.HTTP.Listen
	}
	if u, err := url.Parse(pub); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		e.add("http.public_url", "not an absolute http(s) URL: %q", pub)
	} else if p := strings.TrimSuffix(u.Path, "/"); p != "" || u.RawQuery != "" || u.Fragment != "" {
		// Every route (and every href CalDAV hands out) is absolute from
		// "/": a prefix would 404 everything. Reverse proxies must map the
		// whole host.
		e.add("http.public_url", "%q has a path; serve duebridge at the root of a host name (a reverse proxy may map a whole (sub)domain to it)", pub)
	} else {
		u.Path = ""
		c.HTTP.PublicURL = u
	}
	for i, s := range r.HTTP.TrustedProxies {
		s = strings.TrimSpace(s)
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				e.add(fmt.Sprintf("http.trusted_proxies[%d]", i), "not an IP address or CIDR: %q", s)
				continue
			}
			p = netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())
		}
		c.HTTP.TrustedProxies = append(c.HTTP.TrustedProxies, p.Masked())
	}

	if (r.TLS.CertFile == "") != (r.TLS.KeyFile == "") {
		e.add("tls", "cert_file and key_file must be set together")
	}
	for k, f := range map[string]string{"tls.cert_file": r.TLS.CertFile, "tls.key_file": r.TLS.KeyFile, "tls.ca_file": r.TLS.CAFile, "tls.ticket_keys_file": r.TLS.TicketKeysFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				e.add(k, "%v", err)
			}
		}
	}
	if r.TLS.TicketKeysFile != "" && !c.TLS.Enabled() {
		e.add("tls.ticket_keys_file", "needs TLS (tls.cert_file/key_file or tls.acme_hosts)")
	}
	if r.Setup.SignProfiles && !c.TLS.Enabled() {
		e.add("setup.sign_profiles", "needs a server certificate (tls.cert_file/key_file or tls.acme_hosts) to sign with")
	}
	if (r.IMAP.TLSListen != "" || r.Submission.TLSListen != "") && !c.TLS.Enabled() {
		e.add("tls", "imap.tls_listen and submission.tls_listen need tls.cert_file/key_file or tls.acme_hosts")
	}

	if _, err := mail.ParseAddress(r.Mail.From); err != nil {
		e.add("mail.from", "not a mail address: %q", r.Mail.From)
	}
	c.Mail.CoalesceWindow = duration(&e, "mail.coalesce_window", r.Mail.CoalesceWindow)
	if c.Mail.CoalesceWindow < 0 || c.Mail.CoalesceWindow > time.Hour {
		e.add("mail.coalesce_window", "must be between 0 (off) and 1h, got %s", r.Mail.CoalesceWindow)
	}
	c.Notifications.LeadTimes = durations(&e, "notifications.lead_times", r.Notifications.LeadTimes)
	c.Feeds.Refresh = duration(&e, "feeds.refresh", r.Feeds.Refresh)
	if c.Feeds.Refresh < 15*time.Minute || c.Feeds.Refresh > 7*24*time.Hour {
		e.add("feeds.refresh", "must be between 15m and 168h, got %s", r.Feeds.Refresh)
	}
	c.Retention = Retention{MailDays: r.Retention.MailDays, TrashDays: r.Retention.TrashDays, TombstoneDays: r.Retention.TombstoneDays}
	for k, n := range map[string]int{"retention.mail_days": r.Retention.MailDays, "retention.trash_days": r.Retention.TrashDays,
		"retention.tombstone_days": r.Retention.TombstoneDays} {
		// 100 years: beyond it a day count is a typo, and the cut-off
		// times stay far from overflowing.
		if n < 0 || n > 36500 {
			e.add(k, "must be between 0 (keep forever) and 36500 days, got %d", n)
		}
	}

	c.Limits = Limits{
		WebhookBodyBytes: r.Limits.WebhookBodyBytes, ICalObjectBytes: r.Limits.ICalObjectBytes,
		ClientPropsBytes: r.Limits.ClientPropsBytes, IMAPLiteralBytes: r.Limits.IMAPLiteralBytes, IMAPConnsPerUser: r.Limits.IMAPConnsPerUser,
		LockoutFailures: r.Limits.LockoutFailures, DevicesPerUser: r.Limits.DevicesPerUser, ConnsPerAddress: r.Limits.ConnsPerAddress,
		DeviceCacheEntries: r.Limits.DeviceCacheMax, SyncHealthUsers: r.Limits.SyncHealthUsers, SQLiteWALMB: r.Limits.SQLiteWALMB,
		MultigetHrefs:       r.Limits.MultigetHrefs,
		OwnRemindersPerUser: r.Limits.OwnReminders, OwnReminderBytesPerUser: r.Limits.OwnReminderBytes,
		RecurrenceSteps: r.Limits.RecurrenceSteps, RecurrenceStepsPerRequest: r.Limits.RecurrenceStepsRq,
		IMAPKeywordsPerMessage: r.Limits.IMAPKeywordsMsg, IMAPKeywordsPerMailbox: r.Limits.IMAPKeywordsMbox,
		IMAPKeywordBytes:      r.Limits.IMAPKeywordBytes,
		SubmissionUnauthConns: r.Limits.SubmissionUnauthConns, SubmissionUnauthPerAddress: r.Limits.SubmissionUnauthPerAddress,
		TaskTitleBytes: r.Limits.TaskTitleBytes, TaskDescriptionBytes: r.Limits.TaskDescriptionBytes,
		TaskURLBytes: r.Limits.TaskURLBytes, TaskLabelBytes: r.Limits.TaskLabelBytes, TaskLabels: r.Limits.TaskLabels,
	}
	for k, n := range map[string]int64{
		"limits.webhook_body_bytes": r.Limits.WebhookBodyBytes, "limits.ical_object_bytes": r.Limits.ICalObjectBytes,
		"limits.client_props_bytes": r.Limits.ClientPropsBytes,
		"limits.imap_literal_bytes": r.Limits.IMAPLiteralBytes, "limits.imap_conns_per_user": int64(r.Limits.IMAPConnsPerUser),
		"limits.lockout_failures":             int64(r.Limits.LockoutFailures),
		"limits.devices_per_user":             int64(r.Limits.DevicesPerUser),
		"limits.device_cache_entries":         int64(r.Limits.DeviceCacheMax),
		"limits.sync_health_users":            int64(r.Limits.SyncHealthUsers),
		"limits.sqlite_wal_mb":                int64(r.Limits.SQLiteWALMB),
		"limits.conns_per_address":            int64(r.Limits.ConnsPerAddress),
		"limits.multiget_hrefs":               int64(r.Limits.MultigetHrefs),
		"limits.own_reminders_per_user":       int64(r.Limits.OwnReminders),
		"limits.own_reminder_bytes_per_user":  r.Limits.OwnReminderBytes,
		"limits.recurrence_steps":             int64(r.Limits.RecurrenceSteps),
		"limits.recurrence_steps_per_request": int64(r.Limits.RecurrenceStepsRq),
		"limits.imap_keywords_per_message":    int64(r.Limits.IMAPKeywordsMsg),
		"limits.imap_keywords_per_mailbox":    int64(r.Limits.IMAPKeywordsMbox),
		"limits.imap_keyword_bytes":           int64(r.Limits.IMAPKeywordBytes),

		"limits.submission_unauth_conns":       int64(r.Limits.SubmissionUnauthConns),
		"limits.submission_unauth_per_address": int64(r.Limits.SubmissionUnauthPerAddress),
		"limits.task_title_bytes":              int64(r.Limits.TaskTitleBytes),
		"limits.task_description_bytes":        int64(r.Limits.TaskDescriptionBytes),
		"limits.task_url_bytes":                int64(r.Limits.TaskURLBytes),
		"limits.task_label_bytes":              int64(r.Limits.TaskLabelBytes),
		"limits.task_labels":                   int64(r.Limits.TaskLabels),
	} {
		if n <= 0 {
			e.add(k, "must be positive, got %d", n)
		}
	}
	c.Limits.LoginFailureDelay = duration(&e, "limits.login_failure_delay", r.Limits.LoginFailureDelay)
	c.Limits.LockoutWindow = duration(&e, "limits.lockout_window", r.Limits.LockoutWindow)
	c.Limits.DeviceCacheTTL = duration(&e, "limits.device_cache_ttl", r.Limits.DeviceCacheTTL)
	if _, err := time.ParseDuration(r.Limits.DeviceCacheTTL); err == nil && (c.Limits.DeviceCacheTTL < time.Second || c.Limits.DeviceCacheTTL > 24*time.Hour) {
		e.add("limits.device_cache_ttl", "must be between 1s and 24h, got %s", r.Limits.DeviceCacheTTL)
	}
	c.Limits.SubmissionAuthTimeout = duration(&e, "limits.submission_auth_timeout", r.Limits.SubmissionAuthTimeout)
	c.Limits.WebhookTimestampWindow = duration(&e, "limits.webhook_timestamp_window", r.Limits.WebhookTimestampWindow)

	// Sized up front: growing these two a million entries at a time was
	// a tenth of a large config's load.
	seenUser := make(map[string]int, len(r.Users))
	seenEmail := make(map[string]int, len(r.Users))
	seenIdentity := map[string]int{}     // kind + "\x00" + lower-cased identity → user index
	zones := map[string]*time.Location{} // nil: unknown
	c.Users = make([]User, 0, len(r.Users))
	for i, ru := range r.Users {
		// The keys are built only for an error: a Sprintf a user was a
		// tenth of validating a million users.
		key := func() string { return "users[" + strconv.Itoa(i) + "]" }
		u := User{Name: ru.Name, PasswordHash: ru.PasswordHash, Digest: ru.Digest, Identities: ru.Identities, Admin: ru.Admin}
		switch {
		case ru.Name == "":
			e.add(key()+".name", "required")
		case !validName(ru.Name):
			e.add(key()+".name", "%q: use letters, digits and . _ @ + - (at most 64)", ru.Name)
		default:
			if j, dup := seenUser[strings.ToLower(ru.Name)]; dup {
				e.add(key()+".name", "duplicate user %q (also users[%d])", ru.Name, j)
			}
			seenUser[strings.ToLower(ru.Name)] = i
		}
		if ru.Email != "" {
			// `"Alice" <alice@example.com>` is accepted: the address and
			// the display name are kept apart, since the address alone
			// goes into To:, the profile and CalDAV's email-address-set.
			a, err := parseAddress(ru.Email)
			if err != nil {
				e.add(key()+".email", "not a mail address: %q", ru.Email)
			} else if j, dup := seenEmail[strings.ToLower(a.Address)]; dup {
				e.add(key()+".email", "duplicate email %q (also users[%d])", a.Address, j)
			} else {
				seenEmail[strings.ToLower(a.Address)] = i
				u.Email, u.EmailName = a.Address, a.Name
			}
		}
		if ru.Password != "" {
			e.add(key()+".password", "plain passwords are not accepted; put the output of `duebridge hash-password` in password_hash")
		}
		switch {
		case ru.PasswordHash == "":
			e.add(key()+".password_hash", "required (make one with `duebridge hash-password`)")
		case !looksLikeHash(ru.PasswordHash):
			e.add(key()+".password_hash", "not a bcrypt or argon2id hash; a plain password does not belong here (use `duebridge hash-password`)")
		default:
			if p := hashProblem(ru.PasswordHash); p != "" {
				e.add(key()+".password_hash", "%s; no password can match it (make a new one with `duebridge hash-password`)", p)
			}
		}
		for j, ap := range ru.AppPasswords {
			ak := func() string { return key() + ".app_passwords[" + strconv.Itoa(j) + "]" }
			if ap.Name == "" {
				e.add(ak()+".name", "required")
			} else if slices.ContainsFunc(ru.AppPasswords[:j], func(o rawAppPassword) bool { return o.Name == ap.Name }) {
				// A user has a few: a scan, not a map for every user.
				e.add(ak()+".name", "duplicate app password %q", ap.Name)
			}
			if p := hashProblem(ap.Hash); p != "" {
				e.add(ak()+".hash", "%s", p)
			}
			u.AppPasswords = append(u.AppPasswords, AppPassword{Name: ap.Name, Hash: ap.Hash})
		}
		switch Notify(ru.Notify) {
		case "":
			u.Notify = NotifyAlarms
		case NotifyAlarms, NotifyMail, NotifyBoth:
			u.Notify = Notify(ru.Notify)
		default:
			e.add(key()+".notify", "unknown value %q (want alarms, mail or both)", ru.Notify)
		}
		u.Location = time.UTC
		if ru.TimeZone != "" {
			loc, ok := zones[ru.TimeZone]
			if !ok {
				// LoadLocation reads and parses the zone file on every
				// call: once a zone, not once a user.
				loc, _ = time.LoadLocation(ru.TimeZone)
				zones[ru.TimeZone] = loc
			}
			if loc == nil {
				e.add(key()+".timezone", "unknown time zone %q", ru.TimeZone)
			} else {
				u.Location = loc
			}
		}
		if ru.QuietHours != nil {
			s, okS := clock(&e, key()+".quiet_hours.start", ru.QuietHours.Start)
			en, okE := clock(&e, key()+".quiet_hours.end", ru.QuietHours.End)
			if okS && okE {
				if s == en {
					e.add(key()+".quiet_hours", "start and end are equal")
				}
				u.QuietHours = &QuietHours{Start: s, End: en, AllowUrgent: ru.QuietHours.AllowUrgent}
			}
		}
		u.DigestAt = 8 * time.Hour
		if ru.DigestAt != "" {
			if d, ok := clock(&e, key()+".digest_at", ru.DigestAt); ok {
				u.DigestAt = d
			}
		}
		if ru.LeadTimes != nil {
			u.LeadTimes = durations(&e, key()+".lead_times", ru.LeadTimes)
		}
		for _, kind := range slices.Sorted(maps.Keys(ru.Identities)) {
			if !IsTrackerKind(kind) {
				e.add(key()+".identities."+kind, "unknown tracker kind (want %s)", kindList(TrackerKinds...))
				continue
			}
			// The adapters match identities case-insensitively and give a
			// tracker account to one user only: a second claim would
			// silently send that account's tasks to just one of them.
			id := strings.ToLower(strings.TrimSpace(ru.Identities[kind]))
			if id == "" {
				continue
			}
			if j, dup := seenIdentity[kind+"\x00"+id]; dup && j != i {
				e.add(key()+".identities."+kind, "%q is also users[%d]'s", ru.Identities[kind], j)
				continue
			}
			seenIdentity[kind+"\x00"+id] = i
		}
		c.Users = append(c.Users, u)
	}

	seenSource := map[string]int{}
	for i, rs := range r.Sources {
		key := fmt.Sprintf("sources[%d]", i)
		s := Source{Name: rs.Name, Kind: rs.Kind, Secret: rs.Secret, APIToken: rs.APIToken, APIURL: rs.APIURL, LabelProjects: rs.LabelProjects,
			RequireTimestamp: rs.RequireTimestamp}
		switch {
		case rs.Name == "":
			e.add(key+".name", "required")
		case !sourceRE.MatchString(rs.Name):
			e.add(key+".name", "%q: use lower-case letters, digits and _ (it is part of the URL /hooks/NAME and of every task's calendar object name)", rs.Name)
		default:
			if j, dup := seenSource[rs.Name]; dup {
				e.add(key+".name", "duplicate source %q (also sources[%d])", rs.Name, j)
			}
			seenSource[rs.Name] = i
		}
		if s.Kind == "" {
			s.Kind = KindGeneric
		}
		if !validKind(s.Kind) {
			e.add(key+".kind", "unknown kind %q (want %s)", rs.Kind, kindList(append(append([]string{KindGeneric}, TrackerKinds...), StreamKinds...)...))
		}
		s.Stream = streamOf(&e, key, s.Name, s.Kind, rs.Stream)
		if rs.SecretFile != "" {
			if rs.Secret != "" {
				e.add(key+".secret_file", "set either secret or secret_file, not both")
			}
			b, err := os.ReadFile(rs.SecretFile)
			if err != nil {
				e.add(key+".secret_file", "%v", err)
			}
			s.Secret = strings.TrimSpace(string(b))
		}
		if s.Secret == "" && rs.SecretFile == "" {
			e.add(key+".secret", "required: every source must sign its requests")
		} else if s.Secret == "" {
			e.add(key+".secret_file", "file is empty")
		} else if len(s.Secret) < 8 {
			e.add(key+".secret", "too short (at least 8 characters)")
		}
		if rs.CallbackURL != "" {
			u, err := url.Parse(rs.CallbackURL)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				e.add(key+".callback_url", "not an absolute http(s) URL: %q", rs.CallbackURL)
			} else {
				s.CallbackURL = u
			}
		}
		if rs.APIURL != "" {
			if u, err := url.Parse(rs.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				e.add(key+".api_url", "not an absolute http(s) URL: %q", rs.APIURL)
			}
		}
		if rs.APIToken != "" {
			switch {
			case s.Kind == KindGeneric:
				e.add(key+".api_token", "only tracker kinds (%s) use an API token", strings.Join(TrackerKinds, ", "))
			case s.Kind == KindJira && rs.APIURL == "":
				e.add(key+".api_url", "required with api_token for a jira source (https://your-domain.atlassian.net)")
			case (s.Kind == KindForgejo || s.Kind == KindGitea) && rs.APIURL == "":
				e.add(key+".api_url", "required with api_token for a %s source (the instance, https://git.example.com)", s.Kind)
			}
		}
		if rs.LeadTimes != nil {
			s.LeadTimes = durations(&e, key+".lead_times", rs.LeadTimes)
		}
		c.Sources = append(c.Sources, s)
	}
	if err := e.err(); err != nil {
		return nil, err
	}
	return c, nil
}

// streamOf validates the stream block of a kafka or nats source; other
// kinds must not have one.
func streamOf(e *errs, key, name, kind string, rs *rawStream) *Stream {
	key += ".stream"
	if kind != "kafka" && kind != "nats" {
		if rs != nil {
			e.add(key, "only kafka and nats sources have a stream block")
		}
		return nil
	}
	if rs == nil {
		e.add(key, "required for a %s source", kind)
		return nil
	}
	s := &Stream{Brokers: rs.Brokers, Topics: rs.Topics, Group: rs.Group, URL: rs.URL, Stream: rs.Stream,
		Subjects: rs.Subjects, Durable: rs.Durable, DeadLetter: rs.DeadLetter, TLS: rs.TLS, CAFile: rs.CAFile,
		SASL: rs.SASL, Username: rs.Username, Password: rs.Password}
	if s.CAFile != "" {
		s.TLS = true
	}
	other := func(field string, set bool) {
		if set {
			e.add(key+"."+field, "not used by a %s source", kind)
		}
	}
	switch kind {
	case "kafka":
		if len(s.Brokers) == 0 {
			e.add(key+".brokers", "required: at least one host:port")
		}
		for i, b := range s.Brokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				e.add(fmt.Sprintf("%s.brokers[%d]", key, i), "not host:port: %q", b)
			}
		}
		if len(s.Topics) == 0 {
			e.add(key+".topics", "required: at least one topic")
		}
		if s.Group == "" {
			s.Group = "duebridge-" + name
		}
		switch s.SASL {
		case "", "plain", "scram-sha-256", "scram-sha-512":
		default:
			e.add(key+".sasl", "unknown mechanism %q (want plain, scram-sha-256 or scram-sha-512)", s.SASL)
		}
		if s.SASL != "" && (s.Username == "" || s.Password == "") {
			e.add(key+".sasl", "needs username and password")
		}
		other("url", s.URL != "")
		other("stream", s.Stream != "")
		other("subjects", len(s.Subjects) > 0)
		other("durable", s.Durable != "")
	case "nats":
		if u, err := url.Parse(s.URL); s.URL == "" || err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			e.add(key+".url", "required: nats://host:port or tls://host:port, got %q", s.URL)
		}
		if s.Stream == "" {
			e.add(key+".stream", "required: the JetStream stream to consume")
		}
		if s.Durable == "" {
			s.Durable = "duebridge-" + name
		}
		if (s.Username == "") != (s.Password == "") {
			e.add(key+".username", "username and password go together")
		}
		other("brokers", len(s.Brokers) > 0)
		other("topics", len(s.Topics) > 0)
		other("group", s.Group != "")
		other("sasl", s.SASL != "")
	}
	return s
}

func checkAddr(e *errs, key, addr string, required bool) {
	if addr == "" {
		if required {
			e.add(key, "required")
		}
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		e.add(key, "bad listen address %q: want host:port", addr)
		return
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		e.add(key, "bad listen address %q: host must be an IP address or empty", addr)
	}
	var p int
	if _, err := fmt.Sscanf(port, "%d", &p); err != nil || p < 0 || p > 65535 || fmt.Sprint(p) != port {
		e.add(key, "bad listen address %q: port must be 0-65535", addr)
	}
}

func duration(e *errs, key, s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		e.add(key, "bad duration %q (examples: 90s, 15m, 24h)", s)
		return 0
	}
	if d < 0 {
		e.add(key, "must not be negative: %q", s)
	}
	return d
}

func durations(e *errs, key string, ss []string) []time.Duration {
	out := make([]time.Duration, 0, len(ss))
	seen := map[time.Duration]bool{}
	for i, s := range ss {
		k := fmt.Sprintf("%s[%d]", key, i)
		d, err := time.ParseDuration(strings.TrimSpace(s))
		switch {
		case err != nil:
			e.add(k, "bad duration %q (examples: 15m, 1h, 24h)", s)
		case d <= 0:
			e.add(k, "must be positive: %q", s)
		case d > 30*24*time.Hour:
			e.add(k, "at most 720h: %q", s)
		case seen[d]:
			e.add(k, "duplicate lead time %q", s)
		default:
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

func clock(e *errs, key, s string) (time.Duration, bool) {
	m := hhmmRE.FindStringSubmatch(s)
	if m == nil {
		e.add(key, "bad time of day %q (want HH:MM)", s)
		return 0, false
	}
	h, _ := strconv.Atoi(m[1]) // two digits: hhmmRE
	min, _ := strconv.Atoi(m[2])
	return time.Duration(h)*time.Hour + time.Duration(min)*time.Minute, true
}

// IsPasswordHash reports whether s is a bcrypt or argon2id (PHC) hash that
// a password can match.
func IsPasswordHash(s string) bool { return hashProblem(s) == "" }

// looksLikeHash: the prefix of a bcrypt or argon2id hash, whatever follows.
func looksLikeHash(s string) bool {
	for _, p := range []string{"$2a$", "$2b$", "$2y$", "$argon2id$"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// bcryptB64 is bcrypt's own base64 alphabet.
const bcryptB64 = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// maxBcryptCost and the argon2id bounds refuse hashes that parse but make
// every login take minutes or more (cost 31 is days per check).
const (
	maxBcryptCost = 16
	maxArgonTime  = 64
	maxArgonMem   = 1 << 22 // KiB: 4 GiB
)

// hashProblem says why s cannot serve as a password hash, or "" if it can.
func hashProblem(s string) string {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if len(s) != 60 || s[6] != '$' {
			return "not a bcrypt hash: want 60 characters $2a$CC$ + 53 (salt and hash)"
		}
		cost, err := strconv.Atoi(s[4:6])
		if err != nil || cost < 4 || cost > maxBcryptCost {
			return fmt.Sprintf("bcrypt cost %q out of range (4 to %d)", s[4:6], maxBcryptCost)
		}
		for _, ch := range s[7:] {
			if !strings.ContainsRune(bcryptB64, ch) {
				return fmt.Sprintf("bcrypt hash holds %q, which is not in bcrypt's alphabet", ch)
			}
		}
		return ""
	case strings.HasPrefix(s, "$argon2id$"):
		return argon2idProblem(s)
	}
	return "not a bcrypt or argon2id hash"
}

// argon2idProblem checks the PHC form the login check parses
// ($argon2id$v=19$m=M,t=T,p=P$salt$key), so a hash that could never match
// is refused at load rather than failing every login in silence. A hash
// that is fine costs no allocation and no decoding: a Split and two
// decodes a hash, two hashes a user, were most of what a million-user
// file spent checking hashes.
func argon2idProblem(s string) string {
	if strings.Count(s, "$") != 5 {
		return "not an argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$SALT$KEY"
	}
	var parts [6]string // as strings.Split, without its slice
	rest := s
	for i := range 5 {
		parts[i], rest, _ = strings.Cut(rest, "$")
	}
	parts[5] = rest
	if parts[2] != "v=19" {
		return "not an argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$SALT$KEY"
	}
	m, t, p, ok := argon2idParams(parts[3])
	if !ok {
		return fmt.Sprintf("argon2id parameters %q: want m=M,t=T,p=P", parts[3])
	}
	switch {
	case p == 0 || p > 255:
		return fmt.Sprintf("argon2id p=%d out of range (1 to 255)", p)
	case m < 8*p || m > maxArgonMem:
		return fmt.Sprintf("argon2id m=%d out of range (8×p to %d KiB)", m, maxArgonMem)
	case t == 0 || t > maxArgonTime:
		return fmt.Sprintf("argon2id t=%d out of range (1 to %d)", t, maxArgonTime)
	}
	saltLen, ok1 := b64Len(parts[4])
	keyLen, ok2 := b64Len(parts[5])
	switch {
	case !ok1 || saltLen < 8:
		return "argon2id salt is not unpadded base64 of at least 8 bytes"
	case !ok2 || keyLen < 4 || keyLen > 128:
		return "argon2id key is not unpadded base64 of 4 to 128 bytes"
	}
	return ""
}

// b64Len is the length base64.RawStdEncoding.DecodeString(s) would
// return, and whether it would fail, without decoding: that decoder skips
// '\r' and '\n', refuses any other byte outside the alphabet ('=' too),
// and a lone character at the end; n characters make n*6/8 bytes
// (TestB64LenMatchesDecode).
func b64Len(s string) (int, bool) {
	n := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\r' || c == '\n':
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '+', c == '/':
			n++
		default:
			return 0, false
		}
	}
	if n%4 == 1 {
		return 0, false
	}
	return n * 6 / 8, true
}

// validName is nameRE.MatchString(s) without the regexp machinery, which a
// million users notice: an ASCII letter or digit, then up to 63 of them or
// . _ @ + - (TestValidNameMatchesRE).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && !strings.ContainsRune("._@+-", rune(c)) {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
}

// parseAddress is mail.ParseAddress with a shortcut for the plain
// local@domain most configs hold (each side ASCII letters, digits and
// _ + - in dot-separated parts), which ParseAddress returns unchanged and
// without a name; anything else goes to ParseAddress
// (TestParseAddressMatchesNetMail).
func parseAddress(s string) (mail.Address, error) {
	if local, domain, ok := strings.Cut(s, "@"); ok && plainDotAtom(local) && plainDotAtom(domain) {
		return mail.Address{Address: s}, nil
	}
	a, err := mail.ParseAddress(s)
	if err != nil {
		return mail.Address{}, err
	}
	return *a, nil
}

// plainDotAtom: non-empty parts of [A-Za-z0-9_+-] joined by single dots.
func plainDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isAlnum(c), c == '_', c == '+', c == '-':
		case c == '.' && s[i-1] != '.':
		default:
			return false
		}
	}
	return true
}

// argon2idParams reads "m=M,t=T,p=P", each a decimal as strconv.FormatUint
// writes it (no sign, no leading zero): the form the login check parses
// and `duebridge hash-password` writes. (fmt.Sscanf did this at a few
// microseconds a hash, which a million users notice.)
func argon2idParams(s string) (m, t, p uint64, ok bool) {
	if strings.Count(s, ",") != 2 {
		return 0, 0, 0, false
	}
	var vals [3]uint64
	rest := s
	for i, name := range [3]string{"m=", "t=", "p="} {
		var field string
		field, rest, _ = strings.Cut(rest, ",")
		d, found := strings.CutPrefix(field, name)
		v, err := strconv.ParseUint(d, 10, 64)
		if !found || err != nil || strconv.FormatUint(v, 10) != d {
			return 0, 0, 0, false
		}
		vals[i] = v
	}
	return vals[0], vals[1], vals[2], true
}
