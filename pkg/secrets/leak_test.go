package secrets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

// TestNothingSecretInLogsOrErrors drives every path that logs or fails, with a debug logger,
// and checks that no token, key or PEM reaches a log line or an error message.
func TestNothingSecretInLogsOrErrors(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sm, c := secretstest.New(), newClock()
	opts := []Option{WithLogger(logger)}
	a := testStore(sm, c, "c-a", 0, opts...)
	b := testStore(sm, c, "c-b", 0.5, opts...)
	ctx := t.Context()
	var errs []error
	record := func(_ any, err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	certPEM, keyPEM := testPEM(t, ksef.KeyRSA)
	_, otherKey := testPEM(t, ksef.KeyRSA)
	session := &OnlineSession{Handle: &ksef.SessionHandle{
		ReferenceNumber: "20260302-SO-0000000000-0000000000-00", FormCode: ksef.FormCodeFA3(),
		Key: ksef.SecretBytes("SECRET-aes-key-0123456789abcdef"), IV: []byte("0123456789abcdef"),
	}}

	// Credentials: good and bad, every field that holds a secret.
	credName := "ksef/" + testNIP + "/credentials"
	for _, doc := range []map[string]any{
		{"nip": testNIP, "environment": "test", "authMethod": "token", "ksefToken": testKSeFToken},
		{"nip": testNIP, "environment": "test", "authMethod": "xades", "certificatePem": certPEM, "privateKeyPem": keyPEM},
		{"nip": testNIP, "environment": "test", "authMethod": "xades", "certificatePem": certPEM, "privateKeyPem": otherKey},
		{"nip": testNIP, "environment": "test", "authMethod": "xades", "certificatePem": keyPEM, "privateKeyPem": keyPEM},
		{"nip": testNIP, "environment": "production", "authMethod": "token", "ksefToken": testKSeFToken},
		{"nip": testNIP, "environment": "test", "authMethod": "token", "ksefToken": testKSeFToken, "extra": "SECRET"},
	} {
		sm.Set(credName, string(credsJSON(t, doc)))
		c.Advance(time.Hour) // past the cache
		record(a.Credentials(ctx, testNIP))
	}
	sm.Set(credName, `{"ksefToken":"SECRET-`+"\x00"+`"}`)
	c.Advance(time.Hour)
	record(a.Credentials(ctx, testNIP))

	// State: login, session, refreshes, a lost race, a rejected refresh, malformed documents.
	record(a.Update(ctx, testNIP, func(st *State) error {
		st.PendingAuth = &PendingAuth{ReferenceNumber: "20260302-AU-0000000000-0000000000-00",
			AuthenticationToken: ksef.Token{Token: "SECRET-auth-token", ValidUntil: c.Now().Add(time.Hour)}, Method: AuthToken}
		return nil
	}))
	record(a.SaveTokens(ctx, testNIP, ksef.AuthTokens{
		AccessToken:  ksef.Token{Token: "SECRET-access-login", ValidUntil: c.Now().Add(tokenLife)},
		RefreshToken: ksef.Token{Token: "SECRET-refresh-login", ValidUntil: c.Now().Add(refreshLife)},
	}))
	record(a.Update(ctx, testNIP, func(st *State) error { st.Session = session; return nil }))
	c.Advance(tokenLife - margin/2)
	r := &refresher{now: c.Now, life: tokenLife}
	sm.BeforePut = func(string) error {
		sm.BeforePut = nil
		record(b.AccessToken(ctx, testNIP, r)) // b wins the race; a adopts b's token
		return nil
	}
	record(a.AccessToken(ctx, testNIP, r))
	record(a.Update(ctx, testNIP, func(*State) error { return fmt.Errorf("handler failed: %w", ErrNoChange) }))
	record(a.Update(ctx, testNIP, func(*State) error { return errors.New("fn failed") }))

	c.Advance(tokenLife)
	r.err = &ksef.APIError{Op: "RefreshAccessToken", StatusCode: http.StatusUnauthorized}
	record(a.AccessToken(ctx, testNIP, r))
	record(b.AccessToken(ctx, testNIP, r))

	for _, doc := range []string{
		`{"accessToken":{"token":"SECRET-x` + "\x01" + `"}}`,
		`{"accessToken":{"token":1234567890123}}`,
		`{"refreshToken":{"token":"SECRET","validUntil":"SECRET-time"}}`,
		`{"session":{"handle":{"key":"SECRET*"}}}`,
	} {
		sm.Set(stateName, doc)
		record(a.LatestState(ctx, testNIP))
		record(a.AccessToken(ctx, testNIP, r))
	}
	sm.Set(stateName, `{}`)
	record(a.AccessToken(ctx, testNIP, r))
	record(a.AccessToken(ctx, testNIP, &refresher{now: c.Now, err: context.DeadlineExceeded}))

	if len(errs) < 10 || !strings.Contains(logs.String(), `"msg":"secrets: access token refreshed"`) {
		t.Fatalf("the scenario did not run as intended: %d errors, logs:\n%s", len(errs), logs.String())
	}
	secrets := []string{"SECRET", "1234567890123", "-----BEGIN", testKSeFToken, "U0VDUkVU" /* Base64 of SECRET */}
	for _, p := range []string{keyPEM, otherKey, certPEM} {
		secrets = append(secrets, strings.Split(p, "\n")[1:3]...) // Base64 lines of the PEM bodies
	}
	for _, err := range errs {
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("error %q contains %q", err, s)
			}
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("log line %s contains %q", line, s)
			}
		}
	}
	t.Logf("%d errors and %d log lines checked", len(errs), strings.Count(logs.String(), "\n"))
}
