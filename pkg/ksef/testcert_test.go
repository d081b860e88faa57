package ksef

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testCertNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// subjectAttrs returns the subject attributes of cert as OID string -> value, failing on repeats.
func subjectAttrs(t *testing.T, cert *x509.Certificate) map[string]string {
	t.Helper()
	attrs := map[string]string{}
	for _, n := range cert.Subject.Names {
		k := n.Type.String()
		if _, dup := attrs[k]; dup {
			t.Fatalf("subject attribute %s repeated", k)
		}
		attrs[k] = n.Value.(string)
	}
	return attrs
}

func TestNewTestCertificate(t *testing.T) {
	tests := []struct {
		name  string
		opts  TestCertificateOptions
		attrs map[string]string
	}{
		{
			"seal", TestCertificateOptions{NIP: "5265877635", Seal: true, KeyType: KeyRSA},
			map[string]string{
				"2.5.4.10": "Test Organization 5265877635", "2.5.4.97": "VATPL-5265877635",
				"2.5.4.3": "Test Organization 5265877635", "2.5.4.6": "PL",
			},
		},
		{
			"seal with names, ECDSA", TestCertificateOptions{NIP: "5265877635", Seal: true, Organization: "Żółw Sp. z o.o.", CommonName: "Pieczęć", KeyType: KeyECDSA},
			map[string]string{"2.5.4.10": "Żółw Sp. z o.o.", "2.5.4.97": "VATPL-5265877635", "2.5.4.3": "Pieczęć", "2.5.4.6": "PL"},
		},
		{
			"person by NIP", TestCertificateOptions{NIP: "5265877635"},
			map[string]string{
				"2.5.4.42": "Jan", "2.5.4.4": "Testowy", "2.5.4.5": "TINPL-5265877635", "2.5.4.3": "Jan Testowy", "2.5.4.6": "PL",
			},
		},
		{
			"person by PESEL, ECDSA", TestCertificateOptions{PESEL: "90010112345", GivenName: "Anna", Surname: "Nowak", KeyType: KeyECDSA},
			map[string]string{
				"2.5.4.42": "Anna", "2.5.4.4": "Nowak", "2.5.4.5": "PNOPL-90010112345", "2.5.4.3": "Anna Nowak", "2.5.4.6": "PL",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = testCertNow
			cert, key, err := NewTestCertificate(tt.opts)
			if err != nil {
				t.Fatalf("NewTestCertificate: %v", err)
			}
			got := subjectAttrs(t, cert)
			if len(got) != len(tt.attrs) {
				t.Errorf("subject %v, want %v", got, tt.attrs)
			}
			for oid, want := range tt.attrs {
				if got[oid] != want {
					t.Errorf("subject attribute %s = %q, want %q", oid, got[oid], want)
				}
			}
			if !bytes.Equal(cert.RawIssuer, cert.RawSubject) {
				t.Error("certificate is not self-issued")
			}
			if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
				t.Errorf("self-signature does not verify: %v", err)
			}
			if want := testCertNow.Add(-61 * time.Minute); !cert.NotBefore.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", cert.NotBefore, want)
			}
			if want := testCertNow.AddDate(2, 0, 0); !cert.NotAfter.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", cert.NotAfter, want)
			}
			if want := x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment; cert.KeyUsage != want {
				t.Errorf("KeyUsage = %v, want digitalSignature|nonRepudiation", cert.KeyUsage)
			}
			if cert.IsCA {
				t.Error("certificate is a CA")
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 127 {
				t.Errorf("serial number %v is not a positive 127-bit number", cert.SerialNumber)
			}
			switch pub := key.Public().(type) {
			case *rsa.PublicKey:
				if tt.opts.KeyType == KeyECDSA || pub.N.BitLen() != 2048 {
					t.Errorf("RSA key of %d bits for key type %q", pub.N.BitLen(), tt.opts.KeyType)
				}
			case *ecdsa.PublicKey:
				if tt.opts.KeyType != KeyECDSA || pub.Curve != elliptic.P256() {
					t.Errorf("ECDSA key on %s for key type %q", pub.Curve.Params().Name, tt.opts.KeyType)
				}
			default:
				t.Errorf("key type %T", pub)
			}
			if err := checkKeyMatchesCertificate(cert, key); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNewTestCertificateSerialsDiffer(t *testing.T) {
	a, _, err := NewTestCertificate(TestCertificateOptions{NIP: "5265877635", KeyType: KeyECDSA})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := NewTestCertificate(TestCertificateOptions{NIP: "5265877635", KeyType: KeyECDSA})
	if err != nil {
		t.Fatal(err)
	}
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 {
		t.Fatalf("two certificates share the serial number %v", a.SerialNumber)
	}
	if since := time.Since(a.NotBefore); since < 60*time.Minute || since > 62*time.Minute {
		t.Errorf("zero Now: NotBefore is %v ago, want 61 minutes", since)
	}
}

func TestNewTestCertificateInvalid(t *testing.T) {
	tests := []struct {
		name    string
		opts    TestCertificateOptions
		wantErr string
	}{
		{"nothing", TestCertificateOptions{}, "a person needs a NIP or a PESEL"},
		{"seal without NIP", TestCertificateOptions{Seal: true}, "a seal needs a NIP"},
		{"seal with PESEL", TestCertificateOptions{Seal: true, NIP: "5265877635", PESEL: "90010112345"}, "a seal needs a NIP and no PESEL"},
		{"seal with a surname", TestCertificateOptions{Seal: true, NIP: "5265877635", Surname: "Nowak"}, "must not have a given name or surname"},
		{"person with an organization", TestCertificateOptions{NIP: "5265877635", Organization: "X"}, "Organization is for seals only"},
		{"NIP and PESEL", TestCertificateOptions{NIP: "5265877635", PESEL: "90010112345"}, "either NIP or PESEL"},
		{"bad NIP", TestCertificateOptions{NIP: "0265877635"}, "NIP is not 10 digits"},
		{"bad PESEL", TestCertificateOptions{PESEL: "90130112345"}, "PESEL is not 11 digits"},
		{"unknown key type", TestCertificateOptions{NIP: "5265877635", KeyType: "dsa"}, `unknown key type "dsa"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := NewTestCertificate(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewTestCertificate(%+v) error = %v, want one containing %q", tt.opts, err, tt.wantErr)
			}
		})
	}
}

func TestEncodeParsePEMRoundTrip(t *testing.T) {
	for _, kt := range []KeyType{KeyRSA, KeyECDSA} {
		t.Run(string(kt), func(t *testing.T) {
			cert, key, err := NewTestCertificate(TestCertificateOptions{NIP: "5265877635", Seal: true, KeyType: kt, Now: testCertNow})
			if err != nil {
				t.Fatal(err)
			}
			certPEM, keyPEM, err := EncodePEM(cert, key)
			if err != nil {
				t.Fatalf("EncodePEM: %v", err)
			}
			if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
				t.Fatalf("key PEM is not a PKCS #8 PRIVATE KEY block")
			}
			cert2, key2, err := ParsePEM(certPEM, keyPEM)
			if err != nil {
				t.Fatalf("ParsePEM: %v", err)
			}
			if !cert2.Equal(cert) {
				t.Error("certificate differs after the round trip")
			}
			if !key2.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(key.Public()) {
				t.Error("key differs after the round trip")
			}
		})
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The testcert_* files were made with OpenSSL 3.0: genrsa -traditional (PKCS #1), pkcs8 -topk8,
// ecparam -genkey (EC PARAMETERS + SEC 1), pkcs8 -topk8 -v2 aes-256-cbc, req -x509.
func TestParsePEMOpenSSLFormats(t *testing.T) {
	tests := []struct {
		name, cert, key string
		wantType        any
	}{
		{"RSA PKCS #1", "testcert_rsa.crt", "testcert_rsa_pkcs1.key", &rsa.PrivateKey{}},
		{"RSA PKCS #8", "testcert_rsa.crt", "testcert_rsa_pkcs8.key", &rsa.PrivateKey{}},
		{"EC SEC 1 after EC PARAMETERS", "testcert_ec.crt", "testcert_ec_sec1.key", &ecdsa.PrivateKey{}},
		{"certificate and key in one file", "testcert_ec.crt", "testcert_ec.crt+testcert_ec_sec1.key", &ecdsa.PrivateKey{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var keyPEM []byte
			for _, f := range strings.Split(tt.key, "+") {
				keyPEM = append(keyPEM, readTestdata(t, f)...)
			}
			cert, key, err := ParsePEM(readTestdata(t, tt.cert), keyPEM)
			if err != nil {
				t.Fatalf("ParsePEM: %v", err)
			}
			if got, want := fmt.Sprintf("%T", key), fmt.Sprintf("%T", tt.wantType); got != want {
				t.Errorf("key type %s, want %s", got, want)
			}
			if cert.Subject.CommonName == "" {
				t.Error("certificate without common name")
			}
		})
	}
}

func TestParsePEMErrors(t *testing.T) {
	rsaCert, rsaKey := readTestdata(t, "testcert_rsa.crt"), readTestdata(t, "testcert_rsa_pkcs1.key")
	ecCert, ecKey := readTestdata(t, "testcert_ec.crt"), readTestdata(t, "testcert_ec_sec1.key")
	garbled := bytes.Replace(rsaKey, []byte("MII"), []byte("AAA"), 1)
	tests := []struct {
		name            string
		certPEM, keyPEM []byte
		wantErr         string
	}{
		{"key of another certificate", rsaCert, ecKey, "private key does not match the certificate"},
		{"encrypted key", ecCert, readTestdata(t, "testcert_ec_encrypted.key"), "encrypted private keys are not supported"},
		{"no certificate", rsaKey, rsaKey, "no CERTIFICATE block"},
		{"no key", rsaCert, rsaCert, "no private key block"},
		{"not PEM", []byte("hello"), rsaKey, "no CERTIFICATE block"},
		{"garbled key", rsaCert, garbled, "RSA PRIVATE KEY block"},
		{"garbled certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), rsaKey, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ParsePEM(tt.certPEM, tt.keyPEM)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParsePEM error = %v, want one containing %q", err, tt.wantErr)
			}
			assertNoKeyMaterial(t, err.Error(), tt.keyPEM)
		})
	}
}

// assertNoKeyMaterial fails if msg contains any 16-character run of the Base64 body of keyPEM.
func assertNoKeyMaterial(t *testing.T, msg string, keyPEM []byte) {
	t.Helper()
	for _, line := range strings.Split(string(keyPEM), "\n") {
		if strings.HasPrefix(line, "-----") || strings.Contains(line, ":") {
			continue
		}
		for i := 0; i+16 <= len(line); i += 8 {
			if strings.Contains(msg, line[i:i+16]) {
				t.Fatalf("error %q contains key material", msg)
			}
		}
	}
}

func TestEncodePEMErrors(t *testing.T) {
	cert, _, err := ParsePEM(readTestdata(t, "testcert_rsa.crt"), readTestdata(t, "testcert_rsa_pkcs1.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, ecKey, err := ParsePEM(readTestdata(t, "testcert_ec.crt"), readTestdata(t, "testcert_ec_sec1.key"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := EncodePEM(cert, ecKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("EncodePEM with a foreign key: error = %v", err)
	}
	if _, _, err := EncodePEM(nil, ecKey); err == nil {
		t.Error("EncodePEM(nil, key) succeeded")
	}
}

// The subject of a test certificate must keep its RDN order, C first, so that it prints CN first.
func TestTestCertificateSubjectOrder(t *testing.T) {
	cert, _, err := NewTestCertificate(TestCertificateOptions{NIP: "5265877635", KeyType: KeyECDSA, Now: testCertNow})
	if err != nil {
		t.Fatal(err)
	}
	var oids []string
	for _, n := range cert.Subject.Names {
		oids = append(oids, n.Type.String())
	}
	want := []asn1.ObjectIdentifier{oidCountry, oidSurname, oidGivenName, oidSerialNumber, oidCommonName}
	if len(oids) != len(want) {
		t.Fatalf("subject OIDs %v", oids)
	}
	for i := range want {
		if oids[i] != want[i].String() {
			t.Fatalf("subject OIDs %v, want %v", oids, want)
		}
	}
}
