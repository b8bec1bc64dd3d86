package iphone

import (
	"bufio"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MailRow is one row of the Mail list.
type MailRow struct {
	UID     uint32
	Subject string
	From    string
	Date    time.Time
}

// headerFields is the field list of Mail's header FETCH, as the phone sends
// it: atoms, upper case (IOS.md §9.1, §12).
const headerFields = "DATE FROM SUBJECT MESSAGE-ID IN-REPLY-TO REFERENCES CONTENT-TYPE X-PRIORITY IMPORTANCE"

// MailList reads INBOX as Mail does: LOGIN, SELECT, then
// UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (...)]). It parses the
// answer strictly, as a client that matches the echoed section by string:
// a FETCH whose section is not BODY[HEADER.FIELDS (<the fields as sent>)]
// leaves the row without headers, which is reported as an error naming it.
func (p *Phone) MailList(timeout time.Duration) ([]MailRow, error) {
	conn, err := net.DialTimeout("tcp", p.IMAPAddr, timeout)
	if err != nil {
		return nil, fmt.Errorf("mail: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	c := &imapConn{r: bufio.NewReader(conn), w: conn}
	if _, err := c.line(); err != nil { // greeting
		return nil, err
	}
	if _, err := c.cmd("a1", "LOGIN "+quote(p.User)+" "+quote(p.Password)); err != nil {
		return nil, err
	}
	if _, err := c.cmd("a2", "SELECT INBOX"); err != nil {
		return nil, err
	}
	section := "BODY[HEADER.FIELDS (" + headerFields + ")]"
	untagged, err := c.cmd("a3", "UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS ("+headerFields+")])")
	if err != nil {
		return nil, err
	}
	c.cmd("a4", "LOGOUT")
	var rows []MailRow
	for _, u := range untagged {
		if !fetchLine.MatchString(u.text) {
			continue
		}
		row := MailRow{}
		if m := uidItem.FindStringSubmatch(u.text); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 32)
			row.UID = uint32(n)
		}
		if !strings.Contains(u.text, section+" {") {
			return nil, fmt.Errorf("mail: FETCH answer does not echo the section as sent (%s): %q", section, u.text)
		}
		msg, err := mail.ReadMessage(strings.NewReader(u.literal + "\r\n"))
		if err != nil {
			return nil, fmt.Errorf("mail: headers of UID %d: %w", row.UID, err)
		}
		dec := new(mimeDecoder)
		row.Subject = dec.decode(msg.Header.Get("Subject"))
		row.From = dec.decode(msg.Header.Get("From"))
		row.Date, _ = msg.Header.Date()
		rows = append(rows, row)
	}
	return rows, nil
}

var (
	fetchLine = regexp.MustCompile(`^\* \d+ FETCH \(`)
	uidItem   = regexp.MustCompile(`[( ]UID (\d+)`)
)

type imapConn struct {
	r *bufio.Reader
	w net.Conn
}

// response is one untagged response: its text up to a literal, and the
// literal (only one per response is expected here).
type response struct {
	text    string
	literal string
}

func (c *imapConn) line() (string, error) {
	s, err := c.r.ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("mail: read: %w", err)
	}
	return strings.TrimRight(s, "\r\n"), nil
}

var literalAt = regexp.MustCompile(`\{(\d+)\}$`)

// cmd sends one command and collects untagged responses until its tagged
// OK; anything else is an error quoting the server's line.
func (c *imapConn) cmd(tag, command string) ([]response, error) {
	if _, err := fmt.Fprintf(c.w, "%s %s\r\n", tag, command); err != nil {
		return nil, err
	}
	var out []response
	for {
		l, err := c.line()
		if err != nil {
			return out, err
		}
		if strings.HasPrefix(l, tag+" ") {
			if !strings.HasPrefix(l, tag+" OK") {
				return out, fmt.Errorf("mail: %s: %s", command, l)
			}
			return out, nil
		}
		r := response{text: l}
		for {
			m := literalAt.FindStringSubmatch(l)
			if m == nil {
				break
			}
			n, _ := strconv.Atoi(m[1])
			buf := make([]byte, n)
			if _, err := readFull(c.r, buf); err != nil {
				return out, err
			}
			r.literal += string(buf)
			if l, err = c.line(); err != nil {
				return out, err
			}
			r.text += " " + l
		}
		out = append(out, r)
	}
}

func readFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// mimeDecoder decodes RFC 2047 words as Mail shows them.
type mimeDecoder struct{ mime.WordDecoder }

func (d *mimeDecoder) decode(s string) string {
	if out, err := d.DecodeHeader(s); err == nil {
		return out
	}
	return s
}
