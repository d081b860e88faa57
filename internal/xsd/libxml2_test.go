//go:build cgo

package xsd_test

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf16"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/xsd"
)

// These tests cover what only the libxml2 implementation does.

func TestCompileMissingFileWrapsFSError(t *testing.T) {
	fsys := fstest.MapFS{"s/main.xsd": {Data: []byte(`<?xml version="1.0"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x">
	<xs:include schemaLocation="gone.xsd"/>
</xs:schema>`)}}
	_, err := xsd.Compile(fsys, "s/main.xsd")
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Compile error = %v, want one wrapping fs.ErrNotExist", err)
	}
	if want := "open s/gone.xsd"; !strings.Contains(err.Error(), want) {
		t.Errorf("Compile error = %q, want it to contain %q", err, want)
	}
	if strings.Contains(err.Error(), "xsdfs:") {
		t.Errorf("Compile error = %q shows the internal URI scheme", err)
	}
}

func TestValidateRejectsUTF16Doctype(t *testing.T) {
	// prologDoctype reads only UTF-8; libxml2 decodes UTF-16 and the parsed document's DTD is
	// caught after parsing.
	fa3 := compile(t, nil, official.FA3Schema)
	text := `<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE Faktura [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` +
		`<Faktura xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/">&xxe;</Faktura>`
	doc := []byte{0xFF, 0xFE}
	for _, u := range utf16.Encode([]rune(text)) {
		doc = append(doc, byte(u), byte(u>>8))
	}
	verr := validationError(t, fa3.Validate(doc))
	if len(verr.Messages) != 1 || !strings.Contains(verr.Messages[0], "document type declarations") {
		t.Errorf("messages %q, want only the DOCTYPE rejected", verr.Messages)
	}
}
