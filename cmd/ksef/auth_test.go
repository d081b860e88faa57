package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// ksefTokenPattern matches KSeF tokens as KSeF and the emulator make them.
var ksefTokenPattern = regexp.MustCompile(`\d{8}-EC-[0-9A-F-]+\|[^|\s]+\|[0-9a-f]+`)

// testPESEL is a PESEL in the OpenAPI format (born 1980-01-01).
const testPESEL = "80010112345"

// onboard is the send harness (an emulator whose clock moves when a command waits) plus an AWS
// configuration for the commands that use Secrets Manager.
type onboard struct {
	*harness
	awsConfig func(context.Context) (aws.Config, error)
}

func newOnboard(t *testing.T, cfg emulator.Config) *onboard {
	return &onboard{harness: newHarness(t, cfg)}
}

// procEnv is the harness's process environment with the AWS configuration.
func (h *onboard) procEnv() procEnv {
	env := h.env()
	env.awsConfig = h.awsConfig
	return env
}

// ksef runs "ksef args..." in the harness's environment, logs the output and checks that no
// secret reached it: the KSeF token, a JWT, a private key.
func (h *onboard) ksef(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	code = run(ctx, args, &out, &errOut, h.procEnv())
	stdout, stderr = out.String(), errOut.String()
	// ksef token generate --print writes a token on stdout: keep it out of the test log.
	h.t.Logf("ksef %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, ksefTokenPattern.ReplaceAllString(stdout, "[KSeF token]"), stderr)
	checkNoSecrets(h.t, h.token, stderr)
	if !slices.Contains(args, "--print") {
		checkNoSecrets(h.t, h.token, stdout)
		if ksefTokenPattern.MatchString(stdout) {
			h.t.Error("stdout holds a KSeF token")
		}
	}
	if strings.Contains(stdout+stderr, "PRIVATE KEY") {
		h.t.Error("output contains a private key")
	}
	return code, stdout, stderr
}

// api returns the flags that aim a command at the harness's emulator in the context testNIP.
func (h *onboard) api(args ...string) []string {
	return append([]string{"--base-url", h.srv.URL, "--nip", testNIP}, args...)
}

// selfSigned makes a test certificate with ksef cert self-signed and returns the files written.
func (h *onboard) selfSigned(prefix string, args ...string) (certFile, keyFile string) {
	h.t.Helper()
	out := filepath.Join(h.dir, prefix)
	code, _, _ := h.ksef(h.t.Context(), append([]string{"cert", "self-signed", "--out", out}, args...)...)
	if code != exitOK {
		h.t.Fatalf("cert self-signed %q: exit %d", args, code)
	}
	return out + ".crt", out + ".key"
}

// want fails unless text contains every one of wants.
func want(t *testing.T, what, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func TestLogin(t *testing.T) {
	h := newOnboard(t, emulator.Config{Grants: map[string][]string{testNIP: {testPESEL}}})
	sealCert, sealKey := h.selfSigned("seal", "--nip", testNIP)
	personCert, personKey := h.selfSigned("person", "--nip", testNIP, "--person", "--key-type", "ecdsa")
	peselCert, peselKey := h.selfSigned("pesel", "--pesel", testPESEL)
	h.vars[p12PasswordEnv] = "p12 secret"
	h.ksef(t.Context(), "cert", "self-signed", "--nip", testNIP, "--format", "p12", "--out", filepath.Join(h.dir, "seal"))
	p12 := filepath.Join(h.dir, "seal.p12")

	tests := []struct {
		name       string
		args       []string
		wantMethod string
		wantCert   string
	}{
		{"KSeF token", nil, "Token", ""},
		{"company seal, PEM", []string{"--cert", sealCert, "--key", sealKey}, "XadesSignature", "organizationIdentifier=VATPL-" + testNIP},
		{"person by NIP, ECDSA", []string{"--cert", personCert, "--key", personKey}, "XadesSignature", "serialNumber=TINPL-" + testNIP},
		{"person by PESEL with a grant", []string{"--cert", peselCert, "--key", peselKey}, "XadesSignature", "serialNumber=PNOPL-" + testPESEL},
		{"PKCS #12", []string{"--p12", p12}, "XadesSignature", "organizationIdentifier=VATPL-" + testNIP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := h.ksef(t.Context(), append([]string{"login", "--json"}, h.api(tt.args...)...)...)
			if code != exitOK {
				t.Fatalf("exit %d, want 0", code)
			}
			var r loginReport
			if err := json.Unmarshal([]byte(stdout), &r); err != nil {
				t.Fatalf("stdout is not JSON: %v", err)
			}
			if r.NIP != testNIP || !strings.Contains(r.ReferenceNumber, "-AU-") || r.MethodCategory != tt.wantMethod {
				t.Errorf("got %+v, want NIP %s, an AU reference, method %s", r, testNIP, tt.wantMethod)
			}
			if !strings.Contains(r.Certificate, tt.wantCert) {
				t.Errorf("certificate %q, want it to contain %q", r.Certificate, tt.wantCert)
			}
			if !r.AccessTokenValidUntil.After(testStart) || !r.RefreshTokenValidUntil.After(r.AccessTokenValidUntil) {
				t.Errorf("token validity %v / %v", r.AccessTokenValidUntil, r.RefreshTokenValidUntil)
			}
			want(t, "stderr", stderr, "logging in to context NIP "+testNIP, "logged in (authentication "+r.ReferenceNumber+")", "logged out")
		})
	}
	if !h.called("DELETE", "/auth/sessions/current", 204) {
		t.Errorf("no logout; calls %q", h.http.calls())
	}

	t.Run("text", func(t *testing.T) {
		code, stdout, _ := h.ksef(t.Context(), append([]string{"login"}, h.api("--cert", sealCert, "--key", sealKey)...)...)
		if code != exitOK {
			t.Fatalf("exit %d", code)
		}
		want(t, "stdout", stdout, "Logged in to context NIP "+testNIP, "method:               XadesSignature (", "certificate:          ")
	})
}

func TestLoginFailures(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	peselCert, peselKey := h.selfSigned("pesel", "--pesel", testPESEL)
	sealCert, sealKey := h.selfSigned("seal", "--nip", testNIP)
	h.vars[p12PasswordEnv] = "right"
	h.ksef(t.Context(), "cert", "self-signed", "--nip", testNIP, "--format", "p12", "--out", filepath.Join(h.dir, "s"))
	p12 := filepath.Join(h.dir, "s.p12")

	tests := []struct {
		name     string
		vars     map[string]string
		args     []string
		wantCode int
		wantErr  []string
	}{
		{"no permission in the context", nil, []string{"--cert", peselCert, "--key", peselKey}, exitFailure,
			[]string{"ksef login: log in: authentication ", " failed: 415 "}},
		{"wrong KSeF token", map[string]string{tokenEnv: "20260901-EC-0000000000-0000000000-00|nip-9999999999|00"}, nil, exitFailure,
			[]string{" failed: 450 "}},
		{"wrong PKCS #12 password", map[string]string{p12PasswordEnv: "wrong"}, []string{"--p12", p12}, exitUsage,
			[]string{"wrong password in KSEF_P12_PASSWORD"}},
		{"no PKCS #12 password", map[string]string{p12PasswordEnv: ""}, []string{"--p12", p12}, exitUsage,
			[]string{"the file has a password: set KSEF_P12_PASSWORD"}},
		{"PKCS #12 and PEM", nil, []string{"--p12", p12, "--cert", sealCert, "--key", sealKey}, exitUsage,
			[]string{"give --p12 or --cert and --key, not both"}},
		{"not a PKCS #12 file", nil, []string{"--p12", sealCert}, exitUsage, []string{"--p12 " + sealCert + ": "}},
		{"key of another certificate", nil, []string{"--cert", sealCert, "--key", peselKey}, exitUsage,
			[]string{"private key does not match the certificate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := map[string]string{}
			for k, v := range tt.vars {
				saved[k] = h.vars[k]
				h.vars[k] = v
			}
			defer func() {
				for k, v := range saved {
					h.vars[k] = v
				}
			}()
			code, _, stderr := h.ksef(t.Context(), append([]string{"login"}, h.api(tt.args...)...)...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d", code, tt.wantCode)
			}
			want(t, "stderr", stderr, tt.wantErr...)
		})
	}

	t.Run("timeout", func(t *testing.T) {
		h := newOnboard(t, emulator.Config{AuthDelay: time.Hour})
		code, _, stderr := h.ksef(t.Context(), append([]string{"login"}, h.api("--timeout", "10s")...)...)
		if code != exitFailure {
			t.Errorf("exit %d, want %d", code, exitFailure)
		}
		want(t, "stderr", stderr, "gave up after --timeout 10s", "waiting for KSeF to confirm authentication")
		var total time.Duration
		for _, d := range h.waits {
			total += d
		}
		if total > 10*time.Second {
			t.Errorf("waited %v in all, more than --timeout", total)
		}
	})
}

func TestSignRequest(t *testing.T) {
	h := newOnboard(t, emulator.Config{})
	certFile, keyFile := h.selfSigned("seal", "--nip", testNIP)
	out := filepath.Join(h.dir, "auth-request.xml")
	code, stdout, stderr := h.ksef(t.Context(), "auth", "sign-request", "--base-url", h.srv.URL, "--nip", testNIP,
		"--cert", certFile, "--key", keyFile, "--out", out)
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	want(t, "stdout", stdout, out+": AuthTokenRequest for context NIP "+testNIP, "certificateSubject", "signed by:     ")
	want(t, "stderr", stderr, "fetching a challenge from KSeF API at "+h.srv.URL)
	signed, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want(t, "document", string(signed), `xmlns="`+ksef.AuthTokenNamespace+`"`, "<Nip>"+testNIP+"</Nip>", "<SubjectIdentifierType>certificateSubject</SubjectIdentifierType>")

	t.Run("xmlsec1 verifies it", func(t *testing.T) {
		bin, err := exec.LookPath("xmlsec1")
		if err != nil {
			if os.Getenv("CI") != "" { // .ci/run installs it: the check must not stop running there
				t.Fatalf("CI is set but xmlsec1 is not installed: %v", err)
			}
			t.Skip("xmlsec1 is not installed (apt-get install xmlsec1)")
		}
		cmd := exec.CommandContext(t.Context(), bin, "--verify", "--id-attr:Id", "SignedProperties",
			"--enabled-reference-uris", "empty,same-doc",
			"--verification-time", testStart.UTC().Format(time.DateTime),
			"--trusted-pem", certFile, out)
		cmd.Env = append(os.Environ(), "TZ=UTC")
		output, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("xmlsec1 rejects the signature: %s", output)
		} else if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("KSeF accepts it", func(t *testing.T) {
		c, err := ksef.NewClient(ksef.WithBaseURL(h.srv.URL), ksef.WithHTTPClient(h.srv.Client()), ksef.WithClock(h.srv.Clock.Now))
		if err != nil {
			t.Fatal(err)
		}
		init, err := c.AuthenticateWithXAdES(t.Context(), signed, false)
		if err != nil {
			t.Fatalf("submit: %v", err)
		}
		h.srv.Clock.Advance(emulator.DefaultAuthDelay)
		st, err := c.AuthStatus(t.Context(), init.ReferenceNumber, init.AuthenticationToken.Token)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status.Code != 200 {
			t.Errorf("authentication status %s, want 200", describeStatus(st.Status))
		}
	})

	t.Run("given challenge, fingerprint, no network", func(t *testing.T) {
		const challenge = "20260901-CR-0123456789-ABCDEF0123-45"
		env := noEnv(t)
		env.now = h.srv.Clock.Now
		var stdout, stderr bytes.Buffer
		out := filepath.Join(h.dir, "offline.xml")
		code := run(t.Context(), []string{"auth", "sign-request", "--nip", testNIP, "--cert", certFile, "--key", keyFile,
			"--out", out, "--challenge", challenge, "--fingerprint"}, &stdout, &stderr, env)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		doc, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "document", string(doc), "<Challenge>"+challenge+"</Challenge>", "<SubjectIdentifierType>certificateFingerprint</SubjectIdentifierType>")
	})
}
