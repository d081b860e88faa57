package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// maxInvoiceBytes is the largest invoice KSeF accepts at all (3 MB, with attachments; the send
// step applies the exact limit of an online session). A larger object is not read.
const maxInvoiceBytes = 3_000_000

// stage names this step in the reasons it records.
const stage = "ingest"

// objectStore reads uploaded invoices and writes reports next to them.
type objectStore interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// invoiceLedger is the part of the ledger the handler uses.
type invoiceLedger interface {
	Get(ctx context.Context, id string) (*ledger.Invoice, error)
	Create(ctx context.Context, inv ledger.Invoice, opts *ledger.CreateOptions) (*ledger.Invoice, error)
}

// executions starts the state machine.
type executions interface {
	StartExecution(ctx context.Context, in *sfn.StartExecutionInput, optFns ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
	DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

// eventPublisher announces invoices refused here (InvoiceRejected, status invalid).
type eventPublisher interface {
	Publish(ctx context.Context, e ledger.Event) error
}

type handler struct {
	objects         objectStore
	ledger          invoiceLedger
	executions      executions
	events          eventPublisher // nil: no events (EVENT_BUS_NAME unset)
	bucket          string
	inboxPrefix     string
	resultPrefix    string
	nip             string // the stack's NIP (KSEF_NIP), the only one it sends for
	stateMachineARN string
	now             func() time.Time
	log             *slog.Logger
}

// objectCreated is the detail of the "Object Created" event S3 sends to EventBridge
// (https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html).
type objectCreated struct {
	Version string `json:"version"`
	Bucket  struct {
		Name string `json:"name"`
	} `json:"bucket"`
	Object struct {
		Key       string `json:"key"` // URL-encoded, as in every S3 event
		Size      int64  `json:"size"`
		ETag      string `json:"etag"`
		VersionID string `json:"version-id"`
		Sequencer string `json:"sequencer"`
	} `json:"object"`
	RequestID string `json:"request-id"`
	Requester string `json:"requester"`
	Reason    string `json:"reason"` // PutObject, POST Object, CopyObject, CompleteMultipartUpload
}

// Actions of an outcome.
const (
	actionStarted          = "started"           // the invoice is recorded and its execution started
	actionAlreadyStarted   = "already-started"   // a repeated delivery: the execution already exists
	actionAlreadyProcessed = "already-processed" // a repeated delivery: the execution is past sending
	actionDuplicateUpload  = "duplicate-upload"  // the same bytes were taken in before: no execution
	actionInvalid          = "invalid"           // refused before any execution; a report is stored
	actionIgnored          = "ignored"           // not an invoice upload of this stack
)

// outcome is what Handle did with an event. EventBridge discards it; it is logged and tested.
type outcome struct {
	Action       string `json:"action"`
	InvoiceID    string `json:"invoiceId,omitempty"`
	DuplicateOf  string `json:"duplicateOf,omitempty"`
	ExecutionARN string `json:"executionArn,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// Handle takes one uploaded invoice in: it records the object version in the ledger, under an
// id derived from its bucket, key and version, and starts the execution of that name. A second
// delivery of the event finds the record and starts nothing new; the same bytes uploaded again
// are recorded as a duplicate upload pointing at the original, with no execution and, under
// another key than the original's, a notice next to them. An object that cannot be an invoice
// of this stack (outside the inbox, not .xml) is ignored; one that cannot be sent (too large,
// in a folder named after another NIP) is recorded as invalid with a report.
// Transient failures are returned as errors, so that the event is retried and, in the end, kept
// in the dead-letter queue.
func (h *handler) Handle(ctx context.Context, ev events.EventBridgeEvent) (outcome, error) {
	out, err := h.handle(ctx, ev)
	if err != nil {
		h.log.ErrorContext(ctx, "ingest failed", slog.String("eventId", ev.ID), slog.String("invoiceId", out.InvoiceID), slog.String("error", err.Error()))
		return out, err
	}
	h.log.InfoContext(ctx, "upload handled", slog.String("eventId", ev.ID), slog.String("action", out.Action),
		slog.String("invoiceId", out.InvoiceID), slog.String("duplicateOf", out.DuplicateOf), slog.String("reason", out.Reason))
	return out, nil
}

func (h *handler) handle(ctx context.Context, ev events.EventBridgeEvent) (outcome, error) {
	obj, size, why := h.object(ev)
	if why != "" {
		return outcome{Action: actionIgnored, Reason: why}, nil
	}
	id := ledger.ObjectID(obj.Bucket, obj.Key, obj.VersionID)
	inv, err := h.ledger.Get(ctx, id)
	switch {
	case err == nil:
		return h.finish(ctx, inv, true)
	case !errors.Is(err, ledger.ErrNotFound):
		return outcome{InvoiceID: id}, err
	}
	inv, err = h.take(ctx, id, obj, size)
	if err != nil {
		return outcome{InvoiceID: id}, err
	}
	return h.finish(ctx, inv, false)
}

// object checks that the event announces an invoice upload to this stack's inbox and returns
// the object, its size, or why the event is ignored.
func (h *handler) object(ev events.EventBridgeEvent) (flow.S3Object, int64, string) {
	if ev.Source != "aws.s3" || ev.DetailType != "Object Created" {
		return flow.S3Object{}, 0, fmt.Sprintf("not an S3 Object Created event (%s, %s)", ev.Source, ev.DetailType)
	}
	var d objectCreated
	if err := json.Unmarshal(ev.Detail, &d); err != nil {
		return flow.S3Object{}, 0, "malformed event detail: " + err.Error()
	}
	if d.Bucket.Name != h.bucket {
		return flow.S3Object{}, 0, fmt.Sprintf("bucket %q is not the invoice bucket", d.Bucket.Name)
	}
	// S3 URL-encodes keys in its events ("faktura 1.xml" arrives as "faktura+1.xml").
	key, err := url.QueryUnescape(d.Object.Key)
	if err != nil {
		return flow.S3Object{}, 0, fmt.Sprintf("key %q is not URL-encoded as S3 encodes keys: %v", d.Object.Key, err)
	}
	switch {
	case !strings.HasPrefix(key, h.inboxPrefix):
		return flow.S3Object{}, 0, fmt.Sprintf("key %q is outside the inbox %q", key, h.inboxPrefix)
	case !strings.EqualFold(pathExt(key), ".xml"):
		return flow.S3Object{}, 0, fmt.Sprintf("key %q does not end in .xml", key)
	}
	return flow.S3Object{Bucket: d.Bucket.Name, Key: key, VersionID: d.Object.VersionID}, d.Object.Size, ""
}

func pathExt(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 && !strings.Contains(key[i:], "/") {
		return key[i:]
	}
	return ""
}

// otherNIP returns the NIP that the upload's first folder under the inbox names when it is not
// the stack's (inbox/5265877635/invoice.xml), else "". The stack sends for its own NIP only: its
// secrets and their IAM grants are that NIP's.
func (h *handler) otherNIP(key string) string {
	first, _, nested := strings.Cut(strings.TrimPrefix(key, h.inboxPrefix), "/")
	if nested && ksef.ValidNIP(first) && first != h.nip {
		return first
	}
	return ""
}

// take reads a new upload and records it: received (to be sent), a duplicate upload of content
// already taken in, or invalid.
func (h *handler) take(ctx context.Context, id string, obj flow.S3Object, size int64) (*ledger.Invoice, error) {
	base := ledger.Invoice{ID: id, NIP: h.nip, Source: ledger.SourceS3, Object: obj}
	switch other := h.otherNIP(obj.Key); {
	case other != "":
		base.NIP = other // what the upload asked for, in the report and the event
		return h.refuse(ctx, base, fmt.Sprintf("this stack sends for NIP %s only, and the folder %s%s/ names NIP %s: "+
			"deploy a stack for NIP %s, or upload invoices of NIP %s outside such a folder", h.nip, h.inboxPrefix, other, other, other, h.nip))
	case size > maxInvoiceBytes:
		return h.refuse(ctx, base, fmt.Sprintf("invoice is %d bytes; KSeF accepts at most %d", size, maxInvoiceBytes))
	}
	body, err := h.read(ctx, obj)
	if errors.Is(err, errTooLarge) {
		return h.refuse(ctx, base, err.Error())
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	base.InvoiceHash = base64.StdEncoding.EncodeToString(sum[:])

	inv := base
	inv.Status, inv.ExecutionName = ledger.StatusReceived, id
	created, err := h.ledger.Create(ctx, inv, nil)
	var conflict *ledger.ConflictError
	switch {
	case err == nil:
		return created, nil
	case !errors.As(err, &conflict):
		return nil, err
	case conflict.Kind == ledger.ConflictID: // a concurrent delivery of the same event
		return h.recorded(ctx, conflict)
	case conflict.Kind != ledger.ConflictContent:
		return nil, err
	}
	orig := conflict.Existing
	if orig == nil {
		if orig, err = h.ledger.Get(ctx, conflict.InvoiceID); err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return nil, fmt.Errorf("read %s, which took this content in: %w", conflict.InvoiceID, err)
		}
	}
	dup := base
	dup.Status, dup.DuplicateOf = ledger.StatusDuplicateUpload, conflict.InvoiceID
	if orig != nil && orig.Status == ledger.StatusAccepted {
		dup.KSeFNumber = orig.KSeFNumber
	}
	if !sameKey(orig, obj) {
		dup.ResultKey = h.resultPrefix + obj.Key + ".result.json" // the notice
	}
	return h.create(ctx, dup)
}

// sameKey reports whether the original invoice is an earlier version of the object obj: what
// is stored next to that key (the result, once the original has one) describes the same bytes,
// and must not be replaced by a notice.
func sameKey(orig *ledger.Invoice, obj flow.S3Object) bool {
	return orig != nil && orig.Object.Bucket == obj.Bucket && orig.Object.Key == obj.Key
}

// refuse records an upload that cannot be sent as invalid.
func (h *handler) refuse(ctx context.Context, inv ledger.Invoice, msg string) (*ledger.Invoice, error) {
	inv.Status = ledger.StatusInvalid
	inv.Reason = &ledger.Reason{Stage: stage, Message: msg}
	inv.ResultKey = h.resultPrefix + inv.Object.Key + ".error.json"
	return h.create(ctx, inv)
}

// create records an invoice that claims no content (invalid, duplicate upload); a concurrent
// delivery may have recorded it first.
func (h *handler) create(ctx context.Context, inv ledger.Invoice) (*ledger.Invoice, error) {
	created, err := h.ledger.Create(ctx, inv, nil)
	var conflict *ledger.ConflictError
	if errors.As(err, &conflict) && conflict.Kind == ledger.ConflictID {
		return h.recorded(ctx, conflict)
	}
	return created, err
}

func (h *handler) recorded(ctx context.Context, c *ledger.ConflictError) (*ledger.Invoice, error) {
	if c.Existing != nil {
		return c.Existing, nil
	}
	return h.ledger.Get(ctx, c.InvoiceID)
}

var errTooLarge = errors.New("invoice too large")

// read fetches the exact object version, refusing more than KSeF could accept.
func (h *handler) read(ctx context.Context, obj flow.S3Object) ([]byte, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	out, err := h.objects.GetObject(ctx, in)
	if err != nil {
		// A version that is gone (deleted for good) or a key we decoded wrongly: an error, so
		// that the event ends in the dead-letter queue instead of vanishing.
		return nil, fmt.Errorf("read s3://%s/%s (version %q): %w", obj.Bucket, obj.Key, obj.VersionID, err)
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > maxInvoiceBytes {
		return nil, fmt.Errorf("%w: %d bytes; KSeF accepts at most %d", errTooLarge, n, maxInvoiceBytes)
	}
	body, err := io.ReadAll(io.LimitReader(out.Body, maxInvoiceBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", obj.Bucket, obj.Key, err)
	}
	if len(body) > maxInvoiceBytes {
		return nil, fmt.Errorf("%w: over %d bytes", errTooLarge, maxInvoiceBytes)
	}
	return body, nil
}

// finish does what the invoice's record asks for. It runs for a new record and again for every
// repeated delivery, so a delivery that failed half-way is completed by the next one.
func (h *handler) finish(ctx context.Context, inv *ledger.Invoice, repeated bool) (outcome, error) {
	out := outcome{InvoiceID: inv.ID, DuplicateOf: inv.DuplicateOf}
	switch {
	case inv.Status == ledger.StatusReceived:
		return h.start(ctx, inv, repeated)
	case inv.Status == ledger.StatusDuplicateUpload:
		out.Action = actionDuplicateUpload
		var err error
		out.Reason, err = h.notice(ctx, inv)
		return out, err
	case inv.Status == ledger.StatusInvalid && inv.Reason != nil && inv.Reason.Stage == stage:
		out.Action, out.Reason = actionInvalid, inv.Reason.Message
		return out, h.report(ctx, inv)
	}
	out.Action, out.Reason = actionAlreadyProcessed, "invoice is "+string(inv.Status)
	return out, nil
}

// start starts the invoice's execution, named after the invoice. Step Functions answers a
// repeated start of a running execution with the same name and input as the first, and
// ExecutionAlreadyExists once it has ended; the input is then compared, because another input
// under the same name would be a bug.
func (h *handler) start(ctx context.Context, inv *ledger.Invoice, repeated bool) (outcome, error) {
	out := outcome{Action: actionStarted, InvoiceID: inv.ID}
	if repeated {
		out.Action = actionAlreadyStarted
	}
	input, err := json.Marshal(flow.Input{NIP: inv.NIP, Invoice: inv.Object, InvoiceID: inv.ID, Source: string(inv.Source)})
	if err != nil {
		return out, fmt.Errorf("encode execution input: %w", err)
	}
	started, err := h.executions.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(h.stateMachineARN),
		Name:            aws.String(inv.ID),
		Input:           aws.String(string(input)),
	})
	if err == nil {
		out.ExecutionARN = aws.ToString(started.ExecutionArn)
		return out, nil
	}
	var exists *sfntypes.ExecutionAlreadyExists
	if !errors.As(err, &exists) {
		return out, fmt.Errorf("start execution %s: %w", inv.ID, err)
	}
	arn := executionARN(h.stateMachineARN, inv.ID)
	desc, err := h.executions.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		return out, fmt.Errorf("describe execution %s: %w", inv.ID, err)
	}
	if !sameJSON(aws.ToString(desc.Input), string(input)) {
		return out, fmt.Errorf("execution %s exists with another input than the invoice's record", inv.ID)
	}
	out.Action, out.ExecutionARN = actionAlreadyStarted, arn
	return out, nil
}

// executionARN is the ARN of the state machine's execution of that name.
func executionARN(stateMachineARN, name string) string {
	return strings.Replace(stateMachineARN, ":stateMachine:", ":execution:", 1) + ":" + name
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// report stores why an upload was refused and announces it.
func (h *handler) report(ctx context.Context, inv *ledger.Invoice) error {
	r := results.Report{
		Status:     string(ledger.StatusInvalid),
		Error:      "BadInputError",
		Reason:     flow.Reason{Stage: inv.Reason.Stage, Message: inv.Reason.Message, Code: inv.Reason.Code, Details: inv.Reason.Details},
		NIP:        inv.NIP,
		Invoice:    inv.Object,
		InvoiceID:  inv.ID,
		RecordedAt: inv.CreatedAt,
	}
	if err := h.putJSON(ctx, inv.ResultKey, r); err != nil {
		return err
	}
	if h.events == nil {
		return nil
	}
	if err := h.events.Publish(ctx, ledger.EventOf(inv, h.now())); err != nil {
		return fmt.Errorf("announce invalid upload: %w", err)
	}
	return nil
}

// notice stores the duplicate notice, with what is known of the original now, unless the
// original is an earlier version of the same key: then nothing is written (the original's
// result, there or to come, stays) and the returned reason says so.
func (h *handler) notice(ctx context.Context, inv *ledger.Invoice) (string, error) {
	orig, err := h.ledger.Get(ctx, inv.DuplicateOf)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return "", fmt.Errorf("read the original of %s: %w", inv.ID, err)
	}
	if inv.ResultKey == "" || sameKey(orig, inv.Object) {
		return "an earlier version of the same key, " + inv.DuplicateOf + ", took these bytes in: no notice replaces its result", nil
	}
	n := results.DuplicateNotice{
		Status:      string(ledger.StatusDuplicateUpload),
		NIP:         inv.NIP,
		Invoice:     inv.Object,
		InvoiceID:   inv.ID,
		InvoiceHash: inv.InvoiceHash,
		DuplicateOf: inv.DuplicateOf,
		KSeFNumber:  inv.KSeFNumber,
		Message:     "the same invoice content was already taken in as " + inv.DuplicateOf + "; this upload is not sent to KSeF",
		RecordedAt:  inv.CreatedAt,
	}
	if orig != nil {
		n.Original = &results.OriginalInvoice{Status: string(orig.Status), Invoice: orig.Object, ResultKey: orig.ResultKey}
		if orig.Status == ledger.StatusAccepted {
			n.KSeFNumber = orig.KSeFNumber
		}
	}
	return "", h.putJSON(ctx, inv.ResultKey, n)
}

func (h *handler) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	_, err = h.objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(h.bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(append(b, '\n')),
		ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("store s3://%s/%s: %w", h.bucket, key, err)
	}
	return nil
}
