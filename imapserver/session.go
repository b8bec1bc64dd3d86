package imapserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-sasl"
)

// session is one IMAP connection's state above the wire: who is logged in
// and which mailbox is selected. go-imap calls its methods from the
// connection's goroutine, except Idle, which runs on its own.
type session struct {
	srv      *Server
	c        *conn
	gc       *goimapserver.Conn
	log      *slog.Logger
	user     string
	released bool // the user's connection slot was given back
	failures int
	// sel is the selected mailbox. Atomic because Idle runs on its own
	// goroutine, which go-imap may not wait for when a client hangs up
	// mid-IDLE while Close runs.
	sel atomic.Pointer[selection]
}

var (
	_ goimapserver.Session          = (*session)(nil)
	_ goimapserver.SessionNamespace = (*session)(nil)
	_ goimapserver.SessionMove      = (*session)(nil)
	_ goimapserver.SessionSASL      = (*session)(nil)
)

// selection is a session's view of its selected mailbox.
type selection struct {
	st       *mailboxState
	tracker  *goimapserver.SessionTracker
	notify   chan struct{} // woken after updates are queued on tracker
	readOnly bool
}

func (w *selection) wake() {
	select {
	case w.notify <- struct{}{}:
	default: // a wake-up is already pending; one poll drains everything
	}
}

// systemFlags are the flags SELECT announces, in canonical case (some
// clients compare case-sensitively).
var systemFlags = []imap.Flag{imap.FlagSeen, imap.FlagAnswered, imap.FlagFlagged, imap.FlagDeleted, imap.FlagDraft}

// mailboxes every user has; created at first login.
var userMailboxes = []MailboxSpec{
	{Name: Inbox},
	{Name: Trash, SpecialUse: string(imap.MailboxAttrTrash)},
}

func (s *Server) newSession(gc *goimapserver.Conn) (goimapserver.Session, *goimapserver.GreetingData, error) {
	c, ok := gc.NetConn().(*conn)
	if !ok {
		return nil, nil, errors.New("imap: connection was not accepted by duebridge's listener")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	s.sessions.Add(1)
	sess := &session{srv: s, c: c, gc: gc, log: s.log.With("remote", c.RemoteAddr().String())}
	c.onLogout = sess.release
	return sess, nil, nil
}

func (s *session) ctx() context.Context { return s.srv.ctx }
func (s *session) backend() Backend     { return s.srv.backend }

func (s *session) Close() error {
	if s.sel.Load() != nil {
		s.Unselect()
	}
	s.release()
	s.srv.sessions.Done()
	return nil
}

// release gives back the user's connection slot, at LOGOUT or at Close,
// whichever comes first. Both run on the connection's goroutine.
func (s *session) release() {
	if s.user != "" && !s.released {
		s.released = true
		s.srv.releaseUserConn(s.user, s)
		s.srv.metrics.sessions.Dec()
	}
}

// AuthenticateMechanisms and Authenticate serve AUTHENTICATE PLAIN. They
// exist so that a connection without TLS is refused before go-imap's "+"
// prompt, which would invite the password in clear.
func (s *session) AuthenticateMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Authenticate(mech string) (sasl.Server, error) {
	if s.srv.opts.TLSConfig != nil && !s.c.TLS() {
		return nil, errTLSRequired
	}
	if !strings.EqualFold(mech, sasl.Plain) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Only AUTHENTICATE PLAIN is supported"}
	}
	return sasl.NewPlainServer(func(identity, username, password string) error {
		if identity != "" && identity != username {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthorizationFailed,
				Text: "Logging in as another user is not supported"}
		}
		return s.Login(username, password)
	}), nil
}

var errTLSRequired = &imap.Error{
	Type: imap.StatusResponseTypeNo,
	Code: imap.ResponseCodePrivacyRequired,
	Text: "TLS is required to log in: use port 993 or STARTTLS",
}

// errUnavailable answers a login the core could not check or complete
// because its store is away (a replica during a database restart): a
// temporary failure the client retries (RFC 5530), not a server bug.
var errUnavailable = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
	Text: "The mail store is unavailable; try again shortly"}

func (s *session) Login(username, password string) error {
	if s.srv.opts.TLSConfig != nil && !s.c.TLS() {
		return errTLSRequired
	}
	// The core delays failures (more with each recent one, per user name and
	// per client address) and locks out guessing; it blocks only this
	// connection.
	user, err := s.backend().Authenticate(s.ctx(), username, password, s.c.RemoteAddr().String())
	if errors.Is(err, ErrBadCredentials) || errors.Is(err, ErrLockedOut) {
		s.failures++
		if s.failures >= s.srv.opts.MaxLoginFailures {
			s.gc.Bye("Too many failed logins")
		}
		if errors.Is(err, ErrLockedOut) {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed,
				Text: "Too many failed logins; try again later"}
		}
		return goimapserver.ErrAuthFailed
	}
	if err != nil {
		s.log.Error("login not checked: the store is unavailable", "user", username, "err", err)
		return errUnavailable
	}
	if !s.srv.acquireUserConn(user, s) {
		s.srv.metrics.limited.Inc()
		s.log.Warn("imap connection limit reached", "user", user, "limit", s.backend().Limits().ConnsPerUser)
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit,
			Text: "Too many connections for this user; close another mail client or device"}
	}
	if err := s.backend().EnsureMailboxes(s.ctx(), user, userMailboxes); err != nil {
		s.srv.releaseUserConn(user, s)
		s.log.Error("login not completed: the store is unavailable", "user", user, "err", err)
		return errUnavailable
	}
	s.user = user
	s.log = s.log.With("user", user)
	s.c.setAuthenticated()
	s.srv.metrics.sessions.Inc()
	s.log.Info("imap login", "tls", s.c.TLS(), "client", s.c.clientID)
	return nil
}

// mailboxName maps a client's name to ours: INBOX is case-insensitive.
func mailboxName(name string) string {
	if strings.EqualFold(name, Inbox) {
		return Inbox
	}
	return name
}

var errNoMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNonExistent, Text: "No such mailbox"}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	name = mailboxName(name)
	st, err := s.srv.reg.acquire(s.ctx(), s.user, name)
	if errors.Is(err, ErrNoMailbox) {
		return nil, errNoMailbox
	}
	if err != nil {
		return nil, err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	// Refresh first so that the numbers below and the tracker agree: every
	// change after this point reaches the new session through the tracker.
	if _, err := st.refreshLocked(s.ctx(), s.backend(), nil); err != nil {
		s.srv.reg.release(st)
		return nil, err
	}
	sel := &selection{st: st, tracker: st.tracker.NewSession(), notify: make(chan struct{}, 1), readOnly: options.ReadOnly}
	st.watchers[sel] = struct{}{}
	s.sel.Store(sel)
	var firstUnseen uint32
	for i, m := range st.msgs {
		if !slices.Contains(m.flags, imap.FlagSeen) {
			firstUnseen = uint32(i + 1)
			break
		}
	}
	// "\*" only while new keywords may still be made (RFC 3501 7.1).
	permanent := st.flagList()
	if lim := s.backend().Limits().KeywordsPerMailbox; lim <= 0 || len(st.keywords) < lim {
		permanent = append(permanent, imap.FlagWildcard)
	}
	return &imap.SelectData{
		Flags:             st.flagList(),
		PermanentFlags:    permanent,
		NumMessages:       uint32(len(st.msgs)),
		FirstUnseenSeqNum: firstUnseen,
		UIDNext:           imap.UID(st.uidNext),
		UIDValidity:       st.uidValidity,
	}, nil
}

func (s *session) Unselect() error {
	sel := s.sel.Swap(nil)
	if sel == nil {
		return nil
	}
	sel.st.mu.Lock()
	delete(sel.st.watchers, sel)
	sel.tracker.Close()
	sel.st.mu.Unlock()
	s.srv.reg.release(sel.st)
	return nil
}

var errFixedMailboxes = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "duebridge has a fixed set of mailboxes (INBOX and Trash)"}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	if _, err := s.mailbox(mailboxName(name)); err == nil {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAlreadyExists, Text: "Mailbox already exists"}
	}
	return errFixedMailboxes
}

func (s *session) Delete(name string) error { return errFixedMailboxes }

func (s *session) Rename(name, newName string, options *imap.RenameOptions) error {
	return errFixedMailboxes
}

// Subscribe and Unsubscribe succeed on existing mailboxes: all of them are
// always subscribed, and clients that subscribe before using a mailbox
// should not fail.
func (s *session) Subscribe(name string) error {
	_, err := s.mailbox(mailboxName(name))
	return err
}

func (s *session) Unsubscribe(name string) error {
	_, err := s.mailbox(mailboxName(name))
	return err
}

func (s *session) mailbox(name string) (*Mailbox, error) {
	mb, err := s.backend().Mailbox(s.ctx(), s.user, name)
	if errors.Is(err, ErrNoMailbox) {
		return nil, errNoMailbox
	}
	return mb, err
}

func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: '/'}}}, nil
}

func (s *session) List(w *goimapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter and root.
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: '/'})
	}
	mbs, err := s.backend().Mailboxes(s.ctx(), s.user)
	if err != nil {
		return fmt.Errorf("list mailboxes: %w", err)
	}
	// INBOX first, as clients expect.
	slices.SortStableFunc(mbs, func(a, b Mailbox) int {
		switch {
		case a.Name == Inbox && b.Name != Inbox:
			return -1
		case b.Name == Inbox && a.Name != Inbox:
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, mb := range mbs {
		if !slices.ContainsFunc(patterns, func(p string) bool { return listMatch(mb.Name, ref, p) }) {
			continue
		}
		if options.SelectSpecialUse && mb.SpecialUse == "" {
			continue
		}
		data := &imap.ListData{Mailbox: mb.Name, Delim: '/', Attrs: []imap.MailboxAttr{imap.MailboxAttrHasNoChildren}}
		// Special-use attributes go out on every LIST, not only with
		// RETURN (SPECIAL-USE): clients that never ask still find Trash.
		if mb.SpecialUse != "" {
			data.Attrs = append(data.Attrs, imap.MailboxAttr(mb.SpecialUse))
		}
		if options.SelectSubscribed || options.ReturnSubscribed {
			data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
		}
		if options.ReturnStatus != nil {
			if data.Status, err = s.status(mb.Name, options.ReturnStatus); err != nil {
				return err
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// listMatch is go-imap's MatchList with INBOX matched case-insensitively.
func listMatch(name, ref, pattern string) bool {
	if name == Inbox && ref == "" && strings.EqualFold(pattern, Inbox) {
		return true
	}
	return goimapserver.MatchList(name, '/', ref, pattern)
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	return s.status(mailboxName(name), options)
}

func (s *session) status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	stats, err := s.backend().Status(s.ctx(), s.user, name)
	if errors.Is(err, ErrNoMailbox) {
		return nil, errNoMailbox
	}
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", name, err)
	}
	zero := uint32(0)
	var zero64 int64
	// go-imap writes every requested item and dereferences its pointer, so
	// each requested one gets a value.
	data := &imap.StatusData{Mailbox: stats.Name, UIDNext: imap.UID(stats.UIDNext), UIDValidity: stats.UIDValidity}
	if options.NumMessages {
		data.NumMessages = &stats.Messages
	}
	if options.NumUnseen {
		data.NumUnseen = &stats.Unseen
	}
	if options.NumDeleted {
		data.NumDeleted = &stats.Deleted
	}
	if options.Size {
		data.Size = &stats.Size
	}
	if options.NumRecent {
		data.NumRecent = &zero
	}
	if options.DeletedStorage {
		data.DeletedStorage = &zero64
	}
	return data, nil
}

var errReadOnlyAppend = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot,
	Text: "duebridge mailboxes only receive notifications; nothing can be appended"}

func (s *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	return nil, errReadOnlyAppend
}

func (s *session) Poll(w *goimapserver.UpdateWriter, allowExpunge bool) error {
	sel := s.sel.Load()
	if sel == nil {
		return nil
	}
	return sel.tracker.Poll(w, allowExpunge)
}

// Idle writes updates until stop. It polls first and then after every
// wake-up, so an update queued between DONE and this IDLE is announced at
// once (go-imap's SessionTracker.Idle only reacts to updates queued while
// it runs).
func (s *session) Idle(w *goimapserver.UpdateWriter, stop <-chan struct{}) error {
	s.srv.metrics.idling.Inc()
	defer s.srv.metrics.idling.Dec()
	sel := s.sel.Load()
	if sel == nil {
		<-stop
		return nil
	}
	for {
		if err := sel.tracker.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-sel.notify:
		case <-stop:
			return nil
		}
	}
}

// errReadOnly carries no response code: READ-ONLY is defined for the
// SELECT/EXAMINE answer only, and strict parsers (iOS) should not meet it
// elsewhere.
var errReadOnly = &imap.Error{Type: imap.StatusResponseTypeNo, Text: "Mailbox is read-only (EXAMINE)"}

// Expunge removes the messages flagged \Deleted (of uids, if given). The
// session learns of its own expunges like any other: through its tracker,
// which the library polls before the tagged OK.
func (s *session) Expunge(w *goimapserver.ExpungeWriter, uids *imap.UIDSet) error {
	sel := s.sel.Load()
	if sel.readOnly {
		// CLOSE on an EXAMINEd mailbox also lands here and must not fail.
		return nil
	}
	st := sel.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, err := st.refreshLocked(s.ctx(), s.backend(), nil); err != nil {
		return err
	}
	var deleted []uint32
	for _, m := range st.msgs {
		if slices.Contains(m.flags, imap.FlagDeleted) && (uids == nil || uids.Contains(m.uid)) {
			deleted = append(deleted, uint32(m.uid))
		}
	}
	if len(deleted) == 0 {
		return nil
	}
	// The backend expunges those still \Deleted when it commits.
	if _, err := s.backend().Expunge(s.ctx(), s.user, st.key.name, deleted); err != nil {
		return fmt.Errorf("expunge: %w", err)
	}
	_, err := st.refreshLocked(s.ctx(), s.backend(), nil)
	return err
}

func (s *session) Store(w *goimapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	sel := s.sel.Load()
	if sel.readOnly {
		return errReadOnly
	}
	var op FlagOp
	switch flags.Op {
	case imap.StoreFlagsSet:
		op = FlagsSet
	case imap.StoreFlagsAdd:
		op = FlagsAdd
	case imap.StoreFlagsDel:
		op = FlagsRemove
	default:
		return fmt.Errorf("store: unknown operation %v", flags.Op)
	}
	var names []string
	for _, f := range flags.Flags {
		if strings.EqualFold(string(f), `\Recent`) {
			continue // session-only, never stored
		}
		names = append(names, string(f))
	}
	st := sel.st
	st.mu.Lock()
	if _, err := st.refreshLocked(s.ctx(), s.backend(), nil); err != nil {
		st.mu.Unlock()
		return err
	}
	items := sel.resolve(numSet)
	if kerr := checkKeywords(s.backend().Limits(), st, items, op, names); kerr != nil {
		st.mu.Unlock()
		s.srv.metrics.keywordLimit.WithLabelValues(kerr.limit).Inc()
		return kerr.resp
	}
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = uint32(it.meta.uid)
	}
	_, err := s.backend().StoreFlags(s.ctx(), s.user, st.key.name, uids, op, names)
	if err == nil {
		// This session answers below; the others hear of it from the
		// tracker.
		_, err = st.refreshLocked(s.ctx(), s.backend(), sel.tracker)
	}
	for i := range items {
		if idx := st.index(items[i].meta.uid); idx >= 0 {
			items[i].meta = st.msgs[idx]
		} else {
			items[i].seq = 0
		}
	}
	st.mu.Unlock()
	if err != nil {
		return fmt.Errorf("store flags: %w", err)
	}
	if flags.Silent {
		return nil
	}
	_, isUID := numSet.(imap.UIDSet)
	for _, it := range items {
		if it.seq == 0 {
			continue
		}
		rw := w.CreateMessage(it.seq)
		if isUID {
			rw.WriteUID(it.meta.uid)
		}
		rw.WriteFlags(it.meta.flags)
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

var errTryCreate = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTryCreate, Text: "No such mailbox"}

var errSameMailbox = &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeCannot, Text: "Source and destination are the same mailbox"}

func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	return s.copy(numSet, dest, false)
}

// Move is how iOS Mail deletes (to Trash) and undeletes (back to INBOX).
// COPYUID goes out first, then the library polls the expunges this queued.
func (s *session) Move(w *goimapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	if sel := s.sel.Load(); sel == nil || sel.readOnly {
		return errReadOnly
	}
	data, err := s.copy(numSet, dest, true)
	if err != nil {
		return err
	}
	if data == nil {
		return nil
	}
	return w.WriteCopyData(data)
}

func (s *session) copy(numSet imap.NumSet, dest string, move bool) (*imap.CopyData, error) {
	dest = mailboxName(dest)
	sel := s.sel.Load()
	st := sel.st
	if dest == st.key.name {
		return nil, errSameMailbox
	}
	if _, err := s.mailbox(dest); err != nil {
		return nil, errTryCreate
	}
	// Only the source is locked: the destination learns of the new messages
	// through the store event, and locking both could deadlock two sessions
	// moving in opposite directions.
	st.mu.Lock()
	defer st.mu.Unlock()
	if _, err := st.refreshLocked(s.ctx(), s.backend(), nil); err != nil {
		return nil, err
	}
	items := sel.resolve(numSet)
	if len(items) == 0 {
		return nil, nil
	}
	uids := make([]uint32, len(items))
	for i, it := range items {
		uids[i] = uint32(it.meta.uid)
	}
	res, err := s.backend().Copy(s.ctx(), s.user, st.key.name, dest, uids, move)
	if errors.Is(err, ErrNoMailbox) {
		return nil, errTryCreate
	}
	if err != nil {
		return nil, fmt.Errorf("copy to %s: %w", dest, err)
	}
	if move {
		if _, err := st.refreshLocked(s.ctx(), s.backend(), nil); err != nil {
			return nil, err
		}
	}
	if len(res.Source) == 0 {
		return nil, nil
	}
	var srcSet, dstSet imap.UIDSet
	for i := range res.Source {
		srcSet.AddNum(imap.UID(res.Source[i]))
		dstSet.AddNum(imap.UID(res.Dest[i]))
	}
	return &imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: srcSet, DestUIDs: dstSet}, nil
}

// item is one message of a command's set: the client's sequence number for
// it and its metadata.
type item struct {
	seq  uint32
	meta msgMeta
}

// resolve returns the messages of numSet as the client numbers them, in
// order. Messages the client has not been told about yet (their EXISTS is
// still queued) are left out. Call with st.mu held.
func (sel *selection) resolve(numSet imap.NumSet) []item {
	st := sel.st
	var out []item
	switch set := numSet.(type) {
	case imap.SeqSet:
		seqs := make([]uint32, len(st.msgs))
		var maxSeq uint32
		for i := range st.msgs {
			seqs[i] = sel.tracker.EncodeSeqNum(uint32(i + 1))
			maxSeq = max(maxSeq, seqs[i])
		}
		set = staticSeqSet(set, maxSeq)
		for i, seq := range seqs {
			if seq != 0 && set.Contains(seq) {
				out = append(out, item{seq: seq, meta: st.msgs[i]})
			}
		}
	case imap.UIDSet:
		if imap.IsSearchRes(set) {
			return nil // SEARCHRES is not offered
		}
		var maxUID imap.UID
		if n := len(st.msgs); n > 0 {
			maxUID = st.msgs[n-1].uid
		}
		set = staticUIDSet(set, maxUID)
		for i := range st.msgs {
			if !set.Contains(st.msgs[i].uid) {
				continue
			}
			if seq := sel.tracker.EncodeSeqNum(uint32(i + 1)); seq != 0 {
				out = append(out, item{seq: seq, meta: st.msgs[i]})
			}
		}
	}
	return out
}

// staticSeqSet replaces "*" (0) with the largest number; "n:*" with n above
// it still means the last message (RFC 9051 6.4.8). The ranges are added
// anew: a swapped "n:*" no longer sorts where it stood, and Contains
// searches a sorted set.
func staticSeqSet(set imap.SeqSet, max uint32) imap.SeqSet {
	var out imap.SeqSet
	for _, r := range set {
		start, stop := r.Start, r.Stop
		staticRange(&start, &stop, max)
		out.AddRange(start, stop)
	}
	return out
}

func staticUIDSet(set imap.UIDSet, max imap.UID) imap.UIDSet {
	var out imap.UIDSet
	for _, r := range set {
		start, stop := uint32(r.Start), uint32(r.Stop)
		staticRange(&start, &stop, uint32(max))
		out.AddRange(imap.UID(start), imap.UID(stop))
	}
	return out
}

func staticRange(start, stop *uint32, max uint32) {
	if *start == 0 {
		*start = max
	}
	if *stop == 0 {
		*stop = max
	}
	if *start > *stop {
		*start, *stop = *stop, *start
	}
}
