package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// idler is one IMAP connection that logged in, selected INBOX and sits in
// IDLE, recording when each new message is announced (EXISTS).
type idler struct {
	user int
	c    *imapclient.Client
	idle *imapclient.IdleCommand

	mu        sync.Mutex
	count     uint32 // messages the server has announced
	base      uint32 // count when recording started
	recording bool
	arrivals  []time.Time // arrival of message base+1, base+2, ...
	onArrive  func()
}

// dialIdler connects, logs in as iOS Mail does (ID, LOGIN), selects INBOX
// and enters IDLE.
func dialIdler(ctx context.Context, addr string, user int, name, pass string, onArrive func()) (*idler, error) {
	d := &idler{user: user, onArrive: onArrive}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := idleSources.dial(dctx, addr)
	cancel()
	if err != nil {
		return nil, err
	}
	c := imapclient.New(conn, &imapclient.Options{
		UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(data *imapclient.UnilateralDataMailbox) {
				if data.NumMessages != nil {
					d.exists(*data.NumMessages)
				}
			},
		},
	})
	fail := func(err error) (*idler, error) {
		c.Close()
		return nil, err
	}
	if err := c.WaitGreeting(); err != nil {
		return fail(err)
	}
	if err := c.Login(name, pass).Wait(); err != nil {
		return fail(fmt.Errorf("LOGIN %s: %w", name, err))
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{}).Wait()
	if err != nil {
		return fail(fmt.Errorf("SELECT INBOX: %w", err))
	}
	d.mu.Lock()
	if sel.NumMessages > d.count {
		d.count = sel.NumMessages
	}
	d.mu.Unlock()
	d.c = c
	if d.idle, err = c.Idle(); err != nil {
		return fail(fmt.Errorf("IDLE: %w", err))
	}
	return d, nil
}

func (d *idler) exists(n uint32) {
	now := time.Now()
	d.mu.Lock()
	grew := n > d.count
	if grew && d.recording {
		for i := d.count; i < n; i++ {
			d.arrivals = append(d.arrivals, now)
		}
	}
	if grew {
		d.count = n
	}
	d.mu.Unlock()
	if grew && d.onArrive != nil {
		d.onArrive()
	}
}

// record starts counting arrivals from the current message count.
func (d *idler) record() {
	d.mu.Lock()
	d.base, d.recording, d.arrivals = d.count, true, nil
	d.mu.Unlock()
}

func (d *idler) stop() []time.Time {
	d.mu.Lock()
	d.recording = false
	a := d.arrivals
	d.mu.Unlock()
	return a
}

func (d *idler) close() {
	d.mu.Lock()
	idle := d.idle // nil once probe took the connection out of IDLE
	d.mu.Unlock()
	done := make(chan struct{})
	go func() {
		if idle != nil {
			idle.Close()
			idle.Wait()
		}
		d.c.Logout().Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	d.c.Close()
}

// openIdlers opens k connections spread round-robin over users, at most
// par at a time. It returns what it could open and the first error.
func openIdlers(ctx context.Context, addr string, k int, users []string, pass func(int) string, par int,
	progress func(done int), onArrive func()) ([]*idler, error) {
	out := make([]*idler, k)
	var next, done atomic.Int64
	var firstErr firstError
	var wg sync.WaitGroup
	for w := 0; w < par; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= k || ctx.Err() != nil {
					return
				}
				u := i % len(users)
				var d *idler
				var err error
				for attempt := 0; attempt < 3; attempt++ {
					if d, err = dialIdler(ctx, addr, u, users[u], pass(u), onArrive); err == nil {
						break
					}
					if strings.Contains(err.Error(), "too many") || strings.Contains(err.Error(), "LOGIN") {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					firstErr.set(err)
					continue
				}
				out[i] = d
				if n := done.Add(1); progress != nil && n%500 == 0 {
					progress(int(n))
				}
			}
		}()
	}
	wg.Wait()
	var opened []*idler
	for _, d := range out {
		if d != nil {
			opened = append(opened, d)
		}
	}
	// The other load processes wait for this one's count even when some
	// connections failed (the caller reports those).
	if err := idleBarrier.wait(ctx, len(opened)); err != nil {
		return opened, err
	}
	if e := firstErr.get(); e != nil {
		return opened, e
	}
	return opened, nil
}

// appender delivers messages by APPEND, the trigger against servers without
// duebridge's webhook (Dovecot). One connection per worker.
type appender struct {
	addr string
	pass func(int) string
	user []string
	mu   sync.Mutex
	pool map[int][]*imapclient.Client
}

func (a *appender) get(u int) (*imapclient.Client, error) {
	a.mu.Lock()
	if cs := a.pool[u]; len(cs) > 0 {
		c := cs[len(cs)-1]
		a.pool[u] = cs[:len(cs)-1]
		a.mu.Unlock()
		return c, nil
	}
	a.mu.Unlock()
	c, err := imapclient.DialInsecure(a.addr, nil)
	if err != nil {
		return nil, err
	}
	if err := c.Login(a.user[u], a.pass(u)).Wait(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (a *appender) put(u int, c *imapclient.Client) {
	a.mu.Lock()
	if a.pool == nil {
		a.pool = map[int][]*imapclient.Client{}
	}
	a.pool[u] = append(a.pool[u], c)
	a.mu.Unlock()
}

// deliver APPENDs one small message to user u's INBOX and returns when the
// server acknowledged it.
func (a *appender) deliver(u int, seq int64) error {
	c, err := a.get(u)
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("From: load@load.test\r\nTo: %s@load.test\r\nSubject: load %d\r\nMessage-ID: <load-%d@load.test>\r\n"+
		"Date: %s\r\nContent-Type: text/plain\r\n\r\nload test message %d\r\n",
		a.user[u], seq, seq, time.Now().Format(time.RFC1123Z), seq)
	cmd := c.Append("INBOX", int64(len(msg)), nil)
	if _, err := cmd.Write([]byte(msg)); err != nil {
		c.Close()
		return err
	}
	if err := cmd.Close(); err != nil {
		c.Close()
		return err
	}
	if _, err := cmd.Wait(); err != nil {
		c.Close()
		return err
	}
	a.put(u, c)
	return nil
}

func (a *appender) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, cs := range a.pool {
		for _, c := range cs {
			c.Logout().Wait()
			c.Close()
		}
	}
}

// pushAudit explains the expected EXISTS that the wait after the measured
// phase did not see, so that a lost announcement (the server's fault) is
// told apart from a miscount (the tool's) and a dead connection.
type pushAudit struct {
	Missing int // expected EXISTS not pushed by the end of the wait
	// Queued: shown by a NOOP, i.e. the server had them for the session
	// but never woke its IDLE.
	Queued int
	// Unpushed: in the mailbox (STATUS) though neither IDLE nor NOOP
	// announced them: the announcement never reached the mailbox's
	// refresher (a lost NOTIFY, a dropped event).
	Unpushed int
	// Absent: not in the mailbox at all: the trigger stored no message, so
	// the tool expected too many.
	Absent int
	// Dead: expected on connections that no longer answered.
	Dead int
}

// note is the report line for a, or "" if nothing was missing.
func (a pushAudit) note(wait time.Duration) string {
	if a.Missing == 0 {
		return ""
	}
	return fmt.Sprintf("%d expected EXISTS not pushed within %v of the last ack: %d then shown by NOOP (queued, IDLE not woken), "+
		"%d in the mailbox but never announced (lost announcement), %d not in the mailbox (trigger stored nothing), %d on dead connections",
		a.Missing, wait, a.Queued, a.Unpushed, a.Absent, a.Dead)
}

// auditPushes probes every connection that saw fewer new messages than
// expected(d), at most par at a time, and sorts its shortfall into a
// pushAudit. The probed connections leave IDLE and stop recording.
func auditPushes(idlers []*idler, expected func(*idler) int, par int, timeout time.Duration) pushAudit {
	var mu sync.Mutex
	var a pushAudit
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(par, 1))
	for _, d := range idlers {
		d.mu.Lock()
		short := expected(d) - len(d.arrivals)
		d.mu.Unlock()
		if short <= 0 {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			queued, untold, err := d.probe(timeout)
			mu.Lock()
			defer mu.Unlock()
			a.Missing += short
			if err != nil {
				a.Dead += short
				return
			}
			q := min(queued, short)
			u := min(max(untold, 0), short-q)
			a.Queued += q
			a.Unpushed += u
			a.Absent += short - q - u
		}()
	}
	wg.Wait()
	return a
}

// probe stops recording, ends IDLE and asks the server what this connection
// missed: queued is how many new messages a NOOP announced (updates the
// server held for the session without pushing them), untold how many more
// the mailbox holds (STATUS) than the connection has been told of. err: the
// connection did not answer within timeout (it is then closed).
func (d *idler) probe(timeout time.Duration) (queued, untold int, err error) {
	d.mu.Lock()
	d.recording = false
	before := d.count
	d.mu.Unlock()
	type result struct {
		queued, untold int
		err            error
	}
	done := make(chan result, 1)
	go func() {
		if err := d.idle.Close(); err != nil {
			done <- result{err: fmt.Errorf("DONE: %w", err)}
			return
		}
		if err := d.idle.Wait(); err != nil {
			done <- result{err: fmt.Errorf("IDLE: %w", err)}
			return
		}
		d.mu.Lock()
		d.idle = nil
		d.mu.Unlock()
		if err := d.c.Noop().Wait(); err != nil {
			done <- result{err: fmt.Errorf("NOOP: %w", err)}
			return
		}
		st, err := d.c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || st.NumMessages == nil {
			done <- result{err: fmt.Errorf("STATUS INBOX: %v", err)}
			return
		}
		d.mu.Lock()
		r := result{queued: int(d.count) - int(before), untold: int(*st.NumMessages) - int(d.count)}
		d.mu.Unlock()
		done <- r
	}()
	select {
	case r := <-done:
		return r.queued, r.untold, r.err
	case <-time.After(timeout):
		d.c.Close()
		return 0, 0, fmt.Errorf("no answer within %v", timeout)
	}
}

// arrivalsAfter counts the recorded arrivals later than t over idlers.
func arrivalsAfter(idlers []*idler, t time.Time) int {
	n := 0
	for _, d := range idlers {
		d.mu.Lock()
		for _, a := range d.arrivals {
			if a.After(t) {
				n++
			}
		}
		d.mu.Unlock()
	}
	return n
}
