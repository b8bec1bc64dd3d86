package main

import (
	"bytes"
	"encoding/xml"
	"os"
	"reflect"
	"strings"
	"testing"
)

// homeIOS is duebridge's answer to iOS's home PROPFIND Depth 1 for a user
// with 10 lists (recorded from the server; 22 KB, as every poll gets it
// without Prefer: return=minimal).
func homeIOS(tb testing.TB) []byte { return readTestdata(tb, "home-ios.xml") }

func readTestdata(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestScanHomeReadsDuebridge checks that the answers every poll gets (in
// full, and minimal: 404 propstats left out) take the scanner, not the
// encoding/xml path, and that both read the same.
func TestScanHomeReadsDuebridge(t *testing.T) {
	for _, name := range []string{"home-ios.xml", "home-ios-minimal.xml"} {
		doc := readTestdata(t, name)
		cols, ok := scanHome(doc)
		if !ok {
			t.Fatalf("%s: scanHome gave up on duebridge's home answer", name)
		}
		want, err := parseHomeXML(doc)
		if err != nil {
			t.Fatal(err)
		}
		if len(want) != 10 || !reflect.DeepEqual(cols, want) {
			t.Fatalf("%s: scanHome = %+v\nparseHomeXML = %+v", name, cols, want)
		}
		for _, c := range cols {
			if c.CTag == "" || c.Token == "" || c.Comp == "" || !strings.HasPrefix(c.Path, "/dav/") {
				t.Errorf("%s: calendar read incompletely: %+v", name, c)
			}
		}
	}
}

// FuzzParseHome holds the scanner to the encoding/xml path: whatever it
// accepts, it reads as parseHomeXML does, and it accepts nothing that
// parseHomeXML refuses.
func FuzzParseHome(f *testing.F) {
	f.Add(homeIOS(f))
	f.Add(readTestdata(f, "home-ios-minimal.xml"))
	f.Add([]byte(`<?xml version="1.0"?>
<multistatus xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CS="http://calendarserver.org/ns/">
 <response><href>http://127.0.0.1:1/dav/u/calendars/p-tasks/</href><propstat><prop>
   <resourcetype><collection/><C:calendar/></resourcetype><CS:getctag>"c1"</CS:getctag><sync-token>tok1</sync-token>
   <C:supported-calendar-component-set><C:comp name='VTODO'/></C:supported-calendar-component-set></prop>
   <status>HTTP/1.1 200 OK</status></propstat></response>
</multistatus>`))
	f.Add([]byte(`<d:multistatus xmlns:d="DAV:"><d:response xmlns:e="DAV:"><e:href>/a/</e:href></d:response></d:multistatus>`))
	f.Add([]byte(`<d:multistatus xmlns:d="DAV:"><d:response><d:href>/a/</d:response></d:href></d:multistatus>`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		cols, ok := scanHome(doc)
		if !ok {
			return
		}
		want, err := parseHomeXML(doc)
		if err != nil {
			t.Fatalf("scanHome accepted what encoding/xml refuses (%v): %+v", err, cols)
		}
		if !reflect.DeepEqual(cols, want) {
			t.Fatalf("scanHome = %+v\nparseHomeXML = %+v", cols, want)
		}
	})
}

// BenchmarkParseHome is the load tool's reading of every poll's answer:
// the scanner, the encoding/xml tokenizer it falls back to, and
// xml.Unmarshal into multistatus.
func BenchmarkParseHome(b *testing.B) {
	doc := homeIOS(b)
	for _, p := range []struct {
		name  string
		parse func([]byte) error
	}{
		{"scan", func(d []byte) error { _, err := parseHome(d); return err }},
		{"encoding-xml", func(d []byte) error { _, err := parseHomeXML(d); return err }},
		{"unmarshal", func(d []byte) error { var ms multistatus; return xml.Unmarshal(d, &ms) }},
	} {
		b.Run(p.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				if err := p.parse(doc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestParseHomeCopiesWhatItKeeps checks that the calendars parseHome
// returns share no bytes with the answer: the answer's buffer is pooled
// and overwritten by the next poll's.
func TestParseHomeCopiesWhatItKeeps(t *testing.T) {
	for _, name := range []string{"home-ios.xml", "home-ios-minimal.xml"} {
		doc := readTestdata(t, name)
		want, err := parseHome(bytes.Clone(doc))
		if err != nil {
			t.Fatal(err)
		}
		cols, err := parseHome(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i := range doc {
			doc[i] = 'x'
		}
		if !reflect.DeepEqual(cols, want) {
			t.Errorf("%s: after the buffer was reused: %+v\nwant %+v", name, cols, want)
		}
	}
}
