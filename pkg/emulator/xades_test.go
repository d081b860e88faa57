package emulator_test

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

const (
	ns20 = "http://ksef.mf.gov.pl/auth/token/2.0"
	ns21 = "http://ksef.mf.gov.pl/auth/token/2.1"
)

func TestXAdESLoginAccepted(t *testing.T) {
	person := personSubject("TINPL-" + sellerNIP)
	pesel := personSubject("PNOPL-90010112345")
	tests := []struct {
		name        string
		ns          string
		key         crypto.Signer
		subjectType string
		opts        signOptions
		grants      map[string][]string
		wantMethod  string
	}{
		{name: "seal, RSA, exclusive c14n, auth 2.0", ns: ns20, key: rsaKey(), subjectType: "certificateSubject", wantMethod: "QualifiedSeal"},
		{name: "seal, auth 2.1", ns: ns21, key: rsaKey(), subjectType: "certificateSubject", wantMethod: "QualifiedSeal"},
		{name: "inclusive c14n", ns: ns20, key: rsaKey(), subjectType: "certificateSubject", opts: signOptions{c14n: c14n10}, wantMethod: "QualifiedSeal"},
		{name: "enveloping signature", ns: ns21, key: rsaKey(), subjectType: "certificateSubject", opts: signOptions{enveloping: true}, wantMethod: "QualifiedSeal"},
		{name: "RSA-PSS", ns: ns20, key: rsaKey(), subjectType: "certificateSubject", opts: signOptions{pss: true}, wantMethod: "QualifiedSeal"},
		{name: "ECDSA P-256 r||s", ns: ns21, key: ecKey(), subjectType: "certificateSubject", wantMethod: "QualifiedSeal"},
		{name: "person with NIP", ns: ns20, key: rsaKey(), subjectType: "certificateSubject", wantMethod: "QualifiedSignature"},
		{name: "person with PESEL and a grant", ns: ns20, key: ecKey(), subjectType: "certificateSubject",
			grants: map[string][]string{sellerNIP: {"90010112345"}}, wantMethod: "QualifiedSignature"},
		{name: "fingerprint with a grant", ns: ns20, key: ecKey(), subjectType: "certificateFingerprint", wantMethod: "InternalCertificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			subject := sealSubject(sellerNIP)
			switch tt.wantMethod {
			case "QualifiedSignature":
				subject = person
				if tt.grants != nil {
					subject = pesel
				}
			case "InternalCertificate":
				subject = personSubject("no identifier")
			}
			cert := selfSigned(t, tt.key, subject, testStart, 365*24*time.Hour)
			grants := tt.grants
			if tt.subjectType == "certificateFingerprint" {
				sum := sha256.Sum256(cert.Raw)
				grants = map[string][]string{sellerNIP: {hex.EncodeToString(sum[:])}}
			}
			srv := emutest.NewServerAt(t, testStart, emulator.Config{Grants: grants})
			c := newClient(t, srv)
			ch := c.challenge()
			doc := signXAdES(t, authTokenRequest(tt.ns, ch.Challenge, "Nip", sellerNIP, tt.subjectType), tt.key, cert, testStart, tt.opts)
			crossCheckWithXmlsec(t, doc)
			r := c.do("POST", "/auth/xades-signature", "", doc)
			c.expect(r, 202)
			var ai authInit
			r.decode(t, &ai)
			tk := c.finishAuth(ai)
			if st := c.authStatus(ai); st.AuthenticationMethod != tt.wantMethod {
				t.Errorf("authenticationMethod %q, want %q", st.AuthenticationMethod, tt.wantMethod)
			}
			// The session UPO quotes the hash of the signed document.
			access := tk.AccessToken.Token
			s := c.openSession(access)
			ref := c.sendInvoice(access, s, sample1("XA/1"))
			c.settle()
			st := c.invoiceStatus(access, s, ref)
			if st.Status.Code != 200 {
				t.Fatalf("invoice: %+v", st.Status)
			}
			u := c.doURL("GET", st.UPODownloadURL, "", nil)
			c.expect(u, 200)
			validateUPO(t, u.body)
			if got := parseUPO(t, u.body); got.DocHash != b64sha256(doc) || got.TokenRef != "" {
				t.Errorf("UPO authentication %q/%q, want the document hash %q", got.DocHash, got.TokenRef, b64sha256(doc))
			}
		})
	}
}

// crossCheckWithXmlsec verifies the test signer's output with xmlsec1, an independent XML-DSig
// implementation, when it is installed, so that the signer and the emulator cannot agree on a
// wrong canonicalization.
func crossCheckWithXmlsec(t *testing.T, doc []byte) {
	t.Helper()
	bin, err := exec.LookPath("xmlsec1")
	if err != nil || bytes.Contains(doc, []byte("rsa-MGF1")) {
		return // not installed, or (xmlsec1 1.2) without the RFC 6931 RSA-PSS identifiers
	}
	path := filepath.Join(t.TempDir(), "signed.xml")
	if err := os.WriteFile(path, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), bin, "--verify", "--insecure", "--enabled-key-data", "x509",
		"--id-attr:Id", xadesNS+":SignedProperties", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xmlsec1 rejects the test signature: %v\n%s", err, out)
	}
}

func TestXAdESLoginFailsAsync(t *testing.T) {
	tests := []struct {
		name       string
		key        crypto.Signer
		subject    string // context NIP the certificate names
		lifetime   time.Duration
		query      string
		ctxNIP     string
		wantCode   int
		wantDetail string
	}{
		{"certificate of another NIP", rsaKey(), otherNIP, time.Hour, "", sellerNIP, 415, "Brak przypisanych uprawnień"},
		{"expired certificate", rsaKey(), sellerNIP, -time.Minute, "", sellerNIP, 460, "Nieważny certyfikat"},
		{"RSA 1024", weakRSAKey(), sellerNIP, time.Hour, "", sellerNIP, 460, "Niepoprawny certyfikat"},
		{"chain verification requested", rsaKey(), sellerNIP, time.Hour, "?verifyCertificateChain=true", sellerNIP, 460, "Niezaufany łańcuch certyfikatów"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := emutest.NewServerAt(t, testStart, emulator.Config{})
			c := newClient(t, srv)
			cert := selfSigned(t, tt.key, sealSubject(tt.subject), testStart, tt.lifetime)
			ch := c.challenge()
			doc := signXAdES(t, authTokenRequest(ns20, ch.Challenge, "Nip", tt.ctxNIP, "certificateSubject"), tt.key, cert, testStart, signOptions{})
			r := c.do("POST", "/auth/xades-signature"+tt.query, "", doc)
			c.expect(r, 202)
			var ai authInit
			r.decode(t, &ai)
			srv.Clock.Advance(emulator.DefaultAuthDelay)
			st := c.authStatus(ai)
			if st.Status.Code != tt.wantCode || !contains(st.Status.Details, tt.wantDetail) {
				t.Errorf("status %+v, want %d %q", st.Status, tt.wantCode, tt.wantDetail)
			}
		})
	}
}

func TestXAdESLoginRejected(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	key := rsaKey()
	cert := selfSigned(t, key, sealSubject(sellerNIP), testStart, time.Hour)
	signed := func(o signOptions) []byte {
		return signXAdES(t, authTokenRequest(ns20, c.challenge().Challenge, "Nip", sellerNIP, "certificateSubject"), key, cert, testStart, o)
	}
	tests := []struct {
		name       string
		doc        func() []byte
		wantCode   int
		wantDetail string
	}{
		{"not signed", func() []byte {
			return authTokenRequest(ns20, c.challenge().Challenge, "Nip", sellerNIP, "certificateSubject")
		}, 9102, "podpisu"},
		{"two signatures", func() []byte {
			doc := signed(signOptions{})
			start := bytes.Index(doc, []byte("<ds:Signature"))
			end := bytes.Index(doc, []byte("</ds:Signature>")) + len("</ds:Signature>")
			sig := doc[start:end]
			return bytes.Replace(doc, []byte("</AuthTokenRequest>"), append(append([]byte{}, sig...), []byte("</AuthTokenRequest>")...), 1)
		}, 9103, "2 podpisy"},
		{"malformed XML", func() []byte { return []byte("<AuthTokenRequest><Challenge></AuthTokenRequest>") }, 9101, "XML"},
		{"content changed after signing", func() []byte {
			return bytes.Replace(signed(signOptions{}), []byte("<Nip>"+sellerNIP+"</Nip>"), []byte("<Nip>"+otherNIP+"</Nip>"), 1)
		}, 9105, "Skrót referencji"},
		{"signature value changed", func() []byte {
			doc := signed(signOptions{})
			i := bytes.Index(doc, []byte("<ds:SignatureValue>")) + len("<ds:SignatureValue>")
			if doc[i] == 'A' {
				doc[i] = 'B'
			} else {
				doc[i] = 'A'
			}
			return doc
		}, 9105, "wartości podpisu"},
		{"no SignedProperties", func() []byte { return signed(signOptions{noSignedProps: true}) }, 9105, "SignedProperties"},
		{"SigningCertificate of another certificate", func() []byte { return signed(signOptions{wrongCertDigest: true}) }, 9105, "SigningCertificate"},
		{"ECDSA signature in DER", func() []byte {
			ec := ecKey()
			ecCert := selfSigned(t, ec, sealSubject(sellerNIP), testStart, time.Hour)
			return signXAdES(t, authTokenRequest(ns20, c.challenge().Challenge, "Nip", sellerNIP, "certificateSubject"), ec, ecCert, testStart, signOptions{derECDSA: true})
		}, 9105, "r||s"},
		{"detached reference", func() []byte { return signed(signOptions{referenceURI: "https://example.com/doc.xml"}) }, 9105, "detached"},
		{"schema violation", func() []byte {
			doc := authTokenRequest(ns20, c.challenge().Challenge, "Nip", sellerNIP, "certificateSubject")
			doc = bytes.Replace(doc, []byte("<SubjectIdentifierType>certificateSubject</SubjectIdentifierType>"), nil, 1)
			return signXAdES(t, doc, key, cert, testStart, signOptions{})
		}, 21401, "{http://ksef.mf.gov.pl/auth/token/2.0}SubjectIdentifierType"},
		{"unknown challenge", func() []byte {
			return signXAdES(t, authTokenRequest(ns20, "20250625-CR-20F5EE4000-DA48AE4124-46", "Nip", sellerNIP, "certificateSubject"), key, cert, testStart, signOptions{})
		}, 21111, ""},
		{"unreadable certificate", func() []byte {
			doc := signed(signOptions{})
			start := bytes.Index(doc, []byte("<ds:X509Certificate>")) + len("<ds:X509Certificate>")
			end := bytes.Index(doc, []byte("</ds:X509Certificate>"))
			return append(append(append([]byte{}, doc[:start]...), []byte("AAAA")...), doc[end:]...)
		}, 21115, "certyfikatu"},
		{"non-UTF-8 encoding", func() []byte {
			return bytes.Replace(signed(signOptions{}), []byte(`encoding="utf-8"`), []byte(`encoding="ISO-8859-2"`), 1)
		}, 21217, "ISO-8859-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := c.do("POST", "/auth/xades-signature", "", tt.doc())
			c.expect(r, 400)
			if code := r.exceptionCode(t); code != tt.wantCode {
				t.Errorf("code %d, want %d; body %s", code, tt.wantCode, r.body)
			}
			if d := r.exceptionDetails(t); tt.wantDetail != "" && !contains(d, tt.wantDetail) {
				t.Errorf("details %q do not mention %q", d, tt.wantDetail)
			}
		})
	}
}

// TestXAdESChallengeUsedOnce: a signed document cannot be replayed.
func TestXAdESChallengeUsedOnce(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	key := ecKey()
	cert := selfSigned(t, key, sealSubject(sellerNIP), testStart, time.Hour)
	doc := signXAdES(t, authTokenRequest(ns21, c.challenge().Challenge, "Nip", sellerNIP, "certificateSubject"), key, cert, testStart, signOptions{})
	c.expect(c.do("POST", "/auth/xades-signature", "", doc), 202)
	r := c.do("POST", "/auth/xades-signature", "", doc)
	if c.expect(r, 400); r.exceptionCode(t) != 21111 {
		t.Errorf("replayed document: code %d, want 21111", r.exceptionCode(t))
	}
	if !strings.Contains(string(doc), "ds:Signature") {
		t.Fatal("document is not signed")
	}
}
