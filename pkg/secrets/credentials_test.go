package secrets

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const testKSeFToken = "20251010-EC-1DCE3E3000-12ECB5B36E-45|nip-5265877635|SECRET919fdf7b9"

// testPEM returns a test certificate and key of the given type, PEM-encoded.
func testPEM(t *testing.T, kt ksef.KeyType) (certPEM, keyPEM string) {
	t.Helper()
	cert, key, err := ksef.NewTestCertificate(ksef.TestCertificateOptions{NIP: testNIP, Seal: true, KeyType: kt})
	if err != nil {
		t.Fatal(err)
	}
	c, k, err := ksef.EncodePEM(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(c), string(k)
}

func credsJSON(t *testing.T, fields map[string]any) []byte {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCredentials(t *testing.T) {
	rsaCert, rsaKey := testPEM(t, ksef.KeyRSA)
	ecCert, ecKey := testPEM(t, ksef.KeyECDSA)
	_, otherKey := testPEM(t, ksef.KeyECDSA)
	keyBody := strings.Split(rsaKey, "\n")[1] // a line of Base64 key material

	token := func(over map[string]any) map[string]any {
		m := map[string]any{"nip": testNIP, "environment": "test", "authMethod": "token", "ksefToken": testKSeFToken}
		for k, v := range over {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	xades := func(over map[string]any) map[string]any {
		m := map[string]any{"nip": testNIP, "environment": "demo", "authMethod": "xades", "certificatePem": rsaCert, "privateKeyPem": rsaKey}
		for k, v := range over {
			if v == nil {
				delete(m, k)
			} else {
				m[k] = v
			}
		}
		return m
	}
	encrypted := "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n"

	tests := []struct {
		name      string
		doc       []byte
		wantField string // "" with wantOK false: a document-level error
		wantOK    bool
		wantIn    string // part of the error message
	}{
		{name: "token", doc: credsJSON(t, token(nil)), wantOK: true},
		{name: "token with emulator URL", doc: credsJSON(t, token(map[string]any{"baseUrl": "http://127.0.0.1:8080/v2"})), wantOK: true},
		{name: "xades RSA", doc: credsJSON(t, xades(nil)), wantOK: true},
		{name: "xades ECDSA on prod", doc: credsJSON(t, xades(map[string]any{"environment": "prod", "certificatePem": ecCert, "privateKeyPem": ecKey})), wantOK: true},
		{name: "test NIP without check digit on test", doc: credsJSON(t, token(map[string]any{"nip": "1111111112"})), wantOK: true},

		{name: "missing nip", doc: credsJSON(t, token(map[string]any{"nip": nil})), wantField: "nip"},
		{name: "nip too short", doc: credsJSON(t, token(map[string]any{"nip": "526587763"})), wantField: "nip", wantIn: "not a NIP"},
		{name: "nip starting with 0", doc: credsJSON(t, token(map[string]any{"nip": "0265877635"})), wantField: "nip"},
		{name: "nip with 00 after the first digit", doc: credsJSON(t, token(map[string]any{"nip": "5005877635"})), wantField: "nip"},
		{name: "nip check digit on prod", doc: credsJSON(t, token(map[string]any{"nip": "5265877636", "environment": "prod"})), wantField: "nip", wantIn: "check digit"},
		{name: "unknown environment", doc: credsJSON(t, token(map[string]any{"environment": "production"})), wantField: "environment", wantIn: `"production"`},
		{name: "missing environment", doc: credsJSON(t, token(map[string]any{"environment": nil})), wantField: "environment"},
		{name: "baseUrl not absolute", doc: credsJSON(t, token(map[string]any{"baseUrl": "api.example/v2"})), wantField: "baseUrl"},
		{name: "baseUrl ftp", doc: credsJSON(t, token(map[string]any{"baseUrl": "ftp://example.com/v2"})), wantField: "baseUrl"},
		{name: "baseUrl with user info", doc: credsJSON(t, token(map[string]any{"baseUrl": "https://user:SECRETpw@example.com/v2"})), wantField: "baseUrl"},
		{name: "missing authMethod", doc: credsJSON(t, token(map[string]any{"authMethod": nil})), wantField: "authMethod", wantIn: "missing"},
		{name: "only the NIP, as the stack creates it", doc: []byte(`{"nip":"` + testNIP + `"}`), wantIn: "holds no KSeF token or certificate yet, only the NIP: store credentials in it with ksef secrets put"},
		{name: "nothing to log in with", doc: credsJSON(t, token(map[string]any{"authMethod": nil, "ksefToken": nil})), wantIn: "holds no KSeF token or certificate yet"},
		{name: "unknown authMethod", doc: credsJSON(t, token(map[string]any{"authMethod": "password"})), wantField: "authMethod", wantIn: `"password"`},
		{name: "token method without token", doc: credsJSON(t, token(map[string]any{"ksefToken": nil})), wantField: "ksefToken", wantIn: "required"},
		{name: "token method with empty token", doc: credsJSON(t, token(map[string]any{"ksefToken": ""})), wantField: "ksefToken"},

		{name: "xades without certificate", doc: credsJSON(t, xades(map[string]any{"certificatePem": nil})), wantField: "certificatePem", wantIn: "missing"},
		{name: "xades certificate not PEM", doc: credsJSON(t, xades(map[string]any{"certificatePem": "MIIB..."})), wantField: "certificatePem", wantIn: "not PEM-encoded"},
		{name: "xades key in the certificate field", doc: credsJSON(t, xades(map[string]any{"certificatePem": rsaKey})), wantField: "certificatePem", wantIn: `PEM block is "PRIVATE KEY"`},
		{name: "xades certificate unparsable", doc: credsJSON(t, xades(map[string]any{"certificatePem": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))})), wantField: "certificatePem", wantIn: "unparsable certificate"},
		{name: "xades without key", doc: credsJSON(t, xades(map[string]any{"privateKeyPem": nil})), wantField: "privateKeyPem", wantIn: "missing"},
		{name: "xades key not PEM", doc: credsJSON(t, xades(map[string]any{"privateKeyPem": keyBody})), wantField: "privateKeyPem", wantIn: "not PEM-encoded"},
		{name: "xades certificate in the key field", doc: credsJSON(t, xades(map[string]any{"privateKeyPem": rsaCert})), wantField: "privateKeyPem", wantIn: `PEM block is "CERTIFICATE"`},
		{name: "xades encrypted PKCS #1 key", doc: credsJSON(t, xades(map[string]any{"privateKeyPem": encrypted})), wantField: "privateKeyPem", wantIn: "encrypted"},
		{name: "xades encrypted PKCS #8 key", doc: credsJSON(t, xades(map[string]any{"privateKeyPem": strings.ReplaceAll(rsaKey, "PRIVATE KEY", "ENCRYPTED PRIVATE KEY")})), wantField: "privateKeyPem", wantIn: "encrypted"},
		{name: "xades key of another certificate", doc: credsJSON(t, xades(map[string]any{"certificatePem": ecCert, "privateKeyPem": otherKey})), wantField: "privateKeyPem", wantIn: "does not match"},
		{name: "xades corrupt key", doc: credsJSON(t, xades(map[string]any{"privateKeyPem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("SECRETjunk")}))})), wantField: "privateKeyPem"},

		{name: "misspelt field", doc: []byte(`{"nip":"` + testNIP + `","environment":"test","authMethod":"token","ksefTokne":"SECRET"}`), wantIn: `unknown field "ksefTokne"`},
		{name: "malformed JSON", doc: []byte(`{"nip":"` + testNIP + `","ksefToken":"SECRET` + "\x02" + `"}`), wantIn: "malformed JSON at byte"},
		{name: "wrong type", doc: []byte(`{"nip":5265877635}`), wantIn: `field "nip" has the wrong JSON type`},
		{name: "trailing data", doc: append(credsJSON(t, token(nil)), []byte(` {"ksefToken":"SECRET"}`)...), wantIn: "trailing data"},
		{name: "empty", doc: []byte(``), wantIn: "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseCredentials(tt.doc)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("ParseCredentials: %v", err)
				}
				if c.NIP == "" || c.AuthMethod == "" {
					t.Fatalf("ParseCredentials = %+v, want the fields filled", c)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseCredentials: err = nil, want an error on %q", tt.wantField)
			}
			if !errors.Is(err, ErrInvalidCredentials) {
				t.Errorf("err = %v, want ErrInvalidCredentials", err)
			}
			var ce *CredentialsError
			if !errors.As(err, &ce) || ce.Field != tt.wantField {
				t.Errorf("err = %#v, want a *CredentialsError on field %q", err, tt.wantField)
			}
			if !strings.Contains(err.Error(), tt.wantIn) {
				t.Errorf("err = %q, want it to contain %q", err, tt.wantIn)
			}
			for _, leak := range []string{"SECRET", keyBody, "MIIE", "MHc"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("err = %q quotes secret material (%.12s...)", err, leak)
				}
			}
		})
	}
}

func TestCredentialsRedactedWhenPrinted(t *testing.T) {
	cert, key := testPEM(t, ksef.KeyECDSA)
	c := &Credentials{NIP: testNIP, Environment: ksef.Test, AuthMethod: AuthXAdES, KSeFToken: testKSeFToken, CertificatePEM: cert, PrivateKeyPEM: ksef.Secret(key)}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, c)
		if strings.Contains(out, "SECRET") || strings.Contains(out, "PRIVATE KEY") {
			t.Errorf("%s of Credentials reveals a secret: %s", verb, out)
		}
	}
}

func TestAPIBaseURL(t *testing.T) {
	c := &Credentials{Environment: ksef.Demo}
	if got := c.APIBaseURL(); got != "https://api-demo.ksef.mf.gov.pl/v2" {
		t.Errorf("APIBaseURL() = %q, want the demo URL", got)
	}
	c.BaseURL = "http://127.0.0.1:8080/v2"
	if got := c.APIBaseURL(); got != c.BaseURL {
		t.Errorf("APIBaseURL() = %q, want %q", got, c.BaseURL)
	}
}

func TestStoreCredentials(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	name := "ksef/" + testNIP + "/credentials"
	s := testStore(sm, c, "c-a", 0, WithCacheTTL(time.Minute))
	ctx := t.Context()

	if _, err := s.Credentials(ctx, testNIP); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing secret: err = %v, want ErrNotFound", err)
	}

	sm.Set(name, string(credsJSON(t, map[string]any{"nip": testNIP, "environment": "test", "authMethod": "token", "ksefToken": testKSeFToken})))
	got, err := s.Credentials(ctx, testNIP)
	if err != nil {
		t.Fatal(err)
	}
	if got.KSeFToken != testKSeFToken || got.Environment != ksef.Test {
		t.Errorf("Credentials = %+v", got)
	}
	got.KSeFToken = "changed" // must not reach the cache
	again, _ := s.Credentials(ctx, testNIP)
	if again.KSeFToken != testKSeFToken {
		t.Error("changing a returned Credentials changed the cache")
	}
	if n := sm.Counts().Gets; n != 2 {
		t.Errorf("reads = %d, want 2 (the miss, then one read cached for the TTL)", n)
	}

	c.Advance(time.Minute)
	sm.Set(name, string(credsJSON(t, map[string]any{"nip": "1111111111", "environment": "test", "authMethod": "token", "ksefToken": testKSeFToken})))
	_, err = s.Credentials(ctx, testNIP)
	var ce *CredentialsError
	if !errors.As(err, &ce) || ce.Field != "nip" || !strings.Contains(err.Error(), "want "+testNIP) {
		t.Errorf("secret of another NIP: err = %v, want a nip CredentialsError", err)
	}

	c.Advance(time.Minute)
	sm.Set(name, `{"nip":"`+testNIP+`"}`) // as template.yaml creates it
	_, err = s.Credentials(ctx, testNIP)
	if !errors.As(err, &ce) || ce.Field != "" || !strings.Contains(err.Error(), "read credentials of "+testNIP+" from "+name+": invalid credentials: the secret holds no KSeF token or certificate yet") {
		t.Errorf("secret holding only the NIP: err = %v, want it to say that credentials are still to be stored", err)
	}

	sm.SetBinary(name, []byte("x"))
	if _, err := s.Credentials(ctx, testNIP); !errors.Is(err, ErrInvalidCredentials) {
		t.Errorf("binary secret: err = %v, want ErrInvalidCredentials", err)
	}
}

func TestNIPCheckDigit(t *testing.T) {
	// Weights 6 5 7 2 3 4 5 6 7, which add up to 45.
	tests := []struct {
		nip  string
		want bool
	}{
		{"5265877635", true}, // the NIP of KSeF's documentation examples
		{"5265877636", false},
		{"1111111111", true}, // 45 mod 11 = 1
		{"1111111112", false},
		{"9999999999", true}, // 405 mod 11 = 9
		{"1000000006", true}, // 6 mod 11 = 6
		{"1000000000", false},
		{"1300000000", false}, // 6 + 15 = 21, 21 mod 11 = 10: no digit fits
		{"1300000001", false},
	}
	for _, tt := range tests {
		if got := nipCheckDigitOK(tt.nip); got != tt.want {
			t.Errorf("nipCheckDigitOK(%q) = %v, want %v", tt.nip, got, tt.want)
		}
	}
}
