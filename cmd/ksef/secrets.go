package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// secretsAPI is the part of the Secrets Manager client the commands use; *secretsmanager.Client
// satisfies it.
type secretsAPI interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
}

var _ secretsAPI = (*secretsmanager.Client)(nil)

// secretsClient builds a Secrets Manager client from procEnv.awsConfig or, without one, the
// SDK's default configuration (environment variables such as AWS_PROFILE, AWS_REGION and
// AWS_ENDPOINT_URL, then the shared files).
func (x *cli) secretsClient(ctx context.Context) (secretsAPI, error) {
	load := x.env.awsConfig
	if load == nil {
		load = func(ctx context.Context) (aws.Config, error) { return config.LoadDefaultConfig(ctx) }
	}
	cfg, err := load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	return secretsmanager.NewFromConfig(cfg), nil
}

// storeFlags name the credentials secret.
type storeFlags struct {
	secretID string
	kmsKeyID string
}

func (f *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.secretID, "secret-id", "", "name or ARN of the credentials `SECRET` (default ksef/<NIP>/credentials)")
	fs.StringVar(&f.kmsKeyID, "kms-key-id", "", "KMS `KEY` to encrypt the secret with when ksef creates it (default: aws/secretsmanager)")
}

// name returns the secret's name or ARN.
func (f *storeFlags) name(nip string) string {
	if f.secretID != "" {
		return f.secretID
	}
	return "ksef/" + nip + "/credentials"
}

// credStore is one credentials secret, read before a command changes anything, so that a
// command fails before it creates a credential it could not store.
type credStore struct {
	x       *cli
	api     secretsAPI
	name    string
	kmsKey  string
	nip     string
	exists  bool                 // the secret exists (it may have no value)
	version string               // VersionId of the value read; "" if none
	cur     *secrets.Credentials // the value read, not validated; nil if none
}

// openStore reads the credentials secret of nip. A missing secret is fine (the first write
// creates it); unreadable content, or credentials of another NIP, are errors unless replace is
// set, when the content is ignored.
func (x *cli) openStore(ctx context.Context, f *storeFlags, nip string, replace bool) (*credStore, error) {
	api, err := x.secretsClient(ctx)
	if err != nil {
		return nil, err
	}
	s := &credStore{x: x, api: api, name: f.name(nip), kmsKey: f.kmsKeyID, nip: nip}
	out, err := api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(s.name)})
	switch {
	case isAWSError[*types.ResourceNotFoundException](err, "ResourceNotFoundException"):
		// No secret, or one without a current value: CreateSecret or PutSecretValue makes it.
		return s, nil
	case err != nil:
		return nil, fmt.Errorf("read secret %s: %w", s.name, err)
	}
	s.exists = true
	s.version = aws.ToString(out.VersionId)
	if replace {
		return s, nil
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("secret %s holds binary data, not credentials: replace it with --replace", s.name)
	}
	c, err := decodeCredentials([]byte(*out.SecretString))
	if err != nil {
		return nil, fmt.Errorf("secret %s does not hold credentials (%w): replace it with --replace", s.name, err)
	}
	if c.NIP != "" && c.NIP != nip {
		return nil, fmt.Errorf("secret %s holds the credentials of NIP %s, not %s", s.name, c.NIP, nip)
	}
	s.cur = c
	return s, nil
}

// decodeCredentials decodes a credentials document without validating it: a secret that is
// being filled in may lack fields. Unknown fields are rejected as the pipeline rejects them.
// Errors never quote the document.
func decodeCredentials(data []byte) (*secrets.Credentials, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	c := &secrets.Credentials{}
	if err := dec.Decode(c); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("not JSON: syntax error at byte %d", se.Offset)
		case errors.As(err, &te):
			return nil, fmt.Errorf("field %q has the wrong type", te.Field)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, errors.New(strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil, errors.New("not a JSON object")
	}
	return c, nil
}

// credentialUpdate is what a command stores: the KSeF API the credential belongs to and a
// function that puts the credential into the document and sets authMethod.
type credentialUpdate struct {
	env     ksef.Environment
	baseURL string
	apply   func(c *secrets.Credentials)
}

// merge returns the document to store: the current one with the update applied, or a new one
// when there is none or it belongs to another KSeF API (its credentials would not work there).
func (s *credStore) merge(u credentialUpdate) *secrets.Credentials {
	next := &secrets.Credentials{NIP: s.nip, Environment: u.env, BaseURL: u.baseURL}
	if c := s.cur; c != nil {
		if c.Environment == u.env && c.BaseURL == u.baseURL {
			cp := *c
			next = &cp
			next.NIP = s.nip
		} else if c.KSeFToken != "" || c.CertificatePEM != "" {
			s.x.progressf("secret %s held credentials for %s; replacing them with credentials for %s",
				s.name, apiName(c.Environment, c.BaseURL), apiName(u.env, u.baseURL))
		}
	}
	u.apply(next)
	return next
}

// apiName names a KSeF API for messages.
func apiName(env ksef.Environment, baseURL string) string {
	if baseURL != "" {
		return baseURL
	}
	if env == "" {
		return "no environment"
	}
	return "the " + string(env) + " environment"
}

// write validates c as the pipeline will (secrets.ParseCredentials) and stores it as the version
// that follows the one read, with compare-and-swap: the version's ClientRequestToken derives
// from the VersionId read, so if someone else wrote the secret in between, this write fails
// instead of overwriting their change. It returns the new VersionId.
func (s *credStore) write(ctx context.Context, c *secrets.Credentials) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("encode credentials: %w", err)
	}
	if _, err := secrets.ParseCredentials(body); err != nil {
		return "", fmt.Errorf("not storing invalid credentials in %s: %w", s.name, err)
	}
	token := versionToken(s.name, s.version)
	if !s.exists {
		in := &secretsmanager.CreateSecretInput{
			Name:               aws.String(s.name),
			ClientRequestToken: aws.String(token),
			SecretString:       aws.String(string(body)),
			Description:        aws.String("KSeF credentials of NIP " + s.nip + " for ksef-serverless (written by the ksef CLI)"),
		}
		if s.kmsKey != "" {
			in.KmsKeyId = aws.String(s.kmsKey)
		}
		out, err := s.api.CreateSecret(ctx, in)
		if err == nil {
			s.exists, s.version, s.cur = true, versionOr(out.VersionId, token), c
			return s.version, nil
		}
		if !isAWSError[*types.ResourceExistsException](err, "ResourceExistsException") {
			return "", fmt.Errorf("create secret %s: %w", s.name, err)
		}
		// It exists without a value (made by infrastructure code), or someone has just created
		// it: then the version below exists already and the write fails as it should.
	}
	out, err := s.api.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(s.name),
		ClientRequestToken: aws.String(token),
		SecretString:       aws.String(string(body)),
	})
	switch {
	case isAWSError[*types.ResourceExistsException](err, "ResourceExistsException"):
		return "", fmt.Errorf("secret %s changed while ksef was working: nothing stored, run the command again", s.name)
	case err != nil:
		return "", fmt.Errorf("put secret value %s: %w", s.name, err)
	}
	s.exists, s.version, s.cur = true, versionOr(out.VersionId, token), c
	return s.version, nil
}

// save merges the update into the secret, writes it and prints what was stored, masked.
func (s *credStore) save(ctx context.Context, u credentialUpdate) error {
	c := s.merge(u)
	version, err := s.write(ctx, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(s.x.stdout, "Stored in Secrets Manager:\n")
	printMasked(s.x.stdout, maskCredentials(s.name, version, c, s.x.env.now()))
	return nil
}

// saveNew saves a new credential that exists nowhere else (a KSeF token just generated, a key
// and its certificate just enrolled): it saves even after --timeout or Ctrl-C, and if saving
// fails it calls revoke, unless nil (a copy exists elsewhere), rather than leave a live
// credential nobody holds. what names the credential in the error ("token REF").
func (s *credStore) saveNew(ctx context.Context, u credentialUpdate, what string, revoke func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	err := s.save(ctx, u)
	if err == nil || revoke == nil {
		return err
	}
	if rerr := revoke(ctx); rerr != nil {
		return fmt.Errorf("%w; revoking the unstored %s failed too: %w", err, what, rerr)
	}
	return fmt.Errorf("%w (%s revoked again)", err, what)
}

// versionToken derives the ClientRequestToken (and so the VersionId) of the version that
// follows prev in secret name: a UUID-shaped string (version 8, RFC 9562) made of the first 16
// bytes of SHA-256 over a fixed label, the name and prev, so that two writers that read the
// same version collide and one loses.
func versionToken(name, prev string) string {
	h := sha256.Sum256([]byte("ksef-serverless/cli/credentials/v1\x00" + name + "\x00" + prev))
	u := h[:16]
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// versionOr returns the VersionId of a write's response, or the token it was written with
// (which Secrets Manager uses as the VersionId) if the response lacks one.
func versionOr(id *string, token string) string {
	if v := aws.ToString(id); v != "" {
		return v
	}
	return token
}

// isAWSError reports whether err is the modelled SDK error T or any smithy API error with the
// given code.
func isAWSError[T error](err error, code string) bool {
	if err == nil {
		return false
	}
	var target T
	if errors.As(err, &target) {
		return true
	}
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}

// maskedCredentials is a credentials secret as ksef shows it: every secret masked.
type maskedCredentials struct {
	Secret      string           `json:"secret"`
	VersionID   string           `json:"versionId,omitempty"`
	NIP         string           `json:"nip"`
	Environment ksef.Environment `json:"environment"`
	BaseURL     string           `json:"baseUrl,omitempty"`
	AuthMethod  string           `json:"authMethod"`
	KSeFToken   string           `json:"ksefToken,omitempty"` // "2025***"
	Certificate *certSummary     `json:"certificate,omitempty"`
	PrivateKey  string           `json:"privateKey,omitempty"` // "*** (RSA 2048 bits, matches the certificate)"
	Valid       bool             `json:"valid"`
	Problem     string           `json:"problem,omitempty"` // why the pipeline would reject it
}

// certSummary identifies a certificate without its PEM.
type certSummary struct {
	Subject     string    `json:"subject"`
	Issuer      string    `json:"issuer"`
	Serial      string    `json:"serial"` // upper-case hex
	NotBefore   time.Time `json:"notBefore"`
	NotAfter    time.Time `json:"notAfter"`
	Fingerprint string    `json:"fingerprint"` // SHA-256, upper-case hex
	Chain       int       `json:"chain,omitempty"`
	Expired     bool      `json:"expired,omitempty"`
	Problem     string    `json:"problem,omitempty"`
}

// maskCredentials summarises c for display. Nothing secret survives: the token shows the first
// four characters of its reference part (KSeF lists the reference in ksef token list), the key
// only its type.
func maskCredentials(name, version string, c *secrets.Credentials, now time.Time) *maskedCredentials {
	m := &maskedCredentials{
		Secret: name, VersionID: version, NIP: c.NIP, Environment: c.Environment, BaseURL: c.BaseURL,
		AuthMethod: string(c.AuthMethod), KSeFToken: maskToken(c.KSeFToken),
	}
	var cert *x509.Certificate
	if c.CertificatePEM != "" {
		m.Certificate = &certSummary{}
		certs, err := parseCertificates([]byte(c.CertificatePEM))
		if err != nil {
			m.Certificate.Problem = err.Error()
		} else {
			cert = certs[0]
			*m.Certificate = summarise(cert, now)
			m.Certificate.Chain = len(certs) - 1
		}
	}
	if c.PrivateKeyPEM != "" {
		m.PrivateKey = "***"
		if cert != nil {
			if _, key, err := ksef.ParsePEM([]byte(c.CertificatePEM), []byte(c.PrivateKeyPEM.Reveal())); err == nil {
				m.PrivateKey += " (" + keyDescription(key.Public()) + ", matches the certificate)"
			}
		}
	}
	body, err := json.Marshal(c)
	if err == nil {
		_, err = secrets.ParseCredentials(body)
	}
	m.Valid = err == nil
	if err != nil {
		m.Problem = strings.TrimPrefix(err.Error(), "invalid credentials: ")
	}
	return m
}

// maskToken shows the first four characters of a KSeF token's reference part ("20251010-EC-...",
// before the first "|"), or nothing of a token of another shape.
func maskToken(t ksef.Secret) string {
	if t == "" {
		return ""
	}
	ref, _, ok := strings.Cut(t.Reveal(), "|")
	if !ok || len(ref) < 8 {
		return "***"
	}
	return ref[:4] + "***"
}

// summarise describes a certificate.
func summarise(cert *x509.Certificate, now time.Time) certSummary {
	return certSummary{
		Subject:     dn(cert.Subject),
		Issuer:      dn(cert.Issuer),
		Serial:      hexSerial(cert),
		NotBefore:   cert.NotBefore.UTC(),
		NotAfter:    cert.NotAfter.UTC(),
		Fingerprint: fingerprintOf(cert),
		Expired:     now.After(cert.NotAfter),
	}
}

// parseCertificates parses every CERTIFICATE block of data, at least one.
func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("unparsable certificate: %w", err)
		}
		certs = append(certs, cert)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE block")
	}
	return certs, nil
}

// printMasked writes a masked credentials secret as text.
func printMasked(w io.Writer, m *maskedCredentials) {
	fmt.Fprintf(w, "  secret:        %s", m.Secret)
	if m.VersionID != "" {
		fmt.Fprintf(w, " (version %s)", m.VersionID)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  nip:           %s\n", m.NIP)
	fmt.Fprintf(w, "  environment:   %s\n", m.Environment)
	if m.BaseURL != "" {
		fmt.Fprintf(w, "  baseUrl:       %s\n", m.BaseURL)
	}
	fmt.Fprintf(w, "  authMethod:    %s\n", m.AuthMethod)
	if m.KSeFToken != "" {
		note := ""
		if m.AuthMethod != string(secrets.AuthToken) {
			note = " (kept; not used while authMethod is " + m.AuthMethod + ")"
		}
		fmt.Fprintf(w, "  ksefToken:     %s%s\n", m.KSeFToken, note)
	}
	if c := m.Certificate; c != nil {
		note := ""
		if m.AuthMethod != string(secrets.AuthXAdES) {
			note = " (kept; not used while authMethod is " + m.AuthMethod + ")"
		}
		fmt.Fprintf(w, "  certificate:%s\n", note)
		if c.Problem != "" {
			fmt.Fprintf(w, "    %s\n", c.Problem)
		} else {
			fmt.Fprintf(w, "    subject:     %s\n", c.Subject)
			fmt.Fprintf(w, "    issuer:      %s\n", c.Issuer)
			fmt.Fprintf(w, "    serial:      %s\n", c.Serial)
			expired := ""
			if c.Expired {
				expired = " (EXPIRED)"
			}
			fmt.Fprintf(w, "    valid:       %s to %s%s\n", c.NotBefore.Format(time.RFC3339), c.NotAfter.Format(time.RFC3339), expired)
			fmt.Fprintf(w, "    fingerprint: %s (SHA-256)\n", c.Fingerprint)
			if c.Chain > 0 {
				fmt.Fprintf(w, "    chain:       %d more certificates\n", c.Chain)
			}
		}
	}
	if m.PrivateKey != "" {
		fmt.Fprintf(w, "  privateKeyPem: %s\n", m.PrivateKey)
	}
	if m.Valid {
		fmt.Fprintf(w, "  valid:         yes, the pipeline accepts it\n")
	} else {
		fmt.Fprintf(w, "  valid:         NO: %s\n", m.Problem)
	}
}

func secretsPutUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef secrets put --nip NIP (--token-from-env | --cert FILE --key FILE | --p12 FILE)
                  [--env test|demo|prod | --base-url URL] [--secret-id SECRET] [--kms-key-id KEY]
                  [--check] [--replace]

Write the credentials the pipeline logs in with into the NIP's credentials secret in AWS
Secrets Manager (default name ksef/<NIP>/credentials), in the format pkg/secrets reads:

  --token-from-env      the KSeF token in the environment variable KSEF_TOKEN; authMethod "token"
  --cert/--key, --p12   a certificate and its key (stored as PEM, the key unencrypted as PKCS #8,
                        PKCS #12 password in KSEF_P12_PASSWORD); authMethod "xades"

The other fields of an existing secret are kept (a token stays when a certificate is added, and
the other way round) as long as it is for the same environment and base URL; authMethod
switches to the credential just written. The document is checked as the pipeline checks it
before it is written. The secret is created if missing, else a new version is put; if someone
else changed it since it was read, nothing is written. --replace ignores the current content.

With --check, ksef first logs in with the credentials (and out again) and stores nothing if
that fails. What was stored is printed with every secret masked.

The AWS SDK's default configuration applies: AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL...

Flags:
`)
		printFlags(w, fs)
	}
}

// runSecretsPut is ksef secrets put.
func runSecretsPut(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef secrets put", flag.ContinueOnError)
	var l loginFlags
	var sf storeFlags
	l.api.register(fs)
	fs.StringVar(&l.nip, "nip", "", "`NIP` the credentials act for")
	l.cert.register(fs, "to store (authMethod xades)")
	fromEnv := fs.Bool("token-from-env", false, "store the KSeF token in the environment variable "+tokenEnv+" (authMethod token)")
	sf.register(fs)
	check := fs.Bool("check", false, "log in with the credentials first; store nothing if that fails")
	replace := fs.Bool("replace", false, "ignore the current content of the secret instead of merging into it")
	fs.DurationVar(&l.timeout, "timeout", defaultOnboardingTimeout, "with --check: give up after `D`")
	fs.BoolVar(&l.verbose, "verbose", false, "with --check: debug log of every HTTP request on stderr")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, secretsPutUsage(fs))
	if err != nil {
		return err
	}
	switch {
	case len(rest) > 0:
		return usagef("unexpected argument %q", rest[0])
	case *fromEnv && l.cert.given():
		return usagef("give --token-from-env or a certificate, not both")
	case !*fromEnv && !l.cert.given():
		return usagef("give --token-from-env, or --cert and --key, or --p12")
	}
	if err := l.check(fs); err != nil {
		return err
	}
	cred, err := l.cert.load(x.env.getenv, *fromEnv)
	if err != nil {
		return err
	}
	u := credentialUpdate{env: l.api.env, baseURL: l.api.baseURL}
	if cred.cert != nil {
		certPEM, keyPEM, err := encodeCredentialPEM(cred, l.cert.certFile)
		if err != nil {
			return err
		}
		u.apply = func(c *secrets.Credentials) {
			c.AuthMethod = secrets.AuthXAdES
			c.CertificatePEM, c.PrivateKeyPEM = string(certPEM), ksef.Secret(keyPEM)
		}
	} else {
		u.apply = func(c *secrets.Credentials) {
			c.AuthMethod = secrets.AuthToken
			c.KSeFToken = cred.token
		}
	}
	store, err := x.openStore(ctx, &sf, l.nip, *replace)
	if err != nil {
		return err
	}
	if *check {
		if err := x.loggedIn(ctx, &l, false, func(context.Context, *session) error { return nil }); err != nil {
			return fmt.Errorf("check (nothing stored): %w", err)
		}
	}
	return store.save(ctx, u)
}

// encodeCredentialPEM encodes a certificate and key for the secret: the certificate followed by
// its chain (from the PKCS #12 file, or the further certificates of the --cert file), and the key
// as PKCS #8.
func encodeCredentialPEM(cred *credentials, certFile string) (certPEM, keyPEM []byte, err error) {
	certPEM, keyPEM, err = ksef.EncodePEM(cred.cert, cred.key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode certificate and key: %w", err)
	}
	chain := cred.chain
	if certFile != "" {
		data, err := os.ReadFile(certFile)
		if err != nil {
			return nil, nil, fmt.Errorf("read --cert: %w", err)
		}
		all, err := parseCertificates(data)
		if err != nil {
			return nil, nil, fmt.Errorf("read --cert: %w", err)
		}
		chain = all[1:]
	}
	for _, c := range chain {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return certPEM, keyPEM, nil
}

func secretsShowUsage(fs *flag.FlagSet) func(io.Writer) {
	return func(w io.Writer) {
		fmt.Fprint(w, `Usage: ksef secrets show --nip NIP [--secret-id SECRET] [--json]

Show the NIP's credentials secret with every secret masked: the first four characters of the
KSeF token's reference part, the certificate's subject, issuer, serial number, validity and
fingerprint instead of its PEM, the private key's type only. Says whether the pipeline would
accept the secret, and why not.

Flags:
`)
		printFlags(w, fs)
	}
}

// runSecretsShow is ksef secrets show.
func runSecretsShow(ctx context.Context, x *cli, args []string) error {
	fs := flag.NewFlagSet("ksef secrets show", flag.ContinueOnError)
	var sf storeFlags
	nip := fs.String("nip", "", "`NIP` whose credentials to show")
	fs.StringVar(&sf.secretID, "secret-id", "", "name or ARN of the credentials `SECRET` (default ksef/<NIP>/credentials)")
	jsonOut := fs.Bool("json", false, "print a JSON object")
	rest, err := parseFlags(fs, args, x.stdout, x.stderr, secretsShowUsage(fs))
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
	}
	store, err := x.openStore(ctx, &sf, *nip, false)
	if err != nil {
		return err
	}
	if store.cur == nil {
		return fmt.Errorf("secret %s does not exist or has no value: write it with ksef secrets put", store.name)
	}
	m := maskCredentials(store.name, store.version, store.cur, x.env.now())
	if *jsonOut {
		return writeJSON(x.stdout, m)
	}
	fmt.Fprintln(x.stdout, "Credentials:")
	printMasked(x.stdout, m)
	return nil
}
