package main

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
	"golang.org/x/crypto/bcrypt"
)

// This file starts the parts: a fresh schema on the test PostgreSQL, the
// duebridge replicas, and HAProxy with the configuration in docs/operations.md.

// schema is the PostgreSQL schema the replicas use, dropped and created
// afresh on every run so runs never see each other's data.
const schema = "duebridge_replicas"

// resetSchema empties the schema and returns the URL the replicas use.
func resetSchema(ctx context.Context, pgURL string) (string, *sql.DB, error) {
	db, err := sql.Open("pgx", pgURL)
	if err != nil {
		return "", nil, err
	}
	for _, q := range []string{`DROP SCHEMA IF EXISTS ` + schema + ` CASCADE`, `CREATE SCHEMA ` + schema} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			db.Close()
			return "", nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	sep := "?"
	if strings.Contains(pgURL, "?") {
		sep = "&"
	}
	url := pgURL + sep + "search_path=" + schema
	db.Close()
	db, err = sql.Open("pgx", url)
	return url, db, err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// replica is one duebridge serve process.
type replica struct {
	name     string
	dir, cfg string
	httpPort int
	imapPort int
	cmd      *exec.Cmd
	exited   chan struct{}
	log      string
}

func (r *replica) httpURL() string  { return fmt.Sprintf("http://127.0.0.1:%d", r.httpPort) }
func (r *replica) imapAddr() string { return fmt.Sprintf("127.0.0.1:%d", r.imapPort) }

// clusterConfig is what every replica's config shares.
type clusterConfig struct {
	pgURL, publicURL, secret, callbackURL string
	users                                 []string
	password                              string
}

func writeReplicaConfig(r *replica, c clusterConfig) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(c.password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by duebridge-replicas; throwaway\n")
	fmt.Fprintf(&b, "instance: %s\nstore: postgres\npostgres_url: %q\ndata_dir: %q\n", r.name, c.pgURL, filepath.Join(r.dir, "data"))
	fmt.Fprintf(&b, "http:\n  listen: 127.0.0.1:%d\n  public_url: %s\n  trusted_proxies: [127.0.0.1/32]\n", r.httpPort, c.publicURL)
	fmt.Fprintf(&b, "imap:\n  listen: 127.0.0.1:%d\n  proxy_protocol: true\n", r.imapPort)
	// Every client of the test shares 127.0.0.1; coalescing would delay the
	// completion mails the test does not wait for anyway.
	fmt.Fprintf(&b, "mail:\n  coalesce_window: 0s\n")
	fmt.Fprintf(&b, "notifications:\n  lead_times: [1h]\n")
	fmt.Fprintf(&b, "limits:\n  imap_conns_per_user: 100\n  conns_per_address: 10000\n")
	fmt.Fprintf(&b, "sources:\n  - name: tracker\n    kind: generic\n    secret: %q\n    callback_url: %s\n", c.secret, c.callbackURL)
	fmt.Fprintf(&b, "users:\n")
	for _, u := range c.users {
		fmt.Fprintf(&b, "  - name: %s\n    email: %s@replicas.test\n    password_hash: %q\n    notify: mail\n    timezone: UTC\n", u, u, hash)
	}
	return os.WriteFile(r.cfg, []byte(b.String()), 0o600)
}

// start runs the replica and waits until /readyz says ready.
func (r *replica) start(ctx context.Context, bin string) error {
	logf, err := os.OpenFile(r.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "serve", "--config", r.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	exited := r.exited
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	return waitReady(ctx, r, 60*time.Second)
}

func waitReady(ctx context.Context, r *replica, d time.Duration) error {
	deadline := time.Now().Add(d)
	hc := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-r.exited:
			return fmt.Errorf("%s exited; log:\n%s", r.name, tail(r.log, 3000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if resp, err := hc.Get(r.httpURL() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v; log:\n%s", r.name, d, tail(r.log, 3000))
		}
	}
}

// kill sends SIGKILL: no shutdown, no flush, what a crash does.
func (r *replica) kill() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Signal(syscall.SIGKILL)
		<-r.exited
	}
}

func (r *replica) stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.kill()
	}
}

// cleanEnv is the environment without DUEBRIDGE_* overrides.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DUEBRIDGE_") {
			env = append(env, kv)
		}
	}
	return env
}

func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// The HAProxy example in docs/operations.md names these addresses; the test swaps in
// the ports it got, and nothing else.
var (
	readmeHTTPFront = "127.0.0.1:8080"
	readmeIMAPFront = "127.0.0.1:1143"
	readmeHTTP      = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}
	readmeIMAP      = []string{"127.0.0.1:1144", "127.0.0.1:1145", "127.0.0.1:1146"}
	readmeHTTPPort  = []string{"port 8081", "port 8082", "port 8083"}
)

var haproxyBlock = regexp.MustCompile("(?s)<!-- replicas-haproxy:begin -->\\s*```[a-z]*\\n(.*?)```\\s*<!-- replicas-haproxy:end -->")

// haproxyConfig reads the example from docs/operations.md and points it at the
// test's ports.
func haproxyConfig(readme string, httpFront, imapFront int, rs []*replica) (string, error) {
	b, err := os.ReadFile(readme)
	if err != nil {
		return "", err
	}
	m := haproxyBlock.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s: no HAProxy example between <!-- replicas-haproxy:begin --> and <!-- replicas-haproxy:end -->", readme)
	}
	cfg := string(m[1])
	if len(rs) > len(readmeHTTP) {
		return "", fmt.Errorf("the README example has %d servers, the test wants %d", len(readmeHTTP), len(rs))
	}
	repl := []string{readmeHTTPFront, fmt.Sprintf("127.0.0.1:%d", httpFront), readmeIMAPFront, fmt.Sprintf("127.0.0.1:%d", imapFront)}
	for i, r := range rs {
		repl = append(repl, readmeHTTP[i], r.httpURL()[len("http://"):], readmeIMAP[i], r.imapAddr(), readmeHTTPPort[i], fmt.Sprintf("port %d", r.httpPort))
	}
	for i := 0; i < len(repl); i += 2 {
		if !strings.Contains(cfg, repl[i]) {
			return "", fmt.Errorf("the README example does not name %s", repl[i])
		}
	}
	out := strings.NewReplacer(repl...).Replace(cfg)
	// Servers the test does not run are dropped (the example lists three).
	var keep []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		drop := false
		for i := len(rs); i < len(readmeHTTP); i++ {
			if strings.Contains(line, readmeHTTP[i]) || strings.Contains(line, readmeIMAP[i]) {
				drop = true
			}
		}
		if !drop {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n") + "\n", nil
}

// startHAProxy runs haproxy in the foreground with cfg and waits for its
// HTTP frontend.
func startHAProxy(ctx context.Context, bin, dir, cfg string, front int) (*exec.Cmd, error) {
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, bin, "-c", "-f", path).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("haproxy -c: %v\n%s", err, out)
	}
	logPath := filepath.Join(dir, "haproxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(front), time.Second)
		if err == nil {
			c.Close()
			return cmd, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return nil, errors.New("haproxy did not listen; log:\n" + tail(logPath, 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
