package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

// sdkError is an error as an AWS SDK client returns it for an error response: an operation
// error around the HTTP response error around the service's error code.
func sdkError(service, operation string, status int, code, message string) error {
	return &smithy.OperationError{ServiceID: service, OperationName: operation, Err: &awshttp.ResponseError{
		ResponseError: &smithyhttp.ResponseError{
			Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status, Header: http.Header{}}},
			Err:      &smithy.GenericAPIError{Code: code, Message: message},
		},
		RequestID: "4f8c1a2b-0d3e-4f5a-9b6c-7d8e9f0a1b2c",
	}}
}

// fakeLedger keeps invoices in memory with the claims of ledger.Ledger.Create: the idempotency
// key (reported first), the id, then the content hash (taken over from a failed invoice).
type fakeLedger struct {
	mu       sync.Mutex
	now      func() time.Time
	invoices map[string]*ledger.Invoice
	content  map[string]string // nip + "#" + hash -> id
	keys     map[string]string // nip + "#" + key -> id
	hashes   map[string]string // nip + "#" + key -> request hash
	creates  int               // successful Create calls
	err      error             // returned by the next Create, then cleared
}

func newFakeLedger(now func() time.Time) *fakeLedger {
	return &fakeLedger{now: now, invoices: map[string]*ledger.Invoice{}, content: map[string]string{},
		keys: map[string]string{}, hashes: map[string]string{}}
}

func (l *fakeLedger) Create(ctx context.Context, inv ledger.Invoice, opts *ledger.CreateOptions) (*ledger.Invoice, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("fake ledger: create %s: %w", inv.ID, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.err; err != nil {
		l.err = nil
		return nil, err
	}
	if !ledger.ValidID(inv.ID) {
		return nil, fmt.Errorf("fake ledger: invalid id %q", inv.ID)
	}
	if opts == nil {
		opts = &ledger.CreateOptions{}
	}
	if opts.IdempotencyKey != "" {
		if id, ok := l.keys[inv.NIP+"#"+opts.IdempotencyKey]; ok {
			return nil, &ledger.ConflictError{Kind: ledger.ConflictIdempotencyKey, InvoiceID: id,
				RequestHash: l.hashes[inv.NIP+"#"+opts.IdempotencyKey], Existing: l.copy(id)}
		}
	}
	if _, ok := l.invoices[inv.ID]; ok {
		return nil, &ledger.ConflictError{Kind: ledger.ConflictID, InvoiceID: inv.ID, Existing: l.copy(inv.ID)}
	}
	ck := inv.NIP + "#" + inv.InvoiceHash
	if owner, ok := l.content[ck]; ok && l.invoices[owner].Status != ledger.StatusFailed {
		return nil, &ledger.ConflictError{Kind: ledger.ConflictContent, InvoiceID: owner, Existing: l.copy(owner)}
	}
	now := l.now().UTC()
	inv.CreatedAt, inv.UpdatedAt, inv.Version = now, now, 1
	stored := inv
	l.invoices[inv.ID] = &stored
	l.content[ck] = inv.ID
	if opts.IdempotencyKey != "" {
		l.keys[inv.NIP+"#"+opts.IdempotencyKey] = inv.ID
		l.hashes[inv.NIP+"#"+opts.IdempotencyKey] = opts.RequestHash
	}
	l.creates++
	return l.copy(inv.ID), nil
}

func (l *fakeLedger) Get(_ context.Context, id string) (*ledger.Invoice, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.invoices[id]; !ok {
		return nil, fmt.Errorf("fake ledger: get %s: %w", id, ledger.ErrNotFound)
	}
	return l.copy(id), nil
}

// put stores an invoice as a pipeline step would have left it.
func (l *fakeLedger) put(inv ledger.Invoice) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.invoices[inv.ID] = &inv
}

// copy returns a copy of the invoice with the id, nil if there is none; l.mu is held.
func (l *fakeLedger) copy(id string) *ledger.Invoice {
	inv, ok := l.invoices[id]
	if !ok {
		return nil
	}
	c := *inv
	return &c
}

func (l *fakeLedger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.invoices)
}

// fakeS3 stores objects as S3 does with versioning on, honouring If-None-Match: *.
type fakeS3 struct {
	mu       sync.Mutex
	versions map[string][][]byte // key -> bodies, oldest first
	inputs   []*s3.PutObjectInput
	failures []error // returned by the next calls, one each
}

func newFakeS3() *fakeS3 { return &fakeS3{versions: map[string][][]byte{}} }

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	body, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inputs = append(f.inputs, in)
	if len(f.failures) > 0 {
		err := f.failures[0]
		f.failures = f.failures[1:]
		return nil, err
	}
	key := aws.ToString(in.Bucket) + "/" + aws.ToString(in.Key)
	if aws.ToString(in.IfNoneMatch) == "*" && len(f.versions[key]) > 0 {
		return nil, sdkError("S3", "PutObject", 412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
	}
	f.versions[key] = append(f.versions[key], body)
	return &s3.PutObjectOutput{VersionId: aws.String(strconv.Itoa(len(f.versions[key])))}, nil
}

func (f *fakeS3) objects(bucket, key string) [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.versions[bucket+"/"+key]
}

func (f *fakeS3) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.versions {
		n += len(v)
	}
	return n
}

// fakeSFN starts executions with Step Functions' naming rules for standard workflows: the same
// name and input as a running execution is that execution; the same name otherwise is
// ExecutionAlreadyExists.
type fakeSFN struct {
	mu       sync.Mutex
	inputs   map[string]string // name -> input
	finished map[string]bool
	arn      string // the state machine
	calls    int
	failures []error
}

func newFakeSFN(arn string) *fakeSFN {
	return &fakeSFN{inputs: map[string]string{}, finished: map[string]bool{}, arn: arn}
}

func (f *fakeSFN) StartExecution(_ context.Context, in *sfn.StartExecutionInput, _ ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if len(f.failures) > 0 {
		err := f.failures[0]
		f.failures = f.failures[1:]
		return nil, err
	}
	if aws.ToString(in.StateMachineArn) != f.arn {
		return nil, &sfntypes.StateMachineDoesNotExist{Message: aws.String("State Machine Does Not Exist: " + aws.ToString(in.StateMachineArn))}
	}
	name, input := aws.ToString(in.Name), aws.ToString(in.Input)
	if old, ok := f.inputs[name]; ok && (old != input || f.finished[name]) {
		return nil, &sfntypes.ExecutionAlreadyExists{Message: aws.String("Execution Already Exists: " + name)}
	}
	f.inputs[name] = input
	return &sfn.StartExecutionOutput{ExecutionArn: aws.String(f.arn + ":" + name)}, nil
}

func (f *fakeSFN) DescribeExecution(_ context.Context, in *sfn.DescribeExecutionInput, _ ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	prefix := strings.Replace(f.arn, ":stateMachine:", ":execution:", 1) + ":"
	name, ok := strings.CutPrefix(aws.ToString(in.ExecutionArn), prefix)
	input, found := f.inputs[name]
	if !ok || !found {
		return nil, &sfntypes.ExecutionDoesNotExist{Message: aws.String("Execution Does Not Exist: '" + aws.ToString(in.ExecutionArn) + "'")}
	}
	status := sfntypes.ExecutionStatusRunning
	if f.finished[name] {
		status = sfntypes.ExecutionStatusSucceeded
	}
	return &sfn.DescribeExecutionOutput{ExecutionArn: in.ExecutionArn, Input: aws.String(input), Status: status}, nil
}

func (f *fakeSFN) executions() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]string{}
	for k, v := range f.inputs {
		m[k] = v
	}
	return m
}

// fakePresigner pre-signs as the SDK does, at a fixed signing time.
type fakePresigner struct {
	signedAt time.Time
	err      error
}

func (p *fakePresigner) PresignGetObject(_ context.Context, in *s3.GetObjectInput, optFns ...func(*s3.PresignOptions)) (*v4.PresignedHTTPRequest, error) {
	if p.err != nil {
		return nil, p.err
	}
	var o s3.PresignOptions
	for _, fn := range optFns {
		fn(&o)
	}
	if o.Expires == 0 {
		return nil, errors.New("fake presigner: no expiry given")
	}
	q := url.Values{
		"X-Amz-Algorithm":     {"AWS4-HMAC-SHA256"},
		"X-Amz-Credential":    {"ASIAEXAMPLE/20260302/eu-central-1/s3/aws4_request"},
		"X-Amz-Date":          {p.signedAt.UTC().Format("20060102T150405Z")},
		"X-Amz-Expires":       {strconv.Itoa(int(o.Expires / time.Second))},
		"X-Amz-SignedHeaders": {"host"},
		"X-Amz-Signature":     {"0123456789abcdef"},
	}
	u := "https://" + aws.ToString(in.Bucket) + ".s3.eu-central-1.amazonaws.com/" + aws.ToString(in.Key) + "?" + q.Encode()
	return &v4.PresignedHTTPRequest{URL: u, Method: "GET"}, nil
}

// syncBuffer is a log destination safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
