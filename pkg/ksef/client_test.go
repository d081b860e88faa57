package ksef

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The -update flag rewrites testdata/*.golden. It is registered here only if no other test file
// of the package registered it first.
func init() {
	if flag.Lookup("update") == nil {
		flag.Bool("update", false, "rewrite testdata/*.golden files")
	}
}

func updateGolden() bool {
	f := flag.Lookup("update")
	return f != nil && f.Value.String() == "true"
}

// testNow is the injected clock of every test client: inside the validity of the test MF keys.
var testNow = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// Fake credentials. They look real enough to be caught if they leaked anywhere.
const (
	testAccessToken  = "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJhY2Nlc3MifQ.QUNDRVNTLXNpZ25hdHVyZQ"
	testAuthToken    = "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJvcGVyYXRpb24ifQ.T1BFUkFUSU9OLXNpZ25hdHVyZQ"
	testRefreshToken = "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJyZWZyZXNoIn0.UkVGUkVTSC1zaWduYXR1cmU"
	testKSeFToken    = "20251010-EC-1DCE3E3000-12ECB5B36E-45|nip-5265877635|919f0fd1c64a4b4f9f3a1c8e3c2f6d7b919f0fd1c64a4b4f9f3a1c8e3c2f6d7b"
	testNIP          = "5265877635"
	testSessionRef   = "20250625-SO-2C3E6C8000-B675CF5D68-07"
	testInvoiceRef   = "20250625-EE-319D7EE000-B67F415CDC-2C"
	testAuthRef      = "20250514-AU-2DFC46C000-3AC6D5877F-D4"
)

// mfKey is one of the test stand-ins for the Ministry's encryption keys.
type mfKey struct {
	priv *rsa.PrivateKey
	cert *x509.Certificate
	id   string // publicKeyId: Base64 SHA-256 of the SubjectPublicKeyInfo
}

func loadMFKey(t testing.TB, name string) mfKey {
	t.Helper()
	keyPEM := loadTestdata(t, "mf_"+name+".key")
	certPEM := loadTestdata(t, "mf_"+name+".crt")
	kb, _ := pem.Decode(keyPEM)
	cb, _ := pem.Decode(certPEM)
	if kb == nil || cb == nil {
		t.Fatalf("testdata mf_%s: no PEM block", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatalf("parse mf_%s.key: %v", name, err)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatalf("parse mf_%s.crt: %v", name, err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return mfKey{priv: k.(*rsa.PrivateKey), cert: cert, id: base64.StdEncoding.EncodeToString(sum[:])}
}

// listing is the JSON entry of the key for GET /security/public-key-certificates.
func (k mfKey) listing(validFrom, validTo time.Time, usage ...KeyUsage) map[string]any {
	sum := sha256.Sum256(k.cert.Raw)
	return map[string]any{
		"certificate":   base64.StdEncoding.EncodeToString(k.cert.Raw),
		"certificateId": base64.StdEncoding.EncodeToString(sum[:]),
		"publicKeyId":   k.id,
		"validFrom":     validFrom.Format("2006-01-02T15:04:05.0000000-07:00"),
		"validTo":       validTo.Format("2006-01-02T15:04:05.0000000-07:00"),
		"usage":         usage,
	}
}

// testServer is an httptest server with a mux, standing in for KSeF, and a client aimed at it.
type testServer struct {
	t      testing.TB
	mux    *http.ServeMux
	srv    *httptest.Server
	client *Client
	logs   *bytes.Buffer

	tokenKey, symKey, rotatedKey mfKey

	mu       sync.Mutex
	keyList  []map[string]any // what GET /security/public-key-certificates returns
	keyCalls int
	waits    []time.Duration
}

// newTestServer starts the fake KSeF; the client has an access token, the fixed clock, a
// recording wait function, jitter 0.5 and a debug logger writing to ts.logs.
func newTestServer(t testing.TB, opts ...Option) *testServer {
	t.Helper()
	ts := &testServer{
		t:          t,
		mux:        http.NewServeMux(),
		logs:       new(bytes.Buffer),
		tokenKey:   loadMFKey(t, "token"),
		symKey:     loadMFKey(t, "symmetric"),
		rotatedKey: loadMFKey(t, "rotated"),
	}
	from, to := testNow.AddDate(-1, 0, 0), testNow.AddDate(2, 0, 0)
	ts.keyList = []map[string]any{
		ts.tokenKey.listing(from, to, KeyUsageKSeFToken),
		ts.symKey.listing(from, to, KeyUsageSymmetricKey),
	}
	ts.mux.HandleFunc("/v2/security/public-key-certificates", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testHeader(t, r, "Authorization", "")
		ts.mu.Lock()
		ts.keyCalls++
		list := ts.keyList
		ts.mu.Unlock()
		writeJSON(w, http.StatusOK, list)
	})
	ts.srv = httptest.NewServer(ts.mux)
	t.Cleanup(ts.srv.Close)
	base := []Option{
		WithBaseURL(ts.srv.URL + "/v2"),
		WithClock(func() time.Time { return testNow }),
		WithAccessToken(StaticAccessToken(testAccessToken)),
		WithLogger(slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		WithWait(func(ctx context.Context, d time.Duration) error {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			ts.waits = append(ts.waits, d)
			return ctx.Err()
		}),
	}
	c, err := NewClient(append(base, opts...)...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	c.jitter = func() float64 { return 0.5 }
	ts.client = c
	return ts
}

func (ts *testServer) setKeys(list ...map[string]any) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.keyList = list
}

func (ts *testServer) keyFetches() int {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.keyCalls
}

func (ts *testServer) recordedWaits() []time.Duration {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]time.Duration(nil), ts.waits...)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// serveFile answers with a recorded reply from testdata.
func serveFile(t testing.TB, w http.ResponseWriter, status int, name string) {
	t.Helper()
	body := loadTestdata(t, name)
	ct := "application/json"
	if strings.HasPrefix(name, "error_problem") {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// exceptionBody is a KSeF 400 body in the (default) exception shape.
func exceptionBody(code int, description string, details ...string) map[string]any {
	return map[string]any{"exception": map[string]any{
		"exceptionDetailList": []any{map[string]any{"exceptionCode": code, "exceptionDescription": description, "details": details}},
		"referenceNumber":     "a1b2c3d4-e5f6-4789-ab12-cd34ef567890",
		"serviceCode":         "00-c02cc3747020c605be02159bf3324f0e-eee7647dc67aa74a-00",
		"timestamp":           "2025-10-11T12:23:56.0154302",
	}}
}

func loadTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return b
}

func testMethod(t testing.TB, r *http.Request, want string) {
	t.Helper()
	if r.Method != want {
		t.Errorf("request method: got %s, want %s", r.Method, want)
	}
}

func testHeader(t testing.TB, r *http.Request, name, want string) {
	t.Helper()
	if got := r.Header.Get(name); got != want {
		t.Errorf("header %s: got %q, want %q", name, got, want)
	}
}

func testQuery(t testing.TB, r *http.Request, want string) {
	t.Helper()
	if got := r.URL.RawQuery; got != want {
		t.Errorf("query: got %q, want %q", got, want)
	}
}

func testBearer(t testing.TB, r *http.Request, token string) {
	t.Helper()
	testHeader(t, r, "Authorization", "Bearer "+token)
}

// readBody reads the request body, failing the test on error.
func readBody(t testing.TB, r *http.Request) []byte {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatalf("read request body: %v", err)
	}
	return b
}

// decodeBody decodes a JSON request body into a generic map.
func decodeBody(t testing.TB, body []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("request body is not a JSON object: %v\n%s", err, body)
	}
	return m
}

// field returns the value at a dotted path of a decoded JSON object.
func field(t testing.TB, m map[string]any, path string) any {
	t.Helper()
	var cur any = m
	for _, k := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("field %s: %q is not inside an object", path, k)
		}
		cur, ok = obj[k]
		if !ok {
			t.Fatalf("field %s: missing", path)
		}
	}
	return cur
}

// b64Field decodes a Base64 string field of a decoded JSON body.
func b64Field(t testing.TB, m map[string]any, path string) []byte {
	t.Helper()
	s, ok := field(t, m, path).(string)
	if !ok {
		t.Fatalf("field %s is not a string", path)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("field %s is not standard Base64: %v", path, err)
	}
	return b
}

// checkGoldenJSON compares a JSON request body with testdata/<name>.golden after replacing the
// random fields (dotted paths) with a placeholder. go test -update rewrites the file.
func checkGoldenJSON(t testing.TB, name string, body []byte, randomFields ...string) {
	t.Helper()
	m := decodeBody(t, body)
	for _, path := range randomFields {
		keys := strings.Split(path, ".")
		obj := m
		for _, k := range keys[:len(keys)-1] {
			obj, _ = obj[k].(map[string]any)
		}
		if _, ok := obj[keys[len(keys)-1]]; !ok {
			t.Fatalf("golden %s: random field %s missing", name, path)
		}
		obj[keys[len(keys)-1]] = "<random>"
	}
	var got bytes.Buffer
	enc := json.NewEncoder(&got)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, name, got.Bytes())
}

func checkGolden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if updateGolden() {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read golden file (run go test -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s does not match the golden file:\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

// decryptOAEP is the server side of encryptOAEP.
func decryptOAEP(t testing.TB, k mfKey, ciphertext []byte) []byte {
	t.Helper()
	plain, err := rsa.DecryptOAEP(sha256.New(), nil, k.priv, ciphertext, nil)
	if err != nil {
		t.Fatalf("RSA-OAEP-SHA256 decryption with the %q key failed: %v", k.cert.Subject.CommonName, err)
	}
	return plain
}

// decryptAESCBC is the server side of encryptAESCBC: AES-256-CBC, then PKCS#7 unpadding.
func decryptAESCBC(key, iv, ciphertext []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return nil, fmt.Errorf("ciphertext length %d is not a positive multiple of the block size", len(ciphertext))
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ciphertext)
	pad := int(out[len(out)-1])
	if pad < 1 || pad > aes.BlockSize {
		return nil, errors.New("bad PKCS#7 padding")
	}
	for _, b := range out[len(out)-pad:] {
		if int(b) != pad {
			return nil, errors.New("bad PKCS#7 padding")
		}
	}
	return out[:len(out)-pad], nil
}

func TestNewClientDefaults(t *testing.T) {
	c, err := NewClient()
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	if got, want := c.BaseURL(), "https://api-test.ksef.mf.gov.pl/v2"; got != want {
		t.Errorf("BaseURL: got %q, want %q", got, want)
	}
	if got, want := c.QRBaseURL(), "https://qr-test.ksef.mf.gov.pl"; got != want {
		t.Errorf("QRBaseURL: got %q, want %q", got, want)
	}
	hc, ok := c.http.(*http.Client)
	if !ok || hc.Timeout != defaultHTTPTimeout {
		t.Errorf("default HTTP client: got %#v, want *http.Client with timeout %s", c.http, defaultHTTPTimeout)
	}
	want := RetryPolicy{MaxAttempts: 4, BaseDelay: 500 * time.Millisecond, MaxDelay: 20 * time.Second,
		MaxRetryAfter: 60 * time.Second, DeadlineMargin: 2 * time.Second}
	if c.retry != want {
		t.Errorf("retry policy: got %+v, want %+v", c.retry, want)
	}
	if c.tokens != nil {
		t.Errorf("access token source: got %v, want none", c.tokens)
	}
}

func TestNewClientEnvironments(t *testing.T) {
	tests := []struct {
		name        string
		opts        []Option
		base, qrURL string
	}{
		{"prod", []Option{WithEnvironment(Prod)}, "https://api.ksef.mf.gov.pl/v2", "https://qr.ksef.mf.gov.pl"},
		{"demo", []Option{WithEnvironment(Demo)}, "https://api-demo.ksef.mf.gov.pl/v2", "https://qr-demo.ksef.mf.gov.pl"},
		{"emulator keeps the environment's QR host", []Option{WithEnvironment(Demo), WithBaseURL("http://127.0.0.1:8080/v2/")},
			"http://127.0.0.1:8080/v2", "https://qr-demo.ksef.mf.gov.pl"},
		{"both overridden, any order", []Option{WithQRBaseURL("http://localhost:9/qr/"), WithBaseURL("http://localhost:9/v2"), WithEnvironment(Prod)},
			"http://localhost:9/v2", "http://localhost:9/qr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(tt.opts...)
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			if c.BaseURL() != tt.base || c.QRBaseURL() != tt.qrURL {
				t.Errorf("got base %q, QR %q; want %q, %q", c.BaseURL(), c.QRBaseURL(), tt.base, tt.qrURL)
			}
		})
	}
}

func TestNewClientInvalidOptions(t *testing.T) {
	tests := []struct {
		name string
		opt  Option
		want string
	}{
		{"nil option", nil, "nil option"},
		{"unknown environment", WithEnvironment("staging"), "unknown environment"},
		{"base URL without /v2", WithBaseURL("https://api-test.ksef.mf.gov.pl"), "must end in /v2"},
		{"relative base URL", WithBaseURL("/v2"), "absolute"},
		{"base URL with query", WithBaseURL("https://x/v2?a=b"), "plain"},
		{"base URL with user info", WithBaseURL("https://u:p@x/v2"), "plain"},
		{"ftp QR URL", WithQRBaseURL("ftp://x"), "absolute"},
		{"nil HTTP client", WithHTTPClient(nil), "nil HTTP client"},
		{"nil logger", WithLogger(nil), "nil logger"},
		{"nil clock", WithClock(nil), "nil clock"},
		{"nil token source", WithAccessToken(nil), "nil access token source"},
		{"nil wait", WithWait(nil), "nil wait"},
		{"empty user agent", WithUserAgent(" "), "empty user agent"},
		{"negative retry", WithRetryPolicy(RetryPolicy{MaxAttempts: -1}), "negative"},
		{"base above max delay", WithRetryPolicy(RetryPolicy{BaseDelay: time.Minute, MaxDelay: time.Second}), "exceeds max delay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.opt)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewClient: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestWithRetryPolicyFillsDefaults(t *testing.T) {
	c, err := NewClient(WithRetryPolicy(RetryPolicy{MaxAttempts: 1, HandBack: true}))
	if err != nil {
		t.Fatal(err)
	}
	want := RetryPolicy{MaxAttempts: 1, BaseDelay: DefaultBaseDelay, MaxDelay: DefaultMaxDelay,
		MaxRetryAfter: DefaultMaxRetryAfter, HandBack: true, DeadlineMargin: DefaultDeadlineMargin}
	if c.retry != want {
		t.Errorf("got %+v, want %+v", c.retry, want)
	}
}

func TestRequestHeaders(t *testing.T) {
	tests := []struct {
		name           string
		problemDetails bool
	}{
		{"exception errors", false},
		{"problem details", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, WithUserAgent("test-agent/1.0"), WithProblemDetails(tt.problemDetails))
			ts.mux.HandleFunc("/v2/auth/challenge", func(w http.ResponseWriter, r *http.Request) {
				testHeader(t, r, "User-Agent", "test-agent/1.0")
				testHeader(t, r, "Accept", "application/json")
				testHeader(t, r, "Authorization", "")
				testHeader(t, r, "Content-Type", "")
				want := ""
				if tt.problemDetails {
					want = "problem-details"
				}
				testHeader(t, r, "X-Error-Format", want)
				if r.ContentLength != 0 {
					t.Errorf("challenge request has a body of %d bytes", r.ContentLength)
				}
				serveFile(t, w, http.StatusOK, "challenge.json")
			})
			if _, err := ts.client.Challenge(t.Context()); err != nil {
				t.Fatalf("Challenge: %v", err)
			}
		})
	}
}

func TestAccessTokenPerAttempt(t *testing.T) {
	var calls int
	src := tokenFunc(func(context.Context) (Secret, error) {
		calls++
		return Secret(fmt.Sprintf("%s-%d", testAccessToken, calls)), nil
	})
	ts := newTestServer(t, WithAccessToken(src))
	var attempt int
	ts.mux.HandleFunc("/v2/rate-limits", func(w http.ResponseWriter, r *http.Request) {
		attempt++
		testBearer(t, r, fmt.Sprintf("%s-%d", testAccessToken, attempt))
		if attempt == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		serveFile(t, w, http.StatusOK, "rate_limits.json")
	})
	if _, err := ts.client.RateLimits(t.Context()); err != nil {
		t.Fatalf("RateLimits: %v", err)
	}
	if calls != 2 {
		t.Errorf("token source calls: got %d, want 2 (one per attempt)", calls)
	}
}

type tokenFunc func(context.Context) (Secret, error)

func (f tokenFunc) AccessToken(ctx context.Context) (Secret, error) { return f(ctx) }

func TestAccessTokenMissingOrFailing(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("unexpected request %s %s", r.Method, r.URL.Path)
	}))
	t.Cleanup(srv.Close)
	boom := errors.New("secret store unavailable")
	tests := []struct {
		name string
		opts []Option
		want error
	}{
		{"no source", nil, ErrNoAccessToken},
		{"source fails", []Option{WithAccessToken(tokenFunc(func(context.Context) (Secret, error) { return "", boom }))}, boom},
		{"empty static token", []Option{WithAccessToken(StaticAccessToken(""))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := NewClient(append([]Option{WithBaseURL(srv.URL + "/v2")}, tt.opts...)...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.SessionStatus(t.Context(), testSessionRef)
			if err == nil {
				t.Fatal("SessionStatus: got no error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want an error wrapping %v", err, tt.want)
			}
		})
	}
}

func TestStaticAccessTokenIsRedacted(t *testing.T) {
	tok := StaticAccessToken(testAccessToken)
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "token", tok)
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok), logs.String()} {
		if strings.Contains(s, "eyJ") {
			t.Errorf("token revealed: %s", s)
		}
	}
	got, err := tok.AccessToken(t.Context())
	if err != nil || got.Reveal() != testAccessToken {
		t.Errorf("AccessToken: got %v, %v; want the token", got, err)
	}
}

func TestPathOf(t *testing.T) {
	tests := []struct {
		pattern string
		args    []string
		want    string
		wantErr bool
	}{
		{"/auth/challenge", nil, "/auth/challenge", false},
		{"/sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}", []string{"A-1", "B 2/x"}, "/sessions/A-1/invoices/B%202%2Fx", false},
		{"/sessions/{referenceNumber}", nil, "", true},
		{"/sessions", []string{"extra"}, "", true},
	}
	for _, tt := range tests {
		p := pathOf(tt.pattern, tt.args...)
		if (p.err != nil) != tt.wantErr || p.path != tt.want {
			t.Errorf("pathOf(%q, %q): got %q, %v; want %q, error %v", tt.pattern, tt.args, p.path, p.err, tt.want, tt.wantErr)
		}
	}
}

func TestParseTime(t *testing.T) {
	want := time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2025-07-11T12:23:56.0154302+00:00", want},
		{"2025-07-11T12:23:56.0154302Z", want},
		{"2025-07-11T12:23:56.0154302", want},
		{"2025-07-11T14:23:56.0154302+02:00", want},
		{"2025-07-11T12:23:56.0154302+0000", want},
		{"2025-07-11T12:23:56Z", time.Date(2025, 7, 11, 12, 23, 56, 0, time.UTC)},
		{"2025-07-11T12:23:56.388+00:00", time.Date(2025, 7, 11, 12, 23, 56, 388e6, time.UTC)},
		{"2025-07-11T12:23:56", time.Date(2025, 7, 11, 12, 23, 56, 0, time.UTC)},
		{"2025-07-11", time.Date(2025, 7, 11, 0, 0, 0, 0, time.UTC)},
		{"0001-01-01T00:00:00+00:00", time.Time{}},
		{"", time.Time{}},
	}
	for _, tt := range tests {
		got, err := parseTime(tt.in)
		if err != nil || !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("parseTime(%q): got %v, %v; want %v in UTC", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"yesterday", "11.07.2025", "2025-13-01T00:00:00Z"} {
		if _, err := parseTime(bad); err == nil {
			t.Errorf("parseTime(%q): got no error", bad)
		}
	}
	var v struct {
		A apiTime `json:"a"`
		B apiTime `json:"b"`
	}
	if err := json.Unmarshal([]byte(`{"a":null,"b":"2025-07-11T12:23:56.0154302"}`), &v); err != nil {
		t.Fatal(err)
	}
	if !v.A.IsZero() || !v.B.Equal(want) {
		t.Errorf("apiTime: got %v, %v; want zero, %v", v.A, v.B, want)
	}
	if err := json.Unmarshal([]byte(`{"a":17}`), &v); err == nil {
		t.Error("apiTime accepted a number")
	}
}

func TestDebugLogPerAttempt(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/{ref}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-System-Warning", "[1001]: planned maintenance")
		serveFile(t, w, http.StatusOK, "session_status.json")
	})
	if _, err := ts.client.SessionStatus(t.Context(), testSessionRef); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(ts.logs.Bytes()), &rec); err != nil {
		t.Fatalf("want exactly one JSON log record, got %q: %v", ts.logs.String(), err)
	}
	want := map[string]any{
		"level": "DEBUG", "msg": "ksef request", "op": "SessionStatus", "method": "GET",
		"path": "/sessions/{referenceNumber}", "statusCode": 200.0, "attempt": 1.0,
		"systemWarning": "[1001]: planned maintenance",
	}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("log field %s: got %v, want %v", k, rec[k], v)
		}
	}
	if _, ok := rec["duration"]; !ok {
		t.Error("log record has no duration")
	}
	if strings.Contains(ts.logs.String(), testSessionRef) {
		t.Errorf("log shows the real path instead of the pattern: %s", ts.logs.String())
	}
}

// TestSecretsNeverLeak runs a complete login and a session with a debug logger and checks that
// no token, JWT or key shows up in the log or in any error, including errors whose bodies echo
// the credentials back.
func TestSecretsNeverLeak(t *testing.T) {
	ts := newTestServer(t)
	var sessionKey []byte
	ts.mux.HandleFunc("/v2/auth/challenge", func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusOK, "challenge.json")
	})
	ts.mux.HandleFunc("/v2/auth/ksef-token", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusAccepted, map[string]any{"referenceNumber": testAuthRef,
			"authenticationToken": map[string]any{"token": testAuthToken, "validUntil": "2026-12-01T10:45:00Z"}})
	})
	ts.mux.HandleFunc("/v2/auth/{ref}", func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusOK, "auth_status_200.json")
	})
	ts.mux.HandleFunc("/v2/auth/token/redeem", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"accessToken":  map[string]any{"token": testAccessToken, "validUntil": "2026-12-01T10:15:00Z"},
			"refreshToken": map[string]any{"token": testRefreshToken, "validUntil": "2026-12-08T10:00:00Z"}})
	})
	ts.mux.HandleFunc("/v2/auth/token/refresh", func(w http.ResponseWriter, r *http.Request) {
		// A hostile or buggy server echoing the credentials in an error.
		writeJSON(w, http.StatusUnauthorized, map[string]any{"title": "Unauthorized", "status": 401,
			"detail": "token " + r.Header.Get("Authorization") + " rejected; also " + testKSeFToken, "traceId": "abc"})
	})
	ts.mux.HandleFunc("/v2/sessions/online", func(w http.ResponseWriter, r *http.Request) {
		body := decodeBody(t, readBody(t, r))
		sessionKey = decryptOAEP(t, ts.symKey, b64Field(t, body, "encryption.encryptedSymmetricKey"))
		serveFile(t, w, http.StatusCreated, "session_open.json")
	})
	ts.mux.HandleFunc("/v2/sessions/online/{ref}/invoices", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, exceptionBody(CodeValidation, "Błąd walidacji", "Authorization: "+r.Header.Get("Authorization")))
	})

	ctx := t.Context()
	c := ts.client
	var errs []error
	ch, err := c.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	init, err := c.AuthenticateWithKSeFToken(ctx, KSeFTokenAuth{Challenge: ch, Context: NipContext(testNIP), Token: testKSeFToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token); err != nil {
		t.Fatal(err)
	}
	tokens, err := c.RedeemTokens(ctx, init.AuthenticationToken.Token)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.RefreshAccessToken(ctx, tokens.RefreshToken.Token)
	errs = append(errs, err)
	s, err := c.OpenOnlineSession(ctx, FormCodeFA3())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.SendInvoice(ctx, s, []byte("<Faktura/>"), nil)
	errs = append(errs, err)
	_, err = c.AuthenticateWithKSeFToken(ctx, KSeFTokenAuth{Challenge: &Challenge{Challenge: "x"}, Context: NipContext(testNIP), Token: Secret(testKSeFToken + strings.Repeat("x", 400))})
	errs = append(errs, err)

	texts := []string{ts.logs.String(), fmt.Sprintf("%v %+v %#v", tokens, s, init)}
	for _, err := range errs {
		if err == nil {
			t.Fatal("expected the call to fail")
		}
		texts = append(texts, err.Error())
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			texts = append(texts, string(apiErr.Body), fmt.Sprintf("%+v", apiErr.Details))
		}
	}
	secrets := map[string]string{
		"KSeF token":           testKSeFToken,
		"KSeF token secret":    testKSeFToken[strings.LastIndexByte(testKSeFToken, '|')+1:],
		"authentication token": testAuthToken,
		"access token":         testAccessToken,
		"refresh token":        testRefreshToken,
		"JWT signature":        "QUNDRVNTLXNpZ25hdHVyZQ",
		"session key (Base64)": base64.StdEncoding.EncodeToString(sessionKey),
		"session key (hex)":    fmt.Sprintf("%x", sessionKey),
	}
	for _, text := range texts {
		for name, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s leaked into:\n%s", name, text)
			}
		}
	}
	if !strings.Contains(ts.logs.String(), `"op":"RedeemTokens"`) {
		t.Errorf("log lacks the requests: %s", ts.logs.String())
	}
}

func TestTransportErrorRedactsPresignedQuery(t *testing.T) {
	c, err := NewClient(WithHTTPClient(doerFunc(func(r *http.Request) (*http.Response, error) {
		return nil, &url.Error{Op: "Get", URL: r.URL.String(), Err: dialError()}
	})), WithRetryPolicy(RetryPolicy{MaxAttempts: 1}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Download(t.Context(), "https://storage.example/upo.xml?sv=1&sig=SECRETSIGNATURE%3D")
	if err == nil {
		t.Fatal("Download: got no error")
	}
	if strings.Contains(err.Error(), "SECRETSIGNATURE") || !strings.Contains(err.Error(), "storage.example/upo.xml") {
		t.Errorf("error should name the URL without its query: %v", err)
	}
}

// doerFunc adapts a function to HTTPDoer.
type doerFunc func(*http.Request) (*http.Response, error)

func (f doerFunc) Do(r *http.Request) (*http.Response, error) { return f(r) }

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMalformedSuccessReplies(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		reply string
		call  func(*Client, context.Context) error
		want  string
	}{
		{"not JSON", "/v2/sessions/{ref}", "<html>", func(c *Client, ctx context.Context) error {
			_, err := c.SessionStatus(ctx, testSessionRef)
			return err
		}, "decode response (HTTP 200)"},
		{"bad date", "/v2/sessions/{ref}/invoices/{inv}", `{"invoicingDate":"11.07.2025"}`, func(c *Client, ctx context.Context) error {
			_, err := c.InvoiceStatus(ctx, testSessionRef, testInvoiceRef)
			return err
		}, `unrecognised date-time "11.07.2025"`},
		{"auth init without token", "/v2/auth/xades-signature", `{"referenceNumber":"` + testAuthRef + `"}`, func(c *Client, ctx context.Context) error {
			_, err := c.AuthenticateWithXAdES(ctx, []byte("<x/>"), false)
			return err
		}, "lacks reference number or authentication token"},
		{"redeem without refresh token", "/v2/auth/token/redeem", `{"accessToken":{"token":"a","validUntil":null}}`, func(c *Client, ctx context.Context) error {
			_, err := c.RedeemTokens(ctx, testAuthToken)
			return err
		}, "lacks a token"},
		{"refresh without token", "/v2/auth/token/refresh", `{}`, func(c *Client, ctx context.Context) error {
			_, err := c.RefreshAccessToken(ctx, testRefreshToken)
			return err
		}, "lacks the access token"},
		{"session without reference", "/v2/sessions/online", `{"validUntil":"2026-12-01T22:00:00Z"}`, func(c *Client, ctx context.Context) error {
			_, err := c.OpenOnlineSession(ctx, FormCodeFA3())
			return err
		}, "no reference number"},
		{"send without reference", "/v2/sessions/online/{ref}/invoices", `{}`, func(c *Client, ctx context.Context) error {
			_, err := c.SendInvoice(ctx, fixedHandle(), []byte("<Faktura/>"), nil)
			return err
		}, "no reference number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc(tt.path, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.reply)
			})
			err := tt.call(ts.client, t.Context())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestEmptyArguments(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request %s %s sent despite an empty argument", r.Method, r.URL.Path)
	})
	c, ctx := ts.client, t.Context()
	calls := map[string]func() error{
		"InvoiceStatus": func() error { _, err := c.InvoiceStatus(ctx, testSessionRef, ""); return err },
		"SessionStatus": func() error { _, err := c.SessionStatus(ctx, ""); return err },
		"SessionInvoices": func() error {
			_, err := c.SessionInvoices(ctx, "", nil)
			return err
		},
	}
	for name, call := range calls {
		if err := call(); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("%s: got %v, want an empty-argument error", name, err)
		}
	}
}
