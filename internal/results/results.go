package results

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// Suffixes of the documents stored for an invoice, after its key.
const (
	UPOSuffix    = ".upo.xml"
	ResultSuffix = ".result.json"
	ErrorSuffix  = ".error.json"
)

// Statuses of a Result.
const (
	StatusAccepted  = "accepted"  // KSeF assigned a KSeF number
	StatusDuplicate = "duplicate" // KSeF already held this very invoice (440, same content): the original's KSeF number
)

// Result is the JSON document stored next to an accepted (or reconciled) invoice.
type Result struct {
	Status                         string        `json:"status"` // accepted, duplicate
	NIP                            string        `json:"nip"`
	KSeFNumber                     string        `json:"ksefNumber"`
	InvoiceNumber                  string        `json:"invoiceNumber,omitempty"`
	IssueDate                      string        `json:"issueDate,omitempty"`
	AcquisitionDate                time.Time     `json:"acquisitionDate,omitzero"`
	InvoicingDate                  time.Time     `json:"invoicingDate,omitzero"`
	PermanentStorageDate           time.Time     `json:"permanentStorageDate,omitzero"`
	InvoicingMode                  string        `json:"invoicingMode,omitempty"`
	SessionReferenceNumber         string        `json:"sessionReferenceNumber"`
	InvoiceReferenceNumber         string        `json:"invoiceReferenceNumber"`
	OriginalSessionReferenceNumber string        `json:"originalSessionReferenceNumber,omitempty"`
	InvoiceHash                    string        `json:"invoiceHash"`
	InvoiceSize                    int           `json:"invoiceSize"`
	Invoice                        flow.S3Object `json:"invoice"`
	UPO                            *UPO          `json:"upo,omitempty"`
	QRCodeURL                      string        `json:"qrCodeUrl,omitempty"`
	StatusCode                     int           `json:"statusCode"`
	StatusDescription              string        `json:"statusDescription"`
	RecordedAt                     time.Time     `json:"recordedAt"`
}

// UPO says where a result's UPO is stored.
type UPO struct {
	Key  string `json:"key"`
	Hash string `json:"hash,omitempty"` // Base64 SHA-256 of the UPO document
}

// NewResult returns the result of an invoice sent as sub and found in KSeF with status st, with
// the given status (StatusAccepted or StatusDuplicate). For a duplicate the caller sets
// KSeFNumber and OriginalSessionReferenceNumber to the original's; UPO and QRCodeURL are the
// caller's too.
func NewResult(status, nip string, obj flow.S3Object, sub *flow.Submission, st *ksef.InvoiceStatus, recordedAt time.Time) Result {
	return Result{
		Status:                 status,
		NIP:                    nip,
		KSeFNumber:             st.KSeFNumber,
		InvoiceNumber:          sub.InvoiceNumber,
		IssueDate:              sub.IssueDate,
		AcquisitionDate:        st.AcquisitionDate,
		InvoicingDate:          st.InvoicingDate,
		PermanentStorageDate:   st.PermanentStorageDate,
		InvoicingMode:          st.InvoicingMode,
		SessionReferenceNumber: sub.SessionReferenceNumber,
		InvoiceReferenceNumber: sub.InvoiceReferenceNumber,
		InvoiceHash:            sub.InvoiceHash,
		InvoiceSize:            sub.InvoiceSize,
		Invoice:                obj,
		StatusCode:             st.Status.Code,
		StatusDescription:      st.Status.Description,
		RecordedAt:             recordedAt.UTC(),
	}
}

// VerificationURL returns the invoice's verification link (QR code I), or "" if the submission
// lacks what it needs (the issue date and the invoice hash).
func VerificationURL(qrBaseURL, nip string, sub *flow.Submission) string {
	issued, err := time.Parse(time.DateOnly, sub.IssueDate)
	if err != nil {
		return ""
	}
	u, err := ksef.VerificationURLFromHash(qrBaseURL, nip, issued, sub.InvoiceHash)
	if err != nil {
		return ""
	}
	return u
}

// Report statuses: why an invoice was not accepted.
const (
	StatusRejected = "rejected" // KSeF refused it
	StatusInvalid  = "invalid"  // our validation refused it before sending
	StatusFailed   = "failed"   // the pipeline gave up (KSeF or AWS failing, a batch session not processed)
)

// Report is the JSON document stored next to an invoice that was not accepted.
type Report struct {
	Status     string           `json:"status"` // rejected, invalid, failed
	Error      string           `json:"error"`  // the error's name in the state machine: RejectedError, BadInputError, ...
	Reason     flow.Reason      `json:"reason"`
	NIP        string           `json:"nip"`
	Invoice    flow.S3Object    `json:"invoice"`
	InvoiceID  string           `json:"invoiceId,omitempty"` // the ledger's id, when the writer knows it
	Submission *flow.Submission `json:"submission,omitempty"`
	RecordedAt time.Time        `json:"recordedAt"`
}

// DuplicateNotice is stored next to a repeated upload: the content was taken in before, as
// DuplicateOf, and this object is not sent.
type DuplicateNotice struct {
	Status      string        `json:"status"` // duplicate-upload
	NIP         string        `json:"nip"`
	Invoice     flow.S3Object `json:"invoice"`
	InvoiceID   string        `json:"invoiceId"`
	InvoiceHash string        `json:"invoiceHash"`
	DuplicateOf string        `json:"duplicateOf"`
	// KSeFNumber is the original's, when it was already accepted.
	KSeFNumber string           `json:"ksefNumber,omitempty"`
	Original   *OriginalInvoice `json:"original,omitempty"`
	Message    string           `json:"message"`
	RecordedAt time.Time        `json:"recordedAt"`
}

// OriginalInvoice is what a DuplicateNotice says of the invoice that took the content in.
type OriginalInvoice struct {
	Status    string        `json:"status"` // when the notice was written
	Invoice   flow.S3Object `json:"invoice"`
	ResultKey string        `json:"resultKey,omitempty"`
}

// Putter writes objects to S3; *s3.Client satisfies it.
type Putter interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// Store writes the documents of invoices of one bucket under a result prefix. Results live
// under their own prefix so that writing them never starts another execution.
type Store struct {
	objects Putter
	bucket  string
	prefix  string
}

// NewStore returns a store writing to bucket under prefix (e.g. "results/").
func NewStore(objects Putter, bucket, prefix string) *Store {
	return &Store{objects: objects, bucket: bucket, prefix: prefix}
}

// Bucket returns the bucket the store writes to.
func (s *Store) Bucket() string { return s.bucket }

// Key names a document of the invoice: the result prefix, the invoice's key, the suffix.
func (s *Store) Key(obj flow.S3Object, suffix string) string {
	return s.prefix + obj.Key + suffix
}

// PutJSON stores v as indented JSON (application/json) under key.
func (s *Store) PutJSON(ctx context.Context, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return s.put(ctx, key, "application/json", append(b, '\n'))
}

// PutXML stores an XML document (a UPO) byte for byte under key.
func (s *Store) PutXML(ctx context.Context, key string, body []byte) error {
	return s.put(ctx, key, "application/xml", body)
}

func (s *Store) put(ctx context.Context, key, contentType string, body []byte) error {
	_, err := s.objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String(contentType),
	})
	if err != nil {
		return fmt.Errorf("store s3://%s/%s: %w", s.bucket, key, err)
	}
	return nil
}

// UPOSource is the part of the KSeF client FetchUPO uses.
type UPOSource interface {
	Download(ctx context.Context, url string) (*ksef.Document, error)
	InvoiceUPOByKSeFNumber(ctx context.Context, sessionRef, ksefNumber string) (*ksef.Document, error)
}

// FetchUPO downloads an invoice's UPO: from the pre-signed link when KSeF gave one (such links
// are not rate-limited), else, or when the link fails, from the API by the KSeF number. Until
// the UPO exists the API answers code 21178 (ksef.CodeUPONotFound), which the caller treats as
// "not yet". A failing link is logged without its query string (the client redacts it).
func FetchUPO(ctx context.Context, src UPOSource, sessionRef, ksefNumber, url string, log *slog.Logger) (*ksef.Document, error) {
	if url != "" {
		doc, err := src.Download(ctx, url)
		if err == nil {
			return doc, nil
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, err
		}
		log.WarnContext(ctx, "pre-signed UPO link failed; asking the API", slog.String("ksefNumber", ksefNumber), slog.String("error", err.Error()))
	}
	return src.InvoiceUPOByKSeFNumber(ctx, sessionRef, ksefNumber)
}

// UPONotReady reports whether err means the UPO is not generated yet (21178).
func UPONotReady(err error) bool {
	var apiErr *ksef.APIError
	return errors.As(err, &apiErr) && apiErr.HasCode(ksef.CodeUPONotFound)
}
