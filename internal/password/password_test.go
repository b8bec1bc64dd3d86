package password

import (
	"strings"
	"testing"
)

func TestHashVerifies(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("hash %q", h)
	}
	if !Verify(h, "correct horse") || Verify(h, "correct horse!") {
		t.Fatal("argon2id verification wrong")
	}
	for _, bad := range []string{"", "$argon2id$v=19$m=0,t=1,p=1$AAAA$AAAA", "$argon2id$v=18$m=8,t=1,p=1$AAAA$AAAA", "plain"} {
		if Verify(bad, "") {
			t.Errorf("Verify(%q) accepted", bad)
		}
	}
}
