package config

import (
	"encoding/base64"
	"math/rand/v2"
	"net/mail"
	"testing"
)

// randomStrings is n strings of up to maxLen bytes drawn from alphabet,
// from a fixed seed (the same strings every run).
func randomStrings(n, maxLen int, alphabet string) []string {
	r := rand.New(rand.NewPCG(15, 3))
	out := make([]string, n)
	for i := range out {
		b := make([]byte, r.IntN(maxLen+1))
		for j := range b {
			b[j] = alphabet[r.IntN(len(alphabet))]
		}
		out[i] = string(b)
	}
	return out
}

// b64Len answers as RawStdEncoding.DecodeString: same success, same length.
func TestB64LenMatchesDecode(t *testing.T) {
	cases := append(randomStrings(20000, 12, "AZaz09+/=\r\n-_.$ \xff"),
		"", "A", "AA", "AAA", "AAAA", "AAAAA", "AA\nAA", "A\r\nA", "AAA=", "AA==", "\n", "QUJD", "QUJDRA")
	for _, s := range cases {
		d, err := base64.RawStdEncoding.DecodeString(s)
		n, ok := b64Len(s)
		if ok != (err == nil) || (ok && n != len(d)) {
			t.Errorf("b64Len(%q) = %d, %v; DecodeString: %d bytes, %v", s, n, ok, len(d), err)
		}
	}
}

// validName answers as the regular expression it replaces.
func TestValidNameMatchesRE(t *testing.T) {
	cases := append(randomStrings(20000, 8, "aZ09._@+-/ é\xff"),
		"a", ".a", "a.", "0", "@", "é", "a\n", string(make([]byte, 64)),
		"a123456789012345678901234567890123456789012345678901234567890123",  // 64
		"a1234567890123456789012345678901234567890123456789012345678901234") // 65
	for _, s := range cases {
		if got, want := validName(s), nameRE.MatchString(s); got != want {
			t.Errorf("validName(%q) = %v, nameRE says %v", s, got, want)
		}
	}
}

// parseAddress answers as net/mail: same address, name and success.
func TestParseAddressMatchesNetMail(t *testing.T) {
	cases := append(randomStrings(30000, 9, "ab9@.._+-\" <>()[],:;\\é"),
		"alice@example.com", "a.b@c.d", ".a@b", "a.@b", "a..b@c", "a@.b", "a@b.", "a@b..c", "a@@b",
		"@b", "a@", "A+tag_x-y@EXAMPLE.org", `"Alice" <alice@example.com>`, "alice@example.com (x)",
		"a@[127.0.0.1]", "a@b c", " a@b", "a@b ")
	for _, s := range cases {
		got, err := parseAddress(s)
		want, werr := mail.ParseAddress(s)
		if (err == nil) != (werr == nil) || (werr == nil && (got.Address != want.Address || got.Name != want.Name)) {
			t.Errorf("parseAddress(%q) = %+v, %v; net/mail: %+v, %v", s, got, err, want, werr)
		}
	}
}
