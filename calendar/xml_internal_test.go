package calendar

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"reflect"
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
	})
}
