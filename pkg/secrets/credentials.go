package secrets

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// AuthMethod is how the pipeline authenticates to KSeF for a NIP.
type AuthMethod string

// Authentication methods.
const (
	AuthToken AuthMethod = "token" // a KSeF token, RSA-OAEP encrypted with the challenge timestamp
	AuthXAdES AuthMethod = "xades" // an AuthTokenRequest document signed with a certificate and key
)

// Credentials is the content of a credentials secret ("ksef/<NIP>/credentials" by default),
// written by the user or the onboarding tool and only read by the pipeline. Printing or logging
// a Credentials value shows its secrets as "[REDACTED]".
type Credentials struct {
	// NIP is the taxpayer the credentials act for; it is also the KSeF context.
	NIP string `json:"nip"`
	// Environment is the KSeF environment: test, demo or prod.
	Environment ksef.Environment `json:"environment"`
	// BaseURL, if set, replaces the environment's API URL (for the local emulator, say).
	BaseURL string `json:"baseUrl,omitempty"`
	// AuthMethod selects KSeFToken or CertificatePEM and PrivateKeyPEM.
	AuthMethod AuthMethod `json:"authMethod"`
	// KSeFToken is the KSeF token, required for AuthToken.
	KSeFToken ksef.Secret `json:"ksefToken,omitempty"`
	// CertificatePEM is the signing certificate (a CERTIFICATE PEM block, chain optional),
	// required for AuthXAdES.
	CertificatePEM string `json:"certificatePem,omitempty"`
	// PrivateKeyPEM is the certificate's unencrypted private key (PKCS #8 "PRIVATE KEY", or
	// "RSA PRIVATE KEY" / "EC PRIVATE KEY"), required for AuthXAdES.
	PrivateKeyPEM ksef.Secret `json:"privateKeyPem,omitempty"`
}

// APIBaseURL returns BaseURL if set, else the API URL of Environment.
func (c *Credentials) APIBaseURL() string {
	if c.BaseURL != "" {
		return c.BaseURL
	}
	return c.Environment.BaseURL()
}

// CredentialsError is a credentials secret that fails validation. It never quotes a secret.
type CredentialsError struct {
	Field  string // JSON name of the offending field; empty when the document itself is malformed
	Reason string
}

// Error implements error.
func (e *CredentialsError) Error() string {
	if e.Field == "" {
		return "invalid credentials: " + e.Reason
	}
	return "invalid credentials: " + e.Field + ": " + e.Reason
}

// Unwrap returns ErrInvalidCredentials so that errors.Is matches it.
func (e *CredentialsError) Unwrap() error { return ErrInvalidCredentials }

var _ error = (*CredentialsError)(nil)

// ParseCredentials decodes and validates a credentials secret value. Unknown fields are
// rejected, so that a misspelt key fails at once instead of looking like a missing one.
func ParseCredentials(data []byte) (*Credentials, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	c := &Credentials{}
	if err := dec.Decode(c); err != nil {
		return nil, &CredentialsError{Reason: redactJSONError(err).Error()}
	}
	if dec.More() {
		return nil, &CredentialsError{Reason: "trailing data after the JSON object"}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks the credentials and returns a *CredentialsError naming the first bad field:
// the NIP's format (and, for prod, its check digit), the environment, the base URL, the
// authentication method and what that method needs: a KSeF token, or a certificate and its
// private key that ksef.ParsePEM accepts (RSA or ECDSA, unencrypted, matching). A secret that
// names the NIP and nothing to log in with (as the stack creates it, {"nip": ...}) is reported
// as such, without a field.
func (c *Credentials) Validate() error {
	if err := checkNIPFormat(c.NIP); err != nil {
		return &CredentialsError{Field: "nip", Reason: err.Error()}
	}
	if c.AuthMethod == "" && c.KSeFToken == "" && c.CertificatePEM == "" && c.PrivateKeyPEM == "" {
		return &CredentialsError{Reason: "the secret holds no KSeF token or certificate yet, only the NIP: " +
			"store credentials in it with ksef secrets put, ksef token generate or ksef cert enroll"}
	}
	if _, err := ksef.ParseEnvironment(string(c.Environment)); err != nil {
		return &CredentialsError{Field: "environment", Reason: fmt.Sprintf("unknown environment %q (want test, demo or prod)", clip(string(c.Environment)))}
	}
	// KSeF verifies the NIP check digit on production only, and test NIPs often lack one.
	if c.Environment == ksef.Prod && !nipCheckDigitOK(c.NIP) {
		return &CredentialsError{Field: "nip", Reason: "check digit does not match (required for prod)"}
	}
	if c.BaseURL != "" {
		u, err := url.Parse(c.BaseURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			return &CredentialsError{Field: "baseUrl", Reason: "want an absolute http or https URL without user info"}
		}
	}
	switch c.AuthMethod {
	case AuthToken:
		if c.KSeFToken == "" {
			return &CredentialsError{Field: "ksefToken", Reason: `required when authMethod is "token"`}
		}
	case AuthXAdES:
		if err := checkPEM(c.CertificatePEM, "CERTIFICATE"); err != nil {
			return &CredentialsError{Field: "certificatePem", Reason: err.Error() + ` (required when authMethod is "xades")`}
		}
		if err := checkPEM(c.PrivateKeyPEM.Reveal(), "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "EC PARAMETERS"); err != nil {
			return &CredentialsError{Field: "privateKeyPem", Reason: err.Error() + ` (required when authMethod is "xades")`}
		}
		if err := checkCertificate(c.CertificatePEM); err != nil {
			return &CredentialsError{Field: "certificatePem", Reason: err.Error()}
		}
		// The certificate parses, so what ParsePEM rejects is the key: unparsable, of a type
		// KSeF does not accept, or not the certificate's. Its errors hold no key material.
		if _, _, err := ksef.ParsePEM([]byte(c.CertificatePEM), []byte(c.PrivateKeyPEM.Reveal())); err != nil {
			return &CredentialsError{Field: "privateKeyPem", Reason: strings.TrimPrefix(err.Error(), "ksef: parse PEM: ")}
		}
	case "":
		return &CredentialsError{Field: "authMethod", Reason: `missing (want "token" or "xades")`}
	default:
		return &CredentialsError{Field: "authMethod", Reason: fmt.Sprintf(`unknown method %q (want "token" or "xades")`, clip(string(c.AuthMethod)))}
	}
	return nil
}

// checkPEM checks that s starts with a PEM block of one of the given types, not encrypted. The
// returned error never quotes s.
func checkPEM(s string, types ...string) error {
	if s == "" {
		return errors.New("missing")
	}
	block, _ := pem.Decode([]byte(s))
	if block == nil {
		return errors.New("not PEM-encoded")
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || block.Headers["Proc-Type"] != "" {
		return errors.New("encrypted keys are not supported; store the key unencrypted in the secret")
	}
	for _, t := range types {
		if block.Type == t {
			if len(block.Bytes) == 0 {
				return errors.New("empty PEM block")
			}
			return nil
		}
	}
	return fmt.Errorf("PEM block is %q, want %q", clip(block.Type), types[0])
}

// checkCertificate parses the first CERTIFICATE block of certPEM.
func checkCertificate(certPEM string) error {
	for rest := []byte(certPEM); ; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return errors.New("no CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("unparsable certificate: %w", err)
		}
		return nil
	}
}

// nipPattern is the Nip schema pattern of the KSeF OpenAPI specification.
var nipPattern = regexp.MustCompile(`^[1-9]((\d[1-9])|([1-9]\d))\d{7}$`)

func checkNIPFormat(nip string) error {
	if !nipPattern.MatchString(nip) {
		return fmt.Errorf("%q is not a NIP (want 10 digits, first 1-9, second and third not both 0)", clip(nip))
	}
	return nil
}

// checkNIP validates the nip argument of the Store methods; it also keeps secret names sane.
func checkNIP(nip string) error {
	if err := checkNIPFormat(nip); err != nil {
		return fmt.Errorf("secrets: %w", err)
	}
	return nil
}

// nipCheckDigitOK reports whether the tenth digit of a well-formed NIP is its check digit
// (weights 6 5 7 2 3 4 5 6 7, sum mod 11; a remainder of 10 is never valid).
func nipCheckDigitOK(nip string) bool {
	weights := [9]int{6, 5, 7, 2, 3, 4, 5, 6, 7}
	sum := 0
	for i, w := range weights {
		sum += int(nip[i]-'0') * w
	}
	return sum%11 == int(nip[9]-'0')
}

// clip shortens a user-supplied non-secret value quoted in an error.
func clip(s string) string {
	const n = 40
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Credentials returns the validated credentials of nip, from memory if they were read less than
// the cache TTL ago. A missing secret gives ErrNotFound, a bad one a *CredentialsError
// (ErrInvalidCredentials), as does a secret whose "nip" is not nip.
func (s *Store) Credentials(ctx context.Context, nip string) (*Credentials, error) {
	if err := checkNIP(nip); err != nil {
		return nil, err
	}
	s.mu.Lock()
	e, ok := s.creds[nip]
	s.mu.Unlock()
	if ok && s.now().Sub(e.readAt) < s.ttl {
		c := *e.c
		return &c, nil
	}
	name, _ := s.names(nip)
	out, err := s.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		if isAWSError[*types.ResourceNotFoundException](err, "ResourceNotFoundException") {
			return nil, fmt.Errorf("%w: credentials of %s (%s): %w", ErrNotFound, nip, name, err)
		}
		return nil, fmt.Errorf("secrets: read credentials of %s: get secret value %s: %w", nip, name, err)
	}
	if out.SecretString == nil {
		return nil, fmt.Errorf("secrets: read credentials of %s from %s: %w",
			nip, name, &CredentialsError{Reason: "secret holds binary data, want a JSON string"})
	}
	c, err := ParseCredentials([]byte(*out.SecretString))
	if err != nil {
		return nil, fmt.Errorf("secrets: read credentials of %s from %s: %w", nip, name, err)
	}
	if c.NIP != nip {
		return nil, fmt.Errorf("secrets: read credentials of %s from %s: %w",
			nip, name, &CredentialsError{Field: "nip", Reason: fmt.Sprintf("is %s, want %s", c.NIP, nip)})
	}
	s.mu.Lock()
	s.creds[nip] = credsEntry{c: c, readAt: s.now()}
	s.mu.Unlock()
	cp := *c
	return &cp, nil
}
