package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/clock"
	"github.com/duebridge/duebridge/internal/iphone"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/store"
)

// runCLI runs the duebridge command line in-process.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func inboxValidity(t *testing.T, addr string) (uint32, uint32) {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "alice-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	return d.UIDValidity, uint32(d.UIDNext)
}

// TestBackupRestore takes a backup while webhooks are being posted, restores
// it into a new data dir and starts a server on it: every task acknowledged
// before the backup began is there once, the phone's old sync tokens are
// refused (valid-sync-token) so it syncs in full and ends up with exactly the
// server's state, and INBOX has a new UIDVALIDITY because the restored
// UIDNEXT hands out UIDs the phone already saw.
func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "one"), 0o700)
	os.MkdirAll(filepath.Join(dir, "two"), 0o700)
	cfg1 := writeConfig(t, filepath.Join(dir, "one"), "alice")
	a1, _ := serveReady(t, loadConfig(t, cfg1), serveOptions{})
	base1 := "http://" + a1.HTTP.String()

	phone := iphone.New(base1, "alice", "alice-pw", a1.IMAP.String())
	for i := range 3 {
		if code, body := postTask(t, base1, fmt.Appendf(nil, `{"id":"S-%d","title":"seed-%d","assignees":["alice"],"version":1}`, i, i)); code != 200 {
			t.Fatalf("seed: %d %s", code, body)
		}
	}
	syncPhone(t, phone)
	validity1, _ := inboxValidity(t, a1.IMAP.String())

	// Load: one tracker posting tasks one after another.
	var mu sync.Mutex
	var acked []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := fmt.Sprintf("L-%d", i)
			if code, body := postTask(t, base1, fmt.Appendf(nil, `{"id":%q,"title":"load-%d","assignees":["alice"],"version":1}`, id, i)); code != 200 {
				t.Errorf("load webhook: %d %s", code, body)
				return
			}
			mu.Lock()
			acked = append(acked, id)
			mu.Unlock()
		}
	}()
	ackedNow := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), acked...) }
	waitFor(t, 20*time.Second, "20 acknowledged webhooks", func() bool { return len(ackedNow()) >= 20 })
	before := ackedNow()
	backup := filepath.Join(dir, "duebridge-backup.db")
	if out, err := runCLI(t, "backup", "--config", cfg1, "--out", backup); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	n := len(ackedNow())
	waitFor(t, 20*time.Second, "more webhooks after the backup", func() bool { return len(ackedNow()) >= n+10 })
	close(stop)
	wg.Wait()
	syncPhone(t, phone) // the phone has seen tasks the backup does not hold
	if _, uidnext := inboxValidity(t, a1.IMAP.String()); uidnext < 2 {
		t.Fatalf("no mail in INBOX (uidnext %d)", uidnext)
	}

	if out, err := runCLI(t, "restore", "--config", cfg1, "--from", backup); err == nil || !strings.Contains(err.Error(), "never overwrites") {
		t.Fatalf("restore over the live data dir: %v\n%s", err, out)
	}
	cfg2 := writeConfig(t, filepath.Join(dir, "two"), "alice")
	if out, err := runCLI(t, "restore", "--config", cfg2, "--from", backup); err != nil {
		t.Fatalf("restore: %v\n%s", err, out)
	}
	a2, svc2 := serveReady(t, loadConfig(t, cfg2), serveOptions{})

	// Every task acknowledged before the backup, once.
	var tasks []store.Task
	testsvc.Store(t, svc2).View(context.Background(), func(tx store.Tx) error {
		var err error
		tasks, err = tx.TasksBySource("tracker", true)
		return err
	})
	have := map[string]int{}
	for _, tk := range tasks {
		have[tk.ID]++
	}
	for _, id := range append(before, "S-0", "S-1", "S-2") {
		if have[id] != 1 {
			t.Errorf("task %s acknowledged before the backup: %d copies after restore", id, have[id])
		}
	}

	// Revisions after the restore reuse numbers the phone's tokens name;
	// push past them so only the epoch can tell the tokens apart.
	base2 := "http://" + a2.HTTP.String()
	for i := range 2 * (len(ackedNow()) - len(before) + 5) {
		if code, body := postTask(t, base2, fmt.Appendf(nil, `{"id":"R-%d","title":"restored-%d","assignees":["alice"],"version":1}`, i, i)); code != 200 {
			t.Fatalf("webhook after restore: %d %s", code, body)
		}
		have[fmt.Sprintf("R-%d", i)]++
	}

	// The phone moves to the restored server (same name for it in life).
	phone.Base, phone.IMAPAddr = "http://"+a2.HTTP.String(), a2.IMAP.String()
	syncPhone(t, phone)
	titles := map[string]int{}
	for _, c := range phone.Collections() {
		if c.FullResyncs == 0 {
			t.Errorf("collection %s: the old sync token was not refused", c.Href)
		}
		for _, o := range c.Objects {
			for _, line := range strings.Split(o.Data, "\r\n") {
				if s, ok := strings.CutPrefix(line, "SUMMARY:"); ok {
					titles[s]++
				}
			}
		}
	}
	for i := range len(before) {
		if titles[fmt.Sprintf("load-%d", i)] != 1 {
			t.Errorf("phone has load-%d %d times", i, titles[fmt.Sprintf("load-%d", i)])
		}
	}
	for title, c := range titles {
		var id string
		if i, ok := strings.CutPrefix(title, "load-"); ok {
			id = "L-" + i
		} else if i, ok := strings.CutPrefix(title, "seed-"); ok {
			id = "S-" + i
		} else if i, ok := strings.CutPrefix(title, "restored-"); ok {
			id = "R-" + i
		}
		if have[id] != 1 || c != 1 {
			t.Errorf("phone shows %q %d times; the restored server has it %d times", title, c, have[id])
		}
	}

	validity2, _ := inboxValidity(t, a2.IMAP.String())
	if validity2 == validity1 {
		t.Errorf("INBOX UIDVALIDITY %d unchanged after restore: UIDs would be reused", validity1)
	}
}

func TestVersion(t *testing.T) {
	out, err := runCLI(t, "version")
	if err != nil || !strings.HasPrefix(out, "duebridge ") || !strings.Contains(out, "revision: ") {
		t.Fatalf("version: %v %q", err, out)
	}
	bi := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}}}
	got := readBuildInfo("dev", bi, true).String()
	for _, want := range []string{"duebridge v1.2.3\n", "revision: abc123 (modified)", "commit time: 2026-01-02T03:04:05Z", "go: go1.26.8"} {
		if !strings.Contains(got, want) {
			t.Errorf("version with VCS info: %q lacks %q", got, want)
		}
	}
	// -buildvcs=false, go test, or no build info at all.
	noVCS := readBuildInfo("dev", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, true)
	if noVCS.Version != "dev" || noVCS.Revision != "unknown" {
		t.Errorf("without VCS info: %+v", noVCS)
	}
	if b := readBuildInfo("v9.9.9", nil, false); b.Version != "v9.9.9" || b.Revision != "unknown" {
		t.Errorf("ldflags version, no build info: %+v", b)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	r := start(t, writeConfig(t, t.TempDir(), "alice"))
	if out, err := runCLI(t, "healthcheck", "--url", r.base); err != nil || !strings.Contains(out, "/healthz") {
		t.Fatalf("healthcheck: %v %q", err, out)
	}
	if out, err := runCLI(t, "healthcheck", "--ready", "--url", r.base); err != nil || !strings.Contains(out, "/readyz") {
		t.Fatalf("healthcheck --ready: %v %q", err, out)
	}
	// Nothing listening: a closed port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := runCLI(t, "healthcheck", "--url", "http://"+ln.Addr().String(), "--timeout", "2s"); err == nil {
		t.Fatal("healthcheck with no server succeeded")
	}
}

// TestRetentionExpungeSeenByIMAP: a retention pass on the running server
// reaches an IDLEing IMAP client as an ordinary EXPUNGE.
func TestRetentionExpungeSeenByIMAP(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	cfgPath := writeConfig(t, t.TempDir(), "alice")
	a, svc := serveReady(t, loadConfig(t, cfgPath), serveOptions{Clock: clock.System(now)})
	if code, body := postTask(t, "http://"+a.HTTP.String(), []byte(`{"id":"T-1","title":"Old news","assignees":["alice"],"version":1}`)); code != 200 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	expunged := make(chan uint32, 4)
	c, err := imapclient.DialInsecure(a.IMAP.String(), &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", "alice-pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if d, err := c.Select("INBOX", nil).Wait(); err != nil || d.NumMessages != 1 {
		t.Fatalf("SELECT: %v %+v", err, d)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(366 * 24 * time.Hour)) // default retention.mail_days is 365
	got, err := svc.RetentionPass(context.Background())
	if err != nil || got[bridge.RetainInbox] != 1 {
		t.Fatalf("retention: %v %v", got, err)
	}
	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Errorf("EXPUNGE %d, want 1", seq)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no EXPUNGE reached the IDLEing client")
	}
	idle.Close()
	idle.Wait()
}
