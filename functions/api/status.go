package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

// upoURLLifetime is how long a pre-signed UPO link works.
const upoURLLifetime = 5 * time.Minute

// Statuses of the API (the ledger has finer ones).
const (
	apiPending  = "pending"
	apiAccepted = "accepted"
	apiRejected = "rejected"
	apiFailed   = "failed"
)

// invoiceStatus is the 200 body of GET /invoices/{id}.
type invoiceStatus struct {
	InvoiceID       string    `json:"invoiceId"`
	Status          string    `json:"status"`
	Source          string    `json:"source,omitempty"`
	InvoiceNumber   string    `json:"invoiceNumber,omitempty"`
	KSeFNumber      string    `json:"ksefNumber,omitempty"`
	Reconciled      bool      `json:"reconciled,omitempty"`
	DuplicateOf     string    `json:"duplicateOf,omitempty"`
	AcquisitionDate time.Time `json:"acquisitionDate,omitzero"`
	Reason          *reason   `json:"reason,omitempty"`
	UPOURL          string    `json:"upoUrl,omitempty"`
	UPOURLExpiresAt time.Time `json:"upoUrlExpiresAt,omitzero"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

// reason says why an invoice was rejected or failed.
type reason struct {
	Code    int      `json:"code,omitempty"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

// status answers GET /invoices/{id}.
func (h *handler) status(ctx context.Context, req *events.APIGatewayV2HTTPRequest) (*reply, error) {
	id := req.PathParameters["id"]
	if !ledger.ValidID(id) {
		return nil, &apiError{Status: http.StatusBadRequest, Code: codeInvalidID,
			Message: "not an invoice id (api-, s3-, batch- or manual- and 26 characters a-z, 2-7)"}
	}
	inv, err := h.ledger.Get(ctx, id)
	if errors.Is(err, ledger.ErrNotFound) {
		return nil, &apiError{Status: http.StatusNotFound, Code: codeNotFound, Message: "no invoice has this id"}
	}
	if err != nil {
		return nil, fmt.Errorf("read invoice %s: %w", id, err)
	}
	out := invoiceStatus{
		InvoiceID:     inv.ID,
		Source:        string(inv.Source),
		InvoiceNumber: inv.InvoiceNumber,
		CreatedAt:     inv.CreatedAt.UTC(),
		UpdatedAt:     inv.UpdatedAt.UTC(),
	}
	outcome := inv
	if inv.Status == ledger.StatusDuplicateUpload {
		// An upload of content taken in before: its outcome is the original's.
		out.DuplicateOf = inv.DuplicateOf
		if outcome, err = h.ledger.Get(ctx, inv.DuplicateOf); err != nil {
			return nil, fmt.Errorf("read invoice %s, of which %s is a duplicate: %w", inv.DuplicateOf, id, err)
		}
		if out.InvoiceNumber == "" {
			out.InvoiceNumber = outcome.InvoiceNumber
		}
	}
	switch outcome.Status {
	case ledger.StatusReceived, ledger.StatusSubmitted:
		out.Status = apiPending
	case ledger.StatusAccepted:
		out.Status = apiAccepted
		out.KSeFNumber, out.AcquisitionDate, out.Reconciled = outcome.KSeFNumber, outcome.AcquisitionDate.UTC(), outcome.Reconciled
	case ledger.StatusRejected, ledger.StatusInvalid:
		out.Status = apiRejected
	case ledger.StatusFailed:
		out.Status = apiFailed
	default: // a duplicate of a duplicate, which the ledger does not record, or a status added since
		return nil, fmt.Errorf("invoice %s has ledger status %q, which the API cannot report", outcome.ID, outcome.Status)
	}
	if out.Status == apiRejected || out.Status == apiFailed {
		out.Reason = &reason{Message: "no reason was recorded"}
		if r := outcome.Reason; r != nil && r.Message != "" {
			out.Reason = &reason{Code: r.Code, Message: r.Message, Details: r.Details}
		}
	}
	if out.Status == apiAccepted && outcome.UPOKey != "" {
		if out.UPOURL, out.UPOURLExpiresAt, err = h.upoURL(ctx, outcome.UPOKey); err != nil {
			return nil, err
		}
	}
	return &reply{status: http.StatusOK, body: out, invoiceID: inv.ID}, nil
}

// upoURL pre-signs a GET of the UPO, which the pipeline stores in the stack's bucket, for
// upoURLLifetime, and says when the link expires: at the signature's own time (X-Amz-Date) plus
// its lifetime (X-Amz-Expires).
func (h *handler) upoURL(ctx context.Context, key string) (string, time.Time, error) {
	bucket := h.bucket
	p, err := h.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)},
		s3.WithPresignExpires(upoURLLifetime))
	if err != nil {
		return "", time.Time{}, fmt.Errorf("pre-sign UPO s3://%s/%s: %w", bucket, key, err)
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("parse pre-signed UPO URL: %w", err)
	}
	q := u.Query()
	signed, err1 := time.Parse("20060102T150405Z", q.Get("X-Amz-Date"))
	secs, err2 := strconv.Atoi(q.Get("X-Amz-Expires"))
	if err := errors.Join(err1, err2); err != nil {
		return "", time.Time{}, fmt.Errorf("pre-signed UPO URL without a valid X-Amz-Date and X-Amz-Expires: %w", err)
	}
	return p.URL, signed.Add(time.Duration(secs) * time.Second).UTC(), nil
}
