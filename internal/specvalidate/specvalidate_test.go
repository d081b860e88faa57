package specvalidate_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/specvalidate"
)

// validator returns one Validator for all tests; loading the description takes a while.
var validator = sync.OnceValues(specvalidate.New)

func newValidator(tb testing.TB) *specvalidate.Validator {
	tb.Helper()
	v, err := validator()
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	return v
}

const (
	sessionRef = "20250625-SO-2C3E6C8000-B675CF5D68-07"
	bearer     = "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2VjcmV0LXNpZ25hdHVyZQ" // not a real token
)

// sendInvoiceBody returns a SendInvoiceRequest for the first official sample invoice, with
// contentSize bytes of stand-in ciphertext. edit, if not nil, changes the fields first.
func sendInvoiceBody(tb testing.TB, contentSize int, edit func(m map[string]any)) []byte {
	tb.Helper()
	invoice := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	cipher := bytes.Repeat([]byte{0xA5, 0x5A, 0xFF, 0x00}, contentSize/4+1)[:contentSize]
	hash := func(b []byte) string {
		sum := sha256.Sum256(b)
		return base64.StdEncoding.EncodeToString(sum[:])
	}
	m := map[string]any{
		"invoiceHash":             hash(invoice),
		"invoiceSize":             len(invoice),
		"encryptedInvoiceHash":    hash(cipher),
		"encryptedInvoiceSize":    len(cipher),
		"encryptedInvoiceContent": base64.StdEncoding.EncodeToString(cipher),
	}
	if edit != nil {
		edit(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func newRequest(method, target string, body []byte, header ...string) *http.Request {
	var r *http.Request
	if body == nil {
		r = httptest.NewRequest(method, target, nil)
	} else {
		r = httptest.NewRequest(method, target, bytes.NewReader(body))
	}
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

func TestValidateRequest(t *testing.T) {
	v := newValidator(t)
	sendPath := "/v2/sessions/online/" + sessionRef + "/invoices"
	valid := sendInvoiceBody(t, 3392, nil)
	tests := []struct {
		name    string
		req     *http.Request
		body    []byte
		wantErr string // "" for a valid request; else a substring of the error
		is      error  // sentinel the error must match, if any
	}{
		{name: "challenge", req: newRequest("POST", "/v2/auth/challenge", nil)},
		{name: "challenge on another host", req: newRequest("POST", "https://emulator.test:8443/v2/auth/challenge", nil)},
		{name: "send invoice", req: newRequest("POST", sendPath, valid, "Content-Type", "application/json", "Authorization", bearer), body: valid},
		{name: "bearer scheme case-insensitive", req: newRequest("POST", sendPath, valid, "Content-Type", "application/json", "Authorization", "bearer abc"), body: valid},
		{
			name:    "43-char invoice hash",
			body:    sendInvoiceBody(t, 3392, func(m map[string]any) { m["invoiceHash"] = m["invoiceHash"].(string)[:43] }),
			wantErr: `specvalidate: request POST /sessions/online/{referenceNumber}/invoices: request body has an error: doesn't match schema: Error at "/invoiceHash": minimum string length is 44`,
		},
		{
			name:    "missing required field",
			body:    sendInvoiceBody(t, 3392, func(m map[string]any) { delete(m, "encryptedInvoiceSize") }),
			wantErr: `property "encryptedInvoiceSize" is missing`,
		},
		{
			name:    "Base64URL content",
			body:    sendInvoiceBody(t, 3392, func(m map[string]any) { m["encryptedInvoiceContent"] = "_-8A" }),
			wantErr: `Error at "/encryptedInvoiceContent": string doesn't match the format "byte"`,
		},
		{
			name:    "unpadded Base64 content",
			body:    sendInvoiceBody(t, 3392, func(m map[string]any) { m["encryptedInvoiceContent"] = "pVr/AA" }),
			wantErr: `length 6 is not a multiple of 4`,
		},
		{
			name:    "wrong type",
			body:    sendInvoiceBody(t, 3392, func(m map[string]any) { m["invoiceSize"] = "3387" }),
			wantErr: `Error at "/invoiceSize": value must be an integer`,
		},
		{
			name:    "bad path parameter",
			req:     newRequest("POST", "/v2/sessions/online/20250625-SO-1/invoices", valid, "Content-Type", "application/json", "Authorization", bearer),
			body:    valid,
			wantErr: `parameter "referenceNumber" in path has an error: minimum string length is 36`,
		},
		{
			name:    "wrong content type",
			req:     newRequest("POST", sendPath, valid, "Content-Type", "text/plain", "Authorization", bearer),
			body:    valid,
			wantErr: `header Content-Type has unexpected value`,
		},
		{
			name:    "missing bearer",
			req:     newRequest("POST", sendPath, valid, "Content-Type", "application/json"),
			body:    valid,
			wantErr: "specvalidate: request POST /sessions/online/{referenceNumber}/invoices: missing or malformed bearer token",
			is:      specvalidate.ErrUnauthenticated,
		},
		{
			name:    "empty bearer",
			req:     newRequest("POST", sendPath, valid, "Content-Type", "application/json", "Authorization", "Bearer  "),
			body:    valid,
			wantErr: "missing or malformed bearer token",
			is:      specvalidate.ErrUnauthenticated,
		},
		{
			name:    "basic auth",
			req:     newRequest("POST", sendPath, valid, "Content-Type", "application/json", "Authorization", "Basic dXNlcjpzZWNyZXQ="),
			body:    valid,
			wantErr: "missing or malformed bearer token",
			is:      specvalidate.ErrUnauthenticated,
		},
		{
			name:    "unknown path",
			req:     newRequest("GET", "/v2/no/such/thing", nil),
			wantErr: "specvalidate: request GET /v2/no/such/thing: no operation has this path",
			is:      specvalidate.ErrUnknownOperation,
		},
		{
			name:    "path without /v2",
			req:     newRequest("POST", "/auth/challenge", nil),
			wantErr: "no operation has this path",
			is:      specvalidate.ErrUnknownOperation,
		},
		{
			name:    "wrong method",
			req:     newRequest("GET", "/v2/auth/challenge", nil),
			wantErr: "the path has no operation for this method",
			is:      specvalidate.ErrUnknownOperation,
		},
		{
			name: "XAdES request as application/xml",
			req:  newRequest("POST", "/v2/auth/xades-signature", []byte("<AuthTokenRequest/>"), "Content-Type", "application/xml"),
			body: []byte(`<?xml version="1.0" encoding="utf-8"?><AuthTokenRequest xmlns="http://ksef.mf.gov.pl/auth/token/2.0"/>`),
		},
		{
			name:    "query parameter out of range",
			req:     newRequest("GET", "/v2/sessions/"+sessionRef+"/invoices?pageSize=5000", nil, "Authorization", bearer),
			wantErr: `parameter "pageSize" in query has an error`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			if req == nil {
				req = newRequest("POST", sendPath, tt.body, "Content-Type", "application/json", "Authorization", bearer)
			}
			err := v.ValidateRequest(req, tt.body)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateRequest(%s %s) = %v, want nil", req.Method, req.URL, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateRequest(%s %s) = %v, want an error containing %q", req.Method, req.URL, err, tt.wantErr)
			}
			var e *specvalidate.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T, want *specvalidate.Error", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false, want true", err, tt.is)
			}
			for _, s := range []error{specvalidate.ErrUnauthenticated, specvalidate.ErrUnknownOperation} {
				if s != tt.is && errors.Is(err, s) {
					t.Errorf("errors.Is(%v, %v) = true, want false", err, s)
				}
			}
			if strings.Contains(err.Error(), "eyJhbGci") || strings.Contains(err.Error(), "dXNlcjpzZWNyZXQ") {
				t.Errorf("error %q quotes the Authorization header", err)
			}
		})
	}
}

func TestValidateRequestLeavesRequestAlone(t *testing.T) {
	v := newValidator(t)
	body := sendInvoiceBody(t, 64, nil) // offlineMode absent: its default must not be filled in
	req := newRequest("POST", "/v2/sessions/online/"+sessionRef+"/invoices", body, "Content-Type", "application/json", "Authorization", bearer)
	if err := v.ValidateRequest(req, body); err != nil {
		t.Fatal(err)
	}
	got := new(bytes.Buffer)
	if _, err := got.ReadFrom(req.Body); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), body) {
		t.Errorf("request body after validation = %q, want %q", got, body)
	}
	if bytes.Contains(body, []byte("offlineMode")) {
		t.Errorf("body %q was given a default", body)
	}
}

func TestValidateResponse(t *testing.T) {
	v := newValidator(t)
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	problemHeader := http.Header{"Content-Type": {"application/problem+json"}}
	xmlHeader := http.Header{"Content-Type": {"application/xml"}}
	challenge := newRequest("POST", "/v2/auth/challenge", nil)
	closeReq := newRequest("POST", "/v2/sessions/online/"+sessionRef+"/close", nil, "Authorization", bearer)
	upoReq := newRequest("GET", "/v2/sessions/"+sessionRef+"/upo/"+sessionRef, nil, "Authorization", bearer)
	tests := []struct {
		name    string
		req     *http.Request
		status  int
		header  http.Header
		body    string
		wantErr string
	}{
		{
			name: "challenge", req: challenge, status: 200, header: jsonHeader,
			body: `{"challenge":"20250514-CR-226FB7B000-3ACF9BE4C0-10","timestamp":"2025-07-11T12:23:56.0154302+00:00","timestampMs":1752236636015,"clientIp":"127.0.0.1"}`,
		},
		{
			name: "challenge with Z and unknown field", req: challenge, status: 200, header: jsonHeader,
			body: `{"challenge":"20250514-CR-226FB7B000-3ACF9BE4C0-10","timestamp":"2025-07-11T12:23:56Z","timestampMs":1752236636015,"clientIp":"127.0.0.1","newField":1}`,
		},
		{
			name: "challenge missing clientIp", req: challenge, status: 200, header: jsonHeader,
			body:    `{"challenge":"20250514-CR-226FB7B000-3ACF9BE4C0-10","timestamp":"2025-07-11T12:23:56.0154302+00:00","timestampMs":1752236636015}`,
			wantErr: `specvalidate: response 200 to POST /auth/challenge: response body doesn't match schema #/components/schemas/AuthenticationChallengeResponse: Error at "/clientIp": property "clientIp" is missing`,
		},
		{
			name: "challenge with malformed timestamp", req: challenge, status: 200, header: jsonHeader,
			body:    `{"challenge":"20250514-CR-226FB7B000-3ACF9BE4C0-10","timestamp":"2025-13-11T12:23:56","timestampMs":1752236636015,"clientIp":"127.0.0.1"}`,
			wantErr: `Error at "/timestamp": string doesn't match the format "date-time"`,
		},
		{
			name: "challenge without content type", req: challenge, status: 200, header: http.Header{},
			body:    `{}`,
			wantErr: `response header Content-Type has unexpected value`,
		},
		{
			name: "KSeF exception body without offset", req: challenge, status: 400, header: jsonHeader,
			body: `{"exception":{"exceptionDetailList":[{"exceptionCode":21405,"exceptionDescription":"Błąd walidacji danych wejściowych.","details":["x"]}],"serviceCode":"00-a-b-00","timestamp":"2025-10-11T12:23:56.0154302"}}`,
		},
		{
			name: "problem details", req: closeReq, status: 401, header: problemHeader,
			body: `{"title":"Unauthorized","status":401,"detail":"Wymagane jest uwierzytelnienie.","timestamp":"2025-07-11T12:23:56.0154302+00:00"}`,
		},
		{
			name: "problem details missing detail", req: closeReq, status: 401, header: problemHeader,
			body:    `{"title":"Unauthorized","status":401,"timestamp":"2025-07-11T12:23:56.0154302+00:00"}`,
			wantErr: `property "detail" is missing`,
		},
		{name: "close: 204 without body", req: closeReq, status: 204, header: http.Header{}},
		{name: "close: 204 with body", req: closeReq, status: 204, header: jsonHeader, body: `{}`, wantErr: "a 204 response has a body of 2 bytes"},
		{name: "undocumented status", req: closeReq, status: 404, header: http.Header{}, wantErr: "status is not supported"},
		{name: "server error", req: closeReq, status: 503, header: http.Header{}, body: "maintenance"},
		{
			name: "UPO download", req: upoReq, status: 200, header: xmlHeader,
			body: string(official.SampleUPOs()["upo-sesja-kontekst-id-nip.xml"]),
		},
		{
			name: "rate limited", req: closeReq, status: 429, header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"30"}},
			body: `{"status":{"code":429,"description":"Too Many Requests","details":["Przekroczono limit 20 żądań na minutę. Spróbuj ponownie po 30 sekundach."]}}`,
		},
		{
			name: "rate limited with bad Retry-After", req: closeReq, status: 429, header: http.Header{"Content-Type": {"application/json"}, "Retry-After": {"soon"}},
			body:    `{"status":{"code":429,"description":"Too Many Requests","details":[]}}`,
			wantErr: `unable to decode header "Retry-After"`,
		},
		{name: "unknown path", req: newRequest("GET", "/v2/nothing", nil), status: 200, header: jsonHeader, body: `{}`, wantErr: "no operation has this path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := v.ValidateResponse(tt.req, tt.status, tt.header, []byte(tt.body))
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateResponse(%s %s, %d) = %v, want nil", tt.req.Method, tt.req.URL, tt.status, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidateResponse(%s %s, %d) = %v, want an error containing %q", tt.req.Method, tt.req.URL, tt.status, err, tt.wantErr)
			}
		})
	}
}

func BenchmarkValidateSendInvoice(b *testing.B) {
	v := newValidator(b)
	for _, size := range []struct {
		name  string
		bytes int
	}{{"3KiB", 3392}, {"1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) {
			body := sendInvoiceBody(b, size.bytes, nil)
			req := newRequest("POST", "/v2/sessions/online/"+sessionRef+"/invoices", body, "Content-Type", "application/json", "Authorization", bearer)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if err := v.ValidateRequest(req, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
