package imapserver

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"
)

// mboxKey names one mailbox of one user.
type mboxKey struct{ user, name string }

// registry holds the mailboxes some session has selected. Each is loaded
// from the backend on first selection and dropped when its last session
// leaves; events for mailboxes nobody has open cost one map look-up.
type registry struct {
	srv *Server
	mu  sync.Mutex
	m   map[mboxKey]*mailboxState
}

func newRegistry(srv *Server) *registry {
	return &registry{srv: srv, m: map[mboxKey]*mailboxState{}}
}

// mailboxState is the server's view of one open mailbox: the UIDs in order
// (their positions are the sequence numbers), their flags, and go-imap's
// MailboxTracker, which turns changes into each session's EXISTS, EXPUNGE
// and FETCH responses.
//
// Every change is applied under mu, in commit order, by refreshLocked, which
// reads what changed since the last refresh. That keeps the tracker's rules
// (counts never decrease; an expunged number exists) true by construction:
// breaking them panics inside go-imap.
type mailboxState struct {
	key  mboxKey
	refs int // registry.mu

	mu          sync.Mutex
	loadErr     error
	uidValidity uint32
	uidNext     uint32
	specialUse  string
	mboxModSeq  int64 // the mailbox row's MODSEQ at the last refresh
	msgModSeq   int64 // the highest message MODSEQ seen
	msgs        []msgMeta
	keywords    []imap.Flag // announced in FLAGS (keywords.go); only grows
	tracker     *goimapserver.MailboxTracker
	watchers    map[*selection]struct{}

	dirty   atomic.Bool // an event arrived since the last refresh began
	running atomic.Bool // a refresher goroutine owns the state
}

// msgMeta is what FETCH FLAGS/UID/RFC822.SIZE/INTERNALDATE and most of
// SEARCH need, without asking the backend.
type msgMeta struct {
	uid   imap.UID
	flags []imap.Flag
	size  int64
	date  time.Time
}

// acquire returns the loaded state of a mailbox, loading it if no session
// has it open. ErrNoMailbox if the user has no such mailbox.
func (r *registry) acquire(ctx context.Context, user, name string) (*mailboxState, error) {
	k := mboxKey{user, name}
	r.mu.Lock()
	st, ok := r.m[k]
	if !ok {
		st = &mailboxState{key: k, watchers: map[*selection]struct{}{}}
		// Locked before it is visible: events and other sessions wait for
		// the load instead of seeing an empty mailbox.
		st.mu.Lock()
		r.m[k] = st
	}
	st.refs++
	r.mu.Unlock()
	if !ok {
		st.loadErr = st.load(ctx, r.srv.backend)
		st.mu.Unlock()
	}
	st.mu.Lock()
	err := st.loadErr
	st.mu.Unlock()
	if err != nil {
		r.release(st)
		return nil, err
	}
	return st, nil
}

func (r *registry) release(st *mailboxState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st.refs--; st.refs == 0 {
		delete(r.m, st.key)
	}
}

func (r *registry) lookup(k mboxKey) *mailboxState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.m[k]
}

func (r *registry) all() []*mailboxState {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*mailboxState, 0, len(r.m))
	for _, st := range r.m {
		out = append(out, st)
	}
	return out
}

func (st *mailboxState) load(ctx context.Context, b Backend) error {
	ch, err := b.Changes(ctx, st.key.user, st.key.name, View{MailboxModSeq: -1})
	if err != nil {
		return fmt.Errorf("load mailbox %s/%s: %w", st.key.user, st.key.name, err)
	}
	mb := &ch.Mailbox
	st.uidValidity, st.uidNext, st.specialUse, st.mboxModSeq = mb.UIDValidity, mb.UIDNext, mb.SpecialUse, mb.ModSeq
	st.msgs = make([]msgMeta, len(ch.Messages))
	for i := range ch.Messages {
		st.msgs[i] = metaOf(&ch.Messages[i])
		st.msgModSeq = max(st.msgModSeq, ch.Messages[i].ModSeq)
		st.addKeywords(st.msgs[i].flags)
	}
	st.tracker = goimapserver.NewMailboxTracker(uint32(len(st.msgs)))
	return nil
}

func metaOf(m *Message) msgMeta {
	return msgMeta{uid: imap.UID(m.UID), flags: toFlags(m.Flags), size: m.Size, date: m.InternalDate}
}

func toFlags(fs []string) []imap.Flag {
	out := make([]imap.Flag, len(fs))
	for i, f := range fs {
		out[i] = imap.Flag(f)
	}
	return out
}

// index returns the position of uid, or -1.
func (st *mailboxState) index(uid imap.UID) int {
	i, ok := slices.BinarySearchFunc(st.msgs, uid, func(m msgMeta, u imap.UID) int {
		return cmpUID(m.uid, u)
	})
	if !ok {
		return -1
	}
	return i
}

func cmpUID(a, b imap.UID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// refreshLocked brings the state up to the backend's and queues what
// changed on the tracker: expunges (highest first), flag changes (not to
// source, the session that made them and answers for them itself), then new
// messages one EXISTS at a time (go-imap's sequence-number translation is
// only exact for steps of one). It reports whether anything changed.
func (st *mailboxState) refreshLocked(ctx context.Context, b Backend, source *goimapserver.SessionTracker) (bool, error) {
	var lastUID imap.UID
	if n := len(st.msgs); n > 0 {
		lastUID = st.msgs[n-1].uid
	}
	ch, err := b.Changes(ctx, st.key.user, st.key.name, View{
		MailboxModSeq: st.mboxModSeq, MessageModSeq: st.msgModSeq, Count: len(st.msgs), LastUID: uint32(lastUID)})
	if err != nil {
		return false, fmt.Errorf("refresh mailbox %s/%s: %w", st.key.user, st.key.name, err)
	}
	mb, changed, uids, listed := &ch.Mailbox, ch.Messages, ch.UIDs, ch.Listed
	if mb.ModSeq == st.mboxModSeq {
		return false, nil
	}
	any := false
	if listed {
		present := make(map[imap.UID]struct{}, len(uids))
		for _, u := range uids {
			present[imap.UID(u)] = struct{}{}
		}
		for i := len(st.msgs) - 1; i >= 0; i-- {
			if _, ok := present[st.msgs[i].uid]; ok {
				continue
			}
			st.tracker.QueueExpunge(uint32(i + 1))
			st.msgs = slices.Delete(st.msgs, i, i+1)
			any = true
		}
	}
	// New keywords are announced before the messages that carry them.
	grew := false
	for i := range changed {
		if st.addKeywords(toFlags(changed[i].Flags)) {
			grew = true
		}
	}
	if grew {
		st.tracker.QueueMailboxFlags(st.flagList())
		any = true
	}
	for i := range changed {
		m := &changed[i]
		st.msgModSeq = max(st.msgModSeq, m.ModSeq)
		uid := imap.UID(m.UID)
		if uid > lastUID {
			continue
		}
		idx := st.index(uid)
		if idx < 0 {
			// UIDs are allocated under the mailbox row's lock and only
			// grow, so an unknown UID below the last known one cannot
			// appear; if it did, inserting it would renumber the
			// clients' sequence numbers. It shows after a reselect.
			continue
		}
		flags := toFlags(m.Flags)
		if slices.Equal(flags, st.msgs[idx].flags) {
			continue
		}
		st.msgs[idx].flags = flags
		st.tracker.QueueMessageFlags(uint32(idx+1), uid, flags, source)
		any = true
	}
	for i := range changed {
		m := &changed[i]
		if imap.UID(m.UID) <= lastUID {
			continue
		}
		st.msgs = append(st.msgs, metaOf(m))
		st.tracker.QueueNumMessages(uint32(len(st.msgs)))
		any = true
	}
	st.mboxModSeq, st.uidNext = mb.ModSeq, mb.UIDNext
	if any {
		for w := range st.watchers {
			w.wake()
		}
	}
	return any, nil
}

// fanout turns the backend's events into refreshes of open mailboxes and
// ends the sessions of users whose credentials changed. It never blocks on
// a refresh: each mailbox gets at most one refresher at a time, and events
// arriving meanwhile only mark it dirty (a burst of commits costs one or
// two reads, not one each).
func (s *Server) fanout(events <-chan Event) {
	defer s.wg.Done()
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev := <-events:
			switch ev.Kind {
			case EventLagged:
				// Events were dropped: any open mailbox may have changed.
				for _, st := range s.reg.all() {
					s.markDirty(st)
				}
			case EventCredentials:
				s.revoke(ev.User)
			case EventMailbox:
				if st := s.reg.lookup(mboxKey{ev.User, ev.Mailbox}); st != nil {
					s.markDirty(st)
				}
			}
		}
	}
}

func (s *Server) markDirty(st *mailboxState) {
	st.dirty.Store(true)
	if st.running.CompareAndSwap(false, true) {
		s.metrics.refreshers.Inc()
		if !s.goTracked(func() { s.refresher(st) }) {
			st.running.Store(false)
		}
	}
}

func (s *Server) refresher(st *mailboxState) {
	defer s.metrics.refreshers.Dec()
	for {
		st.dirty.Store(false)
		s.refreshSafely(st)
		if st.dirty.Load() {
			continue
		}
		st.running.Store(false)
		// An event may have marked it dirty between the check and the
		// release; whoever wins the swap refreshes.
		if !st.dirty.Load() || !st.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// refreshSafely refreshes one mailbox for the event loop. A panic here would
// end the process (it is not a connection goroutine), so it is recovered,
// logged and counted.
func (s *Server) refreshSafely(st *mailboxState) {
	start := time.Now()
	// Beside the webhook's regions in `go tool trace`: the push's read and
	// the EXISTS it queues.
	defer trace.StartRegion(s.ctx, "imap.refresh").End()
	defer func() {
		if v := recover(); v != nil {
			s.metrics.panics.Inc()
			s.log.Error("imap mailbox refresh panicked", "user", st.key.user, "mailbox", st.key.name,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.loadErr != nil || st.tracker == nil {
		return
	}
	changed, err := st.refreshLocked(s.ctx, s.backend, nil)
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			s.log.Error("imap mailbox refresh", "user", st.key.user, "mailbox", st.key.name, "err", err)
		}
		return
	}
	if changed {
		s.metrics.pushSeconds.Observe(time.Since(start).Seconds())
	}
}
