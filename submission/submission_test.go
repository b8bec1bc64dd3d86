package submission

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/duebridge/duebridge/internal/testsvc"
	"github.com/duebridge/duebridge/tlsutil"
)

func start(t testing.TB, opts Options, implicitTLS bool) string {
	t.Helper()
	cfg := testsvc.Config(t)
	cfg.Limits.LoginFailureDelay = 0
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := New(svc, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		if implicitTLS {
			done <- srv.ServeTLS(ln)
		} else {
			done <- srv.Serve(ln)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func devTLS(t *testing.T) (*tls.Config, *tls.Config) {
	t.Helper()
	res, err := tlsutil.DevCert([]string{"127.0.0.1"}, t.TempDir(), time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(res.ServerCertFile, res.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(res.CA)
	return tlsutil.ServerConfig(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil }),
		&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// What iOS does to verify an account's outgoing server: EHLO, STARTTLS,
// EHLO, AUTH. Then a message is refused with a clear reason.
func TestVerifyAndRefuse(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := devTLS(t)
	addr := start(t, Options{TLSConfig: serverTLS, Hostname: "bridge.test"}, false)
	dial := func() *smtp.Client {
		c, err := smtp.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Hello("iphone"); err != nil {
			t.Fatal(err)
		}
		if ok, _ := c.Extension("AUTH"); ok {
			t.Error("AUTH offered before STARTTLS")
		}
		if ok, _ := c.Extension("STARTTLS"); !ok {
			t.Fatal("STARTTLS not offered")
		}
		if err := c.StartTLS(clientTLS); err != nil {
			t.Fatal(err)
		}
		if ok, mechs := c.Extension("AUTH"); !ok || mechs != "PLAIN LOGIN" {
			t.Fatalf("AUTH after STARTTLS: %v %q", ok, mechs)
		}
		return c
	}
	// net/smtp quits after a failed AUTH, so the good login gets its own
	// connection.
	if err := dial().Auth(smtp.PlainAuth("", "alice", "wrong", "127.0.0.1")); code(err) != "535 5.7.8 Authentication credentials invalid" {
		t.Errorf("AUTH with a wrong password: %v", err)
	}
	c := dial()
	if err := c.Auth(smtp.PlainAuth("", "alice", "alice-pw", "127.0.0.1")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	if err := c.Mail("alice@example.com"); code(err) != "550 5.7.1 duebridge does not send mail" {
		t.Fatalf("MAIL FROM: got %v, want the 550 refusal", err)
	}
	if err := c.Rcpt("bob@example.com"); code(err) != "550 5.7.1 duebridge does not send mail" {
		t.Errorf("RCPT TO: %v", err)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
}

// code formats an SMTP error as "NNN text".
func code(err error) string {
	var te *textproto.Error
	if errors.As(err, &te) {
		return fmt.Sprintf("%d %s", te.Code, te.Msg)
	}
	return fmt.Sprint(err)
}

// AUTH LOGIN (username and password prompts) on implicit TLS (port 465).
func TestAuthLoginImplicitTLS(t *testing.T) {
	t.Parallel()
	serverTLS, clientTLS := devTLS(t)
	addr := start(t, Options{TLSConfig: serverTLS}, true)
	conn, err := tls.Dial("tcp", addr, clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	expect := func(prefix string) string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %q: %v", prefix, err)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
			if l[3] != '-' {
				t.Fatalf("got %q, want %q", l, prefix)
			}
		}
	}
	send := func(s string) { io.WriteString(conn, s+"\r\n") }
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	expect("220 ")
	send("EHLO iphone")
	expect("250 AUTH PLAIN LOGIN")
	send("MAIL FROM:<alice@example.com>")
	expect("530 5.7.0")
	send("AUTH LOGIN")
	if l := expect("334 "); !strings.Contains(l, b64("Username:")) {
		t.Errorf("LOGIN prompt %q", l)
	}
	send(b64("alice"))
	expect("334 " + b64("Password:"))
	send(b64("alice-pw"))
	expect("235 2.7.0")
	send("MAIL FROM:<alice@example.com>")
	expect("550 5.7.1 duebridge does not send mail")
	send("QUIT")
	expect("221 ")
}

// Without TLS configured (the loopback demo) AUTH is offered in the clear;
// three failed logins end the connection.
func TestPlainNoTLS(t *testing.T) {
	t.Parallel()
	addr := start(t, Options{}, false)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	var got []string
	read := func() {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				got = append(got, "EOF")
				return
			}
			got = append(got, strings.TrimSpace(l))
			if len(l) < 4 || l[3] != '-' {
				return
			}
		}
	}
	read()
	bad := base64.StdEncoding.EncodeToString([]byte("\x00alice\x00nope"))
	for _, cmd := range []string{"EHLO x", "AUTH PLAIN " + bad, "AUTH PLAIN " + bad, "AUTH PLAIN " + bad} {
		io.WriteString(conn, cmd+"\r\n")
		read()
	}
	read()
	want := "220 duebridge ESMTP duebridge submission (duebridge does not send mail)|250-duebridge|250-ENHANCEDSTATUSCODES|250-8BITMIME|250 AUTH PLAIN LOGIN|" +
		"535 5.7.8 Authentication credentials invalid|535 5.7.8 Authentication credentials invalid|421 4.7.0 Too many failed logins, closing connection|EOF"
	if strings.Join(got, "|") != want {
		t.Errorf("transcript:\n got %s\nwant %s", strings.Join(got, "|"), want)
	}
}
