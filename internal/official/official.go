// Package official embeds the unmodified files published by Poland's Ministry of Finance that the
// project needs at run and test time: the KSeF API 2.0 OpenAPI description, the FA(3), UPO and
// authentication XSDs, and the official sample invoices and UPOs. SOURCES.md names the origin of
// each file.
package official

import (
	"embed"
	"io/fs"
	"path"
	"sort"
)

//go:embed openapi.json schemas samples
var files embed.FS

// FS returns the embedded files, rooted so that paths look like "schemas/upo/upo-v4-3.xsd".
func FS() fs.FS { return files }

// OpenAPI returns the official KSeF API OpenAPI 3.0 document (API version 2.6.0).
func OpenAPI() []byte { return mustRead("openapi.json") }

// Paths of the schemas inside FS.
const (
	FA3Schema    = "schemas/FA/schemat_FA(3)_v1-0E.xsd"
	UPOSchema    = "schemas/upo/upo-v4-3.xsd"
	AuthSchema20 = "schemas/auth/schemat_auth_v2-0.xsd"
	AuthSchema21 = "schemas/auth/schemat_auth_v2-1.xsd"
)

// SampleInvoices returns the official FA(3) sample invoices, keyed by file name, byte for byte.
func SampleInvoices() map[string][]byte { return readDir("samples/invoices") }

// SampleInvoiceNames returns the file names of the sample invoices in sorted order.
func SampleInvoiceNames() []string {
	m := SampleInvoices()
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// SampleUPOs returns the official UPO v4-3 examples, keyed by file name.
func SampleUPOs() map[string][]byte { return readDir("samples/upo") }

func readDir(dir string) map[string][]byte {
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		panic("official: embedded directory missing: " + dir) // cannot happen: checked by go:embed
	}
	out := make(map[string][]byte, len(entries))
	for _, e := range entries {
		out[e.Name()] = mustRead(path.Join(dir, e.Name()))
	}
	return out
}

func mustRead(name string) []byte {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("official: embedded file missing: " + name) // cannot happen: checked by go:embed
	}
	return b
}
