package ksef

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// Environment names a KSeF environment. The zero value is not valid; use one of the constants or
// point the client at any base URL with WithBaseURL (the local emulator, for instance).
type Environment string

// KSeF environments.
const (
	Test Environment = "test" // TEST ("TE"): release candidates, self-signed certificates accepted
	Demo Environment = "demo" // DEMO ("TR"): pre-production
	Prod Environment = "prod" // PRD: production
)

// ParseEnvironment returns the environment named by s ("test", "demo" or "prod").
func ParseEnvironment(s string) (Environment, error) {
	switch e := Environment(s); e {
	case Test, Demo, Prod:
		return e, nil
	}
	return "", fmt.Errorf("ksef: unknown environment %q (want test, demo or prod)", s)
}

// BaseURL returns the API base URL of the environment, ending in /v2.
func (e Environment) BaseURL() string {
	switch e {
	case Test:
		return "https://api-test.ksef.mf.gov.pl/v2"
	case Demo:
		return "https://api-demo.ksef.mf.gov.pl/v2"
	case Prod:
		return "https://api.ksef.mf.gov.pl/v2"
	}
	return ""
}

// QRBaseURL returns the host used in verification links (QR codes) of the environment.
func (e Environment) QRBaseURL() string {
	switch e {
	case Test:
		return "https://qr-test.ksef.mf.gov.pl"
	case Demo:
		return "https://qr-demo.ksef.mf.gov.pl"
	case Prod:
		return "https://qr.ksef.mf.gov.pl"
	}
	return ""
}

const redacted = "[REDACTED]"

// Secret is a credential held as a string: a KSeF token, a JWT. Printing it with fmt or logging it
// with log/slog shows "[REDACTED]"; Reveal returns the value. It marshals to JSON as its real
// value so that it can be stored in a secret store: never put a Secret in a log line, an error, a
// Step Functions payload or any other JSON that is not itself a secret.
type Secret string

// Reveal returns the secret value.
func (s Secret) Reveal() string { return string(s) }

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer without revealing the value.
func (s Secret) GoString() string { return s.String() }

// LogValue implements slog.LogValuer without revealing the value.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// SecretBytes is key material (an AES key). Printing or logging it shows "[REDACTED]"; it
// marshals to JSON as standard Base64 of its real value, for storage in a secret store only.
type SecretBytes []byte

// String implements fmt.Stringer without revealing the value.
func (b SecretBytes) String() string {
	if len(b) == 0 {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer without revealing the value.
func (b SecretBytes) GoString() string { return b.String() }

// Format implements fmt.Formatter so that no verb (%x, %v, %s, %q) reveals the value.
func (b SecretBytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(b.String())) }

// LogValue implements slog.LogValuer without revealing the value.
func (b SecretBytes) LogValue() slog.Value { return slog.StringValue(b.String()) }

// MarshalJSON encodes the real value as Base64.
func (b SecretBytes) MarshalJSON() ([]byte, error) { return json.Marshal([]byte(b)) }

// UnmarshalJSON decodes a Base64 string.
func (b *SecretBytes) UnmarshalJSON(data []byte) error {
	var raw []byte
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	*b = raw
	return nil
}

// ContextType is the kind of identifier a KSeF context is bound to.
type ContextType string

// Context identifier types.
const (
	ContextNip        ContextType = "Nip"
	ContextInternalID ContextType = "InternalId"
	ContextNipVatUE   ContextType = "NipVatUe"
	ContextPeppolID   ContextType = "PeppolId"
)

// ContextIdentifier is the context (usually a company's NIP) that an authentication is bound to.
type ContextIdentifier struct {
	Type  ContextType `json:"type"`
	Value string      `json:"value"`
}

// NipContext returns the context identifier of a NIP.
func NipContext(nip string) ContextIdentifier {
	return ContextIdentifier{Type: ContextNip, Value: nip}
}

// FormCode identifies the invoice schema of a session. Note the space in "FA (3)".
type FormCode struct {
	SystemCode    string `json:"systemCode"`
	SchemaVersion string `json:"schemaVersion"`
	Value         string `json:"value"`
}

// FormCodeFA3 returns the form code of the FA(3) invoice schema, the one mandatory since
// 2026-02-01.
func FormCodeFA3() FormCode {
	return FormCode{SystemCode: "FA (3)", SchemaVersion: "1-0E", Value: "FA"}
}

// Token is a JWT issued by KSeF (authentication, access or refresh token) and its expiry.
type Token struct {
	Token      Secret    `json:"token"`
	ValidUntil time.Time `json:"validUntil"`
}

// AuthTokens is what redeeming a successful authentication yields.
type AuthTokens struct {
	AccessToken  Token `json:"accessToken"`
	RefreshToken Token `json:"refreshToken"`
}

// Status is the outcome of an asynchronous KSeF operation (authentication, session, invoice,
// permission operation). HTTP 200 carries failures too: look at Code.
type Status struct {
	Code        int               `json:"code"`
	Description string            `json:"description"`
	Details     []string          `json:"details,omitempty"`
	Extensions  map[string]string `json:"extensions,omitempty"`
}

// SessionHandle is everything needed to keep using an open online or batch session from another
// process: its reference number, form code, validity and the session's AES-256 key and IV. It can
// be marshalled to JSON for a secret store; the key never shows when printed or logged.
type SessionHandle struct {
	ReferenceNumber string      `json:"referenceNumber"`
	FormCode        FormCode    `json:"formCode"`
	ValidUntil      time.Time   `json:"validUntil"`
	Key             SecretBytes `json:"key"`
	IV              []byte      `json:"iv"`
}

// AllowedIPs restricts where the tokens of an authentication may be used from (KSeF's
// authorizationPolicy). Each list holds at most 10 entries: addresses "a.b.c.d", ranges
// "a.b.c.d-e.f.g.h" and masks "a.b.c.d/nn".
type AllowedIPs struct {
	IP4Addresses []string `json:"ip4Addresses,omitempty"`
	IP4Ranges    []string `json:"ip4Ranges,omitempty"`
	IP4Masks     []string `json:"ip4Masks,omitempty"`
}
