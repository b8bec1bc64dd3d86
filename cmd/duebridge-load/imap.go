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
	if d.idle != nil {
		done := make(chan struct{})
		go func() {
			d.idle.Close()
			d.idle.Wait()
			d.c.Logout().Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
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
