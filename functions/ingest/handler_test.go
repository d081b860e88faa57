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
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"
	sfntypes "github.com/aws/aws-sdk-go-v2/service/sfn/types"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger/ledgertest"
	"github.com/ksef-serverless/ksef-serverless/internal/motoserver"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

const (
	bucket       = "ksef-invoices-123456789012"
	stackNIP     = "9999999999"
	stateMachine = "arn:aws:states:eu-central-1:123456789012:stateMachine:ksef-invoices"
	key          = "inbox/2026/02/FA_3_Przyklad_1.xml" // the key in testdata/object-created.json
	version      = "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func sample(t *testing.T) []byte {
	t.Helper()
	b, ok := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	if !ok {
		t.Fatal("official sample FA_3_Przyklad_1.xml missing")
	}
	return b
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// eventFile reads an event of testdata/ and applies the changes to its detail.object (and
// bucket): key, size, version-id, bucket.
func eventFile(t *testing.T, name string, change map[string]any) events.EventBridgeEvent {
	t.Helper()
	raw, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	detail := m["detail"].(map[string]any)
	object := detail["object"].(map[string]any)
	for k, v := range change {
		switch k {
		case "bucket":
			detail["bucket"] = map[string]any{"name": v}
		case "source", "detail-type":
			m[k] = v
		default:
			object[k] = v
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	// As the Lambda runtime does: the JSON payload decoded into Handle's parameter.
	var ev events.EventBridgeEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	return ev
}

func event(t *testing.T, change map[string]any) events.EventBridgeEvent {
	return eventFile(t, "object-created.json", change)
}

// TestEventShape: the detail type models every field of the documented event.
func TestEventShape(t *testing.T) {
	for _, name := range []string{"object-created.json", "object-created-encoded-key.json"} {
		ev := eventFile(t, name, nil)
		var d objectCreated
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if d.Bucket.Name != bucket || d.Object.Size != 3387 || d.Object.VersionID == "" || d.Object.Sequencer == "" || d.Reason == "" {
			t.Errorf("%s: decoded %+v", name, d)
		}
		var want, got map[string]any
		_ = json.Unmarshal(ev.Detail, &want)
		delete(want, "source-ip-address") // not used, not modelled
		b, _ := json.Marshal(d)
		_ = json.Unmarshal(b, &got)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: detail re-encoded\n%v\nwant\n%v", name, got, want)
		}
	}
}

// ---- fakes ---------------------------------------------------------------------------------

type fakeS3 struct {
	mu      sync.Mutex
	objects map[string][]byte // key + "@" + version
	length  map[string]int64  // ContentLength reported instead of the real one
	gets    []string
	puts    map[string][]byte
	getErr  error
	putErr  error
}

func newFakeS3() *fakeS3 {
	return &fakeS3{objects: map[string][]byte{}, length: map[string]int64{}, puts: map[string][]byte{}}
}

func (f *fakeS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := aws.ToString(in.Key) + "@" + aws.ToString(in.VersionId)
	f.gets = append(f.gets, id)
	if aws.ToString(in.Bucket) != bucket {
		return nil, fmt.Errorf("fake: bucket %s", aws.ToString(in.Bucket))
	}
	if f.getErr != nil {
		return nil, f.getErr
	}
	b, ok := f.objects[id]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "NoSuchVersion", Message: "The specified version does not exist."}
	}
	n := int64(len(b))
	if l, ok := f.length[id]; ok {
		n = l
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(b)), ContentLength: aws.Int64(n)}, nil
}

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.putErr != nil {
		return nil, f.putErr
	}
	b, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	if aws.ToString(in.Bucket) != bucket || aws.ToString(in.ContentType) != "application/json" {
		return nil, fmt.Errorf("fake: put to %s as %s", aws.ToString(in.Bucket), aws.ToString(in.ContentType))
	}
	f.puts[aws.ToString(in.Key)] = b
	return &s3.PutObjectOutput{}, nil
}

func (f *fakeS3) put(key, version string, body []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objects[key+"@"+version] = body
}

func (f *fakeS3) stored(t *testing.T, key string, v any) {
	t.Helper()
	f.mu.Lock()
	b, ok := f.puts[key]
	f.mu.Unlock()
	if !ok {
		t.Fatalf("nothing stored at %s; stored: %v", key, slices.Sorted(func(yield func(string) bool) {
			for k := range f.puts {
				if !yield(k) {
					return
				}
			}
		}))
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s is not JSON: %v\n%s", key, err, b)
	}
}

// fakeSFN behaves as Step Functions does for StartExecution: the same name and input as a
// running execution answer as the first call did; an ended execution, or another input, is
// ExecutionAlreadyExists.
type fakeSFN struct {
	mu         sync.Mutex
	executions map[string]*fakeExecution // by name
	order      []string
	calls      int
	startErr   error
}

type fakeExecution struct {
	input string
	ended bool
}

func newFakeSFN() *fakeSFN { return &fakeSFN{executions: map[string]*fakeExecution{}} }

func (f *fakeSFN) StartExecution(_ context.Context, in *sfn.StartExecutionInput, _ ...func(*sfn.Options)) (*sfn.StartExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.startErr != nil {
		return nil, f.startErr
	}
	if aws.ToString(in.StateMachineArn) != stateMachine {
		return nil, &sfntypes.StateMachineDoesNotExist{Message: aws.String("no such state machine")}
	}
	name, input := aws.ToString(in.Name), aws.ToString(in.Input)
	arn := executionARN(stateMachine, name)
	if e, ok := f.executions[name]; ok {
		if e.input == input && !e.ended {
			return &sfn.StartExecutionOutput{ExecutionArn: aws.String(arn), StartDate: aws.Time(t0)}, nil
		}
		return nil, &sfntypes.ExecutionAlreadyExists{Message: aws.String("Execution Already Exists: '" + arn + "'")}
	}
	f.executions[name] = &fakeExecution{input: input}
	f.order = append(f.order, name)
	return &sfn.StartExecutionOutput{ExecutionArn: aws.String(arn), StartDate: aws.Time(t0)}, nil
}

func (f *fakeSFN) DescribeExecution(_ context.Context, in *sfn.DescribeExecutionInput, _ ...func(*sfn.Options)) (*sfn.DescribeExecutionOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arn := aws.ToString(in.ExecutionArn)
	name := arn[strings.LastIndexByte(arn, ':')+1:]
	e, ok := f.executions[name]
	if !ok || executionARN(stateMachine, name) != arn {
		return nil, &sfntypes.ExecutionDoesNotExist{Message: aws.String("Execution Does Not Exist: '" + arn + "'")}
	}
	status := sfntypes.ExecutionStatusRunning
	if e.ended {
		status = sfntypes.ExecutionStatusSucceeded
	}
	return &sfn.DescribeExecutionOutput{ExecutionArn: in.ExecutionArn, Input: aws.String(e.input), Status: status}, nil
}

func (f *fakeSFN) started() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.order)
}

func (f *fakeSFN) input(t *testing.T, name string) flow.Input {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.executions[name]
	if !ok {
		t.Fatalf("no execution %s", name)
	}
	var in flow.Input
	dec := json.NewDecoder(strings.NewReader(e.input))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("execution input %s: %v", e.input, err)
	}
	return in
}

type fakePublisher struct {
	mu     sync.Mutex
	events []ledger.Event
	err    error
}

func (f *fakePublisher) Publish(_ context.Context, e ledger.Event) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.events = append(f.events, e)
	return nil
}

// ---- the environment -----------------------------------------------------------------------

var tables atomic.Int64

// motoLedger returns a ledger on a fresh table in moto, shaped as template.yaml's LedgerTable.
func motoLedger(t *testing.T) *ledger.Ledger {
	t.Helper()
	srv := motoserver.Start(t)
	db := dynamodb.NewFromConfig(motoserver.AWSConfig(t, srv.Endpoint))
	name := fmt.Sprintf("ingest-test-%d", tables.Add(1))
	_, err := db.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []dbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: dbtypes.ScalarAttributeTypeS}},
		KeySchema:            []dbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: dbtypes.KeyTypeHash}},
		BillingMode:          dbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table: %v", err)
	}
	return ledger.New(db, name, ledger.WithClock(func() time.Time { return t0 }))
}

type env struct {
	s3     *fakeS3
	sfn    *fakeSFN
	ledger *ledger.Ledger
	events *fakePublisher
	logs   bytes.Buffer
	h      *handler
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{s3: newFakeS3(), sfn: newFakeSFN(), ledger: motoLedger(t), events: &fakePublisher{}}
	e.s3.put(key, version, sample(t))
	e.h = &handler{
		objects:         e.s3,
		ledger:          e.ledger,
		executions:      e.sfn,
		events:          e.events,
		bucket:          bucket,
		inboxPrefix:     "inbox/",
		resultPrefix:    "results/",
		nip:             stackNIP,
		stateMachineARN: stateMachine,
		now:             func() time.Time { return t0 },
		log:             slog.New(slog.NewJSONHandler(&e.logs, nil)),
	}
	return e
}

func (e *env) handle(t *testing.T, ev events.EventBridgeEvent) outcome {
	t.Helper()
	out, err := e.h.Handle(t.Context(), ev)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	return out
}

func (e *env) invoice(t *testing.T, id string) *ledger.Invoice {
	t.Helper()
	inv, err := e.ledger.Get(t.Context(), id)
	if err != nil {
		t.Fatalf("ledger: %v", err)
	}
	return inv
}

// ---- tests ---------------------------------------------------------------------------------

func TestHandleNewUpload(t *testing.T) {
	e := newEnv(t)
	id := ledger.ObjectID(bucket, key, version)
	out := e.handle(t, event(t, nil))
	want := outcome{Action: actionStarted, InvoiceID: id, ExecutionARN: executionARN(stateMachine, id)}
	if out != want {
		t.Errorf("outcome %+v, want %+v", out, want)
	}
	obj := flow.S3Object{Bucket: bucket, Key: key, VersionID: version}
	if got, want := e.sfn.input(t, id), (flow.Input{NIP: stackNIP, Invoice: obj, InvoiceID: id, Source: "s3"}); got != want {
		t.Errorf("execution input %+v, want %+v", got, want)
	}
	inv := e.invoice(t, id)
	if inv.Status != ledger.StatusReceived || inv.NIP != stackNIP || inv.Source != ledger.SourceS3 || inv.Object != obj ||
		inv.InvoiceHash != hashOf(sample(t)) || inv.ExecutionName != id {
		t.Errorf("ledger item %+v", inv)
	}
	if len(e.s3.puts) != 0 || len(e.events.events) != 0 {
		t.Errorf("stored %v and published %v for a new upload; want nothing", e.s3.puts, e.events.events)
	}
}

// TestHandleDuplicateDelivery: EventBridge delivers at least once. However often the event
// comes, one execution exists, and the object is read once.
func TestHandleDuplicateDelivery(t *testing.T) {
	e := newEnv(t)
	id := ledger.ObjectID(bucket, key, version)
	ev := event(t, nil)
	if out := e.handle(t, ev); out.Action != actionStarted {
		t.Fatalf("first delivery: %+v", out)
	}
	// While the execution runs: Step Functions answers the repeated start as the first.
	if out := e.handle(t, ev); out.Action != actionAlreadyStarted || out.InvoiceID != id || out.ExecutionARN != executionARN(stateMachine, id) {
		t.Errorf("second delivery: %+v", out)
	}
	// After it ended (before the ledger moved on): ExecutionAlreadyExists, same input.
	e.sfn.executions[id].ended = true
	if out := e.handle(t, ev); out.Action != actionAlreadyStarted {
		t.Errorf("delivery after the execution ended: %+v", out)
	}
	// Once the invoice is past sending, a delivery does not even ask Step Functions.
	calls := e.sfn.calls
	if _, _, err := e.ledger.Transition(t.Context(), id, ledger.Change{Status: ledger.StatusSubmitted}); err != nil {
		t.Fatal(err)
	}
	if out := e.handle(t, ev); out.Action != actionAlreadyProcessed || out.Reason != "invoice is submitted" {
		t.Errorf("delivery after submission: %+v", out)
	}
	if e.sfn.calls != calls {
		t.Errorf("StartExecution called after submission")
	}
	if got := e.sfn.started(); !slices.Equal(got, []string{id}) {
		t.Errorf("executions %v, want one: %s", got, id)
	}
	if len(e.s3.gets) != 1 {
		t.Errorf("object read %d times (%v), want once", len(e.s3.gets), e.s3.gets)
	}
}

func TestHandleConcurrentDelivery(t *testing.T) {
	e := newEnv(t)
	ev := event(t, nil)
	var wg sync.WaitGroup
	outs := make([]outcome, 4)
	errs := make([]error, 4)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = e.h.Handle(t.Context(), ev)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("delivery %d: %v", i, err)
		}
		if a := outs[i].Action; a != actionStarted && a != actionAlreadyStarted {
			t.Errorf("delivery %d: %+v", i, outs[i])
		}
	}
	if got := e.sfn.started(); len(got) != 1 {
		t.Errorf("executions %v, want one", got)
	}
}

// TestHandleRepeatedUpload: the same bytes uploaded again under another key are not sent
// again; a notice next to them points at the original.
func TestHandleRepeatedUpload(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	orig := ledger.ObjectID(bucket, key, version)
	e.handle(t, event(t, nil))

	otherKey := "inbox/again/FA_3_Przyklad_1.xml"
	e.s3.put(otherKey, "v1", sample(t))
	dupID := ledger.ObjectID(bucket, otherKey, "v1")
	out := e.handle(t, event(t, map[string]any{"key": otherKey, "version-id": "v1"}))
	if want := (outcome{Action: actionDuplicateUpload, InvoiceID: dupID, DuplicateOf: orig}); out != want {
		t.Errorf("outcome %+v, want %+v", out, want)
	}
	dup := e.invoice(t, dupID)
	noticeKey := "results/" + otherKey + ".result.json"
	if dup.Status != ledger.StatusDuplicateUpload || dup.DuplicateOf != orig || dup.ResultKey != noticeKey || dup.KSeFNumber != "" {
		t.Errorf("duplicate's ledger item %+v", dup)
	}
	var n results.DuplicateNotice
	e.s3.stored(t, noticeKey, &n)
	if n.Status != "duplicate-upload" || n.DuplicateOf != orig || n.InvoiceID != dupID || n.Invoice.Key != otherKey || n.Invoice.VersionID != "v1" ||
		n.Original == nil || n.Original.Status != "received" || n.Original.Invoice.Key != key || n.KSeFNumber != "" || n.InvoiceHash != hashOf(sample(t)) {
		t.Errorf("notice %+v", n)
	}

	// Once the original is accepted, a further upload's notice gives its KSeF number, and so
	// does the repeated delivery of the second upload's event (which rewrites its notice).
	const ksefNumber = "9999999999-20260302-0100001AF629-AF"
	if _, _, err := e.ledger.Transition(ctx, orig, ledger.Change{Status: ledger.StatusAccepted, KSeFNumber: ksefNumber}); err != nil {
		t.Fatal(err)
	}
	thirdKey := "inbox/third/FA_3_Przyklad_1.xml"
	e.s3.put(thirdKey, "v1", sample(t))
	out = e.handle(t, event(t, map[string]any{"key": thirdKey, "version-id": "v1"}))
	if out.Action != actionDuplicateUpload || out.DuplicateOf != orig {
		t.Errorf("third upload: %+v", out)
	}
	third := e.invoice(t, ledger.ObjectID(bucket, thirdKey, "v1"))
	if third.KSeFNumber != ksefNumber {
		t.Errorf("third upload's ledger item %+v, want the original's KSeF number", third)
	}
	e.s3.stored(t, "results/"+thirdKey+".result.json", &n)
	if n.KSeFNumber != ksefNumber || n.Original.Status != "accepted" {
		t.Errorf("third notice %+v", n)
	}
	out = e.handle(t, event(t, map[string]any{"key": otherKey, "version-id": "v1"}))
	if out.Action != actionDuplicateUpload {
		t.Errorf("repeated delivery of the second upload: %+v", out)
	}
	e.s3.stored(t, noticeKey, &n)
	if n.KSeFNumber != ksefNumber {
		t.Errorf("rewritten notice %+v, want the original's KSeF number", n)
	}
	if got := e.sfn.started(); !slices.Equal(got, []string{orig}) {
		t.Errorf("executions %v, want only the original's", got)
	}
	if len(e.events.events) != 0 {
		t.Errorf("events %v for duplicate uploads, want none", e.events.events)
	}
}

// TestHandleRepeatedUploadSameKey: the same bytes uploaded again to the same key (a new
// version) are not sent again, and nothing is written over the original's result, which
// describes these bytes; the ledger records the duplicate upload.
func TestHandleRepeatedUploadSameKey(t *testing.T) {
	e := newEnv(t)
	orig := ledger.ObjectID(bucket, key, version)
	e.handle(t, event(t, nil))
	// The pipeline accepted the original and stored its result next to the key.
	const ksefNumber = "9999999999-20260302-0100001AF629-AF"
	resultKey := "results/" + key + ".result.json"
	if _, _, err := e.ledger.Transition(t.Context(), orig, ledger.Change{Status: ledger.StatusAccepted, KSeFNumber: ksefNumber, ResultKey: resultKey}); err != nil {
		t.Fatal(err)
	}
	result := []byte(`{"status":"accepted","ksefNumber":"` + ksefNumber + `"}` + "\n")
	e.s3.puts[resultKey] = result

	e.s3.put(key, "v2", sample(t))
	dupID := ledger.ObjectID(bucket, key, "v2")
	ev := event(t, map[string]any{"version-id": "v2"})
	for delivery := range 2 { // a repeated delivery decides the same
		out := e.handle(t, ev)
		if out.Action != actionDuplicateUpload || out.InvoiceID != dupID || out.DuplicateOf != orig || !strings.Contains(out.Reason, "no notice replaces its result") {
			t.Errorf("delivery %d: outcome %+v, want a duplicate upload of %s with no notice", delivery, out, orig)
		}
	}
	dup := e.invoice(t, dupID)
	if dup.Status != ledger.StatusDuplicateUpload || dup.DuplicateOf != orig || dup.KSeFNumber != ksefNumber || dup.ResultKey != "" {
		t.Errorf("duplicate's ledger item %+v, want a duplicate upload of %s, its KSeF number and no notice key", dup, orig)
	}
	if got := e.s3.puts[resultKey]; !bytes.Equal(got, result) || len(e.s3.puts) != 1 {
		t.Errorf("stored %v, %s now holds %s; want the original's result untouched and nothing else written", slices.Collect(maps.Keys(e.s3.puts)), resultKey, got)
	}
	if got := e.sfn.started(); !slices.Equal(got, []string{orig}) {
		t.Errorf("executions %v, want only the original's", got)
	}
	if !strings.Contains(e.logs.String(), `"duplicateOf":"`+orig+`","reason":"an earlier version of the same key`) {
		t.Errorf("the duplicate upload is not logged with its reason:\n%s", e.logs.String())
	}
}

// TestHandleRetryAfterFailure: uploading an invoice again after it failed (KSeF down, say)
// sends it again.
func TestHandleRetryAfterFailure(t *testing.T) {
	e := newEnv(t)
	orig := ledger.ObjectID(bucket, key, version)
	e.handle(t, event(t, nil))
	if _, _, err := e.ledger.Transition(t.Context(), orig, ledger.Change{Status: ledger.StatusFailed, Reason: &ledger.Reason{Message: "KSeF unavailable"}}); err != nil {
		t.Fatal(err)
	}
	e.s3.put(key, "v2", sample(t))
	retry := ledger.ObjectID(bucket, key, "v2")
	if out := e.handle(t, event(t, map[string]any{"version-id": "v2"})); out.Action != actionStarted || out.InvoiceID != retry {
		t.Errorf("re-upload after failure: %+v", out)
	}
	if got := e.sfn.started(); !slices.Equal(got, []string{orig, retry}) {
		t.Errorf("executions %v, want the original's and the retry's", got)
	}
}

func TestHandleIgnored(t *testing.T) {
	tests := []struct {
		name   string
		change map[string]any
		want   string // in the reason
	}{
		{"another event type", map[string]any{"detail-type": "Object Deleted"}, "not an S3 Object Created event"},
		{"another source", map[string]any{"source": "aws.s3-like"}, "not an S3 Object Created event"},
		{"another bucket", map[string]any{"bucket": "someone-elses-bucket"}, "is not the invoice bucket"},
		{"outside the inbox", map[string]any{"key": "api/api-aaaaaaaaaaaaaaaaaaaaaaaaaa.xml"}, "outside the inbox"},
		{"a result", map[string]any{"key": "results/inbox/a.xml.upo.xml"}, "outside the inbox"},
		{"not XML", map[string]any{"key": "inbox/invoice.pdf"}, "does not end in .xml"},
		{"a folder", map[string]any{"key": "inbox/2026.xml/"}, "does not end in .xml"},
		{"an inbox-like prefix", map[string]any{"key": "inbox2/a.xml"}, "outside the inbox"},
		{"broken key encoding", map[string]any{"key": "inbox/a%zz.xml"}, "not URL-encoded"},
		{"malformed detail", map[string]any{"size": "large"}, "malformed event detail"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			out := e.handle(t, event(t, tt.change))
			if out.Action != actionIgnored || !strings.Contains(out.Reason, tt.want) {
				t.Errorf("outcome %+v, want ignored because %q", out, tt.want)
			}
			if len(e.s3.gets) != 0 || len(e.s3.puts) != 0 || e.sfn.calls != 0 || len(e.events.events) != 0 {
				t.Errorf("an ignored event read %v, stored %v, started %d, published %v", e.s3.gets, e.s3.puts, e.sfn.calls, e.events.events)
			}
		})
	}
}

func TestHandleUpperCaseSuffix(t *testing.T) {
	e := newEnv(t)
	e.s3.put("inbox/FAKTURA.XML", "v1", sample(t))
	if out := e.handle(t, event(t, map[string]any{"key": "inbox/FAKTURA.XML", "version-id": "v1"})); out.Action != actionStarted {
		t.Errorf("outcome %+v, want started", out)
	}
}

// TestHandleEncodedKey: S3 URL-encodes the key in its events; the object is read, recorded and
// sent under its real key, here in a folder named after the stack's NIP.
func TestHandleEncodedKey(t *testing.T) {
	e := newEnv(t)
	e.h.nip = "5265877635"
	real := "inbox/5265877635/Faktura lutowa (2) nr+1.xml"
	const v = "Lx3f0q9T2y8uRz.Wb7kVd1HcN5sA4mPe"
	e.s3.put(real, v, sample(t))
	id := ledger.ObjectID(bucket, real, v)
	out := e.handle(t, eventFile(t, "object-created-encoded-key.json", nil))
	if out.Action != actionStarted || out.InvoiceID != id {
		t.Fatalf("outcome %+v, want started as %s", out, id)
	}
	if !slices.Equal(e.s3.gets, []string{real + "@" + v}) {
		t.Errorf("read %v, want the decoded key", e.s3.gets)
	}
	in := e.sfn.input(t, id)
	if in.Invoice.Key != real || in.NIP != "5265877635" {
		t.Errorf("execution input %+v, want the decoded key and the stack's NIP", in)
	}
	if inv := e.invoice(t, id); inv.Object.Key != real || inv.NIP != "5265877635" {
		t.Errorf("ledger item %+v", inv)
	}
}

func TestHandleInvalid(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(e *env)
		change  map[string]any
		wantNIP string
		want    string // in the reason
		reads   int
	}{
		{"too large, by the event", nil, map[string]any{"size": maxInvoiceBytes + 1}, stackNIP, "3000001 bytes; KSeF accepts at most 3000000", 0},
		{"too large, by the object", func(e *env) { e.s3.length[key+"@"+version] = maxInvoiceBytes + 10 }, nil, stackNIP, "3000010 bytes", 1},
		{"another NIP's folder", func(e *env) { e.s3.put("inbox/5265877635/a.xml", version, sample(t)) }, map[string]any{"key": "inbox/5265877635/a.xml"},
			"5265877635", "this stack sends for NIP 9999999999 only, and the folder inbox/5265877635/ names NIP 5265877635", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.setup != nil {
				tt.setup(e)
			}
			k := key
			if s, ok := tt.change["key"].(string); ok {
				k = s
			}
			id := ledger.ObjectID(bucket, k, version)
			ev := event(t, tt.change)
			out := e.handle(t, ev)
			if out.Action != actionInvalid || out.InvoiceID != id || !strings.Contains(out.Reason, tt.want) {
				t.Errorf("outcome %+v, want invalid because %q", out, tt.want)
			}
			reportKey := "results/" + k + ".error.json"
			inv := e.invoice(t, id)
			if inv.Status != ledger.StatusInvalid || inv.NIP != tt.wantNIP || inv.ResultKey != reportKey || inv.Reason == nil || inv.Reason.Stage != "ingest" {
				t.Errorf("ledger item %+v", inv)
			}
			var r results.Report
			e.s3.stored(t, reportKey, &r)
			if r.Status != "invalid" || r.Error != "BadInputError" || !strings.Contains(r.Reason.Message, tt.want) || r.InvoiceID != id || r.Invoice.Key != k || r.NIP != tt.wantNIP {
				t.Errorf("report %+v", r)
			}
			if len(e.events.events) != 1 {
				t.Fatalf("events %v, want one InvoiceRejected", e.events.events)
			}
			ev0 := e.events.events[0]
			b, err := json.Marshal(ev0)
			if err != nil {
				t.Fatal(err)
			}
			if err := ledgertest.ValidateDetail(t, b); err != nil {
				t.Errorf("event does not match docs/events.schema.json: %v\n%s", err, b)
			}
			if ev0.DetailType() != ledger.DetailTypeRejected || ev0.Status != ledger.StatusInvalid || ev0.ResultKey != reportKey {
				t.Errorf("event %+v", ev0)
			}
			if len(e.s3.gets) != tt.reads || e.sfn.calls != 0 {
				t.Errorf("read %v, started %d; want %d reads and no execution", e.s3.gets, e.sfn.calls, tt.reads)
			}
			// A repeated delivery completes the same record (report and event again), nothing more.
			if out := e.handle(t, ev); out.Action != actionInvalid {
				t.Errorf("repeated delivery: %+v", out)
			}
			if len(e.events.events) != 2 || e.sfn.calls != 0 {
				t.Errorf("after a repeated delivery: %d events, %d starts", len(e.events.events), e.sfn.calls)
			}
		})
	}
}

// TestHandleTransientFailures: what may succeed later is an error, so that EventBridge and
// Lambda retry the event (and park it in the dead-letter queue in the end); the retry finishes
// the work.
func TestHandleTransientFailures(t *testing.T) {
	slowDown := &smithy.GenericAPIError{Code: "SlowDown", Message: "Please reduce your request rate."}
	t.Run("S3 read failing", func(t *testing.T) {
		e := newEnv(t)
		e.s3.getErr = slowDown
		if _, err := e.h.Handle(t.Context(), event(t, nil)); !errors.As(err, new(*smithy.GenericAPIError)) {
			t.Fatalf("error %v, want S3's", err)
		}
		if _, err := e.ledger.Get(t.Context(), ledger.ObjectID(bucket, key, version)); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("ledger item after a failed read: %v", err)
		}
		e.s3.getErr = nil
		if out := e.handle(t, event(t, nil)); out.Action != actionStarted {
			t.Errorf("retry: %+v", out)
		}
	})
	t.Run("object version gone", func(t *testing.T) {
		e := newEnv(t)
		if _, err := e.h.Handle(t.Context(), event(t, map[string]any{"version-id": "deleted-for-good"})); err == nil || !strings.Contains(err.Error(), "NoSuchVersion") {
			t.Errorf("error %v, want NoSuchVersion (the event goes to the dead-letter queue)", err)
		}
	})
	t.Run("StartExecution failing", func(t *testing.T) {
		e := newEnv(t)
		e.sfn.startErr = &smithy.GenericAPIError{Code: "ThrottlingException", Message: "Rate exceeded"}
		id := ledger.ObjectID(bucket, key, version)
		if _, err := e.h.Handle(t.Context(), event(t, nil)); err == nil {
			t.Fatal("no error")
		}
		if inv := e.invoice(t, id); inv.Status != ledger.StatusReceived {
			t.Errorf("ledger item %+v, want received", inv)
		}
		e.sfn.startErr = nil
		if out := e.handle(t, event(t, nil)); out.Action != actionAlreadyStarted || len(e.sfn.started()) != 1 {
			t.Errorf("retry: %+v, executions %v", out, e.sfn.started())
		}
	})
	t.Run("notice not stored", func(t *testing.T) {
		e := newEnv(t)
		e.handle(t, event(t, nil))
		copyKey := "inbox/copy.xml"
		e.s3.put(copyKey, "v1", sample(t))
		e.s3.putErr = slowDown
		if _, err := e.h.Handle(t.Context(), event(t, map[string]any{"key": copyKey, "version-id": "v1"})); err == nil {
			t.Fatal("no error")
		}
		e.s3.putErr = nil
		if out := e.handle(t, event(t, map[string]any{"key": copyKey, "version-id": "v1"})); out.Action != actionDuplicateUpload {
			t.Errorf("retry: %+v", out)
		}
		var n results.DuplicateNotice
		e.s3.stored(t, "results/"+copyKey+".result.json", &n)
	})
	t.Run("event not published", func(t *testing.T) {
		e := newEnv(t)
		e.events.err = errors.New("PutEvents: InternalFailure")
		if _, err := e.h.Handle(t.Context(), event(t, map[string]any{"size": maxInvoiceBytes + 1})); err == nil {
			t.Fatal("no error")
		}
		e.events.err = nil
		e.handle(t, event(t, map[string]any{"size": maxInvoiceBytes + 1}))
		if len(e.events.events) != 1 {
			t.Errorf("events %v after the retry, want one", e.events.events)
		}
	})
	t.Run("execution with another input", func(t *testing.T) {
		e := newEnv(t)
		id := ledger.ObjectID(bucket, key, version)
		e.sfn.executions[id] = &fakeExecution{input: `{"nip":"5265877635"}`, ended: true}
		_, err := e.h.Handle(t.Context(), event(t, nil))
		if err == nil || !strings.Contains(err.Error(), "another input") {
			t.Errorf("error %v, want the conflict surfaced", err)
		}
	})
}

func TestExecutionARN(t *testing.T) {
	got := executionARN("arn:aws-cn:states:cn-north-1:123456789012:stateMachine:invoices", "s3-abc")
	if want := "arn:aws-cn:states:cn-north-1:123456789012:execution:invoices:s3-abc"; got != want {
		t.Errorf("executionARN = %s, want %s", got, want)
	}
}

// TestNoInvoiceInLogs: the logs name objects and ids, never the invoice's content.
func TestNoInvoiceInLogs(t *testing.T) {
	e := newEnv(t)
	e.handle(t, event(t, nil))
	if strings.Contains(e.logs.String(), "Faktura") || strings.Contains(e.logs.String(), "FV2026/02/150") {
		t.Errorf("logs reveal invoice content:\n%s", e.logs.String())
	}
}
