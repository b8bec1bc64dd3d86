package tlsutil

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often a Reloader looks at its files unless
// WithCheckInterval says otherwise.
const DefaultCheckInterval = 5 * time.Second

// defaultSettle: a failed load of files modified this recently is retried
// at the next check instead of being reported, because a writer replacing
// the two files one after the other briefly leaves a mismatched pair.
const defaultSettle = 2 * time.Second

// Reloader serves a certificate and key from files (tls.cert_file and
// tls.key_file) and notices when they are replaced: by its GetCertificate at
// most once per check interval, by Run every interval, or on Reload. A new
// pair is used only when it parses, the key belongs to the certificate and
// the certificate has not expired; otherwise the previous certificate stays
// and the failure is logged once per change of the files.
//
// All methods are safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	settle            time.Duration
	log               *slog.Logger
	fileCheck         // interval, clock, last check

	cur atomic.Pointer[loadedPair]

	mu   sync.Mutex // serialises checks and loads; guards seen
	seen fileState  // state of the files at the last completed check
}

type loadedPair struct {
	cert            *tls.Certificate
	root            *x509.Certificate // self-signed CA at the end of the chain, if any
	certSum, keySum [sha256.Size]byte
}

// ReloaderOption adjusts a Reloader.
type ReloaderOption func(*Reloader)

// WithLogger sets where a Reloader reports reloads and refused files
// (default: slog.Default()).
func WithLogger(l *slog.Logger) ReloaderOption {
	return func(r *Reloader) {
		if l != nil {
			r.log = l
		}
	}
}

// WithCheckInterval sets how often the files are looked at (their size,
// modification time and identity; they are read only when these change).
// GetCertificate checks at most once per interval; zero makes it check on
// every handshake, a negative value never (then only Run, with
// DefaultCheckInterval, and Reload do).
func WithCheckInterval(d time.Duration) ReloaderOption {
	return func(r *Reloader) { r.interval = d }
}

// NewReloader loads certFile and keyFile. The certificate file holds the
// leaf certificate first, then any chain (as DevCert's server.crt does); the
// key file holds a PKCS#8, SEC 1 or PKCS#1 PEM key. It fails, naming the
// file, when the pair cannot be used. An expired certificate is only logged
// here, so the server still starts.
func NewReloader(certFile, keyFile string, opts ...ReloaderOption) (*Reloader, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls: both cert_file and key_file must be set")
	}
	r := &Reloader{
		certFile:  certFile,
		keyFile:   keyFile,
		settle:    defaultSettle,
		log:       slog.Default(),
		fileCheck: fileCheck{interval: DefaultCheckInterval, now: time.Now},
	}
	for _, o := range opts {
		o(r)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.stat()
	p, err := r.read(st, true)
	if err != nil {
		return nil, err
	}
	r.cur.Store(p)
	r.seen = st
	r.started()
	return r, nil
}

// GetCertificate serves the current certificate; use it as
// tls.Config.GetCertificate. At most once per check interval it first looks
// whether the files changed and, if they did, loads them.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.maybeCheck()
	return r.cur.Load().cert, nil
}

// Certificate returns the certificate currently served (with its private
// key and parsed Leaf). Do not modify it.
func (r *Reloader) Certificate() *tls.Certificate { return r.cur.Load().cert }

// Leaf returns the parsed leaf certificate currently served. Do not modify it.
func (r *Reloader) Leaf() *x509.Certificate { return r.cur.Load().cert.Leaf }

// Root returns the self-signed CA certificate at the end of the served chain
// (DevCert's server.crt carries it), or nil when the file has none. The setup
// profile can offer it to phones.
func (r *Reloader) Root() *x509.Certificate { return r.cur.Load().root }

// TLSConfig returns ServerConfig(r.GetCertificate).
func (r *Reloader) TLSConfig() *tls.Config { return ServerConfig(r.GetCertificate) }

// Reload reads the files now, whether or not they look changed, and switches
// to them if they form a usable pair. On error the previous certificate
// stays; the error names the file. It does not log failures (the caller has
// the error); a successful switch to a different certificate is logged.
func (r *Reloader) Reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started()
	st := r.stat()
	p, err := r.read(st, false)
	r.seen = st
	if err != nil {
		return err
	}
	r.swap(p)
	return nil
}

// Run checks the files every check interval (DefaultCheckInterval when the
// interval is not positive) until ctx is done, then returns nil. Running it
// is optional: GetCertificate checks too, but only when handshakes happen.
func (r *Reloader) Run(ctx context.Context) error {
	d := r.interval
	if d <= 0 {
		d = DefaultCheckInterval
	}
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			r.mu.Lock()
			r.started()
			r.checkLocked()
			r.mu.Unlock()
		}
	}
}

func (r *Reloader) maybeCheck() {
	if r.lockDue(&r.mu) {
		defer r.mu.Unlock()
		r.checkLocked()
	}
}

// checkLocked loads the files if they changed since the last check.
func (r *Reloader) checkLocked() {
	st := r.stat()
	if st.equal(r.seen) {
		return
	}
	p, err := r.read(st, false)
	if err != nil {
		if age := r.now().Sub(st.newest()); age > -r.settle && age < r.settle {
			// Probably caught in the middle of a replacement: retry at
			// the next check without reporting. (Modification times far
			// in the future, from a skewed clock, do not hold this off.)
			r.log.Debug("TLS certificate files changing; retrying", "cert_file", r.certFile,
				"key_file", r.keyFile, "error", err)
			return
		}
		r.seen = st
		r.log.Error("TLS certificate files changed but cannot be used; keeping the previous certificate",
			"cert_file", r.certFile, "key_file", r.keyFile, "error", err,
			"serving_serial", serialHex(r.cur.Load().cert.Leaf))
		return
	}
	r.seen = st
	r.swap(p)
}

// swap installs p unless it is the pair already served (files touched or
// rewritten with the same content).
func (r *Reloader) swap(p *loadedPair) {
	old := r.cur.Load()
	if old != nil && old.certSum == p.certSum && old.keySum == p.keySum {
		return
	}
	r.cur.Store(p)
	leaf := p.cert.Leaf
	r.log.Info("TLS certificate loaded", "cert_file", r.certFile, "serial", serialHex(leaf),
		"dns_names", leaf.DNSNames, "ip_addresses", leaf.IPAddresses,
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}

// read loads and checks the pair. initial relaxes the expiry check to a
// warning so that a server still starts.
func (r *Reloader) read(st fileState, initial bool) (*loadedPair, error) {
	if st.certErr != nil {
		return nil, st.certErr
	}
	if st.keyErr != nil {
		return nil, st.keyErr
	}
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		return nil, err
	}
	p := &loadedPair{certSum: sha256.Sum256(certPEM), keySum: sha256.Sum256(keyPEM)}
	if old := r.cur.Load(); old != nil && old.certSum == p.certSum && old.keySum == p.keySum {
		return old, nil
	}

	chain, err := parseCertificatesPEM(certPEM)
	if err != nil {
		return nil, &fs.PathError{Op: "parse certificate", Path: r.certFile, Err: err}
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, &fs.PathError{Op: "parse private key", Path: r.keyFile, Err: err}
	}
	leaf := chain[0]
	if !publicKeysEqual(key.Public(), leaf.PublicKey) {
		return nil, &fs.PathError{Op: "use private key", Path: r.keyFile,
			Err: fmt.Errorf("does not belong to the certificate in %s", r.certFile)}
	}
	if leaf.BasicConstraintsValid && leaf.IsCA {
		return nil, &fs.PathError{Op: "use certificate", Path: r.certFile,
			Err: errors.New("first certificate is a CA, not a server certificate (the leaf must come first)")}
	}
	now := r.now()
	if now.After(leaf.NotAfter) {
		msg := "expired " + leaf.NotAfter.UTC().Format(time.RFC3339)
		if !initial {
			return nil, &fs.PathError{Op: "use certificate", Path: r.certFile, Err: errors.New(msg)}
		}
		r.log.Warn("TLS certificate has expired; clients will refuse it", "cert_file", r.certFile,
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	} else if now.Before(leaf.NotBefore) {
		r.log.Warn("TLS certificate is not valid yet; check the clock", "cert_file", r.certFile,
			"not_before", leaf.NotBefore.UTC().Format(time.RFC3339))
	}

	cert := &tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	p.cert = cert
	if len(chain) > 1 {
		last := chain[len(chain)-1]
		if last.IsCA && bytes.Equal(last.RawIssuer, last.RawSubject) && last.CheckSignatureFrom(last) == nil {
			p.root = last
		}
	}
	return p, nil
}

// fileState is what a check compares: identity, size and modification time
// of both files (a rename-replace changes the identity even when size and
// time stay the same), or the error stat gave.
type fileState struct {
	cert, key       fs.FileInfo
	certErr, keyErr error
}

func (r *Reloader) stat() fileState {
	var st fileState
	st.cert, st.certErr = os.Stat(r.certFile)
	st.key, st.keyErr = os.Stat(r.keyFile)
	return st
}

func (s fileState) equal(o fileState) bool {
	return sameInfo(s.cert, o.cert) && sameInfo(s.key, o.key) &&
		sameErr(s.certErr, o.certErr) && sameErr(s.keyErr, o.keyErr)
}

func (s fileState) newest() time.Time {
	var t time.Time
	for _, fi := range []fs.FileInfo{s.cert, s.key} {
		if fi != nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}

func sameInfo(a, b fs.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && a.Mode() == b.Mode()
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Error() == b.Error()
}

func serialHex(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return fmt.Sprintf("%X", c.SerialNumber)
}
