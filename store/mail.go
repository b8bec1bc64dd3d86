package store

import (
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Mailbox is one IMAP mailbox of one user. UIDValidity never changes once
// created; UIDNext only grows.
type Mailbox struct {
	User        string
	Name        string
	SpecialUse  string // "" or e.g. `\Trash`
	UIDValidity uint32
	UIDNext     uint32
	ModSeq      int64 // highest MODSEQ: the revision of its last change
}

// Message is one stored mail. Data is the exact RFC 5322 bytes; it never changes.
type Message struct {
	User         string
	Mailbox      string
	UID          uint32
	Flags        []string // canonical case, sorted
	InternalDate time.Time
	Size         int64
	Data         []byte // nil in listings
	MessageID    string
	Source       string
	TaskID       string
	ModSeq       int64
}

// MailTx reads and writes mailboxes and messages.
type MailTx interface {
	// EnsureMailbox returns the mailbox, creating it (with a fresh
	// UIDVALIDITY) if the user has none of that name.
	EnsureMailbox(user, name, specialUse string) (*Mailbox, error)
	Mailbox(user, name string) (*Mailbox, error)
	Mailboxes(user string) ([]Mailbox, error)
	// AppendMessage stores m under the next UID of its mailbox (m.UID set).
	AppendMessage(m *Message) error
	// Messages lists a mailbox's messages in UID order, without data.
	Messages(user, mailbox string) ([]Message, error)
	// MessageData returns one message with its bytes.
	MessageData(user, mailbox string, uid uint32) (*Message, error)
	// SetFlags replaces the flags of the given messages; it returns those
	// whose flags changed.
	SetFlags(user, mailbox string, uids []uint32, flags []string) ([]Message, error)
	// Expunge removes the given messages for good.
	Expunge(user, mailbox string, uids []uint32) error

	// MailboxStats counts messages, unseen and \Deleted ones, and bytes.
	MailboxStats(user, name string) (*MailboxStats, error)
	// CountMessages returns the number of messages in a mailbox.
	CountMessages(user, mailbox string) (uint32, error)
	// ChangedMessages lists messages (no data) whose MODSEQ is above since.
	ChangedMessages(user, mailbox string, since int64) ([]Message, error)
	// MessageUIDs lists a mailbox's UIDs in ascending order.
	MessageUIDs(user, mailbox string) ([]uint32, error)
	// MailboxChanges reads in one statement what an open mailbox's
	// refresh needs: the mailbox, and unless its MODSEQ is still
	// mboxSince, the messages whose MODSEQ is above msgSince (as
	// ChangedMessages) and the mailbox's message count (0 when
	// unchanged). One statement is its own snapshot, so it runs in a
	// Read. ErrNotFound if there is no such mailbox.
	MailboxChanges(user, name string, mboxSince, msgSince int64) (*Mailbox, []Message, uint32, error)
	// MessagesData returns the given messages with their bytes, in UID order.
	MessagesData(user, mailbox string, uids []uint32) ([]Message, error)
	// ChangeFlags sets, adds or removes flags message by message; it returns
	// the messages whose flags changed.
	ChangeFlags(user, mailbox string, uids []uint32, op FlagOp, flags []string) ([]Message, error)
	// CopyMessages copies (or, with move, moves) messages to another mailbox
	// of the same user under new UIDs; it returns old and new UIDs.
	CopyMessages(user, from, to string, uids []uint32, move bool) (src, dst []uint32, err error)
}

const mboxCols = `username, name, special_use, uid_validity, uid_next, modseq`

func scanMailbox(s scanner) (*Mailbox, error) {
	var m Mailbox
	var validity, next int64
	if err := s.Scan(&m.User, &m.Name, &m.SpecialUse, &validity, &next, &m.ModSeq); err != nil {
		return nil, err
	}
	m.UIDValidity, m.UIDNext = uint32(validity), uint32(next)
	return &m, nil
}

func (tx *sqlTx) Mailbox(user, name string) (*Mailbox, error) {
	m, err := scanMailbox(tx.queryRow(`SELECT `+mboxCols+` FROM mailboxes WHERE username = ? AND name = ?`, user, name))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return m, err
}

func (tx *sqlTx) Mailboxes(user string) ([]Mailbox, error) {
	rows, err := tx.query(`SELECT `+mboxCols+` FROM mailboxes WHERE username = ? ORDER BY name`, user)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

func (tx *sqlTx) EnsureMailbox(user, name, specialUse string) (*Mailbox, error) {
	m, err := tx.Mailbox(user, name)
	if err == nil || !errors.Is(err, ErrNotFound) {
		return m, err
	}
	// UIDVALIDITY from the clock (seconds), as Dovecot does; never 0 and
	// different from any earlier mailbox of the same name.
	validity := uint32(tx.now.Unix())
	if validity == 0 {
		validity = 1
	}
	_, err = tx.exec(`INSERT INTO mailboxes (username, name, special_use, uid_validity, uid_next, modseq) VALUES (?,?,?,?,1,0)`,
		user, name, specialUse, int64(validity))
	if err != nil {
		return nil, fmt.Errorf("create mailbox %s/%s: %w", user, name, err)
	}
	return &Mailbox{User: user, Name: name, SpecialUse: specialUse, UIDValidity: validity, UIDNext: 1}, nil
}

func (tx *sqlTx) AppendMessage(m *Message) error {
	seq, err := tx.Seq()
	if err != nil {
		return err
	}
	var next int64
	err = tx.queryRow(`UPDATE mailboxes SET uid_next = uid_next + 1, modseq = ? WHERE username = ? AND name = ? RETURNING uid_next - 1`,
		seq, m.User, m.Mailbox).Scan(&next)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("append to %s/%s: %w", m.User, m.Mailbox, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("allocate uid: %w", err)
	}
	m.UID, m.ModSeq, m.Size = uint32(next), seq, int64(len(m.Data))
	if m.InternalDate.IsZero() {
		m.InternalDate = tx.now
	}
	m.Flags = normFlags(m.Flags)
	_, err = tx.exec(`INSERT INTO messages (username, mailbox, uid, flags, internal_date, size, data, message_id, source, task_id, modseq)
		VALUES (?,?,?,?,?,?,?,?,?,?,?)`,
		m.User, m.Mailbox, int64(m.UID), strings.Join(m.Flags, " "), nanos(m.InternalDate), m.Size, m.Data, m.MessageID, m.Source, m.TaskID, seq)
	if err != nil {
		return fmt.Errorf("append message: %w", err)
	}
	tx.Emit(Event{Seq: seq, Kind: EventMail, User: m.User, Name: m.Mailbox})
	return nil
}

const msgCols = `username, mailbox, uid, flags, internal_date, size, message_id, source, task_id, modseq`

func scanMessage(s scanner, withData bool) (*Message, error) {
	var m Message
	var uid, date int64
	var flags string
	dest := []any{&m.User, &m.Mailbox, &uid, &flags, &date, &m.Size, &m.MessageID, &m.Source, &m.TaskID, &m.ModSeq}
	if withData {
		dest = append(dest, &m.Data)
	}
	if err := s.Scan(dest...); err != nil {
		return nil, err
	}
	m.UID = uint32(uid)
	m.InternalDate = fromNanos(date)
	if flags != "" {
		m.Flags = strings.Split(flags, " ")
	}
	return &m, nil
}

func (tx *sqlTx) Messages(user, mailbox string) ([]Message, error) {
	rows, err := tx.query(`SELECT `+msgCols+` FROM messages WHERE username = ? AND mailbox = ? ORDER BY uid`, user, mailbox)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m, err := scanMessage(rows, false)
		if err != nil {
			return nil, err
		}
		out = append(out, *m)
	}
	return out, rows.Err()
}

func (tx *sqlTx) MessageData(user, mailbox string, uid uint32) (*Message, error) {
	m, err := scanMessage(tx.queryRow(`SELECT `+msgCols+`, data FROM messages WHERE username = ? AND mailbox = ? AND uid = ?`,
		user, mailbox, int64(uid)), true)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return m, err
}

func (tx *sqlTx) SetFlags(user, mailbox string, uids []uint32, flags []string) ([]Message, error) {
	seq, err := tx.Seq()
	if err != nil {
		return nil, err
	}
	joined := strings.Join(normFlags(flags), " ")
	var changed []Message
	for _, uid := range uids {
		m, err := scanMessage(tx.queryRow(`UPDATE messages SET flags = ?, modseq = ? WHERE username = ? AND mailbox = ? AND uid = ? AND flags <> ?
			RETURNING `+msgCols, joined, seq, user, mailbox, int64(uid), joined), false)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("set flags: %w", err)
		}
		changed = append(changed, *m)
	}
	if len(changed) > 0 {
		if _, err := tx.exec(`UPDATE mailboxes SET modseq = ? WHERE username = ? AND name = ?`, seq, user, mailbox); err != nil {
			return nil, err
		}
		tx.Emit(Event{Seq: seq, Kind: EventMail, User: user, Name: mailbox})
	}
	return changed, nil
}

func (tx *sqlTx) Expunge(user, mailbox string, uids []uint32) error {
	if len(uids) == 0 {
		return nil
	}
	seq, err := tx.Seq()
	if err != nil {
		return err
	}
	for _, uid := range uids {
		if _, err := tx.exec(`DELETE FROM messages WHERE username = ? AND mailbox = ? AND uid = ?`, user, mailbox, int64(uid)); err != nil {
			return fmt.Errorf("expunge: %w", err)
		}
	}
	if _, err := tx.exec(`UPDATE mailboxes SET modseq = ? WHERE username = ? AND name = ?`, seq, user, mailbox); err != nil {
		return err
	}
	tx.Emit(Event{Seq: seq, Kind: EventMail, User: user, Name: mailbox})
	return nil
}

// normFlags sorts and de-duplicates flags, writing system flags in their
// canonical case (\Seen, not \seen): some clients compare case-sensitively.
func normFlags(flags []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range flags {
		f = CanonicalFlag(f)
		if f == "" || seen[f] {
			continue
		}
		seen[f] = true
		out = append(out, f)
	}
	slices.Sort(out)
	return out
}

// CanonicalFlag returns the canonical spelling of an IMAP flag.
func CanonicalFlag(f string) string {
	for _, c := range []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`, `\Draft`, `$Forwarded`, `$MDNSent`, `$Junk`, `$NotJunk`, `$Phishing`} {
		if strings.EqualFold(f, c) {
			return c
		}
	}
	return f
}

// The methods below serve the IMAP server: incremental refresh of an open
// mailbox, STATUS counts, batched reads for FETCH, per-message flag changes
// and COPY/MOVE between a user's mailboxes.

// MailboxStats are the counts IMAP STATUS reports.
type MailboxStats struct {
	Messages uint32
	Unseen   uint32
	Deleted  uint32
	Size     int64
}

// FlagOp says how ChangeFlags applies its flags.
type FlagOp int

const (
	FlagsSet    FlagOp = iota // replace
	FlagsAdd                  // union
	FlagsRemove               // difference
)

// inChunk bounds the number of UIDs in one IN (...) list: SQLite allows
// 32,766 parameters, PostgreSQL 65,535; small chunks keep the prepared
// statements few and reusable.
const inChunk = 256

// MailboxStats counts a mailbox's messages, unseen and \Deleted ones, and
// their total size.
func (tx *sqlTx) MailboxStats(user, name string) (*MailboxStats, error) {
	var st MailboxStats
	var n, seen, deleted, size int64
	// Flags are stored space-separated in canonical case; padding with
	// spaces makes a LIKE match whole flags only. ESCAPE is explicit because
	// PostgreSQL treats a backslash in LIKE as an escape by default.
	err := tx.queryRow(`SELECT COUNT(*),
		COALESCE(SUM(CASE WHEN (' ' || flags || ' ') LIKE ? ESCAPE '!' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(CASE WHEN (' ' || flags || ' ') LIKE ? ESCAPE '!' THEN 1 ELSE 0 END), 0),
		COALESCE(SUM(size), 0)
		FROM messages WHERE username = ? AND mailbox = ?`,
		`% \Seen %`, `% \Deleted %`, user, name).Scan(&n, &seen, &deleted, &size)
	if err != nil {
		return nil, fmt.Errorf("mailbox stats %s/%s: %w", user, name, err)
	}
	st.Messages, st.Unseen, st.Deleted, st.Size = uint32(n), uint32(n-seen), uint32(deleted), size
	return &st, nil
}

// CountMessages returns the number of messages in a mailbox.
func (tx *sqlTx) CountMessages(user, mailbox string) (uint32, error) {
	var n int64
	if err := tx.queryRow(`SELECT COUNT(*) FROM messages WHERE username = ? AND mailbox = ?`, user, mailbox).Scan(&n); err != nil {
		return 0, fmt.Errorf("count messages %s/%s: %w", user, mailbox, err)
	}
	return uint32(n), nil
}

// ChangedMessages lists, in UID order and without data, the messages of a
// mailbox whose MODSEQ is above since (since 0: all of them). Only UID,
// Flags, InternalDate, Size and ModSeq are filled.
func (tx *sqlTx) ChangedMessages(user, mailbox string, since int64) ([]Message, error) {
	rows, err := tx.query(`SELECT uid, flags, internal_date, size, modseq FROM messages
		WHERE username = ? AND mailbox = ? AND modseq > ? ORDER BY uid`, user, mailbox, since)
	if err != nil {
		return nil, fmt.Errorf("changed messages %s/%s: %w", user, mailbox, err)
	}
	defer rows.Close()
	var out []Message
	for rows.Next() {
		m := Message{User: user, Mailbox: mailbox}
		var uid, date int64
		var flags string
		if err := rows.Scan(&uid, &flags, &date, &m.Size, &m.ModSeq); err != nil {
			return nil, err
		}
		m.UID, m.InternalDate = uint32(uid), fromNanos(date)
		if flags != "" {
			m.Flags = strings.Split(flags, " ")
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// MailboxChanges is Mailbox, ChangedMessages and CountMessages in one
// SELECT. It runs after every commit that adds a mail, once per open
// mailbox: as three statements in a View it was, with BEGIN and ROLLBACK,
// five round trips through database/sql and SQLite for one new row. The
// count is an uncorrelated subquery, so both databases compute it once
// per statement, not per row; a mailbox without changed messages comes
// back as one row whose message columns are NULL.
func (tx *sqlTx) MailboxChanges(user, name string, mboxSince, msgSince int64) (*Mailbox, []Message, uint32, error) {
	rows, err := tx.query(`SELECT b.username, b.name, b.special_use, b.uid_validity, b.uid_next, b.modseq,
		CASE WHEN b.modseq = ? THEN 0 ELSE (SELECT COUNT(*) FROM messages WHERE username = ? AND mailbox = ?) END,
		m.uid, m.flags, m.internal_date, m.size, m.modseq
		FROM mailboxes b LEFT JOIN messages m
			ON b.modseq <> ? AND m.username = b.username AND m.mailbox = b.name AND m.modseq > ?
		WHERE b.username = ? AND b.name = ? ORDER BY m.uid`,
		mboxSince, user, name, mboxSince, msgSince, user, name)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("changes of mailbox %s/%s: %w", user, name, err)
	}
	defer rows.Close()
	var (
		mb    *Mailbox
		msgs  []Message
		count int64
	)
	for rows.Next() {
		var (
			b                    Mailbox
			validity, next       int64
			uid, date, size, mod sql.NullInt64
			flags                sql.NullString
		)
		if err := rows.Scan(&b.User, &b.Name, &b.SpecialUse, &validity, &next, &b.ModSeq, &count, &uid, &flags, &date, &size, &mod); err != nil {
			return nil, nil, 0, fmt.Errorf("changes of mailbox %s/%s: %w", user, name, err)
		}
		if mb == nil {
			b.UIDValidity, b.UIDNext = uint32(validity), uint32(next)
			mb = &b
		}
		if !uid.Valid {
			continue // the mailbox's row without a changed message
		}
		m := Message{User: user, Mailbox: name, UID: uint32(uid.Int64), InternalDate: fromNanos(date.Int64),
			Size: size.Int64, ModSeq: mod.Int64}
		if flags.String != "" {
			m.Flags = strings.Split(flags.String, " ")
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, 0, fmt.Errorf("changes of mailbox %s/%s: %w", user, name, err)
	}
	if mb == nil {
		return nil, nil, 0, ErrNotFound
	}
	return mb, msgs, uint32(count), nil
}

// MessageUIDs lists the UIDs of a mailbox in ascending order.
func (tx *sqlTx) MessageUIDs(user, mailbox string) ([]uint32, error) {
	rows, err := tx.query(`SELECT uid FROM messages WHERE username = ? AND mailbox = ? ORDER BY uid`, user, mailbox)
	if err != nil {
		return nil, fmt.Errorf("message uids %s/%s: %w", user, mailbox, err)
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var uid int64
		if err := rows.Scan(&uid); err != nil {
			return nil, err
		}
		out = append(out, uint32(uid))
	}
	return out, rows.Err()
}

// inList returns "?,?,...,?" for n parameters.
func inList(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// uidChunks calls fn with consecutive slices of at most inChunk UIDs.
func uidChunks(uids []uint32, fn func([]uint32) error) error {
	for len(uids) > 0 {
		n := min(len(uids), inChunk)
		if err := fn(uids[:n]); err != nil {
			return err
		}
		uids = uids[n:]
	}
	return nil
}

// MessagesData returns the messages with the given UIDs, with their bytes, in
// UID order; UIDs that do not exist are skipped.
func (tx *sqlTx) MessagesData(user, mailbox string, uids []uint32) ([]Message, error) {
	uids = slices.Clone(uids)
	slices.Sort(uids)
	uids = slices.Compact(uids)
	out := make([]Message, 0, len(uids))
	err := uidChunks(uids, func(chunk []uint32) error {
		args := []any{user, mailbox}
		for _, u := range chunk {
			args = append(args, int64(u))
		}
		rows, err := tx.query(`SELECT `+msgCols+`, data FROM messages WHERE username = ? AND mailbox = ? AND uid IN (`+inList(len(chunk))+`) ORDER BY uid`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMessage(rows, true)
			if err != nil {
				return err
			}
			out = append(out, *m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("message data %s/%s: %w", user, mailbox, err)
	}
	return out, nil
}

// ChangeFlags sets, adds or removes flags on the given messages, each message
// read and written in this transaction (so concurrent writers cannot lose an
// update). It returns the messages whose flags changed, with UID, Flags and
// ModSeq filled.
func (tx *sqlTx) ChangeFlags(user, mailbox string, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	flags = normFlags(flags)
	type row struct {
		uid   uint32
		flags []string
	}
	var current []row
	err := uidChunks(uids, func(chunk []uint32) error {
		args := []any{user, mailbox}
		for _, u := range chunk {
			args = append(args, int64(u))
		}
		rows, err := tx.query(`SELECT uid, flags FROM messages WHERE username = ? AND mailbox = ? AND uid IN (`+inList(len(chunk))+`)`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var uid int64
			var f string
			if err := rows.Scan(&uid, &f); err != nil {
				return err
			}
			r := row{uid: uint32(uid)}
			if f != "" {
				r.flags = strings.Split(f, " ")
			}
			current = append(current, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read flags %s/%s: %w", user, mailbox, err)
	}
	slices.SortFunc(current, func(a, b row) int { return int(int64(a.uid) - int64(b.uid)) })
	var changed []Message
	var seq int64
	for _, r := range current {
		var next []string
		switch op {
		case FlagsSet:
			next = flags
		case FlagsAdd:
			next = normFlags(append(slices.Clone(r.flags), flags...))
		case FlagsRemove:
			next = slices.DeleteFunc(slices.Clone(r.flags), func(f string) bool { return slices.Contains(flags, CanonicalFlag(f)) })
		default:
			return nil, fmt.Errorf("change flags: unknown op %d", op)
		}
		if slices.Equal(next, r.flags) {
			continue
		}
		if seq == 0 {
			if seq, err = tx.Seq(); err != nil {
				return nil, err
			}
		}
		if _, err := tx.exec(`UPDATE messages SET flags = ?, modseq = ? WHERE username = ? AND mailbox = ? AND uid = ?`,
			strings.Join(next, " "), seq, user, mailbox, int64(r.uid)); err != nil {
			return nil, fmt.Errorf("change flags: %w", err)
		}
		changed = append(changed, Message{User: user, Mailbox: mailbox, UID: r.uid, Flags: next, ModSeq: seq})
	}
	if len(changed) > 0 {
		if _, err := tx.exec(`UPDATE mailboxes SET modseq = ? WHERE username = ? AND name = ?`, seq, user, mailbox); err != nil {
			return nil, fmt.Errorf("change flags: %w", err)
		}
		tx.Emit(Event{Seq: seq, Kind: EventMail, User: user, Name: mailbox})
	}
	return changed, nil
}

// CopyMessages copies messages of one user from one mailbox to another,
// keeping flags, internal date and bytes, under new UIDs given in ascending
// order of the source UIDs. With move, the originals are removed in the same
// transaction (IMAP MOVE). It returns the source UIDs that existed and their
// new UIDs, index for index.
func (tx *sqlTx) CopyMessages(user, from, to string, uids []uint32, move bool) (src, dst []uint32, err error) {
	if from == to {
		return nil, nil, fmt.Errorf("copy %s/%s onto itself", user, from)
	}
	uids = slices.Clone(uids)
	slices.Sort(uids)
	uids = slices.Compact(uids)
	err = uidChunks(uids, func(chunk []uint32) error {
		args := []any{user, from}
		for _, u := range chunk {
			args = append(args, int64(u))
		}
		rows, err := tx.query(`SELECT uid FROM messages WHERE username = ? AND mailbox = ? AND uid IN (`+inList(len(chunk))+`) ORDER BY uid`, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var uid int64
			if err := rows.Scan(&uid); err != nil {
				return err
			}
			src = append(src, uint32(uid))
		}
		return rows.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("copy from %s/%s: %w", user, from, err)
	}
	if len(src) == 0 {
		return nil, nil, nil
	}
	seq, err := tx.Seq()
	if err != nil {
		return nil, nil, err
	}
	// One UID allocation for the whole batch: UIDs stay dense and ascending.
	var first int64
	err = tx.queryRow(`UPDATE mailboxes SET uid_next = uid_next + ?, modseq = ? WHERE username = ? AND name = ? RETURNING uid_next - ?`,
		int64(len(src)), seq, user, to, int64(len(src))).Scan(&first)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("copy to %s/%s: %w", user, to, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("allocate uids in %s/%s: %w", user, to, err)
	}
	for i, uid := range src {
		nu := uint32(first) + uint32(i)
		if _, err := tx.exec(`INSERT INTO messages (username, mailbox, uid, flags, internal_date, size, data, message_id, source, task_id, modseq)
			SELECT username, ?, ?, flags, internal_date, size, data, message_id, source, task_id, ? FROM messages
			WHERE username = ? AND mailbox = ? AND uid = ?`, to, int64(nu), seq, user, from, int64(uid)); err != nil {
			return nil, nil, fmt.Errorf("copy message %d to %s/%s: %w", uid, user, to, err)
		}
		dst = append(dst, nu)
	}
	tx.Emit(Event{Seq: seq, Kind: EventMail, User: user, Name: to})
	if move {
		err := uidChunks(src, func(chunk []uint32) error {
			args := []any{user, from}
			for _, u := range chunk {
				args = append(args, int64(u))
			}
			_, err := tx.exec(`DELETE FROM messages WHERE username = ? AND mailbox = ? AND uid IN (`+inList(len(chunk))+`)`, args...)
			return err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("move from %s/%s: %w", user, from, err)
		}
		if _, err := tx.exec(`UPDATE mailboxes SET modseq = ? WHERE username = ? AND name = ?`, seq, user, from); err != nil {
			return nil, nil, fmt.Errorf("move from %s/%s: %w", user, from, err)
		}
		tx.Emit(Event{Seq: seq, Kind: EventMail, User: user, Name: from})
	}
	return src, dst, nil
}
