package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/password"
	"github.com/duebridge/duebridge/store"
	"github.com/duebridge/duebridge/tlsutil"
)

// serverOpts is what --start needs to write a config and run duebridge.
type serverOpts struct {
	Bin      string // duebridge binary; "" = go build ./cmd/duebridge from Src
	Src      string // module root; "" = found from the working directory
	Users    []string
	Password string // every user's password
	PrepPass string // an app password of every user ("" = none)
	Hash     string // argon2id | bcrypt | bcrypt-min
	Source   string
	Secret   string
	IMAP     bool
	Keep     bool
	Log      func(format string, a ...any)
	// ConnsPerUser is limits.imap_conns_per_user.
	ConnsPerUser int
	// TLS serves HTTPS (and IMAPS) with a dev CA made in the temp dir.
	TLS bool
	// TicketKeys (with TLS) gives the server a session ticket key file
	// in the temp dir, kept across a restart.
	TicketKeys bool
	// DevicePasswords issues a device password to each of the first n
	// users before the server starts (in its store, as /setup would).
	DevicePasswords int
}

// child is a duebridge serve started by the load tool.
type child struct {
	cmd      *exec.Cmd
	dir      string
	HTTPURL  string
	IMAPAddr string
	Pid      int
	keep     bool
	logPath  string
	secret   string
	exited   chan struct{}
	// CAs trusts the dev CA (nil without TLS).
	CAs *x509.CertPool
	// DevicePW[i] is users[i]'s device password (DevicePasswords of them).
	DevicePW []string
	// tlsFiles: dev CA, certificate and key for the config.
	tlsFiles *tlsutil.DevCertResult
	// bin, cfgPath and log are what Restart needs.
	bin, cfgPath string
	log          func(format string, a ...any)
}

// freePort is a variable so a test can hand out a port already taken.
var freePort = func() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// moduleRoot finds the duebridge module above the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/duebridge/duebridge\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the duebridge module: give --bin or --src")
		}
		dir = parent
	}
}

// buildServer builds cmd/duebridge into dir.
func buildServer(ctx context.Context, src, dir string) (string, error) {
	if src == "" {
		var err error
		if src, err = moduleRoot(); err != nil {
			return "", err
		}
	}
	out := filepath.Join(dir, "duebridge")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/duebridge")
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/duebridge: %v\n%s", err, b)
	}
	return out, nil
}

// hashPassword hashes pw the way the config wants it.
func hashPassword(kind, pw string) (string, error) {
	switch kind {
	case "argon2id", "":
		return password.Hash(pw)
	case "bcrypt":
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.DefaultCost)
		return string(h), err
	case "bcrypt-min":
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		return string(h), err
	}
	return "", fmt.Errorf("--hash %q: want argon2id, bcrypt or bcrypt-min", kind)
}

func yamlQuote(s string) string { return strconv.Quote(s) }

// writeConfig writes the YAML config for o into dir.
func writeConfig(dir string, o serverOpts, httpPort, imapPort int, tf *tlsutil.DevCertResult) (string, error) {
	hash, err := hashPassword(o.Hash, o.Password)
	if err != nil {
		return "", err
	}
	var prepHash string
	if o.PrepPass != "" {
		if prepHash, err = hashPassword(o.Hash, o.PrepPass); err != nil {
			return "", err
		}
	}
	path := filepath.Join(dir, "duebridge.yaml")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	fmt.Fprintf(w, "# written by duebridge-load; throwaway\n")
	fmt.Fprintf(w, "data_dir: %s\nstore: sqlite\n", yamlQuote(filepath.Join(dir, "data")))
	scheme := "http"
	if tf != nil {
		scheme = "https"
		fmt.Fprintf(w, "tls:\n  cert_file: %s\n  key_file: %s\n  ca_file: %s\n",
			yamlQuote(tf.ServerCertFile), yamlQuote(tf.ServerKeyFile), yamlQuote(tf.CACertFile))
		if o.TicketKeys {
			keys, err := writeTicketKeys(filepath.Join(dir, "certs"))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(w, "  ticket_keys_file: %s\n", yamlQuote(keys))
		}
	}
	fmt.Fprintf(w, "http:\n  listen: 127.0.0.1:%d\n  public_url: %s://127.0.0.1:%d\n", httpPort, scheme, httpPort)
	if imapPort > 0 {
		fmt.Fprintf(w, "imap:\n  listen: 127.0.0.1:%d\n", imapPort)
	}
	conns := o.ConnsPerUser
	if conns <= 0 {
		conns = 20
	}
	fmt.Fprintf(w, "limits:\n  imap_conns_per_user: %d\n", conns)
	fmt.Fprintf(w, "sources:\n  - name: %s\n    secret: %s\n", yamlQuote(o.Source), yamlQuote(o.Secret))
	fmt.Fprintf(w, "users:\n")
	for _, u := range o.Users {
		fmt.Fprintf(w, "  - name: %s\n    email: %s\n    password_hash: %s\n", yamlQuote(u), yamlQuote(u+"@load.test"), yamlQuote(hash))
		if prepHash != "" {
			fmt.Fprintf(w, "    app_passwords:\n      - name: prep\n        hash: %s\n", yamlQuote(prepHash))
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// startServer writes a config for o into a temp dir and starts duebridge
// serve on loopback ports, data in the same temp dir.
func startServer(ctx context.Context, o serverOpts) (*child, error) {
	dir, err := os.MkdirTemp("", "duebridge-load-")
	if err != nil {
		return nil, err
	}
	c := &child{dir: dir, keep: o.Keep, exited: make(chan struct{})}
	fail := func(err error) (*child, error) {
		c.Stop()
		return nil, err
	}
	bin := o.Bin
	if bin == "" {
		o.Log("building cmd/duebridge into %s", dir)
		if bin, err = buildServer(ctx, o.Src, dir); err != nil {
			return fail(err)
		}
	}
	if o.Secret == "" {
		b := make([]byte, 16)
		rand.Read(b)
		o.Secret = hex.EncodeToString(b)
	}
	c.secret = o.Secret
	t0 := time.Now()
	if o.TLS {
		if c.tlsFiles, err = tlsutil.DevCert([]string{"127.0.0.1", "localhost"}, filepath.Join(dir, "certs"), time.Time{}); err != nil {
			return fail(fmt.Errorf("dev CA: %w", err))
		}
		c.CAs = x509.NewCertPool()
		c.CAs.AddCert(c.tlsFiles.CA)
	}
	c.logPath = filepath.Join(dir, "serve.log")
	// The ports are free when picked, but another process may take one
	// before the server binds it (tests start servers side by side): then
	// pick others and start again.
	for attempt := 1; ; attempt++ {
		httpPort, err := freePort()
		if err != nil {
			return fail(err)
		}
		imapPort := 0
		if o.IMAP {
			if imapPort, err = freePort(); err != nil {
				return fail(err)
			}
		}
		cfgPath, err := writeConfig(dir, o, httpPort, imapPort, c.tlsFiles)
		if err != nil {
			return fail(err)
		}
		if attempt == 1 {
			o.Log("config with %d users (%s hashes) written in %v", len(o.Users), o.Hash, time.Since(t0).Round(time.Millisecond))
		}
		if o.DevicePasswords > 0 && attempt == 1 {
			t1 := time.Now()
			if c.DevicePW, err = issueDevicePasswords(ctx, cfgPath, o.Users[:min(o.DevicePasswords, len(o.Users))]); err != nil {
				return fail(err)
			}
			o.Log("%d device passwords issued in %v", len(c.DevicePW), time.Since(t1).Round(time.Millisecond))
		}
		c.bin, c.cfgPath, c.log = bin, cfgPath, o.Log
		c.HTTPURL = fmt.Sprintf("http://127.0.0.1:%d", httpPort)
		if c.CAs != nil {
			c.HTTPURL = fmt.Sprintf("https://127.0.0.1:%d", httpPort)
		}
		c.IMAPAddr = ""
		if imapPort > 0 {
			c.IMAPAddr = fmt.Sprintf("127.0.0.1:%d", imapPort)
		}
		os.Remove(c.logPath) // this attempt's log only
		err = c.run(ctx)
		if err == nil {
			break
		}
		if attempt < 5 && strings.Contains(tail(c.logPath, 2000), "address already in use") {
			o.Log("a port was taken before duebridge bound it; starting again on others")
			continue
		}
		return fail(err)
	}
	if c.IMAPAddr != "" {
		conn, err := net.DialTimeout("tcp", c.IMAPAddr, time.Second)
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			conn, err = net.DialTimeout("tcp", c.IMAPAddr, time.Second)
		}
		if err != nil {
			o.Log("IMAP is not served on %s (not mounted in serve yet?): IMAP parts are skipped", c.IMAPAddr)
			c.IMAPAddr = ""
		} else {
			conn.Close()
		}
	}
	o.Log("duebridge serve pid %d ready in %v: %s imap %s", c.Pid, time.Since(t0).Round(time.Millisecond), c.HTTPURL, c.IMAPAddr)
	return c, nil
}

// run starts duebridge serve on c's config (appending to serve.log) and
// waits until /healthz answers.
func (c *child) run(ctx context.Context) error {
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(c.bin, "serve", "--config", c.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan struct{})
	c.cmd, c.Pid, c.exited = cmd, cmd.Process.Pid, exited
	go func() { cmd.Wait(); logf.Close(); close(exited) }()
	hc := &http.Client{Timeout: 2 * time.Second}
	if c.CAs != nil {
		hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.CAs}}
	}
	// Ready: /healthz answers. A config of 100,000 users takes a while.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		select {
		case <-exited:
			return fmt.Errorf("duebridge serve exited at start; log:\n%s", tail(c.logPath, 2000))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		resp, err := hc.Get(c.HTTPURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("duebridge serve not ready after 5 min; log:\n%s", tail(c.logPath, 2000))
		}
	}
}

// Restart kills the server (SIGKILL: a crash, nothing flushed beyond what
// the store committed) and starts it again on the same config, data and
// ports; its caches, login state and TLS ticket keys start empty.
func (c *child) Restart(ctx context.Context) error {
	t0 := time.Now()
	c.cmd.Process.Kill()
	<-c.exited
	if err := c.run(ctx); err != nil {
		return err
	}
	c.log("duebridge serve restarted (pid %d) in %v", c.Pid, time.Since(t0).Round(time.Millisecond))
	return nil
}

// issueDevicePasswords gives each user a device password, in the store the
// config names, the way /setup does (the server is not running yet).
func issueDevicePasswords(ctx context.Context, cfgPath string, users []string) ([]string, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	var st store.Store
	svc, err := bridge.New(func(o store.Options) (store.Store, error) {
		var err error
		st, err = store.Open(ctx, cfg.Store, cfg.StoreSource(), o)
		return st, err
	}, cfg, bridge.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, fmt.Errorf("open the store for device passwords: %w", err)
	}
	defer st.Close()
	out := make([]string, len(users))
	for i, u := range users {
		if _, out[i], err = svc.IssueDevicePassword(ctx, u, "load phone"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// cleanEnv is the environment without DUEBRIDGE_* overrides, so the
// written config is what runs.
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

// Stop ends the child (SIGTERM, then SIGKILL after 20 s) and removes the
// temp dir unless asked to keep it.
func (c *child) Stop() {
	if c == nil {
		return
	}
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(20 * time.Second):
			c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if c.keep {
		fmt.Fprintf(os.Stderr, "kept %s\n", c.dir)
		return
	}
	os.RemoveAll(c.dir)
}

// writeTicketKeys writes a session ticket key file (one base64 key of 32
// random bytes, mode 0600) into dir and returns its path.
func writeTicketKeys(dir string) (string, error) {
	var key [32]byte
	rand.Read(key[:])
	path := filepath.Join(dir, "ticket.keys")
	if err := os.WriteFile(path, []byte(base64.StdEncoding.EncodeToString(key[:])+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("ticket key file: %w", err)
	}
	return path, nil
}
