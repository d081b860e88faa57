package ksef

import (
	"context"
	"fmt"
	"net/http"
)

// RateLimit is the number of requests allowed in sliding windows of one second, one minute and
// one hour; all three apply at once.
type RateLimit struct {
	PerSecond int `json:"perSecond"`
	PerMinute int `json:"perMinute"`
	PerHour   int `json:"perHour"`
}

// RateLimits are the effective request limits of the context and caller IP, by endpoint group
// (GET /rate-limits).
type RateLimits struct {
	OnlineSession       RateLimit `json:"onlineSession"`       // open/close online session
	BatchSession        RateLimit `json:"batchSession"`        // open/close batch session
	InvoiceSend         RateLimit `json:"invoiceSend"`         // send invoice
	InvoiceStatus       RateLimit `json:"invoiceStatus"`       // invoice status in a session
	SessionList         RateLimit `json:"sessionList"`         // list sessions
	SessionInvoiceList  RateLimit `json:"sessionInvoiceList"`  // list a session's invoices
	SessionMisc         RateLimit `json:"sessionMisc"`         // session status, UPO downloads
	InvoiceMetadata     RateLimit `json:"invoiceMetadata"`     // invoice metadata query
	InvoiceExport       RateLimit `json:"invoiceExport"`       // start an export
	InvoiceExportStatus RateLimit `json:"invoiceExportStatus"` // export status
	InvoiceDownload     RateLimit `json:"invoiceDownload"`     // download an invoice by KSeF number
	Other               RateLimit `json:"other"`               // every other protected endpoint
}

// RateLimits fetches the effective request limits (GET /rate-limits).
func (c *Client) RateLimits(ctx context.Context) (*RateLimits, error) {
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/rate-limits"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: RateLimits: %w", err)
	}
	req.op = "RateLimits"
	var l RateLimits
	if err := c.do(req, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// SessionLimits are the size and count limits of one kind of session. Sizes are in MB of
// 1,000,000 bytes.
type SessionLimits struct {
	MaxInvoiceSizeInMB               int `json:"maxInvoiceSizeInMB"`
	MaxInvoiceWithAttachmentSizeInMB int `json:"maxInvoiceWithAttachmentSizeInMB"`
	MaxInvoices                      int `json:"maxInvoices"`
}

// MaxInvoiceBytes is the largest invoice without attachments, in bytes.
func (l SessionLimits) MaxInvoiceBytes() int64 { return int64(l.MaxInvoiceSizeInMB) * 1_000_000 }

// MaxInvoiceWithAttachmentBytes is the largest invoice with attachments, in bytes.
func (l SessionLimits) MaxInvoiceWithAttachmentBytes() int64 {
	return int64(l.MaxInvoiceWithAttachmentSizeInMB) * 1_000_000
}

// ContextLimits are the effective session limits of the context (GET /limits/context).
type ContextLimits struct {
	OnlineSession SessionLimits `json:"onlineSession"`
	BatchSession  SessionLimits `json:"batchSession"`
}

// ContextLimits fetches the session limits of the authenticated context (GET /limits/context).
func (c *Client) ContextLimits(ctx context.Context) (*ContextLimits, error) {
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/limits/context"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: ContextLimits: %w", err)
	}
	req.op = "ContextLimits"
	var l ContextLimits
	if err := c.do(req, &l); err != nil {
		return nil, err
	}
	return &l, nil
}
