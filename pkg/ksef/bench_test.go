package ksef

import (
	"bytes"
	"log/slog"
	"net/http"
	"testing"
)

// BenchmarkEncryptInvoice1MB measures what SendInvoice does locally for the largest invoice
// without attachments: hash, encrypt, hash the ciphertext.
func BenchmarkEncryptInvoice1MB(b *testing.B) {
	invoice := bytes.Repeat([]byte("<P_7>Usługa</P_7>\n"), 1_000_000/19)
	handle := fixedHandle()
	b.SetBytes(int64(len(invoice)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := encryptInvoice(handle, invoice); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendPath measures the client's share of a whole send: open a session (RSA-OAEP of
// the key), send an invoice (AES, hashes, JSON) and read its status, against an in-process
// server.
func BenchmarkSendPath(b *testing.B) {
	ts := newBenchServer(b)
	invoice := sampleInvoice(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		s, err := ts.client.OpenOnlineSession(ctx, FormCodeFA3())
		if err != nil {
			b.Fatal(err)
		}
		sent, err := ts.client.SendInvoice(ctx, s, invoice, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := ts.client.InvoiceStatus(ctx, s.ReferenceNumber, sent.ReferenceNumber); err != nil {
			b.Fatal(err)
		}
	}
}

func newBenchServer(b *testing.B) *testServer {
	ts := newTestServer(b, WithLogger(slog.New(slog.DiscardHandler)))
	ts.mux.HandleFunc("POST /v2/sessions/online", func(w http.ResponseWriter, r *http.Request) {
		serveFile(b, w, http.StatusCreated, "session_open.json")
	})
	ts.mux.HandleFunc("POST /v2/sessions/online/{ref}/invoices", func(w http.ResponseWriter, r *http.Request) {
		serveFile(b, w, http.StatusAccepted, "invoice_send.json")
	})
	ts.mux.HandleFunc("GET /v2/sessions/{ref}/invoices/{inv}", func(w http.ResponseWriter, r *http.Request) {
		serveFile(b, w, http.StatusOK, "invoice_status_200.json")
	})
	return ts
}
