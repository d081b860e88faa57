package emulator_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5" //nolint:gosec // a CSR signed with a forbidden algorithm
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// enrollmentDataOIDs are the attributes of GET /certificates/enrollments/data, in the order the
// official SDK writes them into a CSR.
var enrollmentDataOIDs = []struct {
	field string
	oid   asn1.ObjectIdentifier
}{
	{"commonName", asn1.ObjectIdentifier{2, 5, 4, 3}},
	{"surname", asn1.ObjectIdentifier{2, 5, 4, 4}},
	{"givenName", asn1.ObjectIdentifier{2, 5, 4, 42}},
	{"organizationName", asn1.ObjectIdentifier{2, 5, 4, 10}},
	{"organizationIdentifier", asn1.ObjectIdentifier{2, 5, 4, 97}},
	{"countryName", asn1.ObjectIdentifier{2, 5, 4, 6}},
	{"serialNumber", asn1.ObjectIdentifier{2, 5, 4, 5}},
	{"uniqueIdentifier", asn1.ObjectIdentifier{2, 5, 4, 45}},
}

func (c *kclient) enrollmentData(access string) map[string]string {
	c.t.Helper()
	r := c.do("GET", "/certificates/enrollments/data", access, nil)
	c.expect(r, 200)
	var d map[string]string
	r.decode(c.t, &d)
	return d
}

// csrFor builds a PKCS#10 request whose subject holds exactly the enrollment data.
func csrFor(t testing.TB, data map[string]string, key crypto.Signer) []byte {
	t.Helper()
	var names []pkix.AttributeTypeAndValue
	for _, a := range enrollmentDataOIDs {
		if v := data[a.field]; v != "" {
			names = append(names, pkix.AttributeTypeAndValue{Type: a.oid, Value: v})
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{ExtraNames: names}}, key)
	if err != nil {
		t.Fatalf("create CSR: %v", err)
	}
	return der
}

func (c *kclient) enrollReply(access, certType string, csr []byte, extra ...string) reply {
	c.t.Helper()
	return c.do("POST", "/certificates/enrollments", access, map[string]any{
		"certificateName": "Certyfikat testowy",
		"certificateType": certType,
		"csr":             csr,
	}, extra...)
}

type enrollmentStatus struct {
	RequestDate string `json:"requestDate"`
	Status      struct {
		Code        int      `json:"code"`
		Description string   `json:"description"`
		Details     []string `json:"details"`
	} `json:"status"`
	CertificateSerialNumber string `json:"certificateSerialNumber"`
}

// enroll submits an enrollment, lets it end and returns its final status.
func (c *kclient) enroll(access, certType string, csr []byte) enrollmentStatus {
	c.t.Helper()
	r := c.enrollReply(access, certType, csr)
	c.expect(r, 202)
	var out struct {
		ReferenceNumber string `json:"referenceNumber"`
		Timestamp       string `json:"timestamp"`
	}
	r.decode(c.t, &out)
	get := func() enrollmentStatus {
		r := c.do("GET", "/certificates/enrollments/"+out.ReferenceNumber, access, nil)
		c.expect(r, 200)
		var st enrollmentStatus
		r.decode(c.t, &st)
		return st
	}
	if st := get(); st.Status.Code != 100 || st.CertificateSerialNumber != "" {
		c.t.Fatalf("fresh enrollment: %+v, want 100 without a serial number", st)
	}
	c.srv.Clock.Advance(emulator.CertificateEnrollmentDelay)
	return get()
}

type retrievedCert struct {
	Certificate             []byte `json:"certificate"`
	CertificateName         string `json:"certificateName"`
	CertificateSerialNumber string `json:"certificateSerialNumber"`
	CertificateType         string `json:"certificateType"`
}

func (c *kclient) retrieve(access string, serials ...string) []retrievedCert {
	c.t.Helper()
	r := c.do("POST", "/certificates/retrieve", access, map[string]any{"certificateSerialNumbers": serials})
	c.expect(r, 200)
	var out struct {
		Certificates []retrievedCert `json:"certificates"`
	}
	r.decode(c.t, &out)
	return out.Certificates
}

type certificateItem struct {
	CertificateSerialNumber string            `json:"certificateSerialNumber"`
	Name                    string            `json:"name"`
	Type                    string            `json:"type"`
	CommonName              string            `json:"commonName"`
	Status                  string            `json:"status"`
	SubjectIdentifier       map[string]string `json:"subjectIdentifier"`
	LastUseDate             string            `json:"lastUseDate"`
}

func (c *kclient) queryCertificates(access string, filter map[string]any) []certificateItem {
	c.t.Helper()
	if filter == nil {
		filter = map[string]any{}
	}
	r := c.do("POST", "/certificates/query", access, filter)
	c.expect(r, 200)
	var out struct {
		Certificates []certificateItem `json:"certificates"`
		HasMore      bool              `json:"hasMore"`
	}
	r.decode(c.t, &out)
	return out.Certificates
}

// issue enrolls a certificate for the logged-in subject with a fresh P-256 key and returns it as
// a signer.
func (c *kclient) issue(access, certType string) (signer, string) {
	c.t.Helper()
	key := newECKey(c.t)
	st := c.enroll(access, certType, csrFor(c.t, c.enrollmentData(access), key))
	if st.Status.Code != 200 {
		c.t.Fatalf("enrollment: %+v", st.Status)
	}
	got := c.retrieve(access, st.CertificateSerialNumber)
	if len(got) != 1 {
		c.t.Fatalf("retrieve %s: %d certificates", st.CertificateSerialNumber, len(got))
	}
	cert, err := x509.ParseCertificate(got[0].Certificate)
	if err != nil {
		c.t.Fatalf("parse KSeF certificate: %v", err)
	}
	return signer{key, cert}, st.CertificateSerialNumber
}

func TestCertificateEnrollmentAndLogin(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	person := personWith(t, "TINPL-"+ownerNIP)
	access := c.xadesLogin(person, ownerNIP).AccessToken.Token

	data := c.enrollmentData(access)
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	if data["commonName"] != "Jan Kowalski" || data["givenName"] != "Jan" || data["surname"] != "Kowalski" ||
		data["serialNumber"] != "TINPL-"+ownerNIP || data["countryName"] != "PL" || !uuid.MatchString(data["uniqueIdentifier"]) ||
		data["organizationIdentifier"] != "" {
		t.Fatalf("enrollment data %v", data)
	}
	limits := func() (enroll, certs int) {
		r := c.do("GET", "/certificates/limits", access, nil)
		c.expect(r, 200)
		var l struct {
			CanRequest bool `json:"canRequest"`
			Enrollment struct {
				Remaining, Limit int
			} `json:"enrollment"`
			Certificate struct {
				Remaining, Limit int
			} `json:"certificate"`
		}
		r.decode(t, &l)
		if !l.CanRequest || l.Enrollment.Limit != 300 || l.Certificate.Limit != 100 {
			t.Fatalf("limits of a NIP subject: %+v", l)
		}
		return l.Enrollment.Remaining, l.Certificate.Remaining
	}
	if e, cs := limits(); e != 300 || cs != 100 {
		t.Fatalf("remaining before enrolling: %d/%d", e, cs)
	}

	ksefCert, serial := c.issue(access, "Authentication")
	if !regexp.MustCompile(`^[0-9A-F]{16}$`).MatchString(serial) {
		t.Errorf("serial number %q, want 16 upper-case hex characters", serial)
	}
	cert := ksefCert.cert
	if cert.Issuer.CommonName != "KSeF CA (emulator)" || cert.KeyUsage != x509.KeyUsageDigitalSignature ||
		cert.Subject.SerialNumber != "TINPL-"+ownerNIP || cert.Subject.CommonName != "Jan Kowalski" {
		t.Errorf("issued certificate: issuer %q, key usage %v, subject %q", cert.Issuer, cert.KeyUsage, cert.Subject)
	}
	if got := cert.NotAfter.Sub(cert.NotBefore); got < 729*24*time.Hour || got > 732*24*time.Hour {
		t.Errorf("validity %v, want two years", got)
	}
	if e, cs := limits(); e != 299 || cs != 99 {
		t.Errorf("remaining after one certificate: %d/%d, want 299/99", e, cs)
	}

	// The KSeF certificate logs in; the identity is the enrolling person's NIP (owner).
	ai := c.xadesStart(ksefCert, "Nip", ownerNIP, "certificateSubject", "?verifyCertificateChain=true")
	c.finishAuth(ai)
	if st := c.authStatus(ai); st.AuthenticationMethod != "InternalCertificate" {
		t.Errorf("authenticationMethod %q, want InternalCertificate", st.AuthenticationMethod)
	}
	list := c.queryCertificates(access, map[string]any{"status": "Active"})
	if len(list) != 1 || list[0].CertificateSerialNumber != serial || list[0].Name != "Certyfikat testowy" || list[0].Type != "Authentication" ||
		list[0].SubjectIdentifier["type"] != "Nip" || list[0].SubjectIdentifier["value"] != ownerNIP || list[0].LastUseDate == "" {
		t.Fatalf("query: %+v", list)
	}

	// Revoked certificates no longer log in.
	c.expect(c.do("POST", "/certificates/"+serial+"/revoke", access, map[string]any{"revocationReason": "KeyCompromise"}), 204)
	if got := c.queryCertificates(access, nil); got[0].Status != "Blocked" {
		t.Errorf("just revoked: %s, want Blocked", got[0].Status)
	}
	if st := c.xadesOutcome(ksefCert, ownerNIP, "certificateSubject"); st.Status.Code != 460 || !slices.Equal(st.Status.Details, []string{"Certyfikat zawieszony"}) {
		t.Errorf("login with a blocked certificate: %+v", st.Status)
	}
	srv.Clock.Advance(emulator.CertificateRevocationDelay)
	if got := c.queryCertificates(access, map[string]any{"certificateSerialNumber": serial}); got[0].Status != "Revoked" {
		t.Errorf("after the revocation delay: %s, want Revoked", got[0].Status)
	}
	if st := c.xadesOutcome(ksefCert, ownerNIP, "certificateSubject"); st.Status.Code != 460 || !slices.Equal(st.Status.Details, []string{"Certyfikat odwołany"}) {
		t.Errorf("login with a revoked certificate: %+v", st.Status)
	}
	c.expectException(c.do("POST", "/certificates/"+serial+"/revoke", access, nil), 25009)
	c.expectException(c.do("POST", "/certificates/0000000000000001/revoke", access, nil), 25008)
	if got := c.retrieve(access, "0000000000000001"); len(got) != 0 {
		t.Errorf("retrieve of an unknown serial number: %d certificates", len(got))
	}
}

func TestOfflineCertificateAndSharedKeys(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	access := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	data := c.enrollmentData(access)
	if data["organizationIdentifier"] != "VATPL-"+ownerNIP || data["organizationName"] != "Firma testowa" || data["serialNumber"] != "" || data["givenName"] != "" {
		t.Fatalf("enrollment data of a seal: %v", data)
	}
	offline, _ := c.issue(access, "Offline")
	if offline.cert.KeyUsage != x509.KeyUsageContentCommitment {
		t.Errorf("Offline certificate key usage %v, want nonRepudiation only", offline.cert.KeyUsage)
	}
	if st := c.xadesOutcome(offline, ownerNIP, "certificateSubject"); st.Status.Code != 460 || !slices.Equal(st.Status.Details, []string{"Niepoprawny certyfikat"}) {
		t.Errorf("login with an Offline certificate: %+v, want 460", st.Status)
	}
	// The same subject may certify a key again; another subject may not.
	if st := c.enroll(access, "Authentication", csrFor(t, data, offline.key)); st.Status.Code != 200 {
		t.Errorf("second certificate for the same key and subject: %+v", st.Status)
	}
	partner := c.xadesLogin(sealOf(t, partnerNIP), partnerNIP).AccessToken.Token
	st := c.enroll(partner, "Authentication", csrFor(t, c.enrollmentData(partner), offline.key))
	if st.Status.Code != 400 || !slices.Equal(st.Status.Details, []string{"Klucz publiczny został już certyfikowany przez inny podmiot."}) {
		t.Errorf("key certified for another subject: %+v, want 400", st.Status)
	}
	// Certificates and enrollments belong to their subject.
	if got := c.queryCertificates(partner, nil); len(got) != 0 {
		t.Errorf("partner sees %d certificates of another subject", len(got))
	}
	r := c.enrollReply(access, "Authentication", csrFor(t, data, newECKey(t)))
	c.expect(r, 202)
	var out struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	r.decode(t, &out)
	c.expectException(c.do("GET", "/certificates/enrollments/"+out.ReferenceNumber, partner, nil), 25005)
	// After 30 days the enrollment's status is gone.
	srv.Clock.Advance(30 * 24 * time.Hour)
	fresh := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	c.expect(c.do("GET", "/certificates/enrollments/"+out.ReferenceNumber, fresh, nil), 410)
}

func TestEnrollmentRefused(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{Tokens: map[string][]string{ownerNIP: {"config-token"}}})
	c := newClient(t, srv)
	access := c.xadesLogin(personWith(t, "TINPL-"+ownerNIP), ownerNIP).AccessToken.Token
	data := c.enrollmentData(access)

	weak, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // deliberately too small
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	badSignature := csrFor(t, data, rsaKey())
	badSignature[len(badSignature)-1] ^= 0xFF
	otherName := map[string]string{}
	for k, v := range data {
		otherName[k] = v
	}
	otherName["commonName"] = "Ktoś Inny"
	missing := map[string]string{}
	for k, v := range data {
		if k != "uniqueIdentifier" {
			missing[k] = v
		}
	}
	var spec struct {
		Paths map[string]map[string]struct {
			RequestBody struct {
				Content map[string]struct {
					Example json.RawMessage `json:"example"`
				} `json:"content"`
			} `json:"requestBody"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(official.OpenAPI(), &spec); err != nil {
		t.Fatal(err)
	}
	var example struct {
		CSR []byte `json:"csr"`
	}
	if err := json.Unmarshal(spec.Paths["/certificates/enrollments"]["post"].RequestBody.Content["application/json"].Example, &example); err != nil {
		t.Fatalf("official enrollment example: %v", err)
	}
	officialCSR := example.CSR

	tests := []struct {
		name string
		csr  []byte
		want int
	}{
		{"not a CSR", []byte("not a certificate request"), 25004},
		{"RSA 1024", csrFor(t, data, weak), 25010},
		{"EC P-384", csrFor(t, data, p384), 25010},
		{"MD5 signature", md5CSR(t, csrFor(t, data, rsaKey())), 25011},
		{"signature does not verify", badSignature, 25004},
		{"another common name", csrFor(t, otherName, rsaKey()), 25003},
		{"an attribute missing", csrFor(t, missing, ecKey()), 25003},
		// The official example is well formed and signed with RSA-PSS, but names someone else.
		{"official example (RSA-PSS)", officialCSR, 25003},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, srv)
			c.expectException(c.enrollReply(access, "Authentication", tt.csr), tt.want)
		})
	}
	c.expectException(c.do("POST", "/certificates/enrollments", access, map[string]any{
		"certificateName": "No", "certificateType": "Authentication", "csr": csrFor(t, data, ecKey()),
	}, invalid()...), 21405)

	// After a token login: no enrollment data (25001), no enrollment (25002), no revocation (403).
	token := c.loginToken(ownerNIP, "config-token").AccessToken.Token
	c.expectException(c.do("GET", "/certificates/enrollments/data", token, nil), 25001)
	c.expectException(c.enrollReply(token, "Authentication", csrFor(t, data, ecKey())), 25002)
	c.expectForbidden(c.do("POST", "/certificates/0000000000000001/revoke", token, nil), "auth-method-not-allowed")
	c.expectException(c.do("GET", "/certificates/enrollments/20251010-EH-1B6C9EB000-4B15D3AEB9-89", access, nil), 25005)
}

func fingerprintHex(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return strings.ToUpper(hex.EncodeToString(sum[:]))
}

// md5CSR re-signs a CSR made with an RSA 2048 key with MD5, which KSeF does not accept.
func md5CSR(t testing.TB, der []byte) []byte {
	t.Helper()
	type csr struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}
	var in csr
	if _, err := asn1.Unmarshal(der, &in); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(in.TBS.FullBytes) //nolint:gosec // the point of the test
	sig, err := rsa.SignPKCS1v15(rand.Reader, rsaKey(), crypto.MD5, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	out, err := asn1.Marshal(csr{
		TBS:       in.TBS,
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 4}, Parameters: asn1.NullRawValue},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFingerprintSubjectCertificate(t *testing.T) {
	original := personWith(t, "no identifier")
	fp := fingerprintHex(original.cert)
	srv := emutest.NewServerAt(t, testStart, emulator.Config{Grants: map[string][]string{ownerNIP: {fp}}})
	c := newClient(t, srv)
	access := c.finishAuth(c.xadesStart(original, "Nip", ownerNIP, "certificateFingerprint", "")).AccessToken.Token
	data := c.enrollmentData(access)
	if data["serialNumber"] != "no identifier" || data["commonName"] != "Jan Kowalski" {
		t.Fatalf("enrollment data of a fingerprint subject: %v", data)
	}
	ksefCert, serial := c.issue(access, "Authentication")
	// The KSeF certificate stands for the original certificate's fingerprint, which holds the
	// grant, whichever subject identifier type the login names.
	for _, subjectType := range []string{"certificateSubject", "certificateFingerprint"} {
		if st := c.xadesOutcome(ksefCert, ownerNIP, subjectType); st.Status.Code != 200 {
			t.Errorf("%s login with the KSeF certificate: %+v", subjectType, st.Status)
		}
	}
	list := c.queryCertificates(access, map[string]any{"certificateSerialNumber": serial})
	if len(list) != 1 || list[0].SubjectIdentifier["type"] != "Fingerprint" || list[0].SubjectIdentifier["value"] != fp {
		t.Errorf("query: %+v", list)
	}
}

func TestCertificateLimitsOfAPerson(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{Grants: map[string][]string{ownerNIP: {peselA}}})
	c := newClient(t, srv)
	access := c.xadesLogin(personWith(t, "PNOPL-"+peselA), ownerNIP).AccessToken.Token
	r := c.do("GET", "/limits/subject", access, nil)
	c.expect(r, 200)
	var sl struct {
		Enrollment  map[string]int `json:"enrollment"`
		Certificate map[string]int `json:"certificate"`
	}
	r.decode(t, &sl)
	if sl.Enrollment["maxEnrollments"] != 12 || sl.Certificate["maxCertificates"] != 6 {
		t.Fatalf("subject limits of a PESEL: %+v", sl)
	}
	data := c.enrollmentData(access)
	if data["serialNumber"] != "PNOPL-"+peselA {
		t.Fatalf("enrollment data %v", data)
	}
	var serials []string
	for range 6 {
		st := c.enroll(access, "Offline", csrFor(t, data, newECKey(t)))
		serials = append(serials, st.CertificateSerialNumber)
	}
	c.expectException(c.enrollReply(access, "Offline", csrFor(t, data, newECKey(t))), 25007)
	// Revoked certificates no longer count; enrollments always do.
	for _, s := range serials {
		c.expect(c.do("POST", "/certificates/"+s+"/revoke", access, nil), 204)
	}
	for range 6 {
		c.enroll(access, "Offline", csrFor(t, data, newECKey(t)))
	}
	c.expectException(c.enrollReply(access, "Offline", csrFor(t, data, newECKey(t))), 25006)
	r = c.do("GET", "/certificates/limits", access, nil)
	c.expect(r, 200)
	var l struct {
		CanRequest bool `json:"canRequest"`
	}
	r.decode(t, &l)
	if l.CanRequest {
		t.Error("canRequest true with no enrollments left")
	}
}
