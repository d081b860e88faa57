package xsd_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/xsd"
)

func compile(tb testing.TB, fsys fstest.MapFS, name string) *xsd.Schema {
	tb.Helper()
	var s *xsd.Schema
	var err error
	if fsys == nil {
		s, err = xsd.Compile(official.FS(), name)
	} else {
		s, err = xsd.Compile(fsys, name)
	}
	if err != nil {
		tb.Fatalf("Compile(%q): %v", name, err)
	}
	tb.Cleanup(s.Close)
	return s
}

func sampleInvoice(t *testing.T) []byte {
	t.Helper()
	doc, ok := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	if !ok {
		t.Fatal("sample FA_3_Przyklad_1.xml missing")
	}
	return doc
}

// lineOf returns the 1-based line of the first occurrence of sub in doc.
func lineOf(t *testing.T, doc []byte, sub string) int {
	t.Helper()
	i := bytes.Index(doc, []byte(sub))
	if i < 0 {
		t.Fatalf("%q not in document", sub)
	}
	return bytes.Count(doc[:i], []byte("\n")) + 1
}

func validationError(t *testing.T, err error) *xsd.ValidationError {
	t.Helper()
	var verr *xsd.ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("got error %v (%T), want *xsd.ValidationError", err, err)
	}
	return verr
}

func TestValidateOfficialSamples(t *testing.T) {
	fa3 := compile(t, nil, official.FA3Schema)
	for _, name := range official.SampleInvoiceNames() {
		t.Run(name, func(t *testing.T) {
			if err := fa3.Validate(official.SampleInvoices()[name]); err != nil {
				t.Errorf("Validate(%s) = %v, want nil", name, err)
			}
		})
	}
}

func TestValidateBrokenInvoice(t *testing.T) {
	fa3 := compile(t, nil, official.FA3Schema)
	sample := sampleInvoice(t)
	p2 := regexp.MustCompile(`\s*<P_2>[^<]*</P_2>`)
	if !p2.Match(sample) {
		t.Fatal("sample has no P_2")
	}
	tests := []struct {
		name     string
		doc      []byte
		line     string // text whose line the first message must name
		contains []string
	}{
		{
			name:     "missing P_2",
			doc:      p2.ReplaceAll(sample, nil),
			line:     "<P_6>",
			contains: []string{"P_6': This element is not expected", "Expected is ( {http://crd.gov.pl/wzor/2025/06/25/13775/}P_2 )"},
		},
		{
			name:     "wrong element",
			doc:      bytes.Replace(sample, []byte("<P_2>"), []byte("<P_2X>"), 1),
			line:     "<P_2X>",
			contains: []string{"P_2X"},
		},
		{
			name:     "invalid value",
			doc:      bytes.Replace(sample, []byte("<NIP>9999999999</NIP>"), []byte("<NIP>99999</NIP>"), 1),
			line:     "<NIP>99999<",
			contains: []string{"NIP", "'99999'"},
		},
		{
			name:     "not well-formed",
			doc:      bytes.Replace(sample, []byte("</P_2>"), []byte("</P_3>"), 1),
			line:     "</P_3>",
			contains: []string{"Opening and ending tag mismatch: P_2"},
		},
		{
			name:     "wrong namespace",
			doc:      bytes.Replace(sample, []byte(`xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/"`), []byte(`xmlns="urn:other"`), 1),
			line:     `xmlns="urn:other"`, // libxml2 reports the line where the start tag ends
			contains: []string{"No matching global declaration available for the validation root"},
		},
		{
			name:     "empty",
			doc:      nil,
			line:     "",
			contains: []string{"Document is empty"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			verr := validationError(t, fa3.Validate(tt.doc))
			if len(verr.Messages) == 0 {
				t.Fatal("no messages")
			}
			first := verr.Messages[0]
			wantLine := 1
			if tt.line != "" {
				wantLine = lineOf(t, tt.doc, tt.line)
			}
			if prefix := fmt.Sprintf("line %d: ", wantLine); !strings.HasPrefix(first, prefix) {
				t.Errorf("first message %q, want prefix %q", first, prefix)
			}
			for _, c := range tt.contains {
				if !strings.Contains(first, c) {
					t.Errorf("first message %q does not contain %q", first, c)
				}
			}
			if !strings.Contains(verr.Error(), first) {
				t.Errorf("Error() = %q, does not contain %q", verr.Error(), first)
			}
		})
	}
}

func TestValidateOfficialUPOs(t *testing.T) {
	upo := compile(t, nil, official.UPOSchema)
	const testName = "Ministerstwo Finansów - środowisko testowe (TE)"
	signature := regexp.MustCompile(`(?s)<ds:Signature[ >].*?</ds:Signature>`)
	for name, doc := range official.SampleUPOs() {
		t.Run(name, func(t *testing.T) {
			verr := validationError(t, upo.Validate(doc))
			if len(verr.Messages) != 1 {
				t.Fatalf("got %d messages %q, want exactly one", len(verr.Messages), verr.Messages)
			}
			msg := verr.Messages[0]
			want := fmt.Sprintf("line %d: Element '{http://upo.schematy.mf.gov.pl/KSeF/v4-3}NazwaPodmiotuPrzyjmujacego'", lineOf(t, doc, "<NazwaPodmiotuPrzyjmujacego>"))
			if !strings.HasPrefix(msg, want) || !strings.Contains(msg, "fixed value constraint 'Ministerstwo Finansów'") {
				t.Errorf("message %q, want prefix %q and the fixed-value constraint", msg, want)
			}

			fixed := bytes.Replace(doc, []byte(testName), []byte("Ministerstwo Finansów"), 1)
			fixed = signature.ReplaceAll(fixed, nil)
			if err := upo.Validate(fixed); err != nil {
				t.Errorf("Validate(fixed %s) = %v, want nil", name, err)
			}
		})
	}
}

func TestValidateConcurrent(t *testing.T) {
	fa3 := compile(t, nil, official.FA3Schema)
	good := official.SampleInvoices()
	bad := bytes.Replace(sampleInvoice(t), []byte("<P_2>"), []byte("<P_2X>"), 1)
	const workers, rounds = 8, 10
	var wg sync.WaitGroup
	errc := make(chan error, workers*rounds*(len(good)+1))
	for w := range workers {
		wg.Go(func() {
			for r := range rounds {
				for name, doc := range good {
					if err := fa3.Validate(doc); err != nil {
						errc <- fmt.Errorf("worker %d round %d: Validate(%s) = %v, want nil", w, r, name, err)
					}
				}
				err := fa3.Validate(bad)
				var verr *xsd.ValidationError
				if !errors.As(err, &verr) || !strings.Contains(verr.Messages[0], "P_2X") {
					errc <- fmt.Errorf("worker %d round %d: Validate(bad) = %v, want a message about P_2X", w, r, err)
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestValidateRejectsXXE(t *testing.T) {
	fa3 := compile(t, nil, official.FA3Schema)
	secretFile := filepath.Join(t.TempDir(), "secret.txt")
	const marker = "TOP-SECRET-MARKER-4711"
	if err := os.WriteFile(secretFile, []byte(marker), 0o600); err != nil {
		t.Fatal(err)
	}
	secretURL := "file://" + filepath.ToSlash(secretFile)
	passwd, _ := os.ReadFile("/etc/passwd") // may be absent; then only the marker is checked
	const root = `<Faktura xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/">&xxe;</Faktura>`
	docs := map[string]string{
		"general entity /etc/passwd": `<?xml version="1.0"?>` + "\n" + `<!DOCTYPE Faktura [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>` + "\n" + root,
		"general entity marker":      `<?xml version="1.0"?>` + "\n" + `<!DOCTYPE Faktura [<!ENTITY xxe SYSTEM "` + secretURL + `">]>` + "\n" + root,
		"parameter entity":           `<?xml version="1.0"?>` + "\n" + `<!DOCTYPE Faktura [<!ENTITY % p SYSTEM "` + secretURL + `"> %p;]>` + "\n" + `<Faktura xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/"/>`,
		"external DTD":               `<?xml version="1.0"?>` + "\n" + `<!DOCTYPE Faktura SYSTEM "` + secretURL + `">` + "\n" + `<Faktura xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/"/>`,
		"after BOM, comment and PI":  "\xEF\xBB\xBF" + `<?xml version="1.0"?><!-- a comment --><?pi x?>` + "\n" + ` <!DOCTYPE Faktura [<!ENTITY xxe SYSTEM "` + secretURL + `">]>` + "\n" + root,
		"entity expansion": `<?xml version="1.0"?>` + "\n" + `<!DOCTYPE Faktura [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">` +
			`<!ENTITY xxe "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>` + "\n" + root,
	}
	for name, doc := range docs {
		t.Run(name, func(t *testing.T) {
			verr := validationError(t, fa3.Validate([]byte(doc)))
			text := verr.Error()
			if !strings.Contains(text, "line 2: document type declarations") {
				t.Errorf("Error() = %q, want the DOCTYPE on line 2 rejected", text)
			}
			if strings.Contains(text, marker) || strings.Contains(text, "aaaaaaaaaaaaaaaaaaaa") {
				t.Errorf("Error() = %q leaks entity content", text)
			}
			if len(passwd) > 0 {
				first, _, _ := strings.Cut(string(passwd), "\n")
				if first != "" && strings.Contains(text, first) {
					t.Errorf("Error() = %q contains /etc/passwd", text)
				}
			}
		})
	}
}

// mainXSD is the entry point of testFS.
const mainXSD = "główny katalog (1)/schemat [v1].xsd"

// testFS holds a small schema spread over directories whose names need URI escaping, with an
// include by a percent-encoded relative path and an import by a path with "..".
var testFS = fstest.MapFS{
	mainXSD: {Data: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:t="urn:test" xmlns:c="urn:common"
	targetNamespace="urn:test" elementFormDefault="qualified">
	<xs:import namespace="urn:common" schemaLocation="../common/typy.xsd"/>
	<xs:include schemaLocation="part/cz%C4%99%C5%9B%C4%87%201.xsd"/>
	<xs:element name="root">
		<xs:complexType>
			<xs:sequence>
				<xs:element name="code" type="c:Code"/>
				<xs:element name="n" type="t:Small" maxOccurs="unbounded"/>
			</xs:sequence>
		</xs:complexType>
	</xs:element>
</xs:schema>`)},
	"główny katalog (1)/part/część 1.xsd": {Data: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:test">
	<xs:simpleType name="Small">
		<xs:restriction base="xs:int"><xs:maxInclusive value="9"/></xs:restriction>
	</xs:simpleType>
</xs:schema>`)},
	"common/typy.xsd": {Data: []byte(`<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:common">
	<xs:simpleType name="Code">
		<xs:restriction base="xs:string"><xs:pattern value="[A-Z]{3}"/></xs:restriction>
	</xs:simpleType>
</xs:schema>`)},
}

func testDoc(code string, ns ...string) []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>` + "\n" + `<root xmlns="urn:test">` + "\n")
	b.WriteString("<code>" + code + "</code>\n")
	for _, n := range ns {
		b.WriteString("<n>" + n + "</n>\n")
	}
	b.WriteString("</root>\n")
	return []byte(b.String())
}

func TestCompileResolvesInsideFS(t *testing.T) {
	s := compile(t, testFS, mainXSD)
	if err := s.Validate(testDoc("ABC", "1", "9")); err != nil {
		t.Errorf("Validate(valid) = %v, want nil", err)
	}
	verr := validationError(t, s.Validate(testDoc("abc", "1")))
	if want := "line 3: Element '{urn:test}code'"; len(verr.Messages) == 0 || !strings.HasPrefix(verr.Messages[0], want) {
		t.Errorf("messages %q, want first to start with %q (type from the imported schema)", verr.Messages, want)
	}
	verr = validationError(t, s.Validate(testDoc("ABC", "10")))
	if want := "line 4: Element '{urn:test}n'"; len(verr.Messages) == 0 || !strings.HasPrefix(verr.Messages[0], want) {
		t.Errorf("messages %q, want first to start with %q (type from the included schema)", verr.Messages, want)
	}
}

func TestCompileErrors(t *testing.T) {
	withMain := func(main string) fstest.MapFS {
		m := fstest.MapFS{"s/main.xsd": {Data: []byte(main)}}
		for k, v := range testFS {
			m[k] = v
		}
		return m
	}
	const head = `<?xml version="1.0"?><xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:c="urn:common" targetNamespace="urn:x">`
	const useCode = `<xs:element name="e" type="c:Code"/></xs:schema>`
	tests := []struct {
		name string
		fsys fstest.MapFS
		path string
		want string
	}{
		{"missing file", testFS, "nope.xsd", "nope.xsd"},
		{"invalid path", testFS, "../x.xsd", "invalid fs.FS path"},
		{"not a schema", withMain(`<?xml version="1.0"?><x/>`), "s/main.xsd", "s/main.xsd"},
		{"not XML", withMain(`<xs:schema`), "s/main.xsd", "s/main.xsd"},
		{"missing import", withMain(head + `<xs:import namespace="urn:common" schemaLocation="gone.xsd"/>` + useCode), "s/main.xsd", "gone.xsd"},
		{"network import", withMain(head + `<xs:import namespace="urn:common" schemaLocation="http://127.0.0.1:9/typy.xsd"/>` + useCode), "s/main.xsd", "http://127.0.0.1:9/typy.xsd"},
		{"absolute import", withMain(head + `<xs:import namespace="urn:common" schemaLocation="file:///etc/passwd"/>` + useCode), "s/main.xsd", "file:///etc/passwd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := xsd.Compile(tt.fsys, tt.path)
			if err == nil {
				s.Close()
				t.Fatalf("Compile(%q) succeeded, want an error", tt.path)
			}
			if !strings.HasPrefix(err.Error(), "xsd: compile ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Compile(%q) error %q, want it to mention %q", tt.path, err, tt.want)
			}
		})
	}
}

func TestValidationErrorLimit(t *testing.T) {
	s := compile(t, testFS, mainXSD)
	ns := make([]string, 150)
	for i := range ns {
		ns[i] = "x"
	}
	verr := validationError(t, s.Validate(testDoc("ABC", ns...)))
	if len(verr.Messages) != 100 || verr.Omitted != 50 {
		t.Errorf("got %d messages and %d omitted, want 100 and 50", len(verr.Messages), verr.Omitted)
	}
	if want := "line 4: "; !strings.HasPrefix(verr.Messages[0], want) {
		t.Errorf("first message %q, want prefix %q", verr.Messages[0], want)
	}
	if !strings.HasSuffix(verr.Error(), "; and 50 more") {
		t.Errorf("Error() = …%q, want it to end with the omitted count", verr.Error()[len(verr.Error())-40:])
	}
}

func TestClose(t *testing.T) {
	s, err := xsd.Compile(testFS, mainXSD)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if err := s.Validate(testDoc("ABC", "1")); !errors.Is(err, xsd.ErrClosed) {
		t.Errorf("Validate after Close = %v, want ErrClosed", err)
	}
}

func BenchmarkValidateFA3(b *testing.B) {
	fa3 := compile(b, nil, official.FA3Schema)
	doc := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			if err := fa3.Validate(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := fa3.Validate(doc); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
