package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

func TestCertSelfSigned(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	tests := []struct {
		name        string
		args        []string
		wantSubject string
		wantKey     string
	}{
		{"seal", []string{"--nip", testNIP}, "CN=Test Organization 9999999999, organizationIdentifier=VATPL-9999999999, O=Test Organization 9999999999, C=PL", "RSA 2048 bits"},
		{"seal, named, ECDSA", []string{"--nip", testNIP, "--org", "Firma, S.A.", "--key-type", "ecdsa"}, `CN=Firma\, S.A., organizationIdentifier=VATPL-9999999999, O=Firma\, S.A., C=PL`, "ECDSA P-256"},
		{"person by NIP", []string{"--nip", testNIP, "--person", "--given-name", "Anna", "--surname", "Nowak"}, "CN=Anna Nowak, serialNumber=TINPL-9999999999, GN=Anna, SN=Nowak, C=PL", "RSA 2048 bits"},
		{"person by PESEL", []string{"--pesel", testPESEL}, "CN=Jan Testowy, serialNumber=PNOPL-" + testPESEL + ", GN=Jan, SN=Testowy, C=PL", "RSA 2048 bits"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := filepath.Join(h.dir, "c"+string(rune('0'+i)))
			code, stdout, _ := h.ksef(t.Context(), append([]string{"cert", "self-signed", "--out", prefix}, tt.args...)...)
			if code != exitOK {
				t.Fatalf("exit %d", code)
			}
			cert, key, err := ksef.ParsePEM(mustRead(t, prefix+".crt"), mustRead(t, prefix+".key"))
			if err != nil {
				t.Fatalf("written certificate and key: %v", err)
			}
			if got := dn(cert.Subject); got != tt.wantSubject {
				t.Errorf("subject %q, want %q", got, tt.wantSubject)
			}
			if got := keyDescription(key.Public()); got != tt.wantKey {
				t.Errorf("key %s, want %s", got, tt.wantKey)
			}
			if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
				t.Errorf("not self-signed: %v", err)
			}
			if want := testStart.Add(-61 * time.Minute); !cert.NotBefore.Equal(want) {
				t.Errorf("notBefore %v, want %v (now on the command's clock, minus 61 minutes)", cert.NotBefore, want)
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment {
				t.Errorf("key usage %v", cert.KeyUsage)
			}
			for name, perm := range map[string]os.FileMode{prefix + ".key": 0o600, prefix + ".crt": 0o644} {
				if info, err := os.Stat(name); err != nil || info.Mode().Perm() != perm {
					t.Errorf("%s: mode %v (%v), want %v", name, info.Mode().Perm(), err, perm)
				}
			}
			want(t, "stdout", stdout, "wrote "+prefix+".crt", "wrote "+prefix+".key", "subject:      "+tt.wantSubject,
				"issuer:       (self-signed)", "serial:       "+hexSerial(cert), "fingerprint:  "+fingerprintOf(cert), "key:          "+tt.wantKey)
		})
	}

	t.Run("PKCS #12", func(t *testing.T) {
		h.vars[p12PasswordEnv] = "zaq1@WSX"
		prefix := filepath.Join(h.dir, "p")
		if code, _, _ := h.ksef(t.Context(), "cert", "self-signed", "--nip", testNIP, "--format", "p12", "--out", prefix); code != exitOK {
			t.Fatalf("exit %d", code)
		}
		key, cert, err := pkcs12.Decode(mustRead(t, prefix+".p12"), "zaq1@WSX")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := key.(*rsa.PrivateKey); !ok || !strings.Contains(dn(cert.Subject), "VATPL-"+testNIP) {
			t.Errorf("decoded %T, %s", key, dn(cert.Subject))
		}
		if info, err := os.Stat(prefix + ".p12"); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, %v; want 0600", info.Mode(), err)
		}
	})

	t.Run("existing files", func(t *testing.T) {
		prefix := filepath.Join(h.dir, "exists")
		if err := os.WriteFile(prefix+".key", []byte("keep me"), 0o644); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := h.ksef(t.Context(), "cert", "self-signed", "--pesel", testPESEL, "--out", prefix)
		if code != exitFailure || !strings.Contains(stderr, prefix+".key exists (use --force to overwrite it)") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
		if string(mustRead(t, prefix+".key")) != "keep me" {
			t.Error("the existing key was overwritten")
		}
		if code, _, _ := h.ksef(t.Context(), "cert", "self-signed", "--pesel", testPESEL, "--out", prefix, "--force", "--key-type", "ecdsa"); code != exitOK {
			t.Fatalf("--force: exit %d", code)
		}
		_, key, err := ksef.ParsePEM(mustRead(t, prefix+".crt"), mustRead(t, prefix+".key"))
		if _, ok := key.(*ecdsa.PrivateKey); err != nil || !ok {
			t.Errorf("after --force: %T, %v", key, err)
		}
		if info, err := os.Stat(prefix + ".key"); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("overwritten key: mode %v, %v; want 0600", info.Mode(), err)
		}
	})
}

func TestOnboardingUsage(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring; "" means stdout must be empty
		wantStderr string // substring; "" means stderr must be empty
	}{
		{"help lists groups", []string{"help"}, exitOK, "  cert self-signed   ", ""},
		{"group alone", []string{"cert"}, exitUsage, "", "Usage: ksef cert <command>"},
		{"group -h", []string{"token", "-h"}, exitOK, "  generate  generate a KSeF token", ""},
		{"help group", []string{"help", "permissions"}, exitOK, "Usage: ksef permissions <command>", ""},
		{"help subcommand", []string{"help", "cert", "enroll"}, exitOK, "Usage: ksef cert enroll", ""},
		{"help unknown subcommand", []string{"help", "cert", "frob"}, exitUsage, "", `ksef help: unknown command "cert frob"`},
		{"unknown subcommand", []string{"secrets", "frob"}, exitUsage, "", `ksef secrets: unknown command "frob"`},
		{"usage error names the subcommand", []string{"cert", "self-signed"}, exitUsage, "", "ksef cert self-signed: give --nip or --pesel\nRun 'ksef help cert self-signed' for usage."},
		{"self-signed: both", []string{"cert", "self-signed", "--nip", testNIP, "--pesel", testPESEL}, exitUsage, "", "give --nip or --pesel"},
		{"self-signed: --person with PESEL", []string{"cert", "self-signed", "--pesel", testPESEL, "--person"}, exitUsage, "", "--person goes with --nip"},
		{"self-signed: bad NIP", []string{"cert", "self-signed", "--nip", "0123456789"}, exitUsage, "", "NIP is not 10 digits in the NIP format"},
		{"self-signed: bad PESEL", []string{"cert", "self-signed", "--pesel", "80130112345"}, exitUsage, "", "PESEL is not 11 digits in the PESEL format"},
		{"self-signed: org for a person", []string{"cert", "self-signed", "--nip", testNIP, "--person", "--org", "X"}, exitUsage, "", "Organization is for seals only"},
		{"self-signed: format", []string{"cert", "self-signed", "--nip", testNIP, "--format", "der"}, exitUsage, "", "--format must be pem or p12"},
		{"self-signed: p12 without password", []string{"cert", "self-signed", "--nip", testNIP, "--format", "p12"}, exitUsage, "", "set the file's password in KSEF_P12_PASSWORD"},
		{"self-signed: key type", []string{"cert", "self-signed", "--nip", testNIP, "--key-type", "dsa"}, exitUsage, "", `unknown key type "dsa"`},
		{"login: no NIP", []string{"login"}, exitUsage, "", "ksef login: --nip is required"},
		{"login: no credentials", []string{"login", "--nip", testNIP}, exitUsage, "", "no credentials: set the environment variable KSEF_TOKEN"},
		{"login: argument", []string{"login", "--nip", testNIP, "x"}, exitUsage, "", `unexpected argument "x"`},
		{"sign-request: no certificate", []string{"auth", "sign-request", "--nip", testNIP, "--out", "x.xml"}, exitUsage, "", "no certificate: give --cert and --key (PEM) or --p12"},
		{"sign-request: no --out", []string{"auth", "sign-request", "--nip", testNIP}, exitUsage, "", "--out is required"},
		{"sign-request: challenge and API", []string{"auth", "sign-request", "--nip", testNIP, "--out", "x", "--challenge", "c", "--env", "demo"}, exitUsage, "", "--challenge needs no KSeF API"},
		{"secrets show: no NIP", []string{"secrets", "show"}, exitUsage, "", "--nip is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(t.Context(), tt.args, &stdout, &stderr, noEnv(t))
			if code != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d", tt.args, code, tt.wantCode)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", stdout.String(), tt.wantStdout}, {"stderr", stderr.String(), tt.wantStderr}} {
				if (c.want == "") != (c.got == "") || !strings.Contains(c.got, c.want) {
					t.Errorf("run(%q) %s:\n%s\nwant it to contain %q", tt.args, c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestCertEnroll(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	sm := h.withMoto()
	name := "ksef/" + testNIP + "/credentials"
	sealCert, sealKey := h.selfSigned("seal", "--nip", testNIP)
	seal := []string{"--cert", sealCert, "--key", sealKey}
	// A token first: enrolling keeps it and switches the secret to the certificate.
	if code, _, _ := h.ksef(t.Context(), append([]string{"secrets", "put", "--token-from-env"}, h.api()...)...); code != exitOK {
		t.Fatalf("secrets put: exit %d", code)
	}

	out := filepath.Join(h.dir, "ksef-cert")
	code, stdout, stderr := h.ksef(t.Context(), append([]string{"cert", "enroll", "--name", "Pipeline cert", "--out", out}, h.api(seal...)...)...)
	if code != exitOK {
		t.Fatalf("enroll: exit %d", code)
	}
	c, version := storedCredentials(t, sm, name)
	if c.AuthMethod != secrets.AuthXAdES || c.KSeFToken.Reveal() != h.token {
		t.Errorf("stored method %s, token kept %v; want xades and the token kept", c.AuthMethod, c.KSeFToken.Reveal() == h.token)
	}
	cert, key, err := ksef.ParsePEM([]byte(c.CertificatePEM), []byte(c.PrivateKeyPEM.Reveal()))
	if err != nil {
		t.Fatalf("stored certificate and key: %v", err)
	}
	if _, ok := key.(*ecdsa.PrivateKey); !ok || bytes.Equal(cert.RawIssuer, cert.RawSubject) || cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Errorf("stored %T key, certificate issued by %s with key usage %v: want ECDSA and a KSeF Authentication certificate", key, dn(cert.Issuer), cert.KeyUsage)
	}
	if !strings.Contains(dn(cert.Subject), "organizationIdentifier=VATPL-"+testNIP) {
		t.Errorf("subject %s, want the seal's identity", dn(cert.Subject))
	}
	if fileCert, _, err := ksef.ParsePEM(mustRead(t, out+".crt"), mustRead(t, out+".key")); err != nil || !fileCert.Equal(cert) {
		t.Errorf("--out files: %v", err)
	}
	serial := hexSerial(cert)
	want(t, "stdout", stdout, "KSeF certificate "+serial+" (Authentication, \"Pipeline cert\")", "key:          ECDSA P-256",
		"wrote "+out+".crt and "+out+".key", "Stored in Secrets Manager:", "authMethod:    xades", "(version "+version+")")
	want(t, "stderr", stderr, "certificate limits: ", "enrollment data: CN=", "KSeF accepted the enrollment (reference ",
		"waiting for certificate enrollment ", "KSeF issued certificate "+serial, "logged out")

	// The KSeF certificate logs in.
	ksefCert := []string{"--cert", out + ".crt", "--key", out + ".key"}
	code, stdout, _ = h.ksef(t.Context(), append([]string{"login"}, h.api(ksefCert...)...)...)
	if code != exitOK || !strings.Contains(stdout, "XadesSignature") {
		t.Errorf("login with the KSeF certificate: exit %d", code)
	}

	code, stdout, _ = h.ksef(t.Context(), append([]string{"cert", "list", "--json"}, h.api(seal...)...)...)
	if code != exitOK || !strings.Contains(stdout, `"serialNumber":"`+serial+`","name":"Pipeline cert","type":"Authentication","status":"Active"`) {
		t.Errorf("list: exit %d, stdout %q", code, stdout)
	}

	// RSA, not stored.
	code, stdout, _ = h.ksef(t.Context(), append([]string{"cert", "enroll", "--key-type", "rsa", "--no-store", "--out", filepath.Join(h.dir, "rsa")}, h.api(seal...)...)...)
	if code != exitOK || !strings.Contains(stdout, "key:          RSA 2048 bits") || strings.Contains(stdout, "Stored") {
		t.Errorf("enroll --no-store: exit %d, stdout %q", code, stdout)
	}
	// Offline: for QR codes, never stored.
	code, _, _ = h.ksef(t.Context(), append([]string{"cert", "enroll", "--type", "offline", "--name", "QR codes", "--out", filepath.Join(h.dir, "offline")}, h.api(seal...)...)...)
	if code != exitOK {
		t.Errorf("enroll Offline: exit %d", code)
	} else if offline, _, err := ksef.ParsePEM(mustRead(t, filepath.Join(h.dir, "offline.crt")), mustRead(t, filepath.Join(h.dir, "offline.key"))); err != nil || offline.KeyUsage&x509.KeyUsageContentCommitment == 0 {
		t.Errorf("Offline certificate: %v, key usage %v", err, offline.KeyUsage)
	}
	if _, v := storedCredentials(t, sm, name); v != version {
		t.Errorf("--no-store or Offline stored a new version %s", v)
	}

	// Revoked, it no longer logs in.
	code, stdout, _ = h.ksef(t.Context(), append([]string{"cert", "revoke", "--reason", "superseded", serial}, h.api(seal...)...)...)
	if code != exitOK || !strings.Contains(stdout, "Revoked KSeF certificate "+serial+" (Superseded)") {
		t.Errorf("revoke: exit %d, stdout %q", code, stdout)
	}
	code, _, stderr = h.ksef(t.Context(), append([]string{"login"}, h.api(ksefCert...)...)...)
	if code != exitFailure || !strings.Contains(stderr, " failed: 460 ") {
		t.Errorf("login with the revoked certificate: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = h.ksef(t.Context(), append([]string{"cert", "revoke", serial}, h.api(seal...)...)...)
	if code != exitFailure || !strings.Contains(stderr, "25009") {
		t.Errorf("revoking again: exit %d, stderr %q, want KSeF's code 25009", code, stderr)
	}
}

func TestCertEnrollFailures(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	h.withMoto()
	sealCert, sealKey := h.selfSigned("seal", "--nip", testNIP)
	seal := []string{"--cert", sealCert, "--key", sealKey}
	if err := os.WriteFile(filepath.Join(h.dir, "taken.key"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"token login", nil, exitUsage, "no certificate: give --cert and --key (PEM) or --p12"},
		{"no-store without out", append([]string{"--no-store"}, seal...), exitUsage, "--no-store needs --out"},
		{"offline without out", append([]string{"--type", "Offline"}, seal...), exitUsage, "an Offline certificate cannot log in and is not stored: give --out"},
		{"bad type", append([]string{"--type", "Seal"}, seal...), exitUsage, "--type must be Authentication or Offline"},
		{"bad key type", append([]string{"--key-type", "ed25519"}, seal...), exitUsage, "--key-type must be ecdsa or rsa"},
		{"short name", append([]string{"--name", "abc"}, seal...), exitUsage, "--name must have 5 to 100 characters"},
		{"bad valid-from", append([]string{"--valid-from", "tomorrow"}, seal...), exitUsage, "--valid-from: want RFC 3339"},
		{"existing out", append([]string{"--out", filepath.Join(h.dir, "taken")}, seal...), exitFailure, "taken.key exists (use --force to overwrite it)"},
		{"name the client refuses", append([]string{"--name", "no dots. please"}, seal...), exitFailure, "enroll: ksef: Enroll: certificate name must have 5-100 letters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := h.ksef(t.Context(), append([]string{"cert", "enroll"}, h.api(tt.args...)...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			want(t, "stderr", stderr, tt.wantErr)
		})
	}
	if h.called("POST", "/certificates/enrollments", 202) {
		t.Error("a certificate was enrolled")
	}
}
