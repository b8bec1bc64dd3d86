package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/duebridge/duebridge/internal/testsvc"
)

// TestMetricsGuard: /metrics names users in its labels, so from another
// host it needs an admin's login; a local scraper needs none.
func TestMetricsGuard(t *testing.T) {
	cfg := testsvc.Config(t)
	cfg.Users[0].Admin = true // alice
	svc := testsvc.New(t, testsvc.Options{Config: cfg})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("metrics")) })
	h := adminOrLoopback(svc, ok)
	cases := []struct {
		name, remote, user string
		want               int
	}{
		{"loopback v4", "127.0.0.1:5000", "", 200},
		{"loopback v6", "[::1]:5000", "", 200},
		{"remote, no login", "192.0.2.7:5000", "", 401},
		{"remote, wrong password", "192.0.2.7:5000", "alice:nope", 401},
		{"remote, not admin", "192.0.2.7:5000", "bob", 403},
		{"remote, admin", "192.0.2.7:5000", "alice", 200},
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.RemoteAddr = c.remote
		switch c.user {
		case "":
		case "alice:nope":
			r.SetBasicAuth("alice", "nope")
		default:
			r.SetBasicAuth(c.user, testsvc.Password(c.user))
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.want {
			t.Errorf("%s: %d, want %d", c.name, w.Code, c.want)
		}
	}
}
