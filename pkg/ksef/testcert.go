package ksef

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"time"
)

// KeyType selects the key algorithm of a test certificate.
type KeyType string

// Key types of test certificates.
const (
	KeyRSA   KeyType = "rsa"   // RSA 2048, XAdES signature method rsa-sha256
	KeyECDSA KeyType = "ecdsa" // ECDSA P-256, XAdES signature method ecdsa-sha256
)

// TestCertificateOptions describes a self-signed certificate for XAdES authentication on the KSeF
// TEST environment, which accepts self-signed certificates shaped like qualified ones (DEMO and
// production do not).
//
// A qualified seal (Seal true) identifies a company: its subject holds organizationName,
// organizationIdentifier (OID 2.5.4.97) "VATPL-<NIP>", commonName and countryName PL. A personal
// certificate identifies a person by NIP or PESEL: its subject holds givenName, surname,
// serialNumber (OID 2.5.4.5) "TINPL-<NIP>" or "PNOPL-<PESEL>", commonName and countryName PL.
type TestCertificateOptions struct {
	NIP   string // the seal's NIP, or the person's NIP; 10 digits in the OpenAPI Nip format
	PESEL string // the person's PESEL (11 digits); only without NIP, never for a seal
	Seal  bool   // a company seal (organizationIdentifier VATPL-<NIP>) instead of a person

	CommonName   string // default: GivenName + " " + Surname for a person, Organization for a seal
	GivenName    string // person only; default "Jan"
	Surname      string // person only; default "Testowy"
	Organization string // seal only; default "Test Organization <NIP>"

	KeyType KeyType   // KeyRSA (the default) or KeyECDSA
	Now     time.Time // the current time; zero means time.Now()
}

// Validity of test certificates. The official SDK back-dates notBefore by 61 minutes to protect
// against KSeF clocks that are behind, and makes the certificate valid for two years.
const (
	testCertBackdate = 61 * time.Minute
	testCertYears    = 2
)

var (
	oidCommonName             = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSurname                = asn1.ObjectIdentifier{2, 5, 4, 4}
	oidSerialNumber           = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidCountry                = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidOrganization           = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidGivenName              = asn1.ObjectIdentifier{2, 5, 4, 42}
	oidOrganizationIdentifier = asn1.ObjectIdentifier{2, 5, 4, 97}

	// peselPattern is the OpenAPI schema Pesel.
	peselPattern = regexp.MustCompile(`^\d{2}(?:0[1-9]|1[0-2]|2[1-9]|3[0-2]|4[1-9]|5[0-2]|6[1-9]|7[0-2]|8[1-9]|9[0-2])\d{7}$`)
)

// NewTestCertificate creates a self-signed certificate and its private key for XAdES
// authentication on the KSeF TEST environment. The certificate is valid from Now minus 61 minutes
// for two years, has a random 127-bit serial number and the key usages digitalSignature and
// nonRepudiation, and is signed with SHA-256 (PKCS #1 v1.5 for RSA).
func NewTestCertificate(opts TestCertificateOptions) (*x509.Certificate, crypto.Signer, error) {
	subject, err := testCertificateSubject(opts)
	if err != nil {
		return nil, nil, err
	}
	rawSubject, err := asn1.Marshal(subject)
	if err != nil {
		return nil, nil, fmt.Errorf("ksef: test certificate: encode subject: %w", err)
	}

	var key crypto.Signer
	sigAlg := x509.SHA256WithRSA
	switch opts.KeyType {
	case KeyRSA, "":
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	case KeyECDSA:
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		sigAlg = x509.ECDSAWithSHA256
	default:
		return nil, nil, fmt.Errorf("ksef: test certificate: unknown key type %q (want %q or %q)", opts.KeyType, KeyRSA, KeyECDSA)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ksef: test certificate: generate key: %w", err)
	}

	// A random serial in [1, 2^127-1]: positive and at most 16 octets, as RFC 5280 requires.
	limit := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 127), big.NewInt(1))
	serial, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, nil, fmt.Errorf("ksef: test certificate: serial number: %w", err)
	}
	serial.Add(serial, big.NewInt(1))

	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            rawSubject,
		NotBefore:             now.Add(-testCertBackdate).UTC().Truncate(time.Second),
		NotAfter:              now.AddDate(testCertYears, 0, 0).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		SignatureAlgorithm:    sigAlg,
		BasicConstraintsValid: true, // cA FALSE: an end-entity certificate that happens to be self-signed
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, key.Public(), key)
	if err != nil {
		return nil, nil, fmt.Errorf("ksef: test certificate: create: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("ksef: test certificate: parse: %w", err)
	}
	return cert, key, nil
}

// testCertificateSubject validates opts and returns the subject, most significant RDN first
// (C, then the identifying attributes, then CN), which prints in the usual order CN=..., C=PL.
func testCertificateSubject(opts TestCertificateOptions) (pkix.RDNSequence, error) {
	rdn := func(oid asn1.ObjectIdentifier, value string) pkix.RelativeDistinguishedNameSET {
		return pkix.RelativeDistinguishedNameSET{{Type: oid, Value: value}}
	}
	if opts.NIP != "" && !ValidNIP(opts.NIP) {
		return nil, errors.New("ksef: test certificate: NIP is not 10 digits in the NIP format")
	}
	if opts.PESEL != "" && !peselPattern.MatchString(opts.PESEL) {
		return nil, errors.New("ksef: test certificate: PESEL is not 11 digits in the PESEL format")
	}

	if opts.Seal {
		if opts.NIP == "" || opts.PESEL != "" {
			return nil, errors.New("ksef: test certificate: a seal needs a NIP and no PESEL")
		}
		if opts.GivenName != "" || opts.Surname != "" {
			return nil, errors.New("ksef: test certificate: a seal must not have a given name or surname")
		}
		org := opts.Organization
		if org == "" {
			org = "Test Organization " + opts.NIP
		}
		cn := opts.CommonName
		if cn == "" {
			cn = org
		}
		return pkix.RDNSequence{
			rdn(oidCountry, "PL"),
			rdn(oidOrganization, org),
			rdn(oidOrganizationIdentifier, "VATPL-"+opts.NIP),
			rdn(oidCommonName, cn),
		}, nil
	}

	var serialNumber string
	switch {
	case opts.NIP != "" && opts.PESEL != "":
		return nil, errors.New("ksef: test certificate: set either NIP or PESEL for a person, not both")
	case opts.NIP != "":
		serialNumber = "TINPL-" + opts.NIP
	case opts.PESEL != "":
		serialNumber = "PNOPL-" + opts.PESEL
	default:
		return nil, errors.New("ksef: test certificate: a person needs a NIP or a PESEL")
	}
	if opts.Organization != "" {
		return nil, errors.New("ksef: test certificate: Organization is for seals only")
	}
	given, surname := opts.GivenName, opts.Surname
	if given == "" {
		given = "Jan"
	}
	if surname == "" {
		surname = "Testowy"
	}
	cn := opts.CommonName
	if cn == "" {
		cn = given + " " + surname
	}
	return pkix.RDNSequence{
		rdn(oidCountry, "PL"),
		rdn(oidSurname, surname),
		rdn(oidGivenName, given),
		rdn(oidSerialNumber, serialNumber),
		rdn(oidCommonName, cn),
	}, nil
}

// EncodePEM encodes a certificate as a PEM "CERTIFICATE" block and its private key as a PKCS #8
// PEM "PRIVATE KEY" block. keyPEM is secret: store it like one.
func EncodePEM(cert *x509.Certificate, key crypto.Signer) (certPEM, keyPEM []byte, err error) {
	if cert == nil || key == nil {
		return nil, nil, errors.New("ksef: encode PEM: certificate and key are required")
	}
	if err := checkKeyMatchesCertificate(cert, key); err != nil {
		return nil, nil, fmt.Errorf("ksef: encode PEM: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("ksef: encode PEM: private key: %w", err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	return certPEM, keyPEM, nil
}

// ParsePEM parses a certificate and its private key from PEM. certPEM may hold a chain: the first
// CERTIFICATE block is the signing certificate, the rest is ignored. keyPEM may be PKCS #8
// ("PRIVATE KEY"), PKCS #1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE KEY", optionally preceded by
// "EC PARAMETERS"); encrypted keys are not supported. The key must belong to the certificate and be
// an RSA or ECDSA key. Errors never contain key material.
func ParsePEM(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	cert, err := parseCertificatePEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := parsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	if err := checkKeyMatchesCertificate(cert, key); err != nil {
		return nil, nil, fmt.Errorf("ksef: parse PEM: %w", err)
	}
	return cert, key, nil
}

func parseCertificatePEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("ksef: parse PEM: no CERTIFICATE block")
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ksef: parse PEM: certificate: %w", err)
		}
		return cert, nil
	}
}

func parsePrivateKeyPEM(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("ksef: parse PEM: no private key block")
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("ksef: parse PEM: encrypted private keys are not supported")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue // EC PARAMETERS, certificates and anything else
		}
		if err != nil {
			// The x509 errors describe the structure only, never the key bytes.
			return nil, fmt.Errorf("ksef: parse PEM: %s block: %w", block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey:
			return k, nil
		case *ecdsa.PrivateKey:
			return k, nil
		default:
			return nil, fmt.Errorf("ksef: parse PEM: unsupported private key type %T (want RSA or ECDSA)", key)
		}
	}
}

// checkKeyMatchesCertificate reports an error if key is not the private key of cert.
func checkKeyMatchesCertificate(cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return errors.New("private key does not match the certificate")
	}
	return nil
}
