package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

const (
	// maxBodyBytes is the largest invoice the API takes: KSeF's limit for an invoice without
	// attachments. Online sessions take no attachments (those of up to 3 MB go through batch
	// sessions), so the larger limit never applies here.
	maxBodyBytes = ksef.DefaultMaxInvoiceSize
	// maxKeyLength is the longest Idempotency-Key accepted.
	maxKeyLength = 255
	// objectPrefix is where the API stores invoices: outside the inbox prefix, so that storing
	// one does not also start the S3 path.
	objectPrefix = "api/"
	// problemAttachment is the invalid_invoice problem of an invoice with a Zalacznik.
	problemAttachment = "attachment"
)

// submission is the 202 body.
type submission struct {
	InvoiceID string `json:"invoiceId"`
	Status    string `json:"status"`
	StatusURL string `json:"statusUrl"`
}

// submit answers POST /invoices.
func (h *handler) submit(ctx context.Context, req *events.APIGatewayV2HTTPRequest) (*reply, error) {
	if err := checkMediaType(req); err != nil {
		return nil, err
	}
	body, err := requestBody(req)
	if err != nil {
		return nil, err
	}
	key, keyed, err := idempotencyKey(req)
	if err != nil {
		return nil, err
	}
	info, err := ksef.InspectInvoice(body, ksef.InspectOptions{
		ContextNIP: h.nip, Now: h.now(), MaxSize: maxBodyBytes, MaxSizeWithAttachment: maxBodyBytes,
	})
	if err != nil {
		var invErr *ksef.InvoiceError
		if !errors.As(err, &invErr) {
			return nil, fmt.Errorf("inspect invoice: %w", err)
		}
		return nil, &apiError{Status: http.StatusBadRequest, Code: codeInvalidInvoice, Problem: string(invErr.Problem),
			Message: strings.TrimPrefix(invErr.Error(), "ksef: ")}
	}
	if info.HasAttachment {
		return nil, &apiError{Status: http.StatusBadRequest, Code: codeInvalidInvoice, Problem: problemAttachment,
			Message: "invalid invoice: it has an attachment (Zalacznik), which KSeF takes only in batch sessions"}
	}

	id := ledger.RequestID(h.nip, key)
	opts := &ledger.CreateOptions{IdempotencyKey: key, RequestHash: info.Hash}
	if !keyed {
		if id, err = ledger.NewID(ledger.SourceAPI); err != nil {
			return nil, err
		}
		opts = nil
	}
	inv, err := h.ledger.Create(ctx, ledger.Invoice{
		ID:            id,
		NIP:           h.nip,
		Source:        ledger.SourceAPI,
		Object:        flow.S3Object{Bucket: h.bucket, Key: objectPrefix + id + ".xml"},
		InvoiceHash:   info.Hash,
		InvoiceNumber: info.Number,
		Status:        ledger.StatusReceived,
		ExecutionName: id,
	}, opts)
	var conflict *ledger.ConflictError
	switch {
	case err == nil:
	case errors.As(err, &conflict) && conflict.Kind == ledger.ConflictContent:
		return nil, h.duplicate(ctx, req, conflict, body)
	case errors.As(err, &conflict):
		// The key (or, for want of its claim, the id derived from it) was used before: by this
		// very request if the body is the same (a retry), which then resumes the first
		// request's work where it stopped.
		same := conflict.RequestHash == info.Hash
		if conflict.Kind == ledger.ConflictID {
			same = conflict.Existing != nil && conflict.Existing.InvoiceHash == info.Hash
		}
		if !same {
			return nil, &apiError{Status: http.StatusConflict, Code: codeKeyReused, InvoiceID: conflict.InvoiceID,
				Message: "this Idempotency-Key was used before with another invoice; use a new key for a new invoice"}
		}
		if conflict.Existing == nil {
			return nil, fmt.Errorf("record invoice %s: %w (and the invoice could not be read)", id, err)
		}
		inv = conflict.Existing
	default:
		return nil, fmt.Errorf("record invoice %s: %w", id, err)
	}

	if inv.Status == ledger.StatusReceived {
		if err := h.start(ctx, inv, body); err != nil {
			return nil, err
		}
	}
	u := statusURL(req, "/invoices", inv.ID)
	return &reply{
		status:    http.StatusAccepted,
		header:    map[string]string{"Location": u},
		body:      submission{InvoiceID: inv.ID, Status: apiPending, StatusURL: u},
		invoiceID: inv.ID,
	}, nil
}

// duplicate answers a request whose invoice was taken in before, byte for byte, as another
// invoice. If that invoice came through the API and is still waiting for its execution to start,
// its request stopped half-way (before the object was stored or the execution started): with
// the same bytes at hand, the work is finished here, so that it does not stay pending for ever.
func (h *handler) duplicate(ctx context.Context, req *events.APIGatewayV2HTTPRequest, conflict *ledger.ConflictError, body []byte) error {
	id := conflict.InvoiceID
	if orig := conflict.Existing; orig != nil && orig.Source == ledger.SourceAPI && orig.Status == ledger.StatusReceived &&
		orig.Object.Bucket == h.bucket && orig.Object.Key == objectPrefix+orig.ID+".xml" {
		if err := h.start(ctx, orig, body); err != nil {
			return err
		}
	}
	return &apiError{Status: http.StatusConflict, Code: codeDuplicateInvoice, InvoiceID: id, StatusURL: statusURL(req, "/invoices", id),
		Message: "this invoice was taken in before, as " + id}
}

// start stores the invoice and starts its execution. Both steps are idempotent, so that a
// retried request repeats them safely: the object is written only if absent, and Step
// Functions answers a StartExecution with the name and input of a running execution with that
// execution, or with ExecutionAlreadyExists once it has finished (the input is then compared).
func (h *handler) start(ctx context.Context, inv *ledger.Invoice, body []byte) error {
	_, err := h.objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(inv.Object.Bucket),
		Key:           aws.String(inv.Object.Key),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/xml"),
		IfNoneMatch:   aws.String("*"),
		Metadata:      map[string]string{"invoice-id": inv.ID, "source": string(ledger.SourceAPI)},
	})
	var apiErr smithy.APIError
	switch {
	case err == nil:
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "PreconditionFailed":
		// Stored by an earlier request for the same invoice id: the same bytes, since the
		// ledger tied the id to this content hash.
	case errors.As(err, &apiErr) && apiErr.ErrorCode() == "ConditionalRequestConflict":
		// Another request is storing it right now; answer 503 so that the client retries.
		return &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable, RetryAfter: 1, InvoiceID: inv.ID,
			Message: "the invoice is being stored by a concurrent request; retry with the same Idempotency-Key", Err: err}
	default:
		return fmt.Errorf("store invoice s3://%s/%s: %w", inv.Object.Bucket, inv.Object.Key, err)
	}

	input, err := json.Marshal(flow.Input{
		NIP:       inv.NIP,
		Invoice:   flow.S3Object{Bucket: inv.Object.Bucket, Key: inv.Object.Key},
		InvoiceID: inv.ID,
		Source:    string(ledger.SourceAPI),
	})
	if err != nil {
		return fmt.Errorf("encode execution input: %w", err)
	}
	_, err = h.executions.StartExecution(ctx, &sfn.StartExecutionInput{
		StateMachineArn: aws.String(h.stateMachine),
		Name:            aws.String(inv.ID),
		Input:           aws.String(string(input)),
	})
	var exists *sfntypes.ExecutionAlreadyExists
	if !errors.As(err, &exists) {
		if err != nil {
			return fmt.Errorf("start execution %s: %w", inv.ID, err)
		}
		return nil
	}
	// Step Functions says so for a finished execution of the name, whatever its input, and for
	// a running one with another input. The first means the invoice's execution ran (and the
	// ledger status it sets was not written, or not yet seen); the second would be a bug.
	arn := strings.Replace(h.stateMachine, ":stateMachine:", ":execution:", 1) + ":" + inv.ID
	desc, err := h.executions.DescribeExecution(ctx, &sfn.DescribeExecutionInput{ExecutionArn: aws.String(arn)})
	if err != nil {
		return fmt.Errorf("describe execution %s: %w", inv.ID, err)
	}
	if !sameJSON(aws.ToString(desc.Input), string(input)) {
		return fmt.Errorf("execution %s exists with another input than the invoice's ledger record", inv.ID)
	}
	h.log.InfoContext(ctx, "execution already exists", slog.String("invoiceId", inv.ID), slog.String("executionStatus", string(desc.Status)))
	return nil
}

// sameJSON reports whether two JSON documents have the same value.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// checkMediaType accepts application/xml and text/xml with no charset or charset=utf-8 (KSeF
// takes UTF-8 only), and no Content-Encoding.
func checkMediaType(req *events.APIGatewayV2HTTPRequest) error {
	unsupported := func(msg string) error {
		return &apiError{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMediaType, Message: msg}
	}
	ct, ok := header(req, "content-type")
	if !ok || strings.TrimSpace(ct) == "" {
		return unsupported("Content-Type is missing; send the invoice as application/xml")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/xml" && mt != "text/xml") {
		return unsupported("Content-Type must be application/xml or text/xml")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return unsupported("the invoice must be UTF-8 (charset=utf-8)")
	}
	if ce, ok := header(req, "content-encoding"); ok && !strings.EqualFold(strings.TrimSpace(ce), "identity") && strings.TrimSpace(ce) != "" {
		return unsupported("Content-Encoding is not supported; send the invoice uncompressed")
	}
	return nil
}

// requestBody returns the request's body, decoded if API Gateway Base64-encoded it, refusing
// empty and oversized bodies (before decoding, when the encoded size already says so).
func requestBody(req *events.APIGatewayV2HTTPRequest) ([]byte, error) {
	tooLarge := &apiError{Status: http.StatusRequestEntityTooLarge, Code: codePayloadTooLarge,
		Message: fmt.Sprintf("the invoice is over %d bytes, KSeF's limit for invoices without attachments", maxBodyBytes)}
	var body []byte
	if req.IsBase64Encoded {
		if base64.StdEncoding.DecodedLen(len(req.Body)) > maxBodyBytes+2 { // DecodedLen overestimates by up to 2
			return nil, tooLarge
		}
		b, err := base64.StdEncoding.DecodeString(req.Body)
		if err != nil {
			return nil, fmt.Errorf("decode Base64 body from API Gateway: %w", err)
		}
		body = b
	} else {
		if len(req.Body) > maxBodyBytes {
			return nil, tooLarge
		}
		body = []byte(req.Body)
	}
	switch {
	case len(body) == 0:
		return nil, &apiError{Status: http.StatusBadRequest, Code: codeEmptyBody, Message: "the request has no body; send the invoice XML"}
	case len(body) > maxBodyBytes:
		return nil, tooLarge
	}
	return body, nil
}

// idempotencyKey returns the Idempotency-Key header, if there is one: 1 to 255 printable ASCII
// characters.
func idempotencyKey(req *events.APIGatewayV2HTTPRequest) (string, bool, error) {
	key, ok := header(req, "idempotency-key")
	if !ok {
		return "", false, nil
	}
	invalid := &apiError{Status: http.StatusBadRequest, Code: codeInvalidKey,
		Message: fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", maxKeyLength)}
	if key == "" || len(key) > maxKeyLength {
		return "", false, invalid
	}
	for i := range len(key) {
		if key[i] < 0x20 || key[i] > 0x7e {
			return "", false, invalid
		}
	}
	return key, true, nil
}
