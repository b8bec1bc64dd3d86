package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/config"
)

// TestDevicesCommand: `duebridge devices list` shows a device password the
// running server issued, with its last use; `devices revoke` (another
// process's view of the same store) shuts it out and the running server
// closes the IMAP session it had open.
func TestDevicesCommand(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "alice", "bob")
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type up struct {
		a   Addrs
		svc *bridge.Service
	}
	ready := make(chan up, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, serveOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Ready: func(a Addrs, svc *bridge.Service) { ready <- up{a, svc} }})
	}()
	var u up
	select {
	case u = <-ready:
	case err := <-done:
		t.Fatalf("serve ended before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve not ready")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	dev, pw, err := u.svc.IssueDevicePassword(ctx, "alice", "Alice's iPhone")
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(u.a.IMAP.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", pw).Wait(); err != nil {
		t.Fatalf("IMAP login with the device password: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	out, err := runCLI(t, "devices", "list", "-c", path)
	if err != nil || !strings.Contains(out, dev.ID) || !strings.Contains(out, `"Alice's iPhone"`) || !strings.Contains(out, "alice") {
		t.Fatalf("devices list: %v\n%s", err, out)
	}
	if out, _ := runCLI(t, "devices", "list", "-c", path, "--user", "bob"); !strings.Contains(out, "no device passwords") {
		t.Fatalf("bob's list shows alice's device:\n%s", out)
	}
	if out, err := runCLI(t, "devices", "revoke", "-c", path, "--user", "bob", dev.ID); err == nil || !strings.Contains(out, "no device password") {
		t.Fatalf("bob revoking alice's device: %v\n%s", err, out)
	}
	if out, err := runCLI(t, "devices", "revoke", "-c", path, "--user", "alice", dev.ID); err != nil || !strings.Contains(out, "revoked "+dev.ID) {
		t.Fatalf("devices revoke: %v\n%s", err, out)
	}
	// The server notices within its revocation poll (5 s) and closes the
	// session.
	deadline := time.Now().Add(15 * time.Second)
	for c.Noop().Wait() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the IMAP session of the revoked device is still open")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := u.svc.Authenticate("imap", "alice", pw); err == nil {
		t.Fatal("revoked device password still logs in")
	}
	if out, _ := runCLI(t, "devices", "list", "-c", path); strings.Contains(out, dev.ID) {
		t.Fatalf("revoked device still listed:\n%s", out)
	}
}
