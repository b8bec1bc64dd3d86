package setup

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
)

// Payload types in the profile (Apple's device-management schema).
const (
	PayloadConfiguration = "Configuration"
	PayloadCalDAV        = "com.apple.caldav.account"
	PayloadMail          = "com.apple.mail.managed"
	PayloadRoot          = "com.apple.security.root"
)

// ProfileOptions adds what is not part of the account.
type ProfileOptions struct {
	// Password goes into the CalDAV and mail payloads when not empty
	// (setup.profile_passwords). Empty: the phone asks once at install,
	// which is what Apple recommends for profiles that are not encrypted.
	Password string
	// CAs are self-made CA certificates the phone must trust; each becomes
	// a com.apple.security.root payload.
	CAs []*x509.Certificate
}

// Profile renders the configuration profile (an XML property list) that
// adds a's CalDAV and IMAP accounts. Identifiers and UUIDs depend only on
// the host name and the user, so installing a newer profile replaces the
// old one instead of adding a second account; the content is otherwise
// deterministic too.
func Profile(a Account, o ProfileOptions) []byte {
	ids := newIdentity(a.CalDAV.Host, a.User)
	caldav := dict{
		{"PayloadType", PayloadCalDAV},
		{"PayloadVersion", 1},
		{"PayloadIdentifier", ids.id("caldav")},
		{"PayloadUUID", ids.uuid("caldav")},
		{"PayloadDisplayName", "duebridge tasks (CalDAV)"},
		{"PayloadDescription", "Task deadlines in Calendar and tasks in Reminders."},
		{"CalDAVAccountDescription", "duebridge tasks"},
		{"CalDAVHostName", a.CalDAV.Host},
		{"CalDAVPort", a.CalDAV.Port},
		{"CalDAVUseSSL", a.CalDAV.SSL},
		{"CalDAVUsername", a.User},
	}
	if a.CalDAV.PrincipalURL != "" {
		caldav = append(caldav, kv{"CalDAVPrincipalURL", a.CalDAV.PrincipalURL})
	}
	if o.Password != "" {
		caldav = append(caldav, kv{"CalDAVPassword", o.Password})
	}

	mail := dict{
		{"PayloadType", PayloadMail},
		{"PayloadVersion", 1},
		{"PayloadIdentifier", ids.id("mail")},
		{"PayloadUUID", ids.uuid("mail")},
		{"PayloadDisplayName", "duebridge notifications (IMAP)"},
		{"PayloadDescription", "Notification mails about your tasks."},
		{"EmailAccountType", "EmailTypeIMAP"},
		{"EmailAccountDescription", "duebridge"},
		{"EmailAccountName", a.User},
	}
	if a.Email != "" {
		mail = append(mail, kv{"EmailAddress", a.Email})
	}
	mail = append(mail,
		kv{"IncomingMailServerHostName", a.IMAP.Host},
		kv{"IncomingMailServerPortNumber", a.IMAP.Port},
		kv{"IncomingMailServerUseSSL", a.IMAP.SSL},
		kv{"IncomingMailServerAuthentication", "EmailAuthPassword"},
		kv{"IncomingMailServerUsername", a.User},
	)
	if o.Password != "" {
		mail = append(mail, kv{"IncomingPassword", o.Password})
	}
	// iOS requires an outgoing server (OutgoingMailServerHostName and
	// OutgoingMailServerAuthentication are mandatory keys). Without a
	// submission listener there is no port to name and iOS would guess
	// one, so the mail account is left out; the setup page says why.
	mail = append(mail,
		kv{"OutgoingMailServerHostName", a.SMTP.Host},
		kv{"OutgoingMailServerPortNumber", a.SMTP.Port},
		kv{"OutgoingMailServerUseSSL", a.SMTP.SSL},
		kv{"OutgoingMailServerAuthentication", "EmailAuthPassword"},
		kv{"OutgoingMailServerUsername", a.User},
		kv{"OutgoingPasswordSameAsIncomingPassword", true},
	)
	if o.Password != "" {
		mail = append(mail, kv{"OutgoingPassword", o.Password})
	}

	content := array{caldav}
	if a.SMTP.Enabled {
		content = append(content, mail)
	}
	for i, ca := range o.CAs {
		name := ca.Subject.CommonName
		if name == "" {
			name = "duebridge CA"
		}
		kind := "ca"
		if i > 0 {
			kind = "ca" + strconv.Itoa(i+1)
		}
		content = append(content, dict{
			{"PayloadType", PayloadRoot},
			{"PayloadVersion", 1},
			{"PayloadIdentifier", ids.id(kind)},
			{"PayloadUUID", ids.uuid(kind)},
			{"PayloadDisplayName", name},
			{"PayloadDescription", "The certificate authority that issued this server's certificate. " +
				"After installing, turn on full trust for it under Settings > General > About > Certificate Trust Settings."},
			{"PayloadCertificateFileName", fileName(name) + ".cer"},
			{"PayloadContent", ca.Raw},
		})
	}

	top := dict{
		{"PayloadType", PayloadConfiguration},
		{"PayloadVersion", 1},
		{"PayloadIdentifier", ids.id("")},
		{"PayloadUUID", ids.uuid("")},
		{"PayloadDisplayName", "duebridge (" + a.User + ")"},
		{"PayloadDescription", "Adds " + a.User + "'s duebridge accounts on " + a.CalDAV.Host +
			": tasks in Calendar and Reminders (CalDAV) and notification mail (IMAP)."},
		{"PayloadOrganization", "duebridge"},
		{"PayloadRemovalDisallowed", false},
		// 1 = iPhone and iPad: no prompt asking whether the profile is
		// meant for a paired Apple Watch.
		{"TargetDeviceType", 1},
		{"PayloadContent", content},
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString(`<plist version="1.0">` + "\n")
	encode(&b, top, 0)
	b.WriteString("</plist>\n")
	return b.Bytes()
}

// identity derives the profile's identifiers from host and user.
type identity struct {
	base string // reverse-DNS identifier of the profile
	seed string // what the UUIDs hash
}

func newIdentity(host, user string) identity {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	labels := strings.FieldsFunc(host, func(r rune) bool { return r == '.' || r == ':' })
	for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
		labels[i], labels[j] = labels[j], labels[i]
	}
	for i := range labels {
		labels[i] = idLabel(labels[i])
	}
	// A user name with characters outside an identifier's alphabet gets a
	// hash suffix, so that "a@b" and "a-b" stay apart.
	u := idLabel(user)
	if u != user {
		sum := sha256.Sum256([]byte(user))
		u += "-" + hex.EncodeToString(sum[:4])
	}
	base := strings.Join(append(labels, "duebridge", u), ".")
	return identity{base: base, seed: host + "\x00" + user}
}

func (i identity) id(kind string) string {
	if kind == "" {
		return i.base
	}
	return i.base + "." + kind
}

// uuid is a name-based (version 5) UUID of host, user and payload kind: the
// same on every download, different for every user and server.
func (i identity) uuid(kind string) string {
	h := sha1.New()
	h.Write(profileNamespace[:])
	h.Write([]byte(i.seed + "\x00" + kind))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	x := strings.ToUpper(hex.EncodeToString(u[:]))
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:]
}

// profileNamespace is the UUID namespace of duebridge profiles (random,
// fixed forever: changing it would duplicate every installed account).
var profileNamespace = [16]byte{0x6b, 0x1e, 0x4f, 0x0a, 0x93, 0x2c, 0x4d, 0x57, 0x8e, 0x61, 0x0d, 0x3b, 0xa4, 0x25, 0x77, 0xc9}

// idLabel keeps letters, digits and hyphens, which reverse-DNS identifiers allow.
func idLabel(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) == 0 {
		return "x"
	}
	return string(b)
}

func fileName(s string) string {
	s = idLabel(s)
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

// A small property-list writer: ordered dictionaries keep the file in the
// order a person reading it expects, which no map-based encoder does.
type (
	kv struct {
		k string
		v any
	}
	dict  []kv
	array []any
)

func encode(b *bytes.Buffer, v any, depth int) {
	ind := strings.Repeat("\t", depth)
	switch v := v.(type) {
	case dict:
		b.WriteString(ind + "<dict>\n")
		for _, e := range v {
			b.WriteString(ind + "\t<key>")
			xml.EscapeText(b, []byte(e.k))
			b.WriteString("</key>\n")
			encode(b, e.v, depth+1)
		}
		b.WriteString(ind + "</dict>\n")
	case array:
		b.WriteString(ind + "<array>\n")
		for _, e := range v {
			encode(b, e, depth+1)
		}
		b.WriteString(ind + "</array>\n")
	case string:
		b.WriteString(ind + "<string>")
		xml.EscapeText(b, []byte(v))
		b.WriteString("</string>\n")
	case int:
		b.WriteString(ind + "<integer>" + strconv.Itoa(v) + "</integer>\n")
	case bool:
		if v {
			b.WriteString(ind + "<true/>\n")
		} else {
			b.WriteString(ind + "<false/>\n")
		}
	case []byte:
		b.WriteString(ind + "<data>\n")
		s := base64.StdEncoding.EncodeToString(v)
		for len(s) > 0 {
			n := min(len(s), 64)
			b.WriteString(ind + "\t" + s[:n] + "\n")
			s = s[n:]
		}
		b.WriteString(ind + "</data>\n")
	default:
		panic(fmt.Sprintf("setup: no plist encoding for %T", v)) // a programming error
	}
}
