package ksef

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const sampleChallenge = "20250514-CR-226FB7B000-3ACF9BE4C0-10"

func TestChallenge(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/challenge", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testHeader(t, r, "Authorization", "")
		serveFile(t, w, http.StatusOK, "challenge.json")
	})
	got, err := ts.client.Challenge(t.Context())
	if err != nil {
		t.Fatalf("Challenge: %v", err)
	}
	want := &Challenge{
		Challenge:   sampleChallenge,
		Timestamp:   time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC),
		TimestampMs: 1752236636015,
		ClientIP:    "127.0.0.1",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if got.Timestamp.UnixMilli() != got.TimestampMs {
		t.Errorf("the sample's timestamp and timestampMs disagree: %d vs %d", got.Timestamp.UnixMilli(), got.TimestampMs)
	}
}

func TestChallengeEmptyResponse(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/challenge", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{})
	})
	if _, err := ts.client.Challenge(t.Context()); err == nil {
		t.Error("got no error for a reply without a challenge")
	}
}

func TestAuthenticateWithKSeFToken(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/ksef-token", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testHeader(t, r, "Authorization", "")
		testHeader(t, r, "Content-Type", "application/json")
		raw := readBody(t, r)
		checkGoldenJSON(t, "ksef_token_auth", raw, "encryptedToken")
		body := decodeBody(t, raw)
		if got := field(t, body, "publicKeyId"); got != ts.tokenKey.id {
			t.Errorf("publicKeyId: got %v, want the KsefTokenEncryption key %s", got, ts.tokenKey.id)
		}
		// The plaintext is the token, '|', and the challenge's Unix milliseconds.
		plain := decryptOAEP(t, ts.tokenKey, b64Field(t, body, "encryptedToken"))
		if want := testKSeFToken + "|1752236636015"; string(plain) != want {
			t.Errorf("decrypted token: got %q, want %q", plain, want)
		}
		serveFile(t, w, http.StatusAccepted, "auth_init.json")
	})
	got, err := ts.client.AuthenticateWithKSeFToken(t.Context(), KSeFTokenAuth{
		Challenge: &Challenge{Challenge: sampleChallenge, Timestamp: time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC), TimestampMs: 1752236636015},
		Context:   NipContext(testNIP),
		Token:     testKSeFToken,
		AllowedIPs: &AllowedIPs{
			IP4Addresses: []string{"192.168.0.10"},
			IP4Ranges:    []string{"10.0.0.1-10.0.0.254"},
			IP4Masks:     []string{"172.16.0.0/16"},
		},
	})
	if err != nil {
		t.Fatalf("AuthenticateWithKSeFToken: %v", err)
	}
	if got.ReferenceNumber != testAuthRef || !strings.HasPrefix(got.AuthenticationToken.Token.Reveal(), "eyJ") ||
		!got.AuthenticationToken.ValidUntil.Equal(time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC)) {
		t.Errorf("AuthInit: got %+v", got)
	}
}

func TestAuthenticateWithKSeFTokenPlaintext(t *testing.T) {
	tests := []struct {
		name      string
		challenge Challenge
		want      string
	}{
		{"timestampMs wins over timestamp", Challenge{Challenge: sampleChallenge, TimestampMs: 1752236636999, Timestamp: time.UnixMilli(1)}, "|1752236636999"},
		{"timestamp truncated to milliseconds when timestampMs is missing",
			Challenge{Challenge: sampleChallenge, Timestamp: time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC)}, "|1752236636015"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/v2/auth/ksef-token", func(w http.ResponseWriter, r *http.Request) {
				body := decodeBody(t, readBody(t, r))
				if _, ok := body["authorizationPolicy"]; ok {
					t.Error("authorizationPolicy sent without AllowedIPs")
				}
				plain := decryptOAEP(t, ts.tokenKey, b64Field(t, body, "encryptedToken"))
				if want := testKSeFToken + tt.want; string(plain) != want {
					t.Errorf("plaintext: got %q, want %q", plain, want)
				}
				serveFile(t, w, http.StatusAccepted, "auth_init.json")
			})
			ch := tt.challenge
			if _, err := ts.client.AuthenticateWithKSeFToken(t.Context(), KSeFTokenAuth{Challenge: &ch, Context: NipContext(testNIP), Token: testKSeFToken}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestAuthenticateWithKSeFTokenValidation(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/ksef-token", func(w http.ResponseWriter, r *http.Request) {
		t.Error("request sent despite invalid input")
	})
	ch := &Challenge{Challenge: sampleChallenge, TimestampMs: 1}
	tests := []struct {
		name string
		auth KSeFTokenAuth
		want string
	}{
		{"no challenge", KSeFTokenAuth{Context: NipContext(testNIP), Token: testKSeFToken}, "no challenge"},
		{"challenge without time", KSeFTokenAuth{Challenge: &Challenge{Challenge: sampleChallenge}, Context: NipContext(testNIP), Token: testKSeFToken}, "no timestamp"},
		{"no context", KSeFTokenAuth{Challenge: ch, Token: testKSeFToken}, "context"},
		{"no token", KSeFTokenAuth{Challenge: ch, Context: NipContext(testNIP)}, "empty KSeF token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.client.AuthenticateWithKSeFToken(t.Context(), tt.auth)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestAuthenticateWithKSeFTokenRejected(t *testing.T) {
	ts := newTestServer(t)
	var attempts atomic.Int32
	ts.mux.HandleFunc("/v2/auth/ksef-token", func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		writeJSON(w, http.StatusBadRequest, exceptionBody(CodeInvalidChallenge, "Nieprawidłowe wyzwanie autoryzacyjne."))
	})
	_, err := ts.client.AuthenticateWithKSeFToken(t.Context(), KSeFTokenAuth{
		Challenge: &Challenge{Challenge: sampleChallenge, TimestampMs: 1}, Context: NipContext(testNIP), Token: testKSeFToken})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !apiErr.HasCode(CodeInvalidChallenge) || apiErr.Op != "AuthenticateWithKSeFToken" {
		t.Fatalf("got %v, want the 21111 *APIError", err)
	}
	if attempts.Load() != 1 || ts.keyFetches() != 1 {
		t.Errorf("got %d attempts and %d key fetches, want 1 and 1", attempts.Load(), ts.keyFetches())
	}
}

func TestAuthenticateWithXAdES(t *testing.T) {
	signed := []byte("<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<AuthTokenRequest xmlns=\"http://ksef.mf.gov.pl/auth/token/2.0\">signed</AuthTokenRequest>")
	for _, verify := range []bool{false, true} {
		ts := newTestServer(t)
		ts.mux.HandleFunc("/v2/auth/xades-signature", func(w http.ResponseWriter, r *http.Request) {
			testMethod(t, r, http.MethodPost)
			testHeader(t, r, "Authorization", "")
			testHeader(t, r, "Content-Type", "application/xml")
			want := ""
			if verify {
				want = "verifyCertificateChain=true"
			}
			testQuery(t, r, want)
			if got := readBody(t, r); !bytes.Equal(got, signed) {
				t.Errorf("body: got %q, want the signed document byte for byte", got)
			}
			serveFile(t, w, http.StatusAccepted, "auth_init.json")
		})
		got, err := ts.client.AuthenticateWithXAdES(t.Context(), signed, verify)
		if err != nil {
			t.Fatalf("AuthenticateWithXAdES(verify=%v): %v", verify, err)
		}
		if got.ReferenceNumber != testAuthRef {
			t.Errorf("reference number: got %q", got.ReferenceNumber)
		}
	}
	ts := newTestServer(t)
	if _, err := ts.client.AuthenticateWithXAdES(t.Context(), nil, false); err == nil {
		t.Error("empty document: got no error")
	}
}

func TestAuthenticateWithCertificate(t *testing.T) {
	ts := newTestServer(t)
	cert, key, err := NewTestCertificate(TestCertificateOptions{NIP: testNIP, Now: testNow})
	if err != nil {
		t.Fatal(err)
	}
	ts.mux.HandleFunc("/v2/auth/challenge", func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusOK, "challenge.json")
	})
	ts.mux.HandleFunc("/v2/auth/xades-signature", func(w http.ResponseWriter, r *http.Request) {
		testHeader(t, r, "Content-Type", "application/xml")
		testQuery(t, r, "")
		doc := string(readBody(t, r))
		for _, want := range []string{
			"<Challenge>" + sampleChallenge + "</Challenge>",
			"<Nip>" + testNIP + "</Nip>",
			"<SubjectIdentifierType>certificateSubject</SubjectIdentifierType>",
			"SignatureValue",
			"2026-12-01T09:59:00Z", // signing time: one minute before now
		} {
			if !strings.Contains(doc, want) {
				t.Errorf("signed document lacks %q:\n%s", want, doc)
			}
		}
		serveFile(t, w, http.StatusAccepted, "auth_init.json")
	})
	got, err := ts.client.AuthenticateWithCertificate(t.Context(), NipContext(testNIP), key, cert)
	if err != nil {
		t.Fatalf("AuthenticateWithCertificate: %v", err)
	}
	if got.ReferenceNumber != testAuthRef {
		t.Errorf("reference number: got %q", got.ReferenceNumber)
	}
	if _, err := ts.client.AuthenticateWithCertificate(t.Context(), NipContext(testNIP), nil, cert); err == nil {
		t.Error("no key: got no error")
	}
	if _, err := ts.client.AuthenticateWithCertificate(t.Context(), ContextIdentifier{}, key, cert); err == nil {
		t.Error("no context: got no error")
	}
}

func TestAuthStatus(t *testing.T) {
	tests := []struct {
		file string
		want AuthStatus
	}{
		{"auth_status_200.json", AuthStatus{
			Status:                 Status{Code: 200, Description: "Uwierzytelnianie zakończone sukcesem"},
			StartDate:              time.Date(2025, 10, 11, 12, 23, 56, 15430200, time.UTC),
			Method:                 "Token",
			MethodCategory:         "Token",
			MethodCode:             "token.ksef",
			MethodDisplayName:      "Token KSeF",
			RefreshTokenValidUntil: time.Date(2025, 10, 18, 12, 23, 56, 0, time.UTC),
		}},
		{"auth_status_450.json", AuthStatus{
			Status: Status{Code: 450, Description: "Uwierzytelnianie zakończone niepowodzeniem z powodu błędnego tokenu",
				Details: []string{"Nieprawidłowy czas tokena"}},
			StartDate:         time.Date(2025, 10, 11, 12, 23, 56, 15430200, time.UTC),
			Method:            "Token",
			MethodCategory:    "Token",
			MethodCode:        "token.ksef",
			MethodDisplayName: "Token KSeF",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/v2/auth/{ref}", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, http.MethodGet)
				testBearer(t, r, testAuthToken)
				if r.PathValue("ref") != testAuthRef {
					t.Errorf("path: got %s", r.URL.Path)
				}
				serveFile(t, w, http.StatusOK, tt.file)
			})
			got, err := ts.client.AuthStatus(t.Context(), testAuthRef, testAuthToken)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestAuthStatusErrors(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/{ref}", func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusGone, "error_problem_410.json")
	})
	if _, err := ts.client.AuthStatus(t.Context(), testAuthRef, testAuthToken); !errors.Is(err, ErrGone) {
		t.Errorf("got %v, want ErrGone", err)
	}
	if _, err := ts.client.AuthStatus(t.Context(), testAuthRef, ""); err == nil {
		t.Error("empty token: got no error")
	}
	if _, err := ts.client.AuthStatus(t.Context(), "", testAuthToken); err == nil {
		t.Error("empty reference: got no error")
	}
}

func TestRedeemTokens(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/token/redeem", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAuthToken)
		if len(readBody(t, r)) != 0 {
			t.Error("redeem has a body")
		}
		serveFile(t, w, http.StatusOK, "auth_tokens.json")
	})
	got, err := ts.client.RedeemTokens(t.Context(), testAuthToken)
	if err != nil {
		t.Fatalf("RedeemTokens: %v", err)
	}
	until := time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC)
	if !strings.HasPrefix(got.AccessToken.Token.Reveal(), "eyJ") || !strings.HasPrefix(got.RefreshToken.Token.Reveal(), "eyJ") ||
		!got.AccessToken.ValidUntil.Equal(until) || !got.RefreshToken.ValidUntil.Equal(until) {
		t.Errorf("tokens: got %+v", got)
	}
	if _, err := ts.client.RedeemTokens(t.Context(), ""); err == nil {
		t.Error("empty token: got no error")
	}
}

func TestRedeemTokensTwice(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/token/redeem", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, exceptionBody(CodeNoAuthorization, "Brak autoryzacji.", "Tokeny zostały już pobrane."))
	})
	_, err := ts.client.RedeemTokens(t.Context(), testAuthToken)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !apiErr.HasCode(CodeNoAuthorization) {
		t.Errorf("got %v, want the 21301 *APIError", err)
	}
}

func TestRefreshAccessToken(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/token/refresh", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testRefreshToken)
		serveFile(t, w, http.StatusOK, "auth_refresh.json")
	})
	got, err := ts.client.RefreshAccessToken(t.Context(), testRefreshToken)
	if err != nil {
		t.Fatalf("RefreshAccessToken: %v", err)
	}
	if !strings.HasPrefix(got.Token.Reveal(), "eyJ") || !got.ValidUntil.Equal(time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC)) {
		t.Errorf("token: got %+v", got)
	}
	if _, err := ts.client.RefreshAccessToken(t.Context(), ""); err == nil {
		t.Error("empty token: got no error")
	}
}

func TestRevokeCurrentSession(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/sessions/current", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodDelete)
		testBearer(t, r, testRefreshToken)
		w.WriteHeader(http.StatusNoContent)
	})
	if err := ts.client.RevokeCurrentSession(t.Context(), testRefreshToken); err != nil {
		t.Fatalf("RevokeCurrentSession: %v", err)
	}
	if err := ts.client.RevokeCurrentSession(t.Context(), ""); err == nil {
		t.Error("empty token: got no error")
	}
}

func TestRevokeSession(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/sessions/{ref}", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodDelete)
		testBearer(t, r, testAccessToken)
		if r.PathValue("ref") != testAuthRef {
			t.Errorf("path: got %s", r.URL.Path)
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if err := ts.client.RevokeSession(t.Context(), testAuthRef); err != nil {
		t.Fatalf("RevokeSession: %v", err)
	}
	if err := ts.client.RevokeSession(t.Context(), ""); err == nil {
		t.Error("empty reference: got no error")
	}
}

func TestAuthSessions(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/auth/sessions", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		testQuery(t, r, "pageSize=20")
		testHeader(t, r, "x-continuation-token", "next-page")
		serveFile(t, w, http.StatusOK, "auth_sessions.json")
	})
	page, err := ts.client.AuthSessions(t.Context(), &ListOptions{PageSize: 20, ContinuationToken: "next-page"})
	if err != nil {
		t.Fatalf("AuthSessions: %v", err)
	}
	want := AuthSession{
		ReferenceNumber: "20251010-AU-19F5E39000-39B5B182BA-B8",
		AuthStatus: AuthStatus{
			Status:                 Status{Code: 200, Description: "Uwierzytelnianie zakończone sukcesem"},
			StartDate:              time.Date(2025, 10, 11, 12, 23, 56, 15430200, time.UTC),
			Method:                 "QualifiedSeal",
			MethodCategory:         "XadesSignature",
			MethodCode:             "xades.qualified-seal",
			MethodDisplayName:      "Pieczęć kwalifikowana",
			IsTokenRedeemed:        true,
			RefreshTokenValidUntil: time.Date(2025, 11, 28, 9, 22, 13, 388e6, time.UTC),
		},
	}
	if len(page.Sessions) != 1 || !reflect.DeepEqual(page.Sessions[0], want) || !strings.HasPrefix(page.ContinuationToken, "W3siY29t") {
		t.Errorf("got %+v\nwant one session %+v", page, want)
	}
	if _, err := ts.client.AuthSessions(t.Context(), &ListOptions{PageSize: 101}); err == nil {
		t.Error("page size 101: got no error")
	}
}
