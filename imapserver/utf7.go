package imapserver

import (
	"encoding/base64"
	"unicode/utf16"
	"unicode/utf8"
)

// modB64 is RFC 3501 5.1.3's modified base64: "," for "/", no padding.
var modB64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,").WithPadding(base64.NoPadding)

// validMailboxName reports whether s is a mailbox name go-imap can decode:
// modified UTF-7 (RFC 3501 5.1.3), with UTF-8 also allowed (UTF8=ACCEPT).
// go-imap answers a LIST pattern that is not with NO [SERVERBUG]; conn
// answers BAD first.
func validMailboxName(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	afterShift := false // the previous run was base64: "&..-&..-" is not canonical
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch < 0x20 || ch == 0x7f {
			return false
		}
		if ch != '&' {
			afterShift = false
			continue
		}
		end := i + 1
		for end < len(s) && s[end] != '-' {
			end++
		}
		if end == len(s) {
			return false // "&" never closed
		}
		if end > i+1 {
			if afterShift || !validShifted(s[i+1:end]) {
				return false
			}
			afterShift = true
		} else {
			afterShift = false // "&-" is "&"
		}
		i = end
	}
	return true
}

// validShifted reports whether b64 decodes to UTF-16 code points that
// needed encoding (no printable ASCII), with surrogates paired.
func validShifted(b64 string) bool {
	b, err := modB64.DecodeString(b64)
	if err != nil || len(b)%2 != 0 {
		return false
	}
	units := make([]uint16, len(b)/2)
	for i := range units {
		units[i] = uint16(b[2*i])<<8 | uint16(b[2*i+1])
	}
	for i := 0; i < len(units); i++ {
		r := rune(units[i])
		switch {
		case utf16.IsSurrogate(r):
			if i+1 == len(units) || utf16.DecodeRune(r, rune(units[i+1])) == utf8.RuneError {
				return false
			}
			i++
		case r >= 0x20 && r <= 0x7e:
			return false
		}
	}
	return true
}

// listArgs returns the mailbox arguments of a LIST or LSUB line's rest:
// its quoted strings and atoms, without parenthesised options or literals
// (which the wrapper does not read).
func listArgs(rest []byte) []string {
	var out []string
	for i := 0; i < len(rest); {
		switch ch := rest[i]; {
		case ch == ' ' || ch == '\r' || ch == '\n':
			i++
		case ch == '"':
			var v []byte
			for i++; i < len(rest) && rest[i] != '"'; i++ {
				if rest[i] == '\\' && i+1 < len(rest) {
					i++
				}
				v = append(v, rest[i])
			}
			i++
			out = append(out, string(v))
		case ch == '(':
			depth := 0
			for ; i < len(rest); i++ {
				if rest[i] == '(' {
					depth++
				} else if rest[i] == ')' {
					if depth--; depth == 0 {
						i++
						break
					}
				}
			}
		default:
			start := i
			for i < len(rest) && rest[i] != ' ' && rest[i] != '\r' && rest[i] != '\n' {
				i++
			}
			if tok := string(rest[start:i]); tok[len(tok)-1] != '}' {
				out = append(out, tok)
			}
		}
	}
	return out
}
