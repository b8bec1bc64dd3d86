package config

import "strings"

// KindGeneric is the sources[].kind of a task system that POSTs the
// contract's own format (the default).
const KindGeneric = "generic"

// TrackerKinds are the other sources[].kind values: task systems whose own
// webhooks duebridge reads, and the keys of users[].identities. This list
// is the one place a kind is declared: validation, the key reference and
// its error messages derive from it here, and the webhook package keys its
// adapters by it (a test there checks that every kind has one). It lives in
// config because config validates kinds and may import nothing of ours.
var TrackerKinds = []string{KindGitHub, KindGitLab, KindJira, KindLinear, KindForgejo, KindGitea}

// The tracker kinds by name, for the code that handles one of them.
const (
	KindGitHub  = "github"
	KindGitLab  = "gitlab"
	KindJira    = "jira"
	KindLinear  = "linear"
	KindForgejo = "forgejo"
	KindGitea   = "gitea"
)

// StreamKinds are the sources[].kind values read from a broker, not POSTed:
// each record is one task record in the generic format.
var StreamKinds = []string{KindKafka, KindNATS}

// The stream kinds by name.
const (
	KindKafka = "kafka"
	KindNATS  = "nats"
)

// IsTrackerKind reports whether k is one of TrackerKinds.
func IsTrackerKind(k string) bool {
	for _, t := range TrackerKinds {
		if t == k {
			return true
		}
	}
	return false
}

// validKind reports whether k is a sources[].kind.
func validKind(k string) bool {
	return k == KindGeneric || IsTrackerKind(k) || k == KindKafka || k == KindNATS
}

// kindList spells kinds as prose: "a, b, c or d".
func kindList(kinds ...string) string {
	if len(kinds) < 2 {
		return strings.Join(kinds, "")
	}
	return strings.Join(kinds[:len(kinds)-1], ", ") + " or " + kinds[len(kinds)-1]
}
