package ksef

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// forbidden answers 403 with a problem-details body, as KSeF always does.
func forbidden(w http.ResponseWriter, reason string, security map[string]any) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusForbidden)
	_, _ = fmt.Fprintf(w, `{"title":"Forbidden","status":403,"detail":"Odmowa dostępu.","reasonCode":%q,"security":%s,"traceId":"673843e023c432286660bc0501a3af44","timestamp":"2025-07-11T12:23:56.0154302+00:00"}`,
		reason, mustJSON(security))
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // test values only
	}
	return string(b)
}

func TestGenerateToken(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/tokens", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		testHeader(t, r, "Content-Type", "application/json")
		checkGoldenJSON(t, "generate_token", readBody(t, r))
		serveFile(t, w, http.StatusAccepted, "token_generated.json")
	})
	got, err := ts.client.GenerateToken(t.Context(), TokenRequest{
		Permissions: []Permission{PermissionInvoiceRead, PermissionInvoiceWrite},
		Description: "Wystawianie i przeglądanie faktur.",
	})
	if err != nil {
		t.Fatalf("GenerateToken: %v", err)
	}
	const wantToken = "20251010-EC-1DCE3E3000-12ECB5B36E-45|internalId-5265877635-12345|919f704466624ce29cd5ac7b65ded5e7cccc112eee314f2aaa76e02cd16df7b9"
	if got.ReferenceNumber != "20251010-EC-1DCE3E3000-12ECB5B36E-45" || got.Token.Reveal() != wantToken {
		t.Errorf("got reference %q and a token of %d characters, want the example's", got.ReferenceNumber, len(got.Token.Reveal()))
	}
	if s := fmt.Sprintf("%v %+v", got, got); strings.Contains(s, "919f7044") {
		t.Errorf("printing the generated token reveals it: %s", s)
	}
}

func TestGenerateTokenChecksRequest(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/tokens", func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("request sent for an invalid token request")
	})
	tests := []struct {
		name string
		req  TokenRequest
		want string
	}{
		{"no permissions", TokenRequest{Description: "Opis tokena"}, "no permissions"},
		{"VatUeManage", TokenRequest{Permissions: []Permission{PermissionVatUeManage}, Description: "Opis tokena"}, `"VatUeManage" not allowed`},
		{"duplicate", TokenRequest{Permissions: []Permission{PermissionInvoiceRead, PermissionInvoiceRead}, Description: "Opis tokena"}, "given twice"},
		{"short description", TokenRequest{Permissions: []Permission{PermissionInvoiceRead}, Description: "Opis"}, "5-256 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.client.GenerateToken(t.Context(), tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("GenerateToken(%+v): got %v, want an error containing %q", tt.req, err, tt.want)
			}
		})
	}
}

func TestGenerateTokenErrors(t *testing.T) {
	ts := newTestServer(t)
	var calls atomic.Int32
	ts.mux.HandleFunc("/v2/tokens", func(w http.ResponseWriter, r *http.Request) {
		switch calls.Add(1) {
		case 1:
			forbidden(w, "auth-method-not-allowed", map[string]any{"authenticationMethodCategory": "Token"})
		case 2:
			writeJSON(w, http.StatusBadRequest, exceptionBody(26001, "Nie można nadać tokenowi uprawnień których nie posiadasz.", "Brakujące uprawnienia: EnforcementOperations."))
		default:
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	req := TokenRequest{Permissions: []Permission{PermissionEnforcementOperations}, Description: "Egzekucja komornicza"}

	_, err := ts.client.GenerateToken(t.Context(), req)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !errors.Is(err, ErrForbidden) || apiErr.ReasonCode != "auth-method-not-allowed" ||
		apiErr.Security["authenticationMethodCategory"] != "Token" || apiErr.Op != "GenerateToken" {
		t.Fatalf("403: got %#v", err)
	}
	_, err = ts.client.GenerateToken(t.Context(), req)
	if !errors.As(err, &apiErr) || !apiErr.HasCode(26001) {
		t.Fatalf("400: got %v, want code 26001", err)
	}
	// A 503 may hide a token that was created and will never be shown again: not retried.
	_, err = ts.client.GenerateToken(t.Context(), req)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable || calls.Load() != 3 || len(ts.recordedWaits()) != 0 {
		t.Fatalf("503: got %v after %d calls and waits %v, want one attempt", err, calls.Load(), ts.recordedWaits())
	}
}

func TestTokenStatus(t *testing.T) {
	ts := newTestServer(t)
	const ref = "20251001-EC-220B0CE000-E228129563-96"
	ts.mux.HandleFunc("/v2/tokens/"+ref, func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		serveFile(t, w, http.StatusOK, "token_status.json")
	})
	got, err := ts.client.TokenStatus(t.Context(), ref)
	if err != nil {
		t.Fatalf("TokenStatus: %v", err)
	}
	stamp := time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC)
	want := &TokenInfo{
		ReferenceNumber: ref,
		Author:          NipSubject("7762811692"),
		Context:         NipContext(testNIP),
		Description:     "Wystawianie i przeglądanie faktur.",
		Permissions:     []Permission{PermissionInvoiceWrite, PermissionInvoiceRead},
		DateCreated:     stamp,
		LastUseDate:     stamp,
		Status:          TokenPending,
		StatusDetails:   []string{},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestTokens(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/tokens", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		testQuery(t, r, "authorIdentifier=5265&authorIdentifierType=Nip&description=faktur&pageSize=20&status=Active&status=Pending")
		testHeader(t, r, "x-continuation-token", "page-2")
		serveFile(t, w, http.StatusOK, "tokens_list.json")
	})
	page, err := ts.client.Tokens(t.Context(), &TokenListOptions{
		Statuses:             []TokenState{TokenActive, TokenPending},
		Description:          "faktur",
		AuthorIdentifier:     "5265",
		AuthorIdentifierType: IdentifierNip,
		PageSize:             20,
		ContinuationToken:    "page-2",
	})
	if err != nil {
		t.Fatalf("Tokens: %v", err)
	}
	if len(page.Tokens) != 1 || !strings.HasPrefix(page.ContinuationToken, "W3sidG9rZW4i") {
		t.Fatalf("got %+v", page)
	}
	tk := page.Tokens[0]
	if tk.ReferenceNumber != "20251001-EC-2DD3AFF000-A6B7F19A95-11" || tk.Status != TokenActive || !tk.LastUseDate.IsZero() ||
		tk.Author != NipSubject(testNIP) || !reflect.DeepEqual(tk.Permissions, []Permission{PermissionInvoiceRead, PermissionInvoiceWrite}) {
		t.Errorf("token %+v", tk)
	}

	for _, bad := range []TokenListOptions{
		{Description: "ab"}, {AuthorIdentifier: "12"}, {AuthorIdentifierType: "InternalId"},
		{PageSize: 5}, {Statuses: []TokenState{"Expired"}},
	} {
		if _, err := ts.client.Tokens(t.Context(), &bad); err == nil {
			t.Errorf("Tokens(%+v): no error", bad)
		}
	}
}

func TestRevokeToken(t *testing.T) {
	ts := newTestServer(t)
	const ref = "20251001-EC-220B0CE000-E228129563-96"
	ts.mux.HandleFunc("/v2/tokens/"+ref, func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodDelete)
		testBearer(t, r, testAccessToken)
		w.WriteHeader(http.StatusNoContent)
	})
	if err := ts.client.RevokeToken(t.Context(), ref); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	if err := ts.client.RevokeToken(t.Context(), ""); err == nil {
		t.Error("RevokeToken(\"\"): no error")
	}
}
