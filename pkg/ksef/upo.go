package ksef

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Document is a downloaded document: a UPO (official receipt) or a UPO page.
type Document struct {
	Content []byte // the body, byte for byte
	// Hash is the Base64 SHA-256 of Content. When KSeF sent x-ms-meta-hash, the client checked
	// that it matches (a mismatch is an error wrapping ErrDocumentHash) and HashVerified is true.
	Hash         string
	HashVerified bool
}

// ErrDocumentHash means a downloaded document does not match the x-ms-meta-hash header that
// came with it: the download was corrupted or truncated.
var ErrDocumentHash = errors.New("ksef: document hash mismatch")

// newDocument wraps content, checking it against the x-ms-meta-hash header if there is one.
func newDocument(content []byte, metaHash string) (*Document, error) {
	doc := &Document{Content: content, Hash: sha256Base64(content)}
	metaHash = strings.TrimSpace(metaHash)
	if metaHash == "" {
		return doc, nil
	}
	want, ok := decodeDigest(metaHash)
	got, _ := base64.StdEncoding.DecodeString(doc.Hash)
	if !ok || !bytes.Equal(want, got) {
		return nil, fmt.Errorf("%w: x-ms-meta-hash %q, content hashes to %q", ErrDocumentHash, metaHash, doc.Hash)
	}
	doc.HashVerified = true
	return doc, nil
}

// decodeDigest reads a SHA-256 digest written as standard Base64 (what KSeF documents), or,
// tolerantly, as unpadded or URL-safe Base64 or hex.
func decodeDigest(s string) ([]byte, bool) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, true
		}
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, true
	}
	return nil, false
}

// InvoiceUPO downloads the UPO of one invoice of a session, by the invoice's reference number
// (GET /sessions/{ref}/invoices/{invoiceRef}/upo). Until the UPO exists KSeF answers code
// 21178 (errors.Is(err, ErrNotFound)).
func (c *Client) InvoiceUPO(ctx context.Context, sessionRef, invoiceRef string) (*Document, error) {
	if err := required("session reference number", sessionRef, "invoice reference number", invoiceRef); err != nil {
		return nil, fmt.Errorf("ksef: invoice UPO: %w", err)
	}
	return c.document(ctx, "InvoiceUPO",
		pathOf("/sessions/{referenceNumber}/invoices/{invoiceReferenceNumber}/upo", sessionRef, invoiceRef), authAccess)
}

// InvoiceUPOByKSeFNumber downloads the UPO of one invoice of a session, by its KSeF number
// (GET /sessions/{ref}/invoices/ksef/{ksefNumber}/upo).
func (c *Client) InvoiceUPOByKSeFNumber(ctx context.Context, sessionRef, ksefNumber string) (*Document, error) {
	if err := required("session reference number", sessionRef, "KSeF number", ksefNumber); err != nil {
		return nil, fmt.Errorf("ksef: invoice UPO: %w", err)
	}
	return c.document(ctx, "InvoiceUPOByKSeFNumber",
		pathOf("/sessions/{referenceNumber}/invoices/ksef/{ksefNumber}/upo", sessionRef, ksefNumber), authAccess)
}

// SessionUPO downloads one page of a closed session's collective UPO
// (GET /sessions/{ref}/upo/{upoRef}); the page reference numbers are in SessionStatus.UPOPages.
func (c *Client) SessionUPO(ctx context.Context, sessionRef, upoRef string) (*Document, error) {
	if err := required("session reference number", sessionRef, "UPO reference number", upoRef); err != nil {
		return nil, fmt.Errorf("ksef: session UPO: %w", err)
	}
	return c.document(ctx, "SessionUPO",
		pathOf("/sessions/{referenceNumber}/upo/{upoReferenceNumber}", sessionRef, upoRef), authAccess)
}

// Download fetches a pre-signed URL handed out by KSeF (InvoiceStatus.UPODownloadURL,
// UPOPage.DownloadURL). The URL is used exactly as given, with no Authorization header; such
// links are not rate-limited but expire. The URL's query string, which holds its signature,
// never appears in errors or logs.
func (c *Client) Download(ctx context.Context, rawURL string) (*Document, error) {
	if rawURL == "" {
		return nil, errors.New("ksef: download: empty URL")
	}
	return c.document(ctx, "Download", presigned(rawURL), authNone)
}

func (c *Client) document(ctx context.Context, op string, p apiPath, auth authMode) (*Document, error) {
	req, err := c.newRequest(ctx, http.MethodGet, p, nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.auth = op, auth
	req.Header.Set("Accept", "application/xml, */*")
	var doc Document
	if err := c.do(req, &doc); err != nil {
		return nil, err
	}
	return &doc, nil
}

// required checks that each named value (name, value, name, value...) is not empty.
func required(nameValues ...string) error {
	for i := 0; i+1 < len(nameValues); i += 2 {
		if strings.TrimSpace(nameValues[i+1]) == "" {
			return fmt.Errorf("empty %s", nameValues[i])
		}
	}
	return nil
}
