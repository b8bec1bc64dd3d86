package bridge_test

import (
	"testing"

	"github.com/duebridge/duebridge/bridge"
	"github.com/duebridge/duebridge/internal/testsvc"
)

// Behind a household NAT (or one reverse proxy) every device shares one
// address: failures by anyone there lock the address, but a user who has
// logged in from it before still gets in with the right password.
func TestLockedAddressStillAdmitsItsKnownUsers(t *testing.T) {
	svc, _, _ := authWorld(t)
	const nat = "192.0.2.77:40000"
	mustLogin(t, svc, "alice", testsvc.Password("alice"), nat)
	// A guest's laptop on the same network guesses three names.
	mustFail(t, svc, "bob", "guess-1", "192.0.2.77:40001", bridge.ErrBadCredentials)
	mustFail(t, svc, "carol", "guess-2", "192.0.2.77:40002", bridge.ErrBadCredentials)
	mustFail(t, svc, "nobody", "guess-3", "192.0.2.77:40003", bridge.ErrBadCredentials)
	// The address is locked for users who never logged in from it...
	mustFail(t, svc, "bob", testsvc.Password("bob"), nat, bridge.ErrLockedOut)
	// ...but alice's verified password from her own address is not refused.
	mustLogin(t, svc, "alice", testsvc.Password("alice"), "192.0.2.77:40004")
	// A wrong password from there is still refused (and slowed), not admitted.
	mustFail(t, svc, "alice", "not-it", nat, bridge.ErrBadCredentials)
}

// A phone with a stale password retries it on every sync: the same wrong
// password is one failure, not a guess each time, so it locks neither the
// user nor the address; a different wrong password still counts.
func TestSameWrongPasswordCountsOnce(t *testing.T) {
	svc, _, _ := authWorld(t)
	const phone = "198.51.100.20:5000"
	for range 10 {
		mustFail(t, svc, "alice", "old-password", phone, bridge.ErrBadCredentials)
	}
	mustLogin(t, svc, "alice", testsvc.Password("alice"), "203.0.113.1:1")
	mustLogin(t, svc, "bob", testsvc.Password("bob"), phone)

	// Real guesses still lock: two more distinct wrong passwords make three.
	mustFail(t, svc, "carol", "guess-a", "203.0.113.50:1", bridge.ErrBadCredentials)
	mustFail(t, svc, "carol", "guess-b", "203.0.113.50:1", bridge.ErrBadCredentials)
	mustFail(t, svc, "carol", "guess-c", "203.0.113.50:1", bridge.ErrBadCredentials)
	mustFail(t, svc, "carol", testsvc.Password("carol"), "203.0.113.51:1", bridge.ErrLockedOut)
}
