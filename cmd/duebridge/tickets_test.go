package main

import (
	"crypto/tls"
	"net/http"
	"testing"
	"time"
)

// TestReturningPhoneResumesTLS: a phone polls with a new connection each
// time (Connection: close); from its second poll on, the server resumes its
// TLS session from the ticket instead of a full handshake.
func TestReturningPhoneResumesTLS(t *testing.T) {
	w := startTLS(t, "")
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: w.pool, ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(4)},
	}}
	var resumed []bool
	for range 3 {
		resp, err := c.Get(w.base + "/setup")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		resumed = append(resumed, resp.TLS.DidResume)
	}
	if resumed[0] || !resumed[1] || !resumed[2] {
		t.Fatalf("DidResume per poll = %v, want [false true true]", resumed)
	}
}
