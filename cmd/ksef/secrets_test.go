package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ksef-serverless/ksef-serverless/internal/motoserver"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

// withMoto points the harness's AWS configuration at a fresh moto server and returns a Secrets
// Manager client for checking what the commands stored.
func (h *onboard) withMoto() *secretsmanager.Client {
	h.t.Helper()
	srv := motoserver.Start(h.t)
	srv.Reset(h.t)
	cfg := motoserver.AWSConfig(h.t, srv.Endpoint)
	h.awsConfig = func(context.Context) (aws.Config, error) { return cfg, nil }
	return secretsmanager.NewFromConfig(cfg)
}

// storedCredentials reads and validates a credentials secret as the pipeline does.
func storedCredentials(t *testing.T, sm *secretsmanager.Client, name string) (*secrets.Credentials, string) {
	t.Helper()
	out, err := sm.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	c, err := secrets.ParseCredentials([]byte(aws.ToString(out.SecretString)))
	if err != nil {
		t.Fatalf("the pipeline would reject %s: %v", name, err)
	}
	return c, aws.ToString(out.VersionId)
}

func TestSecretsPutShow(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sm := h.withMoto()
	name := "ksef/" + testNIP + "/credentials"
	certFile, keyFile := h.selfSigned("seal", "--nip", testNIP)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := ksef.ParsePEM(certPEM, mustRead(t, keyFile))
	if err != nil {
		t.Fatal(err)
	}

	// A KSeF token, checked by a login first: the secret is created.
	code, stdout, _ := h.ksef(t.Context(), append([]string{"secrets", "put", "--token-from-env", "--check"}, h.api()...)...)
	if code != exitOK {
		t.Fatalf("put token: exit %d", code)
	}
	c, v1 := storedCredentials(t, sm, name)
	if c.AuthMethod != secrets.AuthToken || c.KSeFToken.Reveal() != h.token || c.NIP != testNIP || c.BaseURL != h.srv.URL || c.Environment != ksef.Test {
		t.Errorf("stored %+v, want the token for %s at %s", c, testNIP, h.srv.URL)
	}
	want(t, "stdout", stdout, "Stored in Secrets Manager:", "secret:        "+name+" (version "+v1+")",
		"authMethod:    token", "ksefToken:     "+h.token[:4]+"***", "valid:         yes")

	// A certificate: merged, the token kept, authMethod switched.
	code, stdout, _ = h.ksef(t.Context(), append([]string{"secrets", "put", "--cert", certFile, "--key", keyFile}, h.api()...)...)
	if code != exitOK {
		t.Fatalf("put certificate: exit %d", code)
	}
	c, v2 := storedCredentials(t, sm, name)
	if v2 == v1 || c.AuthMethod != secrets.AuthXAdES || c.KSeFToken.Reveal() != h.token {
		t.Errorf("stored version %s, method %s, token kept %v; want a new version, xades, the token kept", v2, c.AuthMethod, c.KSeFToken.Reveal() == h.token)
	}
	if got, _, err := ksef.ParsePEM([]byte(c.CertificatePEM), []byte(c.PrivateKeyPEM.Reveal())); err != nil || !got.Equal(cert) {
		t.Errorf("stored certificate and key: %v", err)
	}
	want(t, "stdout", stdout, "authMethod:    xades", "(kept; not used while authMethod is xades)",
		"subject:     "+dn(cert.Subject), "serial:      "+hexSerial(cert), "fingerprint: "+fingerprintOf(cert),
		"privateKeyPem: *** (RSA 2048 bits, matches the certificate)")

	// show: the same, masked.
	code, stdout, _ = h.ksef(t.Context(), "secrets", "show", "--nip", testNIP)
	if code != exitOK {
		t.Fatalf("show: exit %d", code)
	}
	want(t, "stdout", stdout, "Credentials:", "(version "+v2+")", "ksefToken:     "+h.token[:4]+"***", "issuer:      "+dn(cert.Issuer))
	if strings.Contains(stdout, "BEGIN CERTIFICATE") {
		t.Error("show prints the certificate's PEM")
	}
	code, stdout, _ = h.ksef(t.Context(), "secrets", "show", "--nip", testNIP, "--json")
	if code != exitOK {
		t.Fatalf("show --json: exit %d", code)
	}
	var m maskedCredentials
	if err := json.Unmarshal([]byte(stdout), &m); err != nil {
		t.Fatalf("show --json: %v", err)
	}
	if !m.Valid || m.AuthMethod != "xades" || m.Certificate == nil || m.Certificate.Fingerprint != fingerprintOf(cert) || m.VersionID != v2 {
		t.Errorf("show --json: %+v", m)
	}

	// A PKCS #12 file: its certificate and key replace the PEM ones.
	h.vars[p12PasswordEnv] = "p12-password"
	h.ksef(t.Context(), "cert", "self-signed", "--nip", testNIP, "--person", "--key-type", "ecdsa", "--format", "p12", "--out", filepath.Join(h.dir, "person"))
	code, _, _ = h.ksef(t.Context(), append([]string{"secrets", "put", "--p12", filepath.Join(h.dir, "person.p12")}, h.api()...)...)
	if code != exitOK {
		t.Fatalf("put PKCS #12: exit %d", code)
	}
	c, _ = storedCredentials(t, sm, name)
	if p12Cert, _, err := ksef.ParsePEM([]byte(c.CertificatePEM), []byte(c.PrivateKeyPEM.Reveal())); err != nil || !strings.Contains(dn(p12Cert.Subject), "TINPL-"+testNIP) {
		t.Errorf("stored from PKCS #12: %v", err)
	}

	// Another environment: the old credentials go, with a note.
	code, _, stderr := h.ksef(t.Context(), "secrets", "put", "--token-from-env", "--nip", testNIP, "--env", "demo")
	if code != exitOK {
		t.Fatalf("put for demo: exit %d", code)
	}
	want(t, "stderr", stderr, "held credentials for "+h.srv.URL+"; replacing them with credentials for the demo environment")
	c, _ = storedCredentials(t, sm, name)
	if c.Environment != ksef.Demo || c.BaseURL != "" || c.CertificatePEM != "" || c.AuthMethod != secrets.AuthToken {
		t.Errorf("stored %+v, want only the token, for demo", c)
	}
}

func TestSecretsPutFailures(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sm := h.withMoto()
	put := func(name, value string) {
		t.Helper()
		_, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
		if err != nil {
			t.Fatal(err)
		}
	}
	put("garbage", `{"nip": "9999999999", "ksefTokne": "x"}`)
	put("other-nip", `{"nip": "5265877635", "environment": "test"}`)
	certFile, keyFile := h.selfSigned("seal", "--nip", testNIP)

	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"nothing to store", h.api(), exitUsage, "give --token-from-env, or --cert and --key, or --p12"},
		{"token and certificate", h.api("--token-from-env", "--cert", certFile, "--key", keyFile), exitUsage, "not both"},
		{"unknown field", h.api("--token-from-env", "--secret-id", "garbage"), exitFailure, `secret garbage does not hold credentials (unknown field "ksefTokne"): replace it with --replace`},
		{"another NIP", h.api("--token-from-env", "--secret-id", "other-nip"), exitFailure, "secret other-nip holds the credentials of NIP 5265877635, not " + testNIP},
		{"failed check", append(h.api("--cert", certFile, "--key", keyFile, "--check"), "--nip", "5265877635"), exitFailure, "check (nothing stored): log in: authentication "},
		{"prod needs a NIP check digit", []string{"--token-from-env", "--nip", "1234567890", "--env", "prod"}, exitFailure, "not storing invalid credentials in ksef/1234567890/credentials: invalid credentials: nip: check digit does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := h.ksef(t.Context(), append([]string{"secrets", "put"}, tt.args...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			want(t, "stderr", stderr, tt.wantErr)
		})
	}
	if _, err := sm.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String("ksef/5265877635/credentials")}); err == nil {
		t.Error("a failed --check stored the credentials")
	}

	// --replace overwrites what cannot be merged.
	code, _, _ := h.ksef(t.Context(), append([]string{"secrets", "put", "--replace", "--secret-id", "garbage", "--token-from-env"}, h.api()...)...)
	if code != exitOK {
		t.Fatalf("--replace: exit %d", code)
	}
	if c, _ := storedCredentials(t, sm, "garbage"); c.KSeFToken.Reveal() != h.token {
		t.Error("--replace did not store the token")
	}

	code, _, stderr := h.ksef(t.Context(), "secrets", "show", "--nip", "5265877635")
	if code != exitFailure || !strings.Contains(stderr, "secret ksef/5265877635/credentials does not exist or has no value") {
		t.Errorf("show of a missing secret: exit %d, stderr %q", code, stderr)
	}
}

// TestSecretCreatedByStack starts every command that stores credentials from the secret as
// template.yaml creates it, holding only the NIP: the pipeline refuses that with a message
// saying what to do, and each command fills it in as a new version of the existing secret.
func TestSecretCreatedByStack(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sm := h.withMoto()
	name := "ksef/" + testNIP + "/credentials"
	stub := `{"nip":"` + testNIP + `"}`
	if _, err := sm.CreateSecret(t.Context(), secretInput(name, stub)); err != nil {
		t.Fatal(err)
	}
	const problem = "the secret holds no KSeF token or certificate yet, only the NIP: store credentials in it with ksef secrets put, ksef token generate or ksef cert enroll"
	if _, err := secrets.ParseCredentials([]byte(stub)); err == nil || !strings.Contains(err.Error(), problem) {
		t.Errorf("the pipeline reading the stack's secret: %v, want %q", err, problem)
	}
	code, stdout, _ := h.ksef(t.Context(), "secrets", "show", "--nip", testNIP)
	if code != exitOK {
		t.Fatalf("show: exit %d", code)
	}
	want(t, "stdout", stdout, "nip:           "+testNIP, "valid:         NO: "+problem)

	sealCert, sealKey := h.selfSigned("seal", "--nip", testNIP)
	seal := []string{"--cert", sealCert, "--key", sealKey}
	for _, tt := range []struct {
		name   string
		args   []string
		method secrets.AuthMethod
	}{
		{"secrets put", append([]string{"secrets", "put", "--token-from-env"}, h.api()...), secrets.AuthToken},
		{"token generate", append([]string{"token", "generate"}, h.api(seal...)...), secrets.AuthToken},
		{"cert enroll", append([]string{"cert", "enroll", "--name", "Pipeline cert"}, h.api(seal...)...), secrets.AuthXAdES},
	} {
		t.Run(tt.name, func(t *testing.T) {
			put, err := sm.PutSecretValue(t.Context(), &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(stub)})
			if err != nil {
				t.Fatal(err)
			}
			code, stdout, _ := h.ksef(t.Context(), tt.args...)
			if code != exitOK {
				t.Fatalf("exit %d", code)
			}
			c, version := storedCredentials(t, sm, name)
			if version == aws.ToString(put.VersionId) || c.NIP != testNIP || c.AuthMethod != tt.method || c.Environment != ksef.Test || c.BaseURL != h.srv.URL {
				t.Errorf("stored version %s (the stack's was %s): %s credentials for %s in %s at %s; want a new version, %s, for %s in test at %s",
					version, aws.ToString(put.VersionId), c.AuthMethod, c.NIP, c.Environment, c.BaseURL, tt.method, testNIP, h.srv.URL)
			}
			want(t, "stdout", stdout, "Stored in Secrets Manager:", "valid:         yes")
		})
	}
}

// TestCredStoreConflict checks the compare-and-swap: a secret changed by someone else after
// ksef read it is not overwritten.
func TestCredStoreConflict(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sm := h.withMoto()
	x := &cli{stdout: &strings.Builder{}, stderr: &strings.Builder{}, env: h.procEnv()}
	update := func(token string) credentialUpdate {
		return credentialUpdate{env: ksef.Test, apply: func(c *secrets.Credentials) {
			c.AuthMethod, c.KSeFToken = secrets.AuthToken, ksef.Secret(token)
		}}
	}
	for _, exists := range []bool{false, true} {
		var writers [3]*credStore
		for i := range writers {
			s, err := x.openStore(t.Context(), &storeFlags{}, testNIP, false)
			if err != nil {
				t.Fatal(err)
			}
			if s.exists != exists {
				t.Fatalf("exists %v, want %v", s.exists, exists)
			}
			writers[i] = s
		}
		a, b, c := writers[0], writers[1], writers[2]
		if err := a.save(t.Context(), update("token-a")); err != nil {
			t.Fatalf("first writer: %v", err)
		}
		// The same change from a writer that read the same version is no conflict (a repeated
		// write, as the SDK's retries make); another change is.
		if err := b.save(t.Context(), update("token-a")); err != nil {
			t.Errorf("repeated write (secret existed: %v): %v", exists, err)
		}
		err := c.save(t.Context(), update("token-b"))
		if err == nil || !strings.Contains(err.Error(), "changed while ksef was working: nothing stored") {
			t.Errorf("second writer (secret existed: %v): %v, want a conflict", exists, err)
		}
		got, version := storedCredentials(t, sm, "ksef/"+testNIP+"/credentials")
		if version != a.version || got.KSeFToken.Reveal() != "token-a" {
			t.Errorf("current version %s, want the first writer's %s", version, a.version)
		}
	}
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func secretInput(name, value string) *secretsmanager.CreateSecretInput {
	return &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}
}
