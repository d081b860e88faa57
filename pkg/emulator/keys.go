package emulator

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"time"
)

// Usages of the Ministry of Finance public keys.
const (
	usageToken     = "KsefTokenEncryption"
	usageSymmetric = "SymmetricKeyEncryption"
)

const mfKeyBits = 2048

// mfKey is one of the emulator's "Ministry of Finance" encryption keys with its self-signed
// certificate, published by GET /security/public-key-certificates.
type mfKey struct {
	usage       string
	priv        *rsa.PrivateKey
	der         []byte
	certID      string // Base64 SHA-256 of the DER certificate
	publicKeyID string // Base64 SHA-256 of the DER SubjectPublicKeyInfo
	validFrom   time.Time
	validTo     time.Time
	// retireAt is when a key replaced by a planned rotation stops being listed and accepted;
	// zero while the key is current.
	retireAt time.Time
}

// newMFKey generates a key and a self-signed certificate valid for two years from validFrom.
func newMFKey(usage string, validFrom time.Time) (*mfKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, mfKeyBits)
	if err != nil {
		return nil, fmt.Errorf("emulator: generate %s key: %w", usage, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("emulator: certificate serial: %w", err)
	}
	name := pkix.Name{
		CommonName:   "Ministerstwo Finansów",
		Organization: []string{"Ministerstwo Finansów"},
		Country:      []string{"PL"},
		// The emulator's certificates say what they are, so nobody mistakes them for MF's.
		OrganizationalUnit: []string{"KSeF emulator " + usage},
	}
	validFrom = validFrom.Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               name,
		Issuer:                name,
		NotBefore:             validFrom,
		NotAfter:              validFrom.AddDate(2, 0, 0),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDataEncipherment,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return nil, fmt.Errorf("emulator: create %s certificate: %w", usage, err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("emulator: marshal %s public key: %w", usage, err)
	}
	certSum := sha256.Sum256(der)
	keySum := sha256.Sum256(spki)
	return &mfKey{
		usage:       usage,
		priv:        priv,
		der:         der,
		certID:      base64.StdEncoding.EncodeToString(certSum[:]),
		publicKeyID: base64.StdEncoding.EncodeToString(keySum[:]),
		validFrom:   tmpl.NotBefore,
		validTo:     tmpl.NotAfter,
	}, nil
}

func (k *mfKey) listed(now time.Time) bool {
	return !now.Before(k.validFrom) && now.Before(k.validTo) && (k.retireAt.IsZero() || now.Before(k.retireAt))
}

// RotateKeys replaces both encryption keys. In a planned rotation (emergency false) the old keys
// stay listed and accepted for Config.KeyOverlap, beside the new ones (which have a later
// validFrom, so clients following the selection rule switch at once). In an emergency rotation
// the old keys disappear at once and their publicKeyId answers 400 code 21470.
func (e *Emulator) RotateKeys(emergency bool) error {
	now := e.Now()
	var fresh []*mfKey
	for _, usage := range []string{usageToken, usageSymmetric} {
		// The new certificate is valid from now, later than every certificate it replaces.
		k, err := newMFKey(usage, now)
		if err != nil {
			return err
		}
		fresh = append(fresh, k)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now = e.nowLocked()
	kept := e.keys[:0]
	for _, k := range e.keys {
		switch {
		case emergency || !k.listed(now):
			continue
		case k.retireAt.IsZero():
			k.retireAt = now.Add(e.cfg.KeyOverlap)
		}
		kept = append(kept, k)
	}
	e.keys = append(kept, fresh...)
	return nil
}

// candidateKeys returns the listed keys of usage to try for decryption, newest first, or, when
// publicKeyID is set, the one key it names. ok is false when publicKeyID names no listed key of
// that usage.
func (e *Emulator) candidateKeys(usage, publicKeyID string) (keys []*mfKey, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.nowLocked()
	for _, k := range e.keys {
		if k.usage != usage || !k.listed(now) {
			continue
		}
		if publicKeyID != "" && k.publicKeyID != publicKeyID {
			continue
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b *mfKey) int { return b.validFrom.Compare(a.validFrom) })
	return keys, len(keys) > 0
}

// decryptOAEP decrypts ciphertext with RSA-OAEP, SHA-256 for both the digest and MGF1 and an
// empty label, trying each candidate key.
func decryptOAEP(keys []*mfKey, ciphertext []byte) ([]byte, bool) {
	for _, k := range keys {
		pt, err := rsa.DecryptOAEP(sha256.New(), nil, k.priv, ciphertext, nil)
		if err == nil {
			return pt, true
		}
	}
	return nil, false
}

type publicKeyCertificate struct {
	Certificate   []byte   `json:"certificate"`
	CertificateID string   `json:"certificateId"`
	PublicKeyID   string   `json:"publicKeyId"`
	ValidFrom     apiTime  `json:"validFrom"`
	ValidTo       apiTime  `json:"validTo"`
	Usage         []string `json:"usage"`
}

// GET /security/public-key-certificates
func (e *Emulator) handlePublicKeys(q *request) {
	e.mu.Lock()
	out := []publicKeyCertificate{}
	for _, k := range e.keys {
		if !k.listed(q.now) {
			continue
		}
		out = append(out, publicKeyCertificate{
			Certificate:   k.der,
			CertificateID: k.certID,
			PublicKeyID:   k.publicKeyID,
			ValidFrom:     apiTime(k.validFrom),
			ValidTo:       apiTime(k.validTo),
			Usage:         []string{k.usage},
		})
	}
	e.mu.Unlock()
	q.json(http.StatusOK, out)
}
