package emulator

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	upoNamespace   = "http://upo.schematy.mf.gov.pl/KSeF/v4-3"
	upoPageSize    = 10000 // documents per session UPO page
	downloadPrefix = "/download/"
	kindInvoiceUPO = "invoice-upo"
	kindSessionUPO = "session-upo"
)

// receiverName is NazwaPodmiotuPrzyjmujacego as each environment writes it: the UPO XSD fixes
// "Ministerstwo Finansów", and TEST and DEMO append their name to it all the same.
func (e *Emulator) receiverName() string {
	switch e.cfg.EnvironmentName {
	case "TE":
		return "Ministerstwo Finansów - środowisko testowe (TE)"
	case "TR":
		return "Ministerstwo Finansów - środowisko przedprodukcyjne (TR)"
	}
	return "Ministerstwo Finansów"
}

// upoDocument builds a UPO v4-3 document for invs, shaped like the official samples; page is
// nil for the UPO of a single invoice.
func (e *Emulator) upoDocument(s *session, invs []*invoice, page *upoPageInfo) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?>` + "\n")
	b.WriteString(`<Potwierdzenie xmlns="` + upoNamespace + `">` + "\n")
	el := func(indent int, name, value string) {
		b.WriteString(strings.Repeat("\t", indent) + "<" + name + ">")
		_ = xml.EscapeText(&b, []byte(value))
		b.WriteString("</" + name + ">\n")
	}
	open := func(indent int, name string) { b.WriteString(strings.Repeat("\t", indent) + "<" + name + ">\n") }
	closeEl := func(indent int, name string) { b.WriteString(strings.Repeat("\t", indent) + "</" + name + ">\n") }

	el(1, "NazwaPodmiotuPrzyjmujacego", e.receiverName())
	el(1, "NumerReferencyjnySesji", s.ref)
	open(1, "Uwierzytelnienie")
	open(2, "IdKontekstu")
	el(3, upoContextElement(s.context.Type), s.context.Value)
	closeEl(2, "IdKontekstu")
	if s.tokenRef != "" {
		el(2, "NumerReferencyjnyTokenaKSeF", s.tokenRef)
	} else {
		el(2, "SkrotDokumentuUwierzytelniajacego", s.docHash)
	}
	closeEl(1, "Uwierzytelnienie")
	if page != nil {
		open(1, "OpisPotwierdzenia")
		el(2, "Strona", strconv.Itoa(page.number))
		el(2, "LiczbaStron", strconv.Itoa(page.count))
		el(2, "ZakresDokumentowOd", strconv.Itoa(page.from))
		el(2, "ZakresDokumentowDo", strconv.Itoa(page.to))
		el(2, "CalkowitaLiczbaDokumentow", strconv.Itoa(page.total))
		closeEl(1, "OpisPotwierdzenia")
	}
	el(1, "NazwaStrukturyLogicznej", s.form.schemaName)
	el(1, "KodFormularza", s.form.code.SystemCode)
	for _, inv := range invs {
		open(1, "Dokument")
		el(2, "NipSprzedawcy", inv.sellerNIP)
		el(2, "NumerKSeFDokumentu", inv.ksefNumber)
		el(2, "NumerFaktury", inv.number)
		el(2, "DataWystawieniaFaktury", inv.issueDate)
		el(2, "DataPrzeslaniaDokumentu", inv.received.In(warsaw).Format(layoutUPO))
		el(2, "DataNadaniaNumeruKSeF", inv.finalAt.In(warsaw).Format(layoutUPO))
		el(2, "SkrotDokumentu", inv.hash)
		el(2, "TrybWysylki", inv.mode)
		closeEl(1, "Dokument")
	}
	b.WriteString("</Potwierdzenie>")
	return b.Bytes()
}

// upoContextElement names the IdKontekstu child for a context type.
func upoContextElement(typ string) string {
	switch typ {
	case "InternalId":
		return "IdWewnetrzny"
	case "NipVatUe":
		return "IdZlozonyVatUE"
	case "PeppolId":
		return "IdDostawcyUslugPeppol"
	}
	return "Nip"
}

type upoPageInfo struct {
	number, count, from, to, total int
}

// ensureUPOPagesLocked fixes the reference numbers of the session UPO pages of a processed
// session.
func (e *Emulator) ensureUPOPagesLocked(s *session, now time.Time) {
	if s.upoPages != nil {
		return
	}
	n := len(acceptedInvoices(s, now))
	for i := 0; i < n; i += upoPageSize {
		s.upoPages = append(s.upoPages, newReferenceNumber(now, refSessionUPO))
	}
}

func acceptedInvoices(s *session, now time.Time) []*invoice {
	var out []*invoice
	for _, inv := range s.invoices {
		if inv.accepted(now) {
			out = append(out, inv)
		}
	}
	return out
}

// sessionUPOLocked returns page pageRef of the session UPO, or nil if there is no such page.
func (e *Emulator) sessionUPOLocked(s *session, pageRef string, now time.Time) []byte {
	if s.status(now, e.cfg.ProcessingDelay).Code != 200 {
		return nil
	}
	e.ensureUPOPagesLocked(s, now)
	accepted := acceptedInvoices(s, now)
	for i, ref := range s.upoPages {
		if ref != pageRef {
			continue
		}
		from := i * upoPageSize
		to := min(from+upoPageSize, len(accepted))
		return e.upoDocument(s, accepted[from:to], &upoPageInfo{
			number: i + 1, count: len(s.upoPages), from: from + 1, to: to, total: len(accepted),
		})
	}
	return nil
}

// invoiceUPOLocked returns the UPO of one accepted invoice.
func (e *Emulator) invoiceUPOLocked(inv *invoice) []byte {
	if inv.upoDocument == nil {
		inv.upoDocument = e.upoDocument(inv.session, []*invoice{inv}, nil)
	}
	return inv.upoDocument
}

// GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}/upo
func (e *Emulator) handleInvoiceUPO(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	invRef, ok := q.referenceParam("invoiceReferenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := q.sessionLocked(ref)
	if s == nil {
		return
	}
	for _, inv := range s.invoices {
		if inv.ref == invRef && inv.accepted(q.now) {
			q.xml(e.invoiceUPOLocked(inv))
			return
		}
	}
	q.fail(codeUPONotFound, fmt.Sprintf("UPO faktury o numerze referencyjnym %s i numerze referencyjnym sesji %s nie zostało znalezione.", invRef, ref))
}

// GET /sessions/{referenceNumber}/invoices/ksef/{ksefNumber}/upo
func (e *Emulator) handleInvoiceUPOByKSeF(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	n := q.r.PathValue("ksefNumber")
	e.mu.Lock()
	defer e.mu.Unlock()
	s := q.sessionLocked(ref)
	if s == nil {
		return
	}
	if inv := e.st.invoicesByKSeF[n]; inv != nil && inv.session == s && inv.accepted(q.now) {
		q.xml(e.invoiceUPOLocked(inv))
		return
	}
	q.fail(codeUPONotFound, fmt.Sprintf("UPO o numerze KSeF %s i numerze referencyjnym sesji %s nie zostało znalezione.", n, ref))
}

// GET /sessions/{referenceNumber}/upo/{upoReferenceNumber}
func (e *Emulator) handleSessionUPO(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	upoRef, ok := q.referenceParam("upoReferenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := q.sessionLocked(ref)
	if s == nil {
		return
	}
	if doc := e.sessionUPOLocked(s, upoRef, q.now); doc != nil {
		q.xml(doc)
		return
	}
	q.fail(codeUPONotFound, fmt.Sprintf("UPO o numerze referencyjnym %s dla sesji %s nie zostało znalezione.", upoRef, ref))
}

// presign returns a pre-signed download link on the host the request reached, in the style of the
// Azure blob links KSeF returns: no bearer needed, valid until expires.
func (e *Emulator) presign(r *http.Request, sessionRef, kind, name string, expires time.Time) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	p := downloadPrefix + sessionRef + "/" + kind + "/" + name
	se := strconv.FormatInt(expires.Unix(), 10)
	v := url.Values{"se": {se}, "sp": {"r"}, "sig": {e.linkSignature(p, se)}}
	return scheme + "://" + r.Host + p + "?" + v.Encode()
}

func (e *Emulator) linkSignature(path, expires string) string {
	m := hmac.New(sha256.New, e.urlKey)
	m.Write([]byte(path + "\n" + expires))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// GET /download/{referenceNumber}/{kind}/{name}?se=...&sig=...: a pre-signed UPO download. Like
// the blob store behind KSeF it ignores Authorization, is not rate-limited and answers failures
// with 403 (bad or expired signature) or 404 (no such blob) and an XML error body.
func (e *Emulator) handleDownload(w http.ResponseWriter, r *http.Request) {
	now := e.now()
	se := r.URL.Query().Get("se")
	sig := r.URL.Query().Get("sig")
	exp, err := strconv.ParseInt(se, 10, 64)
	if err != nil || !hmac.Equal([]byte(sig), []byte(e.linkSignature(r.URL.Path, se))) {
		writeBlobError(w, http.StatusForbidden, "AuthenticationFailed", "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature.")
		return
	}
	if now.Unix() >= exp {
		writeBlobError(w, http.StatusForbidden, "AuthenticationFailed", "Signed expiry time has to be after signed start time or the link has expired.")
		return
	}
	ref, kind, name := r.PathValue("referenceNumber"), r.PathValue("kind"), r.PathValue("name")
	e.mu.Lock()
	var doc []byte
	if s := e.st.sessions[ref]; s != nil {
		switch kind {
		case kindInvoiceUPO:
			if inv := e.st.invoicesByKSeF[name]; inv != nil && inv.session == s && inv.accepted(now) {
				doc = e.invoiceUPOLocked(inv)
			}
		case kindSessionUPO:
			doc = e.sessionUPOLocked(s, name, now)
		}
	}
	e.mu.Unlock()
	if doc == nil {
		writeBlobError(w, http.StatusNotFound, "BlobNotFound", "The specified blob does not exist.")
		return
	}
	writeXML(w, doc)
}

func writeBlobError(w http.ResponseWriter, status int, code, message string) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="utf-8"?><Error><Code>`)
	_ = xml.EscapeText(&b, []byte(code))
	b.WriteString(`</Code><Message>`)
	_ = xml.EscapeText(&b, []byte(message))
	b.WriteString(`</Message></Error>`)
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}
