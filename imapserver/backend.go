package imapserver

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Backend is what the IMAP server needs from the rest of duebridge, in
// IMAP's terms: logins, a user's mailboxes and their messages (UIDs, flags,
// MODSEQs and bytes), the few writes a mail client makes (flags, expunge,
// copy and move), a stream of changes, and the limits and metrics registry.
// The server keeps no mail of its own: every read is one consistent
// snapshot and every write one transaction, both inside the backend.
// bridge.Service.IMAP implements it over the store.
type Backend interface {
	// Authenticate checks a login from remoteAddr (host:port) and returns
	// the user's canonical name. A refused login is ErrBadCredentials; a
	// refusal because of a lock-out also matches ErrLockedOut. The backend
	// paces failures itself (equal cost for every refusal).
	Authenticate(ctx context.Context, username, password, remoteAddr string) (user string, err error)
	// EnsureMailboxes creates those of mailboxes the user does not have
	// yet, each with a fresh UIDVALIDITY, and leaves the others alone.
	EnsureMailboxes(ctx context.Context, user string, mailboxes []MailboxSpec) error
	// Mailboxes lists the user's mailboxes.
	Mailboxes(ctx context.Context, user string) ([]Mailbox, error)
	// Mailbox returns one mailbox, or ErrNoMailbox.
	Mailbox(ctx context.Context, user, name string) (*Mailbox, error)
	// Status returns a mailbox with the counts STATUS reports, from one
	// snapshot, or ErrNoMailbox.
	Status(ctx context.Context, user, name string) (*MailboxStatus, error)
	// Changes returns what changed in a mailbox since a session's view of
	// it, from one snapshot, or ErrNoMailbox.
	Changes(ctx context.Context, user, name string, since View) (*Changes, error)
	// Bodies returns the bytes of the given messages by UID; a UID absent
	// from the answer was expunged.
	Bodies(ctx context.Context, user, mailbox string, uids []uint32) (map[uint32][]byte, error)
	// StoreFlags sets, adds or removes flags on the given messages (system
	// flags in any case, keywords as given) and returns the messages whose
	// flags changed, with their new flags and MODSEQ.
	StoreFlags(ctx context.Context, user, mailbox string, uids []uint32, op FlagOp, flags []string) ([]Message, error)
	// Expunge removes those of uids that carry \Deleted when it runs (not
	// when the client last looked) and returns the UIDs removed.
	Expunge(ctx context.Context, user, mailbox string, uids []uint32) ([]uint32, error)
	// Copy copies (with move, moves) messages to another mailbox of the
	// same user under new UIDs. ErrNoMailbox if the destination does not
	// exist.
	Copy(ctx context.Context, user, from, to string, uids []uint32, move bool) (*CopyResult, error)
	// Subscribe delivers changes (of every user) until ctx is done. The
	// channel is never closed; a subscriber that falls behind receives
	// EventLagged instead of the events it missed.
	Subscribe(ctx context.Context) <-chan Event
	// Limits returns the current limits (they may change on reload).
	Limits() Limits
	// Registerer is where the server's metrics go.
	Registerer() prometheus.Registerer
}

// Errors a Backend returns (possibly wrapped).
var (
	ErrBadCredentials = errors.New("invalid user name or password")
	ErrLockedOut      = errors.New("too many failed logins; try again later")
	ErrNoMailbox      = errors.New("no such mailbox")
)

// MailboxSpec names a mailbox every user has.
type MailboxSpec struct {
	Name       string
	SpecialUse string // "" or e.g. `\Trash`
}

// Mailbox is one mailbox of one user. UIDValidity never changes; UIDNext
// only grows; ModSeq is the revision of its last change.
type Mailbox struct {
	Name        string
	SpecialUse  string
	UIDValidity uint32
	UIDNext     uint32
	ModSeq      int64
}

// MailboxStatus is a mailbox with its counts.
type MailboxStatus struct {
	Mailbox
	Messages, Unseen, Deleted uint32
	Size                      int64
}

// Message is a message's metadata; its bytes never change.
type Message struct {
	UID          uint32
	Flags        []string // system flags in canonical case
	Size         int64
	InternalDate time.Time
	ModSeq       int64
}

// View is what a session knows of a mailbox: the MODSEQs it has seen and
// how many messages it holds up to which UID. The zero View knows nothing.
type View struct {
	MailboxModSeq int64 // -1 for a first load
	MessageModSeq int64
	Count         int
	LastUID       uint32
}

// Changes is what changed since a View.
type Changes struct {
	Mailbox Mailbox
	// Messages changed or added since View.MessageModSeq, in UID order
	// (none if Mailbox.ModSeq equals View.MailboxModSeq).
	Messages []Message
	// UIDs lists every UID, set (Listed true) only when some message the
	// view knows is gone: its absence here is an expunge.
	UIDs   []uint32
	Listed bool
}

// FlagOp says how StoreFlags applies its flags.
type FlagOp int

const (
	FlagsSet    FlagOp = iota // replace
	FlagsAdd                  // union
	FlagsRemove               // difference
)

// CopyResult maps source UIDs to their new UIDs, index for index; only
// messages that still existed are listed.
type CopyResult struct {
	UIDValidity uint32 // of the destination
	Source      []uint32
	Dest        []uint32
}

// EventKind says what an Event is about.
type EventKind int

const (
	// EventMailbox: a mailbox of User changed (Mailbox).
	EventMailbox EventKind = iota
	// EventCredentials: User's password or app passwords changed or the
	// account went away; their sessions must end.
	EventCredentials
	// EventLagged: events were dropped; any open mailbox may have changed.
	EventLagged
)

// Event says where to look, not what is there.
type Event struct {
	Kind    EventKind
	User    string
	Mailbox string
}

// Limits are the configured limits the server enforces (config keys under
// limits.); zero means unlimited.
type Limits struct {
	ConnsPerUser       int   // imap_conns_per_user
	LiteralBytes       int64 // imap_literal_bytes
	KeywordsPerMessage int   // imap_keywords_per_message
	KeywordsPerMailbox int   // imap_keywords_per_mailbox
	KeywordBytes       int   // imap_keyword_bytes
}
