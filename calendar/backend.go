package calendar

import (
	"context"
	"errors"
	"time"

	"github.com/emersion/go-ical"
	"github.com/prometheus/client_golang/prometheus"
)

// Backend is what the CalDAV handler needs of the core, in CalDAV's own
// terms (as go-webdav's caldav.Backend): users, their collections and
// objects, the changes since a sync token, and the device's writes.
// bridge implements it. Each method is one transaction, so what one call
// returns is one consistent snapshot: a collection's revision (Seq) always
// belongs to the objects returned with it. The handler never writes
// anything except through PhonePut, PhoneDelete, SetCollectionProps and
// SyncEpoch.
//
// Errors the handler answers are the sentinels below (wrapped); anything
// else is a 500.
type Backend interface {
	// Authenticate checks HTTP Basic credentials sent from remoteAddr.
	// A refusal is any error; a lock-out is a *LockedOutError.
	Authenticate(ctx context.Context, name, password, remoteAddr string) (*User, error)
	// Users lists every user's name (for an admin's view of sync health).
	Users() []string
	// Limits returns the limits in force now (they may be reloaded).
	Limits() Limits
	// Now is the service clock.
	Now() time.Time
	// Registerer receives the handler's metrics.
	Registerer() prometheus.Registerer

	// SyncEpoch returns this database's random epoch, which sync tokens
	// carry (see token.go), creating it on first use.
	SyncEpoch(ctx context.Context) (string, error)

	// Collections lists a user's collections.
	Collections(ctx context.Context, user string) ([]Collection, error)
	// Collection returns one; ErrNotFound if the user has none of that name.
	Collection(ctx context.Context, user, coll string) (Collection, error)
	// Object returns an object with its collection; ErrNotFound if either
	// is absent.
	Object(ctx context.Context, user, coll, name string) (Collection, Object, error)
	// Objects lists a collection's live objects, with their bytes if
	// withData; ErrNotFound if there is no such collection.
	Objects(ctx context.Context, user, coll string, withData bool) (Collection, []Object, error)
	// ObjectsByName reads the named objects of a collection, with their
	// bytes. names is called inside the transaction with the collection's
	// revision and returns the names to read (those not cached for that
	// revision); absent names are left out. ErrNotFound: no such collection.
	ObjectsByName(ctx context.Context, user, coll string, names func(seq int64) []string) (Collection, []Object, error)
	// Changes lists the objects changed after revision since, in revision
	// order, removals as Deleted tombstones; live ones carry their bytes if
	// withData. since == FromStart lists every live object in revision
	// order (a full sync that must be resumable). ErrSyncTokenExpired: since
	// is older than the kept tombstones or newer than the collection.
	Changes(ctx context.Context, user, coll string, since int64, withData bool) (Collection, []Object, error)

	// SetCollectionProps is a PROPPATCH of a collection: edit is called
	// inside the write transaction with the current properties and changes
	// them; only when it returns true are they stored. A DisplayName set to
	// "" restores the default name. ErrNotFound: no such collection.
	SetCollectionProps(ctx context.Context, user, coll string, edit func(*CollectionProps) bool) error
	// Quota reads the user's storage budget of own objects (RFC 4331):
	// bytes used and bytes still available (negative: no limit).
	Quota(ctx context.Context, user string) (used, available int64, err error)
	// PhonePut applies a device's PUT of an object.
	PhonePut(ctx context.Context, p Put) (PutResult, error)
	// PhoneDelete applies a device's DELETE of an object and says what
	// happened ("deleted", "hidden", ...).
	PhoneDelete(ctx context.Context, user, coll, name string, cond Conditions) (outcome string, err error)
}

// FromStart is the since of Changes for a full, resumable sync.
const FromStart int64 = -1

// The errors a Backend returns for the handler to answer.
var (
	// ErrNotFound: no such collection or object of this user (404; never
	// telling "absent" from "not yours").
	ErrNotFound = errors.New("not found")
	// ErrNoCollection: a write into a collection that does not exist
	// (409 for PUT, RFC 4918 §9.7.1; 404 for DELETE).
	ErrNoCollection = errors.New("no such collection")
	// ErrPrecondition: If-Match or If-None-Match failed (412).
	ErrPrecondition = errors.New("precondition failed")
	// ErrReadOnly: the collection does not accept writes from the user (403).
	ErrReadOnly = errors.New("read-only collection")
	// ErrUIDConflict: another resource of the user already has the UID, or
	// the write would change the UID of an existing one
	// (409 CALDAV:no-uid-conflict).
	ErrUIDConflict = errors.New("UID already in use")
	// ErrUnsupportedComponent: the object is not a VTODO, the only kind a
	// writable list holds (409 CALDAV:supported-calendar-component).
	ErrUnsupportedComponent = errors.New("unsupported calendar component")
	// ErrInvalidObject: not a valid calendar object resource
	// (409 CALDAV:valid-calendar-object-resource).
	ErrInvalidObject = errors.New("invalid calendar object")
	// ErrQuotaExceeded: the write would take the user past a storage
	// budget (507 DAV:quota-not-exceeded, RFC 4331 §6).
	ErrQuotaExceeded = errors.New("quota exceeded")
	// ErrSyncTokenExpired: Changes cannot answer from that revision
	// (403 DAV:valid-sync-token; the client syncs again in full).
	ErrSyncTokenExpired = errors.New("sync token expired")
)

// LockedOutError refuses a login during a lock-out.
type LockedOutError struct {
	// Until is when the lock ends, by the service clock.
	Until time.Time
}

func (e *LockedOutError) Error() string { return "too many failed logins; try again later" }

// QuotaError refuses a write that would take the user past a storage
// budget; it wraps ErrQuotaExceeded.
type QuotaError struct {
	// Limit names the budget, the label of duebridge_caldav_limit_hits_total.
	Limit string
	Max   int64
	// Detail is the explanation sent to the client.
	Detail string
}

func (e *QuotaError) Error() string { return e.Detail }

func (e *QuotaError) Unwrap() error { return ErrQuotaExceeded }

// User is an authenticated user.
type User struct {
	Name string
	// Email is the user's address ("alice@example.com"), or "".
	Email string
	// Location is the user's time zone for floating and all-day times;
	// nil means UTC.
	Location *time.Location
}

// Limits are the configured limits the handler applies; zero means the
// default.
type Limits struct {
	// ICalObjectBytes is the largest object a PUT may carry.
	ICalObjectBytes int64
	// MultigetHrefs is the most distinct hrefs a calendar-multiget may ask for.
	MultigetHrefs int
	// RecurrenceSteps is the work one object's recurrences may cost a
	// time-range test; RecurrenceStepsPerRequest bounds one request's
	// objects together (see recur.go).
	RecurrenceSteps           int
	RecurrenceStepsPerRequest int
	// QuotaBytes is the budget Quota reports against; the handler only
	// compares it, to know a remembered quota still holds.
	QuotaBytes int64
	// SyncHealthUsers is how many users' sync health (/admin/sync) is
	// kept; past it the least recently seen is forgotten.
	SyncHealthUsers int
}

// Collection is a calendar collection: a read-only calendar of deadline
// VEVENTs, or (Todos) a Reminders list of VTODOs the user may write.
type Collection struct {
	Name        string // URL segment, unique per user
	Project     string
	Todos       bool
	DisplayName string
	Color       string // #RRGGBB or #RRGGBBAA; "" = the client's choice
	Order       int
	// Seq is the revision of the last change inside it: ctag and sync token.
	Seq int64
}

// CollectionProps are the properties a PROPPATCH may change.
type CollectionProps struct {
	DisplayName string
	Color       string
	Order       int
}

// Object is a calendar object resource; Data is the exact bytes served
// (nil in listings that did not ask for them).
type Object struct {
	Collection string
	Name       string // URL segment, e.g. "T-123.ics"
	ETag       string // quoted, strong
	Data       []byte
	Modified   time.Time
	// Seq is the revision of the object's last change.
	Seq int64
	// Deleted marks a tombstone in Changes.
	Deleted bool
}

// Conditions are a request's If-Match and If-None-Match entity tags (RFC
// 9110 §13.1), as sent, quotes included; "*" matches any existing resource.
type Conditions struct {
	IfMatch     []string
	IfNoneMatch []string
}

// Put is a device's PUT of an object.
type Put struct {
	User       string
	Collection string
	Name       string
	// Data is the request body, exactly as sent; Cal is Data decoded, or
	// nil for the backend to decode.
	Data []byte
	Cal  *ical.Calendar
	Cond Conditions
}

// PutResult says what a PUT stored.
type PutResult struct {
	// ETag of the stored object, quoted.
	ETag string
	// Created: the resource did not exist before (201, else 204).
	Created bool
	// Verbatim: the stored object is byte for byte the request body, so
	// the client may keep its copy and use ETag. False whenever duebridge
	// stored anything else (its own rendering, a re-armed alarm, a new
	// SEQUENCE, tracker-owned fields the client had changed): the client
	// must then fetch the object again (RFC 4791 §5.3.4: no ETag).
	Verbatim bool
	// What happened, for logs and metrics: "created", "updated",
	// "completed", "reopened", "phone-state", "overridden" (only a
	// tracker-owned field changed, and was kept), "unchanged".
	Outcome string
}
