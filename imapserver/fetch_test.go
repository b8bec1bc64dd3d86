package imapserver_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	goimapserver "github.com/emersion/go-imap/v2/imapserver"

	. "github.com/duebridge/duebridge/imapserver"
	"github.com/duebridge/duebridge/render"
	"github.com/duebridge/duebridge/store"
)

// The header-field fast path gives exactly what go-imap's
// ExtractBodySection gives.
func TestHeaderFieldsMatchLibrary(t *testing.T) {
	notification, err := render.NotificationMail(render.MailInput{Event: render.MailAssigned,
		Task: &store.Task{Source: "tracker", ID: "T-1", Title: strings.Repeat("A long title that folds ", 8), Status: "open", Priority: "urgent"},
		From: "duebridge <tasks@example.com>", Host: "duebridge.test", Date: time.Unix(1e9, 0), Seq: 7, Urgent: true})
	if err != nil {
		t.Fatal(err)
	}
	msgs := map[string][]byte{
		"notification": notification,
		"folded":       []byte("Subject: first\r\n  continued\r\nX-Empty:\r\nto: a@b.example\r\nReceived: one\r\nReceived: two\r\n\tfolded\r\n\r\nbody\r\n"),
		"lf only":      []byte("Subject: s\nFrom: x@y.example\n\nbody\n"),
		"no body":      []byte("Subject: s\r\n"),
	}
	sections := []*imap.FetchItemBodySection{
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"Subject", "FROM", "received", "x-empty", "Message-ID", "X-Priority", "Nope"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"date"}},
		{Specifier: imap.PartSpecifierHeader, HeaderFieldsNot: []string{"Subject", "References", "received"}},
	}
	for name, data := range msgs {
		for i, bs := range sections {
			want := goimapserver.ExtractBodySection(bytes.NewReader(data), bs)
			got, size, ok := HeaderFieldsFast(data, bs)
			if !ok {
				if name != "lf only" {
					t.Errorf("%s: not recognised as CRLF", name)
				}
				continue
			}
			if string(got) != string(want) || size != len(got) {
				t.Errorf("%s, section %d: size %d\n got %q\nwant %q", name, i, size, got, want)
			}
		}
	}
}
