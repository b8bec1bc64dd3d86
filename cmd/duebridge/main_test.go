package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/webhook"
)

const secret = "e2e-secret-1234"

// TestMain doubles as the crash test's child: with DUEBRIDGE_TEST_CHILD set
// the test binary runs the real server and reports its address on stdout.
func TestMain(m *testing.M) {
	if path := os.Getenv("DUEBRIDGE_TEST_CHILD"); path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		err = serve(context.Background(), cfg, serveOptions{Logger: log, Ready: func(a Addrs, _ *bridge.Service) {
			fmt.Printf("READY %s\n", a.HTTP)
		}})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// writeConfig writes a config for loopback :0 listeners into dir.
func writeConfig(t testing.TB, dir string, users ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir: %s\nhttp:\n  listen: 127.0.0.1:0\n  public_url: http://duebridge.test\nimap:\n  listen: 127.0.0.1:0\n", filepath.Join(dir, "data"))
	b.WriteString("users:\n")
	for _, u := range users {
		h, _ := bcrypt.GenerateFromPassword([]byte(u+"-pw"), bcrypt.MinCost)
		fmt.Fprintf(&b, "  - name: %s\n    email: %s@example.com\n    password_hash: %q\n", u, u, h)
	}
	fmt.Fprintf(&b, "sources:\n  - name: tracker\n    secret: %s\n", secret)
	path := filepath.Join(dir, "duebridge.yaml")
	writeAtomic(t, path, b.String())
	return path
}

func writeAtomic(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

type running struct {
	base string
	svc  *bridge.Service
	stop func()
}

// start runs serve in-process on the config file and waits until it is ready.
func start(t *testing.T, cfgPath string) *running {
	t.Helper()
	return startWith(t, cfgPath, serveOptions{})
}

// startWith is start with serve options (timeouts, clock); the base URL is
// https when the config has TLS.
func startWith(t testing.TB, cfgPath string, o serveOptions) *running {
	t.Helper()
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *running, 1)
	done := make(chan error, 1)
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	scheme := "http"
	if cfg.TLS.Enabled() {
		scheme = "https"
	}
	o.Opened = func(svc *bridge.Service, st store.Store) { testsvc.Track(t, svc, st) }
	o.Ready = func(a Addrs, svc *bridge.Service) {
		ready <- &running{base: scheme + "://" + a.HTTP.String(), svc: svc}
	}
	rerendered := untilRerendered(&o)
	go func() { done <- serve(ctx, cfg, o) }()
	select {
	case r := <-ready:
		rerendered(t) // tests read what the start re-renders
		r.stop = func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		}
		t.Cleanup(r.stop)
		return r
	case err := <-done:
		cancel()
		t.Fatalf("serve ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("serve not ready after 30s")
	}
	return nil
}

func postTask(t testing.TB, base string, body []byte) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/hooks/tracker", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(secret, body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServeEndToEnd(t *testing.T) {
	r := start(t, writeConfig(t, t.TempDir(), "alice", "bob"))
	if code, body := get(t, r.base+"/healthz"); code != 200 {
		t.Fatalf("healthz %d %s", code, body)
	}
	if code, body := get(t, r.base+"/readyz"); code != 200 {
		t.Fatalf("readyz %d %s", code, body)
	}
	code, body := postTask(t, r.base, []byte(`{"id":"T-1","title":"Ship it","project":"Release","assignees":["alice"],"due":"`+time.Now().Add(72*time.Hour).UTC().Format(time.RFC3339)+`","version":1}`))
	if code != 200 || !strings.Contains(body, `"accepted":1`) {
		t.Fatalf("webhook: %d %s", code, body)
	}
	// The task is in alice's Reminders list and calendar, and in her INBOX.
	err := testsvc.Store(t, r.svc).View(context.Background(), func(tx store.Tx) error {
		todo, err := tx.Object("alice", "release-tasks", render.ObjectName("tracker", "T-1"))
		if err != nil {
			return fmt.Errorf("todo: %w", err)
		}
		if !bytes.Contains(todo.Data, []byte("SUMMARY:Ship it")) || !bytes.Contains(todo.Data, []byte("BEGIN:VALARM")) {
			t.Errorf("todo lacks summary or alarm:\n%s", todo.Data)
		}
		if _, err := tx.Object("alice", "release-deadlines", render.ObjectName("tracker", "T-1")); err != nil {
			return fmt.Errorf("event: %w", err)
		}
		msgs, err := tx.Messages("alice", bridge.Inbox)
		if len(msgs) != 1 {
			t.Errorf("alice has %d mails, want 1 (assigned)", len(msgs))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// CalDAV on the same listener: anonymous discovery is challenged, and the
	// home lists the project's two collections with their ctags.
	req, _ := http.NewRequest("PROPFIND", r.base+"/.well-known/caldav", nil)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode/100 != 3 {
		t.Errorf("anonymous well-known: %d, want a redirect or 401", resp.StatusCode)
	}
	req, _ = http.NewRequest("PROPFIND", r.base+"/dav/alice/calendars/", strings.NewReader(
		`<?xml version="1.0"?><propfind xmlns="DAV:" xmlns:cs="http://calendarserver.org/ns/"><prop><resourcetype/><cs:getctag/><sync-token/></prop></propfind>`))
	req.SetBasicAuth("alice", "alice-pw")
	req.Header.Set("Depth", "1")
	req.Header.Set("Content-Type", "application/xml")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	home, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"release-tasks/", "release-deadlines/", "getctag"} {
		if resp.StatusCode != http.StatusMultiStatus || !strings.Contains(string(home), want) {
			t.Errorf("home PROPFIND: %d, lacks %q:\n%s", resp.StatusCode, want, home)
		}
	}

	code, body = get(t, r.base+"/metrics")
	body = withoutReplica(body)
	for _, want := range []string{
		`duebridge_webhook_tasks_total{result="accepted",source="tracker"} 1`,
		`duebridge_http_requests_total{code="200",method="POST",route="POST /hooks/{source}"} 1`,
		`duebridge_store_seconds_bucket`,
		"\nduebridge_store_wal_bytes ", // SQLite's log, bounded by limits.sqlite_wal_mb
		"\nduebridge_store_wal_restarts_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func TestHotReload(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "alice")
	r := start(t, path)
	if r.svc.Config().User("bob") != nil {
		t.Fatal("bob before reload")
	}
	// A task for bob before bob exists: stored, but nobody sees it yet.
	if code, body := postTask(t, r.base, []byte(`{"id":"T-9","title":"For bob","assignees":["bob"],"due":"`+time.Now().AddDate(0, 0, 3).Format("2006-01-02")+`","version":1}`)); code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	writeConfig(t, dir, "alice", "bob")
	waitFor(t, 20*time.Second, "bob after a good edit", func() bool { return r.svc.Config().User("bob") != nil })
	// Adding bob renders the task that already named him.
	waitFor(t, 20*time.Second, "bob's objects after reload", func() bool {
		var n int
		testsvc.Store(t, r.svc).View(context.Background(), func(tx store.Tx) error {
			objs, err := tx.ObjectsOfUser("bob")
			n = len(objs)
			return err
		})
		return n == 2
	})

	// A bad edit is refused and the running config stays.
	good := r.svc.Config()
	writeAtomic(t, path, "data_dir: ./x\nhttp:\n  listen: nonsense\nusers: []\n")
	time.Sleep(1500 * time.Millisecond) // give the watcher (200ms debounce) time to refuse it
	if r.svc.Config() != good {
		t.Fatal("a bad edit replaced the running config")
	}
	if code, _ := postTask(t, r.base, []byte(`{"id":"T-10","title":"Still working","assignees":["alice"],"version":1}`)); code != 200 {
		t.Fatalf("webhook after a bad edit: %d", code)
	}
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCrashAfterAck kills the server with SIGKILL right after a 200 and
// checks that every acknowledged task survived.
func TestCrashAfterAck(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	dir := t.TempDir()
	path := writeConfig(t, dir, "alice")
	acked := map[string]bool{}
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "DUEBRIDGE_TEST_CHILD="+path)
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var base string
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				base = "http://" + addr
				break
			}
		}
		if base == "" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child did not start: %s", stderr.String())
		}
		// A batch and single tasks; the kill comes the instant the last 200 is read.
		var batch []map[string]any
		for i := 0; i < 50; i++ {
			id := fmt.Sprintf("R%d-B%d", round, i)
			batch = append(batch, map[string]any{"id": id, "title": id, "assignees": []string{"alice"}, "version": 1})
		}
		body, _ := json.Marshal(batch)
		if code, b := postTask(t, base, body); code != 200 {
			t.Fatalf("batch: %d %s", code, b)
		}
		for _, m := range batch {
			acked[m["id"].(string)] = true
		}
		for i := 0; i < 20; i++ {
			id := fmt.Sprintf("R%d-S%d", round, i)
			if code, b := postTask(t, base, []byte(fmt.Sprintf(`{"id":%q,"title":"x","assignees":["alice"],"version":1}`, id))); code != 200 {
				t.Fatalf("single: %d %s", code, b)
			}
			acked[id] = true
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
	}
	st, err := store.Open(context.Background(), store.SQLite, filepath.Join(dir, "data"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	err = st.View(context.Background(), func(tx store.Tx) error {
		tasks, err := tx.TasksBySource("tracker", false)
		if err != nil {
			return err
		}
		got := map[string]bool{}
		for _, tk := range tasks {
			got[tk.ID] = true
		}
		for id := range acked {
			if !got[id] {
				t.Errorf("acknowledged task %s lost after SIGKILL", id)
			}
		}
		objs, err := tx.Objects("alice", "inbox-tasks", false)
		if len(objs) != len(acked) {
			t.Errorf("alice has %d reminders, want %d", len(objs), len(acked))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestImportRules keeps protocol packages from importing each other and the
// leaves free of our other packages (STYLE.md §2.2).
func TestImportRules(t *testing.T) {
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "./...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const mod = "github.com/duebridge/duebridge/"
	allowed := map[string][]string{
		"config":  {},
		"store":   {"internal/clock"}, // stamps transactions with the clock bridge hands it
		"tlsutil": {},
		// bridge implements the interfaces the protocol packages declare.
		"bridge": {"store", "config", "render", "internal/password", "internal/clock", "calendar", "imapserver", "internal/metricsreg"},
		// render is pure: task records and config in, iCalendar and mail bytes out.
		// Only bridge (and cmd) import it; no protocol package renders.
		"render":   {"store", "config"},
		"calendar": {"internal/metricsreg"}, // declares its Backend; bridge implements it (bridge/caldav.go)
		// imapserver sees only its Backend interface, never the store.
		"imapserver": {"internal/metricsreg"},
		"submission": {"bridge", "config", "tlsutil", "internal/metricsreg"}, // the core through submission.Core
		// The one "register or reuse" helper for collectors.
		"internal/metricsreg": {},
		"webhook":             {"bridge", "config", "internal/metricsreg"},          // the core through webhook.Ingester, never the store
		"setup":               {"bridge", "config", "tlsutil", "internal/password"}, // the core through setup.Core, never the store
		// The one Clock type (and the system clock): a leaf.
		"internal/clock": {},
		// Password formats (hashes, device passwords): a leaf, pure functions.
		"internal/password": {},
		"internal/testsvc":  {"bridge", "store", "config", "internal/clock"},
		"feed":              {},
		"admin":             {"bridge", "calendar", "config"}, // narrow interfaces, never the store
		"stream":            {},
		// Test helpers; no production package may import them (none lists them).
		"internal/fakeclock": {"internal/clock"},
		"internal/iphone":    {},
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, ok := strings.CutPrefix(fields[0], mod)
		if !ok || strings.HasPrefix(pkg, "cmd/") {
			continue // cmd/* may wire anything; nothing imports it (checked below)
		}
		allow, known := allowed[pkg]
		for _, imp := range fields[1:] {
			dep, ours := strings.CutPrefix(imp, mod)
			if !ours {
				continue
			}
			if strings.HasPrefix(dep, "cmd/") {
				t.Errorf("%s imports %s: nothing may import cmd", pkg, dep)
				continue
			}
			if !known {
				t.Errorf("package %s is not in the import allow-list; add it with its allowed edges", pkg)
				break
			}
			if !contains(allow, dep) {
				t.Errorf("%s imports %s, which the layering forbids", pkg, dep)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
