package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

// answerReserve is the time kept, before the Lambda deadline, to answer with a JSON 503 when the
// services the API depends on are slow (past the deadline, API Gateway answers a bare 500).
const answerReserve = time.Second

// Routes, as API Gateway names them in routeKey.
const (
	routeSubmit = "POST /invoices"
	routeStatus = "GET /invoices/{id}"
)

// objectPutter stores invoices in S3.
type objectPutter interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// presigner makes pre-signed GET URLs (*s3.PresignClient).
type presigner interface {
	PresignGetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error)
}

// invoiceLedger is the part of the invoice ledger (*ledger.Ledger) the handler uses.
type invoiceLedger interface {
	Create(ctx context.Context, inv ledger.Invoice, opts *ledger.CreateOptions) (*ledger.Invoice, error)
	Get(ctx context.Context, id string) (*ledger.Invoice, error)
}

// executionStarter starts state machine executions, and reads one that exists already.
type executionStarter interface {
	StartExecution(ctx context.Context, in *sfn.StartExecutionInput, optFns ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error)
	DescribeExecution(ctx context.Context, in *sfn.DescribeExecutionInput, optFns ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error)
}

type handler struct {
	nip          string // the stack's NIP: every invoice's seller
	bucket       string
	stateMachine string // ARN
	ledger       invoiceLedger
	objects      objectPutter
	presign      presigner
	executions   executionStarter
	now          func() time.Time
	log          *slog.Logger
}

// Handle answers one API request. Every failure becomes a JSON error response, so the error it
// returns is always nil: API Gateway would turn a function error into a bare 500
// {"message":"Internal Server Error"}.
func (h *handler) Handle(ctx context.Context, req events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline.Add(-answerReserve))
		defer cancel()
	}
	var (
		out *reply
		err error
	)
	switch req.RouteKey {
	case routeSubmit:
		out, err = h.submit(ctx, &req)
	case routeStatus:
		out, err = h.status(ctx, &req)
	default:
		err = &apiError{Status: http.StatusNotFound, Code: codeNotFound, Message: "no such route"}
	}
	if err != nil {
		out = h.failure(err)
	}
	resp, encErr := out.response()
	if encErr != nil { // cannot happen: replies hold only strings, numbers, booleans and times
		err = errors.Join(err, encErr)
		out = h.failure(encErr)
		resp, _ = out.response()
	}
	h.logRequest(ctx, &req, out, err)
	return resp, nil
}

// reply is an answer before encoding: a status, extra headers and a value encoded as JSON.
type reply struct {
	status    int
	header    map[string]string
	body      any
	invoiceID string // for the log
	code      string // error code, for the log
}

func (r *reply) response() (events.APIGatewayV2HTTPResponse, error) {
	b, err := json.Marshal(r.body)
	if err != nil {
		return events.APIGatewayV2HTTPResponse{}, fmt.Errorf("encode response: %w", err)
	}
	headers := map[string]string{
		"Content-Type":           "application/json",
		"Cache-Control":          "no-store",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range r.header {
		headers[k] = v
	}
	return events.APIGatewayV2HTTPResponse{StatusCode: r.status, Headers: headers, Body: string(b)}, nil
}

// Error codes: the "code" of error responses, listed in api/openapi.yaml.
const (
	codeEmptyBody            = "empty_body"
	codeInvalidKey           = "invalid_idempotency_key"
	codeInvalidInvoice       = "invalid_invoice"
	codeKeyReused            = "idempotency_key_reused"
	codeDuplicateInvoice     = "duplicate_invoice"
	codePayloadTooLarge      = "payload_too_large"
	codeUnsupportedMediaType = "unsupported_media_type"
	codeInvalidID            = "invalid_id"
	codeNotFound             = "not_found"
	codeInternal             = "internal_error"
	codeUnavailable          = "unavailable"
)

// apiError is a failure answered with its Status and a JSON error body. Err, the cause, is
// logged and never sent.
type apiError struct {
	Status     int    `json:"-"`
	Code       string `json:"code"`
	Message    string `json:"message"`
	Problem    string `json:"problem,omitempty"`
	InvoiceID  string `json:"invoiceId,omitempty"`
	StatusURL  string `json:"statusUrl,omitempty"`
	RetryAfter int    `json:"-"` // seconds; sent as Retry-After when positive
	Err        error  `json:"-"`
}

var _ error = (*apiError)(nil)

func (e *apiError) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *apiError) Unwrap() error { return e.Err }

// failure turns an error into its reply: an *apiError as it is, a failure of a service the API
// depends on that may pass (throttling, a timeout, a 5xx) into 503 unavailable, anything else
// into 500 internal_error.
func (h *handler) failure(err error) *reply {
	var e *apiError
	if !errors.As(err, &e) {
		if transient(err) {
			e = &apiError{Status: http.StatusServiceUnavailable, Code: codeUnavailable, RetryAfter: 1,
				Message: "a service the API depends on is unavailable; retry with the same Idempotency-Key", Err: err}
		} else {
			e = &apiError{Status: http.StatusInternalServerError, Code: codeInternal,
				Message: "internal error; retrying with the same Idempotency-Key is safe", Err: err}
		}
	}
	r := &reply{status: e.Status, body: map[string]*apiError{"error": e}, invoiceID: e.InvoiceID, code: e.Code}
	if e.RetryAfter > 0 {
		r.header = map[string]string{"Retry-After": strconv.Itoa(e.RetryAfter)}
	}
	return r
}

// transient reports whether err is a failure that a later retry may not meet: a timeout, a
// server-side fault, or an AWS error the SDK classifies as retryable or as throttling (it has
// retried it already).
func transient(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorFault() == smithy.FaultServer {
		return true
	}
	if retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err) == aws.TrueTernary {
		return true
	}
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary
}

// logRequest writes the request's one log line: what was asked, the answer, and for a 5xx the
// cause. It never logs the body, the Idempotency-Key or the Authorization header.
func (h *handler) logRequest(ctx context.Context, req *events.APIGatewayV2HTTPRequest, out *reply, err error) {
	attrs := []slog.Attr{
		slog.String("route", req.RouteKey),
		slog.Int("statusCode", out.status),
		slog.String("apiRequestId", req.RequestContext.RequestID),
	}
	if c := caller(req); c != "" {
		attrs = append(attrs, slog.String("caller", c))
	}
	if out.invoiceID != "" {
		attrs = append(attrs, slog.String("invoiceId", out.invoiceID))
	}
	level, msg := slog.LevelInfo, "request answered"
	if out.code != "" {
		attrs = append(attrs, slog.String("errorCode", out.code))
		level, msg = slog.LevelWarn, "request refused"
	}
	if out.status >= 500 {
		level, msg = slog.LevelError, "request failed"
		if err != nil {
			attrs = append(attrs, slog.String("error", err.Error()))
		}
	}
	h.log.LogAttrs(ctx, level, msg, attrs...)
}

// caller names who made the request: the IAM principal, or the JWT's subject and client.
func caller(req *events.APIGatewayV2HTTPRequest) string {
	a := req.RequestContext.Authorizer
	switch {
	case a == nil:
		return ""
	case a.IAM != nil:
		return a.IAM.UserARN
	case a.JWT != nil:
		c := a.JWT.Claims
		s := "sub=" + c["sub"]
		if id := firstNonEmpty(c["client_id"], c["aud"]); id != "" {
			s += " client=" + id
		}
		return s
	}
	return ""
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// header returns a request header. API Gateway passes header names in lower case and joins
// repeated headers with commas; other callers (tests, local tools) may not lower-case them.
func header(req *events.APIGatewayV2HTTPRequest, name string) (string, bool) {
	if v, ok := req.Headers[name]; ok {
		return v, true
	}
	for k, v := range req.Headers {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// statusURL is the URL of GET /invoices/{id} for an invoice, on the host and under the base
// path the request came through (a stage name or a custom domain's mapping): the request's
// path minus its route's own path.
func statusURL(req *events.APIGatewayV2HTTPRequest, routePath, id string) string {
	path := req.RawPath
	if path == "" {
		path = req.RequestContext.HTTP.Path
	}
	base := ""
	if i := strings.LastIndex(path, routePath); i >= 0 {
		base = path[:i]
	}
	u := base + "/invoices/" + id
	if host := req.RequestContext.DomainName; host != "" {
		u = "https://" + host + u
	}
	return u
}
