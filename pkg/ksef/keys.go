package ksef

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"
)

// KeyUsage is what an MF public key may be used for.
type KeyUsage string

// Usages of the MF public keys.
const (
	KeyUsageKSeFToken    KeyUsage = "KsefTokenEncryption"    // encrypting the KSeF token at login
	KeyUsageSymmetricKey KeyUsage = "SymmetricKeyEncryption" // encrypting a session's AES key
)

// PublicKeyCertificate is one of the Ministry of Finance's encryption certificates, as listed
// by GET /security/public-key-certificates.
type PublicKeyCertificate struct {
	Certificate   []byte // X.509 certificate, DER
	CertificateID string // Base64 SHA-256 of the DER certificate
	PublicKeyID   string // Base64 SHA-256 of the SubjectPublicKeyInfo; sent as publicKeyId
	ValidFrom     time.Time
	ValidTo       time.Time
	Usage         []KeyUsage
}

// HasUsage reports whether the certificate may be used for u.
func (p PublicKeyCertificate) HasUsage(u KeyUsage) bool { return slices.Contains(p.Usage, u) }

// ValidAt reports whether t lies in [ValidFrom, ValidTo). A zero bound is open.
func (p PublicKeyCertificate) ValidAt(t time.Time) bool {
	return !t.Before(p.ValidFrom) && (p.ValidTo.IsZero() || t.Before(p.ValidTo))
}

// PublicKey returns the RSA public key of the certificate. It also accepts a bare DER
// SubjectPublicKeyInfo, which is what one of the examples in KSeF's OpenAPI description shows.
func (p PublicKeyCertificate) PublicKey() (*rsa.PublicKey, error) {
	var key any
	if cert, err := x509.ParseCertificate(p.Certificate); err == nil {
		key = cert.PublicKey
	} else if spki, err2 := x509.ParsePKIXPublicKey(p.Certificate); err2 == nil {
		key = spki
	} else {
		return nil, fmt.Errorf("ksef: parse MF certificate: %w", err)
	}
	pub, ok := key.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("ksef: MF certificate has a %T key, want RSA", key)
	}
	return pub, nil
}

func (p PublicKeyCertificate) clone() PublicKeyCertificate {
	p.Certificate = slices.Clone(p.Certificate)
	p.Usage = slices.Clone(p.Usage)
	return p
}

type publicKeyCertificateWire struct {
	Certificate   []byte     `json:"certificate"`
	CertificateID string     `json:"certificateId"`
	PublicKeyID   string     `json:"publicKeyId"`
	ValidFrom     apiTime    `json:"validFrom"`
	ValidTo       apiTime    `json:"validTo"`
	Usage         []KeyUsage `json:"usage"`
}

// keyCacheTTL is how long a fetched key list is used before it is fetched again. Planned
// rotations overlap by far more; an emergency rotation shows up as code 21470, which triggers
// a refetch at once.
const keyCacheTTL = 6 * time.Hour

// keyCache holds the last fetched key list; Client.keysMu guards it.
type keyCache struct {
	certs   []PublicKeyCertificate
	fetched time.Time
}

// PublicKeyCertificates fetches the MF encryption certificates (no authentication needed) and
// refreshes the client's key cache with them.
func (c *Client) PublicKeyCertificates(ctx context.Context) ([]PublicKeyCertificate, error) {
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/security/public-key-certificates"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: PublicKeyCertificates: %w", err)
	}
	req.op, req.auth = "PublicKeyCertificates", authNone
	var wire []publicKeyCertificateWire
	if err := c.do(req, &wire); err != nil {
		return nil, err
	}
	certs := make([]PublicKeyCertificate, len(wire))
	for i, w := range wire {
		certs[i] = PublicKeyCertificate{
			Certificate:   w.Certificate,
			CertificateID: w.CertificateID,
			PublicKeyID:   w.PublicKeyID,
			ValidFrom:     w.ValidFrom.Time,
			ValidTo:       w.ValidTo.Time,
			Usage:         w.Usage,
		}
	}
	c.keysMu.Lock()
	c.keys = keyCache{certs: certs, fetched: c.now()}
	c.keysMu.Unlock()
	out := make([]PublicKeyCertificate, len(certs))
	for i, p := range certs {
		out[i] = p.clone()
	}
	return out, nil
}

// encryptionKey is the chosen MF key for one usage.
type encryptionKey struct {
	id  string // publicKeyId, "" if KSeF did not give one
	pub *rsa.PublicKey
}

// encryptionKey returns the key to use for usage: from the cache when it is fresh and holds a
// valid key, else from a new fetch. refetch forces the fetch.
func (c *Client) encryptionKey(ctx context.Context, usage KeyUsage, refetch bool) (encryptionKey, error) {
	now := c.now()
	if !refetch {
		c.keysMu.Lock()
		cache := c.keys
		c.keysMu.Unlock()
		if cache.certs != nil && now.Sub(cache.fetched) < keyCacheTTL {
			if k, err := pickKey(cache.certs, usage, now); err == nil {
				return k, nil
			}
		}
	}
	certs, err := c.PublicKeyCertificates(ctx)
	if err != nil {
		return encryptionKey{}, err
	}
	return pickKey(certs, usage, now)
}

// pickKey chooses, among the certificates with the usage that are valid now, the one with the
// latest ValidFrom.
func pickKey(certs []PublicKeyCertificate, usage KeyUsage, now time.Time) (encryptionKey, error) {
	var best *PublicKeyCertificate
	for i := range certs {
		p := &certs[i]
		if p.HasUsage(usage) && p.ValidAt(now) && (best == nil || p.ValidFrom.After(best.ValidFrom)) {
			best = p
		}
	}
	if best == nil {
		return encryptionKey{}, fmt.Errorf("ksef: no MF public key for %s valid at %s", usage, now.UTC().Format(time.RFC3339))
	}
	pub, err := best.PublicKey()
	if err != nil {
		return encryptionKey{}, err
	}
	return encryptionKey{id: best.PublicKeyID, pub: pub}, nil
}

// withEncryptionKey runs call with the MF key for usage. If KSeF rejects the key id (code
// 21470: the key was rotated), it refetches the key list once and runs call once more with the
// new key.
func (c *Client) withEncryptionKey(ctx context.Context, usage KeyUsage, call func(encryptionKey) error) error {
	key, err := c.encryptionKey(ctx, usage, false)
	if err != nil {
		return err
	}
	err = call(key)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !apiErr.HasCode(CodeUnknownPublicKey) {
		return err
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "ksef public key rejected, refetching",
		slog.String("usage", string(usage)), slog.String("publicKeyId", key.id))
	fresh, ferr := c.encryptionKey(ctx, usage, true)
	if ferr != nil {
		return fmt.Errorf("%w (after: %w)", ferr, err)
	}
	return call(fresh)
}
