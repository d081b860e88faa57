package emulator

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ksef-serverless/ksef-serverless/internal/xsd"
)

// Invoice size limits (MB means 10^6 bytes).
const (
	maxInvoiceSize               = 1_000_000
	maxInvoiceWithAttachmentSize = 3_000_000
)

// invoice is an invoice sent in an online session. Its outcome is decided when it arrives; its
// status is 100 until acceptAt, 150 until finalAt (for ever if stuck), then the outcome.
type invoice struct {
	ref      string
	ordinal  int
	session  *session
	received time.Time
	acceptAt time.Time
	finalAt  time.Time
	stuck    bool
	hash     string // invoiceHash as declared
	fileName string // batch sessions: the file's name in the archive
	outcome  statusInfo

	// Filled for accepted invoices (outcome 200).
	ksefNumber  string
	number      string // P_2
	issueDate   string // P_1
	sellerNIP   string
	buyerNIP    string
	mode        string // Online or Offline
	storedAt    time.Time
	xml         []byte
	upoDocument []byte
}

func (inv *invoice) isFinal(now time.Time) bool { return !inv.stuck && !now.Before(inv.finalAt) }

func (inv *invoice) status(now time.Time) statusInfo {
	switch {
	case now.Before(inv.acceptAt):
		return statusInfo{Code: 100, Description: "Faktura przyjęta do dalszego przetwarzania"}
	case !inv.isFinal(now):
		return statusInfo{Code: 150, Description: "Trwa przetwarzanie"}
	}
	return inv.outcome
}

// accepted reports whether the invoice has its KSeF number at now.
func (inv *invoice) accepted(now time.Time) bool {
	return inv.isFinal(now) && inv.outcome.Code == 200
}

type sendInvoiceRequest struct {
	InvoiceHash             *string `json:"invoiceHash"`
	InvoiceSize             *int64  `json:"invoiceSize"`
	EncryptedInvoiceHash    *string `json:"encryptedInvoiceHash"`
	EncryptedInvoiceSize    *int64  `json:"encryptedInvoiceSize"`
	EncryptedInvoiceContent *[]byte `json:"encryptedInvoiceContent"`
	OfflineMode             bool    `json:"offlineMode"`
	HashOfCorrectedInvoice  *string `json:"hashOfCorrectedInvoice"`
}

type sendInvoiceResponse struct {
	ReferenceNumber string `json:"referenceNumber"`
}

func isSHA256Base64(s string) bool {
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size && len(s) == 44
}

// validate checks the fields of a SendInvoiceRequest (21405).
func (req *sendInvoiceRequest) validate() *apiError {
	if req.InvoiceHash == nil || req.InvoiceSize == nil || req.EncryptedInvoiceHash == nil ||
		req.EncryptedInvoiceSize == nil || req.EncryptedInvoiceContent == nil {
		return newAPIError(codeValidation, "Pola 'invoiceHash', 'invoiceSize', 'encryptedInvoiceHash', 'encryptedInvoiceSize' i 'encryptedInvoiceContent' są wymagane.")
	}
	if !isSHA256Base64(*req.InvoiceHash) || !isSHA256Base64(*req.EncryptedInvoiceHash) ||
		(req.HashOfCorrectedInvoice != nil && !isSHA256Base64(*req.HashOfCorrectedInvoice)) {
		return newAPIError(codeValidation, "Skrót musi być wartością SHA-256 zakodowaną w Base64 (44 znaki).")
	}
	if *req.InvoiceSize < 1 || *req.EncryptedInvoiceSize < 1 {
		return newAPIError(codeValidation, "Rozmiar faktury musi być większy od zera.")
	}
	return nil
}

// POST /sessions/online/{referenceNumber}/invoices
func (e *Emulator) handleSendInvoice(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	var req sendInvoiceRequest
	if !q.decodeJSON(&req) {
		return
	}
	if aerr := req.validate(); aerr != nil {
		q.failWith(aerr)
		return
	}
	e.mu.Lock()
	s, aerr := q.sessionForSendLocked(ref)
	e.mu.Unlock()
	if aerr != nil {
		q.failWith(aerr)
		return
	}
	ciphertext := *req.EncryptedInvoiceContent
	if int64(len(ciphertext)) != *req.EncryptedInvoiceSize {
		q.fail(codeSizeMismatch, "Długość treści nie zgadza się z rozmiarem pliku.")
		return
	}
	if sha256Base64(ciphertext) != *req.EncryptedInvoiceHash {
		q.fail(codeHashMismatch, "Skrót treści nie zgadza się ze skrótem pliku.")
		return
	}
	if req.HashOfCorrectedInvoice != nil {
		// Technical corrections only apply to offline invoices rejected earlier; the emulator keeps
		// no rejected offline invoices to correct.
		q.fail(codeValidation, "Korekta techniczna nie jest obsługiwana przez emulator.")
		return
	}

	// The slow part (AES, XML parsing, XSD validation) runs without the lock.
	plaintext, decrypted := decryptAESCBC(s.key, s.iv, ciphertext)
	var v verdict
	if decrypted {
		v = e.verifyInvoice(plaintext, *req.InvoiceSize, *req.InvoiceHash, s.context, q.now)
	} else {
		v.outcome = statusInfo{Code: 435, Description: "Błąd odszyfrowania pliku", Details: []string{"Plik niepoprawnie zaszyfrowany"}}
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	if _, aerr := q.sessionForSendLocked(ref); aerr != nil {
		q.failWith(aerr) // closed or full while this invoice was being verified
		return
	}
	inv := &invoice{
		ref:      newReferenceNumber(q.now, refInvoice),
		ordinal:  len(s.invoices) + 1,
		session:  s,
		received: q.now,
		acceptAt: q.now.Add(e.cfg.AcceptDelay),
		hash:     *req.InvoiceHash,
	}
	inv.finalAt = inv.acceptAt.Add(e.cfg.ProcessingDelay)
	if _, stuck := e.takeInvoiceFaultLocked(FaultStuckInvoices, s.context.Value); stuck {
		inv.stuck = true
	}
	if v.outcome.Code == 0 {
		if f, forced := e.takeInvoiceFaultLocked(FaultRejectInvoices, s.context.Value); forced {
			v.outcome = statusInfo{Code: f.Status, Description: invoiceStatusDescription(f.Status), Details: f.Details}
		}
	}
	e.decideLocked(inv, &v, req.OfflineMode, plaintext)
	s.invoices = append(s.invoices, inv)
	q.json(http.StatusAccepted, sendInvoiceResponse{ReferenceNumber: inv.ref})
}

// sessionForSendLocked returns the session invoices may be sent to, or the 400 error KSeF gives.
func (q *request) sessionForSendLocked(ref string) (*session, *apiError) {
	s := q.e.st.sessions[ref]
	if s == nil || s.context != q.context() || s.batch != nil {
		return nil, newAPIError(codeSessionNotFound, fmt.Sprintf("Sesja o numerze referencyjnym %s nie została odnaleziona.", ref))
	}
	if !s.isOpen(q.now) {
		return nil, newAPIError(codeSessionStatus, fmt.Sprintf("Status sesji (%d) uniemożliwia wysyłkę faktur.", s.status(q.now, q.e.cfg.ProcessingDelay).Code))
	}
	if len(s.invoices) >= q.e.cfg.MaxInvoicesPerSession {
		return nil, newAPIError(codeSessionInvoiceLimit, fmt.Sprintf("Sesja o numerze referencyjnym %s osiągnęła dozwolony limit liczby faktur %d.", ref, q.e.cfg.MaxInvoicesPerSession))
	}
	return s, nil
}

// decryptAESCBC decrypts AES-256-CBC with PKCS#7 padding.
func decryptAESCBC(key, iv, ciphertext []byte) ([]byte, bool) {
	if len(ciphertext) == 0 || len(ciphertext)%aes.BlockSize != 0 {
		return nil, false
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, false
	}
	out := make([]byte, len(ciphertext))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, ciphertext)
	pad := int(out[len(out)-1])
	if pad == 0 || pad > aes.BlockSize {
		return nil, false
	}
	if subtle.ConstantTimeCompare(out[len(out)-pad:], bytes.Repeat([]byte{byte(pad)}, pad)) != 1 {
		return nil, false
	}
	return out[:len(out)-pad], true
}

// verdict is what verification found out about an invoice. A zero outcome code means the invoice
// passed every check that does not depend on other invoices.
type verdict struct {
	outcome        statusInfo
	sellerNIP      string
	buyerNIP       string
	kind           string // RodzajFaktury
	number         string // P_2
	issueDate      string // P_1
	hasAttachments bool
}

func invoiceStatusDescription(code int) string {
	switch code {
	case 405:
		return "Przetwarzanie anulowane z powodu błędu sesji"
	case 410:
		return "Nieprawidłowy zakres uprawnień"
	case 415:
		return "Brak możliwości wysyłania faktury z załącznikiem"
	case 430:
		return "Błąd weryfikacji pliku faktury"
	case 435:
		return "Błąd odszyfrowania pliku"
	case 440:
		return "Duplikat faktury"
	case 450:
		return "Błąd weryfikacji semantyki dokumentu faktury"
	case 550:
		return "Operacja została anulowana przez system"
	}
	return fmt.Sprintf("Nieznany błąd (%d)", code)
}

func rejected(code int, details ...string) verdict {
	return verdict{outcome: statusInfo{Code: code, Description: invoiceStatusDescription(code), Details: details}}
}

// fa3Fields are the parts of an FA(3) invoice the emulator looks at.
type fa3Fields struct {
	Podmiot1 struct {
		NIP string `xml:"DaneIdentyfikacyjne>NIP"`
	} `xml:"Podmiot1"`
	Podmiot2 struct {
		NIP string `xml:"DaneIdentyfikacyjne>NIP"`
	} `xml:"Podmiot2"`
	Fa struct {
		P1     string `xml:"P_1"`
		P2     string `xml:"P_2"`
		Rodzaj string `xml:"RodzajFaktury"`
	} `xml:"Fa"`
	Zalacznik *struct{} `xml:"Zalacznik"`
}

// verifyInvoice runs the checks KSeF makes on the decrypted invoice of an online session that do
// not depend on other invoices: declared size and hash, then verifyDocument without attachments.
func (e *Emulator) verifyInvoice(doc []byte, declaredSize int64, declaredHash string, ctx contextID, now time.Time) verdict {
	if int64(len(doc)) != declaredSize {
		return rejected(430, fmt.Sprintf("Rozmiar faktury nie zgadza się z zadeklarowaną wartością: '%d'.", declaredSize))
	}
	if sha256Base64(doc) != declaredHash {
		return rejected(430, fmt.Sprintf("Skrót faktury nie zgadza się z zadeklarowaną wartością: '%s'.", declaredHash))
	}
	return e.verifyDocument(doc, ctx, now, false)
}

// verifyDocument runs the checks on the invoice document itself: encoding, well-formedness,
// schema, size limits, attachments (allowed in batch sessions only), issuing permission (seller
// NIP) and issue date.
func (e *Emulator) verifyDocument(doc []byte, ctx contextID, now time.Time, attachmentsAllowed bool) verdict {
	if len(doc) > maxInvoiceWithAttachmentSize {
		return rejected(430, fmt.Sprintf("Rozmiar faktury (%d B) przekracza dozwolony limit %d B.", len(doc), maxInvoiceWithAttachmentSize))
	}
	if detail := checkXMLForm(doc); detail != "" {
		return rejected(450, detail)
	}
	if err := e.fa3.Validate(doc); err != nil {
		var ve *xsd.ValidationError
		if errors.As(err, &ve) && len(ve.Messages) > 0 {
			return rejected(450, ve.Messages...)
		}
		return rejected(450, "Dokument nie jest zgodny ze schemą: "+err.Error())
	}
	var f fa3Fields
	if err := xml.Unmarshal(doc, &f); err != nil {
		return rejected(450, "Nie można odczytać treści faktury: "+err.Error())
	}
	v := verdict{
		sellerNIP:      strings.TrimSpace(f.Podmiot1.NIP),
		buyerNIP:       strings.TrimSpace(f.Podmiot2.NIP),
		kind:           strings.TrimSpace(f.Fa.Rodzaj),
		number:         strings.TrimSpace(f.Fa.P2),
		issueDate:      strings.TrimSpace(f.Fa.P1),
		hasAttachments: f.Zalacznik != nil,
	}
	if !v.hasAttachments && len(doc) > maxInvoiceSize {
		return rejected(430, fmt.Sprintf("Rozmiar faktury (%d B) przekracza dozwolony limit %d B.", len(doc), maxInvoiceSize))
	}
	if v.hasAttachments && !attachmentsAllowed {
		return rejected(415, "Faktury z załącznikami można przesyłać wyłącznie w sesji wsadowej.")
	}
	if nip := ctx.nip(); nip == "" || v.sellerNIP != nip {
		return rejected(410, fmt.Sprintf("Podmiot uwierzytelniony w kontekście %s nie ma uprawnień do wystawienia faktury w imieniu sprzedawcy o NIP %s.", ctx.Value, v.sellerNIP))
	}
	issued, err := time.ParseInLocation("2006-01-02", v.issueDate, warsaw)
	if err != nil {
		return rejected(450, "Nieprawidłowa data wystawienia faktury (P_1).")
	}
	today := now.In(warsaw)
	if issued.After(time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, warsaw)) {
		return rejected(450, fmt.Sprintf("Data wystawienia faktury (P_1) %s jest późniejsza niż data przyjęcia faktury w KSeF %s.", v.issueDate, today.Format("2006-01-02")))
	}
	return v
}

// checkXMLForm applies the rules KSeF adds to XML 1.0 well-formedness: UTF-8 without a byte order
// mark, an encoding declaration (if any) naming UTF-8, no processing instructions, no DTD. It
// returns a description of the first violation, or "". Well-formedness itself is checked by the
// schema validator, which reports it with line numbers.
func checkXMLForm(doc []byte) string {
	if bytes.HasPrefix(doc, []byte("\xEF\xBB\xBF")) {
		return "Plik faktury zawiera znacznik BOM (Byte Order Mark); wymagane jest kodowanie UTF-8 bez BOM."
	}
	if !utf8.Valid(doc) {
		return "Plik faktury nie jest poprawnie zakodowany w UTF-8."
	}
	if decl, ok := bytes.CutPrefix(doc, []byte("<?xml")); ok {
		if end := bytes.Index(decl, []byte("?>")); end >= 0 {
			if enc := declaredEncoding(string(decl[:end])); enc != "" && !strings.EqualFold(enc, "UTF-8") {
				return fmt.Sprintf("Deklarowane kodowanie %q jest niedozwolone; wymagane jest UTF-8.", enc)
			}
		}
	}
	// Fast path: without "<?" after the declaration and without "<!" (DTD, comment, CDATA) there
	// can be no processing instruction or DTD; well-formedness is then left to the schema
	// validator, which parses the document anyway.
	body := doc
	if decl, ok := bytes.CutPrefix(doc, []byte("<?xml")); ok {
		if end := bytes.Index(decl, []byte("?>")); end >= 0 {
			body = decl[end+2:]
		}
	}
	if !bytes.Contains(body, []byte("<?")) && !bytes.Contains(body, []byte("<!")) {
		return ""
	}
	d := xml.NewDecoder(bytes.NewReader(doc))
	first := true
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return ""
		}
		if err != nil {
			return "Plik faktury nie jest poprawnym dokumentem XML: " + err.Error()
		}
		switch t := tok.(type) {
		case xml.ProcInst:
			if t.Target != "xml" || !first {
				return fmt.Sprintf("Plik faktury zawiera instrukcję przetwarzania <?%s ?>, która nie jest dozwolona.", t.Target)
			}
		case xml.Directive:
			return "Plik faktury zawiera deklarację DTD, która nie jest dozwolona."
		}
		first = false
	}
}

// declaredEncoding extracts encoding="..." from the content of an XML declaration.
func declaredEncoding(inst string) string {
	_, rest, ok := strings.Cut(inst, "encoding")
	if !ok {
		return ""
	}
	rest = strings.TrimLeft(rest, " \t\r\n")
	rest, ok = strings.CutPrefix(rest, "=")
	if !ok {
		return ""
	}
	rest = strings.TrimLeft(rest, " \t\r\n")
	if rest == "" || (rest[0] != '"' && rest[0] != '\'') {
		return ""
	}
	q := rest[0]
	end := strings.IndexByte(rest[1:], q)
	if end < 0 {
		return ""
	}
	return rest[1 : 1+end]
}

// dupKey identifies an invoice for duplicate detection: seller NIP, RodzajFaktury and P_2.
type dupKey struct {
	nip, kind, number string
}

// decideLocked settles the outcome of an invoice: the verdict, or 440 for a duplicate, or success
// with a KSeF number.
func (e *Emulator) decideLocked(inv *invoice, v *verdict, offline bool, doc []byte) {
	if v.outcome.Code != 0 {
		inv.outcome = v.outcome
		return
	}
	key := dupKey{nip: v.sellerNIP, kind: v.kind, number: v.number}
	if orig := e.st.accepted[key]; orig != nil {
		inv.outcome = statusInfo{
			Code:        440,
			Description: invoiceStatusDescription(440),
			Details: []string{fmt.Sprintf("Duplikat faktury. Faktura o numerze KSeF: %s została już prawidłowo przesłana do systemu w sesji: %s",
				orig.ksefNumber, orig.session.ref)},
			Extensions: map[string]string{
				"originalSessionReferenceNumber": orig.session.ref,
				"originalKsefNumber":             orig.ksefNumber,
			},
		}
		return
	}
	inv.outcome = statusInfo{Code: 200, Description: "Sukces"}
	inv.ksefNumber = newKSeFNumber(v.sellerNIP, inv.finalAt)
	inv.number = v.number
	inv.issueDate = v.issueDate
	inv.sellerNIP = v.sellerNIP
	inv.buyerNIP = v.buyerNIP
	inv.storedAt = inv.finalAt.Add(e.cfg.StorageDelay)
	inv.xml = doc
	inv.mode = "Online"
	// An invoice issued on an earlier (Polish) day than it reached KSeF is an offline invoice.
	if offline || v.issueDate < inv.received.In(warsaw).Format("2006-01-02") {
		inv.mode = "Offline"
	}
	e.st.accepted[key] = inv
	e.st.invoicesByKSeF[inv.ksefNumber] = inv
}

type invoiceStatusResponse struct {
	OrdinalNumber                int        `json:"ordinalNumber"`
	InvoiceNumber                string     `json:"invoiceNumber,omitempty"`
	KSeFNumber                   string     `json:"ksefNumber,omitempty"`
	ReferenceNumber              string     `json:"referenceNumber"`
	InvoiceHash                  string     `json:"invoiceHash"`
	InvoiceFileName              string     `json:"invoiceFileName,omitempty"`
	AcquisitionDate              *apiTime   `json:"acquisitionDate,omitempty"`
	InvoicingDate                apiTime    `json:"invoicingDate"`
	PermanentStorageDate         *apiTime   `json:"permanentStorageDate,omitempty"`
	UPODownloadURL               string     `json:"upoDownloadUrl,omitempty"`
	UPODownloadURLExpirationDate *apiTime   `json:"upoDownloadUrlExpirationDate,omitempty"`
	InvoicingMode                string     `json:"invoicingMode,omitempty"`
	Status                       statusInfo `json:"status"`
}

// invoiceStatusLocked describes the invoice at now; UPO links are generated on each call.
func (e *Emulator) invoiceStatusLocked(r *http.Request, inv *invoice, now time.Time) invoiceStatusResponse {
	resp := invoiceStatusResponse{
		OrdinalNumber:   inv.ordinal,
		ReferenceNumber: inv.ref,
		InvoiceHash:     inv.hash,
		InvoiceFileName: inv.fileName,
		InvoicingDate:   apiTime(inv.received),
		Status:          inv.status(now),
	}
	if inv.accepted(now) {
		expires := now.Add(e.cfg.DownloadURLTTL)
		resp.InvoiceNumber = inv.number
		resp.KSeFNumber = inv.ksefNumber
		resp.AcquisitionDate = optTime(inv.finalAt)
		if !now.Before(inv.storedAt) {
			resp.PermanentStorageDate = optTime(inv.storedAt)
		}
		resp.UPODownloadURL = e.presign(r, inv.session.ref, kindInvoiceUPO, inv.ksefNumber, expires)
		resp.UPODownloadURLExpirationDate = optTime(expires)
		resp.InvoicingMode = inv.mode
	}
	return resp
}

// invoiceLocked finds the invoice invRef of session ref of the caller's context. It answers 21173
// for an unknown session and 21405 for an unknown invoice.
func (q *request) invoiceLocked(ref, invRef string) *invoice {
	s := q.sessionLocked(ref)
	if s == nil {
		return nil
	}
	for _, inv := range s.invoices {
		if inv.ref == invRef {
			return inv
		}
	}
	q.fail(codeValidation, fmt.Sprintf("Faktura o numerze referencyjnym %s nie została znaleziona w sesji %s.", invRef, ref))
	return nil
}

// GET /sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}
func (e *Emulator) handleInvoiceStatus(q *request) {
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
	inv := q.invoiceLocked(ref, invRef)
	if inv == nil {
		return
	}
	q.json(http.StatusOK, e.invoiceStatusLocked(q.r, inv, q.now))
}

type sessionInvoicesResponse struct {
	ContinuationToken string                  `json:"continuationToken,omitempty"`
	Invoices          []invoiceStatusResponse `json:"invoices"`
}

// GET /sessions/{referenceNumber}/invoices
func (e *Emulator) handleSessionInvoices(q *request) { e.listInvoices(q, false) }

// GET /sessions/{referenceNumber}/invoices/failed
func (e *Emulator) handleSessionFailedInvoices(q *request) { e.listInvoices(q, true) }

func (e *Emulator) listInvoices(q *request, failedOnly bool) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	page, ok := q.paging(10, 1000)
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := q.sessionLocked(ref)
	if s == nil {
		return
	}
	var selected []*invoice
	for _, inv := range s.invoices {
		if failedOnly && (!inv.isFinal(q.now) || inv.outcome.Code == 200) {
			continue
		}
		selected = append(selected, inv)
	}
	from, to, next := page.bounds(len(selected))
	out := make([]invoiceStatusResponse, 0, to-from)
	for _, inv := range selected[from:to] {
		out = append(out, e.invoiceStatusLocked(q.r, inv, q.now))
	}
	q.json(http.StatusOK, sessionInvoicesResponse{ContinuationToken: next, Invoices: out})
}

// GET /invoices/ksef/{ksefNumber}: the invoice as stored, once permanently stored, to its seller
// or buyer.
func (e *Emulator) handleDownloadInvoice(q *request) {
	n := q.r.PathValue("ksefNumber")
	e.mu.Lock()
	inv := e.st.invoicesByKSeF[n]
	visible := inv != nil && inv.accepted(q.now) && (q.context().nip() == inv.sellerNIP || q.context().nip() == inv.buyerNIP)
	var doc []byte
	var ready bool
	if visible {
		ready = !q.now.Before(inv.storedAt)
		doc = inv.xml
	}
	e.mu.Unlock()
	switch {
	case !visible:
		q.fail(codeInvoiceNotFound, fmt.Sprintf("Faktura o numerze KSeF %s nie została znaleziona.", n))
	case !ready:
		q.fail(codeInvoiceNotReady, fmt.Sprintf("Faktura o numerze KSeF %s została przetworzona, ale nie jest jeszcze dostępna do pobrania. Spróbuj ponownie później.", n))
	default:
		q.xml(doc)
	}
}
