package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

func TestTokenLifecycle(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sm := h.withMoto()
	name := "ksef/" + testNIP + "/credentials"
	certFile, keyFile := h.selfSigned("seal", "--nip", testNIP)
	seal := []string{"--cert", certFile, "--key", keyFile}

	// generate: the token is stored, never printed.
	code, stdout, stderr := h.ksef(t.Context(), append(append([]string{"token", "generate", "--permission", "InvoiceWrite,invoiceread"}, h.api()...), seal...)...)
	if code != exitOK {
		t.Fatalf("generate: exit %d", code)
	}
	c, version := storedCredentials(t, sm, name)
	generated := c.KSeFToken.Reveal()
	ref, _, _ := strings.Cut(generated, "|")
	if c.AuthMethod != secrets.AuthToken || !strings.Contains(ref, "-EC-") {
		t.Fatalf("stored %s credentials with a token of reference %q, want a KSeF token", c.AuthMethod, ref)
	}
	checkNoSecrets(t, generated, stdout+stderr)
	want(t, "stdout", stdout, "KSeF token "+ref+", permissions InvoiceWrite,InvoiceRead, context NIP "+testNIP,
		"Stored in Secrets Manager:", "ksefToken:     "+ref[:4]+"***")
	want(t, "stderr", stderr, "KSeF generated token "+ref, "waiting for token "+ref+" (Pending", "token "+ref+" is active", "logged out")

	// The token works.
	h.vars[tokenEnv] = generated
	if code, _, _ := h.ksef(t.Context(), append([]string{"login"}, h.api()...)...); code != exitOK {
		t.Errorf("login with the generated token: exit %d", code)
	}

	code, stdout, _ = h.ksef(t.Context(), append([]string{"token", "status", "--json", ref}, h.api(seal...)...)...)
	var st tokenRow
	if code != exitOK || json.Unmarshal([]byte(stdout), &st) != nil {
		t.Fatalf("status: exit %d, stdout %q", code, stdout)
	}
	if st.Status != "Active" || strings.Join(st.Permissions, ",") != "InvoiceWrite,InvoiceRead" || st.Description != defaultTokenDescription || st.Context != "Nip "+testNIP {
		t.Errorf("status %+v", st)
	}

	code, stdout, _ = h.ksef(t.Context(), append([]string{"token", "list"}, h.api(seal...)...)...)
	if code != exitOK || !strings.Contains(stdout, ref+"  Active") {
		t.Errorf("list: exit %d, want a line for %s, Active:\n%s", code, ref, stdout)
	}

	// --print: on stdout, nothing stored.
	code, stdout, _ = h.ksef(t.Context(), append([]string{"token", "generate", "--print", "--description", "printed token"}, h.api(seal...)...)...)
	if code != exitOK || !strings.Contains(stdout, "-EC-") || strings.Count(strings.TrimSpace(stdout), "\n") != 0 {
		t.Errorf("--print: exit %d, stdout of %d lines, want the token alone", code, strings.Count(stdout, "\n"))
	}
	if _, v := storedCredentials(t, sm, name); v != version {
		t.Errorf("--print stored a new version %s", v)
	}

	// revoke: the token stops working.
	code, stdout, _ = h.ksef(t.Context(), append([]string{"token", "revoke", ref}, h.api(seal...)...)...)
	if code != exitOK || !strings.Contains(stdout, "Revoked KSeF token "+ref) {
		t.Errorf("revoke: exit %d, stdout %q", code, stdout)
	}
	code, _, stderr = h.ksef(t.Context(), append([]string{"login"}, h.api()...)...)
	if code != exitFailure || !strings.Contains(stderr, " failed: 450 ") {
		t.Errorf("login with the revoked token: exit %d, stderr %q", code, stderr)
	}
	code, stdout, _ = h.ksef(t.Context(), append([]string{"token", "list", "--status", "revoked", "--json"}, h.api(seal...)...)...)
	if code != exitOK || !strings.Contains(stdout, `"referenceNumber":"`+ref+`","status":"Revoked"`) {
		t.Errorf("list --status revoked: exit %d, stdout %q", code, stdout)
	}
}

func TestTokenGenerateFailures(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sm := h.withMoto()
	certFile, keyFile := h.selfSigned("seal", "--nip", testNIP)
	if _, err := sm.CreateSecret(t.Context(), secretInput("other-nip", `{"nip": "5265877635", "environment": "test"}`)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"token login", nil, exitUsage, "no certificate: give --cert and --key (PEM) or --p12"},
		{"bad permission", []string{"--cert", certFile, "--key", keyFile, "--permission", "Owner"}, exitUsage, `unknown permission "Owner"`},
		{"short description", []string{"--cert", certFile, "--key", keyFile, "--description", "abc"}, exitUsage, "--description must have 5 to 256 characters"},
		{"print and secret", []string{"--cert", certFile, "--key", keyFile, "--print", "--secret-id", "x"}, exitUsage, "--print stores nothing"},
		// The secret cannot take the token: the command stops before a token exists.
		{"unusable secret", []string{"--cert", certFile, "--key", keyFile, "--secret-id", "other-nip"}, exitFailure, "holds the credentials of NIP 5265877635"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := h.ksef(t.Context(), append([]string{"token", "generate"}, h.api(tt.args...)...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			want(t, "stderr", stderr, tt.wantErr)
		})
	}
	if h.called("POST", "/tokens", 202) {
		t.Error("a token was generated")
	}
}
