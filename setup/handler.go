// Package setup serves onboarding: GET /setup, a page that shows a logged-in
// user the account settings, a QR code of the profile link and a download
// button, and GET /setup/duebridge.mobileconfig, the Apple configuration
// profile that adds the CalDAV and IMAP accounts in one tap.
package setup

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/password"
	"github.com/duebridge/duebridge/tlsutil"
)

// Paths the handler answers; mount it on all four (the last two take POST
// only, from a page of the same origin).
const (
	PagePath    = "/setup"
	ProfilePath = "/setup/duebridge.mobileconfig"
	// DevicesPath makes a device password (form field "name") and shows it
	// once; RevokePath revokes one (form field "id").
	DevicesPath = "/setup/devices"
	RevokePath  = "/setup/devices/revoke"
	// FeedPath issues (or renews) the user's calendar feed URL and shows
	// it once; FeedRevokePath turns the feed off. Both take POST only.
	FeedPath       = "/setup/feed"
	FeedRevokePath = "/setup/feed/revoke"
)

// feedPrefix is where feed.Handler serves the feeds (feed.Path without
// its pattern); setup does not import feed, so it is repeated here.
const feedPrefix = "/feeds/"

// ProfileContentType is what makes Safari hand the file to the profile
// installer instead of showing it.
const ProfileContentType = "application/x-apple-aspen-config"

// Core is what the setup pages need of the core, in their own terms: log a
// browser in (with the core's lock-out), read the live configuration and
// the time, and issue, list and revoke a user's device passwords.
// *bridge.Service implements it; tests may pass anything that does.
type Core interface {
	// AuthenticateFrom checks a login from remoteAddr. Errors:
	// bridge.ErrBadCredentials, a *bridge.LockoutError, or an internal one.
	AuthenticateFrom(ctx context.Context, protocol, name, pw, remoteAddr string) (*config.User, error)
	// Config is the current configuration snapshot.
	Config() *config.Config
	// Now is the core's clock (lock-out Retry-After, default device names).
	Now() time.Time
	// IssueDevicePassword makes a device password and returns it, once.
	// Errors: bridge.ErrDeviceName, bridge.ErrTooManyDevices.
	IssueDevicePassword(ctx context.Context, user, name string) (bridge.Device, string, error)
	// Devices lists the user's device passwords.
	Devices(ctx context.Context, user string) ([]bridge.Device, error)
	// RevokeDevicePassword ends one. Error: bridge.ErrNoDevice.
	RevokeDevicePassword(ctx context.Context, user, id string) error
	// IssueFeedToken makes the user's calendar feed token, revoking the
	// previous one, and returns it once.
	IssueFeedToken(ctx context.Context, user string) (string, error)
	// RevokeFeedToken turns the user's feed off; revoked reports whether
	// there was a live one.
	RevokeFeedToken(ctx context.Context, user string) (revoked bool, err error)
	// HasFeedToken reports whether the user has a live feed token.
	HasFeedToken(ctx context.Context, user string) (bool, error)
}

// Options for NewHandler. Zero values are fine.
type Options struct {
	// Logger; if nil, slog.Default() is used.
	Logger *slog.Logger
	// Certificate returns the certificate the HTTPS listener serves, with
	// its private key and chain. It signs profiles when setup.sign_profiles
	// is on. If nil, or it returns nil, profiles go out unsigned.
	Certificate func() *tls.Certificate
	// Root returns the self-made CA at the end of the served chain
	// (tlsutil.Reloader.Root), which the profile carries when tls.ca_file
	// is not set. If nil, only tls.ca_file is used.
	Root func() *x509.Certificate
}

// Handler serves the setup page and the profile.
type Handler struct {
	svc  Core
	log  *slog.Logger
	cert func() *tls.Certificate
	root func() *x509.Certificate
	// csrf refuses the POSTs when a browser says they come from another
	// site: the browser sends Basic credentials along with any request.
	csrf *http.CrossOriginProtection
}

// NewHandler returns the handler for PagePath and ProfilePath. Both need
// HTTP Basic credentials of a configured user (main or app password),
// checked by the bridge with its login protection.
func NewHandler(svc Core, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Handler{svc: svc, log: o.Logger, cert: o.Certificate, root: o.Root, csrf: http.NewCrossOriginProtection()}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	post := r.URL.Path == DevicesPath || r.URL.Path == RevokePath || r.URL.Path == FeedPath || r.URL.Path == FeedRevokePath
	switch {
	case post && r.Method != http.MethodPost:
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	case !post && r.Method != http.MethodGet && r.Method != http.MethodHead:
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if post {
		if err := h.csrf.Check(r); err != nil {
			http.Error(w, "cross-origin request refused", http.StatusForbidden)
			return
		}
	}
	// Every answer carry account data (and maybe a password): never cache
	// them, never let another site frame or sniff them.
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	switch r.URL.Path {
	case PagePath:
		h.page(w, r)
	case ProfilePath:
		h.profile(w, r)
	case DevicesPath:
		h.addDevice(w, r)
	case RevokePath:
		h.revokeDevice(w, r)
	case FeedPath:
		h.issueFeed(w, r)
	case FeedRevokePath:
		h.revokeFeed(w, r)
	default:
		// "/setup/", "/setup/index.html", "/" and whatever else a person
		// types on the way: send them to the page rather than a 404.
		http.Redirect(w, r, PagePath, http.StatusFound)
	}
}

// Typed are the patterns a person may type for the setup page, besides
// PagePath; mount the handler on them too (it redirects them to PagePath).
var Typed = []string{"GET /{$}", "GET /setup/"}

// login checks Basic credentials; on failure it has answered the request.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) (*config.Config, *config.User, string, bool) {
	name, pw, ok := r.BasicAuth()
	if !ok {
		challenge(w)
		return nil, nil, "", false
	}
	cfg := h.svc.Config()
	u, err := h.svc.AuthenticateFrom(r.Context(), "setup", name, pw, r.RemoteAddr)
	if err != nil {
		var le *bridge.LockoutError
		switch {
		case errors.As(err, &le):
			secs := int(le.RetryAfter(h.svc.Now()) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusTooManyRequests)
			w.Write([]byte("Too many failed logins. Try again in " + (time.Duration(secs) * time.Second).String() + ".\n"))
		case errors.Is(err, bridge.ErrBadCredentials):
			challenge(w)
		default:
			// The client went away during the failure delay; nobody reads this.
			http.Error(w, "login not completed", http.StatusRequestTimeout)
		}
		return nil, nil, "", false
	}
	return cfg, u, pw, true
}

func challenge(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Basic realm="duebridge", charset="UTF-8"`)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write([]byte(`<!doctype html><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">` +
		`<title>duebridge: log in</title><p>Log in with your duebridge user name and password (or one of your app passwords) to set up your phone.</p>`))
}

// profile serves the .mobileconfig.
func (h *Handler) profile(w http.ResponseWriter, r *http.Request) {
	cfg, u, pw, ok := h.login(w, r)
	if !ok {
		return
	}
	if cfg.Setup.ProfilePasswords {
		// Each download is a device with a password of its own, so that
		// the phone can be shut out alone and logs in without an
		// argon2id check; one already logged in with a device password
		// keeps it.
		var err error
		if pw, err = h.devicePassword(r, u.Name, pw); err != nil {
			h.deviceError(w, err)
			return
		}
	}
	body, signed := h.build(cfg, u, pw)
	w.Header().Set("Content-Type", ProfileContentType)
	w.Header().Set("Content-Disposition", `attachment; filename="duebridge.mobileconfig"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
	h.log.Info("setup profile downloaded", "user", u.Name, "client", r.RemoteAddr, "signed", signed,
		"password_included", cfg.Setup.ProfilePasswords, "plain_http", r.TLS == nil)
}

// build renders (and, if configured, signs) the user's profile.
func (h *Handler) build(cfg *config.Config, u *config.User, pw string) ([]byte, bool) {
	o := ProfileOptions{CAs: h.cas(cfg)}
	if cfg.Setup.ProfilePasswords {
		// The device's own password (profile issued it).
		o.Password = pw
	}
	body := Profile(AccountFor(cfg, u), o)
	if !cfg.Setup.SignProfiles {
		return body, false
	}
	var cert *tls.Certificate
	if h.cert != nil {
		cert = h.cert()
	}
	if cert == nil {
		h.log.Warn("setup.sign_profiles is on but the server has no certificate; the profile goes out unsigned")
		return body, false
	}
	signed, err := Sign(body, cert)
	if err != nil {
		h.log.Error("signing the setup profile failed; it goes out unsigned", "err", err)
		return body, false
	}
	return signed, true
}

// cas returns the CA certificates the profile should install: those in
// tls.ca_file, else the self-signed root the server's chain ends in.
func (h *Handler) cas(cfg *config.Config) []*x509.Certificate {
	if cfg.TLS.CAFile != "" {
		certs, err := tlsutil.ReadCertificates(cfg.TLS.CAFile)
		if err != nil {
			h.log.Error("tls.ca_file cannot be read; the profile goes out without the CA", "err", err)
			return nil
		}
		var cas []*x509.Certificate
		for _, c := range certs {
			if c.BasicConstraintsValid && c.IsCA {
				cas = append(cas, c)
			}
		}
		if len(cas) == 0 {
			h.log.Error("tls.ca_file holds no CA certificate; the profile goes out without it", "file", cfg.TLS.CAFile)
		}
		return cas
	}
	if h.root != nil {
		if c := h.root(); c != nil {
			return []*x509.Certificate{c}
		}
	}
	return nil
}

type caInfo struct {
	Name        string
	Fingerprint string
	NotAfter    string
}

type pageData struct {
	Account           Account
	ProfileLink       string
	ProfileHref       string
	QR                template.URL
	PlainHTTP         bool
	Loopback          bool
	PublicURL         string
	CAs               []caInfo
	Signed            bool
	PasswordInProfile bool
	AppPasswords      []string
	Devices           []deviceRow
	DevicesPath       string
	RevokePath        string
	FeedLive          bool
	FeedPath          string
	FeedRevokePath    string
}

type deviceRow struct {
	ID, Name, Created, LastUsed string
}

// page serves the setup page.
func (h *Handler) page(w http.ResponseWriter, r *http.Request) {
	cfg, u, _, ok := h.login(w, r)
	if !ok {
		return
	}
	pub := cfg.HTTP.PublicURL
	d := pageData{
		Account:     AccountFor(cfg, u),
		ProfileLink: pub.String() + ProfilePath,
		// Relative, so the button works whatever name the browser used
		// (the QR code must carry the absolute public link instead).
		ProfileHref:       "setup/duebridge.mobileconfig",
		PublicURL:         pub.String(),
		Loopback:          isLoopbackHost(pub.Hostname()),
		PasswordInProfile: cfg.Setup.ProfilePasswords,
		Signed:            cfg.Setup.SignProfiles && h.cert != nil && h.cert() != nil,
	}
	// Plain HTTP is only harmless when both ends are this machine. Behind
	// a TLS-terminating proxy the public URL says https and r.TLS is nil;
	// that is not warned about.
	d.PlainHTTP = r.TLS == nil && pub.Scheme != "https" && !(d.Loopback && isLoopbackAddr(r.RemoteAddr))
	for _, ap := range u.AppPasswords {
		d.AppPasswords = append(d.AppPasswords, ap.Name)
	}
	d.DevicesPath, d.RevokePath = "setup/devices", "setup/devices/revoke"
	devs, err := h.svc.Devices(r.Context(), u.Name)
	if err != nil {
		h.log.Error("list devices for the setup page", "user", u.Name, "err", err)
	}
	for _, dv := range devs {
		row := deviceRow{ID: dv.ID, Name: dv.Name, Created: dv.Created.UTC().Format("2006-01-02 15:04 MST"), LastUsed: "never"}
		if !dv.LastUsed.IsZero() {
			row.LastUsed = dv.LastUsed.UTC().Format("2006-01-02 15:04 MST")
		}
		d.Devices = append(d.Devices, row)
	}
	d.FeedPath, d.FeedRevokePath = "setup/feed", "setup/feed/revoke"
	if d.FeedLive, err = h.svc.HasFeedToken(r.Context(), u.Name); err != nil {
		h.log.Error("look up the feed for the setup page", "user", u.Name, "err", err)
	}
	for _, c := range h.cas(cfg) {
		d.CAs = append(d.CAs, caInfo{Name: c.Subject.CommonName, Fingerprint: tlsutil.Fingerprint(c),
			NotAfter: c.NotAfter.UTC().Format("2006-01-02")})
	}
	d.QR = h.qr(d.ProfileLink)
	var b bytes.Buffer
	if err := pageTmpl.Execute(&b, d); err != nil {
		h.log.Error("render setup page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Write(b.Bytes())
	if d.PlainHTTP {
		h.log.Warn("setup page served over plain HTTP to a non-loopback client; configure TLS", "user", u.Name, "client", r.RemoteAddr)
	}
}

// devicePassword returns the password a profile carries: the login
// password if it is a device password of the user (it still works), else a
// new device password named by the "device" query parameter.
func (h *Handler) devicePassword(r *http.Request, user, loginPW string) (string, error) {
	if password.IsDevice(loginPW) {
		return loginPW, nil
	}
	name := r.URL.Query().Get("device")
	if name == "" {
		name = "Profile of " + h.svc.Now().UTC().Format("2006-01-02 15:04 MST")
	}
	_, pw, err := h.svc.IssueDevicePassword(r.Context(), user, name)
	return pw, err
}

// deviceError answers a failed issue: the user's own problem (a bad name,
// too many devices) as 400 naming it, anything else as 500.
func (h *Handler) deviceError(w http.ResponseWriter, err error) {
	if errors.Is(err, bridge.ErrDeviceName) || errors.Is(err, bridge.ErrTooManyDevices) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.log.Error("issue device password", "err", err)
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// addDevice makes a device password and shows it, once.
func (h *Handler) addDevice(w http.ResponseWriter, r *http.Request) {
	_, u, _, ok := h.login(w, r)
	if !ok {
		return
	}
	dev, pw, err := h.svc.IssueDevicePassword(r.Context(), u.Name, r.PostFormValue("name"))
	if err != nil {
		h.deviceError(w, err)
		return
	}
	var b bytes.Buffer
	if err := shownTmpl.Execute(&b, map[string]string{"User": u.Name, "Name": dev.Name, "Password": pw}); err != nil {
		h.log.Error("render device password page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Write(b.Bytes())
}

// revokeDevice revokes a device password and returns to the page.
func (h *Handler) revokeDevice(w http.ResponseWriter, r *http.Request) {
	_, u, _, ok := h.login(w, r)
	if !ok {
		return
	}
	id := r.PostFormValue("id")
	if err := h.svc.RevokeDevicePassword(r.Context(), u.Name, id); err != nil {
		if errors.Is(err, bridge.ErrNoDevice) {
			http.Error(w, "no such device password", http.StatusNotFound)
			return
		}
		h.log.Error("revoke device password", "user", u.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.log.Info("device password revoked on the setup page", "user", u.Name, "device", id, "client", r.RemoteAddr)
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}

// qr is a QR code of link as a data: URL for an <img> (the page's CSP
// allows only data: images); "" if it cannot be made.
func (h *Handler) qr(link string) template.URL {
	png, err := qrcode.Encode(link, qrcode.Medium, 256)
	if err != nil {
		h.log.Error("QR code for the setup page", "err", err)
		return ""
	}
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
}

// issueFeed makes (or renews) the user's calendar feed URL and shows it,
// once: only the token's hash is stored.
func (h *Handler) issueFeed(w http.ResponseWriter, r *http.Request) {
	cfg, u, _, ok := h.login(w, r)
	if !ok {
		return
	}
	tok, err := h.svc.IssueFeedToken(r.Context(), u.Name)
	if err != nil {
		h.log.Error("issue feed token", "user", u.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	link := *cfg.HTTP.PublicURL
	link.Path = strings.TrimSuffix(link.Path, "/") + feedPrefix + tok + ".ics"
	link.RawQuery, link.Fragment = "", ""
	webcal := link
	webcal.Scheme = "webcal"
	d := feedData{User: u.Name, URL: link.String(), Webcal: template.URL(webcal.String()), WebcalText: webcal.String()}
	// The QR code carries the webcal:// form: an iPhone camera opens it as
	// a calendar subscription, where https:// would only download a copy.
	d.QR = h.qr(webcal.String())
	var b bytes.Buffer
	if err := feedTmpl.Execute(&b, d); err != nil {
		h.log.Error("render feed URL page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", pageCSP)
	w.Write(b.Bytes())
	h.log.Info("feed URL issued on the setup page", "user", u.Name, "client", r.RemoteAddr)
}

type feedData struct {
	User, URL, WebcalText string
	// Webcal is marked safe: html/template would otherwise blank a link
	// with a scheme other than http(s)/mailto. It is built from the
	// configured public URL and a base64url token, never from input.
	Webcal template.URL
	QR     template.URL
}

// revokeFeed turns the user's feed off and returns to the page.
func (h *Handler) revokeFeed(w http.ResponseWriter, r *http.Request) {
	_, u, _, ok := h.login(w, r)
	if !ok {
		return
	}
	revoked, err := h.svc.RevokeFeedToken(r.Context(), u.Name)
	if err != nil {
		h.log.Error("revoke feed token", "user", u.Name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h.log.Info("feed URL revoked on the setup page", "user", u.Name, "had_one", revoked, "client", r.RemoteAddr)
	http.Redirect(w, r, PagePath, http.StatusSeeOther)
}
