package config

import (
	"fmt"
	"strings"
)

// listKeyDocs describes the keys of the users and sources lists (which come
// from the file only and always reload live); TestKeyReference checks that
// every such key in raw has a line here.
var listKeyDocs = map[string]string{
	"users":                            "the people who log in",
	"users[].name":                     "login for every protocol (letters, digits, . _ @ + -)",
	"users[].email":                    `address for mail and the profile; "Name <addr>" is accepted`,
	"users[].password_hash":            "argon2id or bcrypt hash (`duebridge hash-password`)",
	"users[].password":                 "refused: only named to point at password_hash",
	"users[].app_passwords":            "extra passwords, revocable one by one",
	"users[].app_passwords[].name":     "device name",
	"users[].app_passwords[].hash":     "argon2id or bcrypt hash",
	"users[].notify":                   "alarms (default), mail or both",
	"users[].timezone":                 "IANA zone for all-day alarms, quiet hours, digest (default UTC)",
	"users[].quiet_hours":              "daily window in which mail waits",
	"users[].quiet_hours.start":        "HH:MM",
	"users[].quiet_hours.end":          "HH:MM (before start: wraps midnight)",
	"users[].quiet_hours.allow_urgent": "urgent tasks mail anyway",
	"users[].digest":                   "a daily mail of the day's deadlines",
	"users[].digest_at":                "HH:MM (default 08:00)",
	"users[].lead_times":               "overrides notifications.lead_times",
	"users[].identities":               "tracker kind → login there (" + strings.Join(TrackerKinds, ", ") + ")",
	"users[].admin":                    "may read /metrics and every user's /admin/sync",
	"sources":                          "the task systems that POST /hooks/NAME",
	"sources[].name":                   "lower-case letters, digits and _; part of the URL",
	"sources[].kind":                   KindGeneric + " (default), " + kindList(append(TrackerKinds, StreamKinds...)...),
	"sources[].secret":                 "HMAC-SHA256 key, at least 8 characters",
	"sources[].secret_file":            "file holding the secret (instead of secret)",
	"sources[].callback_url":           "where completions from phones are POSTed",
	"sources[].api_token":              "lets a tracker adapter close the issue itself",
	"sources[].api_url":                "tracker API base (required for jira with api_token)",
	"sources[].label_projects":         "tracker label → project name",
	"sources[].require_timestamp":      "generic webhooks must carry a signed X-Duebridge-Timestamp",
	"sources[].lead_times":             "overrides notifications.lead_times for this source",
	"sources[].stream":                 "kafka and nats sources: the broker to consume (changes apply on restart)",
	"sources[].stream.brokers":         "kafka: seed brokers, host:port",
	"sources[].stream.topics":          "kafka: topics to consume",
	"sources[].stream.group":           "kafka: consumer group (default duebridge-NAME)",
	"sources[].stream.url":             "nats: nats://host:port or tls://host:port",
	"sources[].stream.stream":          "nats: the JetStream stream",
	"sources[].stream.subjects":        "nats: filter subjects (default: the whole stream)",
	"sources[].stream.durable":         "nats: durable consumer name (default duebridge-NAME)",
	"sources[].stream.dead_letter":     "topic (kafka) or subject (nats) for malformed records; \"\" = log and skip",
	"sources[].stream.tls":             "connect with TLS",
	"sources[].stream.ca_file":         "PEM roots for the broker (implies tls)",
	"sources[].stream.sasl":            "kafka: plain, scram-sha-256 or scram-sha-512",
	"sources[].stream.username":        "SASL (kafka) or NATS user",
	"sources[].stream.password":        "SASL (kafka) or NATS password",
}

// Reference is the Markdown table of every config key: default, whether a
// reload applies it, and what it does. The configuration reference
// (docs/configuration.md) is this text (TestKeyReferenceInREADME).
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | default | reload | |\n|---|---|---|---|\n")
	for _, k := range keys {
		reload := "live"
		if k.Restart {
			reload = "restart"
		}
		def := format(k.Default)
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", k.Name, def, reload, escapeCell(k.Doc))
	}
	for _, name := range knownKeys() {
		if lookupKey(name) != nil || !(strings.HasPrefix(name, "users") || strings.HasPrefix(name, "sources")) {
			continue
		}
		fmt.Fprintf(&b, "| `%s` | — | live | %s |\n", name, escapeCell(listKeyDocs[name]))
	}
	return b.String()
}

func escapeCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
