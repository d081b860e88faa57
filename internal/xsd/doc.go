// Package xsd validates XML documents against W3C XML Schemas, fast enough to check every invoice
// of a 10,000-invoice batch and every UPO the KSeF emulator issues.
//
// A schema is compiled once from an fs.FS, typically the embedded official files:
//
//	fa3, err := xsd.Compile(official.FS(), official.FA3Schema)
//	if err != nil {
//		return fmt.Errorf("load FA(3) schema: %w", err)
//	}
//	defer fa3.Close()
//
//	if err := fa3.Validate(invoiceXML); err != nil {
//		var verr *xsd.ValidationError
//		if errors.As(err, &verr) {
//			// verr.Messages: "line 12: Element '{http://crd.gov.pl/wzor/2025/06/25/13775/}P_2': ..."
//		}
//	}
//
// # Implementations
//
// With cgo (the default on Linux), the package uses libxml2 (Debian package libxml2-dev, found
// with pkg-config). Compile parses the schema and everything it includes or imports, resolving
// relative schemaLocation values inside the fs.FS through a private URI scheme served from
// memory, and keeps the compiled xmlSchema. Validate parses the document from memory and checks
// it with a fresh validation context, so one *Schema serves any number of goroutines at once.
// Validating one official sample invoice takes well under a millisecond (see
// BenchmarkValidateFA3).
//
// Without cgo (CGO_ENABLED=0), Compile copies the schema and every schema it includes or imports
// into a temporary directory, and Validate runs `xmllint --noout --nonet --schema` once per
// document, feeding the document on standard input. It gives the same verdicts and nearly the
// same messages, but pays for a process start and a schema compilation on every call: about
// 6 ms for an FA(3) invoice against 0.07 ms with cgo. It needs xmllint (Debian package
// libxml2-utils) on PATH. Use it for tools, not for batches.
//
// # Security
//
// Neither implementation touches the network, and a schema reaches no file outside its fs.FS:
// a schemaLocation that is absolute or names a URI scheme is refused. With cgo, the package
// installs a libxml2 external-entity loader for the whole process: while a schema compiles it
// serves only files of that schema's fs.FS, while a document is validated it loads nothing at
// all, and any other libxml2 user in the process keeps the default behaviour minus network
// access. Documents are parsed without DTD loading and without entity substitution, and a
// document that carries a document type declaration (<!DOCTYPE ...>) is rejected before it is
// parsed, so XXE and entity-expansion attacks have nothing to work with.
package xsd
