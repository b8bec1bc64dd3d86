package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/render"
)

// task is the generic webhook's task record.
type task struct {
	ID        string   `json:"id"`
	Title     string   `json:"title"`
	Project   string   `json:"project"`
	Assignees []string `json:"assignees"`
	Due       string   `json:"due,omitempty"`
	Status    string   `json:"status"`
	Version   int64    `json:"version"`
}

// hookResult is one webhook attempt as the tracker saw it.
type hookResult struct {
	code       int
	retryAfter string
	err        error // transport error (no status)
}

// postTask sends one signed task to url.
func postTask(ctx context.Context, hc *http.Client, url, secret string, t task) hookResult {
	body, _ := json.Marshal(t)
	req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
	if err != nil {
		return hookResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Duebridge-Signature", bridge.Sign(secret, body))
	resp, err := hc.Do(req)
	if err != nil {
		return hookResult{err: err}
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return hookResult{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
}

// idler is one IMAP connection in IDLE on INBOX. pinned connections go
// straight to one replica (with a PROXY header, as the balancer would
// send); when that connection dies the idler reconnects through the
// balancer and catches up from what the server announces on SELECT.
type idler struct {
	user, pass string
	home       string // replica name it started on
	direct     string // replica IMAP address ("" = balancer)
	balancer   string

	mu         sync.Mutex
	c          *imapclient.Client
	idle       *imapclient.IdleCommand
	count      uint32
	reconnects int
	onExists   func(*idler, uint32, time.Time)
	closed     bool
}

func (d *idler) exists(n uint32) {
	now := time.Now()
	d.mu.Lock()
	grew := n > d.count
	if grew {
		d.count = n
	}
	d.mu.Unlock()
	if grew && d.onExists != nil {
		d.onExists(d, n, now)
	}
}

func (d *idler) Count() uint32 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.count
}

// proxyHeader is a PROXY protocol v1 header for a loopback client.
func proxyHeader(c net.Conn) string {
	l, r := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	return fmt.Sprintf("PROXY TCP4 %s %s %d %d\r\n", l.IP, r.IP, l.Port, r.Port)
}

// connect dials (direct or through the balancer), logs in, selects INBOX
// and enters IDLE.
func (d *idler) connect(ctx context.Context, addr string, direct bool) error {
	var dialer net.Dialer
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, err := dialer.DialContext(dctx, "tcp", addr)
	cancel()
	if err != nil {
		return err
	}
	if direct {
		if _, err := io.WriteString(conn, proxyHeader(conn)); err != nil {
			conn.Close()
			return err
		}
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
	fail := func(err error) error { c.Close(); return err }
	if err := c.WaitGreeting(); err != nil {
		return fail(err)
	}
	if err := c.Login(d.user, d.pass).Wait(); err != nil {
		return fail(fmt.Errorf("LOGIN %s: %w", d.user, err))
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		return fail(fmt.Errorf("SELECT INBOX: %w", err))
	}
	d.exists(sel.NumMessages)
	idle, err := c.Idle()
	if err != nil {
		return fail(fmt.Errorf("IDLE: %w", err))
	}
	d.mu.Lock()
	d.c, d.idle = c, idle
	d.mu.Unlock()
	return nil
}

// run keeps the idler connected until ctx ends: after a connection dies it
// reconnects through the balancer.
func (d *idler) run(ctx context.Context, logf func(string, ...any)) {
	for {
		d.mu.Lock()
		c := d.c
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-c.Closed():
		}
		for ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			if err := d.connect(ctx, d.balancer, false); err != nil {
				logf("idler %s (from %s): reconnect through the balancer: %v", d.user, d.home, err)
				continue
			}
			d.mu.Lock()
			d.reconnects++
			d.mu.Unlock()
			break
		}
	}
}

func (d *idler) close() {
	d.mu.Lock()
	c, idle := d.c, d.idle
	d.closed = true
	d.mu.Unlock()
	if c == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		idle.Close()
		idle.Wait()
		c.Logout().Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	c.Close()
}

// mailKinds counts a user's INBOX messages by (task, event) from their
// Message-IDs ("task-<source>-<id>.<seq>.<event>@host").
func mailKinds(ctx context.Context, addr, user, pass string) (total int, kinds map[string]int, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, nil, err
	}
	c := imapclient.New(conn, nil)
	defer c.Close()
	if err := c.Login(user, pass).Wait(); err != nil {
		return 0, nil, err
	}
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return 0, nil, err
	}
	kinds = map[string]int{}
	if sel.NumMessages == 0 {
		return 0, kinds, nil
	}
	var set imap.SeqSet
	set.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(set, &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil {
		return 0, nil, err
	}
	for _, m := range msgs {
		id := m.Envelope.MessageID
		// task-tracker-D-3.123.due_soon@host -> tracker-D-3 due_soon
		id = strings.TrimPrefix(id, "task-")
		if at := strings.LastIndexByte(id, '@'); at >= 0 {
			id = id[:at]
		}
		parts := strings.Split(id, ".")
		if len(parts) < 3 {
			continue
		}
		kinds[parts[0]+" "+parts[len(parts)-1]]++
	}
	c.Logout().Wait()
	return len(msgs), kinds, nil
}

// callbackReceiver is the tracker's callback endpoint: it checks the
// signature and counts deliveries per event id.
type callbackReceiver struct {
	secret string
	mu     sync.Mutex
	events map[string]int    // event_id -> deliveries
	byTask map[string]string // task id -> first event id (status done)
	tasks  map[string]map[string]bool
	bad    int
}

func newCallbackReceiver(secret string) *callbackReceiver {
	return &callbackReceiver{secret: secret, events: map[string]int{}, byTask: map[string]string{}, tasks: map[string]map[string]bool{}}
}

func (cr *callbackReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	want := bridge.Sign(cr.secret, body)
	var cb struct {
		ID      string `json:"id"`
		Status  string `json:"status"`
		EventID string `json:"event_id"`
	}
	if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Duebridge-Signature"))) || json.Unmarshal(body, &cb) != nil || cb.EventID == "" {
		cr.mu.Lock()
		cr.bad++
		cr.mu.Unlock()
		http.Error(w, "bad callback", 400)
		return
	}
	cr.mu.Lock()
	cr.events[cb.EventID]++
	if cr.tasks[cb.ID] == nil {
		cr.tasks[cb.ID] = map[string]bool{}
	}
	cr.tasks[cb.ID][cb.EventID+" "+cb.Status] = true
	cr.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// davPhone is an iOS-like CalDAV client of one user pinned to one base URL
// (a replica, or the balancer after its replica died).
type davPhone struct {
	hc         *http.Client
	base, user string
	pass, coll string
}

func (p *davPhone) do(ctx context.Context, method, path string, body []byte, hdr ...string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.SetBasicAuth(p.user, p.pass)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := p.hc.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

// sync runs an initial sync-collection REPORT (what iOS does after a
// change notice) and returns how many objects the collection lists.
func (p *davPhone) sync(ctx context.Context) (int, error) {
	body := []byte(`<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>`)
	code, _, b, err := p.do(ctx, "REPORT", p.coll, body, "Content-Type", "application/xml; charset=utf-8", "Depth", "1")
	if err != nil {
		return 0, err
	}
	if code != 207 {
		return 0, fmt.Errorf("sync-collection: HTTP %d %.200s", code, b)
	}
	return strings.Count(string(b), ".ics</"), nil
}

// complete ticks a task done as a phone does: GET, change STATUS, PUT with
// If-Match. done reports whether the PUT was acknowledged (2xx); already
// reports a task found completed (an earlier PUT whose answer was lost).
func (p *davPhone) complete(ctx context.Context, source, id string) (done, already bool, err error) {
	path := p.coll + render.ObjectName(source, id)
	code, hdr, b, err := p.do(ctx, "GET", path, nil)
	if err != nil {
		return false, false, err
	}
	if code != 200 {
		return false, false, fmt.Errorf("GET %s: HTTP %d", path, code)
	}
	ics := string(b)
	if strings.Contains(ics, "STATUS:COMPLETED") {
		return false, true, nil
	}
	if !strings.Contains(ics, "STATUS:NEEDS-ACTION") {
		return false, false, fmt.Errorf("GET %s: no STATUS:NEEDS-ACTION in %.300s", path, ics)
	}
	stamp := time.Now().UTC().Format("20060102T150405Z")
	ics = strings.Replace(ics, "STATUS:NEEDS-ACTION", "STATUS:COMPLETED\r\nCOMPLETED:"+stamp+"\r\nPERCENT-COMPLETE:100", 1)
	code, _, b, err = p.do(ctx, "PUT", path, []byte(ics), "Content-Type", "text/calendar; charset=utf-8", "If-Match", hdr.Get("ETag"))
	if err != nil {
		return false, false, err
	}
	if code/100 != 2 {
		return false, false, fmt.Errorf("PUT %s: HTTP %d %.200s", path, code, b)
	}
	return true, false, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
