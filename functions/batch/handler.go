package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// stage names this step in the reasons it records.
const stage = "batch"

// objectStore lists, reads and writes the invoice bucket.
type objectStore interface {
	ListObjectVersions(ctx context.Context, in *s3.ListObjectVersionsInput, optFns ...func(*s3.Options)) (*s3.ListObjectVersionsOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// invoiceLedger is the part of the ledger the handler uses.
type invoiceLedger interface {
	Get(ctx context.Context, id string) (*ledger.Invoice, error)
	Create(ctx context.Context, inv ledger.Invoice, opts *ledger.CreateOptions) (*ledger.Invoice, error)
	Transition(ctx context.Context, id string, ch ledger.Change) (*ledger.Invoice, bool, error)
}

// eventPublisher announces outcomes on EventBridge.
type eventPublisher interface {
	Publish(ctx context.Context, e ledger.Event) error
}

// batchClient is the part of the KSeF client the handler uses. Its calls take the access token
// from the secrets store.
type batchClient interface {
	OpenBatchSession(ctx context.Context, form ksef.FormCode, pkg *ksef.BatchPackage, opts *ksef.BatchSessionOptions) (*ksef.BatchSession, error)
	UploadBatchParts(ctx context.Context, session *ksef.BatchSession, pkg *ksef.BatchPackage, concurrency int) error
	CloseBatchSession(ctx context.Context, sessionRef string) error
	SessionStatus(ctx context.Context, sessionRef string) (*ksef.SessionStatus, error)
	SessionInvoices(ctx context.Context, sessionRef string, opts *ksef.ListOptions) (*ksef.InvoicePage, error)
	InvoiceUPOByKSeFNumber(ctx context.Context, sessionRef, ksefNumber string) (*ksef.Document, error)
	Download(ctx context.Context, url string) (*ksef.Document, error)
	QRBaseURL() string
}

type clientFor func(ctx context.Context, nip string) (batchClient, error)

// tokenStore is the part of the secrets store the handler uses.
type tokenStore interface {
	DropAccessToken(ctx context.Context, nip string) error
}

type handler struct {
	objects objectStore
	ledger  invoiceLedger
	events  eventPublisher // nil: no events (EVENT_BUS_NAME unset)
	clients clientFor
	tokens  tokenStore
	results *results.Store
	cfg     config
	now     func() time.Time
	log     *slog.Logger

	manifests manifestCache // the manifests this container polled last (poll.go)
}

// Handle runs one action of a scheduled batch run: "send" takes the invoices waiting under the
// batch prefix in and sends them in batch sessions, "poll" makes one status call for a session
// and, once KSeF has processed it, stores one page of its invoices' outcomes, and "release"
// gives up, after a failure, the invoices the run took in but did not send. Its output is a
// flow.BatchSendResult or a flow.BatchPollResult; still processing is a result, not an error.
func (h *handler) Handle(ctx context.Context, in flow.BatchRequest) (any, error) {
	var (
		out any
		err error
	)
	switch {
	case !ksef.ValidNIP(in.NIP):
		err = &flow.BadInputError{Reason: flow.Reason{Stage: stage, Message: fmt.Sprintf("invalid NIP %q", in.NIP)}}
	case in.NIP != h.cfg.NIP:
		// Its secrets, and their IAM grants, are the stack's NIP's.
		err = &flow.BadInputError{Reason: flow.Reason{Stage: stage, Message: fmt.Sprintf("this stack sends for NIP %s only, not %s", h.cfg.NIP, in.NIP)}}
	case in.ExecutionName == "":
		err = &flow.BadInputError{Reason: flow.Reason{Stage: stage, Message: "a batch action needs the run's execution name"}}
	case in.Action == flow.BatchSend:
		out, err = h.send(ctx, in)
	case in.Action == flow.BatchPoll:
		out, err = h.poll(ctx, in)
	case in.Action == flow.BatchRelease:
		out, err = h.release(ctx, in)
	default:
		err = &flow.BadInputError{Reason: flow.Reason{Stage: stage, Message: fmt.Sprintf("unknown batch action %q", in.Action)}}
	}
	if err != nil {
		err = flow.Classify(stage, err)
		h.log.ErrorContext(ctx, "batch action failed", slog.String("action", in.Action), slog.String("nip", in.NIP),
			slog.String("executionName", in.ExecutionName), slog.String("error", err.Error()))
		return nil, err
	}
	return out, nil
}

// otherNIP returns the NIP that the first folder under the batch prefix names when it is not
// the stack's (batch/5265877635/invoice.xml), else "", as for uploads to the inbox. The stack
// sends for its own NIP only: such an invoice is refused with a report.
func (h *handler) otherNIP(key string) string {
	first, _, nested := strings.Cut(strings.TrimPrefix(key, h.cfg.BatchPrefix), "/")
	if nested && ksef.ValidNIP(first) && first != h.cfg.NIP {
		return first
	}
	return ""
}

// waiting reports whether key names an invoice waiting for a run: an .xml object under the
// batch prefix, outside the manifests.
func (h *handler) waiting(key string) bool {
	return strings.HasPrefix(key, h.cfg.BatchPrefix) && !strings.HasPrefix(key, h.cfg.ManifestPrefix) &&
		strings.EqualFold(pathExt(key), ".xml")
}

func pathExt(key string) string {
	if i := strings.LastIndexByte(key, '.'); i >= 0 && !strings.Contains(key[i:], "/") {
		return key[i:]
	}
	return ""
}

// maxInvoiceBytes is the largest invoice KSeF accepts in a batch (3 MB with attachments;
// InspectInvoice applies the exact limit). A larger object is not read.
const maxInvoiceBytes = ksef.DefaultMaxInvoiceSizeWithAttachment

var errTooLarge = errors.New("invoice too large")

// read fetches an exact object version, refusing more than KSeF could accept.
func (h *handler) read(ctx context.Context, obj flow.S3Object) ([]byte, error) {
	out, err := h.objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key), VersionId: aws.String(obj.VersionID)})
	if err != nil {
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

func (h *handler) putBytes(ctx context.Context, key, contentType string, body []byte) error {
	_, err := h.objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(h.cfg.Bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String(contentType),
	})
	if err != nil {
		return fmt.Errorf("store s3://%s/%s: %w", h.cfg.Bucket, key, err)
	}
	return nil
}

// record writes an outcome to the ledger and announces it, after the documents are stored in S3
// (so that whoever reads the ledger or gets the event finds them), as the poll function does.
// An error makes the state machine retry the step; the ledger then finds the outcome already
// recorded and the event is published again (events are delivered at least once). An outcome
// the ledger refuses (a late failure of an invoice already accepted) is neither recorded nor
// announced.
func (h *handler) record(ctx context.Context, id string, ch ledger.Change) error {
	cur, changed, err := h.ledger.Transition(ctx, id, ch)
	if err != nil {
		return fmt.Errorf("record %s in the ledger: %w", ch.Status, err)
	}
	if !changed && cur.Status != ch.Status {
		h.log.WarnContext(ctx, "ledger keeps the invoice's status; outcome not recorded", slog.String("invoiceId", id),
			slog.String("status", string(cur.Status)), slog.String("outcome", string(ch.Status)))
		return nil
	}
	return h.announce(ctx, cur)
}

// announce publishes the invoice's final status, when events are configured.
func (h *handler) announce(ctx context.Context, inv *ledger.Invoice) error {
	if h.events == nil {
		return nil
	}
	if err := h.events.Publish(ctx, ledger.EventOf(inv, h.now())); err != nil {
		return fmt.Errorf("announce %s of %s: %w", inv.Status, inv.ID, err)
	}
	return nil
}

// refused handles KSeF refusing the access token (HTTP 401): the token is dropped, here and in
// the state secret, so that the next call refreshes it. Sending goes back to authentication
// (AuthFailedError, once); a poll is retried, since going back would send again.
func (h *handler) refused(ctx context.Context, nip string, err error, reauthenticate bool) error {
	if derr := h.tokens.DropAccessToken(ctx, nip); derr != nil {
		h.log.WarnContext(ctx, "could not drop refused access token", slog.String("nip", nip), slog.String("error", derr.Error()))
	}
	r := flow.Reason{Stage: stage, Code: http.StatusUnauthorized}
	if reauthenticate {
		r.Message = "KSeF refused the access token; authenticating again"
		return &flow.AuthFailedError{Reason: r, Err: err}
	}
	r.Message = "KSeF refused the access token; polling again with a renewed one"
	return &flow.RetryableError{Reason: r, Err: err}
}

// each runs fn for every item, workers at a time, and returns the first error (the calls still
// running see their context cancelled; no new ones start).
func each[T any](ctx context.Context, workers int, items []T, fn func(ctx context.Context, item T) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(max(workers, 1))
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		g.Go(func() error { return fn(ctx, it) })
	}
	return g.Wait()
}

// report stores why an invoice was not accepted and records the outcome. The report is written
// first: a reader of the ledger or of the event finds it.
func (h *handler) report(ctx context.Context, inv *ledger.Invoice, status ledger.Status, errorName string, reason flow.Reason, sub *flow.Submission) error {
	key := h.results.Key(inv.Object, results.ErrorSuffix)
	rep := results.Report{
		Status:     string(status),
		Error:      errorName,
		Reason:     reason,
		NIP:        inv.NIP,
		Invoice:    inv.Object,
		InvoiceID:  inv.ID,
		Submission: sub,
		RecordedAt: h.now().UTC(),
	}
	if err := h.results.PutJSON(ctx, key, rep); err != nil {
		return err
	}
	ch := ledger.Change{Status: status, NIP: inv.NIP, Object: inv.Object, Reason: ledger.ReasonFrom(reason), ResultKey: key}
	if sub != nil {
		ch.SessionReferenceNumber, ch.InvoiceReferenceNumber = sub.SessionReferenceNumber, sub.InvoiceReferenceNumber
		ch.InvoiceHash, ch.InvoiceNumber = sub.InvoiceHash, sub.InvoiceNumber
	}
	return h.record(ctx, inv.ID, ch)
}
