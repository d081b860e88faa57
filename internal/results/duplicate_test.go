package results_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// The official session UPO sample lists two invoices; origKSeF is the second.
const (
	sampleUPO   = "upo-sesja-kontekst-id-nip.xml"
	origKSeF    = "5265877635-20250916-0200A0D6723E-C2"
	origHash    = "GZMGNVzs3krF6URKgvaw77OOeG3nJ+WGziT5xguliQ8="
	origSession = "20250916-SO-2C3E6C8000-99AABBCCDD-01"
)

func officialUPO(t *testing.T) []byte {
	t.Helper()
	b, ok := official.SampleUPOs()[sampleUPO]
	if !ok {
		t.Fatalf("official sample %s missing", sampleUPO)
	}
	return b
}

// originalSource serves the original's UPO, or fails.
type originalSource struct {
	calls []string
	doc   []byte
	err   error
}

func (o *originalSource) InvoiceUPOByKSeFNumber(_ context.Context, s, n string) (*ksef.Document, error) {
	o.calls = append(o.calls, s+" "+n)
	if o.err != nil {
		return nil, o.err
	}
	return &ksef.Document{Content: o.doc, Hash: "dGhlLXVwby1oYXNo"}, nil
}

func TestConfirmDuplicate(t *testing.T) {
	details := []string{"Duplikat faktury. Faktura o numerze KSeF: " + origKSeF + " została już prawidłowo przesłana do systemu w sesji: " + origSession}
	status := func(ext map[string]string) *ksef.InvoiceStatus {
		return &ksef.InvoiceStatus{ReferenceNumber: invoiceRef, Status: ksef.Status{Code: 440, Description: "Duplikat faktury", Details: details, Extensions: ext}}
	}
	named := map[string]string{"originalKsefNumber": origKSeF, "originalSessionReferenceNumber": origSession}
	upo := officialUPO(t)
	apiErr := func(status, code int) *ksef.APIError {
		e := &ksef.APIError{Op: "InvoiceUPOByKSeFNumber", StatusCode: status}
		if code != 0 {
			e.Details = []ksef.ExceptionDetail{{Code: code, Description: "opis"}}
		}
		return e
	}
	notConfirmed := "KSeF reported a duplicate of KSeF number " + origKSeF + " that could not be confirmed to be this invoice: "
	tests := []struct {
		name      string
		ext       map[string]string
		hash      string
		src       *originalSource
		wantCalls int
		// wantMessage is the start of the RejectedError's message; "" for no RejectedError.
		wantMessage string
		wantErr     func(error) bool // the error otherwise; nil for success
	}{
		{
			name: "the original's UPO lists this content: confirmed", ext: named, hash: origHash,
			src: &originalSource{doc: upo}, wantCalls: 1,
		},
		{
			name: "whitespace around the UPO's values", ext: named, hash: origHash,
			src: &originalSource{doc: bytes.Replace(upo, []byte(origHash+"<"), []byte("\n\t"+origHash+"\n<"), 1)}, wantCalls: 1,
		},
		{
			name: "another content under the number: rejected", ext: named, hash: sampleHash,
			src: &originalSource{doc: upo}, wantCalls: 1,
			wantMessage: "invoice number already used by KSeF number " + origKSeF + " for a different invoice (SHA-256 " + origHash + ", this invoice's " + sampleHash + ")",
		},
		{
			name: "the hash of another document of the UPO does not count", ext: named, hash: "jli86Kp2Kw7jppX59P8VmjWRcwLTvsPK3DcPEB87mNk=", // 5265877635-20250916-010040741B3E-46
			src: &originalSource{doc: upo}, wantCalls: 1, wantMessage: "invoice number already used by KSeF number " + origKSeF,
		},
		{
			name: "the UPO does not list the original: not confirmed", ext: named, hash: origHash,
			src: &originalSource{doc: bytes.ReplaceAll(upo, []byte(origKSeF), []byte("5265877635-20250916-0200A0D6723E-00"))}, wantCalls: 1,
			wantMessage: notConfirmed + "the original's UPO does not list it",
		},
		{
			name: "not a UPO: not confirmed", ext: named, hash: origHash,
			src: &originalSource{doc: []byte(`<Error><Code>BlobNotFound</Code></Error>`)}, wantCalls: 1,
			wantMessage: notConfirmed + "the original's UPO cannot be read: root element {}Error is not a UPO",
		},
		{
			name: "malformed UPO: not confirmed", ext: named, hash: origHash,
			src: &originalSource{doc: upo[:len(upo)/2]}, wantCalls: 1, wantMessage: notConfirmed + "the original's UPO cannot be read: decode UPO",
		},
		{
			name: "the original's session not found: not confirmed", ext: named, hash: origHash,
			src: &originalSource{err: apiErr(400, 21173)}, wantCalls: 1, wantMessage: notConfirmed + "the original's UPO is not available",
		},
		{
			name: "forbidden: not confirmed", ext: named, hash: origHash,
			src: &originalSource{err: apiErr(403, 0)}, wantCalls: 1, wantMessage: notConfirmed + "the original's UPO is not available",
		},
		{
			name: "no original session: not confirmed", ext: map[string]string{"originalKsefNumber": origKSeF}, hash: origHash,
			src: &originalSource{}, wantMessage: notConfirmed + "KSeF did not name the original's session",
		},
		{
			name: "no original KSeF number: rejected", ext: nil, hash: origHash,
			src: &originalSource{}, wantMessage: "KSeF reported a duplicate without the original KSeF number: Duplikat faktury",
		},
		{
			name: "UPO not generated yet: not ready", ext: named, hash: origHash,
			src: &originalSource{err: apiErr(400, ksef.CodeUPONotFound)}, wantCalls: 1, wantErr: results.UPONotReady,
		},
		{
			name: "access token refused: passed on", ext: named, hash: origHash,
			src: &originalSource{err: apiErr(401, 0)}, wantCalls: 1, wantErr: func(err error) bool { return errors.Is(err, ksef.ErrUnauthorized) },
		},
		{
			name: "rate limited: passed on", ext: named, hash: origHash,
			src: &originalSource{err: apiErr(429, 0)}, wantCalls: 1, wantErr: func(err error) bool { return errors.Is(err, ksef.ErrRateLimited) },
		},
		{
			name: "502: passed on", ext: named, hash: origHash,
			src: &originalSource{err: apiErr(502, 0)}, wantCalls: 1,
			wantErr: func(err error) bool { var a *ksef.APIError; return errors.As(err, &a) && a.StatusCode == 502 },
		},
		{
			name: "transport error: passed on", ext: named, hash: origHash,
			src: &originalSource{err: &net.OpError{Op: "dial", Err: errors.New("connection refused")}}, wantCalls: 1,
			wantErr: func(err error) bool { var n net.Error; return errors.As(err, &n) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig, err := results.ConfirmDuplicate(t.Context(), tt.src, status(tt.ext), tt.hash)

			if want := slices.Repeat([]string{origSession + " " + origKSeF}, tt.wantCalls); !slices.Equal(tt.src.calls, want) {
				t.Errorf("UPO calls %q, want %q", tt.src.calls, want)
			}
			var rej *flow.RejectedError
			switch {
			case tt.wantMessage != "":
				if !errors.As(err, &rej) || err != error(rej) {
					t.Fatalf("ConfirmDuplicate = %+v, %v (%T); want a *flow.RejectedError", orig, err, err)
				}
				if !strings.HasPrefix(rej.Message, tt.wantMessage) || rej.Code != 440 || rej.Stage != "ksef" || !slices.Equal(rej.Details, details) {
					t.Errorf("reason %+v,\nwant message %q..., code 440, stage ksef and KSeF's details", rej.Reason, tt.wantMessage)
				}
			case tt.wantErr != nil:
				if err == nil || errors.As(err, &rej) || !tt.wantErr(err) || !strings.Contains(err.Error(), "UPO of the original invoice "+origKSeF) {
					t.Errorf("ConfirmDuplicate = %+v, %v; want the fetch error wrapped, not a rejection", orig, err)
				}
			default:
				if err != nil {
					t.Fatalf("ConfirmDuplicate: %v", err)
				}
				if orig.KSeFNumber != origKSeF || orig.SessionReferenceNumber != origSession || orig.UPO == nil || !bytes.Equal(orig.UPO.Content, tt.src.doc) {
					t.Errorf("original %+v, want %s of %s with its UPO", orig, origKSeF, origSession)
				}
			}
			if err != nil && orig != nil {
				t.Errorf("an original (%+v) with the error %v", orig, err)
			}
		})
	}
}

// TestConfirmDuplicateInvoiceUPO: the UPO of a single invoice (what the API returns by KSeF
// number), in the UPO namespace of any version.
func TestConfirmDuplicateInvoiceUPO(t *testing.T) {
	upo := official.SampleUPOs()["upo-faktura-kontekst-id-nip.xml"]
	for _, ns := range []string{"v4-3", "v4-4"} {
		doc := bytes.Replace(upo, []byte("KSeF/v4-3"), []byte("KSeF/"+ns), 1)
		st := &ksef.InvoiceStatus{Status: ksef.Status{Code: 440, Extensions: map[string]string{"originalKsefNumber": origKSeF, "originalSessionReferenceNumber": origSession}}}
		orig, err := results.ConfirmDuplicate(t.Context(), &originalSource{doc: doc}, st, origHash)
		if err != nil || orig.KSeFNumber != origKSeF {
			t.Errorf("%s: ConfirmDuplicate = %+v, %v; want the original", ns, orig, err)
		}
	}
	doc := bytes.Replace(upo, []byte("http://upo.schematy.mf.gov.pl/KSeF/v4-3"), []byte("urn:other"), 1)
	st := &ksef.InvoiceStatus{Status: ksef.Status{Code: 440, Extensions: map[string]string{"originalKsefNumber": origKSeF, "originalSessionReferenceNumber": origSession}}}
	_, err := results.ConfirmDuplicate(t.Context(), &originalSource{doc: doc}, st, origHash)
	if flow.ErrorType(err) != "RejectedError" || !strings.Contains(err.Error(), fmt.Sprintf("root element {%s}Potwierdzenie is not a UPO", "urn:other")) {
		t.Errorf("a document in another namespace: %v, want a RejectedError", err)
	}
}
