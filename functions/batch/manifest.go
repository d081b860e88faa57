package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// maxManifestBytes bounds the manifest read back: 10 000 entries of about 400 bytes.
const maxManifestBytes = 32 << 20

// manifest maps the files of a batch session's archive to the invoices they came from. It is
// stored as <batch prefix>manifests/<session reference number>.json when the session is
// opened, before anything is uploaded, because a session's invoices (up to 10 000) do not fit
// in the execution's state: the state carries only the manifest's key.
type manifest struct {
	SessionReferenceNumber string          `json:"sessionReferenceNumber"`
	NIP                    string          `json:"nip"`
	ExecutionName          string          `json:"executionName"`
	OpenedAt               time.Time       `json:"openedAt"`
	ArchiveSize            int64           `json:"archiveSize"`
	ArchiveHash            string          `json:"archiveHash"`
	Parts                  int             `json:"parts"`
	Invoices               []manifestEntry `json:"invoices"`
}

// manifestEntry is one file of the archive.
type manifestEntry struct {
	FileName      string        `json:"fileName"` // <invoiceId>.xml, KSeF's invoiceFileName
	InvoiceID     string        `json:"invoiceId"`
	Invoice       flow.S3Object `json:"invoice"`
	InvoiceHash   string        `json:"invoiceHash"`
	InvoiceSize   int           `json:"invoiceSize"`
	InvoiceNumber string        `json:"invoiceNumber"`
	IssueDate     string        `json:"issueDate"` // P_1, YYYY-MM-DD
}

// submission is what the entry's invoice looks like as sent, for the documents stored next to it
// (the same fields an online submission has).
func (e *manifestEntry) submission(m *manifest, invoiceRef string) *flow.Submission {
	return &flow.Submission{
		SessionReferenceNumber: m.SessionReferenceNumber,
		InvoiceReferenceNumber: invoiceRef,
		InvoiceHash:            e.InvoiceHash,
		InvoiceSize:            e.InvoiceSize,
		InvoiceNumber:          e.InvoiceNumber,
		IssueDate:              e.IssueDate,
		SentAt:                 m.OpenedAt,
	}
}

// byFileName indexes the entries by file name.
func (m *manifest) byFileName() map[string]*manifestEntry {
	idx := make(map[string]*manifestEntry, len(m.Invoices))
	for i := range m.Invoices {
		idx[m.Invoices[i].FileName] = &m.Invoices[i]
	}
	return idx
}

// manifestKey is where a session's manifest is stored.
func (h *handler) manifestKey(sessionRef string) string {
	return h.cfg.ManifestPrefix + sessionRef + ".json"
}

func (h *handler) putManifest(ctx context.Context, m *manifest) (string, error) {
	key := h.manifestKey(m.SessionReferenceNumber)
	if err := h.store(ctx, key, m); err != nil {
		return "", fmt.Errorf("store the manifest of batch session %s: %w", m.SessionReferenceNumber, err)
	}
	return key, nil
}

// store writes a JSON document to the bucket under key (any prefix; results go through
// h.results).
func (h *handler) store(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return h.putBytes(ctx, key, "application/json", b)
}

func (h *handler) loadManifest(ctx context.Context, key string) (*manifest, error) {
	out, err := h.objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(h.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, fmt.Errorf("read manifest s3://%s/%s: %w", h.cfg.Bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest s3://%s/%s: %w", h.cfg.Bucket, key, err)
	}
	if len(b) > maxManifestBytes {
		return nil, fmt.Errorf("manifest s3://%s/%s is over %d bytes", h.cfg.Bucket, key, maxManifestBytes)
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode manifest s3://%s/%s: %w", h.cfg.Bucket, key, err)
	}
	return &m, nil
}
