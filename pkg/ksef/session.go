package ksef

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

type encryptionInfo struct {
	EncryptedSymmetricKey []byte `json:"encryptedSymmetricKey"`
	InitializationVector  []byte `json:"initializationVector"`
	PublicKeyID           string `json:"publicKeyId,omitempty"`
}

type openOnlineSessionRequest struct {
	FormCode   FormCode       `json:"formCode"`
	Encryption encryptionInfo `json:"encryption"`
}

// OpenOnlineSession opens an online (interactive) session for invoices of the given schema,
// usually FormCodeFA3() (POST /sessions/online). It draws a fresh AES-256 key and IV, sends
// the key encrypted under the MF key for SymmetricKeyEncryption (refetching the MF keys once
// if KSeF answers 21470) and returns a handle holding the key, the IV and the session's
// reference number: everything SendInvoice needs, also from another process.
func (c *Client) OpenOnlineSession(ctx context.Context, form FormCode) (*SessionHandle, error) {
	const op = "OpenOnlineSession"
	if form.SystemCode == "" || form.SchemaVersion == "" || form.Value == "" {
		return nil, fmt.Errorf("ksef: %s: incomplete form code %+v", op, form)
	}
	key, iv, err := newSessionKey()
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	var handle *SessionHandle
	err = c.withEncryptionKey(ctx, KeyUsageSymmetricKey, func(mf encryptionKey) error {
		wrapped, err := encryptOAEP(mf.pub, key)
		if err != nil {
			return fmt.Errorf("ksef: %s: encrypt session key: %w", op, err)
		}
		req, err := c.newRequest(ctx, http.MethodPost, pathOf("/sessions/online"), openOnlineSessionRequest{
			FormCode: form,
			Encryption: encryptionInfo{
				EncryptedSymmetricKey: wrapped,
				InitializationVector:  iv,
				PublicKeyID:           mf.id,
			},
		})
		if err != nil {
			return fmt.Errorf("ksef: %s: %w", op, err)
		}
		req.op = op
		var w struct {
			ReferenceNumber string  `json:"referenceNumber"`
			ValidUntil      apiTime `json:"validUntil"`
		}
		if err := c.do(req, &w); err != nil {
			return err
		}
		if w.ReferenceNumber == "" {
			return fmt.Errorf("ksef: %s: response has no reference number", op)
		}
		handle = &SessionHandle{ReferenceNumber: w.ReferenceNumber, FormCode: form, ValidUntil: w.ValidUntil.Time, Key: key, IV: iv}
		return nil
	})
	if err != nil {
		clear(key)
		return nil, err
	}
	return handle, nil
}

// SendOptions are the optional flags of SendInvoice.
type SendOptions struct {
	OfflineMode bool // the invoice was issued offline (offline24, offline, emergency mode)
	// HashOfCorrectedInvoice is, for a technical correction of a rejected offline invoice, the
	// Base64 SHA-256 of the rejected file.
	HashOfCorrectedInvoice string
}

// SentInvoice is KSeF's acknowledgement of an invoice and what was sent. Acceptance for
// processing only: poll InvoiceStatus for the outcome.
type SentInvoice struct {
	ReferenceNumber      string // the invoice's reference number in the session
	InvoiceHash          string // Base64 SHA-256 of the invoice bytes as given
	InvoiceSize          int
	EncryptedInvoiceHash string // Base64 SHA-256 of the ciphertext
	EncryptedInvoiceSize int
}

type sendInvoiceRequest struct {
	InvoiceHash             string `json:"invoiceHash"`
	InvoiceSize             int    `json:"invoiceSize"`
	EncryptedInvoiceHash    string `json:"encryptedInvoiceHash"`
	EncryptedInvoiceSize    int    `json:"encryptedInvoiceSize"`
	EncryptedInvoiceContent []byte `json:"encryptedInvoiceContent"`
	OfflineMode             bool   `json:"offlineMode"`
	HashOfCorrectedInvoice  string `json:"hashOfCorrectedInvoice,omitempty"`
}

// SendInvoice encrypts the invoice, exactly as given, with the session's key and IV
// (AES-256-CBC, PKCS#7) and sends it with its hashes and sizes (POST
// /sessions/online/{ref}/invoices). A 5xx answer is not retried, since KSeF may have accepted
// the invoice; a 429 is.
func (c *Client) SendInvoice(ctx context.Context, s *SessionHandle, invoice []byte, opts *SendOptions) (*SentInvoice, error) {
	const op = "SendInvoice"
	if err := checkHandle(s); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if len(invoice) == 0 {
		return nil, fmt.Errorf("ksef: %s: empty invoice", op)
	}
	var o SendOptions
	if opts != nil {
		o = *opts
	}
	if o.HashOfCorrectedInvoice != "" && !validSHA256Base64(o.HashOfCorrectedInvoice) {
		return nil, fmt.Errorf("ksef: %s: HashOfCorrectedInvoice must be a Base64 SHA-256 (44 characters)", op)
	}
	body, sent, err := encryptInvoice(s, invoice)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	body.OfflineMode = o.OfflineMode
	body.HashOfCorrectedInvoice = o.HashOfCorrectedInvoice
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/sessions/online/{referenceNumber}/invoices", s.ReferenceNumber), body)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	if w.ReferenceNumber == "" {
		return nil, fmt.Errorf("ksef: %s: response has no reference number", op)
	}
	sent.ReferenceNumber = w.ReferenceNumber
	return sent, nil
}

// encryptInvoice builds the send request for one invoice: hash and size of the plaintext,
// ciphertext, hash and size of the ciphertext.
func encryptInvoice(s *SessionHandle, invoice []byte) (*sendInvoiceRequest, *SentInvoice, error) {
	encrypted, err := encryptAESCBC(s.Key, s.IV, invoice)
	if err != nil {
		return nil, nil, err
	}
	sent := &SentInvoice{
		InvoiceHash:          sha256Base64(invoice),
		InvoiceSize:          len(invoice),
		EncryptedInvoiceHash: sha256Base64(encrypted),
		EncryptedInvoiceSize: len(encrypted),
	}
	return &sendInvoiceRequest{
		InvoiceHash:             sent.InvoiceHash,
		InvoiceSize:             sent.InvoiceSize,
		EncryptedInvoiceHash:    sent.EncryptedInvoiceHash,
		EncryptedInvoiceSize:    sent.EncryptedInvoiceSize,
		EncryptedInvoiceContent: encrypted,
	}, sent, nil
}

// checkHandle validates a session handle before use.
func checkHandle(s *SessionHandle) error {
	switch {
	case s == nil:
		return errors.New("nil session handle")
	case s.ReferenceNumber == "":
		return errors.New("session handle has no reference number")
	case len(s.Key) != sessionKeySize:
		return fmt.Errorf("session key must be %d bytes, got %d", sessionKeySize, len(s.Key))
	case len(s.IV) != sessionIVSize:
		return fmt.Errorf("session IV must be %d bytes, got %d", sessionIVSize, len(s.IV))
	}
	return nil
}

// InvoiceStatus is the processing state of one invoice of a session. Status.Code: 100
// accepted, 150 processing, 200 success (KSeFNumber set), 4xx rejected (440 duplicate, with
// Status.Extensions originalKsefNumber and originalSessionReferenceNumber), 5xx failed.
type InvoiceStatus struct {
	OrdinalNumber                int
	InvoiceNumber                string // the seller's number (P_2), when readable
	KSeFNumber                   string
	ReferenceNumber              string
	InvoiceHash                  string
	InvoiceFileName              string // batch sessions only
	AcquisitionDate              time.Time
	InvoicingDate                time.Time
	PermanentStorageDate         time.Time // zero until the invoice is durably stored
	UPODownloadURL               string    // pre-signed; fetch with Download
	UPODownloadURLExpirationDate time.Time
	InvoicingMode                string // Online or Offline
	Status                       Status
}

type invoiceStatusWire struct {
	OrdinalNumber                int     `json:"ordinalNumber"`
	InvoiceNumber                string  `json:"invoiceNumber"`
	KSeFNumber                   string  `json:"ksefNumber"`
	ReferenceNumber              string  `json:"referenceNumber"`
	InvoiceHash                  string  `json:"invoiceHash"`
	InvoiceFileName              string  `json:"invoiceFileName"`
	AcquisitionDate              apiTime `json:"acquisitionDate"`
	InvoicingDate                apiTime `json:"invoicingDate"`
	PermanentStorageDate         apiTime `json:"permanentStorageDate"`
	UPODownloadURL               string  `json:"upoDownloadUrl"`
	UPODownloadURLExpirationDate apiTime `json:"upoDownloadUrlExpirationDate"`
	InvoicingMode                string  `json:"invoicingMode"`
	Status                       Status  `json:"status"`
}

func (w invoiceStatusWire) status() InvoiceStatus {
	return InvoiceStatus{
		OrdinalNumber:                w.OrdinalNumber,
		InvoiceNumber:                w.InvoiceNumber,
		KSeFNumber:                   w.KSeFNumber,
		ReferenceNumber:              w.ReferenceNumber,
		InvoiceHash:                  w.InvoiceHash,
		InvoiceFileName:              w.InvoiceFileName,
		AcquisitionDate:              w.AcquisitionDate.Time,
		InvoicingDate:                w.InvoicingDate.Time,
		PermanentStorageDate:         w.PermanentStorageDate.Time,
		UPODownloadURL:               w.UPODownloadURL,
		UPODownloadURLExpirationDate: w.UPODownloadURLExpirationDate.Time,
		InvoicingMode:                w.InvoicingMode,
		Status:                       w.Status,
	}
}

// InvoiceStatus makes one status call for an invoice of a session (GET
// /sessions/{ref}/invoices/{invoiceRef}).
func (c *Client) InvoiceStatus(ctx context.Context, sessionRef, invoiceRef string) (*InvoiceStatus, error) {
	const op = "InvoiceStatus"
	if err := required("session reference number", sessionRef, "invoice reference number", invoiceRef); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req, err := c.newRequest(ctx, http.MethodGet,
		pathOf("/sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}", sessionRef, invoiceRef), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w invoiceStatusWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	s := w.status()
	return &s, nil
}

// ListOptions pages through a list. PageSize 0 leaves the size to KSeF (10); each list has
// its own range. ContinuationToken is the token of the previous page; "" starts at the first.
type ListOptions struct {
	PageSize          int
	ContinuationToken string
}

// InvoicePage is one page of a session's invoices. An empty ContinuationToken means it is the
// last page.
type InvoicePage struct {
	Invoices          []InvoiceStatus
	ContinuationToken string
}

// SessionInvoices lists the invoices of a session (GET /sessions/{ref}/invoices). PageSize,
// if set, must be 10-1000.
func (c *Client) SessionInvoices(ctx context.Context, sessionRef string, opts *ListOptions) (*InvoicePage, error) {
	return c.invoicePage(ctx, "SessionInvoices", "/sessions/{referenceNumber}/invoices", sessionRef, opts)
}

// FailedSessionInvoices lists the invoices of a session that were rejected (GET
// /sessions/{ref}/invoices/failed). PageSize, if set, must be 10-1000.
func (c *Client) FailedSessionInvoices(ctx context.Context, sessionRef string, opts *ListOptions) (*InvoicePage, error) {
	return c.invoicePage(ctx, "FailedSessionInvoices", "/sessions/{referenceNumber}/invoices/failed", sessionRef, opts)
}

func (c *Client) invoicePage(ctx context.Context, op, pattern, sessionRef string, opts *ListOptions) (*InvoicePage, error) {
	if sessionRef == "" {
		return nil, fmt.Errorf("ksef: %s: empty session reference number", op)
	}
	var w struct {
		ContinuationToken string              `json:"continuationToken"`
		Invoices          []invoiceStatusWire `json:"invoices"`
	}
	if err := c.list(ctx, op, pathOf(pattern, sessionRef), opts, 10, 1000, &w); err != nil {
		return nil, err
	}
	page := &InvoicePage{ContinuationToken: w.ContinuationToken, Invoices: make([]InvoiceStatus, len(w.Invoices))}
	for i, inv := range w.Invoices {
		page.Invoices[i] = inv.status()
	}
	return page, nil
}

// list fetches one page of a header-paged list: pageSize in the query (checked against the
// list's range), x-continuation-token in a header.
func (c *Client) list(ctx context.Context, op string, p apiPath, opts *ListOptions, minSize, maxSize int, v any) error {
	var o ListOptions
	if opts != nil {
		o = *opts
	}
	if o.PageSize != 0 {
		if o.PageSize < minSize || o.PageSize > maxSize {
			return fmt.Errorf("ksef: %s: page size %d outside %d-%d", op, o.PageSize, minSize, maxSize)
		}
		p = p.withQuery(url.Values{"pageSize": {strconv.Itoa(o.PageSize)}})
	}
	req, err := c.newRequest(ctx, http.MethodGet, p, nil)
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	if o.ContinuationToken != "" {
		req.Header.Set("x-continuation-token", o.ContinuationToken)
	}
	return c.do(req, v)
}

// CloseOnlineSession closes an online session (POST /sessions/online/{ref}/close), which
// starts the generation of the session's collective UPO. Invoices already sent are processed
// regardless.
func (c *Client) CloseOnlineSession(ctx context.Context, sessionRef string) error {
	const op = "CloseOnlineSession"
	if sessionRef == "" {
		return fmt.Errorf("ksef: %s: empty session reference number", op)
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/sessions/online/{referenceNumber}/close", sessionRef), nil)
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	return c.do(req, nil)
}

// SessionStatus is the state of a session. For an online session Status.Code is 100 open,
// 170 closed, 200 processed, 415 key decryption error, 440 cancelled (no invoices), 445 no
// valid invoices. "Processed" concerns the session: check each invoice's status too.
type SessionStatus struct {
	Status                 Status
	DateCreated            time.Time
	DateUpdated            time.Time
	ValidUntil             time.Time
	UPOPages               []UPOPage // after closing, once the UPO exists
	InvoiceCount           int
	SuccessfulInvoiceCount int
	FailedInvoiceCount     int
}

// UPOPage is one page of a session's collective UPO: download it with SessionUPO (by
// reference number) or Download (by the pre-signed URL, before it expires).
type UPOPage struct {
	ReferenceNumber           string
	DownloadURL               string
	DownloadURLExpirationDate time.Time
}

// SessionStatus makes one status call for a session (GET /sessions/{ref}).
func (c *Client) SessionStatus(ctx context.Context, sessionRef string) (*SessionStatus, error) {
	const op = "SessionStatus"
	if sessionRef == "" {
		return nil, fmt.Errorf("ksef: %s: empty session reference number", op)
	}
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/sessions/{referenceNumber}", sessionRef), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	var w struct {
		Status      Status  `json:"status"`
		DateCreated apiTime `json:"dateCreated"`
		DateUpdated apiTime `json:"dateUpdated"`
		ValidUntil  apiTime `json:"validUntil"`
		UPO         *struct {
			Pages []struct {
				ReferenceNumber           string  `json:"referenceNumber"`
				DownloadURL               string  `json:"downloadUrl"`
				DownloadURLExpirationDate apiTime `json:"downloadUrlExpirationDate"`
			} `json:"pages"`
		} `json:"upo"`
		InvoiceCount           int `json:"invoiceCount"`
		SuccessfulInvoiceCount int `json:"successfulInvoiceCount"`
		FailedInvoiceCount     int `json:"failedInvoiceCount"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	s := &SessionStatus{
		Status:                 w.Status,
		DateCreated:            w.DateCreated.Time,
		DateUpdated:            w.DateUpdated.Time,
		ValidUntil:             w.ValidUntil.Time,
		InvoiceCount:           w.InvoiceCount,
		SuccessfulInvoiceCount: w.SuccessfulInvoiceCount,
		FailedInvoiceCount:     w.FailedInvoiceCount,
	}
	if w.UPO != nil {
		for _, p := range w.UPO.Pages {
			s.UPOPages = append(s.UPOPages, UPOPage{
				ReferenceNumber:           p.ReferenceNumber,
				DownloadURL:               p.DownloadURL,
				DownloadURLExpirationDate: p.DownloadURLExpirationDate.Time,
			})
		}
	}
	return s, nil
}
