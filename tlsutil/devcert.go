package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File names DevCert writes into its output directory.
const (
	CACertFileName     = "ca.crt"     // the local CA; install it on the phone
	CAKeyFileName      = "ca.key"     // the CA's private key (mode 0600); keep it to issue again
	ServerCertFileName = "server.crt" // server certificate followed by ca.crt (tls.cert_file)
	ServerKeyFileName  = "server.key" // the server's private key (mode 0600; tls.key_file)
)

const (
	// MaxServerValidity is the longest validity iOS and macOS accept for a
	// TLS server certificate issued after 2019-07-01 (NotAfter-NotBefore).
	MaxServerValidity = 825 * 24 * time.Hour
	// DefaultServerValidity is what DevCert uses unless told otherwise; it
	// keeps a margin below MaxServerValidity.
	DefaultServerValidity = 820 * 24 * time.Hour
	// DefaultCAValidity is the validity of a new local CA (about 10 years).
	DefaultCAValidity = 3652 * 24 * time.Hour

	// backdate is subtracted from "now" for NotBefore so that a phone whose
	// clock is a little behind still accepts a certificate made just now.
	backdate = time.Hour
	// minServerValidity: refuse to issue when a reused CA would cut the
	// server certificate shorter than this.
	minServerValidity = 24 * time.Hour
)

// DevCertOption adjusts DevCert.
type DevCertOption func(*devCertSettings)

type devCertSettings struct {
	serverValidity time.Duration
	caValidity     time.Duration
	caName         string
}

// WithServerValidity sets the server certificate's validity (NotAfter minus
// NotBefore). DevCert refuses values above MaxServerValidity.
func WithServerValidity(d time.Duration) DevCertOption {
	return func(s *devCertSettings) { s.serverValidity = d }
}

// WithCAValidity sets the validity of a newly created CA (a reused CA keeps
// its own).
func WithCAValidity(d time.Duration) DevCertOption {
	return func(s *devCertSettings) { s.caValidity = d }
}

// WithCAName sets the common name of a newly created CA, which is what the
// phone shows under Settings → General → About → Certificate Trust Settings.
func WithCAName(name string) DevCertOption {
	return func(s *devCertSettings) { s.caName = name }
}

// DevCertResult describes what DevCert wrote.
type DevCertResult struct {
	CACertFile     string // path of ca.crt
	CAKeyFile      string // path of ca.key
	ServerCertFile string // path of server.crt (leaf + CA)
	ServerKeyFile  string // path of server.key
	// CAReused is true when an existing ca.crt/ca.key pair was used, so
	// phones that already trust it need nothing new.
	CAReused bool
	CA       *x509.Certificate
	Leaf     *x509.Certificate // carries DNSNames and IPAddresses
}

// DevCert creates, in outDir, a local CA (ca.crt, ca.key) and a server
// certificate for hosts (server.crt with the leaf followed by the CA,
// server.key). An existing ca.crt/ca.key pair in outDir is reused, so
// issuing again for new names keeps the trust phones already have; the server
// files are always replaced. now is the issuing time (the zero time means
// time.Now()).
//
// Each host is a DNS name (a leading "*." makes a wildcard) or an IP address
// (IPv6 with or without brackets); names go only into the subjectAltName. The
// server certificate uses an ECDSA P-256 key, extended key usage serverAuth,
// and a validity of at most 825 days, as iOS requires. The CA is an ECDSA
// P-256 key with basicConstraints CA:TRUE (path length 0), key usage
// certSign, valid for about ten years.
//
// Keys are written with mode 0600, certificates with 0644, each through a
// temporary file and a rename. Errors name the host or file concerned; file
// errors are *fs.PathError values.
func DevCert(hosts []string, outDir string, now time.Time, opts ...DevCertOption) (*DevCertResult, error) {
	set := devCertSettings{
		serverValidity: DefaultServerValidity,
		caValidity:     DefaultCAValidity,
		caName:         "duebridge development CA",
	}
	for _, o := range opts {
		o(&set)
	}
	if set.serverValidity <= minServerValidity || set.serverValidity > MaxServerValidity {
		return nil, fmt.Errorf("dev-cert: server certificate validity %v is out of range (more than 1 day, at most %d days)",
			set.serverValidity, int(MaxServerValidity/(24*time.Hour)))
	}
	if set.caValidity < set.serverValidity {
		return nil, fmt.Errorf("dev-cert: CA validity %v is shorter than the server certificate validity %v",
			set.caValidity, set.serverValidity)
	}
	if now.IsZero() {
		now = time.Now()
	}
	now = now.UTC().Truncate(time.Second)

	dnsNames, ips, err := ParseHosts(hosts)
	if err != nil {
		return nil, fmt.Errorf("dev-cert: %w", err)
	}
	if outDir == "" {
		return nil, errors.New("dev-cert: no output directory given")
	}

	res := &DevCertResult{
		CACertFile:     filepath.Join(outDir, CACertFileName),
		CAKeyFile:      filepath.Join(outDir, CAKeyFileName),
		ServerCertFile: filepath.Join(outDir, ServerCertFileName),
		ServerKeyFile:  filepath.Join(outDir, ServerKeyFileName),
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("dev-cert: create output directory: %w", err)
	}

	caCert, caKey, reused, err := loadOrCreateCA(res.CACertFile, res.CAKeyFile, now, set)
	if err != nil {
		return nil, fmt.Errorf("dev-cert: %w", err)
	}
	res.CA, res.CAReused = caCert, reused

	notBefore := now.Add(-backdate)
	notAfter := notBefore.Add(set.serverValidity)
	if notAfter.After(caCert.NotAfter) {
		// A reused CA that expires sooner: the leaf must not outlive it.
		notAfter = caCert.NotAfter
	}
	if notAfter.Sub(now) < minServerValidity {
		return nil, fmt.Errorf("dev-cert: %w", &fs.PathError{Op: "use CA certificate", Path: res.CACertFile,
			Err: fmt.Errorf("it expires %s; remove %s and %s to create a new CA (phones must then trust the new one)",
				caCert.NotAfter.Format(time.RFC3339), CACertFileName, CAKeyFileName)})
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("dev-cert: generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("dev-cert: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"duebridge development certificate"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	// The common name is informational only (clients match the SAN); it
	// makes the certificate recognisable in lists. X.520 caps it at 64.
	if first := firstHost(dnsNames, ips); len(first) <= 64 {
		tmpl.Subject.CommonName = first
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("dev-cert: sign server certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("dev-cert: parse new server certificate: %w", err)
	}
	res.Leaf = leaf

	keyPEM, err := encodePrivateKeyPEM(key)
	if err != nil {
		return nil, fmt.Errorf("dev-cert: encode server key: %w", err)
	}
	chainPEM := append(encodeCertificatePEM(der), encodeCertificatePEM(caCert.Raw)...)
	// Key first: a Reloader that sees the new key with the old certificate
	// refuses the pair and retries once server.crt has changed too.
	if err := writeFileAtomic(res.ServerKeyFile, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("dev-cert: %w", err)
	}
	if err := writeFileAtomic(res.ServerCertFile, chainPEM, 0o644); err != nil {
		return nil, fmt.Errorf("dev-cert: %w", err)
	}
	return res, nil
}

// loadOrCreateCA reuses certFile/keyFile when both exist and creates both
// when neither does. One without the other is an error: silently replacing
// a CA would break the trust installed on phones.
func loadOrCreateCA(certFile, keyFile string, now time.Time, set devCertSettings) (*x509.Certificate, crypto.Signer, bool, error) {
	certExists, err := fileExists(certFile)
	if err != nil {
		return nil, nil, false, err
	}
	keyExists, err := fileExists(keyFile)
	if err != nil {
		return nil, nil, false, err
	}
	switch {
	case certExists && keyExists:
		c, k, err := loadCA(certFile, keyFile, now)
		return c, k, true, err
	case certExists:
		return nil, nil, false, &fs.PathError{Op: "open CA key", Path: keyFile,
			Err: fmt.Errorf("missing next to %s; restore it, or remove %s to create a new CA", certFile, certFile)}
	case keyExists:
		return nil, nil, false, &fs.PathError{Op: "open CA certificate", Path: certFile,
			Err: fmt.Errorf("missing next to %s; restore it, or remove %s to create a new CA", keyFile, keyFile)}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, false, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, false, err
	}
	subject := pkix.Name{CommonName: set.caName, Organization: []string{"duebridge"}}
	if h, err := os.Hostname(); err == nil && h != "" {
		// Tells CAs made on different machines apart on the phone.
		subject.OrganizationalUnit = []string{h}
	}
	notBefore := now.Add(-backdate)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(set.caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // issues leaf certificates only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, false, fmt.Errorf("parse new CA certificate: %w", err)
	}
	keyPEM, err := encodePrivateKeyPEM(key)
	if err != nil {
		return nil, nil, false, fmt.Errorf("encode CA key: %w", err)
	}
	if err := writeFileAtomic(keyFile, keyPEM, 0o600); err != nil {
		return nil, nil, false, err
	}
	if err := writeFileAtomic(certFile, encodeCertificatePEM(der), 0o644); err != nil {
		return nil, nil, false, err
	}
	return cert, key, false, nil
}

func loadCA(certFile, keyFile string, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	certs, err := ReadCertificates(certFile)
	if err != nil {
		return nil, nil, err
	}
	if len(certs) != 1 {
		return nil, nil, &fs.PathError{Op: "read CA certificate", Path: certFile,
			Err: fmt.Errorf("holds %d certificates; want exactly one", len(certs))}
	}
	cert := certs[0]
	bad := func(msg string) error {
		return &fs.PathError{Op: "use CA certificate", Path: certFile, Err: errors.New(msg)}
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, nil, bad("not a CA certificate (basicConstraints CA:TRUE missing)")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, bad("key usage does not allow signing certificates")
	}
	if now.After(cert.NotAfter) {
		return nil, nil, bad(fmt.Sprintf("expired %s; remove %s and %s to create a new CA",
			cert.NotAfter.Format(time.RFC3339), CACertFileName, CAKeyFileName))
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, nil, err
	}
	key, err := parsePrivateKeyPEM(data)
	if err != nil {
		return nil, nil, &fs.PathError{Op: "parse CA key", Path: keyFile, Err: err}
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, nil, &fs.PathError{Op: "use CA key", Path: keyFile,
			Err: fmt.Errorf("does not belong to the certificate in %s", certFile)}
	}
	return cert, key, nil
}

func fileExists(path string) (bool, error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil:
		if fi.IsDir() {
			return false, &fs.PathError{Op: "stat", Path: path, Err: errors.New("is a directory")}
		}
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	default:
		return false, err
	}
}

// randomSerial returns a positive random serial of up to 128 bits
// (RFC 5280 allows 20 octets; CA/B Forum wants at least 64 random bits).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	n, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func firstHost(dns []string, ips []net.IP) string {
	if len(dns) > 0 {
		return dns[0]
	}
	if len(ips) > 0 {
		return ips[0].String()
	}
	return ""
}

// ParseHosts splits host names given to dev-cert into DNS names and IP
// addresses, in the order given, without duplicates. Entries are trimmed;
// empty entries are skipped, and an entry may itself be a comma-separated
// list ("a.lan,192.168.1.5"). DNS names are lower-cased and may start with
// "*." for a wildcard; IPv6 addresses may be bracketed. Ports, URLs, zones,
// unspecified addresses and non-ASCII names (use the xn-- form) are refused
// with an error naming the entry.
func ParseHosts(hosts []string) ([]string, []net.IP, error) {
	var (
		dns  []string
		ips  []net.IP
		seen = map[string]bool{}
	)
	for _, entry := range hosts {
		for _, h := range strings.Split(entry, ",") {
			h = strings.TrimSpace(h)
			if h == "" {
				continue
			}
			name, ip, err := parseHost(h)
			if err != nil {
				return nil, nil, fmt.Errorf("host %q: %w", h, err)
			}
			key := name
			if ip != nil {
				key = ip.String()
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			if ip != nil {
				ips = append(ips, ip)
			} else {
				dns = append(dns, name)
			}
		}
	}
	if len(dns) == 0 && len(ips) == 0 {
		return nil, nil, errors.New("no host names given (want DNS names or IP addresses, e.g. duebridge.lan,192.168.1.20)")
	}
	return dns, ips, nil
}

func parseHost(h string) (string, net.IP, error) {
	if strings.Contains(h, "://") || strings.Contains(h, "/") {
		return "", nil, errors.New("give a host name or IP address, not a URL")
	}
	bracketed := strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]")
	if bracketed {
		h = h[1 : len(h)-1]
	}
	if strings.Contains(h, "%") {
		return "", nil, errors.New("IPv6 zones cannot go into a certificate")
	}
	if ip := net.ParseIP(h); ip != nil {
		if ip.IsUnspecified() {
			return "", nil, errors.New("the unspecified address is not one clients connect to")
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		return "", ip, nil
	}
	if bracketed {
		return "", nil, errors.New("not an IPv6 address")
	}
	if strings.Contains(h, ":") {
		return "", nil, errors.New("looks like host:port; give the name without a port")
	}
	name := strings.TrimSuffix(strings.ToLower(h), ".")
	if err := checkDNSName(name); err != nil {
		return "", nil, err
	}
	return name, nil, nil
}

func checkDNSName(name string) error {
	if len(name) > 253 {
		return errors.New("DNS name longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if l == "*" && i == 0 {
			if len(labels) < 3 {
				return errors.New("a wildcard needs at least two labels after \"*.\" (e.g. *.home.lan)")
			}
			continue
		}
		if l == "" {
			return errors.New("empty label in DNS name")
		}
		if len(l) > 63 {
			return errors.New("DNS label longer than 63 characters")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return errors.New("DNS label starts or ends with '-'")
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			case c == '*':
				return errors.New("'*' is allowed only as the whole first label (*.example.lan)")
			case c >= 0x80:
				return errors.New("non-ASCII name; give its punycode (xn--) form")
			default:
				return fmt.Errorf("character %q not allowed in a DNS name", c)
			}
		}
	}
	return nil
}
