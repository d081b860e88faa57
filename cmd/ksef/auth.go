package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// p12PasswordEnv is the environment variable holding the password of a --p12 file; like the
// KSeF token it is never a flag.
const p12PasswordEnv = "KSEF_P12_PASSWORD"

// defaultOnboardingTimeout bounds a whole onboarding command: login, the operation and its wait.
const defaultOnboardingTimeout = 5 * time.Minute

// apiFlags select the KSeF API: an environment or a base URL.
type apiFlags struct {
	envName string
	baseURL string
	env     ksef.Environment // set by resolve
}

func (a *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.envName, "env", string(ksef.Test), "`NAME` of the KSeF environment: test, demo or prod")
	fs.StringVar(&a.baseURL, "base-url", "", "API base `URL` ending in /v2 (a local emulator, say), instead of --env")
}

// resolve checks the flags after parsing.
func (a *apiFlags) resolve(fs *flag.FlagSet) error {
	if a.baseURL != "" && flagSet(fs, "env") {
		return usagef("give --env or --base-url, not both")
	}
	env, err := ksef.ParseEnvironment(a.envName)
	if err != nil {
		return usagef("--env: %s", plain(err))
	}
	a.env = env
	return nil
}

// newClient builds a KSeF client for the API the flags select. tokens may be nil for calls that
// need no access token.
func (x *cli) newClient(a *apiFlags, verbose bool, tokens ksef.AccessTokenSource) (*ksef.Client, error) {
	logger := slog.New(slog.DiscardHandler)
	if verbose {
		logger = slog.New(slog.NewTextHandler(x.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts := []ksef.Option{
		ksef.WithLogger(logger),
		ksef.WithClock(x.env.now),
		ksef.WithWait(x.env.wait),
		ksef.WithUserAgent(userAgent),
		ksef.WithEnvironment(a.env),
	}
	if tokens != nil {
		opts = append(opts, ksef.WithAccessToken(tokens))
	}
	if a.baseURL != "" {
		opts = append(opts, ksef.WithBaseURL(a.baseURL))
	}
	if x.env.httpClient != nil {
		opts = append(opts, ksef.WithHTTPClient(x.env.httpClient))
	}
	c, err := ksef.NewClient(opts...)
	if err != nil {
		return nil, usagef("%s", plain(err))
	}
	return c, nil
}

// describeAPI names the API a client talks to, for progress messages.
func describeAPI(a *apiFlags, c *ksef.Client) string {
	if a.baseURL != "" {
		return "KSeF API at " + c.BaseURL()
	}
	return fmt.Sprintf("KSeF %s environment (%s)", a.env, c.BaseURL())
}

// progressf writes a progress message to stderr.
func (x *cli) progressf(format string, args ...any) {
	fmt.Fprintf(x.stderr, "ksef: "+format+"\n", args...)
}

// certFlags name a certificate and its key: PEM files or a PKCS #12 file.
type certFlags struct {
	certFile, keyFile, p12File string
}

func (f *certFlags) register(fs *flag.FlagSet, purpose string) {
	fs.StringVar(&f.certFile, "cert", "", "certificate `FILE` (PEM) "+purpose)
	fs.StringVar(&f.keyFile, "key", "", "private key `FILE` of --cert (PEM, unencrypted)")
	fs.StringVar(&f.p12File, "p12", "", "PKCS #12 `FILE` with the certificate and key, instead of --cert and --key; password in "+p12PasswordEnv)
}

// given reports whether a certificate was named.
func (f *certFlags) given() bool { return f.certFile != "" || f.keyFile != "" || f.p12File != "" }

// load reads the certificate and key, or, if none was named and tokenOK, the KSeF token from
// the environment. Problems are usage errors: nothing was tried yet.
func (f *certFlags) load(getenv func(string) string, tokenOK bool) (*credentials, error) {
	switch {
	case f.p12File != "" && (f.certFile != "" || f.keyFile != ""):
		return nil, usagef("give --p12 or --cert and --key, not both")
	case f.p12File != "":
		return loadP12(getenv, f.p12File)
	case f.certFile == "" && f.keyFile == "" && !tokenOK:
		return nil, usagef("no certificate: give --cert and --key (PEM) or --p12")
	}
	return loadCredentials(getenv, f.certFile, f.keyFile)
}

// loadP12 reads a certificate, its key and any further certificates from a PKCS #12 file whose
// password is in the environment variable KSEF_P12_PASSWORD (unset: the empty password).
func loadP12(getenv func(string) string, file string) (*credentials, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, usagef("read --p12: %v", err)
	}
	password := getenv(p12PasswordEnv)
	key, cert, chain, err := pkcs12.DecodeChain(data, password)
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword) && password == "":
		return nil, usagef("--p12 %s: the file has a password: set %s", file, p12PasswordEnv)
	case errors.Is(err, pkcs12.ErrIncorrectPassword):
		return nil, usagef("--p12 %s: wrong password in %s", file, p12PasswordEnv)
	case err != nil:
		// The package's errors describe the structure, never the key.
		return nil, usagef("--p12 %s: %v", file, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, usagef("--p12 %s: unsupported private key type %T (want RSA or ECDSA)", file, key)
	}
	switch signer.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey:
	default:
		return nil, usagef("--p12 %s: unsupported private key type %T (want RSA or ECDSA)", file, key)
	}
	// EncodePEM checks that the key is the certificate's.
	if _, _, err := ksef.EncodePEM(cert, signer); err != nil {
		return nil, usagef("--p12 %s: %s", file, plain(err))
	}
	return &credentials{cert: cert, key: signer, chain: chain}, nil
}

// loginFlags are the flags of the commands that log in to KSeF.
type loginFlags struct {
	api     apiFlags
	nip     string
	cert    certFlags
	timeout time.Duration
	verbose bool
}

func (l *loginFlags) register(fs *flag.FlagSet) {
	l.api.register(fs)
	fs.StringVar(&l.nip, "nip", "", "`NIP` of the context (the company) to log in to")
	l.cert.register(fs, "for an XAdES login instead of the KSeF token in "+tokenEnv)
	fs.DurationVar(&l.timeout, "timeout", defaultOnboardingTimeout, "give up after `D`: login, the operation and its wait together")
	fs.BoolVar(&l.verbose, "verbose", false, "debug log of every HTTP request on stderr (tokens are never logged)")
}

// check validates the flags after parsing.
func (l *loginFlags) check(fs *flag.FlagSet) error {
	switch {
	case l.nip == "":
		return usagef("--nip is required")
	case !ksef.ValidNIP(l.nip):
		return usagef("--nip %q is not a NIP (10 digits)", l.nip)
	case l.timeout <= 0:
		return usagef("--timeout must be positive")
	}
	return l.api.resolve(fs)
}

// session is a login in progress for one command.
type session struct {
	x      *cli
	client *ksef.Client
	tokens *tokenSource
	pace   *pacer
	flags  *loginFlags
	cred   *credentials
	login  *loginResult
}

// loggedIn logs in as the flags say, runs fn and logs out again, also after an error, at
// --timeout or on Ctrl-C. needCert makes a certificate mandatory (KSeF issues tokens and
// certificates only to a subject that logged in with a signature).
func (x *cli) loggedIn(ctx context.Context, l *loginFlags, needCert bool, fn func(ctx context.Context, s *session) error) error {
	tokens := &tokenSource{now: x.env.now}
	client, err := x.newClient(&l.api, l.verbose, tokens)
	if err != nil {
		return err
	}
	tokens.client = client
	cred, err := l.cert.load(x.env.getenv, !needCert)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	s := &session{
		x:      x,
		client: client,
		tokens: tokens,
		pace:   &pacer{now: x.env.now, wait: x.env.wait, deadline: x.env.now().Add(l.timeout)},
		flags:  l,
		cred:   cred,
	}
	x.progressf("%s", describeAPI(&l.api, client))
	x.progressf("logging in to context NIP %s (%s)", l.nip, cred.method())
	s.login, err = authenticate(ctx, client, l.nip, cred, s.pace, x.progressf)
	if err != nil {
		return ctxError(fmt.Errorf("log in: %w", err), l.timeout)
	}
	tokens.set(s.login.tokens)
	err = fn(ctx, s)
	s.logout(ctx)
	return ctxError(err, l.timeout)
}

// ctxError turns the errors of an interrupted or timed-out command into plain messages.
func ctxError(err error, timeout time.Duration) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("interrupted: %w", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, errTimedOut):
		return fmt.Errorf("gave up after --timeout %v: %w", timeout, err)
	}
	return err
}

// logout revokes the authentication session, with a context of its own so that it happens after
// Ctrl-C or --timeout too.
func (s *session) logout(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := s.client.RevokeCurrentSession(ctx, s.tokens.refreshToken()); err != nil {
		s.x.progressf("warning: could not log out: %s", plain(err))
		return
	}
	s.x.progressf("logged out")
}

// poll calls check until it reports done, waiting between calls 1 s, 2 s, 4 s ... at most
// 10 s, within the command's deadline. what names the operation in progress messages, which
// are written when the wait starts and every 30 seconds of waiting.
func (s *session) poll(ctx context.Context, what string, check func(ctx context.Context) (done bool, status string, err error)) error {
	delay := statusFirstDelay
	start := s.pace.now()
	lastReport := time.Time{}
	for {
		done, status, err := check(ctx)
		if err != nil || done {
			return err
		}
		if now := s.pace.now(); lastReport.IsZero() || now.Sub(lastReport) >= 30*time.Second {
			s.x.progressf("waiting for %s (%s, %v so far)", what, status, now.Sub(start).Round(time.Second))
			lastReport = now
		}
		if err := s.pace.sleep(ctx, delay); err != nil {
			return fmt.Errorf("wait for %s: %w", what, err)
		}
		delay = min(2*delay, statusMaxDelay)
	}
}

// loginUsage is the description of the login flags shared by every command that logs in.
const loginUsage = `Login: in the context of --nip, with the KSeF token in the environment variable KSEF_TOKEN,
or with an XAdES signature by --cert and --key (PEM) or --p12 (PKCS #12, password in
KSEF_P12_PASSWORD). ksef logs out again at the end, also after an error or Ctrl-C.
`

func loginCmdUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef login [--env test|demo|prod | --base-url URL] --nip NIP
                  [--cert FILE --key FILE | --p12 FILE] [--json] [--timeout D] [--verbose]

Log in to KSeF in the context of --nip, wait for KSeF to confirm the login, redeem the tokens,
show what KSeF recognised, and log out again: a check that the credentials work before they are
stored for the pipeline. No token is printed.

`+loginUsage+`
Flags:
`)
		printFlags(w, fs)
	}
}

// loginReport is what ksef login prints.
type loginReport struct {
	NIP                    string    `json:"nip"`
	ReferenceNumber        string    `json:"referenceNumber"`
	MethodCategory         string    `json:"methodCategory,omitempty"`
	MethodCode             string    `json:"methodCode,omitempty"`
	MethodDisplayName      string    `json:"methodDisplayName,omitempty"`
	Certificate            string    `json:"certificate,omitempty"` // subject of the certificate used
	AccessTokenValidUntil  time.Time `json:"accessTokenValidUntil"`
	RefreshTokenValidUntil time.Time `json:"refreshTokenValidUntil"`
}

// runLogin is ksef login.
func runLogin(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef login", flag.ContinueOnError)
	var l loginFlags
	l.register(fs)
	jsonOut := fs.Bool("json", false, "print the result as a JSON object")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, loginCmdUsage(fs))
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("unexpected argument %q", rest[0])
	}
	if err := l.check(fs); err != nil {
		return err
	}
	return x.loggedIn(ctx, &l, false, func(ctx context.Context, s *session) error {
		r := loginReport{
			NIP:                    l.nip,
			ReferenceNumber:        s.login.referenceNumber,
			MethodCategory:         s.login.status.MethodCategory,
			MethodCode:             s.login.status.MethodCode,
			MethodDisplayName:      s.login.status.MethodDisplayName,
			AccessTokenValidUntil:  s.login.tokens.AccessToken.ValidUntil,
			RefreshTokenValidUntil: s.login.tokens.RefreshToken.ValidUntil,
		}
		if s.cred.cert != nil {
			r.Certificate = dn(s.cred.cert.Subject)
		}
		if *jsonOut {
			return writeJSON(x.stdout, r)
		}
		method := r.MethodCategory
		if r.MethodCode != "" {
			method += " (" + r.MethodCode
			if r.MethodDisplayName != "" {
				method += ": " + r.MethodDisplayName
			}
			method += ")"
		}
		fmt.Fprintf(x.stdout, "Logged in to context NIP %s\n", r.NIP)
		fmt.Fprintf(x.stdout, "  authentication:       %s\n", r.ReferenceNumber)
		fmt.Fprintf(x.stdout, "  method:               %s\n", method)
		if r.Certificate != "" {
			fmt.Fprintf(x.stdout, "  certificate:          %s\n", r.Certificate)
		}
		fmt.Fprintf(x.stdout, "  access token until:   %s\n", r.AccessTokenValidUntil.UTC().Format(time.RFC3339))
		fmt.Fprintf(x.stdout, "  refresh token until:  %s\n", r.RefreshTokenValidUntil.UTC().Format(time.RFC3339))
		return nil
	})
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// writeJSONLines writes each row as one line of JSON.
func writeJSONLines[T any](w io.Writer, rows []T) error {
	for _, r := range rows {
		if err := writeJSON(w, r); err != nil {
			return err
		}
	}
	return nil
}

func signRequestUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef auth sign-request --nip NIP --out FILE (--cert FILE --key FILE | --p12 FILE)
                  [--challenge C | --env test|demo|prod | --base-url URL] [--fingerprint]

Write an AuthTokenRequest document (KSeF's XAdES login document, namespace
http://ksef.mf.gov.pl/auth/token/2.0) for the context --nip, signed with an enveloped XAdES-BES
signature exactly as ksef login signs it, so that it can be checked by an outside verifier
(xmlsec1, the EU DSS demo) or submitted by another tool within the challenge's 10 minutes.

The challenge is fetched from KSeF (POST /auth/challenge, no login needed) unless --challenge
gives one. The signing time is one minute before now, as the official signer sets it.

Flags:
`)
		printFlags(w, fs)
	}
}

// runSignRequest is ksef auth sign-request.
func runSignRequest(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef auth sign-request", flag.ContinueOnError)
	var api apiFlags
	var cf certFlags
	api.register(fs)
	cf.register(fs, "to sign with")
	nip := fs.String("nip", "", "`NIP` of the context the document logs in to")
	out := fs.String("out", "", "`FILE` to write the signed document to")
	challenge := fs.String("challenge", "", "use challenge `C` instead of fetching one from KSeF")
	fingerprint := fs.Bool("fingerprint", false, "identify the signer by the certificate's SHA-256 fingerprint (certificateFingerprint) instead of its subject")
	verbose := fs.Bool("verbose", false, "debug log of every HTTP request on stderr")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, signRequestUsage(fs))
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usagef("unexpected argument %q", rest[0])
	case *nip == "":
		return usagef("--nip is required")
	case !ksef.ValidNIP(*nip):
		return usagef("--nip %q is not a NIP (10 digits)", *nip)
	case *out == "":
		return usagef("--out is required")
	case *challenge != "" && (api.baseURL != "" || flagSet(fs, "env")):
		return usagef("--challenge needs no KSeF API: drop --env and --base-url")
	}
	if err := api.resolve(fs); err != nil {
		return err
	}
	cred, err := cf.load(x.env.getenv, false)
	if err != nil {
		return err
	}
	ch := *challenge
	if ch == "" {
		client, err := x.newClient(&api, *verbose, nil)
		if err != nil {
			return err
		}
		x.progressf("fetching a challenge from %s", describeAPI(&api, client))
		got, err := client.Challenge(ctx)
		if err != nil {
			return fmt.Errorf("get challenge: %w", err)
		}
		ch = got.Challenge
		x.progressf("challenge %s, valid for 10 minutes from %s", ch, got.Timestamp.UTC().Format(time.RFC3339))
	}
	subject := ksef.SubjectCertificate
	if *fingerprint {
		subject = ksef.SubjectFingerprint
	}
	doc, err := ksef.BuildAuthTokenRequest(ksef.AuthTokenRequest{Challenge: ch, Context: ksef.NipContext(*nip), SubjectIdentifierType: subject})
	if err != nil {
		return usagef("%s", plain(err))
	}
	signingTime := x.env.now().Add(-time.Minute)
	if signingTime.Before(cred.cert.NotBefore) {
		signingTime = cred.cert.NotBefore // a certificate made a moment ago
	}
	signed, err := ksef.SignXAdES(doc, cred.key, cred.cert, signingTime)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	if err := os.WriteFile(*out, signed, 0o644); err != nil {
		return fmt.Errorf("write --out: %w", err)
	}
	fmt.Fprintf(x.stdout, "%s: AuthTokenRequest for context NIP %s, challenge %s, %s\n", *out, *nip, ch, subject)
	fmt.Fprintf(x.stdout, "  signed by:     %s\n", dn(cred.cert.Subject))
	fmt.Fprintf(x.stdout, "  fingerprint:   %s (SHA-256)\n", fingerprintOf(cred.cert))
	fmt.Fprintf(x.stdout, "  signing time:  %s\n", signingTime.UTC().Format(time.RFC3339))
	return nil
}

// fingerprintOf is the SHA-256 fingerprint of a certificate in upper-case hex, as KSeF writes
// it for certificateFingerprint identities.
func fingerprintOf(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return fmt.Sprintf("%X", sum[:])
}

// attributeNames are the short names of the distinguished-name attributes that KSeF reads.
var attributeNames = map[string]string{
	"2.5.4.3":              "CN",
	"2.5.4.4":              "SN", // surname
	"2.5.4.5":              "serialNumber",
	"2.5.4.6":              "C",
	"2.5.4.7":              "L",
	"2.5.4.8":              "ST",
	"2.5.4.10":             "O",
	"2.5.4.11":             "OU",
	"2.5.4.42":             "GN", // givenName
	"2.5.4.45":             "uniqueIdentifier",
	"2.5.4.97":             "organizationIdentifier",
	"1.2.840.113549.1.9.1": "emailAddress",
}

// dn formats a distinguished name the RFC 4514 way, most specific attribute first, naming the
// attributes of qualified certificates (organizationIdentifier, GN, SN) that the standard
// library prints as hex.
func dn(name pkix.Name) string {
	var b strings.Builder
	for i := len(name.Names) - 1; i >= 0; i-- {
		a := name.Names[i]
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		key, ok := attributeNames[a.Type.String()]
		if !ok {
			key = a.Type.String()
		}
		b.WriteString(key)
		b.WriteString("=")
		b.WriteString(dnEscaper.Replace(fmt.Sprint(a.Value)))
	}
	return b.String()
}

var dnEscaper = strings.NewReplacer(`\`, `\\`, ",", `\,`, "+", `\+`, `"`, `\"`, "<", `\<`, ">", `\>`, ";", `\;`)

// hexSerial is a certificate's serial number in upper-case hex.
func hexSerial(cert *x509.Certificate) string {
	b := cert.SerialNumber.Bytes()
	if len(b) == 0 {
		return "00"
	}
	return fmt.Sprintf("%X", b)
}
