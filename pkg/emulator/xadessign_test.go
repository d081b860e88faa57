package emulator_test

// An XAdES-BES signer for the tests, built on etree and goxmldsig's canonicalizers in the shape
// the official C# signer produces (enveloped ds:Signature, a reference to the document and one to
// xades:SignedProperties, SigningTime and SigningCertificate), with switches for the mistakes
// KSeF must reject.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/russellhaering/goxmldsig/etreeutils"
)

const (
	dsNS    = "http://www.w3.org/2000/09/xmldsig#"
	xadesNS = "http://uri.etsi.org/01903/v1.3.2#"
	excC14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
	c14n10  = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
	sha256D = "http://www.w3.org/2001/04/xmlenc#sha256"
)

var (
	rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		return k
	})
	weakRSAKey = sync.OnceValue(func() *rsa.PrivateKey {
		k, err := rsa.GenerateKey(rand.Reader, 1024) //nolint:gosec // deliberately too small
		if err != nil {
			panic(err)
		}
		return k
	})
	ecKey = sync.OnceValue(func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic(err)
		}
		return k
	})
)

var oidOrgID = asn1.ObjectIdentifier{2, 5, 4, 97}

func sealSubject(nip string) pkix.Name {
	return pkix.Name{CommonName: "Firma testowa", Organization: []string{"Firma testowa"}, Country: []string{"PL"},
		ExtraNames: []pkix.AttributeTypeAndValue{{Type: oidOrgID, Value: "VATPL-" + nip}}}
}

func personSubject(serial string) pkix.Name {
	return pkix.Name{CommonName: "Jan Kowalski", SerialNumber: serial, Country: []string{"PL"},
		ExtraNames: []pkix.AttributeTypeAndValue{
			{Type: asn1.ObjectIdentifier{2, 5, 4, 42}, Value: "Jan"},
			{Type: asn1.ObjectIdentifier{2, 5, 4, 4}, Value: "Kowalski"},
		}}
}

// selfSigned returns a self-signed certificate as the TEST environment accepts, back-dated like
// the official SDK's (notBefore = now - 61 min).
func selfSigned(t testing.TB, key crypto.Signer, subject pkix.Name, now time.Time, lifetime time.Duration) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      subject,
		NotBefore:    now.Add(-61 * time.Minute),
		NotAfter:     now.Add(lifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// authTokenRequest returns an unsigned AuthTokenRequest.
func authTokenRequest(ns, challenge, contextElement, contextValue, subjectType string) []byte {
	return []byte(`<?xml version="1.0" encoding="utf-8"?>
<AuthTokenRequest xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns="` + ns + `">
    <Challenge>` + challenge + `</Challenge>
    <ContextIdentifier>
        <` + contextElement + `>` + contextValue + `</` + contextElement + `>
    </ContextIdentifier>
    <SubjectIdentifierType>` + subjectType + `</SubjectIdentifierType>
</AuthTokenRequest>`)
}

type signOptions struct {
	c14n            string // canonicalization of SignedInfo and references (default exclusive)
	pss             bool   // RSA-PSS instead of PKCS#1 v1.5
	derECDSA        bool   // ECDSA signature as ASN.1 DER instead of r||s
	noSignedProps   bool   // leave out xades:QualifyingProperties
	wrongCertDigest bool   // SigningCertificate names another certificate
	referenceURI    string // URI of the document reference (default "")
	enveloping      bool   // the signature is the root and holds the request in a ds:Object
}

func canonical(t testing.TB, el *etree.Element, alg string) []byte {
	t.Helper()
	ctx, err := etreeutils.NSBuildParentContext(el)
	if err != nil {
		t.Fatal(err)
	}
	detached, err := etreeutils.NSDetatch(ctx, el)
	if err != nil {
		t.Fatal(err)
	}
	var c dsig.Canonicalizer
	if alg == c14n10 {
		c = dsig.MakeC14N10RecCanonicalizer()
	} else {
		c = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	}
	b, err := c.Canonicalize(detached)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(s[:])
}

// signXAdES signs an AuthTokenRequest with an enveloped (or, with o.enveloping, enveloping)
// XAdES-BES signature.
func signXAdES(t testing.TB, document []byte, key crypto.Signer, cert *x509.Certificate, now time.Time, o signOptions) []byte {
	t.Helper()
	if o.c14n == "" {
		o.c14n = excC14N
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(document); err != nil {
		t.Fatalf("parse document: %v", err)
	}
	root := doc.Root()
	var sig *etree.Element
	if o.enveloping {
		out := etree.NewDocument()
		out.CreateProcInst("xml", `version="1.0" encoding="utf-8"`)
		sig = out.CreateElement("ds:Signature")
		doc = out
	} else {
		sig = root.CreateElement("ds:Signature")
	}
	sig.CreateAttr("xmlns:ds", dsNS)
	sig.CreateAttr("Id", "Signature")
	si := sig.CreateElement("ds:SignedInfo")
	si.CreateElement("ds:CanonicalizationMethod").CreateAttr("Algorithm", o.c14n)
	method := si.CreateElement("ds:SignatureMethod")
	switch {
	case isEC(key):
		method.CreateAttr("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256")
	case o.pss:
		method.CreateAttr("Algorithm", "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1")
	default:
		method.CreateAttr("Algorithm", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
	}
	ref := si.CreateElement("ds:Reference")
	tr := ref.CreateElement("ds:Transforms")
	if o.enveloping {
		ref.CreateAttr("URI", "#AuthObject")
	} else {
		ref.CreateAttr("URI", o.referenceURI)
		tr.CreateElement("ds:Transform").CreateAttr("Algorithm", "http://www.w3.org/2000/09/xmldsig#enveloped-signature")
	}
	tr.CreateElement("ds:Transform").CreateAttr("Algorithm", o.c14n)
	ref.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", sha256D)
	docDigest := ref.CreateElement("ds:DigestValue")
	if !o.enveloping {
		// The enveloped-signature transform removes the signature, which is still empty here.
		detached := root.Copy()
		detached.RemoveChildAt(sig.Index())
		docDigest.SetText(digest(canonical(t, detached, o.c14n)))
	}

	var propsDigest *etree.Element
	if !o.noSignedProps {
		pref := si.CreateElement("ds:Reference")
		pref.CreateAttr("URI", "#SignedProperties")
		pref.CreateAttr("Type", "http://uri.etsi.org/01903#SignedProperties")
		pref.CreateElement("ds:Transforms").CreateElement("ds:Transform").CreateAttr("Algorithm", o.c14n)
		pref.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", sha256D)
		propsDigest = pref.CreateElement("ds:DigestValue")
	}
	sigValue := sig.CreateElement("ds:SignatureValue")
	sig.CreateElement("ds:KeyInfo").CreateElement("ds:X509Data").CreateElement("ds:X509Certificate").
		SetText(base64.StdEncoding.EncodeToString(cert.Raw))
	if o.enveloping {
		obj := sig.CreateElement("ds:Object")
		obj.CreateAttr("Id", "AuthObject")
		obj.AddChild(root)
		docDigest.SetText(digest(canonical(t, obj, o.c14n)))
	}
	if !o.noSignedProps {
		qp := sig.CreateElement("ds:Object").CreateElement("xades:QualifyingProperties")
		qp.CreateAttr("xmlns:xades", xadesNS)
		qp.CreateAttr("Target", "#Signature")
		sp := qp.CreateElement("xades:SignedProperties")
		sp.CreateAttr("Id", "SignedProperties")
		ssp := sp.CreateElement("xades:SignedSignatureProperties")
		ssp.CreateElement("xades:SigningTime").SetText(now.Add(-time.Minute).UTC().Format(time.RFC3339))
		certDER := cert.Raw
		if o.wrongCertDigest {
			certDER = append([]byte{0}, certDER...)
		}
		c := ssp.CreateElement("xades:SigningCertificate").CreateElement("xades:Cert")
		cd := c.CreateElement("xades:CertDigest")
		cd.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", sha256D)
		cd.CreateElement("ds:DigestValue").SetText(digest(certDER))
		is := c.CreateElement("xades:IssuerSerial")
		is.CreateElement("ds:X509IssuerName").SetText(cert.Issuer.String())
		is.CreateElement("ds:X509SerialNumber").SetText(cert.SerialNumber.String())
		propsDigest.SetText(digest(canonical(t, sp, o.c14n)))
	}

	signed := sha256.Sum256(canonical(t, si, o.c14n))
	var value []byte
	var err error
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if o.pss {
			value, err = rsa.SignPSS(rand.Reader, k, crypto.SHA256, signed[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		} else {
			value, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, signed[:])
		}
	case *ecdsa.PrivateKey:
		if o.derECDSA {
			value, err = ecdsa.SignASN1(rand.Reader, k, signed[:])
		} else {
			var r, s *big.Int
			r, s, err = ecdsa.Sign(rand.Reader, k, signed[:])
			if err == nil {
				value = make([]byte, 64)
				r.FillBytes(value[:32])
				s.FillBytes(value[32:])
			}
		}
	}
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	sigValue.SetText(base64.StdEncoding.EncodeToString(value))
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func isEC(k crypto.Signer) bool {
	_, ok := k.(*ecdsa.PrivateKey)
	return ok
}
