package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/duebridge/duebridge/config"
	"github.com/duebridge/duebridge/internal/password"
)

// cheapArgon makes an argon2id hash with small parameters (the shape is what
// matters here, not the strength).
func cheapArgon(t *testing.T, pw string, m uint32) string {
	t.Helper()
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, 1, m, 1, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=1,p=1$%s$%s", argon2.Version, m, b64.EncodeToString(salt), b64.EncodeToString(key))
}

func cheapBcrypt(t *testing.T, pw string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestRefusalCostIsTheSameSequence: every refused login runs the identical
// sequence of (algorithm, cost) hash checks, whatever kinds of hashes the
// named user has or whether the name exists. A refusal padded to the same
// count in users[0]'s shape was 54 ms faster for a bcrypt user than for an
// unknown name when users[0] had an argon2id hash.
func TestRefusalCostIsTheSameSequence(t *testing.T) {
	cfg := &config.Config{Users: []config.User{
		{Name: "alice", PasswordHash: cheapArgon(t, "alice-pw", 64),
			AppPasswords: []config.AppPassword{{Name: "phone", Hash: cheapBcrypt(t, "alice-app", 4)}}},
		{Name: "bob", PasswordHash: cheapBcrypt(t, "bob-pw", 5)},
		{Name: "carol", PasswordHash: cheapBcrypt(t, "carol-pw", 4), AppPasswords: []config.AppPassword{
			{Name: "a", Hash: cheapBcrypt(t, "carol-a", 4)}, {Name: "b", Hash: cheapArgon(t, "carol-b", 32)}}},
	}}
	s := &Service{metrics: newMetrics(nil)}
	a := newAuthenticator(s)
	var mu sync.Mutex
	var seq []string
	a.verifyHash = func(hash, pw string) bool {
		mu.Lock()
		seq = append(seq, password.Shape(hash))
		mu.Unlock()
		return password.Verify(hash, pw)
	}
	run := func(name, pw string) (bool, []string) {
		seq = nil
		ok, err := a.verify(context.Background(), cfg, cfg.User(name), pw)
		if err != nil {
			t.Fatal(err)
		}
		return ok, slices.Clone(seq)
	}
	_, want := run("nobody", "guess")
	if len(want) == 0 {
		t.Fatal("an unknown name cost no hash check")
	}
	for _, c := range []struct{ name, pw string }{
		{"alice", "wrong"}, {"bob", "wrong"}, {"carol", "wrong"}, {"nobody", "wrong"},
		{"bob", ""}, {"alice", strings.Repeat("x", maxPasswordBytes+1)},
	} {
		ok, got := run(c.name, c.pw)
		if ok {
			t.Fatalf("%s logged in with a wrong password", c.name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("refusing %s (password of %d bytes) checked %v; an unknown name checks %v", c.name, len(c.pw), got, want)
		}
	}
	// Every credential still works.
	for _, c := range []struct{ name, pw string }{
		{"alice", "alice-pw"}, {"alice", "alice-app"}, {"bob", "bob-pw"},
		{"carol", "carol-pw"}, {"carol", "carol-a"}, {"carol", "carol-b"},
	} {
		if ok, _ := run(c.name, c.pw); !ok {
			t.Errorf("%s with %s refused", c.name, c.pw)
		}
	}
}
