package setup

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/duebridge/duebridge/config"
)

// Account is what a user needs to add duebridge to a phone: the values the
// profile carries and the page shows for setting it up by hand.
type Account struct {
	User  string // login name for every protocol
	Email string // "" when the config has none (the phone then asks)

	CalDAV CalDAV
	IMAP   Server
	// SMTP is the submission listener iOS requires for a mail account
	// (it authenticates and refuses to relay). Enabled is false when the
	// config runs none; the profile still names the host, because iOS
	// refuses a mail payload without an outgoing server.
	SMTP Server
}

// CalDAV is the calendar account.
type CalDAV struct {
	Host string
	Port int
	SSL  bool
	// URL is where discovery starts (public URL + /.well-known/caldav).
	URL string
	// PrincipalURL is set only when the public URL has a path: iOS then
	// cannot find the server from the host name alone. For a bare host it
	// stays empty, because a full principal URL has made iOS fail where
	// the host alone worked (IOS.md §10).
	PrincipalURL string
}

// Server is a mail server as the phone sees it.
type Server struct {
	Enabled  bool
	Host     string
	Port     int  // 0 when unknown (a listener on port 0, in tests)
	SSL      bool // implicit TLS
	STARTTLS bool // plain port upgraded with STARTTLS
}

// AccountFor derives a user's account settings from the config. Host names
// come from http.public_url, the name the phone reaches the server by (the
// certificate must carry it); ports from the listen addresses, preferring
// the implicit-TLS listeners, which iOS uses for its defaults.
func AccountFor(cfg *config.Config, u *config.User) Account {
	pub := cfg.HTTP.PublicURL
	host := pub.Hostname()
	a := Account{User: u.Name, Email: u.Email}

	a.CalDAV = CalDAV{Host: host, SSL: pub.Scheme == "https", URL: pub.String() + "/.well-known/caldav"}
	a.CalDAV.Port = publicPort(pub)
	if p := strings.Trim(pub.Path, "/"); p != "" {
		a.CalDAV.PrincipalURL = pub.String() + "/dav/" + url.PathEscape(u.Name) + "/"
	}

	a.IMAP = server(host, cfg.IMAP.TLSListen, cfg.IMAP.Listen, cfg.TLS.Enabled())
	a.SMTP = server(host, cfg.Submission.TLSListen, cfg.Submission.Listen, cfg.TLS.Enabled())
	return a
}

func server(host, tlsListen, plainListen string, tlsOn bool) Server {
	switch {
	case tlsListen != "":
		return Server{Enabled: true, Host: host, Port: port(tlsListen), SSL: true}
	case plainListen != "":
		return Server{Enabled: true, Host: host, Port: port(plainListen), STARTTLS: tlsOn}
	}
	return Server{Host: host}
}

func publicPort(u *url.URL) int {
	if p, err := strconv.Atoi(u.Port()); err == nil {
		return p
	}
	if u.Scheme == "https" {
		return 443
	}
	return 80
}

func port(listen string) int {
	_, p, err := net.SplitHostPort(listen)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// isLoopbackHost reports whether a host name or IP address means this
// machine, so that a phone cannot reach it.
func isLoopbackHost(host string) bool {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// isLoopbackAddr reports whether a remote address ("ip:port") is loopback.
func isLoopbackAddr(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		h = addr
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
