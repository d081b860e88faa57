package ksef

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDecodeErrorShapes(t *testing.T) {
	traceTime := time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC)
	tests := []struct {
		name   string
		status int
		header http.Header
		body   []byte
		want   APIError // Body and Security are checked separately
	}{
		{"exception 400", 400, nil, loadTestdata(t, "error_exception_400.json"), APIError{
			StatusCode: 400, Title: "Bad Request",
			TraceID:   "00-c02cc3747020c605be02159bf3324f0e-eee7647dc67aa74a-00",
			Timestamp: time.Date(2025, 10, 11, 12, 23, 56, 15430200, time.UTC),
			Details:   []ExceptionDetail{{Code: 12345, Description: "Opis błędu.", Details: []string{"Opcjonalne dodatkowe szczegóły błędu."}}},
		}},
		{"problem 400", 400, nil, loadTestdata(t, "error_problem_400.json"), APIError{
			StatusCode: 400, Title: "Bad Request", Detail: "Żądanie jest nieprawidłowe.",
			TraceID: "673843e023c432286660bc0501a3af44", Instance: "{{uri_path}}", Timestamp: traceTime,
			Details: []ExceptionDetail{
				{Code: 21405, Description: "Błąd walidacji danych wejściowych.", Details: []string{"Wskazany kod formularza nie jest wspierany."}},
				{Code: 21157, Description: "Nieprawidłowy rozmiar części pakietu.", Details: []string{"Rozmiar części 1 przekroczył dozwolony rozmiar 100MB."}},
			},
		}},
		{"problem 401", 401, nil, loadTestdata(t, "error_problem_401.json"), APIError{
			StatusCode: 401, Title: "Unauthorized", Detail: "Wymagane jest uwierzytelnienie.",
			TraceID: "673843e023c432286660bc0501a3af44", Instance: "{{uri_path}}", Timestamp: traceTime,
		}},
		{"problem 403", 403, nil, loadTestdata(t, "error_problem_403.json"), APIError{
			StatusCode: 403, Title: "Forbidden", ReasonCode: "missing-permissions",
			Detail:  "Brak wymaganych uprawnień do wykonania operacji w bieżącym kontekście.",
			TraceID: "673843e023c432286660bc0501a3af44", Instance: "{{uri_path}}", Timestamp: traceTime,
		}},
		{"problem 410", 410, nil, loadTestdata(t, "error_problem_410.json"), APIError{
			StatusCode: 410, Title: "Gone", Detail: "Status operacji wygasł.",
			TraceID: "673843e023c432286660bc0501a3af44", Instance: "/v2/auth/20250514-AU-2DFC46C000-3AC6D5877F-D4", Timestamp: traceTime,
		}},
		{"legacy 429", 429, http.Header{"Retry-After": {"30"}}, loadTestdata(t, "error_legacy_429.json"), APIError{
			StatusCode: 429, Title: "Too Many Requests", RetryAfter: 30 * time.Second,
			Detail: "Przekroczono limit 20 żądań na minutę. Spróbuj ponownie po 30 sekundach.",
		}},
		{"problem 429", 429, http.Header{"Retry-After": {"30"}}, loadTestdata(t, "error_problem_429.json"), APIError{
			StatusCode: 429, Title: "Too Many Requests", RetryAfter: 30 * time.Second,
			Detail:  "Przekroczono limit 20 żądań na minutę. Spróbuj ponownie po 30 sekundach.",
			TraceID: "673843e023c432286660bc0501a3af44", Instance: "{{uri_path}}", Timestamp: traceTime,
		}},
		{"HTML 502 from a proxy", 502, nil, []byte("<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>"), APIError{
			StatusCode: 502, Title: "Bad Gateway",
		}},
		{"empty 503", 503, nil, nil, APIError{StatusCode: 503, Title: "Service Unavailable"}},
		{"storage 403 (expired pre-signed link)", 403, nil,
			[]byte(`<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Signature not valid in the specified time frame</Message></Error>`),
			APIError{StatusCode: 403, Title: "Forbidden"}},
		{"credentials echoed back", 401, nil,
			[]byte(`{"title":"Unauthorized","status":401,"detail":"Bearer ` + testAccessToken + ` expired","traceId":"x"}`),
			APIError{StatusCode: 401, Title: "Unauthorized", Detail: "Bearer [REDACTED] expired", TraceID: "x"}},
		{"unexpected JSON types", 400, nil, []byte(`{"title":7,"errors":"none","exception":[1],"status":"x","timestamp":"later"}`),
			APIError{StatusCode: 400, Title: "Bad Request"}},
	}
	var golden bytes.Buffer
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseAPIError(tt.status, tt.header, tt.body, testNow)
			body := got.Body
			got.Body, tt.want.Body = nil, nil
			security := got.Security
			got.Security = nil
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
			if len(tt.body) > 0 && !bytes.Contains(tt.body, []byte(testAccessToken)) && !bytes.Equal(body, tt.body) {
				t.Errorf("Body: got %q, want the raw body", body)
			}
			if tt.name == "problem 403" {
				want := map[string]any{"requiredAnyOfPermissions": []any{"InvoiceRead", "InvoiceWrite"}, "presentPermissions": []any{"CredentialsRead"}}
				if !reflect.DeepEqual(security, want) {
					t.Errorf("Security: got %v, want %v", security, want)
				}
			}
			got.Body, got.Security, got.Op = body, security, "SendInvoice"
			fmt.Fprintf(&golden, "%s:\n\t%s\n", tt.name, got.Error())
		})
	}
	checkGolden(t, "errors", golden.Bytes())
}

func TestDecodeErrorThroughClient(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/limits/context", func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusForbidden, "error_problem_403.json")
	})
	_, err := ts.client.ContextLimits(t.Context())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Op != "ContextLimits" || apiErr.ReasonCode != "missing-permissions" || !errors.Is(err, ErrForbidden) {
		t.Fatalf("got %v, want a ContextLimits 403 *APIError with reason missing-permissions", err)
	}
	if !strings.HasPrefix(err.Error(), "ksef: ContextLimits: HTTP 403 Forbidden [missing-permissions]: ") {
		t.Errorf("Error(): got %q", err.Error())
	}
}

func TestErrorBodyIsSizeLimited(t *testing.T) {
	body := []byte(`{"detail":"` + strings.Repeat("ą", 10000) + `"}`)
	e := parseAPIError(400, nil, body, testNow)
	if len(e.Body) > maxErrorBody || len(e.Body) < maxErrorBody-4 {
		t.Errorf("Body: got %d bytes, want about %d", len(e.Body), maxErrorBody)
	}
	if !strings.HasPrefix(string(e.Body), `{"detail":"ąą`) || !strings.HasSuffix(string(e.Body), "ą") {
		t.Error("Body was not cut at a character boundary")
	}
	long := parseAPIError(502, nil, bytes.Repeat([]byte("x "), 5000), testNow)
	if msg := long.Error(); len(msg) > 300 {
		t.Errorf("Error() of a long non-JSON body is %d bytes long; want a short snippet", len(msg))
	}
}

func TestAPIErrorIs(t *testing.T) {
	tests := []struct {
		status int
		code   int
		target error
		want   bool
	}{
		{401, 0, ErrUnauthorized, true},
		{403, 0, ErrForbidden, true},
		{403, 0, ErrUnauthorized, false},
		{404, 0, ErrNotFound, true},
		{400, CodeSessionNotFound, ErrNotFound, true},
		{400, CodeUPONotFound, ErrNotFound, true},
		{400, CodeAuthNotFound, ErrNotFound, true},
		{400, CodeInvoiceNotFound, ErrNotFound, true},
		{400, CodeValidation, ErrNotFound, false},
		{429, 0, ErrRateLimited, true},
		{503, 0, ErrRateLimited, false},
		{410, 0, ErrGone, true},
		{400, 0, ErrDocumentHash, false},
	}
	for _, tt := range tests {
		e := &APIError{StatusCode: tt.status}
		if tt.code != 0 {
			e.Details = []ExceptionDetail{{Code: tt.code}}
		}
		wrapped := fmt.Errorf("outer: %w", e)
		if got := errors.Is(wrapped, tt.target); got != tt.want {
			t.Errorf("errors.Is(HTTP %d code %d, %v): got %v, want %v", tt.status, tt.code, tt.target, got, tt.want)
		}
	}
}

func TestAPIErrorTemporary(t *testing.T) {
	for status, want := range map[int]bool{400: false, 401: false, 404: false, 429: true, 500: false, 502: true, 503: true, 504: true} {
		if got := (&APIError{StatusCode: status}).Temporary(); got != want {
			t.Errorf("Temporary() for HTTP %d: got %v, want %v", status, got, want)
		}
	}
	var temp interface{ Temporary() bool }
	if !errors.As(fmt.Errorf("x: %w", &APIError{StatusCode: 503}), &temp) || !temp.Temporary() {
		t.Error("a wrapped *APIError is not found as a Temporary() error")
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain text, no secrets: 21405 Błąd walidacji", "plain text, no secrets: 21405 Błąd walidacji"},
		{"token " + testAccessToken + " expired", "token [REDACTED] expired"},
		{"cut short: eyJhbGciOiJIUzI1NiJ9.eyJzdWIi", "cut short: [REDACTED]"},
		{"Authorization: Bearer abc.def", "Authorization: Bearer [REDACTED]"},
		{"bearer\tabc", "bearer [REDACTED]"},
		{"ksef token " + testKSeFToken + ".", "ksef token [REDACTED]."},
		{"secret part " + strings.Repeat("a1", 32), "secret part [REDACTED]"},
		{"reference 20251010-EC-1DCE3E3000-12ECB5B36E-45 is fine", "reference 20251010-EC-1DCE3E3000-12ECB5B36E-45 is fine"},
		{"trace 673843e023c432286660bc0501a3af44", "trace 673843e023c432286660bc0501a3af44"},
		{"hash X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA=", "hash X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA="},
	}
	for _, tt := range tests {
		if got := redact(tt.in); got != tt.want {
			t.Errorf("redact(%q):\ngot  %q\nwant %q", tt.in, got, tt.want)
		}
		if again := redact(redact(tt.in)); again != redact(tt.in) {
			t.Errorf("redact is not idempotent on %q: %q", tt.in, again)
		}
	}
}

// FuzzDecodeError checks that decoding any error body never panics and never lets a token
// through: a JWT planted anywhere in the body must not show in Error() or Body.
func FuzzDecodeError(f *testing.F) {
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "error_") {
			b, err := os.ReadFile(filepath.Join("testdata", e.Name()))
			if err != nil {
				f.Fatal(err)
			}
			f.Add(400, b, uint16(20), "30")
		}
	}
	f.Add(401, []byte(`{"detail":"x"}`), uint16(11), "")
	f.Add(429, []byte(`{"status":{"code":429,"description":"","details":["`), uint16(50), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Add(502, []byte("<html>bad gateway</html>"), uint16(6), "-1")
	const jwtSignature = "c2lnbmF0dXJlLW9mLXRoZS1wbGFudGVkLXRva2Vu"
	const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0." + jwtSignature
	f.Fuzz(func(t *testing.T, status int, body []byte, at uint16, retryAfter string) {
		if status < 100 || status > 599 {
			status = 400
		}
		pos := int(at) % (len(body) + 1)
		planted := append(append(append([]byte{}, body[:pos]...), jwt...), body[pos:]...)
		for _, raw := range [][]byte{body, planted} {
			e := parseAPIError(status, http.Header{"Retry-After": {retryAfter}}, raw, testNow)
			e.Op = "Fuzz"
			msg := e.Error()
			_ = e.Is(ErrNotFound)
			_ = e.HasCode(CodeValidation)
			_ = e.Temporary()
			if e.RetryAfter < 0 {
				t.Errorf("negative RetryAfter %s", e.RetryAfter)
			}
			if len(e.Body) > maxErrorBody {
				t.Errorf("Body is %d bytes, limit %d", len(e.Body), maxErrorBody)
			}
			for _, text := range []string{msg, string(e.Body), fmt.Sprint(e.Details), fmt.Sprint(e.Security)} {
				if strings.Contains(text, jwtSignature) {
					t.Fatalf("planted token leaked:\n%s\nbody: %q", text, raw)
				}
				if m := secretPattern.FindString(text); m != "" {
					t.Fatalf("token-looking %q left in:\n%s", m, text)
				}
			}
		}
	})
}
