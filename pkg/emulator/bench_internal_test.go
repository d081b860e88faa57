package emulator

import (
	"bytes"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// BenchmarkVerifyInvoice measures the validation throughput of the send path: declared size and
// hash, XML form checks, FA(3) XSD validation and field extraction, on all cores.
func BenchmarkVerifyInvoice(b *testing.B) {
	e, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	doc := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	hash := sha256Base64(doc)
	ctx := contextID{Type: "Nip", Value: "9999999999"}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	b.SetBytes(int64(len(doc)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			v := e.verifyInvoice(doc, int64(len(doc)), hash, ctx, now)
			if v.outcome.Code != 0 {
				b.Fatalf("sample rejected: %+v", v.outcome)
			}
		}
	})
}

// BenchmarkVerifyLargeInvoice is BenchmarkVerifyInvoice with a 0.9 MB invoice (the sample with a
// long comment), the size limit's neighbourhood.
func BenchmarkVerifyLargeInvoice(b *testing.B) {
	e, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	doc := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	doc = bytes.Replace(doc, []byte("</Faktura>"), append(append([]byte("<!--"), bytes.Repeat([]byte("x"), 900_000)...), []byte("--></Faktura>")...), 1)
	hash := sha256Base64(doc)
	ctx := contextID{Type: "Nip", Value: "9999999999"}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if v := e.verifyInvoice(doc, int64(len(doc)), hash, ctx, now); v.outcome.Code != 0 {
			b.Fatalf("rejected: %+v", v.outcome)
		}
	}
}
