// Package setup serves onboarding: GET /setup, a page that shows a logged-in
// user the account settings, a QR code of the profile link and a download
// button, and GET /setup/duebridge.mobileconfig, the Apple configuration
// profile that adds the CalDAV and IMAP accounts in one tap.
package setup

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/tlsutil"
)

// Paths the handler answers; mount it on both.
const (
	PagePath    = "/setup"
	ProfilePath = "/setup/duebridge.mobileconfig"
)

// ProfileContentType is what makes Safari hand the file to the profile
// installer instead of showing it.
const ProfileContentType = "application/x-apple-aspen-config"

// Options for NewHandler. Zero values are fine.
type Options struct {
	// Logger; if nil, svc.Logger() is used.
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
	svc  *bridge.Service
	log  *slog.Logger
	cert func() *tls.Certificate
	root func() *x509.Certificate
}

// NewHandler returns the handler for PagePath and ProfilePath. Both need
// HTTP Basic credentials of a configured user (main or app password),
// checked by the bridge with its login protection.
func NewHandler(svc *bridge.Service, o Options) *Handler {
	if o.Logger == nil {
		o.Logger = svc.Logger()
	}
	return &Handler{svc: svc, log: o.Logger, cert: o.Certificate, root: o.Root}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// Both answers carry account data (and maybe a password): never cache
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
		// The password just used to log in: an app password when the user
		// logged in with one, so the phone's access can be revoked alone.
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
	for _, c := range h.cas(cfg) {
		d.CAs = append(d.CAs, caInfo{Name: c.Subject.CommonName, Fingerprint: tlsutil.Fingerprint(c),
			NotAfter: c.NotAfter.UTC().Format("2006-01-02")})
	}
	png, err := qrcode.Encode(d.ProfileLink, qrcode.Medium, 256)
	if err != nil {
		h.log.Error("QR code for the setup page", "err", err)
	} else {
		d.QR = template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(png))
	}
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
