package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/duebridge/duebridge/tlsutil"
)

// The floor of the capacity run (--floor go|haproxy): the same phones, the
// same open-loop schedule and the same client code as a capacity run, but
// against a server that does nothing but TLS and HTTP and answers every
// request with one home answer recorded from a real duebridge. What such a
// server keeps up with on this machine bounds what any CalDAV server can:
// if the floor is below a target, the target is out of reach here.
//
//   - go: a separate process (this binary's hidden floor-serve command,
//     so its CPU is measured apart from the phones' as duebridge's is) with
//     duebridge's TLS configuration (tlsutil: the same certificate files,
//     session ticket keys, TLS 1.2+ AEAD suites, full-size records) and
//     Go's net/http.
//   - haproxy: HAProxy (/usr/sbin/haproxy, --haproxy) with TLS 1.2+,
//     session tickets, one thread per core and `http-request return` of
//     the recorded answer. Debian's 2.6 uses OpenSSL 3.0, which has no
//     ML-KEM: the phones offer X25519MLKEM768 and X25519, HAProxy picks
//     X25519, so its handshakes are cheaper than Go's (server and phone).

// floorServeCmd is the hidden first argument that makes this binary the
// Go floor server instead of the load tool.
const floorServeCmd = "floor-serve"

// floorAnswer is the recorded home answer.
type floorAnswer struct {
	status int
	header http.Header // without Date (each server writes its own)
	body   []byte
}

// writeFile writes the answer as an HTTP/1.1 response, the form it came in.
func (a *floorAnswer) writeFile(path string) error {
	var b bytes.Buffer
	resp := &http.Response{StatusCode: a.status, ProtoMajor: 1, ProtoMinor: 1, Header: a.header,
		ContentLength: int64(len(a.body)), Body: io.NopCloser(bytes.NewReader(a.body))}
	if err := resp.Write(&b); err != nil {
		return err
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

func readFloorAnswer(path string) (*floorAnswer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	resp, err := http.ReadResponse(bufio.NewReader(f), nil)
	if err != nil {
		return nil, fmt.Errorf("read the recorded answer %s: %w", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the recorded answer %s: %w", path, err)
	}
	return &floorAnswer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// ServeHTTP reads the request, as any server does, and answers the
// recording.
func (a *floorAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	h := w.Header()
	for k, v := range a.header {
		h[k] = v
	}
	w.WriteHeader(a.status)
	w.Write(a.body)
}

// floorServeMain runs the Go floor server when args (os.Args) start with
// floorServeCmd, and reports whether they did (then it has exited).
func floorServeMain(args []string) bool {
	if len(args) < 2 || args[1] != floorServeCmd {
		return false
	}
	if err := floorServe(args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "duebridge-load floor-serve:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// floorServe is the Go floor server: `duebridge-load floor-serve --listen
// ADDR --cert F --key F --answer F` until SIGTERM.
func floorServe(args []string) error {
	fs := flag.NewFlagSet(floorServeCmd, flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address")
	cert := fs.String("cert", "", "certificate file (chain)")
	key := fs.String("key", "", "key file")
	answer := fs.String("answer", "", "the recorded answer (an HTTP/1.1 response)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := readFloorAnswer(*answer)
	if err != nil {
		return err
	}
	certs, err := tlsutil.NewReloader(*cert, *key)
	if err != nil {
		return err
	}
	// What duebridge serve does with certificate files (cmd/duebridge
	// certSource): tlsutil's config, its ticket keys, h2 and http/1.1.
	conf := tlsutil.ServerConfig(certs.GetCertificate)
	tlsutil.NewTicketKeys(0, -1, nil).Install(conf)
	conf.NextProtos = []string{"h2", "http/1.1"}
	// No TCP keep-alive and duebridge's timeouts, as its HTTP listener.
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(tls.NewListener(ln, conf)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// floorServer is a running floor: the Go one or HAProxy.
type floorServer struct {
	kind    string
	cmd     *exec.Cmd
	url     string
	logPath string
	exited  chan struct{}
}

// startFloor starts the floor of kind on a free loopback port with the
// dev certificate of tf and the answer at answerPath; files go to dir.
func startFloor(ctx context.Context, kind, haproxy, dir string, tf *tlsutil.DevCertResult, a *floorAnswer, answerPath string) (*floorServer, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var cmd *exec.Cmd
	switch kind {
	case "go":
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd = exec.Command(self, floorServeCmd, "--listen", addr, "--cert", tf.ServerCertFile, "--key", tf.ServerKeyFile, "--answer", answerPath)
	case "haproxy":
		cfg, err := writeHAProxyConfig(dir, addr, tf, a)
		if err != nil {
			return nil, err
		}
		// -db: in the foreground, one process (its threads), so its CPU is
		// that of the pid we start.
		cmd = exec.Command(haproxy, "-db", "-f", cfg)
	default:
		return nil, fmt.Errorf("--floor %q: want go or haproxy", kind)
	}
	f := &floorServer{kind: kind, cmd: cmd, url: "https://" + addr, logPath: filepath.Join(dir, "floor-"+kind+".log"), exited: make(chan struct{})}
	logf, err := os.Create(f.logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start the %s floor: %w", kind, err)
	}
	go func() { cmd.Wait(); logf.Close(); close(f.exited) }()
	// Ready: a TCP connection is accepted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-f.exited:
			return nil, fmt.Errorf("the %s floor exited at start; log:\n%s", kind, tail(f.logPath, 2000))
		case <-ctx.Done():
			f.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return f, nil
		}
		if time.Now().After(deadline) {
			f.stop()
			return nil, fmt.Errorf("the %s floor does not listen on %s after 30 s; log:\n%s", kind, addr, tail(f.logPath, 2000))
		}
	}
}

// stop ends the floor (SIGTERM, SIGKILL after 10 s).
func (f *floorServer) stop() {
	if f == nil {
		return
	}
	f.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-f.exited:
	case <-time.After(10 * time.Second):
		f.cmd.Process.Kill()
		<-f.exited
	}
}

// writeHAProxyConfig writes HAProxy's config, its certificate (chain and
// key in one PEM, as it wants them) and the answer's body into dir.
// Records: HAProxy sizes them itself (OpenSSL's 16 KB maximum).
func writeHAProxyConfig(dir, addr string, tf *tlsutil.DevCertResult, a *floorAnswer) (string, error) {
	certPEM, err := os.ReadFile(tf.ServerCertFile)
	if err != nil {
		return "", err
	}
	keyPEM, err := os.ReadFile(tf.ServerKeyFile)
	if err != nil {
		return "", err
	}
	pem := filepath.Join(dir, "haproxy.pem")
	if err := os.WriteFile(pem, append(append(certPEM, '\n'), keyPEM...), 0o600); err != nil {
		return "", err
	}
	bodyPath := filepath.Join(dir, "answer.body")
	if err := os.WriteFile(bodyPath, a.body, 0o644); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# written by duebridge-load --floor haproxy; throwaway\n")
	fmt.Fprintf(&b, "global\n")
	fmt.Fprintf(&b, "\tnbthread %d\n", runtime.NumCPU())
	// 2 sockets per connection must stay within RLIMIT_NOFILE (20,000 here).
	fmt.Fprintf(&b, "\tmaxconn 8000\n")
	// http-request return sends its answer from one buffer: it must fit.
	fmt.Fprintf(&b, "\ttune.bufsize %d\n", max(16384, 2*len(a.body)+8192))
	fmt.Fprintf(&b, "\tssl-default-bind-options ssl-min-ver TLSv1.2\n")
	fmt.Fprintf(&b, "defaults\n\tmode http\n\ttimeout connect 5s\n\ttimeout client 60s\n\ttimeout server 60s\n\ttimeout http-request 10s\n")
	fmt.Fprintf(&b, "frontend floor\n")
	// TLS session tickets are on by default (OpenSSL's stateless tickets).
	quoted := func(s string) string {
		q, qerr := haQuote(s)
		if qerr != nil && err == nil {
			err = qerr
		}
		return q
	}
	fmt.Fprintf(&b, "\tbind %s ssl crt %s alpn h2,http/1.1\n", addr, quoted(pem))
	fmt.Fprintf(&b, "\thttp-request return status %d", a.status)
	if ct := a.header.Get("Content-Type"); ct != "" {
		fmt.Fprintf(&b, " content-type %s", quoted(ct))
	}
	fmt.Fprintf(&b, " file %s", quoted(bodyPath))
	for k, vs := range a.header {
		switch k {
		case "Content-Type", "Content-Length", "Date", "Connection", "Transfer-Encoding":
			continue // HAProxy writes these itself
		}
		for _, v := range vs {
			// hdr values are log-format strings: % is %%.
			fmt.Fprintf(&b, " hdr %s %s", k, quoted(strings.ReplaceAll(v, "%", "%%")))
		}
	}
	if err != nil {
		return "", err
	}
	b.WriteString("\n")
	path := filepath.Join(dir, "haproxy.cfg")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// haQuote quotes s for HAProxy's config: single quotes take everything
// literally, so s must not contain one (nor a line break).
func haQuote(s string) (string, error) {
	if strings.ContainsAny(s, "'\r\n") {
		return "", fmt.Errorf("HAProxy config: cannot quote %q", s)
	}
	return "'" + s + "'", nil
}

// recordFloor is the floor's first step: against the real duebridge
// started for it, seed the first phone's lists, record its home answer
// (one poll with the phones' client), stop duebridge, start the floor and
// point the phones at it. Its lists never change there, so every later
// poll is one home PROPFIND: a capacity run's with --phone-change 0.
func (r *phoneRun) recordFloor(ctx context.Context) error {
	e, o := r.e, r.e.o
	if e.child == nil || e.child.tlsFiles == nil {
		return errors.New("--floor needs --start and --tls")
	}
	np := r.np
	r.np = 1 // one user's lists suffice for the recording
	err := r.seed(ctx)
	r.np = np
	if err != nil {
		return err
	}
	if err := r.discover(ctx); err != nil {
		return err
	}
	p0 := r.newPhone(0)
	a0, err := r.floorPoll(ctx, p0, nil)
	if err != nil {
		return fmt.Errorf("recording the home answer: %w", err)
	}
	a := &a0.floorAnswer
	if a.status != http.StatusMultiStatus {
		return fmt.Errorf("recording the home answer: HTTP %d %s", a.status, truncate(string(a.body), 200))
	}
	cols, err := parseHome(a.body)
	if err != nil {
		return fmt.Errorf("recording the home answer: %w", err)
	}
	if len(cols) < 2*o.Projects {
		return fmt.Errorf("recording the home answer: %d lists, want %d", len(cols), 2*o.Projects)
	}
	a.header.Del("Date")
	dir := filepath.Join(e.child.dir, "floor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	answerPath := filepath.Join(dir, "answer.http")
	if err := a.writeFile(answerPath); err != nil {
		return err
	}
	e.rep.fig("floor: recorded home answer (body)", float64(len(a.body)), "bytes")
	e.logf("recorded the home answer of %s (HTTP %d, %d bytes) in %s; stopping duebridge", e.users[0], a.status, len(a.body), answerPath)

	// duebridge stops (its temp dir, with the certificates, stays until the end).
	e.child.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.child.exited:
	case <-time.After(20 * time.Second):
		e.child.cmd.Process.Kill()
		<-e.child.exited
	}
	f, err := startFloor(ctx, o.Floor, o.HAProxy, dir, e.child.tlsFiles, a, answerPath)
	if err != nil {
		return err
	}
	r.floor = f
	e.logf("the %s floor serves the recording on %s (pid %d)", o.Floor, f.url, f.cmd.Process.Pid)
	e.httpURL, e.pid, e.hook, e.metrics = f.url, f.cmd.Process.Pid, nil, false
	if e.base, err = url.Parse(f.url); err != nil {
		return err
	}
	e.rep.Target = f.url
	// The floor must answer what was recorded, to the byte, on a full and
	// on a resumed handshake.
	tickets := tls.NewLRUClientSessionCache(1)
	resumed := 0
	for range 2 {
		got, err := r.floorPoll(ctx, p0, tickets)
		if err != nil {
			return fmt.Errorf("the %s floor: %w", o.Floor, err)
		}
		if got.status != a.status || !bytes.Equal(got.body, a.body) || got.header.Get("Content-Type") != a.header.Get("Content-Type") {
			return fmt.Errorf("the %s floor answers HTTP %d, %d bytes (%s), not the recorded HTTP %d, %d bytes (%s)", o.Floor,
				got.status, len(got.body), got.header.Get("Content-Type"), a.status, len(a.body), a.header.Get("Content-Type"))
		}
		if got.resumed {
			resumed++
		}
	}
	e.rep.fig("floor: check polls answered the recording to the byte", 2, "")
	e.rep.fig("floor: check polls resumed (the second should)", float64(resumed), "")
	return nil
}

// recordedPoll is one home poll's answer as the phone got it.
type recordedPoll struct {
	floorAnswer
	resumed bool
}

// floorPoll is a home poll of p on the phones' client (a new connection,
// resumed from tickets if it holds p's ticket), its answer kept whole.
func (r *phoneRun) floorPoll(ctx context.Context, p *phone, tickets tls.ClientSessionCache) (*recordedPoll, error) {
	dc, done := r.client(p, tickets)
	defer done()
	var got recordedPoll
	dc.onTLS = func(cs *tls.ConnectionState) { got.resumed = cs != nil && cs.DidResume }
	var buf bytes.Buffer
	code, hdr, err := dc.doInto(ctx, &buf, "PROPFIND", p.home, "1", homePropfindBodyBytes)
	if err != nil {
		return nil, err
	}
	got.status, got.header, got.body = code, hdr.Clone(), buf.Bytes()
	return &got, nil
}

// stopFloor ends the floor after the run, reporting its peak RSS first
// (run reports the server's from its pid, which is gone then).
func (r *phoneRun) stopFloor() {
	if r.floor == nil {
		return
	}
	e := r.e
	if m := readMem(e.pid); m.HWM > 0 {
		e.rep.fig("server peak RSS (VmHWM)", float64(m.HWM>>20), "MiB")
	}
	e.pid = 0
	r.floor.stop()
	r.floor = nil
}

// floorLabel prefixes the timed phase's figures in a floor run.
func floorLabel(o *options) string {
	if o.Floor == "" {
		return ""
	}
	return "floor " + o.Floor + ": "
}

// parseFloor checks --floor against the other flags.
func parseFloor(o *options) error {
	if o.Floor == "" {
		return nil
	}
	switch o.Floor {
	case "go", "haproxy":
	default:
		return fmt.Errorf("--floor %q: want go or haproxy", o.Floor)
	}
	if o.Scenario != "phones" || !o.Start || !o.TLS {
		return errors.New("--floor needs the phones scenario with --start and --tls (the answer is recorded from duebridge, with its dev CA)")
	}
	if o.RestartFor > 0 {
		return errors.New("--floor has nothing to restart: no --restart-duration")
	}
	// Every phone logs in with its device password (the floor checks
	// none; the request is as long as in a capacity run).
	o.ColdCompare = false
	return nil
}
