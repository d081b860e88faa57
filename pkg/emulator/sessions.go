package emulator

import (
	"crypto/aes"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// formCode identifies the invoice schema of a session.
type formCode struct {
	SystemCode    string `json:"systemCode"`
	SchemaVersion string `json:"schemaVersion"`
	Value         string `json:"value"`
}

// supportedForm is an accepted form code with what UPOs and validation need.
type supportedForm struct {
	code       formCode
	schemaName string // NazwaStrukturyLogicznej in UPOs
}

// The emulator accepts FA (3), the schema mandatory since 2026-02-01 and the only one whose XSD
// it carries; KSeF TEST also takes FA (2), PEF (3), PEF_KOR (3) and FA_RR (1).
var supportedForms = []supportedForm{
	{code: formCode{SystemCode: "FA (3)", SchemaVersion: "1-0E", Value: "FA"}, schemaName: "Schemat_FA(3)_v1-0E.xsd"},
}

// session is an online session.
type session struct {
	ref        string
	context    contextID
	form       supportedForm
	created    time.Time
	validUntil time.Time
	closedAt   time.Time // zero until POST .../close
	keyFailed  bool      // the symmetric key could not be decrypted: status 415
	key, iv    []byte
	invoices   []*invoice
	// upoPages holds the reference numbers of the session UPO pages, fixed the first time the
	// session is seen processed.
	upoPages []string
	// UPO authentication data, copied from the authentication that opened the session.
	tokenRef string
	docHash  string
	// batch is set for a batch session (POST /sessions/batch); nil for an online one.
	batch *batchSession
}

// isOpen reports whether invoices may be sent to the session at now.
func (s *session) isOpen(now time.Time) bool {
	return !s.keyFailed && s.closedAt.IsZero() && now.Before(s.validUntil)
}

// closeTime returns when the session was closed, by POST .../close or by expiry; zero if it is
// still open at now.
func (s *session) closeTime(now time.Time) time.Time {
	switch {
	case !s.closedAt.IsZero():
		return s.closedAt
	case !now.Before(s.validUntil):
		return s.validUntil
	}
	return time.Time{}
}

// processedAt returns when a closed session finishes processing: ProcessingDelay after close, and
// not before its last invoice is final. ok is false if an invoice is stuck.
func (s *session) processedAt(closed time.Time, processing time.Duration) (t time.Time, ok bool) {
	t = closed.Add(processing)
	for _, inv := range s.invoices {
		if inv.stuck {
			return time.Time{}, false
		}
		if inv.finalAt.After(t) {
			t = inv.finalAt
		}
	}
	return t, true
}

// status computes the session status at now.
func (s *session) status(now time.Time, processing time.Duration) statusInfo {
	if s.batch != nil {
		return s.batchStatus(now, processing)
	}
	if s.keyFailed {
		return statusInfo{Code: 415, Description: "Błąd odszyfrowania dostarczonego klucza"}
	}
	closed := s.closeTime(now)
	if closed.IsZero() {
		return statusInfo{Code: 100, Description: "Sesja interaktywna otwarta"}
	}
	done, ok := s.processedAt(closed, processing)
	if !ok || now.Before(done) {
		return statusInfo{Code: 170, Description: "Sesja interaktywna zamknięta"}
	}
	ok200, _ := s.counts(now)
	switch {
	case len(s.invoices) == 0:
		return statusInfo{Code: 440, Description: "Sesja anulowana", Details: []string{"Nie przesłano faktur"}}
	case ok200 == 0:
		return statusInfo{Code: 445, Description: "Błąd weryfikacji, brak poprawnych faktur"}
	}
	return statusInfo{Code: 200, Description: "Sesja interaktywna przetworzona pomyślnie"}
}

// counts returns how many invoices are final with success and with failure at now.
func (s *session) counts(now time.Time) (succeeded, failed int) {
	for _, inv := range s.invoices {
		if !inv.isFinal(now) {
			continue
		}
		if inv.outcome.Code == 200 {
			succeeded++
		} else {
			failed++
		}
	}
	return succeeded, failed
}

// updated returns the time of the last event of the session that happened by now.
func (s *session) updated(now time.Time, processing time.Duration) time.Time {
	t := s.created
	later := func(x time.Time) {
		if !x.IsZero() && !x.After(now) && x.After(t) {
			t = x
		}
	}
	for _, inv := range s.invoices {
		later(inv.received)
		later(inv.acceptAt)
		if !inv.stuck {
			later(inv.finalAt)
		}
	}
	if closed := s.closeTime(now); !closed.IsZero() {
		later(closed)
		if done, ok := s.processedAt(closed, processing); ok {
			later(done)
		}
	}
	return t
}

// commonStatus maps a session status code onto the CommonSessionStatus filter of GET /sessions.
func commonStatus(code int) string {
	switch code {
	case 100, 150, 170:
		return "InProgress"
	case 200:
		return "Succeeded"
	case 440:
		return "Cancelled"
	}
	return "Failed"
}

type encryptionJSON struct {
	EncryptedSymmetricKey *[]byte `json:"encryptedSymmetricKey"`
	InitializationVector  *[]byte `json:"initializationVector"`
	PublicKeyID           *string `json:"publicKeyId"`
}

type openOnlineRequest struct {
	FormCode   *formCode       `json:"formCode"`
	Encryption *encryptionJSON `json:"encryption"`
}

type openOnlineResponse struct {
	ReferenceNumber string  `json:"referenceNumber"`
	ValidUntil      apiTime `json:"validUntil"`
}

// POST /sessions/online
func (e *Emulator) handleOpenOnline(q *request) {
	var req openOnlineRequest
	if !q.decodeJSON(&req) {
		return
	}
	if req.FormCode == nil || req.Encryption == nil || req.Encryption.EncryptedSymmetricKey == nil || req.Encryption.InitializationVector == nil {
		q.fail(codeValidation, "Pola 'formCode' i 'encryption' (encryptedSymmetricKey, initializationVector) są wymagane.")
		return
	}
	form := q.supportedForm(*req.FormCode)
	if form == nil {
		return
	}
	if len(*req.Encryption.InitializationVector) != aes.BlockSize {
		q.fail(codeValidation, "Wektor inicjalizujący musi mieć długość 16 bajtów.")
		return
	}
	s := e.startSession(q, &session{
		ref:        newReferenceNumber(q.now, refOnline),
		form:       *form,
		validUntil: q.now.Add(e.cfg.OnlineSessionTTL),
	}, req.Encryption)
	if s == nil {
		return
	}
	q.json(http.StatusCreated, openOnlineResponse{ReferenceNumber: s.ref, ValidUntil: apiTime(s.validUntil)})
}

// supportedForm returns the form with the given code, or answers 21405 and returns nil when the
// emulator does not support it.
func (q *request) supportedForm(code formCode) *supportedForm {
	for i := range supportedForms {
		if supportedForms[i].code == code {
			return &supportedForms[i]
		}
	}
	q.fail(codeValidation, "Wskazany kod formularza nie jest wspierany.")
	return nil
}

// startSession completes s (its reference number, form, validity and, for a batch session, its
// batch set by the caller) as a session of the caller's context opened now, with the AES key
// and IV of enc, and registers it; keyFailed records a key that does not decrypt to 32 bytes.
// A publicKeyId the emulator does not know answers 21470 and returns nil.
func (e *Emulator) startSession(q *request, s *session, enc *encryptionJSON) *session {
	keyID := ""
	if enc.PublicKeyID != nil {
		keyID = *enc.PublicKeyID
	}
	keys, ok := e.candidateKeys(usageSymmetric, keyID)
	if !ok {
		q.fail(codeUnknownKey, fmt.Sprintf("Klucz o identyfikatorze %s nie jest wspierany.", keyID))
		return nil
	}
	key, decrypted := decryptOAEP(keys, *enc.EncryptedSymmetricKey)
	s.context, s.created = q.context(), q.now
	s.key, s.keyFailed, s.iv = key, !decrypted || len(key) != 32, *enc.InitializationVector
	e.mu.Lock()
	defer e.mu.Unlock()
	if a := e.st.auths[q.claims.AuthRef]; a != nil {
		s.tokenRef, s.docHash = a.tokenRef, a.docHash
	}
	e.st.sessions[s.ref] = s
	e.st.sessionList = append(e.st.sessionList, s)
	return s
}

// sessionLocked returns the session ref of the caller's context, or answers 21173.
func (q *request) sessionLocked(ref string) *session {
	s := q.e.st.sessions[ref]
	if s == nil || s.context != q.context() {
		q.fail(codeSessionNotFound, fmt.Sprintf("Sesja o numerze referencyjnym %s nie została znaleziona.", ref))
		return nil
	}
	return s
}

// POST /sessions/online/{referenceNumber}/close
func (e *Emulator) handleCloseOnline(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := q.sessionLocked(ref)
	if s == nil {
		return
	}
	if s.batch != nil {
		q.fail(codeSessionNotFound, fmt.Sprintf("Sesja interaktywna o numerze referencyjnym %s nie została znaleziona.", ref))
		return
	}
	if !s.isOpen(q.now) {
		q.fail(codeSessionStatus, fmt.Sprintf("Status sesji (%d) uniemożliwia jej zamknięcie.", s.status(q.now, e.cfg.ProcessingDelay).Code))
		return
	}
	s.closedAt = q.now
	q.noContent()
}

type upoPage struct {
	ReferenceNumber           string  `json:"referenceNumber"`
	DownloadURL               string  `json:"downloadUrl"`
	DownloadURLExpirationDate apiTime `json:"downloadUrlExpirationDate"`
}

type sessionStatusResponse struct {
	Status      statusInfo `json:"status"`
	DateCreated apiTime    `json:"dateCreated"`
	DateUpdated apiTime    `json:"dateUpdated"`
	ValidUntil  *apiTime   `json:"validUntil,omitempty"`
	UPO         *struct {
		Pages []upoPage `json:"pages"`
	} `json:"upo,omitempty"`
	InvoiceCount           *int `json:"invoiceCount,omitempty"`
	SuccessfulInvoiceCount *int `json:"successfulInvoiceCount,omitempty"`
	FailedInvoiceCount     *int `json:"failedInvoiceCount,omitempty"`
}

// nonZero returns &n, or nil for 0: KSeF leaves zero counts out.
func nonZero(n int) *int {
	if n == 0 {
		return nil
	}
	return &n
}

// GET /sessions/{referenceNumber}
func (e *Emulator) handleSessionStatus(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := q.sessionLocked(ref)
	if s == nil {
		return
	}
	st := s.status(q.now, e.cfg.ProcessingDelay)
	succeeded, failed := s.counts(q.now)
	resp := sessionStatusResponse{
		Status:                 st,
		DateCreated:            apiTime(s.created),
		DateUpdated:            apiTime(s.updated(q.now, e.cfg.ProcessingDelay)),
		ValidUntil:             optTime(s.validUntil),
		InvoiceCount:           nonZero(len(s.invoices)),
		SuccessfulInvoiceCount: nonZero(succeeded),
		FailedInvoiceCount:     nonZero(failed),
	}
	if st.Code == 200 {
		e.ensureUPOPagesLocked(s, q.now)
		resp.UPO = &struct {
			Pages []upoPage `json:"pages"`
		}{}
		expires := q.now.Add(e.cfg.DownloadURLTTL)
		for _, pageRef := range s.upoPages {
			resp.UPO.Pages = append(resp.UPO.Pages, upoPage{
				ReferenceNumber:           pageRef,
				DownloadURL:               e.presign(q.r, s.ref, kindSessionUPO, pageRef, expires),
				DownloadURLExpirationDate: apiTime(expires),
			})
		}
	}
	q.json(http.StatusOK, resp)
}

type sessionListItem struct {
	ReferenceNumber        string     `json:"referenceNumber"`
	Status                 statusInfo `json:"status"`
	DateCreated            apiTime    `json:"dateCreated"`
	DateUpdated            apiTime    `json:"dateUpdated"`
	ValidUntil             *apiTime   `json:"validUntil,omitempty"`
	TotalInvoiceCount      int        `json:"totalInvoiceCount"`
	SuccessfulInvoiceCount int        `json:"successfulInvoiceCount"`
	FailedInvoiceCount     int        `json:"failedInvoiceCount"`
}

type sessionListResponse struct {
	ContinuationToken string            `json:"continuationToken,omitempty"`
	Sessions          []sessionListItem `json:"sessions"`
}

// sessionFilter is the query of GET /sessions.
type sessionFilter struct {
	ref                      string
	statuses                 []string
	createdFrom, createdTo   time.Time
	closedFrom, closedTo     time.Time
	modifiedFrom, modifiedTo time.Time
}

func (q *request) sessionFilter() (sessionFilter, bool) {
	v := q.r.URL.Query()
	var f sessionFilter
	switch v.Get("sessionType") {
	case "Online", "Batch":
	case "":
		q.fail(codeValidation, "Parametr 'sessionType' jest wymagany.")
		return f, false
	default:
		q.fail(codeValidation, "Parametr 'sessionType' musi mieć wartość Online lub Batch.")
		return f, false
	}
	f.ref = v.Get("referenceNumber")
	for _, st := range v["statuses"] {
		switch st {
		case "InProgress", "Succeeded", "Failed", "Cancelled":
			f.statuses = append(f.statuses, st)
		default:
			q.fail(codeValidation, fmt.Sprintf("Nieznany status sesji '%s'.", st))
			return f, false
		}
	}
	times := []struct {
		name string
		dst  *time.Time
	}{
		{"dateCreatedFrom", &f.createdFrom}, {"dateCreatedTo", &f.createdTo},
		{"dateClosedFrom", &f.closedFrom}, {"dateClosedTo", &f.closedTo},
		{"dateModifiedFrom", &f.modifiedFrom}, {"dateModifiedTo", &f.modifiedTo},
	}
	for _, t := range times {
		s := v.Get(t.name)
		if s == "" {
			continue
		}
		parsed, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			q.fail(codeValidation, fmt.Sprintf("Parametr '%s' nie jest poprawną datą i czasem.", t.name))
			return f, false
		}
		*t.dst = parsed
	}
	return f, true
}

func inRange(t, from, to time.Time) bool {
	if !from.IsZero() && (t.IsZero() || t.Before(from)) {
		return false
	}
	if !to.IsZero() && (t.IsZero() || t.After(to)) {
		return false
	}
	return true
}

// GET /sessions?sessionType=Online|Batch: the sessions of the caller's context of that type,
// newest first.
func (e *Emulator) handleListSessions(q *request) {
	f, ok := q.sessionFilter()
	if !ok {
		return
	}
	page, ok := q.paging(10, 1000)
	if !ok {
		return
	}
	items := []sessionListItem{}
	batch := q.r.URL.Query().Get("sessionType") == "Batch"
	e.mu.Lock()
	for _, s := range slices.Backward(e.st.sessionList) {
		if s.context != q.context() || (s.batch != nil) != batch || (f.ref != "" && s.ref != f.ref) {
			continue
		}
		st := s.status(q.now, e.cfg.ProcessingDelay)
		updated := s.updated(q.now, e.cfg.ProcessingDelay)
		if len(f.statuses) > 0 && !slices.Contains(f.statuses, commonStatus(st.Code)) {
			continue
		}
		if !inRange(s.created, f.createdFrom, f.createdTo) || !inRange(s.closeTime(q.now), f.closedFrom, f.closedTo) ||
			!inRange(updated, f.modifiedFrom, f.modifiedTo) {
			continue
		}
		succeeded, failed := s.counts(q.now)
		items = append(items, sessionListItem{
			ReferenceNumber:        s.ref,
			Status:                 st,
			DateCreated:            apiTime(s.created),
			DateUpdated:            apiTime(updated),
			ValidUntil:             optTime(s.validUntil),
			TotalInvoiceCount:      len(s.invoices),
			SuccessfulInvoiceCount: succeeded,
			FailedInvoiceCount:     failed,
		})
	}
	e.mu.Unlock()
	from, to, next := page.bounds(len(items))
	q.json(http.StatusOK, sessionListResponse{ContinuationToken: next, Sessions: items[from:to]})
}
