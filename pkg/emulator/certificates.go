package emulator

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
)

// CertificateEnrollmentDelay is how long a certificate enrollment stays in status 100 before the
// certificate is issued (status 200).
const CertificateEnrollmentDelay = time.Second

// CertificateRevocationDelay is how long a revoked KSeF certificate stays Blocked before it is
// Revoked. It cannot be used from the moment it is revoked.
const CertificateRevocationDelay = time.Second

const (
	// refEnrollment is the type code of enrollment reference numbers, as in the example of POST
	// /certificates/enrollments.
	refEnrollment = "EH"
	// enrollmentRetention is how long GET /certificates/enrollments/{ref} answers before 410.
	enrollmentRetention = 30 * 24 * time.Hour
	// certificateYears is the validity of a KSeF certificate.
	certificateYears = 2
)

// KSeF certificate types and statuses.
const (
	certAuthentication = "Authentication"
	certOffline        = "Offline"

	certActive  = "Active"
	certBlocked = "Blocked"
	certRevoked = "Revoked"
	certExpired = "Expired"
)

var (
	oidCommonName       = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidSurname          = asn1.ObjectIdentifier{2, 5, 4, 4}
	oidSerialNumber     = asn1.ObjectIdentifier{2, 5, 4, 5}
	oidCountry          = asn1.ObjectIdentifier{2, 5, 4, 6}
	oidOrganization     = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidGivenName        = asn1.ObjectIdentifier{2, 5, 4, 42}
	oidUniqueIdentifier = asn1.ObjectIdentifier{2, 5, 4, 45}

	reCertificateName = regexp.MustCompile(`^[a-zA-Z0-9_\- ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]+$`)
	reCertificateSN   = regexp.MustCompile(`^[0-9A-F]{16}$`)
)

// csrSignatureAlgorithms are the CSR signature algorithms KSeF accepts: RSA PKCS#1 v1.5, RSA-PSS
// and ECDSA with SHA-1 or SHA-2.
var csrSignatureAlgorithms = []x509.SignatureAlgorithm{
	x509.SHA1WithRSA, x509.SHA256WithRSA, x509.SHA384WithRSA, x509.SHA512WithRSA,
	x509.SHA256WithRSAPSS, x509.SHA384WithRSAPSS, x509.SHA512WithRSAPSS,
	x509.ECDSAWithSHA1, x509.ECDSAWithSHA256, x509.ECDSAWithSHA384, x509.ECDSAWithSHA512,
}

// certAuthority is the emulator's "KSeF CA", which signs the KSeF certificates it issues.
type certAuthority struct {
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func newCertAuthority(now time.Time) (*certAuthority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(randomBytes(8)),
		Subject:               pkix.Name{CommonName: "KSeF CA (emulator)", Organization: []string{"Emulator KSeF"}, Country: []string{"PL"}},
		NotBefore:             now.Add(-24 * time.Hour).UTC().Truncate(time.Second),
		NotAfter:              now.AddDate(20, 0, 0).UTC().Truncate(time.Second),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return &certAuthority{key: key, cert: cert}, nil
}

// ksefCert is a KSeF certificate the emulator issued.
type ksefCert struct {
	serial    string // 16 upper-case hex characters
	name      string
	typ       string // certAuthentication or certOffline
	owner     subjectID
	cert      *x509.Certificate
	requested time.Time
	issued    time.Time // the enrollment's end: retrievable from then on
	lastUse   time.Time
	revoked   time.Time // zero, or when it was revoked
}

func (c *ksefCert) status(now time.Time) string {
	switch {
	case !c.revoked.IsZero() && now.Before(c.revoked.Add(CertificateRevocationDelay)):
		return certBlocked
	case !c.revoked.IsZero():
		return certRevoked
	case now.After(c.cert.NotAfter):
		return certExpired
	}
	return certActive
}

// loginProblem is the status 460 detail of an XAdES login with the certificate, or "".
func (c *ksefCert) loginProblem(now time.Time) string {
	switch {
	case c.typ != certAuthentication:
		return "Niepoprawny certyfikat" // an Offline certificate only signs QR codes
	case c.status(now) == certBlocked:
		return "Certyfikat zawieszony"
	case c.status(now) == certRevoked:
		return "Certyfikat odwołany"
	}
	return ""
}

// identity is who a KSeF certificate stands for: the subject that enrolled it, whatever its
// subject names say.
func (c *ksefCert) identity() certIdentity {
	id := certIdentity{
		legacy: "InternalCertificate",
		info:   methodInfo{Category: "XadesSignature", Code: "xades.internal-certificate", DisplayName: "Certyfikat KSeF"},
	}
	switch c.owner.Type {
	case subjectNip:
		id.nip = c.owner.Value
	case subjectPesel:
		id.pesel = c.owner.Value
	default:
		id.fingerprint = c.owner.Value
	}
	return id
}

// issuedCertificateLocked returns the KSeF certificate cert is, if the emulator issued it.
func (e *Emulator) issuedCertificateLocked(cert *x509.Certificate) *ksefCert {
	if cert == nil || cert.SerialNumber == nil {
		return nil
	}
	kc := e.st.creds.certs[serialHex(cert.SerialNumber)]
	if kc == nil || !bytes.Equal(kc.cert.Raw, cert.Raw) {
		return nil
	}
	return kc
}

func serialHex(n *big.Int) string { return fmt.Sprintf("%016X", n) }

// enrollment is a certificate enrollment (POST /certificates/enrollments).
type enrollment struct {
	ref       string
	owner     subjectID
	requested time.Time
	readyAt   time.Time
	outcome   statusInfo
	cert      *ksefCert // nil when refused
}

func (n *enrollment) status(now time.Time) statusInfo {
	if now.Before(n.readyAt) {
		return statusInfo{Code: 100, Description: "Wniosek przyjęty do realizacji"}
	}
	return n.outcome
}

// certificateLimits are the documented limits per authenticated subject: enrollments and active
// certificates (NIP 300/100, PESEL and fingerprint 12/6).
func certificateLimits(owner subjectID) (enrollments, certificates int) {
	if owner.Type == subjectNip {
		return 300, 100
	}
	return 12, 6
}

// certificateUsageLocked counts the subject's enrollments and its certificates that are active
// or being issued.
func (e *Emulator) certificateUsageLocked(owner subjectID, now time.Time) (enrollments, active int) {
	for _, n := range e.st.creds.enrollList {
		if !n.owner.is(owner) {
			continue
		}
		enrollments++
		if n.cert != nil && n.cert.status(now) == certActive {
			active++
		}
	}
	return enrollments, active
}

type certificateLimit struct {
	Remaining int `json:"remaining"`
	Limit     int `json:"limit"`
}

// GET /certificates/limits
func (e *Emulator) handleCertificateLimits(q *request) {
	owner := authorOf(q.principal())
	maxEnroll, maxCerts := certificateLimits(owner)
	e.mu.Lock()
	used, active := e.certificateUsageLocked(owner, q.now)
	e.mu.Unlock()
	enroll := certificateLimit{Remaining: max(maxEnroll-used, 0), Limit: maxEnroll}
	certs := certificateLimit{Remaining: max(maxCerts-active, 0), Limit: maxCerts}
	q.json(http.StatusOK, struct {
		CanRequest  bool             `json:"canRequest"`
		Enrollment  certificateLimit `json:"enrollment"`
		Certificate certificateLimit `json:"certificate"`
	}{enroll.Remaining > 0 && certs.Remaining > 0, enroll, certs})
}

// GET /limits/subject
func (e *Emulator) handleSubjectLimits(q *request) {
	maxEnroll, maxCerts := certificateLimits(authorOf(q.principal()))
	type enrollmentLimits struct {
		MaxEnrollments int `json:"maxEnrollments"`
	}
	type certificateLimits struct {
		MaxCertificates int `json:"maxCertificates"`
	}
	q.json(http.StatusOK, struct {
		Enrollment  enrollmentLimits  `json:"enrollment"`
		Certificate certificateLimits `json:"certificate"`
	}{enrollmentLimits{maxEnroll}, certificateLimits{maxCerts}})
}

type enrollmentData struct {
	CommonName             string `json:"commonName"`
	CountryName            string `json:"countryName"`
	GivenName              string `json:"givenName,omitempty"`
	Surname                string `json:"surname,omitempty"`
	SerialNumber           string `json:"serialNumber,omitempty"`
	UniqueIdentifier       string `json:"uniqueIdentifier,omitempty"`
	OrganizationName       string `json:"organizationName,omitempty"`
	OrganizationIdentifier string `json:"organizationIdentifier,omitempty"`
}

// attributes returns the subject attributes a CSR must carry, by OID.
func (d enrollmentData) attributes() map[string]string {
	out := map[string]string{}
	for _, a := range []struct {
		oid   asn1.ObjectIdentifier
		value string
	}{
		{oidCommonName, d.CommonName}, {oidCountry, d.CountryName}, {oidGivenName, d.GivenName},
		{oidSurname, d.Surname}, {oidSerialNumber, d.SerialNumber}, {oidUniqueIdentifier, d.UniqueIdentifier},
		{oidOrganization, d.OrganizationName}, {oidOrganizationIdentifier, d.OrganizationIdentifier},
	} {
		if a.value != "" {
			out[a.oid.String()] = a.value
		}
	}
	return out
}

// nameValues returns the string values of the attribute oid in a name, in order.
func nameValues(n pkix.Name, oid asn1.ObjectIdentifier) []string {
	var out []string
	for _, a := range n.Names {
		if s, ok := a.Value.(string); ok && a.Type.Equal(oid) {
			out = append(out, s)
		}
	}
	return out
}

// enrollmentDataFor derives the enrollment data from the certificate of an XAdES login, as KSeF
// does: the identifying attribute in its normalised form (serialNumber TINPL-<NIP> or
// PNOPL-<PESEL> for a person, organizationIdentifier VATPL-<NIP> for a seal), the names as the
// certificate has them, and a uniqueIdentifier stable for the subject.
func enrollmentDataFor(p *principal) enrollmentData {
	subject := p.cert.Subject
	first := func(oid asn1.ObjectIdentifier) string {
		if v := nameValues(subject, oid); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	d := enrollmentData{
		CommonName:       first(oidCommonName),
		CountryName:      first(oidCountry),
		UniqueIdentifier: stableUUID(p.subject.Type + ":" + strings.ToUpper(p.subject.Value)),
	}
	if d.CommonName == "" {
		d.CommonName = p.subject.Value
	}
	if d.CountryName == "" {
		d.CountryName = "PL"
	}
	isSeal := slices.ContainsFunc(nameValues(subject, oidOrganizationIdentifier), reSealNIP.MatchString)
	person := func() {
		d.GivenName = strings.Join(nameValues(subject, oidGivenName), " ")
		d.Surname = strings.Join(nameValues(subject, oidSurname), " ")
	}
	switch {
	case p.subject.Type == subjectNip && isSeal:
		d.OrganizationName = first(oidOrganization)
		if d.OrganizationName == "" {
			d.OrganizationName = d.CommonName
		}
		d.OrganizationIdentifier = "VATPL-" + p.subject.Value
	case p.subject.Type == subjectNip:
		person()
		d.SerialNumber = "TINPL-" + p.subject.Value
	case p.subject.Type == subjectPesel:
		person()
		d.SerialNumber = "PNOPL-" + p.subject.Value
	default: // identified by fingerprint: the certificate's attributes as they are
		person()
		d.SerialNumber = first(oidSerialNumber)
		d.OrganizationName = first(oidOrganization)
		d.OrganizationIdentifier = first(oidOrganizationIdentifier)
	}
	return d
}

// GET /certificates/enrollments/data: only after an XAdES login (25001 otherwise).
func (e *Emulator) handleEnrollmentData(q *request) {
	p := q.principal()
	if p == nil || p.method != methodXAdES || p.cert == nil {
		q.fail(codeCSRDataUnavailable)
		return
	}
	q.json(http.StatusOK, enrollmentDataFor(p))
}

// checkCSR parses and checks a PKCS#10 request: format and signature (25004), key type and size
// (25010), signature algorithm (25011) and subject = enrollment data (25003).
func checkCSR(der []byte, want enrollmentData) (*x509.CertificateRequest, *apiError) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, newAPIError(codeCSRInvalid, "Nie można odczytać wniosku PKCS#10 (DER).")
	}
	switch pub := csr.PublicKey.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() != 2048 {
			return nil, newAPIError(codeCSRKey, fmt.Sprintf("Klucz RSA musi mieć 2048 bitów, ma %d.", pub.N.BitLen()))
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return nil, newAPIError(codeCSRKey, "Klucz EC musi używać krzywej NIST P-256.")
		}
	default:
		return nil, newAPIError(codeCSRKey, "Dozwolone są klucze RSA 2048 i EC P-256.")
	}
	if !slices.Contains(csrSignatureAlgorithms, csr.SignatureAlgorithm) {
		return nil, newAPIError(codeCSRSignatureAlgorithm, fmt.Sprintf("Algorytm podpisu %s nie jest dozwolony.", csr.SignatureAlgorithm))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, newAPIError(codeCSRInvalid, "Podpis wniosku jest nieprawidłowy.")
	}
	wantAttrs := want.attributes()
	got := map[string]string{}
	for _, a := range csr.Subject.Names {
		s, ok := a.Value.(string)
		oid := a.Type.String()
		if _, dup := got[oid]; !ok || dup {
			return nil, newAPIError(codeCSRDataMismatch, fmt.Sprintf("Atrybut %s nie odpowiada danym do wniosku.", oid))
		}
		got[oid] = s
	}
	for oid, v := range wantAttrs {
		if got[oid] != v {
			return nil, newAPIError(codeCSRDataMismatch, fmt.Sprintf("Atrybut %s musi mieć wartość zwróconą przez /certificates/enrollments/data.", oid))
		}
	}
	for oid := range got {
		if _, ok := wantAttrs[oid]; !ok {
			return nil, newAPIError(codeCSRDataMismatch, fmt.Sprintf("Atrybut %s nie występuje w danych do wniosku.", oid))
		}
	}
	return csr, nil
}

type enrollRequest struct {
	CertificateName *string `json:"certificateName"`
	CertificateType *string `json:"certificateType"`
	CSR             *[]byte `json:"csr"`
	ValidFrom       *string `json:"validFrom"`
}

// POST /certificates/enrollments: only after an XAdES login (25002 otherwise).
func (e *Emulator) handleEnroll(q *request) {
	p := q.principal()
	if p == nil || p.method != methodXAdES || p.cert == nil {
		q.fail(codeEnrollmentNotAllowed)
		return
	}
	var req enrollRequest
	if !q.decodeJSON(&req) {
		return
	}
	switch {
	case req.CertificateName == nil || !lengthBetween(*req.CertificateName, 5, 100) || !reCertificateName.MatchString(*req.CertificateName):
		q.fail(codeValidation, "Pole 'certificateName' musi mieć od 5 do 100 znaków: litery, cyfry, spacje, '_' i '-'.")
		return
	case req.CertificateType == nil || (*req.CertificateType != certAuthentication && *req.CertificateType != certOffline):
		q.fail(codeValidation, "Pole 'certificateType' musi mieć wartość Authentication lub Offline.")
		return
	case req.CSR == nil || len(*req.CSR) == 0:
		q.fail(codeValidation, "Pole 'csr' jest wymagane.")
		return
	}
	validFrom := q.now
	if req.ValidFrom != nil {
		t, err := time.Parse(time.RFC3339Nano, *req.ValidFrom)
		if err != nil {
			q.fail(codeValidation, "Pole 'validFrom' nie jest poprawną datą i czasem.")
			return
		}
		validFrom = maxTime(t, q.now)
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	maxEnroll, maxCerts := certificateLimits(p.subject)
	used, active := e.certificateUsageLocked(p.subject, q.now)
	switch {
	case used >= maxEnroll:
		q.fail(codeEnrollmentLimit)
		return
	case active >= maxCerts:
		q.fail(codeCertificateLimit)
		return
	}
	csr, aerr := checkCSR(*req.CSR, enrollmentDataFor(p))
	if aerr != nil {
		q.failWith(aerr)
		return
	}
	n := &enrollment{
		ref:       newReferenceNumber(q.now, refEnrollment),
		owner:     p.subject,
		requested: q.now,
		readyAt:   q.now.Add(CertificateEnrollmentDelay),
	}
	if e.keyCertifiedForOtherLocked(csr.RawSubjectPublicKeyInfo, p.subject) {
		n.outcome = statusInfo{Code: 400, Description: "Wniosek odrzucony", Details: []string{"Klucz publiczny został już certyfikowany przez inny podmiot."}}
	} else {
		kc, err := e.issueCertificateLocked(csr, *req.CertificateType, validFrom, q.now)
		if err != nil {
			q.failWith(err)
			return
		}
		kc.name, kc.owner, kc.requested, kc.issued = *req.CertificateName, p.subject, q.now, n.readyAt
		n.cert = kc
		n.outcome = statusInfo{Code: 200, Description: "Wniosek obsłużony (certyfikat wygenerowany)"}
	}
	e.st.creds.enrollments[n.ref] = n
	e.st.creds.enrollList = append(e.st.creds.enrollList, n)
	q.json(http.StatusAccepted, struct {
		ReferenceNumber string  `json:"referenceNumber"`
		Timestamp       apiTime `json:"timestamp"`
	}{n.ref, apiTime(q.now)})
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// keyCertifiedForOtherLocked reports whether a KSeF certificate of another subject holds the
// public key.
func (e *Emulator) keyCertifiedForOtherLocked(spki []byte, owner subjectID) bool {
	want := sha256.Sum256(spki)
	for _, kc := range e.st.creds.certs {
		if sha256.Sum256(kc.cert.RawSubjectPublicKeyInfo) == want && !kc.owner.is(owner) {
			return true
		}
	}
	return false
}

// issueCertificateLocked signs the CSR's subject and key with the emulator's KSeF CA: keyUsage
// digitalSignature for Authentication, nonRepudiation for Offline, a random 64-bit serial number,
// valid from validFrom for two years.
func (e *Emulator) issueCertificateLocked(csr *x509.CertificateRequest, typ string, validFrom, now time.Time) (*ksefCert, error) {
	if e.st.creds.ca == nil {
		ca, err := newCertAuthority(now)
		if err != nil {
			return nil, fmt.Errorf("emulator: KSeF CA: %w", err)
		}
		e.st.creds.ca = ca
	}
	ca := e.st.creds.ca
	var serial *big.Int
	for serial == nil || serial.Sign() == 0 || e.st.creds.certs[serialHex(serial)] != nil {
		b := randomBytes(8)
		b[0] &= 0x7F // positive
		serial = new(big.Int).SetBytes(b)
	}
	usage := x509.KeyUsageDigitalSignature
	if typ == certOffline {
		usage = x509.KeyUsageContentCommitment
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            csr.RawSubject,
		NotBefore:             validFrom.UTC().Truncate(time.Second),
		NotAfter:              validFrom.AddDate(certificateYears, 0, 0).UTC().Truncate(time.Second),
		KeyUsage:              usage,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, csr.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("emulator: issue certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("emulator: parse issued certificate: %w", err)
	}
	kc := &ksefCert{serial: serialHex(serial), typ: typ, cert: cert}
	e.st.creds.certs[kc.serial] = kc
	return kc, nil
}

// GET /certificates/enrollments/{referenceNumber}
func (e *Emulator) handleEnrollmentStatus(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	owner := authorOf(q.principal())
	e.mu.Lock()
	n := e.st.creds.enrollments[ref]
	var st statusInfo
	serial := ""
	if n != nil {
		st = n.status(q.now)
		if st.Code == 200 {
			serial = n.cert.serial
		}
	}
	e.mu.Unlock()
	switch {
	case n == nil || !n.owner.is(owner):
		q.fail(codeEnrollmentNotFound)
	case !q.now.Before(n.requested.Add(enrollmentRetention)):
		writeProblem(q.w, q.r, http.StatusGone, "Gone", "Operacja wygasła i nie jest już dostępna.", q.now, nil)
	default:
		q.json(http.StatusOK, struct {
			RequestDate             apiTime    `json:"requestDate"`
			Status                  statusInfo `json:"status"`
			CertificateSerialNumber string     `json:"certificateSerialNumber,omitempty"`
		}{apiTime(n.requested), st, serial})
	}
}

// ownedCertificateLocked returns the issued certificate with the serial number if it belongs to
// owner.
func (e *Emulator) ownedCertificateLocked(serial string, owner subjectID, now time.Time) *ksefCert {
	if kc := e.st.creds.certs[serial]; kc != nil && kc.owner.is(owner) && !now.Before(kc.issued) {
		return kc
	}
	return nil
}

// POST /certificates/retrieve: the caller's certificates among the serial numbers, in order;
// serial numbers of certificates the caller does not have are left out.
func (e *Emulator) handleRetrieveCertificates(q *request) {
	var req struct {
		Serials []string `json:"certificateSerialNumbers"`
	}
	if !q.decodeJSON(&req) {
		return
	}
	if len(req.Serials) == 0 || len(req.Serials) > 10 ||
		slices.ContainsFunc(req.Serials, func(s string) bool { return !reCertificateSN.MatchString(s) }) {
		q.fail(codeValidation, "Pole 'certificateSerialNumbers' musi zawierać od 1 do 10 numerów seryjnych (16 znaków szesnastkowych).")
		return
	}
	type item struct {
		Certificate             []byte `json:"certificate"`
		CertificateName         string `json:"certificateName"`
		CertificateSerialNumber string `json:"certificateSerialNumber"`
		CertificateType         string `json:"certificateType"`
	}
	owner := authorOf(q.principal())
	e.mu.Lock()
	out := []item{}
	for _, s := range req.Serials {
		if kc := e.ownedCertificateLocked(s, owner, q.now); kc != nil {
			out = append(out, item{kc.cert.Raw, kc.name, kc.serial, kc.typ})
		}
	}
	e.mu.Unlock()
	q.json(http.StatusOK, struct {
		Certificates []item `json:"certificates"`
	}{out})
}

type certificateListItem struct {
	CertificateSerialNumber string    `json:"certificateSerialNumber"`
	Name                    string    `json:"name"`
	Type                    string    `json:"type"`
	CommonName              string    `json:"commonName"`
	Status                  string    `json:"status"`
	SubjectIdentifier       subjectID `json:"subjectIdentifier"`
	ValidFrom               apiTime   `json:"validFrom"`
	ValidTo                 apiTime   `json:"validTo"`
	LastUseDate             *apiTime  `json:"lastUseDate,omitempty"`
	RequestDate             apiTime   `json:"requestDate"`
}

// POST /certificates/query: the caller's certificates, newest request first.
func (e *Emulator) handleQueryCertificates(q *request) {
	page, ok := q.offsetPaging(50)
	if !ok {
		return
	}
	var req struct {
		SerialNumber *string `json:"certificateSerialNumber"`
		Name         *string `json:"name"`
		Type         *string `json:"type"`
		Status       *string `json:"status"`
		ExpiresAfter *string `json:"expiresAfter"`
	}
	if !q.decodeOptionalJSON(&req) {
		return
	}
	var expiresAfter time.Time
	if req.ExpiresAfter != nil {
		t, err := time.Parse(time.RFC3339Nano, *req.ExpiresAfter)
		if err != nil {
			q.fail(codeValidation, "Pole 'expiresAfter' nie jest poprawną datą i czasem.")
			return
		}
		expiresAfter = t
	}
	owner := authorOf(q.principal())
	e.mu.Lock()
	var out []certificateListItem
	for _, n := range slices.Backward(e.st.creds.enrollList) {
		kc := n.cert
		switch {
		case kc == nil || !kc.owner.is(owner) || q.now.Before(kc.issued):
		case req.SerialNumber != nil && *req.SerialNumber != kc.serial:
		case req.Name != nil && !strings.Contains(strings.ToLower(kc.name), strings.ToLower(*req.Name)):
		case req.Type != nil && *req.Type != kc.typ:
		case req.Status != nil && *req.Status != kc.status(q.now):
		case !expiresAfter.IsZero() && !kc.cert.NotAfter.After(expiresAfter):
		default:
			out = append(out, certificateListItem{
				CertificateSerialNumber: kc.serial,
				Name:                    kc.name,
				Type:                    kc.typ,
				CommonName:              kc.cert.Subject.CommonName,
				Status:                  kc.status(q.now),
				SubjectIdentifier:       kc.owner,
				ValidFrom:               apiTime(kc.cert.NotBefore),
				ValidTo:                 apiTime(kc.cert.NotAfter),
				LastUseDate:             optTime(kc.lastUse),
				RequestDate:             apiTime(kc.requested),
			})
		}
	}
	e.mu.Unlock()
	from, to, more := page.bounds(len(out))
	q.json(http.StatusOK, struct {
		Certificates []certificateListItem `json:"certificates"`
		HasMore      bool                  `json:"hasMore"`
	}{nonNil(out[from:to]), more})
}

// POST /certificates/{certificateSerialNumber}/revoke: not after a token login (403); the
// certificate goes Blocked, then Revoked.
func (e *Emulator) handleRevokeCertificate(q *request) {
	p, ok := q.xadesOnly()
	if !ok {
		return
	}
	serial := q.r.PathValue("certificateSerialNumber")
	if !reCertificateSN.MatchString(serial) {
		q.fail(codeValidation, "Parametr 'certificateSerialNumber' musi mieć 16 znaków szesnastkowych (wielkie litery).")
		return
	}
	var req struct {
		Reason *string `json:"revocationReason"`
	}
	if !q.decodeOptionalJSON(&req) {
		return
	}
	if req.Reason != nil && !slices.Contains([]string{"Unspecified", "Superseded", "KeyCompromise"}, *req.Reason) {
		q.fail(codeValidation, fmt.Sprintf("Nieznany powód unieważnienia '%s'.", *req.Reason))
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	kc := e.ownedCertificateLocked(serial, p.subject, q.now)
	switch {
	case kc == nil:
		q.fail(codeCertificateNotFound)
	case kc.status(q.now) != certActive:
		q.fail(codeCertificateNotRevocable)
	default:
		kc.revoked = q.now
		q.noContent()
	}
}

// certificateRoutes registers the KSeF certificate endpoints and GET /limits/subject.
func (e *Emulator) certificateRoutes(mux *http.ServeMux) {
	e.route(mux, "GET /certificates/limits", groupOther, authAccess, e.handleCertificateLimits)
	e.route(mux, "GET /limits/subject", groupOther, authAccess, e.handleSubjectLimits)
	e.route(mux, "GET /certificates/enrollments/data", groupOther, authAccess, e.handleEnrollmentData)
	e.route(mux, "POST /certificates/enrollments", groupOther, authAccess, e.handleEnroll)
	e.route(mux, "GET /certificates/enrollments/{referenceNumber}", groupOther, authAccess, e.handleEnrollmentStatus)
	e.route(mux, "POST /certificates/retrieve", groupOther, authAccess, e.handleRetrieveCertificates)
	e.route(mux, "POST /certificates/query", groupOther, authAccess, e.handleQueryCertificates)
	e.route(mux, "POST /certificates/{certificateSerialNumber}/revoke", groupOther, authAccess, e.handleRevokeCertificate)
}
