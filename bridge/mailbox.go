package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/store"
)

// IMAP returns the core as the IMAP server's backend: every read one store
// snapshot, every write (flags, expunge, copy, move, mailbox creation) one
// transaction.
func (s *Service) IMAP() imapserver.Backend { return imapBackend{s} }

type imapBackend struct{ s *Service }

var _ imapserver.Backend = imapBackend{}

func (b imapBackend) Authenticate(ctx context.Context, username, password, remoteAddr string) (string, error) {
	u, err := b.s.AuthenticateFrom(ctx, "imap", username, password, remoteAddr)
	switch {
	case errors.Is(err, ErrLockedOut):
		return "", fmt.Errorf("%w: %w", imapserver.ErrLockedOut, imapserver.ErrBadCredentials)
	case errors.Is(err, ErrBadCredentials):
		return "", imapserver.ErrBadCredentials
	case err != nil:
		return "", err
	}
	return u.Name, nil
}

// mailboxErr turns the store's ErrNotFound into IMAP's ErrNoMailbox.
func mailboxErr(err error, what, user, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("%s %s/%s: %w", what, user, name, imapserver.ErrNoMailbox)
	}
	return fmt.Errorf("%s %s/%s: %w", what, user, name, err)
}

// EnsureMailboxes reads first and writes only when one is missing: it runs
// at every login, and a write transaction each time would serialise logins
// behind the writer.
func (b imapBackend) EnsureMailboxes(ctx context.Context, user string, want []imapserver.MailboxSpec) error {
	have, err := b.Mailboxes(ctx, user)
	if err != nil {
		return err
	}
	missing := slices.ContainsFunc(want, func(w imapserver.MailboxSpec) bool {
		return !slices.ContainsFunc(have, func(m imapserver.Mailbox) bool { return m.Name == w.Name })
	})
	if !missing {
		return nil
	}
	err = b.s.st.Update(ctx, func(tx store.Tx) error {
		for _, m := range want {
			if _, err := tx.EnsureMailbox(user, m.Name, m.SpecialUse); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create mailboxes of %s: %w", user, err)
	}
	return nil
}

func toIMAPMailbox(m *store.Mailbox) imapserver.Mailbox {
	return imapserver.Mailbox{Name: m.Name, SpecialUse: m.SpecialUse, UIDValidity: m.UIDValidity, UIDNext: m.UIDNext, ModSeq: m.ModSeq}
}

func toIMAPMessage(m *store.Message) imapserver.Message {
	return imapserver.Message{UID: m.UID, Flags: m.Flags, Size: m.Size, InternalDate: m.InternalDate, ModSeq: m.ModSeq}
}

func (b imapBackend) Mailboxes(ctx context.Context, user string) ([]imapserver.Mailbox, error) {
	var mbs []store.Mailbox
	err := b.s.st.View(ctx, func(tx store.Tx) error {
		var err error
		mbs, err = tx.Mailboxes(user)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list mailboxes of %s: %w", user, err)
	}
	out := make([]imapserver.Mailbox, len(mbs))
	for i := range mbs {
		out[i] = toIMAPMailbox(&mbs[i])
	}
	return out, nil
}

func (b imapBackend) Mailbox(ctx context.Context, user, name string) (*imapserver.Mailbox, error) {
	var mb *store.Mailbox
	err := b.s.st.View(ctx, func(tx store.Tx) error {
		var err error
		mb, err = tx.Mailbox(user, name)
		return err
	})
	if err != nil {
		return nil, mailboxErr(err, "read mailbox", user, name)
	}
	out := toIMAPMailbox(mb)
	return &out, nil
}

func (b imapBackend) Status(ctx context.Context, user, name string) (*imapserver.MailboxStatus, error) {
	var (
		mb    *store.Mailbox
		stats *store.MailboxStats
	)
	err := b.s.st.View(ctx, func(tx store.Tx) error {
		var err error
		if mb, err = tx.Mailbox(user, name); err != nil {
			return err
		}
		stats, err = tx.MailboxStats(user, name)
		return err
	})
	if err != nil {
		return nil, mailboxErr(err, "mailbox status", user, name)
	}
	return &imapserver.MailboxStatus{Mailbox: toIMAPMailbox(mb),
		Messages: stats.Messages, Unseen: stats.Unseen, Deleted: stats.Deleted, Size: stats.Size}, nil
}

// Changes reads the mailbox row, and when its MODSEQ is not the one the
// view has, the changed messages and the count, in one statement outside a
// transaction: it runs once per open mailbox after every commit that adds a
// mail (each webhook's push), where BEGIN, three statements and ROLLBACK
// cost more than the row read. When the count shows that some known message
// is gone (an expunge), the changes and the full UID list are read again
// together in one View (changesListed), so both come from one snapshot.
func (b imapBackend) Changes(ctx context.Context, user, name string, since imapserver.View) (*imapserver.Changes, error) {
	if since.MailboxModSeq < 0 {
		// A first load lists every message: in one SELECT each row would
		// repeat the mailbox's columns.
		return b.changesListed(ctx, user, name, since)
	}
	var (
		mb      *store.Mailbox
		changed []store.Message
		count   uint32
	)
	err := b.s.st.Read(ctx, func(tx store.Tx) (err error) { // one SELECT
		mb, changed, count, err = tx.MailboxChanges(user, name, since.MailboxModSeq, since.MessageModSeq)
		return err
	})
	if err != nil {
		return nil, mailboxErr(err, "read changes of", user, name)
	}
	out := imapserver.Changes{Mailbox: toIMAPMailbox(mb)}
	if mb.ModSeq == since.MailboxModSeq {
		return &out, nil
	}
	var added int
	out.Messages, added = toIMAPChanges(changed, since.LastUID)
	// Without expunges the count is what the view had plus what is new.
	if since.Count == 0 || int(count) == since.Count+added {
		return &out, nil
	}
	return b.changesListed(ctx, user, name, since)
}

// toIMAPChanges converts changed messages and counts those above lastUID
// (new since the view).
func toIMAPChanges(changed []store.Message, lastUID uint32) ([]imapserver.Message, int) {
	out := make([]imapserver.Message, len(changed))
	added := 0
	for i := range changed {
		out[i] = toIMAPMessage(&changed[i])
		if changed[i].UID > lastUID {
			added++
		}
	}
	return out, added
}

// changesListed is Changes in one View: the mailbox, the changed messages,
// and the count and the full UID list when the count differs.
func (b imapBackend) changesListed(ctx context.Context, user, name string, since imapserver.View) (*imapserver.Changes, error) {
	var out imapserver.Changes
	err := b.s.st.View(ctx, func(tx store.Tx) error {
		mb, err := tx.Mailbox(user, name)
		if err != nil {
			return err
		}
		out.Mailbox = toIMAPMailbox(mb)
		if mb.ModSeq == since.MailboxModSeq {
			return nil
		}
		changed, err := tx.ChangedMessages(user, name, since.MessageModSeq)
		if err != nil {
			return err
		}
		var added int
		out.Messages, added = toIMAPChanges(changed, since.LastUID)
		if since.Count == 0 {
			return nil // nothing known, so nothing can be gone
		}
		count, err := tx.CountMessages(user, name)
		if err != nil {
			return err
		}
		// Without expunges the count is what the view had plus what is
		// new; any difference means some known UIDs are gone.
		if int(count) != since.Count+added {
			out.UIDs, err = tx.MessageUIDs(user, name)
			out.Listed = true
		}
		return err
	})
	if err != nil {
		return nil, mailboxErr(err, "read changes of", user, name)
	}
	return &out, nil
}

func (b imapBackend) Bodies(ctx context.Context, user, mailbox string, uids []uint32) (map[uint32][]byte, error) {
	var msgs []store.Message
	err := b.s.st.View(ctx, func(tx store.Tx) error {
		var err error
		msgs, err = tx.MessagesData(user, mailbox, uids)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read messages of %s/%s: %w", user, mailbox, err)
	}
	out := make(map[uint32][]byte, len(msgs))
	for _, m := range msgs {
		out[m.UID] = m.Data
	}
	return out, nil
}

var flagOps = map[imapserver.FlagOp]store.FlagOp{
	imapserver.FlagsSet:    store.FlagsSet,
	imapserver.FlagsAdd:    store.FlagsAdd,
	imapserver.FlagsRemove: store.FlagsRemove,
}

func (b imapBackend) StoreFlags(ctx context.Context, user, mailbox string, uids []uint32, op imapserver.FlagOp, flags []string) ([]imapserver.Message, error) {
	sop, ok := flagOps[op]
	if !ok {
		return nil, fmt.Errorf("store flags: unknown operation %d", op)
	}
	var changed []store.Message
	err := b.s.st.Update(ctx, func(tx store.Tx) error {
		var err error
		changed, err = tx.ChangeFlags(user, mailbox, uids, sop, flags)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store flags in %s/%s: %w", user, mailbox, err)
	}
	out := make([]imapserver.Message, len(changed))
	for i := range changed {
		out[i] = toIMAPMessage(&changed[i])
	}
	return out, nil
}

// Expunge checks \Deleted inside the transaction: a flag another session
// removed after this one last refreshed keeps the message.
func (b imapBackend) Expunge(ctx context.Context, user, mailbox string, uids []uint32) ([]uint32, error) {
	var gone []uint32
	err := b.s.st.Update(ctx, func(tx store.Tx) error {
		msgs, err := tx.Messages(user, mailbox)
		if err != nil {
			return err
		}
		asked := make(map[uint32]bool, len(uids))
		for _, u := range uids {
			asked[u] = true
		}
		gone = gone[:0]
		for _, m := range msgs {
			if asked[m.UID] && slices.Contains(m.Flags, `\Deleted`) {
				gone = append(gone, m.UID)
			}
		}
		if len(gone) == 0 {
			return nil
		}
		return tx.Expunge(user, mailbox, gone)
	})
	if err != nil {
		return nil, fmt.Errorf("expunge %s/%s: %w", user, mailbox, err)
	}
	return gone, nil
}

func (b imapBackend) Copy(ctx context.Context, user, from, to string, uids []uint32, move bool) (*imapserver.CopyResult, error) {
	var out imapserver.CopyResult
	err := b.s.st.Update(ctx, func(tx store.Tx) error {
		dst, err := tx.Mailbox(user, to)
		if err != nil {
			return err
		}
		out.UIDValidity = dst.UIDValidity
		out.Source, out.Dest, err = tx.CopyMessages(user, from, to, uids, move)
		return err
	})
	if err != nil {
		return nil, mailboxErr(err, "copy to", user, to)
	}
	return &out, nil
}

// Subscribe forwards the hub's mail and credential events. The hub never
// blocks a committing writer; this forwarder may block on the server, and
// what the hub drops meanwhile is reported as one EventLagged.
func (b imapBackend) Subscribe(ctx context.Context) <-chan imapserver.Event {
	mail := b.s.hub.Subscribe("", store.EventMail)
	creds := b.s.hub.Subscribe("", EventCredentials)
	out := make(chan imapserver.Event, 64)
	go func() {
		defer mail.Close()
		defer creds.Close()
		for {
			var ev imapserver.Event
			select {
			case <-ctx.Done():
				return
			case e := <-mail.C:
				if e.Kind == store.EventResync {
					mail.Lagged() // the resync says it already
					ev = imapserver.Event{Kind: imapserver.EventLagged}
					break
				}
				ev = imapserver.Event{Kind: imapserver.EventMailbox, User: e.User, Mailbox: e.Name}
				if mail.Lagged() {
					select {
					case out <- imapserver.Event{Kind: imapserver.EventLagged}:
					case <-ctx.Done():
						return
					}
				}
			case e := <-creds.C:
				if e.Kind == store.EventResync {
					continue // no user to revoke; the mail subscription reports the resync
				}
				ev = imapserver.Event{Kind: imapserver.EventCredentials, User: e.User}
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

func (b imapBackend) Limits() imapserver.Limits {
	l := b.s.Config().Limits
	return imapserver.Limits{
		ConnsPerUser:       l.IMAPConnsPerUser,
		LiteralBytes:       l.IMAPLiteralBytes,
		KeywordsPerMessage: l.IMAPKeywordsPerMessage,
		KeywordsPerMailbox: l.IMAPKeywordsPerMailbox,
		KeywordBytes:       l.IMAPKeywordBytes,
	}
}

func (b imapBackend) Registerer() prometheus.Registerer { return b.s.metrics.Registry }
