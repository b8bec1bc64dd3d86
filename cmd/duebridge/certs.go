package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/metricsreg"
	"github.com/duebridge/duebridge/tlsutil"
)

// certSource is where every TLS listener gets its certificate: the files
// tls.cert_file/tls.key_file (re-read when they change), certificates from
// Let's Encrypt for tls.acme_hosts, or both (ACME for its names, the files
// for any other name, such as a LAN address).
type certSource struct {
	files      *tlsutil.Reloader // nil without cert_file
	acme       *autocert.Manager // nil without acme_hosts
	acmeHosts  map[string]bool
	publicHost string
	// tickets are the session ticket keys every listener shares, so a
	// phone resumes on HTTPS, IMAPS and submission alike.
	tickets *tlsutil.TicketKeys
	// lastPublic is the certificate last served for the public host name;
	// with ACME it is the one that signs setup profiles (asking the
	// manager could start an issuance in the middle of a page request).
	lastPublic atomic.Pointer[tls.Certificate]
}

// newCertSource returns nil (and no error) when the config has no TLS.
// reg (nil: none) gets the ticket key file's error counter.
func newCertSource(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*certSource, error) {
	if !cfg.TLS.Enabled() {
		return nil, nil
	}
	c := &certSource{publicHost: strings.ToLower(cfg.HTTP.PublicURL.Hostname()),
		tickets: tlsutil.NewTicketKeys(0, -1, nil)}
	if path := cfg.TLS.TicketKeysFile; path != "" {
		// Shared with other replicas and kept across restarts, so a
		// phone resumes wherever its next poll lands (TLS 1.3 only).
		errs := metricsreg.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "duebridge_tls_ticket_keys_file_errors_total",
			Help: "Changes of tls.ticket_keys_file that could not be used (the previous keys stay).",
		}))
		f, err := tlsutil.OpenTicketKeyFile(path, tlsutil.TicketFileOptions{Logger: log,
			OnError: func(error) { errs.Inc() }})
		if err != nil {
			return nil, fmt.Errorf("ticket_keys_file: %w", err)
		}
		c.tickets.UseFile(f)
	}
	if cfg.TLS.CertFile != "" {
		r, err := tlsutil.NewReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, tlsutil.WithLogger(log))
		if err != nil {
			return nil, err
		}
		c.files = r
	}
	if len(cfg.TLS.ACMEHosts) > 0 {
		c.acmeHosts = map[string]bool{}
		for _, h := range cfg.TLS.ACMEHosts {
			c.acmeHosts[strings.ToLower(h)] = true
		}
		// The cache keeps the account key and certificates across
		// restarts; without it every start would ask for new ones and
		// soon hit Let's Encrypt's rate limits.
		dir := filepath.Join(cfg.DataDir, "acme")
		c.acme = &autocert.Manager{
			Prompt:     autocert.AcceptTOS,
			HostPolicy: autocert.HostWhitelist(cfg.TLS.ACMEHosts...),
			Cache:      autocert.DirCache(dir),
			Email:      cfg.TLS.ACMEEmail,
		}
		log.Info("TLS certificates from ACME (TLS-ALPN-01: the HTTPS listener must be reachable on port 443)",
			"hosts", cfg.TLS.ACMEHosts, "cache", dir)
	}
	return c, nil
}

// GetCertificate is tls.Config.GetCertificate for every listener.
func (c *certSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	var (
		cert *tls.Certificate
		err  error
	)
	// ACME answers its own names and the TLS-ALPN-01 challenge (which
	// names the host being validated); the files answer everything else.
	if c.acme != nil && (c.files == nil || c.acmeHosts[name] || offersACMEALPN(hello)) {
		cert, err = c.acme.GetCertificate(hello)
	} else {
		cert, err = c.files.GetCertificate(hello)
	}
	if err != nil {
		return nil, fmt.Errorf("certificate for %q: %w", name, err)
	}
	if name == c.publicHost && !offersACMEALPN(hello) {
		c.lastPublic.Store(cert)
	}
	return cert, nil
}

func offersACMEALPN(hello *tls.ClientHelloInfo) bool {
	for _, p := range hello.SupportedProtos {
		if p == acme.ALPNProto {
			return true
		}
	}
	return false
}

// TLSConfig is the listeners' shared configuration (TLS 1.2+, AEAD only);
// nil without TLS.
func (c *certSource) TLSConfig() *tls.Config {
	if c == nil {
		return nil
	}
	conf := tlsutil.ServerConfig(c.GetCertificate)
	c.tickets.Install(conf) // the clones for each listener share the keys
	return conf
}

// HTTPNextProtos are the ALPN protocols of the HTTPS listener: HTTP/2 and
// HTTP/1.1, and with ACME the TLS-ALPN-01 challenge protocol.
func (c *certSource) HTTPNextProtos() []string {
	p := []string{"h2", "http/1.1"}
	if c != nil && c.acme != nil {
		p = append(p, acme.ALPNProto)
	}
	return p
}

// Certificate is the certificate that signs setup profiles: the one from
// the files, else the last one served for the public host; nil if none.
func (c *certSource) Certificate() *tls.Certificate {
	if c == nil {
		return nil
	}
	if c.files != nil {
		return c.files.Certificate()
	}
	return c.lastPublic.Load()
}

// Root is the self-made CA at the end of the served chain (a dev-cert
// server.crt carries it), for the setup profile; nil if none.
func (c *certSource) Root() *x509.Certificate {
	if c == nil || c.files == nil {
		return nil
	}
	return c.files.Root()
}
