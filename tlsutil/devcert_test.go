package tlsutil

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func mustDevCert(t *testing.T, hosts []string, dir string, now time.Time, opts ...DevCertOption) *DevCertResult {
	t.Helper()
	res, err := DevCert(hosts, dir, now, opts...)
	if err != nil {
		t.Fatalf("DevCert(%q): %v", hosts, err)
	}
	return res
}

func readOne(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := ReadCertificates(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 1 {
		t.Fatalf("%s: %d certificates, want 1", path, len(certs))
	}
	return certs[0]
}

// verifyServer checks the chain in server.crt against ca.crt for every host,
// the way a client (here Go's verifier, standing in for iOS) would.
func verifyServer(t *testing.T, dir string, hosts []string, at time.Time) *x509.Certificate {
	t.Helper()
	ca := readOne(t, filepath.Join(dir, CACertFileName))
	chain, err := ReadCertificates(filepath.Join(dir, ServerCertFileName))
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 2 {
		t.Fatalf("server.crt holds %d certificates, want leaf + CA", len(chain))
	}
	if !chain[1].Equal(ca) {
		t.Fatalf("second certificate in server.crt is not ca.crt")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, h := range hosts {
		_, err := chain[0].Verify(x509.VerifyOptions{
			DNSName:     h,
			Roots:       roots,
			CurrentTime: at,
			KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if err != nil {
			t.Errorf("verify server.crt for %q: %v", h, err)
		}
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFileName), filepath.Join(dir, ServerKeyFileName)); err != nil {
		t.Errorf("server.crt/server.key do not load as a pair: %v", err)
	}
	return chain[0]
}

func TestDevCert(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs") // created by DevCert
	hosts := []string{"Duebridge.LAN", "192.168.1.20", "[fe80::1]", "localhost", "*.tasks.lan"}
	res := mustDevCert(t, hosts, dir, testNow)
	if res.CAReused {
		t.Error("CAReused on first run")
	}
	for _, f := range []string{res.CAKeyFile, res.ServerKeyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, m)
		}
	}
	for _, f := range []string{res.CACertFile, res.ServerCertFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o644 {
			t.Errorf("%s: mode %v, want 0644", f, m)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 4 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("output directory holds %v, want exactly the four files", names)
	}

	leaf := verifyServer(t, dir, []string{"duebridge.lan", "192.168.1.20", "fe80::1", "localhost", "cal.tasks.lan"}, testNow)
	if !leaf.Equal(res.Leaf) {
		t.Error("result Leaf differs from server.crt")
	}
	// Names that were not asked for must not verify.
	roots := x509.NewCertPool()
	roots.AddCert(res.CA)
	for _, h := range []string{"other.lan", "192.168.1.21", "tasks.lan"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: h, Roots: roots, CurrentTime: testNow}); err == nil {
			t.Errorf("server certificate verifies for %q", h)
		}
	}

	// Apple's rules for TLS server certificates.
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got > MaxServerValidity || got > 825*24*time.Hour {
		t.Errorf("server validity %v exceeds 825 days", got)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("ExtKeyUsage = %v, want [serverAuth]", leaf.ExtKeyUsage)
	}
	if leaf.IsCA || !leaf.BasicConstraintsValid {
		t.Error("server certificate must carry basicConstraints CA:FALSE")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Error("server certificate lacks digitalSignature key usage")
	}
	if leaf.SignatureAlgorithm != x509.ECDSAWithSHA256 {
		t.Errorf("signature algorithm %v, want ECDSA-SHA256", leaf.SignatureAlgorithm)
	}
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("server key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if !slices.Equal(leaf.DNSNames, []string{"duebridge.lan", "localhost", "*.tasks.lan"}) {
		t.Errorf("DNSNames = %q", leaf.DNSNames)
	}
	wantIPs := []net.IP{net.ParseIP("192.168.1.20").To4(), net.ParseIP("fe80::1")}
	if !slices.EqualFunc(leaf.IPAddresses, wantIPs, net.IP.Equal) {
		t.Errorf("IPAddresses = %v, want %v", leaf.IPAddresses, wantIPs)
	}
	if !leaf.NotBefore.Before(testNow) || leaf.NotAfter.Before(testNow.Add(800*24*time.Hour)) {
		t.Errorf("server validity %v – %v does not cover now and the next 800 days", leaf.NotBefore, leaf.NotAfter)
	}
	if !bytes.Equal(leaf.AuthorityKeyId, res.CA.SubjectKeyId) || len(leaf.AuthorityKeyId) == 0 {
		t.Error("server certificate's authority key id does not name the CA")
	}

	ca := res.CA
	if !ca.IsCA || !ca.BasicConstraintsValid || !ca.MaxPathLenZero {
		t.Error("CA lacks basicConstraints CA:TRUE, pathlen 0")
	}
	if ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA lacks keyCertSign")
	}
	if d := ca.NotAfter.Sub(ca.NotBefore); d < 3650*24*time.Hour || d > 3660*24*time.Hour {
		t.Errorf("CA validity %v, want about 10 years", d)
	}
	if k, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if fp := Fingerprint(ca); len(fp) != 32*3-1 || strings.ToUpper(fp) != fp {
		t.Errorf("Fingerprint = %q", fp)
	}
}

func TestDevCertReusesCA(t *testing.T) {
	dir := t.TempDir()
	first := mustDevCert(t, []string{"duebridge.lan"}, dir, testNow)
	caCert, _ := os.ReadFile(first.CACertFile)
	caKey, _ := os.ReadFile(first.CAKeyFile)

	later := testNow.Add(30 * 24 * time.Hour)
	second := mustDevCert(t, []string{"duebridge.lan", "10.0.0.7"}, dir, later)
	if !second.CAReused {
		t.Error("CAReused = false on second run")
	}
	if got, _ := os.ReadFile(first.CACertFile); !bytes.Equal(got, caCert) {
		t.Error("ca.crt changed on second run")
	}
	if got, _ := os.ReadFile(first.CAKeyFile); !bytes.Equal(got, caKey) {
		t.Error("ca.key changed on second run")
	}
	if first.Leaf.SerialNumber.Cmp(second.Leaf.SerialNumber) == 0 {
		t.Error("second server certificate has the same serial")
	}
	// A phone that trusted the first CA trusts the new certificate.
	verifyServer(t, dir, []string{"duebridge.lan", "10.0.0.7"}, later)
	if !second.CA.Equal(first.CA) {
		t.Error("result CA differs from the first run's")
	}
}

func TestDevCertLeafNeverOutlivesReusedCA(t *testing.T) {
	dir := t.TempDir()
	res := mustDevCert(t, []string{"a.lan"}, dir, testNow, WithCAValidity(900*24*time.Hour))
	caEnd := res.CA.NotAfter

	later := testNow.Add(500 * 24 * time.Hour)
	res2 := mustDevCert(t, []string{"a.lan"}, dir, later)
	if !res2.Leaf.NotAfter.Equal(caEnd) {
		t.Errorf("leaf NotAfter %v, want clamped to CA NotAfter %v", res2.Leaf.NotAfter, caEnd)
	}
	verifyServer(t, dir, []string{"a.lan"}, later)

	_, err := DevCert([]string{"a.lan"}, dir, caEnd.Add(-time.Hour))
	if err == nil || !strings.Contains(err.Error(), res.CACertFile) {
		t.Errorf("CA about to expire: err = %v, want one naming %s", err, res.CACertFile)
	}
	_, err = DevCert([]string{"a.lan"}, dir, caEnd.Add(time.Hour))
	if err == nil || !strings.Contains(err.Error(), "expired") || !strings.Contains(err.Error(), res.CACertFile) {
		t.Errorf("expired CA: err = %v", err)
	}
}

func TestDevCertErrors(t *testing.T) {
	t.Run("ca.key missing", func(t *testing.T) {
		dir := t.TempDir()
		res := mustDevCert(t, []string{"a.lan"}, dir, testNow)
		before, _ := os.ReadFile(res.CACertFile)
		os.Remove(res.CAKeyFile)
		_, err := DevCert([]string{"a.lan"}, dir, testNow)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != res.CAKeyFile {
			t.Fatalf("err = %v, want a PathError for %s", err, res.CAKeyFile)
		}
		if after, _ := os.ReadFile(res.CACertFile); !bytes.Equal(before, after) {
			t.Error("ca.crt was replaced although ca.key was missing")
		}
	})
	t.Run("ca.crt missing", func(t *testing.T) {
		dir := t.TempDir()
		res := mustDevCert(t, []string{"a.lan"}, dir, testNow)
		os.Remove(res.CACertFile)
		_, err := DevCert([]string{"a.lan"}, dir, testNow)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != res.CACertFile {
			t.Fatalf("err = %v, want a PathError for %s", err, res.CACertFile)
		}
	})
	t.Run("garbage ca.crt", func(t *testing.T) {
		dir := t.TempDir()
		res := mustDevCert(t, []string{"a.lan"}, dir, testNow)
		os.WriteFile(res.CACertFile, []byte("not a certificate\n"), 0o644)
		_, err := DevCert([]string{"a.lan"}, dir, testNow)
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != res.CACertFile {
			t.Fatalf("err = %v, want a PathError for %s", err, res.CACertFile)
		}
	})
	t.Run("ca.key of another CA", func(t *testing.T) {
		dir, other := t.TempDir(), t.TempDir()
		res := mustDevCert(t, []string{"a.lan"}, dir, testNow)
		res2 := mustDevCert(t, []string{"a.lan"}, other, testNow)
		k, _ := os.ReadFile(res2.CAKeyFile)
		os.WriteFile(res.CAKeyFile, k, 0o600)
		_, err := DevCert([]string{"a.lan"}, dir, testNow)
		if err == nil || !strings.Contains(err.Error(), res.CAKeyFile) || !strings.Contains(err.Error(), "does not belong") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("server certificate as CA", func(t *testing.T) {
		dir := t.TempDir()
		res := mustDevCert(t, []string{"a.lan"}, dir, testNow)
		leafPEM := encodeCertificatePEM(res.Leaf.Raw)
		key, _ := os.ReadFile(res.ServerKeyFile)
		os.WriteFile(res.CACertFile, leafPEM, 0o644)
		os.WriteFile(res.CAKeyFile, key, 0o600)
		_, err := DevCert([]string{"a.lan"}, dir, testNow)
		if err == nil || !strings.Contains(err.Error(), "not a CA") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("validity over 825 days", func(t *testing.T) {
		_, err := DevCert([]string{"a.lan"}, t.TempDir(), testNow, WithServerValidity(826*24*time.Hour))
		if err == nil || !strings.Contains(err.Error(), "825") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("exactly 825 days is allowed", func(t *testing.T) {
		res := mustDevCert(t, []string{"a.lan"}, t.TempDir(), testNow, WithServerValidity(MaxServerValidity))
		if d := res.Leaf.NotAfter.Sub(res.Leaf.NotBefore); d != MaxServerValidity {
			t.Errorf("validity %v", d)
		}
	})
	t.Run("no hosts", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "out")
		_, err := DevCert([]string{" ", ""}, dir, testNow)
		if err == nil || !strings.Contains(err.Error(), "no host names") {
			t.Fatalf("err = %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Error("output directory created although the hosts were refused")
		}
	})
	t.Run("output is a file", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "file")
		os.WriteFile(f, nil, 0o644)
		_, err := DevCert([]string{"a.lan"}, f, testNow)
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Fatalf("err = %v, want one naming %s", err, f)
		}
	})
}

func TestParseHosts(t *testing.T) {
	dns, ips, err := ParseHosts([]string{"a.lan, 192.168.1.5", "A.LAN.", "[::1]", "::1", "xn--bcher-kva.example", ""})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dns, []string{"a.lan", "xn--bcher-kva.example"}) {
		t.Errorf("dns = %q", dns)
	}
	if len(ips) != 2 || !ips[0].Equal(net.IPv4(192, 168, 1, 5)) || len(ips[0]) != 4 || !ips[1].Equal(net.IPv6loopback) {
		t.Errorf("ips = %v", ips)
	}

	for _, bad := range []string{
		"a.lan:8443", "https://a.lan/", "0.0.0.0", "::", "fe80::1%eth0", "[a.lan]",
		"a..lan", "-a.lan", "a-.lan", "host_1.lan", "bücher.lan", "*.lan", "a.*.lan", "x*.a.lan",
		strings.Repeat("a", 64) + ".lan",
	} {
		if _, _, err := ParseHosts([]string{bad}); err == nil {
			t.Errorf("ParseHosts(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseHosts(%q): error %q does not name the entry", bad, err)
		}
	}
}
