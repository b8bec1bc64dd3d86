package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// Connections bind to the given source addresses in turn, so that each
// address's ephemeral port range holds only its share.
func TestSourceAddrsRoundRobin(t *testing.T) {
	o, err := parseFlags([]string{"--imap", "127.0.0.1:1", "--source-addrs", "127.0.0.2, 127.0.0.3"})
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3")}
	if len(o.SourceAddrs) != 2 || o.SourceAddrs[0] != want[0] || o.SourceAddrs[1] != want[1] {
		t.Fatalf("SourceAddrs = %v, want %v", o.SourceAddrs, want)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	src := newSources(o.SourceAddrs)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 4 {
		c, err := src.dial(ctx, ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		got := s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		if got != want[i%2] {
			t.Errorf("connection %d came from %s, want %s", i, got, want[i%2])
		}
		c.Close()
		s.Close()
	}
	// Without --source-addrs the kernel chooses (nil sources dial plainly).
	c, err := newSources(nil).dial(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestSourceAddrsLoopbackOnly(t *testing.T) {
	for _, bad := range []string{"10.0.0.2", "127.0.0.2,192.168.1.1", "127.0.0.x"} {
		if _, err := parseFlags([]string{"--imap", "127.0.0.1:1", "--source-addrs", bad}); err == nil {
			t.Errorf("--source-addrs %q accepted", bad)
		}
	}
}

// The barrier reports the open connections and waits for the go file.
func TestIdleBarrier(t *testing.T) {
	dir := t.TempDir()
	b := barrier{ReadyFile: dir + "/ready", GoFile: dir + "/go"}
	done := make(chan error, 1)
	go func() { done <- b.wait(context.Background(), 42) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := os.ReadFile(b.ReadyFile)
		if err == nil {
			if string(got) != "42\n" {
				t.Fatalf("ready file %q, want 42", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no ready file")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("returned before the go file: %v", err)
	default:
	}
	if err := os.WriteFile(b.GoFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (barrier{GoFile: dir + "/never"}).wait(ctx, 1); err == nil {
		t.Error("a cancelled wait returned nil")
	}
}
