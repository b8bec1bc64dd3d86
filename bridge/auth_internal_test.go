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

// TestRefusalPlanMadeOncePerConfig: a hash check does not walk every
// user's hashes. It did (refusalPlan for every check): at a million users
// each cold login cost 10-40 s of that walk. Allocations are the
// deterministic measure: the walk made a map and shapes for every user.
func TestRefusalPlanMadeOncePerConfig(t *testing.T) {
	h := cheapBcrypt(t, "pw", 4)
	cfg := &config.Config{Users: make([]config.User, 5000)}
	for i := range cfg.Users {
		cfg.Users[i] = config.User{Name: fmt.Sprintf("u%d", i), PasswordHash: h,
			AppPasswords: []config.AppPassword{{Name: "phone", Hash: h}}}
	}
	s := &Service{metrics: newMetrics(nil)}
	a := newAuthenticator(s)
	login := func() {
		if ok, err := a.verify(context.Background(), cfg, cfg.User("u7"), "pw"); !ok || err != nil {
			t.Fatalf("u7's login = %v, %v", ok, err)
		}
	}
	login() // the plan for cfg is made here, once
	if perLogin := testing.AllocsPerRun(5, login); perLogin > 500 {
		t.Errorf("a login with %d users costs %.0f allocations; a walk over the users is ≥ %d", len(cfg.Users), perLogin, len(cfg.Users))
	}
	// A new config gets its own plan: a user with more app passwords than
	// anyone before makes every refusal cost one check more.
	cfg2 := *cfg
	cfg2.Users = slices.Clone(cfg.Users)
	cfg2.Users[0].AppPasswords = append(slices.Clone(cfg2.Users[0].AppPasswords), config.AppPassword{Name: "pad", Hash: h})
	if got, want := a.refusalPlan(&cfg2), refusalPlan(&cfg2); !slices.Equal(got, want) || got[0].n != 3 {
		t.Errorf("plan for the new config = %v, want %v (3 checks)", got, want)
	}
}
