package localrun

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

// Upload is an object uploaded to the inbox and the EventBridge event S3 sends about it.
type Upload struct {
	Bucket    string
	Key       string
	VersionID string
	// Event is S3's "Object Created" event for the object version, as the upload rule
	// delivers it to the ingest function.
	Event json.RawMessage
}

// UploadToInbox stores body in the invoice bucket as inbox/<name> (name may hold folders, such
// as "<NIP>/invoice.xml", and any character S3 allows) and returns the new version with its
// event. Nothing is delivered: see DeliverEvent and Ingest.
func (s *Stack) UploadToInbox(ctx context.Context, name string, body []byte) (*Upload, error) {
	if name == "" || strings.HasPrefix(name, "/") || name != path.Clean(name) {
		return nil, fmt.Errorf("localrun: invalid name %q under the inbox", name)
	}
	key := InboxPrefix + name
	out, err := s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.opts.Bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/xml"),
	})
	if err != nil {
		return nil, fmt.Errorf("upload s3://%s/%s: %w", s.opts.Bucket, key, err)
	}
	version := aws.ToString(out.VersionId)
	ev, err := ObjectCreatedEvent(s.opts.Bucket, key, version, strings.Trim(aws.ToString(out.ETag), `"`), int64(len(body)), time.Now())
	if err != nil {
		return nil, err
	}
	return &Upload{Bucket: s.opts.Bucket, Key: key, VersionID: version, Event: ev}, nil
}

var sequencer atomic.Uint64

// ObjectCreatedEvent returns the EventBridge event S3 sends when an object version is created
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html), with the key
// URL-encoded as S3 encodes keys in its events.
func ObjectCreatedEvent(bucket, key, versionID, etag string, size int64, at time.Time) ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("event id: %w", err)
	}
	h := hex.EncodeToString(id)
	object := map[string]any{
		"key":       EncodeEventKey(key),
		"size":      size,
		"etag":      etag,
		"sequencer": fmt.Sprintf("%016X", uint64(at.UnixNano())+sequencer.Add(1)),
	}
	if versionID != "" {
		object["version-id"] = versionID
	}
	b, err := json.Marshal(map[string]any{
		"version":     "0",
		"id":          h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:],
		"detail-type": "Object Created",
		"source":      "aws.s3",
		"account":     Account,
		"time":        at.UTC().Format(time.RFC3339),
		"region":      Region,
		"resources":   []string{"arn:aws:s3:::" + bucket},
		"detail": map[string]any{
			"version":           "0",
			"bucket":            map[string]any{"name": bucket},
			"object":            object,
			"request-id":        strings.ToUpper(h[:16]),
			"requester":         Account,
			"source-ip-address": "127.0.0.1",
			"reason":            "PutObject",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return b, nil
}

// EncodeEventKey URL-encodes an object key as S3 does in its event notifications: each path
// segment form-encoded ("faktura 1.xml" becomes "faktura+1.xml"), the slashes kept.
func EncodeEventKey(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.QueryEscape(p)
	}
	return strings.Join(parts, "/")
}

// IngestOutcome is what the ingest function did with an event.
type IngestOutcome struct {
	Action       string `json:"action"` // started, already-started, already-processed, duplicate-upload, invalid, ignored
	InvoiceID    string `json:"invoiceId"`
	DuplicateOf  string `json:"duplicateOf"`
	ExecutionARN string `json:"executionArn"`
	Reason       string `json:"reason"`
}

// DeliverEvent invokes the ingest function with an event through the Lambda router, as the
// upload rule does, and returns its outcome. A function error is an error.
func (s *Stack) DeliverEvent(ctx context.Context, event []byte) (*IngestOutcome, error) {
	if _, ok := s.opts.Functions[FunctionIngest]; !ok {
		return nil, fmt.Errorf("localrun: the stack has no %s function (Options.Functions)", FunctionIngest)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.routerURL+"/2015-03-31/functions/"+FunctionIngest+"/invocations", bytes.NewReader(event))
	if err != nil {
		return nil, fmt.Errorf("deliver event: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("deliver event: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPayload))
	if err != nil {
		return nil, fmt.Errorf("deliver event: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Amz-Function-Error") != "" {
		return nil, fmt.Errorf("deliver event: ingest failed (HTTP %d): %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	var out IngestOutcome
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("deliver event: ingest answered %s: %w", b, err)
	}
	return &out, nil
}

// Ingested is what became of one upload to the inbox.
type Ingested struct {
	Upload  *Upload
	Outcome *IngestOutcome
	// Result is the outcome of the execution the upload started (nil if it started none).
	Result *Result
	// Notice is what results/<key>.result.json holds after the upload: the notice written next to
	// a duplicate upload under another key, or the original's own result when the same bytes came
	// back to the same key (no notice replaces a result).
	Notice []byte
}

// Ingest is the S3 entry point end to end: it uploads body as inbox/<name>, delivers S3's
// Object Created event to the ingest function, and, if that started an execution, waits for it
// and reads back what the functions stored.
func (s *Stack) Ingest(ctx context.Context, name string, body []byte) (*Ingested, error) {
	up, err := s.UploadToInbox(ctx, name, body)
	if err != nil {
		return nil, err
	}
	out, err := s.DeliverEvent(ctx, up.Event)
	if err != nil {
		return nil, err
	}
	in := &Ingested{Upload: up, Outcome: out}
	switch out.Action {
	case "started", "already-started":
		exec, err := s.WaitExecution(ctx, out.InvoiceID)
		if err != nil {
			return nil, err
		}
		inv, err := s.LedgerInvoice(ctx, out.InvoiceID)
		if err != nil {
			return nil, err
		}
		if in.Result, err = s.collect(ctx, inv.NIP, up.Key, up.VersionID, exec); err != nil {
			return nil, err
		}
	case "duplicate-upload":
		if in.Notice, err = s.Object(ctx, ResultPrefix+up.Key+".result.json"); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// WaitExecution waits until the execution of that name, started through the local Step
// Functions API (by the ingest function), has ended and returns it.
func (s *Stack) WaitExecution(ctx context.Context, name string) (*Execution, error) {
	return s.sfn.wait(ctx, name)
}

// StartedExecutions returns the names of the executions started through the local Step
// Functions API, in order.
func (s *Stack) StartedExecutions() []string { return s.sfn.started() }

// LedgerInvoice reads an invoice's item in the ledger table (directly in moto, not counted).
func (s *Stack) LedgerInvoice(ctx context.Context, id string) (*ledger.Invoice, error) {
	return ledger.New(s.db, s.opts.LedgerTable).Get(ctx, id)
}

// PublishedEvents returns the events the functions have put on EventBridge so far.
func (s *Stack) PublishedEvents() []PublishedEvent { return s.counter.published() }
