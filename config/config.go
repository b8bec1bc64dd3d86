// Package config reads, validates and watches duebridge's YAML configuration.
//
// A *Config is immutable once returned by Load: reload builds a new one and the
// caller swaps it in atomically, so a request never sees half of two configs.
package config

import (
	"net/netip"
	"net/url"
	"time"
)

// Config is the validated, typed configuration.
type Config struct {
	DataDir     string
	Store       string // "sqlite" or "postgres"
	PostgresURL string
	// Instance names this process in metrics (the replica label); "" means
	// host name and HTTP port, filled in by serve.
	Instance string

	HTTP          HTTP
	IMAP          IMAP
	Submission    Submission
	TLS           TLS
	Users         []User
	Sources       []Source
	Mail          Mail
	Notifications Notifications
	Retention     Retention
	Limits        Limits
	Setup         Setup
	Feeds         Feeds

	// Path is the file the config came from ("" for the demo or env-only).
	Path string
	// Demo is true for the built-in demo set-up (no config file).
	Demo bool
	// Warnings are problems that did not refuse the config (an unknown
	// DUEBRIDGE_* variable); serve logs them, check-config prints them.
	Warnings []string

	origins map[string]Origin // scalar key → where its value came from
	// userIndex maps a user name to its index in Users, built by Load for
	// the slice whose first element is indexed; used only while Users is
	// still that slice, whole.
	userIndex map[string]int
	indexed   *User
}

type HTTP struct {
	Listen    string
	PublicURL *url.URL // scheme and host only: duebridge serves at the root
	// TrustedProxies are the peers whose X-Forwarded-For / Forwarded
	// headers name the real client (for lock-outs and per-address limits).
	TrustedProxies []netip.Prefix
}

type IMAP struct {
	Listen    string // plain (STARTTLS when TLS is configured)
	TLSListen string // implicit TLS; "" = off
	// ProxyProtocol: both IMAP listeners expect a PROXY v1/v2 header first.
	ProxyProtocol bool
}

// Submission is the minimal SMTP submission listener iOS insists on for a
// mail account. It authenticates and refuses to relay.
type Submission struct {
	Listen    string // plain + STARTTLS; "" = off
	TLSListen string // implicit TLS; "" = off
	// ProxyProtocol: both submission listeners expect a PROXY v1/v2 header first.
	ProxyProtocol bool
}

type TLS struct {
	CertFile string
	KeyFile  string
	// CAFile is a self-made CA (duebridge dev-cert) that the setup profile carries.
	CAFile string
	// TicketKeysFile holds session ticket keys shared by replicas and
	// restarts (TLS 1.3 tickets only); "" = in-memory keys only.
	TicketKeysFile string
	// ACMEHosts turns on certificates from Let's Encrypt for these names.
	ACMEHosts []string
	ACMEEmail string
}

// Enabled reports whether the listeners speak TLS.
func (t TLS) Enabled() bool { return t.CertFile != "" || len(t.ACMEHosts) > 0 }

// Notify selects which channel carries due-soon and overdue alerts.
type Notify string

const (
	NotifyAlarms Notify = "alarms" // VALARMs only (mail still records assignment and changes)
	NotifyMail   Notify = "mail"   // mail only, no VALARMs
	NotifyBoth   Notify = "both"
)

type User struct {
	Name string
	// Email is the bare address ("alice@example.com"); EmailName the
	// display name when the config wrote `"Alice" <alice@example.com>`.
	Email        string
	EmailName    string
	PasswordHash string
	// AppPasswords are extra hashes a user may revoke one by one (a lost phone).
	AppPasswords []AppPassword
	Notify       Notify
	Location     *time.Location // time zone for all-day alarms, quiet hours, digest
	QuietHours   *QuietHours    // nil = none
	Digest       bool           // daily digest mail
	DigestAt     time.Duration  // offset from local midnight
	// LeadTimes overrides notifications.lead_times for this user when non-nil.
	LeadTimes []time.Duration
	// Identities maps a tracker kind ("github", "jira", ...) to the user's login there.
	Identities map[string]string
	// Admin may read every user's sync health (GET /admin/sync?user=NAME).
	Admin bool
}

type AppPassword struct {
	Name string
	Hash string
}

// QuietHours is a daily window in the user's zone during which mail waits.
type QuietHours struct {
	Start, End  time.Duration // offsets from local midnight; End < Start wraps midnight
	AllowUrgent bool
}

type Source struct {
	Name        string
	Kind        string // KindGeneric or one of TrackerKinds
	Secret      string
	CallbackURL *url.URL // nil = no callback
	// APIToken lets an adapter close the issue in the tracker itself.
	APIToken string
	APIURL   string
	// LabelProjects maps a tracker label to a project name. The keys are
	// lower-case whatever the YAML says (viper folds every map key), so look
	// labels up with strings.ToLower.
	LabelProjects map[string]string
	// LeadTimes overrides notifications.lead_times for this source's tasks.
	LeadTimes []time.Duration
	// RequireTimestamp refuses generic webhooks without a signed
	// X-Duebridge-Timestamp (replay protection).
	RequireTimestamp bool

	// Stream is the broker of a kafka or nats source; nil for the others.
	// Consumers start with the server: changes apply on restart.
	Stream *Stream
}

// Stream is where a kafka or nats source reads its task records.
type Stream struct {
	Brokers  []string // kafka: seed brokers, host:port
	Topics   []string // kafka
	Group    string   // kafka consumer group (default duebridge-NAME)
	URL      string   // nats://host:port
	Stream   string   // nats: JetStream stream
	Subjects []string // nats: filter subjects (default: the whole stream)
	Durable  string   // nats: durable consumer name (default duebridge-NAME)
	// DeadLetter is a topic (kafka) or subject (nats) malformed records are
	// copied to; "" = they are logged, counted and skipped.
	DeadLetter string
	TLS        bool
	CAFile     string // PEM roots for the broker's certificate (implies TLS)
	SASL       string // kafka: plain | scram-sha-256 | scram-sha-512
	Username   string
	Password   string
}

type Mail struct {
	From string
	// CoalesceWindow: done/reopened mails caused by a phone wait this long,
	// so ticking a reminder on and off sends one mail with the final state
	// (none if it ends as it began). 0 sends each at once.
	CoalesceWindow time.Duration
}

// Retention: how long stored mail and tombstones are kept, in days; 0 keeps
// them forever. The retention job (bridge/retention.go) applies it.
type Retention struct {
	// MailDays: INBOX mails older than this (by arrival) are expunged.
	MailDays int
	// TrashDays: mails are expunged this long after they entered Trash.
	TrashDays int
	// TombstoneDays: deleted calendar objects and deleted tasks are
	// forgotten after this long (phones with older sync tokens resync in
	// full; a webhook older than this could recreate a deleted task).
	TombstoneDays int
}

type Notifications struct {
	LeadTimes []time.Duration
}

type Limits struct {
	WebhookBodyBytes int64
	ICalObjectBytes  int64
	// ClientPropsBytes bounds the client-private X- properties kept per
	// task and user from a device's writes (Mozilla's, Apple's, ...).
	ClientPropsBytes int64
	IMAPLiteralBytes int64
	IMAPConnsPerUser int
	// IMAP keywords (user-defined flags): per message, distinct per
	// mailbox, and bytes per keyword.
	IMAPKeywordsPerMessage int
	IMAPKeywordsPerMailbox int
	IMAPKeywordBytes       int
	// ConnsPerAddress caps concurrent connections from one client address
	// (IPv6: one /64) on every listener; loopback is exempt.
	ConnsPerAddress   int
	LoginFailureDelay time.Duration
	LockoutFailures   int
	LockoutWindow     time.Duration
	// DevicesPerUser caps a user's device passwords (/setup issues them).
	DevicesPerUser int
	// DeviceCacheEntries bounds the device-password rows kept in memory so
	// a repeated login reads no store; DeviceCacheTTL is how long one is
	// trusted before the store is read again.
	DeviceCacheEntries int
	DeviceCacheTTL     time.Duration
	// SyncHealthUsers bounds the users whose CalDAV sync health is kept
	// in memory (the least recently seen is forgotten past it).
	SyncHealthUsers int
	// SQLiteWALMB bounds SQLite's write-ahead log: past it the store starts
	// the log over (store.Options.WALRestartBytes).
	SQLiteWALMB int
	// MultigetHrefs caps the distinct hrefs of one calendar-multiget.
	MultigetHrefs int
	// OwnRemindersPerUser and OwnReminderBytesPerUser bound what one user
	// may store of their own (reminders created on a device in a
	// duebridge list): how many, and their bytes all together.
	OwnRemindersPerUser     int
	OwnReminderBytesPerUser int64
	// RecurrenceSteps is the work one object's recurrences may cost a
	// time-range query; RecurrenceStepsPerRequest bounds one request.
	RecurrenceSteps           int
	RecurrenceStepsPerRequest int

	// Submission listener: the time from connecting to a successful AUTH,
	// and the connections that have not authenticated yet, in all and
	// per client address.
	SubmissionAuthTimeout      time.Duration
	SubmissionUnauthConns      int
	SubmissionUnauthPerAddress int

	// Task record fields (webhooks and tracker adapters): bytes of a
	// title, description, url and each label, and labels per task.
	TaskTitleBytes       int
	TaskDescriptionBytes int
	TaskURLBytes         int
	TaskLabelBytes       int
	TaskLabels           int
	// WebhookTimestampWindow is how far X-Duebridge-Timestamp may be from
	// now (either way) on a generic webhook.
	WebhookTimestampWindow time.Duration
}

// Feeds configure the calendar feeds (/feeds/<token>.ics).
type Feeds struct {
	// Refresh is the polling period the feed asks clients for
	// (REFRESH-INTERVAL, X-PUBLISHED-TTL).
	Refresh time.Duration
}

type Setup struct {
	// ProfilePasswords puts the password into the .mobileconfig (off by default:
	// the phone then asks for it once).
	ProfilePasswords bool
	// SignProfiles signs the profile with the server certificate.
	SignProfiles bool
}

// User returns the user with that name, or nil.
func (c *Config) User(name string) *User {
	// Every login and request looks its user up: with a million users a
	// scan is milliseconds, and a reload that compares two configs user by
	// user was quadratic. Load builds the index; a Config assembled or
	// given other users by hand (tests) has none that fits and is scanned.
	if c.userIndex != nil && len(c.userIndex) == len(c.Users) && len(c.Users) > 0 && &c.Users[0] == c.indexed {
		i, ok := c.userIndex[name]
		if !ok {
			return nil
		}
		if c.Users[i].Name == name {
			return &c.Users[i]
		}
	}
	for i := range c.Users {
		if c.Users[i].Name == name {
			return &c.Users[i]
		}
	}
	return nil
}

// Source returns the source with that name, or nil.
func (c *Config) Source(name string) *Source {
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i]
		}
	}
	return nil
}

// LeadTimesFor returns the lead times that apply to a user's task from a source:
// the user's own, else the source's, else the global ones.
func (c *Config) LeadTimesFor(u *User, s *Source) []time.Duration {
	if u != nil && u.LeadTimes != nil {
		return u.LeadTimes
	}
	if s != nil && s.LeadTimes != nil {
		return s.LeadTimes
	}
	return c.Notifications.LeadTimes
}

// StoreSource is the data source string for store.Open.
func (c *Config) StoreSource() string {
	if c.Store == "postgres" {
		return c.PostgresURL
	}
	return c.DataDir
}
