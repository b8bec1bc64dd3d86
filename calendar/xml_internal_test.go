package calendar

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// unmarshalNode is how request bodies were parsed before parseXML: the
// reference it must agree with.
func unmarshalNode(body []byte) (*node, error) {
	var n node
	if err := xml.Unmarshal(body, &n); err != nil {
		return nil, err
	}
	var check func(*node) bool
	check = func(n *node) bool {
		if !xmlName(n.XMLName.Local) {
			return false
		}
		for i := range n.Children {
			if !check(&n.Children[i]) {
				return false
			}
		}
		return true
	}
	if !check(&n) {
		return nil, errBadXML
	}
	return &n, nil
}

var xmlSeeds = []string{
	`<d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>`,
	`<?xml version="1.0"?><!-- c --><propfind xmlns="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><prop><C:calendar-data/><x:y xmlns:x="urn:x" x:a="1" b="2"/></prop></propfind>trailing <junk`,
	`<a xmlns="urn:one"><b xmlns="urn:two"><c/></b><d>text <![CDATA[cdata <here>]]> &amp; more</d><e xmlns=""/></a>`,
	`<p:a xmlns:p="urn:p"><p:b xmlns:p="urn:q"/><p:c/><u:d/></p:a>`,
	`<a xml:lang="en"><xml:b/></a>`,
	`<a><b></a></b>`,
	`<a xmlns:p="urn:p"><p:b></b></a>`,
	`</a>`,
	`<a>`,
	``,
	`text only`,
	`<:/>`,
	`<a><1b/></a>`,
	`<a b="1" b="2"/>`,
	`<a>&bogus;</a>`,
	`<?xml version="1.0" encoding="utf-8" standalone="yes"?>` + "\n" + `<A:multiget xmlns:A="DAV:" xmlns:B='urn:b'>` + "\n\t" +
		`<A:href>/dav/a/b c</A:href> <B:x A:y = "1"  z='2'/>tail</A:multiget >`,
	`<?xml version="2.0"?><a/>`,
	`<?xml encoding="latin1"?><a/>`,
	`<a b="1"c="2"/>`,
	`<a><b/></a >trailing`,
	`<a:b xmlns:a="urn:a"></a:b>`,
	`<a:b xmlns:a="urn:a"></a:c>`,
	`<xmlns:a/>`,
	`<a xmlns:p="urn:p" p:q="v" xmlns:q=""><q:b/></a>`,
	`<a>]]></a>`,
	`<a>x<!-- c -->y</a>`,
	"<a>\r\n</a>",
	"  \n<a/>",
	`x<a/>`,
}

// TestParseXMLFastTakesClientBodies checks that the bodies clients send
// take the fast path (the fuzz test checks what it takes is right).
func TestParseXMLFastTakesClientBodies(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "caldav", "*.xml"))
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := parseXMLFast(b); !ok {
			t.Errorf("%s: not taken by the fast path", filepath.Base(p))
		}
	}
}

// FuzzParseXML checks parseXML against xml.Unmarshal into a node (the
// parser it replaced): the same tree, or an error from both.
func FuzzParseXML(f *testing.F) {
	for _, s := range xmlSeeds {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "caldav", "*.xml"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		want, werr := unmarshalNode(body)
		got, gerr := parseXML(body)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("%q: Unmarshal error %v, parseXML error %v", body, werr, gerr)
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\nparseXML  %+v\nUnmarshal %+v", body, got, want)
		}
		// The fast path may decline anything, but what it takes it must
		// parse exactly as Unmarshal does.
		if fast, ok := parseXMLFast(body); ok {
			if werr != nil {
				t.Fatalf("%q: Unmarshal error %v, parseXMLFast took it", body, werr)
			}
			if !reflect.DeepEqual(fast, want) {
				t.Fatalf("%q:\nparseXMLFast %+v\nUnmarshal    %+v", body, fast, want)
			}
		}
	})
}

// TestMultistatusFailure checks what a client sees when an answer fails
// while it is being written: before the first byte, a proper 500 and no
// multistatus; after it, a cut-off body (never a well-formed partial
// document), and the error in the log.
func TestMultistatusFailure(t *testing.T) {
	var logs bytes.Buffer
	h := &Handler{log: slog.New(slog.NewTextHandler(&logs, nil))}
	boom := errors.New("store gone")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ms := newMultistatus(w, false)
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for i := range n {
			ms.status("/dav/alice/calendars/x/"+strconv.Itoa(i)+".ics", http.StatusNotFound)
		}
		if h.failedIn(ms, w, r, boom) {
			return
		}
		ms.send()
	}))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/?n=10") // 10 responses: still in the buffer
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusInternalServerError || bytes.Contains(b, []byte("multistatus")) {
		t.Errorf("failure before the first byte: status %d, body %q, read error %v; want a plain 500", resp.StatusCode, b, err)
	}

	resp, err = http.Get(srv.URL + "/?n=2000") // past spillBytes: the 207 is out
	if err != nil {
		t.Fatal(err)
	}
	b, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusMultiStatus || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("failure after the first byte: status %d, read error %v after %d bytes; want 207 cut off (unexpected EOF)",
			resp.StatusCode, err, len(b))
	}
	if bytes.Contains(b, []byte("</d:multistatus>")) {
		t.Error("a cut-off answer ends like a complete document")
	}
	if !strings.Contains(logs.String(), "cut off") || !strings.Contains(logs.String(), "store gone") {
		t.Errorf("the cut-off is not logged: %s", logs.String())
	}
}

// collectionTags makes the same sync token and ctag as syncToken and ctag.
func TestCollectionTags(t *testing.T) {
	for _, seq := range []int64{0, 7, 99, 100, 123456789, 1<<63 - 1} {
		for _, epoch := range []string{"", "3f9a", "a&b"} {
			token, tag := collectionTags(epoch, seq)
			if token != syncToken(epoch, seq) || tag != ctag(epoch, seq) {
				t.Errorf("collectionTags(%q, %d) = %q, %q; want %q, %q", epoch, seq, token, tag, syncToken(epoch, seq), ctag(epoch, seq))
			}
		}
	}
}

// TestMinimalAnswerWrittenAsBefore: a minimal answer to a list of
// properties is written straight from the lookups with the request's
// ready-made tags (found); it must be byte for byte what response writes
// from the evaluated results, for every kind of resource, for properties
// in foreign namespaces, empty values and a resource with none of them.
func TestMinimalAnswerWrittenAsBefore(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "testdata", "caldav", "home_propfind.xml"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := parseXML(body)
	if err != nil {
		t.Fatal(err)
	}
	home, err := parsePropReq(n)
	if err != nil {
		t.Fatal(err)
	}
	odd, err := parsePropReq(mustParse(t, `<d:propfind xmlns:d="DAV:" xmlns:x="urn:x&quot;y"><d:prop><x:z/><d:resourcetype/>`+
		`<d:getetag/><d:supported-report-set/></d:prop></d:propfind>`))
	if err != nil {
		t.Fatal(err)
	}
	none, err := parsePropReq(mustParse(t, `<d:propfind xmlns:d="DAV:"><d:prop><d:nothing-here/></d:prop></d:propfind>`))
	if err != nil {
		t.Fatal(err)
	}
	v := &view{user: &User{Name: "anna", Email: "anna@example.com"}, limits: Limits{ICalObjectBytes: 1 << 20}, epoch: "e1",
		escapes: newEscapeCache(1 << 20), quota: func() (quota, error) { return quota{used: 10, available: 90}, nil }}
	colls := []Collection{{Name: "p-todos", Project: "P <&>", Todos: true, DisplayName: "P", Color: "#FF0000", Seq: 7},
		{Name: "p-events", Project: "", DisplayName: "P deadlines", Order: 3, Seq: 9}}
	obj := Object{Collection: "p-todos", Name: "t.ics", ETag: `"abc"`, Seq: 7}
	resources := []resource{v.root("/"), v.principal(), v.home(9), v.collectionAt(&colls[0]), v.collectionAt(&colls[1]),
		v.object(colls[0], &obj)}
	for qi, q := range []propReq{home, odd, none} {
		if q.tags == nil {
			t.Fatalf("request %d: parsed without tags", qi)
		}
		for ri, r := range resources {
			var fast, slow bytes.Buffer
			m := newMultistatus(&bufWriter{&fast}, true)
			m.props(r.href, r, q)
			m.send()
			plain := q
			plain.tags = nil // the general path
			m = newMultistatus(&bufWriter{&slow}, true)
			m.props(r.href, r, plain)
			m.send()
			if fast.String() != slow.String() {
				t.Errorf("request %d, resource %d: minimal answer\n got %s\nwant %s", qi, ri, fast.String(), slow.String())
			}
		}
	}
}

func mustParse(t *testing.T, s string) *node {
	t.Helper()
	n, err := parseXML([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// bufWriter is an http.ResponseWriter into a buffer.
type bufWriter struct{ b *bytes.Buffer }

func (w *bufWriter) Header() http.Header         { return http.Header{} }
func (w *bufWriter) WriteHeader(int)             {}
func (w *bufWriter) Write(p []byte) (int, error) { return w.b.Write(p) }

// bodyReader is a request body that can be read again.
type bodyReader struct{ *strings.Reader }

func (bodyReader) Close() error { return nil }

// TestKnownPropfindBodyReadWithoutAllocating: every poll of every iPhone
// sends the same PROPFIND body; it is read into a pooled buffer to be
// looked up (io.ReadAll allocated and grew a buffer 4 times per poll).
func TestKnownPropfindBodyReadWithoutAllocating(t *testing.T) {
	body, err := os.ReadFile(filepath.Join("..", "testdata", "caldav", "home_propfind.xml"))
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{log: slog.New(slog.DiscardHandler)}
	text := string(body)
	rd := bodyReader{strings.NewReader(text)}
	req := httptest.NewRequest("PROPFIND", "/dav/anna/calendars/", nil)
	req.Body = rd
	first, err := h.propReq(req)
	if err != nil {
		t.Fatal(err)
	}
	var again propReq
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(text)
		req.Body = rd
		again, err = h.propReq(req)
	})
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Fatalf("the body read again: %+v, %v; want %+v", again, err, first)
	}
	if allocs > 0 {
		t.Errorf("reading a known PROPFIND body: %.0f allocations, want none", allocs)
	}
}
