package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cross-process events on PostgreSQL. Several duebridge processes may share
// one database; each publishes its committed events with NOTIFY inside the
// transaction (PostgreSQL delivers them only on commit, in commit order), and
// each listens on a dedicated connection and hands other processes' events to
// its own OnCommit. Notifications are not durable: events sent while a
// listener was disconnected are lost. So after every re-LISTEN the listener
// hands OnCommit one EventResync, and every reader re-reads the store from
// its own position (IMAP from its last MODSEQ, CalDAV from the client's sync
// token): what another process committed during the gap shows at once, not
// only with that user's next change.

// notifyLimit keeps payloads under PostgreSQL's 8,000-byte NOTIFY limit.
const notifyLimit = 7000

// Reasons a store hands OnCommit an EventResync (its Name): the listener
// reconnected, or a peer committed an event too large to announce.
const (
	ResyncReconnect = "reconnect"
	ResyncOversized = "oversized"
)

// listenPing is how long the listener waits for a notification before it
// checks the connection with a round trip: a connection that died without
// a word (a failover, a dropped route) is noticed within listenPing plus
// listenPingTimeout instead of TCP keepalive's many minutes, and its gap is
// then replayed like any other. Variables so tests can shorten them.
var (
	listenPing        = 30 * time.Second
	listenPingTimeout = 10 * time.Second
)

type wireEvent struct {
	Seq    int64     `json:"q,omitempty"`
	Kind   EventKind `json:"k"`
	User   string    `json:"u,omitempty"`
	Name   string    `json:"n,omitempty"`
	Source string    `json:"s,omitempty"`
	TaskID string    `json:"t,omitempty"`
	Origin string    `json:"o,omitempty"`
}

type wirePayload struct {
	Process string      `json:"p"`
	Events  []wireEvent `json:"e"`
}

func newProcessID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// channelFor names the NOTIFY channel after the schema, so databases in
// different schemas of one server do not hear each other.
func channelFor(ctx context.Context, db *sql.DB) (string, error) {
	var schema string
	if err := db.QueryRowContext(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", fmt.Errorf("read current schema: %w", err)
	}
	var b strings.Builder
	b.WriteString("duebridge_")
	for _, r := range strings.ToLower(schema) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		}
	}
	name := b.String()
	if len(name) > 63 {
		name = name[:63]
	}
	return name, nil
}

// publish sends events with pg_notify inside the transaction, in chunks
// under the payload limit. An event too large to send on its own (a long
// mailbox name of characters JSON escapes, say) must not fail the commit: it
// goes out as an EventResync, on which the other processes re-read
// everything, as after a listener gap.
func (s *sqlStore) publish(ctx context.Context, tx *sql.Tx, seq int64, events []Event) error {
	head, err := json.Marshal(s.process)
	if err != nil {
		return err
	}
	var buf []byte
	count := 0
	start := func() {
		buf = append(append(append(buf[:0], `{"p":`...), head...), `,"e":[`...)
		count = 0
	}
	flush := func() error {
		if count == 0 {
			return nil
		}
		buf = append(buf, "]}"...)
		if _, err := tx.ExecContext(ctx, `SELECT pg_notify($1, $2)`, s.channel, string(buf)); err != nil {
			return fmt.Errorf("notify: %w", err)
		}
		start()
		return nil
	}
	start()
	for _, e := range events {
		if e.Seq == 0 {
			e.Seq = seq
		}
		b, err := json.Marshal(wireEvent{Seq: e.Seq, Kind: e.Kind, User: e.User, Name: e.Name, Source: e.Source, TaskID: e.TaskID, Origin: e.Origin})
		if err != nil {
			return err
		}
		if len(head)+len(b)+16 > notifyLimit {
			b, _ = json.Marshal(wireEvent{Seq: e.Seq, Kind: EventResync, Name: ResyncOversized})
		}
		if len(buf)+len(b)+3 > notifyLimit {
			if err := flush(); err != nil {
				return err
			}
		}
		if count > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, b...)
		count++
	}
	return flush()
}

// listen receives other processes' events until ctx is done, reconnecting
// with backoff.
func (s *sqlStore) listen(ctx context.Context, source string, log *slog.Logger) {
	delay := 100 * time.Millisecond
	resync := false // the first LISTEN follows Open: nobody can have missed anything yet
	for ctx.Err() == nil {
		connected, err := s.listenOnce(ctx, source, resync)
		if ctx.Err() != nil {
			return
		}
		if connected {
			delay = 100 * time.Millisecond // a working connection resets the backoff
			resync = true
		}
		log.Warn("store: lost the PostgreSQL event listener; reconnecting", "err", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// listenOnce listens on one connection until it fails; connected reports
// whether LISTEN took effect. With resync, it publishes EventResync once
// LISTEN holds: events committed before that moment are then either seen by
// the readers' re-read or arrive as notifications, never lost in between.
func (s *sqlStore) listenOnce(ctx context.Context, source string, resync bool) (connected bool, err error) {
	conn, err := pgx.Connect(ctx, source)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return false, err
	}
	s.listening.Store(true)
	defer s.listening.Store(false)
	if resync {
		s.commitMu.Lock()
		s.opts.OnCommit([]Event{{Kind: EventResync, Name: ResyncReconnect}})
		s.commitMu.Unlock()
	}
	for {
		wait, cancel := context.WithTimeout(ctx, listenPing)
		n, err := conn.WaitForNotification(wait)
		quiet := ctx.Err() == nil && errors.Is(wait.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil && quiet {
			// Quiet for listenPing: is the connection still there? (A
			// timed-out wait leaves a pgx connection usable.)
			pctx, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("listener ping: %w", err)
			}
			continue
		}
		if err != nil {
			return true, err
		}
		var p wirePayload
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil || p.Process == s.process {
			continue // our own commit (already published locally) or garbage
		}
		events := make([]Event, len(p.Events))
		for i, w := range p.Events {
			events[i] = Event{Seq: w.Seq, Kind: w.Kind, User: w.User, Name: w.Name, Source: w.Source, TaskID: w.TaskID, Origin: w.Origin}
		}
		s.commitMu.Lock()
		s.opts.OnCommit(events)
		s.commitMu.Unlock()
	}
}
