package imapserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeBackend is the smallest Backend: one user (alice, password "pw") and
// her mailboxes in memory, no events. The wrapper's tests run on it, and
// TestOnFakeBackend shows the server needs nothing of the core but this.
type fakeBackend struct {
	down   atomic.Bool // the store is unreachable: every call fails
	mu     sync.Mutex
	limits Limits
	modseq int64
	boxes  map[string]*fakeBox
}

type fakeBox struct {
	mb   Mailbox
	msgs []Message
	data map[uint32][]byte
}

func newFakeBackend(limits Limits) *fakeBackend {
	return &fakeBackend{limits: limits, boxes: map[string]*fakeBox{}}
}

// deliver appends a message to a mailbox, as the core does for a
// notification.
func (f *fakeBackend) deliver(name string, data []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b := f.boxes[name]
	f.modseq++
	uid := b.mb.UIDNext
	b.mb.UIDNext++
	b.mb.ModSeq = f.modseq
	b.msgs = append(b.msgs, Message{UID: uid, Size: int64(len(data)), InternalDate: time.Unix(1e9, 0), ModSeq: f.modseq})
	b.data[uid] = data
}

// lock locks the backend and returns a mailbox; on error it is unlocked.
func (f *fakeBackend) lock(name string) (*fakeBox, error) {
	f.mu.Lock()
	if b := f.boxes[name]; b != nil {
		return b, nil
	}
	f.mu.Unlock()
	return nil, ErrNoMailbox
}

func (f *fakeBackend) Authenticate(_ context.Context, username, password, _ string) (string, error) {
	if f.down.Load() {
		return "", errors.New("read user: store unreachable")
	}
	if username != "alice" || password != "pw" {
		return "", ErrBadCredentials
	}
	return username, nil
}

func (f *fakeBackend) EnsureMailboxes(_ context.Context, _ string, want []MailboxSpec) error {
	if f.down.Load() {
		return errors.New("create mailboxes: store unreachable")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, w := range want {
		if f.boxes[w.Name] == nil {
			f.boxes[w.Name] = &fakeBox{mb: Mailbox{Name: w.Name, SpecialUse: w.SpecialUse, UIDValidity: 1, UIDNext: 1},
				data: map[uint32][]byte{}}
		}
	}
	return nil
}

func (f *fakeBackend) Mailboxes(context.Context, string) ([]Mailbox, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Mailbox
	for _, b := range f.boxes {
		out = append(out, b.mb)
	}
	return out, nil
}

func (f *fakeBackend) Mailbox(_ context.Context, _, name string) (*Mailbox, error) {
	st, err := f.Status(context.Background(), "", name)
	if err != nil {
		return nil, err
	}
	return &st.Mailbox, nil
}

func (f *fakeBackend) Status(_ context.Context, _, name string) (*MailboxStatus, error) {
	b, err := f.lock(name)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	return &MailboxStatus{Mailbox: b.mb, Messages: uint32(len(b.msgs))}, nil
}

// Changes always lists every UID, which is allowed and simplest.
func (f *fakeBackend) Changes(_ context.Context, _, name string, since View) (*Changes, error) {
	b, err := f.lock(name)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	out := &Changes{Mailbox: b.mb, Listed: true}
	for _, m := range b.msgs {
		out.UIDs = append(out.UIDs, m.UID)
		if m.ModSeq > since.MessageModSeq {
			m.Flags = slices.Clone(m.Flags)
			out.Messages = append(out.Messages, m)
		}
	}
	return out, nil
}

func (f *fakeBackend) Bodies(_ context.Context, _, name string, uids []uint32) (map[uint32][]byte, error) {
	b, err := f.lock(name)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	out := map[uint32][]byte{}
	for _, u := range uids {
		if d, ok := b.data[u]; ok {
			out[u] = d
		}
	}
	return out, nil
}

func (f *fakeBackend) StoreFlags(_ context.Context, _, name string, uids []uint32, op FlagOp, flags []string) ([]Message, error) {
	b, err := f.lock(name)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	var changed []Message
	for i := range b.msgs {
		m := &b.msgs[i]
		if !slices.Contains(uids, m.UID) {
			continue
		}
		next := slices.Clone(flags)
		switch op {
		case FlagsAdd:
			next = append(slices.Clone(m.Flags), flags...)
		case FlagsRemove:
			next = slices.DeleteFunc(slices.Clone(m.Flags), func(g string) bool { return slices.Contains(flags, g) })
		}
		slices.Sort(next)
		next = slices.Compact(next)
		if slices.Equal(next, m.Flags) {
			continue
		}
		f.modseq++
		m.Flags, m.ModSeq, b.mb.ModSeq = next, f.modseq, f.modseq
		changed = append(changed, *m)
	}
	return changed, nil
}

func (f *fakeBackend) Expunge(_ context.Context, _, name string, uids []uint32) ([]uint32, error) {
	b, err := f.lock(name)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	var gone []uint32
	b.msgs = slices.DeleteFunc(b.msgs, func(m Message) bool {
		del := slices.Contains(uids, m.UID) && slices.Contains(m.Flags, `\Deleted`)
		if del {
			gone = append(gone, m.UID)
		}
		return del
	})
	if len(gone) > 0 {
		f.modseq++
		b.mb.ModSeq = f.modseq
	}
	return gone, nil
}

func (f *fakeBackend) Copy(_ context.Context, _, from, to string, uids []uint32, move bool) (*CopyResult, error) {
	src, err := f.lock(from)
	if err != nil {
		return nil, err
	}
	defer f.mu.Unlock()
	dst := f.boxes[to]
	if dst == nil {
		return nil, ErrNoMailbox
	}
	f.modseq++
	out := &CopyResult{UIDValidity: dst.mb.UIDValidity}
	var keep []Message
	for _, m := range src.msgs {
		if !slices.Contains(uids, m.UID) || !move {
			keep = append(keep, m)
		}
		if slices.Contains(uids, m.UID) {
			n := m
			n.UID, n.ModSeq = dst.mb.UIDNext, f.modseq
			dst.mb.UIDNext++
			dst.msgs = append(dst.msgs, n)
			dst.data[n.UID] = src.data[m.UID]
			out.Source, out.Dest = append(out.Source, m.UID), append(out.Dest, n.UID)
		}
	}
	src.msgs = keep
	src.mb.ModSeq, dst.mb.ModSeq = f.modseq, f.modseq
	return out, nil
}

func (f *fakeBackend) Subscribe(context.Context) <-chan Event { return make(chan Event) }

func (f *fakeBackend) Limits() Limits { return f.limits }

func (f *fakeBackend) Registerer() prometheus.Registerer { return prometheus.NewRegistry() }

var _ Backend = (*fakeBackend)(nil)

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// serveFake serves a fake backend on a loopback port until the test ends.
func serveFake(t *testing.T) (*fakeBackend, string) {
	t.Helper()
	fb := newFakeBackend(Limits{})
	srv := New(fb, Options{Logger: discardLogger()})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return fb, ln.Addr().String()
}

// TestOnFakeBackend runs a mail client's round on the fake: login, LIST,
// SELECT, FETCH of the body (which sets \Seen through the backend), STORE
// and EXPUNGE; every write reaches the backend and nothing else.
func TestOnFakeBackend(t *testing.T) {
	t.Parallel()
	fb, addr := serveFake(t)
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "wrong").Wait(); err == nil {
		t.Fatal("LOGIN with a wrong password succeeded")
	}
	if err := c.Login("alice", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	fb.deliver(Inbox, []byte("Subject: hello\r\n\r\nbody\r\n"))
	list, err := c.List("", "*", nil).Collect()
	if err != nil || len(list) != 2 || list[0].Mailbox != Inbox {
		t.Fatalf("LIST = %+v, %v; want INBOX and Trash", list, err)
	}
	sel, err := c.Select(Inbox, nil).Wait()
	if err != nil || sel.NumMessages != 1 {
		t.Fatalf("SELECT = %+v, %v; want 1 message", sel, err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect()
	if err != nil || len(msgs) != 1 {
		t.Fatalf("FETCH: %v, %v", msgs, err)
	}
	if body := string(msgs[0].FindBodySection(&imap.FetchItemBodySection{})); !strings.Contains(body, "body") {
		t.Errorf("body %q", body)
	}
	if !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("flags after a body fetch = %v, want \\Seen", msgs[0].Flags)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	st, _ := fb.Status(context.Background(), "alice", Inbox)
	if st.Messages != 0 {
		t.Errorf("the backend still holds %d messages after EXPUNGE", st.Messages)
	}
}

// TestLoginWhileStoreUnavailable: a login the core cannot check because its
// store is away is a temporary failure (NO [UNAVAILABLE], RFC 5530), not a
// server bug, and the connection stays usable for a retry.
func TestLoginWhileStoreUnavailable(t *testing.T) {
	t.Parallel()
	fb, addr := serveFake(t)
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	fb.down.Store(true)
	err = c.Login("alice", "pw").Wait()
	var ie *imap.Error
	if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeUnavailable {
		t.Fatalf("LOGIN while the store is away: %v, want NO [UNAVAILABLE]", err)
	}
	fb.down.Store(false)
	if err := c.Login("alice", "pw").Wait(); err != nil {
		t.Fatalf("LOGIN once the store is back: %v", err)
	}
}
