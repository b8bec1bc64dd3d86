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
