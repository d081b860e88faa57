package ksef_test

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

func ExampleNewClient() {
	c, err := ksef.NewClient(
		ksef.WithEnvironment(ksef.Prod),
		ksef.WithAccessToken(ksef.StaticAccessToken("eyJ...access-token")),
		ksef.WithRetryPolicy(ksef.RetryPolicy{MaxAttempts: 3, HandBack: true}),
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.BaseURL())
	fmt.Println(c.QRBaseURL())
	// Output:
	// https://api.ksef.mf.gov.pl/v2
	// https://qr.ksef.mf.gov.pl
}

func ExampleClient_AuthenticateWithKSeFToken() {
	srv := newFakeKSeF()
	defer srv.Close()
	ctx := context.Background()
	c, err := ksef.NewClient(ksef.WithBaseURL(srv.URL + "/v2"))
	if err != nil {
		log.Fatal(err)
	}

	ch, err := c.Challenge(ctx)
	if err != nil {
		log.Fatal(err)
	}
	init, err := c.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{
		Challenge: ch,
		Context:   ksef.NipContext("5265877635"),
		Token:     "20251010-EC-1DCE3E3000-12ECB5B36E-45|nip-5265877635|919f...",
	})
	if err != nil {
		log.Fatal(err)
	}
	// One status call; a state machine would wait between calls while the code is 100.
	st, err := c.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("login", init.ReferenceNumber, "status", st.Status.Code)
	if st.Status.Code != 200 {
		return
	}
	tokens, err := c.RedeemTokens(ctx, init.AuthenticationToken.Token)
	if err != nil {
		log.Fatal(err)
	}
	// Tokens never print: store them with Reveal in a secret store.
	fmt.Println("access token", tokens.AccessToken.Token, "valid until", tokens.AccessToken.ValidUntil.Format(time.RFC3339))
	// Output:
	// login 20250514-AU-2DFC46C000-3AC6D5877F-D4 status 200
	// access token [REDACTED] valid until 2026-12-01T10:15:00Z
}

func ExampleClient_SendInvoice() {
	srv := newFakeKSeF()
	defer srv.Close()
	ctx := context.Background()
	c, err := ksef.NewClient(
		ksef.WithBaseURL(srv.URL+"/v2"),
		ksef.WithAccessToken(ksef.StaticAccessToken("eyJ...access-token")),
	)
	if err != nil {
		log.Fatal(err)
	}

	session, err := c.OpenOnlineSession(ctx, ksef.FormCodeFA3())
	if err != nil {
		log.Fatal(err)
	}
	invoice := []byte(`<?xml version="1.0" encoding="UTF-8"?><Faktura xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/">...</Faktura>`)
	sent, err := c.SendInvoice(ctx, session, invoice, nil)
	if err != nil {
		log.Fatal(err)
	}
	st, err := c.InvoiceStatus(ctx, session.ReferenceNumber, sent.ReferenceNumber)
	if err != nil {
		log.Fatal(err)
	}
	if err := c.CloseOnlineSession(ctx, session.ReferenceNumber); err != nil {
		log.Fatal(err)
	}
	fmt.Println("session", session.ReferenceNumber)
	fmt.Println("invoice", sent.ReferenceNumber, "size", sent.InvoiceSize, "encrypted", sent.EncryptedInvoiceSize)
	fmt.Println("status", st.Status.Code, "KSeF number", st.KSeFNumber)
	// Output:
	// session 20250625-SO-2C3E6C8000-B675CF5D68-07
	// invoice 20250625-EE-319D7EE000-B67F415CDC-2C size 109 encrypted 112
	// status 200 KSeF number 5265877635-20250626-010080DD2B5E-26
}

func ExampleClient_Download() {
	srv := newFakeKSeF()
	defer srv.Close()
	ctx := context.Background()
	c, err := ksef.NewClient(
		ksef.WithBaseURL(srv.URL+"/v2"),
		ksef.WithAccessToken(ksef.StaticAccessToken("eyJ...access-token")),
	)
	if err != nil {
		log.Fatal(err)
	}
	st, err := c.InvoiceStatus(ctx, "20250625-SO-2C3E6C8000-B675CF5D68-07", "20250625-EE-319D7EE000-B67F415CDC-2C")
	if err != nil {
		log.Fatal(err)
	}
	// The pre-signed link needs no token; the client checks the body against x-ms-meta-hash.
	upo, err := c.Download(ctx, st.UPODownloadURL)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(upo.Content), upo.HashVerified)
	// Output:
	// <Potwierdzenie>UPO</Potwierdzenie> true
}

func ExampleAPIError() {
	srv := newFakeKSeF()
	defer srv.Close()
	// HandBack: never wait in-process; let the caller (a Step Functions Wait state) wait.
	c, err := ksef.NewClient(
		ksef.WithBaseURL(srv.URL+"/v2"),
		ksef.WithAccessToken(ksef.StaticAccessToken("eyJ...access-token")),
		ksef.WithRetryPolicy(ksef.RetryPolicy{HandBack: true}),
	)
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.RateLimits(context.Background())
	var apiErr *ksef.APIError
	if errors.Is(err, ksef.ErrRateLimited) && errors.As(err, &apiErr) {
		fmt.Println("rate limited, retry after", apiErr.RetryAfter, "temporary:", apiErr.Temporary())
	}
	fmt.Println(err)
	// Output:
	// rate limited, retry after 30s temporary: true
	// ksef: RateLimits: HTTP 429 Too Many Requests: Przekroczono limit 20 żądań na minutę.; retry after 30s
}

// newFakeKSeF is a minimal stand-in for KSeF that answers with recorded replies.
func newFakeKSeF() *httptest.Server {
	certificate := func(file, usage string) map[string]any {
		data, err := os.ReadFile(file)
		if err != nil {
			log.Fatal(err)
		}
		block, _ := pem.Decode(data)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			log.Fatal(err)
		}
		certID, keyID := sha256.Sum256(cert.Raw), sha256.Sum256(cert.RawSubjectPublicKeyInfo)
		return map[string]any{
			"certificate": base64.StdEncoding.EncodeToString(cert.Raw), "certificateId": base64.StdEncoding.EncodeToString(certID[:]),
			"publicKeyId": base64.StdEncoding.EncodeToString(keyID[:]), "usage": []string{usage},
			"validFrom": "2026-01-01T00:00:00+00:00", "validTo": "2050-01-01T00:00:00+00:00",
		}
	}
	reply := func(status int, v any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	upo := []byte("<Potwierdzenie>UPO</Potwierdzenie>")
	upoHash := sha256.Sum256(upo)
	mux.Handle("GET /v2/security/public-key-certificates", reply(200, []any{
		certificate("testdata/mf_token.crt", "KsefTokenEncryption"),
		certificate("testdata/mf_symmetric.crt", "SymmetricKeyEncryption"),
	}))
	mux.Handle("POST /v2/auth/challenge", reply(200, map[string]any{
		"challenge": "20250514-CR-226FB7B000-3ACF9BE4C0-10", "timestamp": "2025-07-11T12:23:56.0154302+00:00",
		"timestampMs": 1752236636015, "clientIp": "127.0.0.1"}))
	mux.Handle("POST /v2/auth/ksef-token", reply(202, map[string]any{
		"referenceNumber":     "20250514-AU-2DFC46C000-3AC6D5877F-D4",
		"authenticationToken": map[string]any{"token": "eyJ...operation-token", "validUntil": "2026-12-01T10:45:00Z"}}))
	mux.Handle("GET /v2/auth/{ref}", reply(200, map[string]any{
		"startDate": "2026-12-01T10:00:00Z", "authenticationMethod": "Token",
		"authenticationMethodInfo": map[string]any{"category": "Token", "code": "token", "displayName": "Token KSeF"},
		"status":                   map[string]any{"code": 200, "description": "Uwierzytelnianie zakończone sukcesem"}}))
	mux.Handle("POST /v2/auth/token/redeem", reply(200, map[string]any{
		"accessToken":  map[string]any{"token": "eyJ...access-token", "validUntil": "2026-12-01T10:15:00Z"},
		"refreshToken": map[string]any{"token": "eyJ...refresh-token", "validUntil": "2026-12-08T10:00:00Z"}}))
	mux.Handle("POST /v2/sessions/online", reply(201, map[string]any{
		"referenceNumber": "20250625-SO-2C3E6C8000-B675CF5D68-07", "validUntil": "2026-12-01T22:00:00+00:00"}))
	mux.Handle("POST /v2/sessions/online/{ref}/invoices", reply(202, map[string]any{
		"referenceNumber": "20250625-EE-319D7EE000-B67F415CDC-2C"}))
	mux.Handle("GET /v2/sessions/{ref}/invoices/{inv}", reply(200, map[string]any{
		"ordinalNumber": 1, "referenceNumber": "20250625-EE-319D7EE000-B67F415CDC-2C",
		"ksefNumber": "5265877635-20250626-010080DD2B5E-26", "invoiceHash": "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA=",
		"invoicingDate": "2026-12-01T10:00:01.1234567+00:00", "upoDownloadUrl": srv.URL + "/storage/upo.xml?sig=abc%3D",
		"status": map[string]any{"code": 200, "description": "Sukces"}}))
	mux.HandleFunc("POST /v2/sessions/online/{ref}/close", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /storage/upo.xml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("x-ms-meta-hash", base64.StdEncoding.EncodeToString(upoHash[:]))
		_, _ = w.Write(upo)
	})
	mux.HandleFunc("GET /v2/rate-limits", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		reply(429, map[string]any{"status": map[string]any{"code": 429, "description": "Too Many Requests",
			"details": []string{"Przekroczono limit 20 żądań na minutę."}}})(w, r)
	})
	return srv
}
