package ksef

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"
)

// CertificateLimit is one limit on KSeF certificates and how much of it is left.
type CertificateLimit struct {
	Remaining int `json:"remaining"`
	Limit     int `json:"limit"`
}

// CertificateLimits are the authenticated subject's limits on certificate enrollments and active
// KSeF certificates (by default NIP 300/100, PESEL and fingerprint 12/6).
type CertificateLimits struct {
	CanRequest  bool             `json:"canRequest"` // a new enrollment would be accepted
	Enrollment  CertificateLimit `json:"enrollment"`
	Certificate CertificateLimit `json:"certificate"`
}

// CertificateLimits fetches the authenticated subject's certificate limits (GET
// /certificates/limits).
func (c *Client) CertificateLimits(ctx context.Context) (*CertificateLimits, error) {
	const op = "CertificateLimits"
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/certificates/limits"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var l CertificateLimits
	if err := c.do(req, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// EnrollmentData are the subject attributes (X.500 DN) a certificate signing request must carry,
// exactly, for KSeF to issue a certificate: KSeF takes them from the certificate used to log in.
// Empty fields are absent.
type EnrollmentData struct {
	CommonName             string `json:"commonName"`             // 2.5.4.3
	CountryName            string `json:"countryName"`            // 2.5.4.6
	GivenName              string `json:"givenName"`              // 2.5.4.42, persons
	Surname                string `json:"surname"`                // 2.5.4.4, persons
	SerialNumber           string `json:"serialNumber"`           // 2.5.4.5, persons: e.g. TINPL-<NIP>, PNOPL-<PESEL>
	UniqueIdentifier       string `json:"uniqueIdentifier"`       // 2.5.4.45
	OrganizationName       string `json:"organizationName"`       // 2.5.4.10, seals
	OrganizationIdentifier string `json:"organizationIdentifier"` // 2.5.4.97, seals
}

// EnrollmentData fetches the subject attributes for a certificate signing request (GET
// /certificates/enrollments/data). KSeF gives them only after an XAdES login (25001 after a
// token login). Pass them to NewCSR.
func (c *Client) EnrollmentData(ctx context.Context) (*EnrollmentData, error) {
	const op = "EnrollmentData"
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/certificates/enrollments/data"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var d EnrollmentData
	if err := c.do(req, &d); err != nil {
		return nil, err
	}
	if d.CommonName == "" || d.CountryName == "" {
		return nil, fmt.Errorf("ksef: %s: response lacks the common name or the country", op)
	}
	return &d, nil
}

// OIDs of the enrollment data attributes that testcert.go does not name.
var oidUniqueIdentifier = asn1.ObjectIdentifier{2, 5, 4, 45}

// NewCSR builds a PKCS#10 certificate signing request (DER) for KSeF: the subject holds exactly
// the attributes of data, in the order and string types of the official SDKs (UTF8String, with
// countryName and serialNumber as PrintableString), and is signed by key. KSeF accepts only RSA
// keys of 2048 bits (signed here with PKCS #1 v1.5, SHA-256) and ECDSA keys on P-256 (ECDSA,
// SHA-256; the recommended kind); other keys would be refused with 25010.
func NewCSR(data *EnrollmentData, key crypto.Signer) ([]byte, error) {
	if data == nil || key == nil {
		return nil, errors.New("ksef: NewCSR: enrollment data and key are required")
	}
	if data.CommonName == "" || data.CountryName == "" {
		return nil, errors.New("ksef: NewCSR: enrollment data lacks the common name or the country")
	}
	var alg x509.SignatureAlgorithm
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() != 2048 {
			return nil, fmt.Errorf("ksef: NewCSR: RSA key has %d bits; KSeF accepts 2048 only", pub.N.BitLen())
		}
		alg = x509.SHA256WithRSA
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, fmt.Errorf("ksef: NewCSR: EC key on %s; KSeF accepts P-256 only", pub.Curve.Params().Name)
		}
		alg = x509.ECDSAWithSHA256
	default:
		return nil, fmt.Errorf("ksef: NewCSR: %T keys are not accepted by KSeF (RSA 2048 or ECDSA P-256)", pub)
	}
	subject, err := csrSubject(data)
	if err != nil {
		return nil, fmt.Errorf("ksef: NewCSR: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		RawSubject:         subject,
		SignatureAlgorithm: alg,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("ksef: NewCSR: %w", err)
	}
	return der, nil
}

// printable matches the ASN.1 PrintableString alphabet.
var printable = regexp.MustCompile(`^[A-Za-z0-9 '()+,\-./:=?]*$`)

// csrSubject encodes the DN of data: one attribute per RDN, in the official SDK's order.
func csrSubject(d *EnrollmentData) ([]byte, error) {
	attrs := []struct {
		oid       asn1.ObjectIdentifier
		value     string
		printable bool
	}{
		{oidCommonName, d.CommonName, false},
		{oidSurname, d.Surname, false},
		{oidGivenName, d.GivenName, false},
		{oidOrganization, d.OrganizationName, false},
		{oidOrganizationIdentifier, d.OrganizationIdentifier, false},
		{oidCountry, d.CountryName, true},
		{oidSerialNumber, d.SerialNumber, true},
		{oidUniqueIdentifier, d.UniqueIdentifier, false},
	}
	var rdns pkix.RDNSequence
	for _, a := range attrs {
		if a.value == "" {
			continue
		}
		tag := asn1.TagUTF8String
		if a.printable && printable.MatchString(a.value) {
			tag = asn1.TagPrintableString
		}
		rdns = append(rdns, pkix.RelativeDistinguishedNameSET{{
			Type:  a.oid,
			Value: asn1.RawValue{Class: asn1.ClassUniversal, Tag: tag, Bytes: []byte(a.value)},
		}})
	}
	b, err := asn1.Marshal(rdns)
	if err != nil {
		return nil, fmt.Errorf("encode subject: %w", err)
	}
	return b, nil
}

// CertificateType is the kind of a KSeF certificate; a certificate has exactly one.
type CertificateType string

// Certificate types.
const (
	// CertificateAuthentication certificates log in with XAdES (keyUsage digitalSignature).
	CertificateAuthentication CertificateType = "Authentication"
	// CertificateOffline certificates only sign QR code II of offline invoices (keyUsage
	// nonRepudiation); they cannot log in.
	CertificateOffline CertificateType = "Offline"
)

// EnrollmentRequest asks KSeF to issue a certificate.
type EnrollmentRequest struct {
	CertificateName string          // 5-100 characters: letters (Polish too), digits, spaces, '_' and '-'
	CertificateType CertificateType // Authentication or Offline
	CSR             []byte          // PKCS#10, DER, as NewCSR makes it
	ValidFrom       *time.Time      // nil: valid from issuance
}

var certificateNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_\- ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]+$`)

// Enroll submits a certificate enrollment (POST /certificates/enrollments), possible only after
// an XAdES login. Poll EnrollmentStatus until it is 200 (CertificateSerialNumber set), then
// RetrieveCertificates. KSeF refuses CSRs whose subject differs from EnrollmentData (25003),
// malformed or badly signed ones (25004), wrong keys (25010) and signature algorithms (25011),
// and enrollments over the limits (25006, 25007). Not retried after a 5xx.
func (c *Client) Enroll(ctx context.Context, r EnrollmentRequest) (*OperationRef, error) {
	const op = "Enroll"
	switch {
	case !runesBetween(r.CertificateName, 5, 100) || !certificateNamePattern.MatchString(r.CertificateName):
		return nil, fmt.Errorf("ksef: %s: certificate name must have 5-100 letters, digits, spaces, '_' or '-'", op)
	case r.CertificateType != CertificateAuthentication && r.CertificateType != CertificateOffline:
		return nil, fmt.Errorf("ksef: %s: certificate type %q is not Authentication or Offline", op, r.CertificateType)
	case len(r.CSR) == 0:
		return nil, fmt.Errorf("ksef: %s: empty CSR", op)
	}
	body := struct {
		CertificateName string          `json:"certificateName"`
		CertificateType CertificateType `json:"certificateType"`
		CSR             []byte          `json:"csr"`
		ValidFrom       string          `json:"validFrom,omitempty"`
	}{CertificateName: r.CertificateName, CertificateType: r.CertificateType, CSR: r.CSR}
	if r.ValidFrom != nil {
		body.ValidFrom = r.ValidFrom.UTC().Format(time.RFC3339Nano)
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/certificates/enrollments"), body)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w operationRefWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	return w.ref(op)
}

// EnrollmentStatus is the state of a certificate enrollment. Status.Code: 100 accepted, 200
// certificate issued (CertificateSerialNumber set), 400 refused (Status.Details say why: the
// public key is certified for another subject, the certificate limit is reached), 500 unknown
// error, 550 cancelled by the system (try again).
type EnrollmentStatus struct {
	RequestDate             time.Time
	Status                  Status
	CertificateSerialNumber string // 16 upper-case hex characters
}

// EnrollmentStatus makes one status call for a certificate enrollment (GET
// /certificates/enrollments/{referenceNumber}). KSeF keeps it for 30 days, then answers 410.
func (c *Client) EnrollmentStatus(ctx context.Context, referenceNumber string) (*EnrollmentStatus, error) {
	const op = "EnrollmentStatus"
	if referenceNumber == "" {
		return nil, fmt.Errorf("ksef: %s: empty reference number", op)
	}
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/certificates/enrollments/{referenceNumber}", referenceNumber), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w struct {
		RequestDate             apiTime `json:"requestDate"`
		Status                  Status  `json:"status"`
		CertificateSerialNumber string  `json:"certificateSerialNumber"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	return &EnrollmentStatus{RequestDate: w.RequestDate.Time, Status: w.Status, CertificateSerialNumber: w.CertificateSerialNumber}, nil
}

// RetrievedCertificate is a KSeF certificate as POST /certificates/retrieve returns it.
type RetrievedCertificate struct {
	SerialNumber string
	Certificate  []byte // DER
	Name         string
	Type         CertificateType
}

// X509 parses the certificate.
func (r RetrievedCertificate) X509() (*x509.Certificate, error) {
	cert, err := x509.ParseCertificate(r.Certificate)
	if err != nil {
		return nil, fmt.Errorf("ksef: certificate %s: %w", r.SerialNumber, err)
	}
	return cert, nil
}

var certificateSerialPattern = regexp.MustCompile(`^[0-9A-F]{16}$`)

// RetrieveCertificates downloads KSeF certificates by serial number, 1 to 10 at a time (POST
// /certificates/retrieve).
func (c *Client) RetrieveCertificates(ctx context.Context, serials []string) ([]RetrievedCertificate, error) {
	const op = "RetrieveCertificates"
	if len(serials) == 0 || len(serials) > 10 {
		return nil, fmt.Errorf("ksef: %s: %d serial numbers; give 1-10", op, len(serials))
	}
	for _, s := range serials {
		if !certificateSerialPattern.MatchString(s) {
			return nil, fmt.Errorf("ksef: %s: serial number %q is not 16 upper-case hex characters", op, s)
		}
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/certificates/retrieve"), struct {
		Serials []string `json:"certificateSerialNumbers"`
	}{serials})
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.repeatable = op, true // read-only
	var w struct {
		Certificates []struct {
			Certificate             []byte          `json:"certificate"`
			CertificateName         string          `json:"certificateName"`
			CertificateSerialNumber string          `json:"certificateSerialNumber"`
			CertificateType         CertificateType `json:"certificateType"`
		} `json:"certificates"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	out := make([]RetrievedCertificate, len(w.Certificates))
	for i, cw := range w.Certificates {
		out[i] = RetrievedCertificate{SerialNumber: cw.CertificateSerialNumber, Certificate: cw.Certificate, Name: cw.CertificateName, Type: cw.CertificateType}
	}
	return out, nil
}

// CertificateStatus is the state of a KSeF certificate.
type CertificateStatus string

// Certificate states.
const (
	CertificateActive  CertificateStatus = "Active"
	CertificateBlocked CertificateStatus = "Blocked" // being revoked
	CertificateRevoked CertificateStatus = "Revoked"
	CertificateExpired CertificateStatus = "Expired"
)

// CertificateQuery filters QueryCertificates; the zero value lists every certificate.
type CertificateQuery struct {
	SerialNumber string            // exact
	Name         string            // part of the name
	Type         CertificateType   // "" for both
	Status       CertificateStatus // "" for any
	ExpiresAfter time.Time         // zero for no limit
}

// CertificateInfo describes a KSeF certificate of the authenticated subject.
type CertificateInfo struct {
	SerialNumber string
	Name         string
	Type         CertificateType
	CommonName   string
	Status       CertificateStatus
	Subject      SubjectIdentifier // whom it identifies
	ValidFrom    time.Time
	ValidTo      time.Time
	LastUseDate  time.Time // zero if never used
	RequestDate  time.Time
}

// CertificatePage is one page of QueryCertificates, newest enrollment first.
type CertificatePage struct {
	Certificates []CertificateInfo
	HasMore      bool // ask for the next PageOffset
}

// QueryCertificates lists the authenticated subject's KSeF certificates (POST
// /certificates/query). PageSize, if set, must be 10-50.
func (c *Client) QueryCertificates(ctx context.Context, filter CertificateQuery, page PageRequest) (*CertificatePage, error) {
	const op = "QueryCertificates"
	if filter.SerialNumber != "" && !certificateSerialPattern.MatchString(filter.SerialNumber) {
		return nil, fmt.Errorf("ksef: %s: serial number %q is not 16 upper-case hex characters", op, filter.SerialNumber)
	}
	body := struct {
		SerialNumber string            `json:"certificateSerialNumber,omitempty"`
		Name         string            `json:"name,omitempty"`
		Type         CertificateType   `json:"type,omitempty"`
		Status       CertificateStatus `json:"status,omitempty"`
		ExpiresAfter string            `json:"expiresAfter,omitempty"`
	}{SerialNumber: filter.SerialNumber, Name: filter.Name, Type: filter.Type, Status: filter.Status}
	if !filter.ExpiresAfter.IsZero() {
		body.ExpiresAfter = filter.ExpiresAfter.UTC().Format(time.RFC3339Nano)
	}
	var w struct {
		Certificates []struct {
			CertificateSerialNumber string            `json:"certificateSerialNumber"`
			Name                    string            `json:"name"`
			Type                    CertificateType   `json:"type"`
			CommonName              string            `json:"commonName"`
			Status                  CertificateStatus `json:"status"`
			SubjectIdentifier       SubjectIdentifier `json:"subjectIdentifier"`
			ValidFrom               apiTime           `json:"validFrom"`
			ValidTo                 apiTime           `json:"validTo"`
			LastUseDate             apiTime           `json:"lastUseDate"`
			RequestDate             apiTime           `json:"requestDate"`
		} `json:"certificates"`
		HasMore bool `json:"hasMore"`
	}
	if err := c.query(ctx, op, "/certificates/query", page, 50, body, &w); err != nil {
		return nil, err
	}
	out := &CertificatePage{HasMore: w.HasMore, Certificates: make([]CertificateInfo, len(w.Certificates))}
	for i, cw := range w.Certificates {
		out.Certificates[i] = CertificateInfo{
			SerialNumber: cw.CertificateSerialNumber, Name: cw.Name, Type: cw.Type, CommonName: cw.CommonName,
			Status: cw.Status, Subject: cw.SubjectIdentifier, ValidFrom: cw.ValidFrom.Time, ValidTo: cw.ValidTo.Time,
			LastUseDate: cw.LastUseDate.Time, RequestDate: cw.RequestDate.Time,
		}
	}
	return out, nil
}

// RevocationReason says why a certificate is revoked.
type RevocationReason string

// Revocation reasons.
const (
	RevocationUnspecified   RevocationReason = "Unspecified"
	RevocationSuperseded    RevocationReason = "Superseded"
	RevocationKeyCompromise RevocationReason = "KeyCompromise"
)

// RevokeCertificate revokes one of the authenticated subject's KSeF certificates (POST
// /certificates/{serial}/revoke); reason "" sends none. It is not available after a token login
// (403). KSeF answers 25008 for an unknown certificate and 25009 for one that is already
// revoked, blocked or expired.
func (c *Client) RevokeCertificate(ctx context.Context, serial string, reason RevocationReason) error {
	const op = "RevokeCertificate"
	if !certificateSerialPattern.MatchString(serial) {
		return fmt.Errorf("ksef: %s: serial number %q is not 16 upper-case hex characters", op, serial)
	}
	switch reason {
	case "", RevocationUnspecified, RevocationSuperseded, RevocationKeyCompromise:
	default:
		return fmt.Errorf("ksef: %s: unknown revocation reason %q", op, reason)
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/certificates/{certificateSerialNumber}/revoke", serial), struct {
		RevocationReason RevocationReason `json:"revocationReason,omitempty"`
	}{reason})
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	return c.do(req, nil)
}
