package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger/ledgertest"
	"github.com/ksef-serverless/ksef-serverless/internal/motoserver"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

const (
	nip      = "9999999999" // the seller of the official sample invoices, the stack's NIP
	otherNIP = "5265877635"
	execA    = "nightly-a"
	execB    = "nightly-b"
)

// emuStart is the emulator's (and the handler's) starting time: after every sample's issue date.
var emuStart = time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)

// invoice is official sample 1 with its number (P_2) replaced: a valid invoice of nip that KSeF
// does not take for a duplicate of another number.
func invoice(t testing.TB, number string) []byte {
	t.Helper()
	base := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	const old = "<P_2>FV2026/02/150</P_2>"
	if !bytes.Contains(base, []byte(old)) {
		t.Fatal("sample 1 has no " + old)
	}
	return bytes.Replace(base, []byte(old), []byte("<P_2>"+number+"</P_2>"), 1)
}

// invalidInvoice has no P_2, which InspectInvoice refuses before anything is sent.
func invalidInvoice(t testing.TB) []byte {
	t.Helper()
	return bytes.Replace(invoice(t, "X"), []byte("<P_2>X</P_2>"), nil, 1)
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

// stack is a batch function wired to moto (S3 and the ledger table), an in-process KSeF
// emulator with a fake clock (logged in with a KSeF token), and fakes for events and tokens.
type stack struct {
	t       *testing.T
	h       *handler
	s3      *countingS3
	ddb     *dynamodb.Client
	ledger  *ledger.Ledger
	emu     *emutest.Server
	client  *faultyClient
	events  *fakeEvents
	tokens  *fakeTokens
	logs    *syncBuffer
	bucket  string
	secrets []string // must never be logged
	skew    time.Duration
}

// stacks numbers the stacks of this test binary: moto outlives a test, so a name made of the
// test's name alone would collide when the test runs again (go test -count 2).
var stacks atomic.Int64

// newStack creates a versioned bucket and a ledger table in moto, named after the test and
// unique in the moto server, and a handler with small limits; tune changes its configuration.
func newStack(t *testing.T, tune func(*config)) *stack {
	t.Helper()
	srv := motoserver.Start(t)
	awsCfg := motoserver.AWSConfig(t, srv.Endpoint)
	awsCfg.HTTPClient = motoserver.SerialHTTPClient()
	sum := sha256.Sum256([]byte(t.Name()))
	name := fmt.Sprintf("batch-%x-%d", sum[:8], stacks.Add(1))
	st := &stack{t: t, bucket: name, events: &fakeEvents{}, tokens: &fakeTokens{}, logs: &syncBuffer{}}
	ctx := t.Context()
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    aws.String(name),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(motoserver.Region)},
	}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if _, err := s3c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(name),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	}); err != nil {
		t.Fatalf("enable versioning: %v", err)
	}
	st.s3 = &countingS3{Client: s3c, gets: map[string]int{}}
	st.ddb = dynamodb.NewFromConfig(awsCfg)
	if _, err := st.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("create table: %v", err)
	}

	st.emu = emutest.NewServerAt(t, emuStart, emulator.Config{})
	st.client = &faultyClient{batchClient: st.login(t)}
	st.ledger = ledger.New(st.ddb, name, ledger.WithClock(st.emu.Clock.Now), ledger.WithWait(func(context.Context, time.Duration) error { return nil }))
	cfg := config{
		Config: lambdaenv.Config{
			Environment: ksef.Test, Bucket: name, ResultPrefix: "results/", InboxPrefix: "inbox/",
			NIP: nip, LedgerTable: name, S3PathStyle: true,
		},
		BatchPrefix: "batch/", ManifestPrefix: "batch/manifests/",
		MaxInvoices: 100, MaxBytes: 100_000_000, SessionInvoices: 100, PartSize: 4096,
		PageSize: 10, ClaimTimeout: 6 * time.Hour, Workers: 4, Uploads: 2,
	}
	if tune != nil {
		tune(&cfg)
	}
	st.h = &handler{
		objects: st.s3,
		ledger:  st.ledger,
		events:  st.events,
		clients: func(context.Context, string) (batchClient, error) { return st.client, nil },
		tokens:  st.tokens,
		results: results.NewStore(st.s3, name, cfg.ResultPrefix),
		cfg:     cfg,
		now:     func() time.Time { return st.emu.Clock.Now().Add(st.skew) },
		log:     slog.New(slog.NewJSONHandler(st.logs, nil)),
	}
	t.Cleanup(func() {
		checkEvents(t, st.events.events)
		logs := st.logs.String()
		for _, s := range st.secrets {
			if strings.Contains(logs, s) {
				t.Errorf("a secret reached the logs:\n%s", logs)
			}
		}
		if strings.Contains(logs, "<Faktura") || strings.Contains(logs, "<Potwierdzenie") {
			t.Errorf("an invoice or a UPO reached the logs:\n%s", logs)
		}
	})
	return st
}

// login logs in to the emulator with a KSeF token of nip and returns a client holding the
// access token, as the functions' client pool would.
func (st *stack) login(t testing.TB) *ksef.Client {
	t.Helper()
	ctx := t.Context()
	e := st.emu.Emulator
	token, err := e.GenerateToken(nip)
	if err != nil {
		t.Fatal(err)
	}
	opts := []ksef.Option{ksef.WithBaseURL(st.emu.URL), ksef.WithHTTPClient(st.emu.Client()), ksef.WithClock(e.Now)}
	anon, err := ksef.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := anon.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	init, err := anon.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{Challenge: ch, Context: ksef.NipContext(nip), Token: ksef.Secret(token)})
	if err != nil {
		t.Fatal(err)
	}
	st.emu.Clock.Advance(emulator.DefaultAuthDelay)
	if s, err := anon.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token); err != nil || s.Status.Code != 200 {
		t.Fatalf("authentication: %+v, %v", s, err)
	}
	tokens, err := anon.RedeemTokens(ctx, init.AuthenticationToken.Token)
	if err != nil {
		t.Fatal(err)
	}
	st.secrets = append(st.secrets, token, string(tokens.AccessToken.Token), string(tokens.RefreshToken.Token))
	c, err := ksef.NewClient(append(opts, ksef.WithAccessToken(ksef.StaticAccessToken(tokens.AccessToken.Token)))...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// upload stores an object and returns its version.
func (st *stack) upload(key string, body []byte) string {
	st.t.Helper()
	out, err := st.s3.Client.PutObject(st.t.Context(), &s3.PutObjectInput{Bucket: aws.String(st.bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
	if err != nil {
		st.t.Fatalf("upload %s: %v", key, err)
	}
	return aws.ToString(out.VersionId)
}

// object returns an object of the bucket, or nil.
func (st *stack) object(key string) []byte {
	st.t.Helper()
	out, err := st.s3.Client.GetObject(st.t.Context(), &s3.GetObjectInput{Bucket: aws.String(st.bucket), Key: aws.String(key)})
	var nsk *s3types.NoSuchKey
	if errors.As(err, &nsk) {
		return nil
	}
	if err != nil {
		st.t.Fatalf("get %s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		st.t.Fatal(err)
	}
	return b
}

// item returns the ledger item of an object version.
func (st *stack) item(key, version string) *ledger.Invoice {
	st.t.Helper()
	inv, err := st.ledger.Get(st.t.Context(), ledger.ObjectID(st.bucket, key, version))
	if err != nil {
		st.t.Fatalf("ledger item of %s: %v", key, err)
	}
	return inv
}

// call runs Handle and decodes its output as the Lambda runtime would encode it, refusing
// fields the output type does not have.
func call[T any](t *testing.T, h *handler, req flow.BatchRequest) (T, error) {
	t.Helper()
	var out T
	raw, err := h.Handle(t.Context(), req)
	if err != nil {
		if raw != nil {
			t.Errorf("Handle returned %v with its error", raw)
		}
		return out, err
	}
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("output %s is not a %T: %v", b, out, err)
	}
	return out, nil
}

func (st *stack) send(exec string, round int, after string) (flow.BatchSendResult, error) {
	st.t.Helper()
	return call[flow.BatchSendResult](st.t, st.h, flow.BatchRequest{Action: flow.BatchSend, NIP: nip, ExecutionName: exec, Round: round, After: after})
}

func (st *stack) mustSend(exec string, round int, after string) flow.BatchSendResult {
	st.t.Helper()
	out, err := st.send(exec, round, after)
	if err != nil {
		st.t.Fatalf("send: %v\nlogs:\n%s", err, st.logs.String())
	}
	return out
}

// pollSession polls a session as the state machine's Map iteration does, moving the fake
// clock by each wait, until it is done.
func (st *stack) pollSession(exec string, s flow.BatchSession) []flow.BatchPollResult {
	st.t.Helper()
	req := flow.BatchRequest{Action: flow.BatchPoll, NIP: nip, ExecutionName: exec, Session: &s}
	var outs []flow.BatchPollResult
	for range 60 {
		out, err := call[flow.BatchPollResult](st.t, st.h, req)
		if err != nil {
			st.t.Fatalf("poll %s: %v\nlogs:\n%s", s.SessionReferenceNumber, err, st.logs.String())
		}
		outs = append(outs, out)
		if out.Outcome == flow.BatchDone {
			return outs
		}
		if out.Attempt != req.Attempt+1 {
			st.t.Fatalf("attempt %d after %d", out.Attempt, req.Attempt)
		}
		// The wait asked for, and the few seconds an invocation and a state transition take:
		// KSeF's permanentStorageDate (1 s after acquisition in the emulator) is then set.
		st.emu.Clock.Advance(time.Duration(out.WaitSeconds)*time.Second + 3*time.Second)
		req.Attempt, req.Cursor, req.Offset = out.Attempt, out.Cursor, out.Offset
	}
	st.t.Fatalf("session %s not done after 60 polls: %+v", s.SessionReferenceNumber, outs)
	return nil
}

// countingS3 counts the invoice reads per key and can fail calls.
type countingS3 struct {
	*s3.Client
	mu      sync.Mutex
	gets    map[string]int
	listErr error
}

func (c *countingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.mu.Lock()
	c.gets[aws.ToString(in.Key)]++
	c.mu.Unlock()
	return c.Client.GetObject(ctx, in, optFns...)
}

func (c *countingS3) ListObjectVersions(ctx context.Context, in *s3.ListObjectVersionsInput, optFns ...func(*s3.Options)) (*s3.ListObjectVersionsOutput, error) {
	c.mu.Lock()
	err := c.listErr
	c.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.Client.ListObjectVersions(ctx, in, optFns...)
}

// faultyClient is the KSeF client with failures injected per call: a function returning a
// non-nil error replaces the call's answer (after, for the "lost answer" kind, the call was
// made).
type faultyClient struct {
	batchClient
	mu          sync.Mutex
	calls       map[string]int
	open        func() error
	upload      func() error
	closeAfter  func() error // runs after KSeF closed the session: the answer is lost
	status      func(ref string, st *ksef.SessionStatus) (*ksef.SessionStatus, error)
	listInvoice func() error
}

func (c *faultyClient) count(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls == nil {
		c.calls = map[string]int{}
	}
	c.calls[op]++
}

func (c *faultyClient) OpenBatchSession(ctx context.Context, form ksef.FormCode, pkg *ksef.BatchPackage, opts *ksef.BatchSessionOptions) (*ksef.BatchSession, error) {
	c.count("OpenBatchSession")
	if c.open != nil {
		if err := c.open(); err != nil {
			return nil, err
		}
	}
	return c.batchClient.OpenBatchSession(ctx, form, pkg, opts)
}

func (c *faultyClient) UploadBatchParts(ctx context.Context, s *ksef.BatchSession, pkg *ksef.BatchPackage, n int) error {
	c.count("UploadBatchParts")
	if c.upload != nil {
		if err := c.upload(); err != nil {
			return err
		}
	}
	return c.batchClient.UploadBatchParts(ctx, s, pkg, n)
}

func (c *faultyClient) CloseBatchSession(ctx context.Context, ref string) error {
	c.count("CloseBatchSession")
	if err := c.batchClient.CloseBatchSession(ctx, ref); err != nil {
		return err
	}
	if c.closeAfter != nil {
		return c.closeAfter()
	}
	return nil
}

func (c *faultyClient) SessionStatus(ctx context.Context, ref string) (*ksef.SessionStatus, error) {
	c.count("SessionStatus")
	st, err := c.batchClient.SessionStatus(ctx, ref)
	if err == nil && c.status != nil {
		return c.status(ref, st)
	}
	return st, err
}

func (c *faultyClient) SessionInvoices(ctx context.Context, ref string, opts *ksef.ListOptions) (*ksef.InvoicePage, error) {
	c.count("SessionInvoices")
	if c.listInvoice != nil {
		if err := c.listInvoice(); err != nil {
			return nil, err
		}
	}
	return c.batchClient.SessionInvoices(ctx, ref, opts)
}

// once returns a fault that fails the first call with err and lets the others through.
func once(err error) func() error {
	var mu sync.Mutex
	done := false
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		if done {
			return nil
		}
		done = true
		return err
	}
}

func apiError(op string, status, code int) *ksef.APIError {
	e := &ksef.APIError{Op: op, StatusCode: status, Title: http.StatusText(status)}
	if code != 0 {
		e.Details = []ksef.ExceptionDetail{{Code: code, Description: "injected", Details: []string{"injected by the test"}}}
	}
	return e
}

// fakeEvents records published events.
type fakeEvents struct {
	mu     sync.Mutex
	events []ledger.Event
}

func (f *fakeEvents) Publish(_ context.Context, e ledger.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, e)
	return nil
}

// byInvoice returns the statuses announced per invoice id.
func (f *fakeEvents) byInvoice() map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]string{}
	for _, e := range f.events {
		out[e.InvoiceID] = append(out[e.InvoiceID], fmt.Sprintf("%s/%s", e.DetailType(), e.Status))
	}
	return out
}

// checkEvents checks the events' detail against docs/events.schema.json, and that the batch
// function published them.
func checkEvents(t *testing.T, events []ledger.Event) {
	t.Helper()
	ledgertest.CheckEvents(t, events)
	for _, e := range events {
		if e.Source != ledger.SourceBatch {
			t.Errorf("event of %s has source %q, want batch", e.InvoiceID, e.Source)
		}
	}
}

// fakeTokens records dropped access tokens.
type fakeTokens struct {
	mu      sync.Mutex
	dropped []string
}

func (f *fakeTokens) DropAccessToken(_ context.Context, nip string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropped = append(f.dropped, nip)
	return nil
}
