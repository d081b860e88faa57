package emulator

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	_ "crypto/sha1" // digest and signature methods of XML-DSig
	"crypto/sha256"
	_ "crypto/sha3"
	_ "crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"
	"github.com/russellhaering/goxmldsig/etreeutils"

	"github.com/ksef-serverless/ksef-serverless/internal/xsd"
)

const (
	nsAuth20 = "http://ksef.mf.gov.pl/auth/token/2.0"
	nsAuth21 = "http://ksef.mf.gov.pl/auth/token/2.1"
	nsDSig   = "http://www.w3.org/2000/09/xmldsig#"
	nsXAdES  = "http://uri.etsi.org/01903/v1.3.2#"

	algEnveloped     = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
	algXPath         = "http://www.w3.org/TR/1999/REC-xpath-19991116"
	algC14N10        = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
	algC14N10Comment = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
	algC14N11        = "http://www.w3.org/2006/12/xml-c14n11"
	algC14N11Comment = "http://www.w3.org/2006/12/xml-c14n11#WithComments"
	algExcC14N       = "http://www.w3.org/2001/10/xml-exc-c14n#"
	algExcC14NCommnt = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
)

var digestMethods = map[string]crypto.Hash{
	"http://www.w3.org/2000/09/xmldsig#sha1":          crypto.SHA1,
	"http://www.w3.org/2001/04/xmldsig-more#sha224":   crypto.SHA224,
	"http://www.w3.org/2001/04/xmlenc#sha256":         crypto.SHA256,
	"http://www.w3.org/2001/04/xmldsig-more#sha384":   crypto.SHA384,
	"http://www.w3.org/2001/04/xmlenc#sha512":         crypto.SHA512,
	"http://www.w3.org/2007/05/xmldsig-more#sha3-224": crypto.SHA3_224,
	"http://www.w3.org/2007/05/xmldsig-more#sha3-256": crypto.SHA3_256,
	"http://www.w3.org/2007/05/xmldsig-more#sha3-384": crypto.SHA3_384,
	"http://www.w3.org/2007/05/xmldsig-more#sha3-512": crypto.SHA3_512,
}

type sigScheme int

const (
	schemePKCS1 sigScheme = iota
	schemePSS
	schemeECDSA
)

type signatureMethod struct {
	scheme sigScheme
	hash   crypto.Hash
}

// signatureMethods are the SignatureMethod algorithms KSeF accepts: RSA PKCS#1 v1.5, RSA-PSS
// (RFC 6931 "…-rsa-MGF1") and ECDSA, with SHA-1, SHA-2 and SHA-3 digests.
var signatureMethods = map[string]signatureMethod{
	"http://www.w3.org/2000/09/xmldsig#rsa-sha1":               {schemePKCS1, crypto.SHA1},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha224":        {schemePKCS1, crypto.SHA224},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256":        {schemePKCS1, crypto.SHA256},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha384":        {schemePKCS1, crypto.SHA384},
	"http://www.w3.org/2001/04/xmldsig-more#rsa-sha512":        {schemePKCS1, crypto.SHA512},
	"http://www.w3.org/2007/05/xmldsig-more#sha1-rsa-MGF1":     {schemePSS, crypto.SHA1},
	"http://www.w3.org/2007/05/xmldsig-more#sha224-rsa-MGF1":   {schemePSS, crypto.SHA224},
	"http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1":   {schemePSS, crypto.SHA256},
	"http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1":   {schemePSS, crypto.SHA384},
	"http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1":   {schemePSS, crypto.SHA512},
	"http://www.w3.org/2007/05/xmldsig-more#sha3-256-rsa-MGF1": {schemePSS, crypto.SHA3_256},
	"http://www.w3.org/2007/05/xmldsig-more#sha3-384-rsa-MGF1": {schemePSS, crypto.SHA3_384},
	"http://www.w3.org/2007/05/xmldsig-more#sha3-512-rsa-MGF1": {schemePSS, crypto.SHA3_512},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1":        {schemeECDSA, crypto.SHA1},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha224":      {schemeECDSA, crypto.SHA224},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256":      {schemeECDSA, crypto.SHA256},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384":      {schemeECDSA, crypto.SHA384},
	"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512":      {schemeECDSA, crypto.SHA512},
	"http://www.w3.org/2021/04/xmldsig-more#ecdsa-sha3-256":    {schemeECDSA, crypto.SHA3_256},
	"http://www.w3.org/2021/04/xmldsig-more#ecdsa-sha3-384":    {schemeECDSA, crypto.SHA3_384},
	"http://www.w3.org/2021/04/xmldsig-more#ecdsa-sha3-512":    {schemeECDSA, crypto.SHA3_512},
}

// authDocument is what a verified AuthTokenRequest says and who signed it.
type authDocument struct {
	challenge   string
	context     contextID
	subjectType string // certificateSubject or certificateFingerprint
	policy      *ipPolicy
	cert        *x509.Certificate
	hash        string // Base64 SHA-256 of the document as received, for UPOs
}

func invalidSignature(detail string) *apiError { return newAPIError(codeInvalidSignature, detail) }

// verifyAuthDocument parses and verifies a signed AuthTokenRequest: encoding, well-formedness,
// exactly one signature, schema (auth 2.0 or 2.1), the XML signature (references, digests,
// SignatureValue against the KeyInfo certificate) and the XAdES SigningCertificate. It does not
// judge the certificate itself (validity, identity, permissions): that is the asynchronous part.
func (e *Emulator) verifyAuthDocument(body []byte) (*authDocument, *apiError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, newAPIError(codeUnreadableContent, "Treść żądania jest pusta.")
	}
	if !utf8.Valid(body) {
		return nil, newAPIError(codeInvalidEncoding, "Dokument nie jest poprawnie zakodowany w UTF-8.")
	}
	if decl, ok := bytes.CutPrefix(bytes.TrimPrefix(body, []byte("\xEF\xBB\xBF")), []byte("<?xml")); ok {
		if end := bytes.Index(decl, []byte("?>")); end >= 0 {
			if enc := declaredEncoding(string(decl[:end])); enc != "" && !strings.EqualFold(enc, "UTF-8") {
				return nil, newAPIError(codeInvalidEncoding, fmt.Sprintf("Kodowanie %q nie jest obsługiwane; wymagane jest UTF-8.", enc))
			}
		}
	}
	doc := etree.NewDocument()
	doc.ReadSettings.ValidateInput = true
	doc.ReadSettings.CharsetReader = func(_ string, r io.Reader) (io.Reader, error) { return r, nil }
	// etree's input validation refuses whitespace after the root element, which is well-formed
	// XML (most signers end the file with a newline) and outside what canonicalization sees.
	if err := doc.ReadFromBytes(bytes.TrimRight(body, " \t\r\n")); err != nil {
		return nil, newAPIError(codeInvalidDocument, "Dokument nie jest poprawnym dokumentem XML: "+err.Error())
	}
	for _, t := range doc.Child {
		if _, ok := t.(*etree.Directive); ok {
			return nil, newAPIError(codeInvalidDocument, "Deklaracja DTD nie jest dozwolona.")
		}
	}
	root := doc.Root()
	if root == nil {
		return nil, newAPIError(codeInvalidDocument, "Dokument nie zawiera elementu głównego.")
	}
	var sigs []*etree.Element
	walk(root, func(el *etree.Element) {
		if el.Tag == "Signature" && el.NamespaceURI() == nsDSig {
			sigs = append(sigs, el)
		}
	})
	switch {
	case len(sigs) == 0:
		return nil, newAPIError(codeNoSignature, "Dokument nie zawiera podpisu XAdES.")
	case len(sigs) > 1:
		return nil, newAPIError(codeTooManySignatures, fmt.Sprintf("Dokument zawiera %d podpisy; dozwolony jest jeden.", len(sigs)))
	}
	sig := sigs[0]
	req := findAuthRequest(root)
	if req == nil {
		return nil, newAPIError(codeSchemaInvalid, "Dokument nie zawiera elementu AuthTokenRequest w przestrzeni nazw "+nsAuth20+" ani "+nsAuth21+".")
	}
	if aerr := e.validateAuthSchema(req, sig); aerr != nil {
		return nil, aerr
	}
	ad, aerr := readAuthRequest(req)
	if aerr != nil {
		return nil, aerr
	}
	cert, aerr := signerCertificate(sig)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := verifySignature(root, sig, req, cert); aerr != nil {
		return nil, aerr
	}
	ad.cert = cert
	ad.hash = sha256Base64(body)
	return ad, nil
}

// walk calls f for el and every element below it, in document order.
func walk(el *etree.Element, f func(*etree.Element)) {
	f(el)
	for _, c := range el.ChildElements() {
		walk(c, f)
	}
}

func isAuthNamespace(ns string) bool { return ns == nsAuth20 || ns == nsAuth21 }

// findAuthRequest returns the AuthTokenRequest element: the root of an enveloped signature, or
// the content of a ds:Object of an enveloping one.
func findAuthRequest(root *etree.Element) *etree.Element {
	if root.Tag == "AuthTokenRequest" && isAuthNamespace(root.NamespaceURI()) {
		return root
	}
	if root.Tag != "Signature" || root.NamespaceURI() != nsDSig {
		return nil
	}
	for _, obj := range root.ChildElements() {
		if obj.Tag != "Object" || obj.NamespaceURI() != nsDSig {
			continue
		}
		for _, c := range obj.ChildElements() {
			if c.Tag == "AuthTokenRequest" && isAuthNamespace(c.NamespaceURI()) {
				return c
			}
		}
	}
	return nil
}

// validateAuthSchema validates the AuthTokenRequest, without its signature, against the auth
// schema. Auth 2.0 documents are validated against 2.1 with the namespace swapped: the schemas
// describe the same document, and the 2.0 one does not compile in libxml2.
func (e *Emulator) validateAuthSchema(req, sig *etree.Element) *apiError {
	ctx, err := etreeutils.NSBuildParentContext(req)
	if err != nil {
		return newAPIError(codeInvalidDocument, "Nieprawidłowe deklaracje przestrzeni nazw: "+err.Error())
	}
	detached, err := etreeutils.NSDetatch(ctx, req)
	if err != nil {
		return newAPIError(codeInvalidDocument, "Nieprawidłowe deklaracje przestrzeni nazw: "+err.Error())
	}
	if path, ok := tokenPath(req, sig); ok {
		removeAtPath(detached, path)
	}
	walk(detached, func(el *etree.Element) {
		for i, a := range el.Attr {
			if (a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns")) && a.Value == nsAuth20 {
				el.Attr[i].Value = nsAuth21
			}
		}
	})
	out := etree.NewDocument()
	out.SetRoot(detached)
	b, err := out.WriteToBytes()
	if err != nil {
		return newAPIError(codeInvalidDocument, "Nie można przetworzyć dokumentu: "+err.Error())
	}
	if err := e.authXSD.Validate(b); err != nil {
		msgs := []string{err.Error()}
		var ve *xsd.ValidationError
		if errors.As(err, &ve) && len(ve.Messages) > 0 {
			msgs = slices.Clone(ve.Messages)
		}
		if req.NamespaceURI() == nsAuth20 {
			// Speak of the namespace the client used, not the one validated against.
			for i, m := range msgs {
				msgs[i] = strings.ReplaceAll(m, "{"+nsAuth21+"}", "{"+nsAuth20+"}")
			}
		}
		return newAPIError(codeSchemaInvalid, msgs...)
	}
	return nil
}

// tokenPath returns the positions (indexes into Child) leading from ancestor down to el, and
// whether el is below ancestor at all.
func tokenPath(ancestor, el *etree.Element) ([]int, bool) {
	var path []int
	for cur := el; cur != ancestor; cur = cur.Parent() {
		if cur.Parent() == nil {
			return nil, false
		}
		path = append(path, cur.Index())
	}
	slices.Reverse(path)
	return path, true
}

// removeAtPath removes the token at path below root (a copy of the element tokenPath was computed
// on).
func removeAtPath(root *etree.Element, path []int) {
	cur := root
	for _, i := range path[:len(path)-1] {
		cur = cur.Child[i].(*etree.Element)
	}
	cur.RemoveChildAt(path[len(path)-1])
}

// readAuthRequest reads the fields of a schema-valid AuthTokenRequest.
func readAuthRequest(req *etree.Element) (*authDocument, *apiError) {
	ad := &authDocument{}
	text := func(el *etree.Element) string { return strings.TrimSpace(el.Text()) }
	for _, c := range req.ChildElements() {
		switch c.Tag {
		case "Challenge":
			ad.challenge = text(c)
		case "ContextIdentifier":
			if id := c.ChildElements(); len(id) == 1 {
				ad.context = contextID{Type: id[0].Tag, Value: text(id[0])}
			}
		case "SubjectIdentifierType":
			ad.subjectType = text(c)
		case "AuthorizationPolicy":
			var addrs, ranges, masks []string
			for _, ips := range c.ChildElements() {
				for _, ip := range ips.ChildElements() {
					switch ip.Tag {
					case "Ip4Address":
						addrs = append(addrs, text(ip))
					case "Ip4Range":
						ranges = append(ranges, text(ip))
					case "Ip4Mask":
						masks = append(masks, text(ip))
					}
				}
			}
			p, err := parseIPPolicy(addrs, ranges, masks)
			if err != nil {
				return nil, newAPIError(codeValidation, err.Error())
			}
			ad.policy = p
		}
	}
	if re, ok := contextPatterns[ad.context.Type]; !ok || !re.MatchString(ad.context.Value) {
		return nil, newAPIError(codeSchemaInvalid, "Nieprawidłowy identyfikator kontekstu.")
	}
	return ad, nil
}

// dsChild returns the first child of el in the XML-DSig namespace with the given tag.
func dsChild(el *etree.Element, tag string) *etree.Element {
	return nsChild(el, nsDSig, tag)
}

func nsChild(el *etree.Element, ns, tag string) *etree.Element {
	if el == nil {
		return nil
	}
	for _, c := range el.ChildElements() {
		if c.Tag == tag && c.NamespaceURI() == ns {
			return c
		}
	}
	return nil
}

func nsChildren(el *etree.Element, ns, tag string) []*etree.Element {
	var out []*etree.Element
	for _, c := range el.ChildElements() {
		if c.Tag == tag && c.NamespaceURI() == ns {
			out = append(out, c)
		}
	}
	return out
}

// decodeBase64Text decodes Base64 that may be wrapped over several lines.
func decodeBase64Text(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.Join(strings.Fields(s), ""))
}

// signerCertificate returns the first certificate of KeyInfo/X509Data (21115 if there is none or
// it cannot be parsed).
func signerCertificate(sig *etree.Element) (*x509.Certificate, *apiError) {
	data := dsChild(dsChild(sig, "KeyInfo"), "X509Data")
	certEl := dsChild(data, "X509Certificate")
	if certEl == nil {
		return nil, newAPIError(codeInvalidCertificate, "Podpis nie zawiera certyfikatu (KeyInfo/X509Data/X509Certificate).")
	}
	der, err := decodeBase64Text(certEl.Text())
	if err != nil {
		return nil, newAPIError(codeInvalidCertificate, "Certyfikat w KeyInfo nie jest poprawnym Base64.")
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, newAPIError(codeInvalidCertificate, "Nie można odczytać certyfikatu z KeyInfo: "+err.Error())
	}
	return cert, nil
}

// verifySignature checks SignedInfo against SignatureValue with the certificate's key, every
// Reference digest, that a reference covers the AuthTokenRequest, and the XAdES signed
// properties with their SigningCertificate.
func verifySignature(root, sig, req *etree.Element, cert *x509.Certificate) *apiError {
	signedInfo := dsChild(sig, "SignedInfo")
	sigValue := dsChild(sig, "SignatureValue")
	if signedInfo == nil || sigValue == nil {
		return invalidSignature("Podpis nie zawiera elementu SignedInfo lub SignatureValue.")
	}
	c14n := dsChild(signedInfo, "CanonicalizationMethod")
	method := dsChild(signedInfo, "SignatureMethod")
	if c14n == nil || method == nil {
		return invalidSignature("SignedInfo nie zawiera CanonicalizationMethod lub SignatureMethod.")
	}
	canonical, err := canonicalize(signedInfo, c14n.SelectAttrValue("Algorithm", ""), inclusivePrefixes(c14n))
	if err != nil {
		return invalidSignature("Nie można kanonikalizować SignedInfo: " + err.Error())
	}
	value, err := decodeBase64Text(sigValue.Text())
	if err != nil {
		return invalidSignature("SignatureValue nie jest poprawnym Base64.")
	}
	if err := checkSignatureValue(method.SelectAttrValue("Algorithm", ""), cert, canonical, value); err != nil {
		return invalidSignature("Weryfikacja wartości podpisu nie powiodła się: " + err.Error())
	}

	refs := nsChildren(signedInfo, nsDSig, "Reference")
	if len(refs) == 0 {
		return invalidSignature("SignedInfo nie zawiera żadnej referencji.")
	}
	covered := false
	var referenced []*etree.Element
	for _, ref := range refs {
		el, covers, aerr := verifyReference(root, sig, req, ref)
		if aerr != nil {
			return aerr
		}
		covered = covered || covers
		referenced = append(referenced, el)
	}
	if !covered {
		return invalidSignature("Podpis nie obejmuje dokumentu AuthTokenRequest.")
	}
	return verifySignedProperties(sig, referenced, cert)
}

func inclusivePrefixes(el *etree.Element) string {
	for _, c := range el.ChildElements() {
		if c.Tag == "InclusiveNamespaces" {
			return c.SelectAttrValue("PrefixList", "")
		}
	}
	return ""
}

// verifyReference checks one Reference: it resolves the URI ("" or "#id" in this document),
// applies the transforms and compares the digest. It returns the referenced element and whether
// the reference covers the AuthTokenRequest.
func verifyReference(root, sig, req, ref *etree.Element) (*etree.Element, bool, *apiError) {
	uri := ref.SelectAttrValue("URI", "")
	var target *etree.Element
	switch {
	case uri == "":
		target = root
	case strings.HasPrefix(uri, "#"):
		target = findByID(root, uri[1:])
		if target == nil {
			return nil, false, invalidSignature(fmt.Sprintf("Referencja %s wskazuje nieistniejący element.", uri))
		}
	default:
		return nil, false, invalidSignature(fmt.Sprintf("Referencja %s wskazuje treść spoza dokumentu; podpis odłączony (detached) nie jest obsługiwany.", uri))
	}
	ctx, err := etreeutils.NSBuildParentContext(target)
	if err != nil {
		return nil, false, invalidSignature("Nieprawidłowe deklaracje przestrzeni nazw: " + err.Error())
	}
	node, err := etreeutils.NSDetatch(ctx, target)
	if err != nil {
		return nil, false, invalidSignature("Nieprawidłowe deklaracje przestrzeni nazw: " + err.Error())
	}
	sigPath, sigInside := tokenPath(target, sig)
	if sigInside && len(sigPath) == 0 {
		// An enveloping signature referenced as a whole: an enveloped-signature transform would
		// leave nothing, and without one the digest would cover itself.
		return nil, false, invalidSignature(fmt.Sprintf("Referencja %q obejmuje sam podpis.", uri))
	}
	alg, prefixes := algC14N10, ""
	removedSignature := false
	if transforms := dsChild(ref, "Transforms"); transforms != nil {
		for _, t := range nsChildren(transforms, nsDSig, "Transform") {
			switch a := t.SelectAttrValue("Algorithm", ""); a {
			case algEnveloped:
				if sigInside && !removedSignature {
					removeAtPath(node, sigPath)
					removedSignature = true
				}
			case algXPath:
				xp := dsChild(t, "XPath")
				if xp == nil || !isNotSignatureXPath(xp) {
					return nil, false, invalidSignature("Obsługiwane jest tylko wyrażenie XPath not(ancestor-or-self::ds:Signature).")
				}
				if sigInside && !removedSignature {
					removeAtPath(node, sigPath)
					removedSignature = true
				}
			case algC14N10, algC14N10Comment, algC14N11, algC14N11Comment, algExcC14N, algExcC14NCommnt:
				alg, prefixes = a, inclusivePrefixes(t)
			default:
				return nil, false, invalidSignature(fmt.Sprintf("Transformacja %s nie jest obsługiwana.", a))
			}
		}
	}
	// Same-document references select node-sets without comments.
	alg = strings.TrimSuffix(alg, "#WithComments")
	canonical, err := canonicalize(node, alg, prefixes)
	if err != nil {
		return nil, false, invalidSignature(fmt.Sprintf("Nie można kanonikalizować referencji %q: %v", uri, err))
	}
	dm := dsChild(ref, "DigestMethod")
	dv := dsChild(ref, "DigestValue")
	if dm == nil || dv == nil {
		return nil, false, invalidSignature(fmt.Sprintf("Referencja %q nie zawiera DigestMethod lub DigestValue.", uri))
	}
	h, ok := digestMethods[dm.SelectAttrValue("Algorithm", "")]
	if !ok || !h.Available() {
		return nil, false, invalidSignature(fmt.Sprintf("Algorytm skrótu %s nie jest obsługiwany.", dm.SelectAttrValue("Algorithm", "")))
	}
	want, err := decodeBase64Text(dv.Text())
	if err != nil {
		return nil, false, invalidSignature(fmt.Sprintf("DigestValue referencji %q nie jest poprawnym Base64.", uri))
	}
	d := h.New()
	d.Write(canonical)
	if !bytes.Equal(d.Sum(nil), want) {
		return nil, false, invalidSignature(fmt.Sprintf("Skrót referencji %q nie jest zgodny z podpisaną treścią.", uri))
	}
	// The reference covers the request if the request is the referenced element or lies below it,
	// and was not cut out together with the signature.
	_, reqInside := tokenPath(target, req)
	_, reqInSig := tokenPath(sig, req)
	return target, reqInside && !(reqInSig && removedSignature), nil
}

var reNotSignatureXPath = regexp.MustCompile(`^not\(\s*ancestor-or-self::(\w+):Signature\s*\)$`)

// isNotSignatureXPath reports whether the XPath transform is the enveloped-signature equivalent
// not(ancestor-or-self::ds:Signature), with the prefix bound to XML-DSig.
func isNotSignatureXPath(xp *etree.Element) bool {
	m := reNotSignatureXPath.FindStringSubmatch(strings.TrimSpace(xp.Text()))
	if m == nil {
		return false
	}
	ctx, err := etreeutils.NSBuildParentContext(xp)
	if err != nil {
		return false
	}
	ctx, err = ctx.SubContext(xp)
	if err != nil {
		return false
	}
	ns, err := ctx.LookupPrefix(m[1])
	return err == nil && ns == nsDSig
}

// findByID returns the element whose Id, ID or id attribute is id.
func findByID(root *etree.Element, id string) *etree.Element {
	var found *etree.Element
	walk(root, func(el *etree.Element) {
		if found != nil {
			return
		}
		for _, a := range el.Attr {
			if a.Space == "" && (a.Key == "Id" || a.Key == "ID" || a.Key == "id") && a.Value == id {
				found = el
				return
			}
		}
	})
	return found
}

// canonicalize serialises el, which carries every namespace declaration in scope (see
// etreeutils.NSDetatch) or is attached to its document, with the canonicalization algorithm alg.
func canonicalize(el *etree.Element, alg, prefixList string) ([]byte, error) {
	ctx, err := etreeutils.NSBuildParentContext(el)
	if err != nil {
		return nil, err
	}
	detached, err := etreeutils.NSDetatch(ctx, el)
	if err != nil {
		return nil, err
	}
	var c dsig.Canonicalizer
	switch alg {
	case algExcC14N:
		c = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList(prefixList)
	case algExcC14NCommnt:
		c = dsig.MakeC14N10ExclusiveWithCommentsCanonicalizerWithPrefixList(prefixList)
	case algC14N10:
		c = dsig.MakeC14N10RecCanonicalizer()
	case algC14N10Comment:
		c = dsig.MakeC14N10WithCommentsCanonicalizer()
	case algC14N11:
		c = dsig.MakeC14N11Canonicalizer()
	case algC14N11Comment:
		c = dsig.MakeC14N11WithCommentsCanonicalizer()
	default:
		return nil, fmt.Errorf("algorytm kanonikalizacji %s nie jest obsługiwany", alg)
	}
	return c.Canonicalize(detached)
}

// checkSignatureValue verifies value over signed with the certificate's public key.
func checkSignatureValue(alg string, cert *x509.Certificate, signed, value []byte) error {
	m, ok := signatureMethods[alg]
	if !ok || !m.hash.Available() {
		return fmt.Errorf("algorytm podpisu %s nie jest obsługiwany", alg)
	}
	h := m.hash.New()
	h.Write(signed)
	digest := h.Sum(nil)
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		switch m.scheme {
		case schemePKCS1:
			return rsa.VerifyPKCS1v15(pub, m.hash, digest, value)
		case schemePSS:
			return rsa.VerifyPSS(pub, m.hash, digest, value, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		}
	case *ecdsa.PublicKey:
		if m.scheme != schemeECDSA {
			break
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(value) != 2*size {
			return fmt.Errorf("podpis ECDSA musi mieć postać r||s o długości %d bajtów", 2*size)
		}
		r := new(big.Int).SetBytes(value[:size])
		s := new(big.Int).SetBytes(value[size:])
		if !ecdsa.Verify(pub, digest, r, s) {
			return errors.New("podpis ECDSA jest nieprawidłowy")
		}
		return nil
	}
	return fmt.Errorf("algorytm podpisu %s nie pasuje do klucza certyfikatu", alg)
}

// verifySignedProperties checks that the XAdES SignedProperties are signed (one of the
// referenced elements) and that their SigningCertificate names the KeyInfo certificate.
func verifySignedProperties(sig *etree.Element, referenced []*etree.Element, cert *x509.Certificate) *apiError {
	var props *etree.Element
	for _, obj := range nsChildren(sig, nsDSig, "Object") {
		if sp := nsChild(nsChild(obj, nsXAdES, "QualifyingProperties"), nsXAdES, "SignedProperties"); sp != nil {
			props = sp
		}
	}
	if props == nil || !slices.Contains(referenced, props) {
		return invalidSignature("Podpis nie zawiera podpisanych właściwości XAdES (xades:SignedProperties objętych referencją).")
	}
	ssp := nsChild(props, nsXAdES, "SignedSignatureProperties")
	signingCert := nsChild(ssp, nsXAdES, "SigningCertificate")
	if signingCert == nil {
		signingCert = nsChild(ssp, nsXAdES, "SigningCertificateV2")
	}
	if signingCert == nil {
		return invalidSignature("Podpisane właściwości XAdES nie zawierają elementu SigningCertificate.")
	}
	for _, c := range nsChildren(signingCert, nsXAdES, "Cert") {
		digest := nsChild(c, nsXAdES, "CertDigest")
		dm, dv := dsChild(digest, "DigestMethod"), dsChild(digest, "DigestValue")
		if dm == nil || dv == nil {
			continue
		}
		h, ok := digestMethods[dm.SelectAttrValue("Algorithm", "")]
		want, err := decodeBase64Text(dv.Text())
		if !ok || !h.Available() || err != nil {
			continue
		}
		d := h.New()
		d.Write(cert.Raw)
		if bytes.Equal(d.Sum(nil), want) {
			return nil
		}
	}
	return invalidSignature("Skrót certyfikatu w SigningCertificate nie jest zgodny z certyfikatem podpisu.")
}

var (
	oidOrganizationIdentifier = asn1.ObjectIdentifier{2, 5, 4, 97}
	reSealNIP                 = regexp.MustCompile(`VATPL.*?(\d{10})`)
	rePersonNIP               = regexp.MustCompile(`(?:TINPL|NIP).*?(\d{10})`)
	rePersonPESEL             = regexp.MustCompile(`(?:PNOPL|PESEL).*?(\d{11})`)
)

// certIdentity is who a certificate names.
type certIdentity struct {
	nip, pesel, fingerprint string
	legacy                  string
	info                    methodInfo
}

// identityOf reads the identity from the certificate as the documented subjectIdentifierType
// says: organizationIdentifier VATPL-<NIP> for a seal, serialNumber TINPL-<NIP> or
// PNOPL-<PESEL> for a person, or the SHA-256 fingerprint. ok is false when a certificateSubject
// login names no NIP or PESEL.
func identityOf(cert *x509.Certificate, subjectType string) (certIdentity, bool) {
	sum := sha256.Sum256(cert.Raw)
	id := certIdentity{fingerprint: strings.ToUpper(hex.EncodeToString(sum[:]))}
	if subjectType == "certificateFingerprint" {
		id.legacy = "InternalCertificate"
		id.info = methodInfo{Category: "XadesSignature", Code: "xades.internal-certificate", DisplayName: "Certyfikat KSeF"}
		return id, true
	}
	for _, n := range cert.Subject.Names {
		if n.Type.Equal(oidOrganizationIdentifier) {
			if s, ok := n.Value.(string); ok {
				if m := reSealNIP.FindStringSubmatch(s); m != nil {
					id.nip = m[1]
					id.legacy = "QualifiedSeal"
					id.info = methodInfo{Category: "XadesSignature", Code: "xades.qualified-seal", DisplayName: "Pieczęć kwalifikowana"}
					return id, true
				}
			}
		}
	}
	if m := rePersonNIP.FindStringSubmatch(cert.Subject.SerialNumber); m != nil {
		id.nip = m[1]
	} else if m := rePersonPESEL.FindStringSubmatch(cert.Subject.SerialNumber); m != nil {
		id.pesel = m[1]
	} else {
		return id, false
	}
	id.legacy = "QualifiedSignature"
	id.info = methodInfo{Category: "XadesSignature", Code: "xades.qualified-signature", DisplayName: "Podpis kwalifikowany"}
	return id, true
}

// keyStrongEnough applies the documented minimum key sizes: RSA 2048 bits, EC 256 bits.
func keyStrongEnough(cert *x509.Certificate) bool {
	switch pub := cert.PublicKey.(type) {
	case *rsa.PublicKey:
		return pub.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		return pub.Curve.Params().BitSize >= 256
	}
	return false
}

// POST /auth/xades-signature
func (e *Emulator) handleXAdES(q *request) {
	verifyChain := false
	if s := q.r.URL.Query().Get("verifyCertificateChain"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			q.fail(codeValidation, "Parametr 'verifyCertificateChain' musi mieć wartość true lub false.")
			return
		}
		verifyChain = b
	}
	body, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, maxXMLBody))
	if err != nil {
		q.fail(codeUnreadableContent, "Nie można odczytać treści żądania: "+err.Error())
		return
	}
	ad, aerr := e.verifyAuthDocument(body)
	if aerr != nil {
		q.failWith(aerr)
		return
	}
	id, identified := identityOf(ad.cert, ad.subjectType)

	e.mu.Lock()
	defer e.mu.Unlock()
	if _, aerr := e.takeChallengeLocked(ad.challenge, q.now); aerr != nil {
		q.failWith(aerr)
		return
	}
	if kc := e.issuedCertificateLocked(ad.cert); kc != nil {
		id, identified = kc.identity(), true // a KSeF certificate stands for whoever enrolled it
	}
	a := e.newAuthOpLocked(q.now, ad.context, ad.policy)
	a.docHash = ad.hash
	a.legacy, a.info = id.legacy, id.info
	if a.legacy == "" {
		a.legacy = "QualifiedSignature"
		a.info = methodInfo{Category: "XadesSignature", Code: "xades.qualified-signature", DisplayName: "Podpis kwalifikowany"}
	}
	a.outcome = e.judgeCertificateLocked(ad, id, identified, verifyChain, q.now)
	e.noteXAdESLoginLocked(a, id, ad.cert, q.now)
	q.json(http.StatusAccepted, e.authInitResponse(a))
}

// judgeCertificateLocked decides the outcome of an XAdES authentication from the certificate.
func (e *Emulator) judgeCertificateLocked(ad *authDocument, id certIdentity, identified, verifyChain bool, now time.Time) statusInfo {
	certErr := func(detail string) statusInfo {
		return statusInfo{Code: 460, Description: "Uwierzytelnianie zakończone niepowodzeniem z powodu błędu certyfikatu", Details: []string{detail}}
	}
	kc := e.issuedCertificateLocked(ad.cert)
	switch {
	case now.Before(ad.cert.NotBefore) || now.After(ad.cert.NotAfter):
		return certErr("Nieważny certyfikat")
	case kc != nil && kc.loginProblem(now) != "":
		return certErr(kc.loginProblem(now))
	case !keyStrongEnough(ad.cert) || !identified:
		return certErr("Niepoprawny certyfikat")
	case verifyChain && kc == nil:
		// Apart from its own KSeF CA the emulator trusts no certification authority, as TEST
		// trusts none of a self-signed certificate's issuers when asked to verify the chain.
		return certErr("Niezaufany łańcuch certyfikatów")
	}
	if !e.mayActLocked(ad.context, id) {
		return statusInfo{Code: 415, Description: "Uwierzytelnianie zakończone niepowodzeniem", Details: []string{"Brak przypisanych uprawnień"}}
	}
	return statusInfo{Code: 200, Description: "Uwierzytelnianie zakończone sukcesem"}
}

// mayActLocked reports whether the subject holds a permission in the context: it owns it (its NIP
// is the context's NIP) or Config.Grants names it.
func (e *Emulator) mayActLocked(ctx contextID, id certIdentity) bool {
	if id.nip != "" && (ctx.Type == "Nip" || ctx.Type == "InternalId") && id.nip == ctx.nip() {
		return true
	}
	for _, g := range e.cfg.Grants[ctx.Value] {
		if g != "" && (strings.EqualFold(g, id.fingerprint) || g == id.nip || g == id.pesel) {
			return true
		}
	}
	return e.grantedLocked(ctx, id) // permissions granted through the API
}
