package setup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"howett.net/plist"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/internal/password"
	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/setup"
	"github.com/duebridge/duebridge/tlsutil"
)

// world is a service with a public HTTPS URL, IMAP on 993, submission on
// 465, and a dev CA in tls.ca_file.
type world struct {
	svc    *bridge.Service
	certs  *tlsutil.Reloader
	ca     *x509.Certificate
	caFile string
}

func newWorld(t *testing.T, edit func(*config.Config)) *world {
	t.Helper()
	dir := t.TempDir()
	res, err := tlsutil.DevCert([]string{"tasks.example.com"}, dir, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := testsvc.Config(t)
	cfg.Limits.LoginFailureDelay = 0
	cfg.HTTP.PublicURL, _ = url.Parse("https://tasks.example.com")
	cfg.IMAP = config.IMAP{Listen: "0.0.0.0:143", TLSListen: "0.0.0.0:993"}
	cfg.Submission = config.Submission{Listen: "0.0.0.0:587", TLSListen: "0.0.0.0:465"}
	cfg.TLS = config.TLS{CertFile: res.ServerCertFile, KeyFile: res.ServerKeyFile, CAFile: res.CACertFile}
	if edit != nil {
		edit(cfg)
	}
	certs, err := tlsutil.NewReloader(res.ServerCertFile, res.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &world{svc: testsvc.New(t, testsvc.Options{Config: cfg}), certs: certs, ca: res.CA, caFile: res.CACertFile}
}

func (w *world) handler() *setup.Handler {
	return setup.NewHandler(w.svc, setup.Options{Certificate: w.certs.Certificate, Root: w.certs.Root})
}

// do runs one request through the handler; user "" sends no credentials.
func (w *world) do(t *testing.T, path, user, pw, remote string, tlsOn bool) *http.Response {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	if remote != "" {
		r.RemoteAddr = remote
	}
	if user != "" {
		r.SetBasicAuth(user, pw)
	}
	if tlsOn {
		r.TLS = &tls.ConnectionState{}
	}
	rec := httptest.NewRecorder()
	w.handler().ServeHTTP(rec, r)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSetupNeedsLogin(t *testing.T) {
	w := newWorld(t, nil)
	for _, path := range []string{setup.PagePath, setup.ProfilePath} {
		for _, c := range []struct{ user, pw string }{{"", ""}, {"alice", "wrong"}, {"nobody", "x"}} {
			resp := w.do(t, path, c.user, c.pw, "", true)
			b := body(t, resp)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s as %q: %d, want 401", path, c.user, resp.StatusCode)
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
				t.Errorf("%s: WWW-Authenticate %q, want a Basic challenge", path, got)
			}
			if strings.Contains(b, "tasks.example.com") || strings.Contains(b, "PayloadType") {
				t.Errorf("%s as %q leaks account data: %s", path, c.user, b)
			}
		}
	}
}

func TestSetupPage(t *testing.T) {
	w := newWorld(t, nil)
	resp := w.do(t, setup.PagePath, "alice", testsvc.Password("alice"), "192.0.2.10:50000", true)
	page := body(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("page: %d %s", resp.StatusCode, page)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	for _, want := range []string{
		`name="viewport"`,
		`<h1>duebridge for alice</h1>`,
		`href="setup/duebridge.mobileconfig"`,
		`<img id="qr" src="data:image/png;base64,`,
		`<code>https://tasks.example.com/setup/duebridge.mobileconfig</code>`,
		`<dt>Server</dt><dd>tasks.example.com</dd>`,
		`<dt>Port</dt><dd>993</dd>`,
		`<dt>Port</dt><dd>465</dd>`,
		`duebridge development CA`,
		tlsutil.Fingerprint(w.ca),
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if strings.Contains(page, "plain-http-warning") {
		t.Error("warning about plain HTTP on a TLS request")
	}
	// The QR code is a PNG of the absolute profile link.
	m := regexp.MustCompile(`src="data:image/png;base64,([^"]+)"`).FindStringSubmatch(page)
	png, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("QR code is not a PNG (%v)", err)
	}
	// The Content-Security-Policy allows exactly the inline style.
	style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(page)
	sum := sha256.Sum256([]byte(style[1]))
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'") {
		t.Errorf("CSP %q does not allow the page's style", csp)
	}
}

func TestSetupPagePlainHTTPWarning(t *testing.T) {
	for _, c := range []struct {
		name, public, remote string
		tls, warn, loopback  bool
	}{
		{"public http name, LAN client", "http://tasks.example.com", "192.0.2.10:1", false, true, false},
		{"loopback demo, loopback client", "http://127.0.0.1:8080", "127.0.0.1:5", false, false, true},
		{"loopback URL, LAN client", "http://127.0.0.1:8080", "192.0.2.10:1", false, true, true},
		{"TLS", "https://tasks.example.com", "192.0.2.10:1", true, false, false},
		{"TLS-terminating proxy", "https://tasks.example.com", "10.0.0.1:1", false, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := newWorld(t, func(cfg *config.Config) { cfg.HTTP.PublicURL, _ = url.Parse(c.public) })
			resp := w.do(t, setup.PagePath, "alice", testsvc.Password("alice"), c.remote, c.tls)
			page := body(t, resp)
			if resp.StatusCode != 200 {
				t.Fatalf("%d %s", resp.StatusCode, page)
			}
			if got := strings.Contains(page, `id="plain-http-warning"`); got != c.warn {
				t.Errorf("warning shown = %v, want %v", got, c.warn)
			}
			if got := strings.Contains(page, `id="loopback-note"`); got != c.loopback {
				t.Errorf("loopback note shown = %v, want %v", got, c.loopback)
			}
		})
	}
}

// profileOf downloads and parses a profile.
func profileOf(t *testing.T, w *world, user, pw string) (map[string]any, []byte) {
	t.Helper()
	resp := w.do(t, setup.ProfilePath, user, pw, "192.0.2.10:50000", true)
	raw := []byte(body(t, resp))
	if resp.StatusCode != 200 {
		t.Fatalf("profile: %d %s", resp.StatusCode, raw)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/x-apple-aspen-config" {
		t.Errorf("Content-Type %q", ct)
	}
	if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment;") || !strings.Contains(cd, `.mobileconfig"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	content := raw
	if !bytes.HasPrefix(raw, []byte("<?xml")) { // signed: CMS around the plist
		p7, err := pkcs7.Parse(raw)
		if err != nil {
			t.Fatalf("profile is neither a plist nor CMS: %v", err)
		}
		content = p7.Content
	}
	var p map[string]any
	if _, err := plist.Unmarshal(content, &p); err != nil {
		t.Fatalf("profile does not parse as a plist: %v\n%s", err, content)
	}
	return p, raw
}

func payloads(t *testing.T, p map[string]any) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	list, ok := p["PayloadContent"].([]any)
	if !ok {
		t.Fatalf("PayloadContent is %T", p["PayloadContent"])
	}
	for _, e := range list {
		d := e.(map[string]any)
		out[d["PayloadType"].(string)] = d
	}
	return out
}

func wantKeys(t *testing.T, what string, d map[string]any, want map[string]any) {
	t.Helper()
	for k, v := range want {
		got, ok := d[k]
		if !ok {
			t.Errorf("%s lacks %s", what, k)
			continue
		}
		if v != nil && got != v {
			t.Errorf("%s %s = %#v, want %#v", what, k, got, v)
		}
	}
}

var uuidRE = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-5[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)

func TestProfile(t *testing.T) {
	w := newWorld(t, nil)
	p, _ := profileOf(t, w, "alice", testsvc.Password("alice"))
	wantKeys(t, "top level", p, map[string]any{
		"PayloadType": "Configuration", "PayloadVersion": uint64(1),
		"PayloadIdentifier": "com.example.tasks.duebridge.alice", "PayloadUUID": nil,
		"PayloadDisplayName": "duebridge (alice)", "TargetDeviceType": uint64(1),
	})
	pl := payloads(t, p)
	if len(pl) != 3 {
		t.Fatalf("payload types %v, want CalDAV, mail and root", p["PayloadContent"])
	}
	common := map[string]any{"PayloadVersion": uint64(1), "PayloadIdentifier": nil, "PayloadUUID": nil}
	for typ, d := range pl {
		wantKeys(t, typ, d, common)
	}
	wantKeys(t, "CalDAV", pl[setup.PayloadCalDAV], map[string]any{
		"PayloadIdentifier": "com.example.tasks.duebridge.alice.caldav",
		"CalDAVHostName":    "tasks.example.com", "CalDAVPort": uint64(443), "CalDAVUseSSL": true, "CalDAVUsername": "alice",
	})
	wantKeys(t, "mail", pl[setup.PayloadMail], map[string]any{
		"EmailAccountType": "EmailTypeIMAP", "EmailAddress": "alice@example.com",
		"IncomingMailServerHostName": "tasks.example.com", "IncomingMailServerPortNumber": uint64(993),
		"IncomingMailServerUseSSL": true, "IncomingMailServerAuthentication": "EmailAuthPassword",
		"IncomingMailServerUsername": "alice",
		"OutgoingMailServerHostName": "tasks.example.com", "OutgoingMailServerPortNumber": uint64(465),
		"OutgoingMailServerUseSSL": true, "OutgoingMailServerAuthentication": "EmailAuthPassword",
		"OutgoingMailServerUsername": "alice", "OutgoingPasswordSameAsIncomingPassword": true,
	})
	root := pl[setup.PayloadRoot]
	if der, _ := root["PayloadContent"].([]byte); !bytes.Equal(der, w.ca.Raw) {
		t.Error("the root payload does not hold the CA from tls.ca_file")
	}
	// No password unless the admin asks for one.
	for typ, d := range pl {
		for k := range d {
			if strings.Contains(k, "Password") && k != "OutgoingPasswordSameAsIncomingPassword" {
				t.Errorf("%s carries %s", typ, k)
			}
		}
	}
	// UUIDs: well-formed, distinct, stable across downloads, per user.
	seen := map[string]bool{}
	ids := []string{p["PayloadUUID"].(string)}
	for _, d := range pl {
		ids = append(ids, d["PayloadUUID"].(string))
	}
	for _, id := range ids {
		if !uuidRE.MatchString(id) || seen[id] {
			t.Errorf("UUID %q malformed or repeated", id)
		}
		seen[id] = true
	}
	again, _ := profileOf(t, w, "alice", testsvc.Password("alice"))
	if again["PayloadUUID"] != p["PayloadUUID"] || payloads(t, again)[setup.PayloadMail]["PayloadUUID"] != pl[setup.PayloadMail]["PayloadUUID"] {
		t.Error("UUIDs change between downloads; reinstalling would duplicate the accounts")
	}
	bob, _ := profileOf(t, w, "bob", testsvc.Password("bob"))
	if bob["PayloadUUID"] == p["PayloadUUID"] || bob["PayloadIdentifier"] == p["PayloadIdentifier"] {
		t.Error("bob's profile has alice's identifiers")
	}
}

func TestProfileWithoutTLSListenersOrCA(t *testing.T) {
	w := newWorld(t, func(cfg *config.Config) {
		cfg.IMAP = config.IMAP{Listen: "0.0.0.0:143"}
		cfg.Submission = config.Submission{}
		cfg.TLS.CAFile = ""
		cfg.HTTP.PublicURL, _ = url.Parse("https://tasks.example.com:8443/duebridge")
	})
	// Root() still finds the dev CA at the end of server.crt.
	p, _ := profileOf(t, w, "alice", testsvc.Password("alice"))
	pl := payloads(t, p)
	wantKeys(t, "CalDAV", pl[setup.PayloadCalDAV], map[string]any{
		"CalDAVPort": uint64(8443), "CalDAVPrincipalURL": "https://tasks.example.com:8443/duebridge/dav/alice/",
	})
	// No submission listener: no port to give iOS, so no mail account
	// (iOS would guess a port); the page says why.
	if m, ok := pl[setup.PayloadMail]; ok {
		t.Errorf("mail payload without a submission listener: %v", m)
	}
	if body := pageOf(t, w); !strings.Contains(body, `id="no-mail"`) || !strings.Contains(body, "submission.listen") {
		t.Errorf("the page does not say why mail is missing:\n%s", body)
	}
	if der, _ := pl[setup.PayloadRoot]["PayloadContent"].([]byte); !bytes.Equal(der, w.ca.Raw) {
		t.Error("without tls.ca_file the root payload should carry the served chain's root")
	}

	// A server with a certificate from a public CA has no root payload.
	w = newWorld(t, func(cfg *config.Config) { cfg.TLS.CAFile = "" })
	plain := setup.NewHandler(w.svc, setup.Options{Certificate: w.certs.Certificate})
	r := httptest.NewRequest("GET", setup.ProfilePath, nil)
	r.SetBasicAuth("alice", testsvc.Password("alice"))
	rec := httptest.NewRecorder()
	plain.ServeHTTP(rec, r)
	var p2 map[string]any
	if _, err := plist.Unmarshal(rec.Body.Bytes(), &p2); err != nil {
		t.Fatal(err)
	}
	if _, ok := payloads(t, p2)[setup.PayloadRoot]; ok {
		t.Error("root payload without a self-made CA")
	}
}

// TestProfileIssuesADevicePassword: with setup.profile_passwords on, each
// download is a device with its own random password, which logs in; the
// setup page lists it with its last use. A download made with a device
// password carries that one, not another.
func TestProfileIssuesADevicePassword(t *testing.T) {
	h, err := password.Hash("alice-phone-app-pw")
	if err != nil {
		t.Fatal(err)
	}
	w := newWorld(t, func(cfg *config.Config) {
		cfg.Setup.ProfilePasswords = true
		cfg.Users[0].AppPasswords = []config.AppPassword{{Name: "phone", Hash: h}}
	})
	resp := w.do(t, setup.ProfilePath+"?device="+url.QueryEscape("Alice's iPhone"), "alice", "alice-phone-app-pw", "", true)
	b := body(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("profile: %d %s", resp.StatusCode, b)
	}
	var p map[string]any
	if _, err := plist.Unmarshal([]byte(b), &p); err != nil {
		t.Fatal(err)
	}
	pl := payloads(t, p)
	pw, _ := pl[setup.PayloadCalDAV]["CalDAVPassword"].(string)
	if !password.IsDevice(pw) || len(pw) < 40 {
		t.Fatalf("profile password %q is not a device password", pw)
	}
	wantKeys(t, "mail", pl[setup.PayloadMail], map[string]any{"IncomingPassword": pw, "OutgoingPassword": pw})
	if _, err := w.svc.Authenticate("imap", "alice", pw); err != nil {
		t.Fatalf("the profile's device password does not log in: %v", err)
	}
	if _, err := w.svc.Authenticate("imap", "bob", pw); err == nil {
		t.Fatal("alice's device password logs bob in")
	}
	// Downloading again with the device password: the same password.
	p2, _ := profileOf(t, w, "alice", pw)
	if got := payloads(t, p2)[setup.PayloadCalDAV]["CalDAVPassword"]; got != pw {
		t.Fatalf("download with a device password carries %q, want the same %q", got, pw)
	}
	devs, _ := w.svc.Devices(context.Background(), "alice")
	if len(devs) != 1 || devs[0].Name != "Alice's iPhone" || devs[0].LastUsed.IsZero() {
		t.Fatalf("devices after two downloads: %+v", devs)
	}
	page := pageOf(t, w)
	if !strings.Contains(page, html.EscapeString("Alice's iPhone")) || strings.Contains(page, pw) || strings.Contains(page, `id="no-devices"`) {
		t.Fatalf("setup page does not list the device (or shows its password):\n%s", page)
	}
}

// post sends a form POST through the handler as user with headers.
func (w *world) post(t *testing.T, path, user, pw string, form url.Values, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest("POST", path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth(user, pw)
	r.TLS = &tls.ConnectionState{}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	w.handler().ServeHTTP(rec, r)
	return rec.Result()
}

// TestDevicePasswordOnThePage: the page's form makes a device password and
// shows it once; it logs in; the page's revoke button ends it. Another
// site cannot make the browser do either, another user cannot revoke it,
// and bad input is answered 4xx with nothing changed.
func TestDevicePasswordOnThePage(t *testing.T) {
	w := newWorld(t, nil)
	alicePW := testsvc.Password("alice")
	sameSite := map[string]string{"Sec-Fetch-Site": "same-origin"}
	resp := w.post(t, setup.DevicesPath, "alice", alicePW, url.Values{"name": {"iPad"}}, sameSite)
	b := body(t, resp)
	m := regexp.MustCompile(`id="device-password">(dbp-[a-z0-9-]+)<`).FindStringSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("add device: %d %s", resp.StatusCode, b)
	}
	pw := m[1]
	if _, err := w.svc.Authenticate("imap", "alice", pw); err != nil {
		t.Fatalf("new device password: %v", err)
	}
	page := pageOf(t, w)
	if strings.Contains(page, pw) || !strings.Contains(page, "<td>iPad</td>") {
		t.Fatalf("page after adding:\n%s", page)
	}
	devs, _ := w.svc.Devices(context.Background(), "alice")
	id := devs[0].ID

	for _, c := range []struct {
		path, user string
		form       url.Values
		hdr        map[string]string
		want       int
	}{
		{setup.DevicesPath, "alice", url.Values{"name": {"evil"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{setup.RevokePath, "alice", url.Values{"id": {id}}, map[string]string{"Origin": "https://evil.example"}, 403},
		{setup.DevicesPath, "alice", url.Values{"name": {""}}, sameSite, 400},
		{setup.DevicesPath, "alice", url.Values{"name": {strings.Repeat("x", 101)}}, sameSite, 400},
		{setup.RevokePath, "alice", url.Values{"id": {"nope"}}, sameSite, 404},
		{setup.RevokePath, "bob", url.Values{"id": {id}}, sameSite, 404},
	} {
		pw := testsvc.Password(c.user)
		if resp := w.post(t, c.path, c.user, pw, c.form, c.hdr); resp.StatusCode != c.want {
			t.Errorf("POST %s as %s %v %v: %d, want %d", c.path, c.user, c.form, c.hdr, resp.StatusCode, c.want)
		}
	}
	if devs, _ := w.svc.Devices(context.Background(), "alice"); len(devs) != 1 {
		t.Fatalf("refused requests changed the devices: %+v", devs)
	}
	if resp := w.do(t, setup.DevicesPath, "alice", alicePW, "", true); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %d, want 405", setup.DevicesPath, resp.StatusCode)
	}

	// The IMAP backend forwards credential events to the server, which
	// ends the user's sessions.
	subCtx, unsubscribe := context.WithCancel(context.Background())
	defer unsubscribe()
	events := w.svc.IMAP().Subscribe(subCtx)
	resp = w.post(t, setup.RevokePath, "alice", alicePW, url.Values{"id": {id}}, sameSite)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != setup.PagePath {
		t.Fatalf("revoke: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	select {
	case e := <-events:
		if e.Kind != imapserver.EventCredentials || e.User != "alice" {
			t.Fatalf("revoking published %+v, want EventCredentials for alice", e)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("revoking did not end alice's sessions")
	}
	if _, err := w.svc.Authenticate("imap", "alice", pw); err == nil {
		t.Fatal("revoked device password still logs in")
	}
	if page := pageOf(t, w); !strings.Contains(page, `id="no-devices"`) {
		t.Fatalf("page after revoking still lists a device:\n%s", page)
	}
}

func TestSignedProfile(t *testing.T) {
	w := newWorld(t, func(cfg *config.Config) { cfg.Setup.SignProfiles = true })
	p, raw := profileOf(t, w, "alice", testsvc.Password("alice"))
	if p["PayloadType"] != "Configuration" {
		t.Fatalf("signed content: %v", p)
	}
	p7, err := pkcs7.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(w.ca)
	if err := p7.VerifyWithChain(pool); err != nil {
		t.Fatalf("signature does not verify against the dev CA: %v", err)
	}
	if signer := p7.GetOnlySigner(); signer == nil || !signer.Equal(w.certs.Leaf()) {
		t.Error("not signed by the server certificate")
	}
	// Tampered content fails.
	bad := bytes.Replace(raw, []byte("tasks.example.com"), []byte("evil.example.com!"), 1)
	if p7b, err := pkcs7.Parse(bad); err == nil && p7b.VerifyWithChain(pool) == nil {
		t.Error("a tampered profile verifies")
	}

	// The same with openssl, which is what the issue asks for, when present.
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed; the Go verification above passed")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "profile.p7")
	out := filepath.Join(dir, "content.plist")
	if err := os.WriteFile(in, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	// -attime: check validity at this process's clock, which the
	// certificates were made with (.ci/future.sh moves it; openssl's is not).
	cmd := exec.Command(openssl, "smime", "-verify", "-inform", "DER", "-in", in, "-CAfile", w.caFile,
		"-purpose", "any", "-attime", strconv.FormatInt(time.Now().Unix(), 10), "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl smime -verify: %v\n%s", err, b)
	}
	content, _ := os.ReadFile(out)
	if !bytes.Equal(content, p7.Content) {
		t.Error("openssl's verified content differs from the profile")
	}
	// openssl refuses it against a CA that did not issue the certificate.
	other, err := tlsutil.DevCert([]string{"other.example"}, t.TempDir(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cmd = exec.Command(openssl, "smime", "-verify", "-inform", "DER", "-in", in, "-CAfile", other.CACertFile,
		"-attime", strconv.FormatInt(time.Now().Unix(), 10),
		"-purpose", "any", "-out", out)
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("openssl verified the profile against an unrelated CA:\n%s", b)
	}
}

func TestSignedProfileWithoutCertificateGoesOutUnsigned(t *testing.T) {
	w := newWorld(t, func(cfg *config.Config) { cfg.Setup.SignProfiles = true })
	h := setup.NewHandler(w.svc, setup.Options{})
	r := httptest.NewRequest("GET", setup.ProfilePath, nil)
	r.SetBasicAuth("alice", testsvc.Password("alice"))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != 200 || !bytes.HasPrefix(rec.Body.Bytes(), []byte("<?xml")) {
		t.Fatalf("%d, want an unsigned plist", rec.Code)
	}
}

func TestSetupLockout(t *testing.T) {
	w := newWorld(t, func(cfg *config.Config) {
		cfg.Limits.LockoutFailures = 3
		cfg.Limits.LockoutWindow = time.Hour
	})
	const attacker = "198.51.100.1:4444"
	for i := 0; i < 3; i++ {
		// Distinct guesses: a repeated wrong password counts once.
		if resp := w.do(t, setup.PagePath, "alice", "wrong-"+strconv.Itoa(i), attacker, true); resp.StatusCode != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, resp.StatusCode)
		}
	}
	resp := w.do(t, setup.PagePath, "carol", testsvc.Password("carol"), attacker, true)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("locked address: %d, want 429", resp.StatusCode)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("Retry-After %q", ra)
	}
	// Another client is served meanwhile.
	if resp := w.do(t, setup.PagePath, "carol", testsvc.Password("carol"), "192.0.2.77:1", true); resp.StatusCode != 200 {
		t.Fatalf("other client: %d", resp.StatusCode)
	}
}

func TestMethodAndUnknownPath(t *testing.T) {
	w := newWorld(t, nil)
	rec := httptest.NewRecorder()
	w.handler().ServeHTTP(rec, httptest.NewRequest("POST", setup.PagePath, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	// What a person types on the way to the page leads to it, login or not.
	for _, p := range []string{"/setup/", "/setup/other", "/setup/index.html", "/"} {
		rec := httptest.NewRecorder()
		w.handler().ServeHTTP(rec, httptest.NewRequest("GET", p, nil))
		if rec.Code != http.StatusFound || rec.Header().Get("Location") != setup.PagePath {
			t.Errorf("GET %s: %d Location %q, want a redirect to %s", p, rec.Code, rec.Header().Get("Location"), setup.PagePath)
		}
	}
}

// pageOf is alice's setup page.
func pageOf(t *testing.T, w *world) string {
	t.Helper()
	resp := w.do(t, setup.PagePath, "alice", testsvc.Password("alice"), "192.0.2.10:50000", true)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("setup page: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// lockedCore is a setup.Core whose every login is locked out until 90s
// after its own clock: the handler must take the time from the core.
type lockedCore struct{ now time.Time }

func (c lockedCore) AuthenticateFrom(context.Context, string, string, string, string) (*config.User, error) {
	return nil, &bridge.LockoutError{Until: c.now.Add(90 * time.Second)}
}
func (c lockedCore) Config() *config.Config { return nil }
func (c lockedCore) Now() time.Time         { return c.now }
func (c lockedCore) IssueDevicePassword(context.Context, string, string) (bridge.Device, string, error) {
	return bridge.Device{}, "", bridge.ErrTooManyDevices
}
func (c lockedCore) Devices(context.Context, string) ([]bridge.Device, error) { return nil, nil }
func (c lockedCore) RevokeDevicePassword(context.Context, string, string) error {
	return bridge.ErrNoDevice
}

func (c lockedCore) IssueFeedToken(context.Context, string) (string, error) { return "", nil }
func (c lockedCore) RevokeFeedToken(context.Context, string) (bool, error)  { return false, nil }
func (c lockedCore) HasFeedToken(context.Context, string) (bool, error)     { return false, nil }

// TestHandlerOnANarrowCore: the handler runs on any setup.Core, not only
// *bridge.Service, and answers a lock-out with Retry-After by the core's
// clock (an hour from the wall clock here, so the wall clock would be wrong).
func TestHandlerOnANarrowCore(t *testing.T) {
	t.Parallel()
	h := setup.NewHandler(lockedCore{now: time.Now().Add(time.Hour)}, setup.Options{})
	r := httptest.NewRequest("GET", setup.PagePath, nil)
	r.SetBasicAuth("alice", "whatever")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "90" {
		t.Fatalf("locked-out login: %d, Retry-After %q; want 429, 90", rec.Code, rec.Header().Get("Retry-After"))
	}
}

// TestFeedURLShownOnce: the setup handler issues the feed URL under the
// public URL's path, shows it with its webcal:// link and QR code once,
// and the page afterwards offers renewing and turning off, not the URL.
func TestFeedURLShownOnce(t *testing.T) {
	w := newWorld(t, func(c *config.Config) { c.HTTP.PublicURL, _ = url.Parse("https://tasks.example.com/db") })
	sameSite := map[string]string{"Sec-Fetch-Site": "same-origin"}
	resp := w.post(t, setup.FeedPath, "alice", testsvc.Password("alice"), nil, sameSite)
	b := body(t, resp)
	m := regexp.MustCompile(`id="feed-url">https://tasks\.example\.com/db/feeds/([A-Za-z0-9_-]{43})\.ics<`).FindStringSubmatch(b)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("issue feed: %d\n%s", resp.StatusCode, b)
	}
	tok := m[1]
	if !strings.Contains(b, `href="webcal://tasks.example.com/db/feeds/`+tok+`.ics"`) || !strings.Contains(b, `id="feed-qr" src="data:image/png;base64,`) {
		t.Fatalf("feed page lacks the webcal link or the QR code:\n%s", b)
	}
	if user, ok, err := w.svc.FeedOwner(context.Background(), tok); err != nil || !ok || user != "alice" {
		t.Fatalf("shown token belongs to %q %v %v", user, ok, err)
	}
	page := pageOf(t, w)
	if strings.Contains(page, tok) || !strings.Contains(page, `id="renew-feed"`) || !strings.Contains(page, `id="revoke-feed"`) {
		t.Fatalf("page with a feed:\n%s", page)
	}
	resp = w.post(t, setup.FeedRevokePath, "alice", testsvc.Password("alice"), nil, sameSite)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if _, ok, _ := w.svc.FeedOwner(context.Background(), tok); ok {
		t.Fatal("revoked token still owned")
	}
	if page := pageOf(t, w); !strings.Contains(page, `id="create-feed"`) {
		t.Fatalf("page after revoking:\n%s", page)
	}
}
