package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
	"github.com/ksef-serverless/ksef-serverless/internal/localrun/localruntest"
	"github.com/ksef-serverless/ksef-serverless/internal/motoserver"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// startStack starts the local pipeline (localrun) with the KSeF emulator, or skips the test
// when a tool is missing (fails with CI set), as cmd/ksef-local's end-to-end tests do. It uses
// the binaries `make build-local` made when KSEF_LOCAL_BIN names them, else builds them.
func startStack(t *testing.T) *localrun.Stack {
	t.Helper()
	root, rie := localruntest.RequireTools(t)
	bin := os.Getenv("KSEF_LOCAL_BIN")
	functions := []string{localrun.FunctionChallenge, localrun.FunctionSend, localrun.FunctionPoll}
	opts := localrun.Options{
		Functions:    map[string]string{},
		Definition:   filepath.Join(root, "statemachine.asl.json"),
		NIPs:         []string{testNIP},
		LocalDir:     filepath.Join(root, "local"),
		RIEBin:       rie,
		RunDir:       t.TempDir(),
		WaitOverride: 100 * time.Millisecond,
	}
	if bin == "" {
		bin = t.TempDir()
		for _, f := range functions {
			if err := localrun.BuildFunction(t.Context(), root, "./functions/"+f, filepath.Join(bin, "lambda", f, "bootstrap")); err != nil {
				t.Fatal(err)
			}
		}
		if err := localrun.BuildCommand(t.Context(), root, "./cmd/ksef-emulator", filepath.Join(bin, "ksef-emulator")); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range functions {
		opts.Functions[f] = filepath.Join(bin, "lambda", f, "bootstrap")
	}
	opts.EmulatorBin = filepath.Join(bin, "ksef-emulator")
	st, err := localrun.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("start the local stack: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("stop the local stack: %v", err)
		}
		if t.Failed() {
			t.Logf("logs of the local stack: %s", st.RunDir())
		}
	})
	return st
}

// stackEnv is a process environment for commands run against the stack's emulator and moto: a
// wait moves the emulator's clock (admin API) instead of sleeping, and the command's clock
// follows it.
type stackEnv struct {
	st   *localrun.Stack
	vars map[string]string
	aws  aws.Config

	mu     sync.Mutex
	offset time.Duration
}

func (e *stackEnv) now() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return time.Now().Add(e.offset)
}

func (e *stackEnv) procEnv() procEnv {
	return procEnv{
		getenv: func(k string) string { return e.vars[k] },
		now:    e.now,
		wait: func(ctx context.Context, d time.Duration) error {
			if err := e.st.EmulatorAdmin(ctx, "POST", "/admin/clock", map[string]string{"advance": d.String()}, nil); err != nil {
				return err
			}
			e.mu.Lock()
			e.offset += d
			e.mu.Unlock()
			return nil
		},
		awsConfig: func(context.Context) (aws.Config, error) { return e.aws, nil },
	}
}

func (e *stackEnv) ksef(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(t.Context(), args, &out, &errOut, e.procEnv())
	t.Logf("ksef %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out.String(), errOut.String())
	if code != exitOK {
		t.Fatalf("ksef %s: exit %d", strings.Join(args, " "), code)
	}
	if strings.Contains(out.String()+errOut.String(), "PRIVATE KEY") || strings.Contains(out.String()+errOut.String(), "eyJ") {
		t.Error("the output holds a secret")
	}
	return out.String(), errOut.String()
}

// TestOnboardingEndToEnd onboards a company with the CLI against the local stack's emulator and
// Secrets Manager, then sends an invoice through the local pipeline, which must log in with the
// KSeF certificate the CLI obtained.
func TestOnboardingEndToEnd(t *testing.T) {
	st := startStack(t)
	e := &stackEnv{st: st, vars: map[string]string{}, aws: motoserver.AWSConfig(t, st.MotoURL())}
	dir := t.TempDir()
	api := []string{"--base-url", st.EmulatorURL(), "--nip", testNIP}

	// A self-signed company seal (KSeF TEST accepts those) for the first XAdES login, then a KSeF
	// certificate obtained with it and stored, with its key, in the credentials secret.
	e.ksef(t, "cert", "self-signed", "--nip", testNIP, "--out", filepath.Join(dir, "seal"))
	stdout, stderr := e.ksef(t, append([]string{"cert", "enroll", "--cert", filepath.Join(dir, "seal.crt"), "--key", filepath.Join(dir, "seal.key"),
		"--name", "ksef-serverless pipeline"}, api...)...)
	want(t, "stdout", stdout, "Stored in Secrets Manager:", "authMethod:    xades")
	want(t, "stderr", stderr, "waiting for certificate enrollment", "logged out")

	raw, err := st.Secret(t.Context(), localrun.CredentialsSecretName(testNIP))
	if err != nil {
		t.Fatal(err)
	}
	creds, err := secrets.ParseCredentials(raw)
	if err != nil {
		t.Fatalf("the pipeline would reject the credentials: %v", err)
	}
	certs, err := parseCertificates([]byte(creds.CertificatePEM))
	if err != nil {
		t.Fatal(err)
	}
	if creds.AuthMethod != secrets.AuthXAdES || bytes.Equal(certs[0].RawIssuer, certs[0].RawSubject) {
		t.Fatalf("stored %s credentials with certificate %s issued by %s, want a KSeF certificate for xades", creds.AuthMethod, dn(certs[0].Subject), dn(certs[0].Issuer))
	}

	before := st.Metrics().KSeFRequests
	res, err := st.SendInvoice(t.Context(), testNIP, "FA_3_Przyklad_1.xml", official.SampleInvoices()["FA_3_Przyklad_1.xml"])
	if err != nil {
		t.Fatal(err)
	}
	if !res.Accepted() {
		t.Fatalf("invoice not accepted: %+v", res.Failure())
	}
	if n := res.KSeFNumber(); !strings.HasPrefix(n, testNIP+"-") {
		t.Errorf("KSeF number %q", n)
	}
	after := st.Metrics().KSeFRequests
	if d := after["POST /auth/xades-signature"] - before["POST /auth/xades-signature"]; d < 1 {
		t.Errorf("the pipeline made %d XAdES logins, want at least 1", d)
	}
	if d := after["POST /auth/ksef-token"] - before["POST /auth/ksef-token"]; d != 0 {
		t.Errorf("the pipeline logged in with the KSeF token %d times, want the certificate only", d)
	}
}
