package bridge

import (
	"context"
	"testing"

	"github.com/duebridge/duebridge/config"
)

// BenchmarkDeviceLogin is a phone's login on every poll: AuthenticateFrom
// with a device password whose row is remembered, from a client address
// (the lock-out checks and the trusted-address record included).
func BenchmarkDeviceLogin(b *testing.B) {
	ctx := context.Background()
	s := deviceService(b, b.TempDir(), []config.User{{Name: "alice", PasswordHash: "x"}})
	_, pw, err := s.IssueDevicePassword(ctx, "alice", "phone")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AuthenticateFrom(ctx, "caldav", "alice", pw, "192.0.2.7:50000"); err != nil {
			b.Fatal(err)
		}
	}
}
