// Package store keeps duebridge's durable state: tasks, each user's view of
// them as CalDAV objects, IMAP mailboxes and messages, and the outboxes.
//
// One implementation over database/sql serves SQLite (modernc.org/sqlite, pure
// Go, the embedded default) and PostgreSQL (pgx); the dialects differ only in
// placeholders and a few DDL words. Every write happens in one transaction
// (Store.Update) that allocates one store-wide revision number, Seq; Seq is
// what CalDAV sync tokens, ctags and IMAP MODSEQs are made of. After a commit
// the events a transaction emitted are handed to Options.OnCommit, which is how
// IMAP IDLE and CalDAV learn of changes the moment they are durable.
package store

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/duebridge/duebridge/internal/clock"
)

// ErrNotFound is returned when a looked-up record does not exist.
var ErrNotFound = errors.New("not found")

// Store is the database. All methods are safe for concurrent use.
type Store interface {
	// Update runs fn in one write transaction. When Update returns nil the
	// transaction is durable (fsynced) and its events have been published.
	// If fn returns an error nothing of it is stored.
	Update(ctx context.Context, fn func(Tx) error) error
	// View runs fn in a read-only transaction (a consistent snapshot).
	View(ctx context.Context, fn func(Tx) error) error
	// Read runs fn for a read of one SELECT, outside an explicit
	// transaction: one statement is its own consistent snapshot, so it
	// needs no BEGIN and ROLLBACK. A second statement fails with
	// ErrOneStatement, a write as in a View; reads that must agree use
	// View. On SQLite a
	// Read's statement is not interrupted when ctx ends (ctx is checked
	// before it): Reads are for short queries, such as a phone poll's.
	Read(ctx context.Context, fn func(Tx) error) error
	// Ping checks that the database is reachable (readiness).
	Ping(ctx context.Context) error
	Close() error
}

// Tx is what a transaction can do. Methods are grouped by the part of the
// product that needs them; each group lives in its own file.
type Tx interface {
	// Seq returns this transaction's revision, allocating it on first use.
	// All writes of one transaction share it; it only grows across commits.
	Seq() (int64, error)
	// Emit queues an event to publish after a successful commit.
	Emit(Event)
	// Now is the transaction's clock reading, shared by all its writes.
	Now() time.Time
	// Savepoint runs fn so that, if it returns an error, what fn wrote and
	// emitted is undone and the transaction goes on without it (SQL
	// SAVEPOINT). Allocate Seq before the first savepoint: a rolled-back
	// one would also take back the revision it allocated.
	Savepoint(fn func() error) error

	TaskTx
	CalendarTx
	MailTx
	OutboxTx
	KVTx
	AlertTx
	DeviceTx
}

// EventKind says what changed.
type EventKind string

const (
	EventTask     EventKind = "task"     // a task row changed (Source, TaskID)
	EventCalendar EventKind = "calendar" // a collection of User changed (Name = collection)
	EventMail     EventKind = "mail"     // a mailbox of User changed (Name = mailbox)
	EventOutbox   EventKind = "outbox"   // a callback is waiting for delivery
	EventAlert    EventKind = "alert"    // the alert schedule changed
	EventDevice   EventKind = "device"   // a device password of User was revoked (see DeviceRevocations)
	// EventResync says events may have been missed (on PostgreSQL, the
	// listener reconnected): every reader re-reads everything it shows. It
	// carries no user and reaches every subscriber whatever its filter.
	EventResync EventKind = "resync"
)

// Event is published after commit. It says where to look, not what is there:
// readers re-read the store.
type Event struct {
	Seq    int64
	Kind   EventKind
	User   string
	Name   string
	Source string
	TaskID string
	// Origin identifies the writer (e.g. an IMAP session) so it can skip its
	// own echo. Empty for most writers.
	Origin string
}

// Options configure Open.
type Options struct {
	// OnCommit, if set, receives the events of every committed transaction, in
	// commit order. It runs on the committing goroutine and must not block.
	OnCommit func([]Event)
	// Clock stamps each transaction (Tx.Now). bridge.New sets it to the
	// service's clock, so there is one clock in the process; if nil, the
	// wall clock.
	Clock clock.Clock
	// Logger; if nil, slog.Default() is used.
	Logger *slog.Logger
	// WALRestartBytes (SQLite only) is the write-ahead log's length past
	// which the store starts it over (checkpoint.go); 0 means 64 MiB.
	WALRestartBytes int64
}

// WALStats is what an SQLite store reports of its write-ahead log.
type WALStats struct {
	// Bytes is the log's length at the last checkpoint.
	Bytes int64
	// Restarts counts the times the store started an over-long log over.
	Restarts int64
}
