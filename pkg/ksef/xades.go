package ksef

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/beevik/etree"
	"github.com/russellhaering/goxmldsig/etreeutils"
)

// AuthTokenNamespace is the XML namespace of the AuthTokenRequest documents BuildAuthTokenRequest
// produces: schema auth v2.0, the one the KSeF guide's examples, the OpenAPI example and both
// official SDKs use. KSeF also accepts v2.1 (http://ksef.mf.gov.pl/auth/token/2.1), which has the
// same structure and only fixes the IP-address patterns; the patterns enforced here are v2.1's.
const AuthTokenNamespace = "http://ksef.mf.gov.pl/auth/token/2.0"

// SubjectIdentifierType says how KSeF identifies the subject that signed an AuthTokenRequest.
type SubjectIdentifierType string

// Subject identifier types.
const (
	// SubjectCertificate takes the identity (NIP, PESEL, ...) from the certificate's subject.
	SubjectCertificate SubjectIdentifierType = "certificateSubject"
	// SubjectFingerprint takes the SHA-256 fingerprint of the certificate as the identity, for
	// certificates without a NIP or PESEL.
	SubjectFingerprint SubjectIdentifierType = "certificateFingerprint"
)

// AuthTokenRequest is the document signed for XAdES authentication (POST /auth/xades-signature).
type AuthTokenRequest struct {
	Challenge             string            // from POST /auth/challenge, 36 characters
	Context               ContextIdentifier // the context to authenticate in
	SubjectIdentifierType SubjectIdentifierType
	AllowedIPs            *AllowedIPs // optional: restrict where the resulting tokens may be used
}

// Patterns of schemat_auth_v2-1.xsd (identical in meaning to v2.0's, but valid XSD regexes).
var (
	challengePattern    = regexp.MustCompile(`^\d{8}-CR-[A-F0-9]{10}-[A-F0-9]{10}-[A-F0-9]{2}$`)
	internalIDPattern   = regexp.MustCompile(`^[1-9]((\d[1-9])|([1-9]\d))\d{7}-\d{5}$`)
	nipVatUEPattern     = regexp.MustCompile(`^[1-9]((\d[1-9])|([1-9]\d))\d{7}-((AT)(U\d{8})|(BE)([01]{1}\d{9})|(BG)(\d{9,10})|(CY)(\d{8}[A-Z])|(CZ)(\d{8,10})|(DE)(\d{9})|(DK)(\d{8})|(EE)(\d{9})|(EL)(\d{9})|(ES)([A-Z]\d{8}|\d{8}[A-Z]|[A-Z]\d{7}[A-Z])|(FI)(\d{8})|(FR)[A-Z0-9]{2}\d{9}|(HR)(\d{11})|(HU)(\d{8})|(IE)(\d{7}[A-Z]{2}|\d[A-Z0-9+*]\d{5}[A-Z])|(IT)(\d{11})|(LT)(\d{9}|\d{12})|(LU)(\d{8})|(LV)(\d{11})|(MT)(\d{8})|(NL)([A-Z0-9+*]{12})|(PT)(\d{9})|(RO)(\d{2,10})|(SE)(\d{12})|(SI)(\d{8})|(SK)(\d{10})|(XI)((\d{9}|(\d{12}))|(GD|HA)(\d{3})))$`)
	peppolIDPattern     = regexp.MustCompile(`^P[A-Z]{2}[0-9]{6}$`)
	ip4Octet            = `(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])`
	ip4Address          = `(` + ip4Octet + `\.){3}` + ip4Octet
	ip4AddressPattern   = regexp.MustCompile(`^` + ip4Address + `$`)
	ip4RangePattern     = regexp.MustCompile(`^` + ip4Address + `-` + ip4Address + `$`)
	ip4MaskPattern      = regexp.MustCompile(`^` + ip4Address + `/(0|[1-9]|[12][0-9]|3[0-2])$`)
	maxAllowedIPEntries = 10
)

// BuildAuthTokenRequest validates r against the auth schema's rules and returns the unsigned
// AuthTokenRequest document (UTF-8, namespace AuthTokenNamespace), ready for SignXAdES.
func BuildAuthTokenRequest(r AuthTokenRequest) ([]byte, error) {
	if err := r.validate(); err != nil {
		return nil, err
	}
	doc := etree.NewDocument()
	doc.CreateProcInst("xml", `version="1.0" encoding="utf-8"`)
	root := doc.CreateElement("AuthTokenRequest")
	root.CreateAttr("xmlns", AuthTokenNamespace)
	root.CreateElement("Challenge").SetText(r.Challenge)
	root.CreateElement("ContextIdentifier").CreateElement(string(r.Context.Type)).SetText(r.Context.Value)
	root.CreateElement("SubjectIdentifierType").SetText(string(r.SubjectIdentifierType))
	if r.AllowedIPs != nil {
		ips := root.CreateElement("AuthorizationPolicy").CreateElement("AllowedIps")
		// The schema's sequence order: addresses, then ranges, then masks.
		for _, v := range r.AllowedIPs.IP4Addresses {
			ips.CreateElement("Ip4Address").SetText(v)
		}
		for _, v := range r.AllowedIPs.IP4Ranges {
			ips.CreateElement("Ip4Range").SetText(v)
		}
		for _, v := range r.AllowedIPs.IP4Masks {
			ips.CreateElement("Ip4Mask").SetText(v)
		}
	}
	doc.Indent(2)
	out, err := doc.WriteToBytes()
	if err != nil {
		return nil, fmt.Errorf("ksef: auth token request: write: %w", err)
	}
	return out, nil
}

func (r AuthTokenRequest) validate() error {
	if !challengePattern.MatchString(r.Challenge) {
		return errors.New("ksef: auth token request: challenge is not in the KSeF format yyyymmdd-CR-XXXXXXXXXX-XXXXXXXXXX-XX")
	}
	var ok bool
	switch r.Context.Type {
	case ContextNip:
		ok = ValidNIP(r.Context.Value)
	case ContextInternalID:
		ok = internalIDPattern.MatchString(r.Context.Value)
	case ContextNipVatUE:
		ok = nipVatUEPattern.MatchString(r.Context.Value)
	case ContextPeppolID:
		ok = peppolIDPattern.MatchString(r.Context.Value)
	default:
		return fmt.Errorf("ksef: auth token request: unknown context identifier type %q", r.Context.Type)
	}
	if !ok {
		return fmt.Errorf("ksef: auth token request: context identifier %q does not match the %s format", r.Context.Value, r.Context.Type)
	}
	switch r.SubjectIdentifierType {
	case SubjectCertificate, SubjectFingerprint:
	default:
		return fmt.Errorf("ksef: auth token request: subject identifier type %q is not %q or %q",
			r.SubjectIdentifierType, SubjectCertificate, SubjectFingerprint)
	}
	if p := r.AllowedIPs; p != nil {
		if len(p.IP4Addresses)+len(p.IP4Ranges)+len(p.IP4Masks) == 0 {
			return errors.New("ksef: auth token request: allowed IPs set but empty (leave AllowedIPs nil for no restriction)")
		}
		lists := []struct {
			name    string
			values  []string
			pattern *regexp.Regexp
		}{
			{"IPv4 address", p.IP4Addresses, ip4AddressPattern},
			{"IPv4 range", p.IP4Ranges, ip4RangePattern},
			{"IPv4 mask", p.IP4Masks, ip4MaskPattern},
		}
		for _, l := range lists {
			if len(l.values) > maxAllowedIPEntries {
				return fmt.Errorf("ksef: auth token request: %d allowed %ses, at most %d", len(l.values), l.name, maxAllowedIPEntries)
			}
			for _, v := range l.values {
				if !l.pattern.MatchString(v) {
					return fmt.Errorf("ksef: auth token request: allowed %s %q is malformed", l.name, v)
				}
			}
		}
	}
	return nil
}

// XML Signature and XAdES identifiers.
const (
	nsDSig                 = "http://www.w3.org/2000/09/xmldsig#"
	nsXAdES                = "http://uri.etsi.org/01903/v1.3.2#"
	algExcC14N             = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algEnvelopedSignature  = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algSHA256              = "http://www.w3.org/2001/04/xmlenc#sha256"
	algRSASHA256           = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
	algECDSASHA256         = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
	typeSignedProperties   = "http://uri.etsi.org/01903#SignedProperties"
	xadesSignatureID       = "Signature"
	xadesSignedPropsID     = "SignedProperties"
	minRSASignatureKeyBits = 2048
	minECSignatureKeyBits  = 256
)

// SignXAdES signs an XML document (normally from BuildAuthTokenRequest) with an enveloped XAdES-BES
// signature in the shape KSeF accepts and the official SDKs produce: a ds:Signature (Id
// "Signature") appended as the last child of the root element, with
//
//   - SignedInfo canonicalized with exclusive XML canonicalization (exc-c14n), signature method
//     rsa-sha256 (RSA PKCS #1 v1.5, at least 2048 bits) or ecdsa-sha256 (SignatureValue as the
//     fixed-width concatenation r||s, not ASN.1 DER), chosen by the key type;
//   - a Reference to the whole document (URI "") with the transforms enveloped-signature and
//     exc-c14n, and a Reference to the SignedProperties (Type ...#SignedProperties) with exc-c14n,
//     both digested with SHA-256;
//   - KeyInfo/X509Data/X509Certificate holding cert;
//   - ds:Object/xades:QualifyingProperties/SignedProperties with SigningTime (signingTime in UTC,
//     whole seconds) and SigningCertificate (SHA-256 digest of cert, issuer DN and decimal serial).
//
// signingTime must lie within the certificate's validity. The official signer uses the current time
// minus one minute, so that a KSeF clock running slightly behind does not see a signature from the
// future; callers should do the same: SignXAdES(doc, key, cert, time.Now().Add(-time.Minute)).
//
// Every digest is computed over exactly what a verifier canonicalizes: each element in the context
// of the final document, inherited namespace declarations handled as exc-c14n prescribes. The
// document is re-serialized from its parsed form; carriage returns in text and tabs, line feeds
// and carriage returns in attribute values are written as character references, so that the
// verifier's parser reads the very values that were signed. The document must be UTF-8 without a
// DOCTYPE, processing instructions other than the XML declaration, an existing ds:Signature, or Id
// attributes named Signature or SignedProperties.
func SignXAdES(document []byte, key crypto.Signer, cert *x509.Certificate, signingTime time.Time) ([]byte, error) {
	if key == nil || cert == nil {
		return nil, errors.New("ksef: xades: key and certificate are required")
	}
	sigMethod, err := signatureMethod(key, cert)
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: %w", err)
	}
	if signingTime.IsZero() {
		return nil, errors.New("ksef: xades: signing time is required")
	}
	if signingTime.Before(cert.NotBefore) || signingTime.After(cert.NotAfter) {
		return nil, fmt.Errorf("ksef: xades: signing time %s is outside the certificate validity %s to %s",
			signingTime.UTC().Format(time.RFC3339), cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339))
	}
	issuer, err := issuerName(cert)
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: %w", err)
	}

	doc, err := parseDocumentToSign(document)
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: %w", err)
	}
	root := doc.Root()

	certDigest := sha256.Sum256(cert.Raw)
	sig := etree.NewElement("ds:Signature")
	sig.CreateAttr("xmlns:ds", nsDSig)
	sig.CreateAttr("Id", xadesSignatureID)

	signedInfo := sig.CreateElement("ds:SignedInfo")
	signedInfo.CreateElement("ds:CanonicalizationMethod").CreateAttr("Algorithm", algExcC14N)
	signedInfo.CreateElement("ds:SignatureMethod").CreateAttr("Algorithm", sigMethod)
	docRef := addReference(signedInfo, "", "", algEnvelopedSignature, algExcC14N)
	propsRef := addReference(signedInfo, "#"+xadesSignedPropsID, typeSignedProperties, algExcC14N)
	sigValue := sig.CreateElement("ds:SignatureValue")
	sig.CreateElement("ds:KeyInfo").CreateElement("ds:X509Data").CreateElement("ds:X509Certificate").
		SetText(base64.StdEncoding.EncodeToString(cert.Raw))

	qp := sig.CreateElement("ds:Object").CreateElement("xades:QualifyingProperties")
	qp.CreateAttr("xmlns:xades", nsXAdES)
	qp.CreateAttr("Target", "#"+xadesSignatureID)
	props := qp.CreateElement("xades:SignedProperties")
	props.CreateAttr("Id", xadesSignedPropsID)
	ssp := props.CreateElement("xades:SignedSignatureProperties")
	ssp.CreateElement("xades:SigningTime").SetText(signingTime.UTC().Format("2006-01-02T15:04:05Z"))
	certEl := ssp.CreateElement("xades:SigningCertificate").CreateElement("xades:Cert")
	digest := certEl.CreateElement("xades:CertDigest")
	digest.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", algSHA256)
	digest.CreateElement("ds:DigestValue").SetText(base64.StdEncoding.EncodeToString(certDigest[:]))
	issuerSerial := certEl.CreateElement("xades:IssuerSerial")
	issuerSerial.CreateElement("ds:X509IssuerName").SetText(issuer)
	issuerSerial.CreateElement("ds:X509SerialNumber").SetText(cert.SerialNumber.String())

	// Put the signature into the document first: every canonicalization below must see the
	// namespace context of the final document, as the verifier will.
	root.AddChild(sig)

	propsDigest, err := digestInContext(props)
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: canonicalize signed properties: %w", err)
	}
	propsRef.SetText(propsDigest)

	// Enveloped-signature transform: the document without the Signature element.
	enveloped := root.Copy()
	enveloped.RemoveChildAt(sig.Index())
	docDigest, err := digestInContext(enveloped)
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: canonicalize document: %w", err)
	}
	docRef.SetText(docDigest)

	canonicalSignedInfo, err := canonicalizeInContext(signedInfo)
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: canonicalize signed info: %w", err)
	}
	signature, err := signSHA256(key, canonicalSignedInfo)
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: sign: %w", err)
	}
	sigValue.SetText(base64.StdEncoding.EncodeToString(signature))

	doc.WriteSettings = etree.WriteSettings{CanonicalText: true, CanonicalAttrVal: true}
	out, err := doc.WriteToBytes()
	if err != nil {
		return nil, fmt.Errorf("ksef: xades: write: %w", err)
	}
	return out, nil
}

// addReference appends a ds:Reference with a SHA-256 DigestMethod and returns its empty
// ds:DigestValue.
func addReference(signedInfo *etree.Element, uri, typ string, transforms ...string) *etree.Element {
	ref := signedInfo.CreateElement("ds:Reference")
	if typ != "" {
		ref.CreateAttr("Type", typ)
	}
	ref.CreateAttr("URI", uri)
	tr := ref.CreateElement("ds:Transforms")
	for _, alg := range transforms {
		tr.CreateElement("ds:Transform").CreateAttr("Algorithm", alg)
	}
	ref.CreateElement("ds:DigestMethod").CreateAttr("Algorithm", algSHA256)
	return ref.CreateElement("ds:DigestValue")
}

// canonicalizeInContext returns the exclusive canonical form (exc-c14n 1.0, without comments) of
// el as it appears in its document: the namespace declarations in scope at el are attached to a
// detached copy, and exc-c14n keeps only those visibly used. el itself is not modified.
//
// The transform is goxmldsig's, followed by fixExcC14N, which corrects two places where goxmldsig
// v1.6.1 departs from the specification (both shown against libxml2 in the tests).
func canonicalizeInContext(el *etree.Element) ([]byte, error) {
	ctx, err := etreeutils.NSBuildParentContext(el)
	if err != nil {
		return nil, err
	}
	detached, err := etreeutils.NSDetatch(ctx, el)
	if err != nil {
		return nil, err
	}
	if err := etreeutils.TransformExcC14n(detached, "", false); err != nil {
		return nil, err
	}
	fixExcC14N(detached, "", map[string]string{"xml": etreeutils.XMLNamespace})
	doc := etree.NewDocument()
	doc.SetRoot(detached)
	doc.WriteSettings = etree.WriteSettings{CanonicalEndTags: true, CanonicalText: true, CanonicalAttrVal: true}
	return doc.WriteToBytes()
}

// fixExcC14N corrects, in place, the output of goxmldsig's exc-c14n transform:
//
//   - An empty default namespace declaration (xmlns="") is output only if the nearest output
//     ancestor rendered a non-empty default namespace (Exclusive XML Canonicalization 1.0, §3,
//     rule for the default namespace). goxmldsig starts from a non-empty default and so also emits
//     xmlns="" below ancestors that rendered none.
//   - Attributes are ordered by namespace URI, then local name (Canonical XML 1.0, §2.2: unqualified
//     attributes first). goxmldsig orders attributes with different prefixes by local name.
//
// rendered is the default namespace rendered by the nearest output ancestor ("" for none); scope
// maps the prefixes declared by output ancestors to their namespaces.
func fixExcC14N(el *etree.Element, rendered string, scope map[string]string) {
	attrs := el.Attr[:0]
	local, cloned := scope, false
	for _, a := range el.Attr {
		switch {
		case a.Space == "" && a.Key == "xmlns":
			if a.Value == "" && rendered == "" {
				continue
			}
			rendered = a.Value
		case a.Space == "xmlns":
			if !cloned {
				local, cloned = maps.Clone(scope), true
			}
			local[a.Key] = a.Value
		}
		attrs = append(attrs, a)
	}
	el.Attr = attrs
	// c14nKey orders namespace declarations first (the default one first, then by prefix), then
	// attributes by namespace URI and local name.
	c14nKey := func(a etree.Attr) (group int, first, second string) {
		switch {
		case a.Space == "" && a.Key == "xmlns":
			return 0, "", ""
		case a.Space == "xmlns":
			return 1, a.Key, ""
		case a.Space == "":
			return 2, "", a.Key
		}
		uri, ok := local[a.Space]
		if !ok {
			uri = a.Space // cannot happen: the transform declares every prefix it keeps
		}
		return 2, uri, a.Key
	}
	sort.SliceStable(el.Attr, func(i, j int) bool {
		gi, fi, si := c14nKey(el.Attr[i])
		gj, fj, sj := c14nKey(el.Attr[j])
		if gi != gj {
			return gi < gj
		}
		if fi != fj {
			return fi < fj
		}
		return si < sj
	})
	for _, child := range el.ChildElements() {
		fixExcC14N(child, rendered, local)
	}
}

func digestInContext(el *etree.Element) (string, error) {
	c, err := canonicalizeInContext(el)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(c)
	return base64.StdEncoding.EncodeToString(sum[:]), nil
}

// signatureMethod checks that key belongs to cert, may sign and is strong enough for KSeF, and
// returns the XML Signature algorithm for it.
func signatureMethod(key crypto.Signer, cert *x509.Certificate) (string, error) {
	if err := checkKeyMatchesCertificate(cert, key); err != nil {
		return "", err
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return "", errors.New("certificate key usage allows neither digitalSignature nor nonRepudiation")
	}
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < minRSASignatureKeyBits {
			return "", fmt.Errorf("RSA key of %d bits, KSeF requires at least %d", pub.N.BitLen(), minRSASignatureKeyBits)
		}
		return algRSASHA256, nil
	case *ecdsa.PublicKey:
		if bits := pub.Curve.Params().BitSize; bits < minECSignatureKeyBits {
			return "", fmt.Errorf("EC key of %d bits, KSeF requires at least %d", bits, minECSignatureKeyBits)
		}
		return algECDSASHA256, nil
	default:
		return "", fmt.Errorf("unsupported key type %T (want RSA or ECDSA)", pub)
	}
}

// signSHA256 signs the SHA-256 digest of data: PKCS #1 v1.5 for RSA, r||s for ECDSA (XML Signature
// and KSeF require the fixed-width IEEE P1363 form, while crypto.Signer returns ASN.1 DER).
func signSHA256(key crypto.Signer, data []byte) ([]byte, error) {
	digest := sha256.Sum256(data)
	sig, err := key.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(*ecdsa.PublicKey)
	if !ok {
		return sig, nil
	}
	var rs struct{ R, S *big.Int }
	rest, err := asn1.Unmarshal(sig, &rs)
	if err != nil || len(rest) != 0 || rs.R == nil || rs.S == nil || rs.R.Sign() <= 0 || rs.S.Sign() <= 0 {
		return nil, errors.New("ECDSA signer returned a malformed ASN.1 signature")
	}
	size := (pub.Curve.Params().BitSize + 7) / 8
	if rs.R.BitLen() > 8*size || rs.S.BitLen() > 8*size {
		return nil, errors.New("ECDSA signer returned a signature too large for its curve")
	}
	out := make([]byte, 2*size)
	rs.R.FillBytes(out[:size])
	rs.S.FillBytes(out[size:])
	return out, nil
}

// issuerName returns the certificate's issuer as an RFC 4514 string (most specific RDN first),
// decoded from the raw DER so that no attribute and no RDN order is lost: CN, O, OU, C, L, ST,
// STREET, POSTALCODE and SERIALNUMBER by name, other types as dotted OID with a #-hex DER value
// (e.g. organizationIdentifier as 2.5.4.97=#13...).
func issuerName(cert *x509.Certificate) (string, error) {
	var rdns pkix.RDNSequence
	rest, err := asn1.Unmarshal(cert.RawIssuer, &rdns)
	if err != nil || len(rest) != 0 {
		return "", errors.New("certificate issuer is not a valid distinguished name")
	}
	return rdns.String(), nil
}

// parseDocumentToSign parses document and rejects what could make the verifier see something
// other than what is signed.
func parseDocumentToSign(document []byte) (*etree.Document, error) {
	if len(document) == 0 {
		return nil, errors.New("document is empty")
	}
	if bytes.HasPrefix(document, utf8BOM) {
		return nil, errors.New("document starts with a byte order mark")
	}
	if !utf8.Valid(document) {
		return nil, errors.New("document is not valid UTF-8")
	}
	if enc, ok := declaredEncoding(document); ok && !strings.EqualFold(enc, "utf-8") {
		return nil, fmt.Errorf("document declares encoding %s, want UTF-8", quoteEncoding(enc))
	}
	doc := etree.NewDocument()
	doc.ReadSettings.PreserveDuplicateAttrs = true
	if err := doc.ReadFromBytes(document); err != nil {
		return nil, fmt.Errorf("parse document: %w", err)
	}
	roots := 0
	for i, t := range doc.Child {
		switch t := t.(type) {
		case *etree.Element:
			roots++
		case *etree.Directive:
			return nil, errors.New("document has a DOCTYPE or other directive")
		case *etree.ProcInst:
			if i != 0 || t.Target != "xml" {
				return nil, errors.New("document has a processing instruction")
			}
		case *etree.CharData:
			if strings.TrimSpace(t.Data) != "" {
				return nil, errors.New("document has text outside the root element")
			}
		}
	}
	if roots != 1 {
		return nil, fmt.Errorf("document has %d root elements, want 1", roots)
	}
	if err := checkSignable(doc.Root()); err != nil {
		return nil, err
	}
	return doc, nil
}

func checkSignable(el *etree.Element) error {
	if el.Tag == "Signature" && el.NamespaceURI() == nsDSig {
		return errors.New("document already contains a ds:Signature")
	}
	seen := make(map[string]bool, len(el.Attr))
	for _, a := range el.Attr {
		if seen[a.FullKey()] {
			return fmt.Errorf("element %s has a duplicate attribute %s", el.FullTag(), a.FullKey())
		}
		seen[a.FullKey()] = true
		if strings.EqualFold(a.Key, "id") && (a.Value == xadesSignatureID || a.Value == xadesSignedPropsID) {
			return fmt.Errorf("document already uses the Id %q", a.Value)
		}
	}
	for _, t := range el.Child {
		switch t := t.(type) {
		case *etree.Element:
			if err := checkSignable(t); err != nil {
				return err
			}
		case *etree.ProcInst:
			return errors.New("document has a processing instruction")
		case *etree.Directive:
			return errors.New("document has a directive")
		}
	}
	return nil
}

var (
	utf8BOM = []byte{0xEF, 0xBB, 0xBF}
	// encodingDeclPattern finds the encoding pseudo-attribute of an XML declaration.
	encodingDeclPattern = regexp.MustCompile(`[ \t\r\n]encoding[ \t\r\n]*=[ \t\r\n]*(?:"([^"]*)"|'([^']*)')`)
	// encNamePattern is the XML 1.0 production EncName.
	encNamePattern = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9._-]{0,39}$`)
)

// declaredEncoding returns the encoding named in the XML declaration at the start of document and
// whether there is one.
func declaredEncoding(document []byte) (string, bool) {
	if !bytes.HasPrefix(document, []byte("<?xml")) {
		return "", false
	}
	end := bytes.Index(document, []byte("?>"))
	if end < 0 {
		return "", false // unterminated: the parser reports it
	}
	m := encodingDeclPattern.FindSubmatch(document[:end])
	if m == nil {
		return "", false
	}
	return string(m[1]) + string(m[2]), true
}

// quoteEncoding quotes an encoding name for an error message, or describes it if it is not a
// plausible name (so that no arbitrary document text reaches an error).
func quoteEncoding(enc string) string {
	if encNamePattern.MatchString(enc) {
		return fmt.Sprintf("%q", enc)
	}
	return "a malformed encoding name"
}
