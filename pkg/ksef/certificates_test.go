package ksef

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// personEnrollment is enrollment data as KSeF gives it to a person logged in with a NIP
// certificate.
var personEnrollment = EnrollmentData{
	CommonName:       "Łukasz Żółć",
	CountryName:      "PL",
	GivenName:        "Łukasz",
	Surname:          "Żółć",
	SerialNumber:     "TINPL-5265877635",
	UniqueIdentifier: "d9d22724-4696-460c-9e5e-b9e3aafb0af3",
}

func TestNewCSR(t *testing.T) {
	testKey, err := parsePrivateKeyPEM(loadTestdata(t, "testcert_rsa_pkcs8.key"))
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seal := EnrollmentData{CommonName: "Firma Kowalski Certyfikat", CountryName: "PL", OrganizationName: "Firma Kowalski Sp. z o.o.",
		OrganizationIdentifier: "VATPL-7762811692", UniqueIdentifier: "d9d22724-4696-460c-9e5e-b9e3aafb0af3"}
	tests := []struct {
		name    string
		data    EnrollmentData
		key     crypto.Signer
		wantAlg x509.SignatureAlgorithm
		// wantRDNs are OID=value in order; a trailing "P" marks a PrintableString.
		wantRDNs []string
	}{
		{"person, RSA 2048", personEnrollment, testKey, x509.SHA256WithRSA, []string{
			"2.5.4.3=Łukasz Żółć", "2.5.4.4=Żółć", "2.5.4.42=Łukasz", "2.5.4.6=PL P", "2.5.4.5=TINPL-5265877635 P",
			"2.5.4.45=d9d22724-4696-460c-9e5e-b9e3aafb0af3",
		}},
		{"seal, ECDSA P-256", seal, ecKey, x509.ECDSAWithSHA256, []string{
			"2.5.4.3=Firma Kowalski Certyfikat", "2.5.4.10=Firma Kowalski Sp. z o.o.", "2.5.4.97=VATPL-7762811692", "2.5.4.6=PL P",
			"2.5.4.45=d9d22724-4696-460c-9e5e-b9e3aafb0af3",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			der, err := NewCSR(&tt.data, tt.key)
			if err != nil {
				t.Fatalf("NewCSR: %v", err)
			}
			csr, err := x509.ParseCertificateRequest(der)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if err := csr.CheckSignature(); err != nil {
				t.Errorf("signature: %v", err)
			}
			if csr.SignatureAlgorithm != tt.wantAlg {
				t.Errorf("signature algorithm %v, want %v", csr.SignatureAlgorithm, tt.wantAlg)
			}
			if !reflect.DeepEqual(csr.PublicKey, tt.key.Public()) {
				t.Error("the CSR holds another public key")
			}
			var rdns []asn1.RawValue
			if rest, err := asn1.Unmarshal(csr.RawSubject, &rdns); err != nil || len(rest) != 0 {
				t.Fatalf("subject is not a sequence: %v", err)
			}
			var got []string
			for _, rdn := range rdns {
				var atvs []struct {
					Type  asn1.ObjectIdentifier
					Value asn1.RawValue
				}
				if _, err := asn1.UnmarshalWithParams(rdn.FullBytes, &atvs, "set"); err != nil || len(atvs) != 1 {
					t.Fatalf("RDN is not a set of one attribute: %v", err)
				}
				a := atvs[0]
				s := a.Type.String() + "=" + string(a.Value.Bytes)
				switch a.Value.Tag {
				case asn1.TagPrintableString:
					s += " P"
				case asn1.TagUTF8String:
				default:
					t.Errorf("%s encoded with tag %d", a.Type, a.Value.Tag)
				}
				got = append(got, s)
			}
			if !reflect.DeepEqual(got, tt.wantRDNs) {
				t.Errorf("subject\ngot  %q\nwant %q", got, tt.wantRDNs)
			}
		})
	}
}

func TestNewCSRRefusesKeys(t *testing.T) {
	rsa3072, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ok, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data *EnrollmentData
		key  crypto.Signer
		want string
	}{
		{"RSA 3072", &personEnrollment, rsa3072, "3072 bits"},
		{"P-384", &personEnrollment, p384, "P-384"},
		{"Ed25519", &personEnrollment, ed, "ed25519"},
		{"no data", nil, ok, "required"},
		{"no country", &EnrollmentData{CommonName: "Jan"}, ok, "country"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCSR(tt.data, tt.key); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCertificateLimits(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/certificates/limits", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		serveFile(t, w, http.StatusOK, "certificate_limits.json")
	})
	got, err := ts.client.CertificateLimits(t.Context())
	if err != nil {
		t.Fatalf("CertificateLimits: %v", err)
	}
	want := CertificateLimits{CanRequest: true, Enrollment: CertificateLimit{Remaining: 11, Limit: 12}, Certificate: CertificateLimit{Remaining: 5, Limit: 6}}
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
}

func TestEnrollmentData(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/certificates/enrollments/data", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		serveFile(t, w, http.StatusOK, "enrollment_data.json")
	})
	got, err := ts.client.EnrollmentData(t.Context())
	if err != nil {
		t.Fatalf("EnrollmentData: %v", err)
	}
	want := EnrollmentData{CommonName: "Firma Kowalski Certyfikat", CountryName: "PL", SerialNumber: "ABC123456789",
		UniqueIdentifier: "d9d22724-4696-460c-9e5e-b9e3aafb0af3", OrganizationName: "Firma Kowalski Sp. z o.o.", OrganizationIdentifier: "7762811692"}
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
}

func TestEnrollmentDataAfterTokenLogin(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/certificates/enrollments/data", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, exceptionBody(25001, "Brak możliwości pobrania danych do CSR dla wykorzystanego sposobu uwierzytelnienia."))
	})
	_, err := ts.client.EnrollmentData(t.Context())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !apiErr.HasCode(25001) || apiErr.Op != "EnrollmentData" {
		t.Errorf("got %v, want an APIError with code 25001", err)
	}
}

func TestEnroll(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/certificates/enrollments", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		checkGoldenJSON(t, "enroll", readBody(t, r))
		serveFile(t, w, http.StatusAccepted, "enrollment.json")
	})
	from := time.Date(2025, 8, 28, 11, 22, 13, 388000000, time.FixedZone("CEST", 2*3600))
	got, err := ts.client.Enroll(t.Context(), EnrollmentRequest{
		CertificateName: "Certyfikat-Auth-004 źródło",
		CertificateType: CertificateAuthentication,
		CSR:             []byte("a DER certificate request"),
		ValidFrom:       &from,
	})
	if err != nil {
		t.Fatalf("Enroll: %v", err)
	}
	want := OperationRef{ReferenceNumber: "20251010-EH-1B6C9EB000-4B15D3AEB9-89", Timestamp: time.Date(2025, 10, 11, 12, 23, 56, 15430200, time.UTC)}
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
	for _, bad := range []EnrollmentRequest{
		{CertificateName: "Cert", CertificateType: CertificateOffline, CSR: []byte{1}},
		{CertificateName: "Certyfikat/1", CertificateType: CertificateOffline, CSR: []byte{1}},
		{CertificateName: "Certyfikat", CertificateType: "Both", CSR: []byte{1}},
		{CertificateName: "Certyfikat", CertificateType: CertificateOffline},
	} {
		if _, err := ts.client.Enroll(t.Context(), bad); err == nil {
			t.Errorf("Enroll(%+v): no error", bad)
		}
	}
}

func TestEnrollmentStatus(t *testing.T) {
	ts := newTestServer(t)
	const ref = "20251010-EH-1B6C9EB000-4B15D3AEB9-89"
	ts.mux.HandleFunc("/v2/certificates/enrollments/"+ref, func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		serveFile(t, w, http.StatusOK, "enrollment_status.json")
	})
	got, err := ts.client.EnrollmentStatus(t.Context(), ref)
	if err != nil {
		t.Fatalf("EnrollmentStatus: %v", err)
	}
	want := &EnrollmentStatus{
		RequestDate:             time.Date(2025, 10, 11, 12, 23, 56, 15430200, time.UTC),
		Status:                  Status{Code: 200, Description: "Wniosek obsłużony (certyfikat wygenerowany)"},
		CertificateSerialNumber: "0321C82DA41B4362",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
}

func TestRetrieveCertificates(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/certificates/retrieve", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		checkGoldenJSON(t, "retrieve_certificates", readBody(t, r))
		serveFile(t, w, http.StatusOK, "certificates_retrieve.json")
	})
	got, err := ts.client.RetrieveCertificates(t.Context(), []string{"0321C82DA41B4362", "0321F21DA462A362"})
	if err != nil {
		t.Fatalf("RetrieveCertificates: %v", err)
	}
	if len(got) != 1 || got[0].SerialNumber != "0321C82DA41B4362" || got[0].Name != "Cert 00023" || got[0].Type != CertificateAuthentication {
		t.Fatalf("got %+v", got)
	}
	cert, err := got[0].X509()
	if err != nil {
		t.Fatalf("X509: %v", err)
	}
	want, err := parseCertificatePEM(loadTestdata(t, "testcert_rsa.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if !cert.Equal(want) {
		t.Error("the certificate differs from the one served")
	}
	for _, bad := range [][]string{nil, make([]string, 11), {"0321c82da41b4362"}} {
		if _, err := ts.client.RetrieveCertificates(t.Context(), bad); err == nil {
			t.Errorf("RetrieveCertificates(%q): no error", bad)
		}
	}
}

func TestQueryCertificates(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/certificates/query", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testQuery(t, r, "pageOffset=2&pageSize=50")
		checkGoldenJSON(t, "query_certificates", readBody(t, r))
		serveFile(t, w, http.StatusOK, "certificates_query.json")
	})
	page, err := ts.client.QueryCertificates(t.Context(), CertificateQuery{
		Name: "Certyfikat", Type: CertificateOffline, Status: CertificateActive,
		ExpiresAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}, PageRequest{PageOffset: 2, PageSize: 50})
	if err != nil {
		t.Fatalf("QueryCertificates: %v", err)
	}
	want := &CertificatePage{Certificates: []CertificateInfo{{
		SerialNumber: "018209160C631F1E", Name: "Certyfikat 1", Type: CertificateAuthentication, CommonName: "Jan Kowalski",
		Status: CertificateActive, Subject: NipSubject("1234445678"),
		ValidFrom:   time.Date(2025, 8, 24, 14, 15, 22, 0, time.UTC),
		ValidTo:     time.Date(2027, 8, 24, 14, 15, 22, 0, time.UTC),
		LastUseDate: time.Date(2025, 8, 25, 14, 15, 22, 0, time.UTC),
		RequestDate: time.Date(2025, 8, 24, 14, 15, 22, 0, time.UTC),
	}}}
	if !reflect.DeepEqual(page, want) {
		t.Errorf("got  %+v\nwant %+v", page, want)
	}
	if _, err := ts.client.QueryCertificates(t.Context(), CertificateQuery{}, PageRequest{PageSize: 51}); err == nil {
		t.Error("page size 51: no error")
	}
}

func TestRevokeCertificate(t *testing.T) {
	ts := newTestServer(t)
	var bodies []string
	ts.mux.HandleFunc("/v2/certificates/0321C82DA41B4362/revoke", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		bodies = append(bodies, string(readBody(t, r)))
		if len(bodies) == 3 {
			writeJSON(w, http.StatusBadRequest, exceptionBody(25009, "Nie można odwołać wskazanego certyfikatu, ponieważ jest już odwołany, zablokowany lub nieważny."))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	ctx := t.Context()
	if err := ts.client.RevokeCertificate(ctx, "0321C82DA41B4362", RevocationKeyCompromise); err != nil {
		t.Fatalf("RevokeCertificate: %v", err)
	}
	if err := ts.client.RevokeCertificate(ctx, "0321C82DA41B4362", ""); err != nil {
		t.Fatalf("RevokeCertificate without a reason: %v", err)
	}
	var apiErr *APIError
	if err := ts.client.RevokeCertificate(ctx, "0321C82DA41B4362", RevocationSuperseded); !errors.As(err, &apiErr) || !apiErr.HasCode(25009) {
		t.Errorf("already revoked: got %v, want code 25009", err)
	}
	want := []string{`{"revocationReason":"KeyCompromise"}`, `{}`, `{"revocationReason":"Superseded"}`}
	if !reflect.DeepEqual(bodies, want) {
		t.Errorf("bodies %q, want %q", bodies, want)
	}
	if err := ts.client.RevokeCertificate(ctx, "0321C82DA41B4362", "Lost"); err == nil {
		t.Error("unknown reason: no error")
	}
	if err := ts.client.RevokeCertificate(ctx, "12", ""); err == nil {
		t.Error("bad serial: no error")
	}
}
