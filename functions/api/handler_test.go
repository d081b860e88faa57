package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

const (
	nip             = "9999999999" // the seller of the official sample invoice FA_3_Przyklad_1.xml
	bucket          = "ksef-invoices-123456789012"
	stateMachineARN = "arn:aws:states:eu-central-1:123456789012:stateMachine:ksef-invoices"
	apiURL          = "https://abcdef1234.execute-api.eu-central-1.amazonaws.com"

	// The Idempotency-Key of testdata/post_invoice.json and the invoice id it makes with nip.
	idemKey = "7d4c1f0e-2f9b-4c4e-9a51-6f0e8e2b1c3a"
	keyedID = "api-p45rqk4u6b3aaknz3trgnk6d6a"

	// The sample's invoiceHash (PROTOCOL.md, self-computed test vectors).
	sampleHash = "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA="
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

// otherInvoice is the sample with another invoice number: another valid invoice.
func otherInvoice(t *testing.T) []byte {
	t.Helper()
	b := bytes.Replace(sample(t), []byte("<P_2>FV2026/02/150</P_2>"), []byte("<P_2>FV2026/02/151</P_2>"), 1)
	if bytes.Equal(b, sample(t)) {
		t.Fatal("sample has no P_2 FV2026/02/150")
	}
	return b
}

func loadEvent(t *testing.T, name string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var ev events.APIGatewayV2HTTPRequest
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return ev
}

// absent, as a header value for postEvent, removes the header.
const absent = "\x00absent"

// postEvent is testdata/post_invoice.json with another body (plain text, if not nil) and
// headers changed.
func postEvent(t *testing.T, body []byte, headers map[string]string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	ev := loadEvent(t, "post_invoice.json")
	if body != nil {
		ev.Body = string(body)
	}
	for k, v := range headers {
		if v == absent {
			delete(ev.Headers, k)
		} else {
			ev.Headers[k] = v
		}
	}
	return ev
}

func getEvent(t *testing.T, id string) events.APIGatewayV2HTTPRequest {
	t.Helper()
	ev := loadEvent(t, "get_invoice.json")
	ev.PathParameters["id"] = id
	ev.RawPath = "/invoices/" + id
	ev.RequestContext.HTTP.Path = ev.RawPath
	return ev
}

type fixture struct {
	h       *handler
	ledger  *fakeLedger
	s3      *fakeS3
	sfn     *fakeSFN
	presign *fakePresigner
	logs    *syncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	now := func() time.Time { return t0 }
	f := &fixture{
		ledger:  newFakeLedger(now),
		s3:      newFakeS3(),
		sfn:     newFakeSFN(stateMachineARN),
		presign: &fakePresigner{signedAt: t0},
		logs:    &syncBuffer{},
	}
	f.h = &handler{
		nip:          nip,
		bucket:       bucket,
		stateMachine: stateMachineARN,
		ledger:       f.ledger,
		objects:      f.s3,
		presign:      f.presign,
		executions:   f.sfn,
		now:          now,
		log:          slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() { checkLogs(t, f.logs.String()) })
	return f
}

// checkLogs fails the test if the logs hold invoice content, the Idempotency-Key or
// authorization material.
func checkLogs(t *testing.T, logs string) {
	t.Helper()
	for _, secret := range []string{"<?xml", "Faktura", "ABC AGD", idemKey, "AWS4-HMAC-SHA256", "Signature=", "Bearer", "FIXTURE-NOT-A-SIGNATURE", "X-Amz-Signature"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
}

// call runs the handler on ev and checks the answer against api/openapi.yaml.
func (f *fixture) call(t *testing.T, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
	t.Helper()
	resp, err := f.h.Handle(t.Context(), ev)
	if err != nil {
		t.Fatalf("Handle returned an error: %v", err)
	}
	if resp.Headers["Content-Type"] != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", resp.Headers["Content-Type"])
	}
	if resp.Headers["Cache-Control"] != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", resp.Headers["Cache-Control"])
	}
	checkResponse(t, &ev, &resp)
	return resp
}

type errorBody struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		Problem   string `json:"problem"`
		InvoiceID string `json:"invoiceId"`
		StatusURL string `json:"statusUrl"`
	} `json:"error"`
}

// wantError checks that resp is the error status with the code, and returns its body.
func wantError(t *testing.T, resp events.APIGatewayV2HTTPResponse, status int, code string) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(resp.Body), &e); err != nil {
		t.Fatalf("error body %q: %v", resp.Body, err)
	}
	if resp.StatusCode != status || e.Error.Code != code {
		t.Fatalf("got %d %q, want %d %q; body %s", resp.StatusCode, e.Error.Code, status, code, resp.Body)
	}
	if e.Error.Message == "" {
		t.Errorf("error without a message: %s", resp.Body)
	}
	return e
}

func wantSubmission(t *testing.T, resp events.APIGatewayV2HTTPResponse) submission {
	t.Helper()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202; body %s", resp.StatusCode, resp.Body)
	}
	var s submission
	if err := json.Unmarshal([]byte(resp.Body), &s); err != nil {
		t.Fatalf("body %q: %v", resp.Body, err)
	}
	if s.Status != "pending" || s.StatusURL != apiURL+"/invoices/"+s.InvoiceID || resp.Headers["Location"] != s.StatusURL {
		t.Errorf("got %+v, Location %q; want status pending and statusUrl = Location = %s/invoices/%s", s, resp.Headers["Location"], apiURL, s.InvoiceID)
	}
	return s
}

func executionInput(t *testing.T, id string) string {
	t.Helper()
	b, err := json.Marshal(flow.Input{NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: "api/" + id + ".xml"}, InvoiceID: id, Source: "api"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestKeyedIDFixture(t *testing.T) {
	if got := ledger.RequestID(nip, idemKey); got != keyedID {
		t.Fatalf("ledger.RequestID(%q, %q) = %q, want %q (testdata/get_invoice.json uses it)", nip, idemKey, got, keyedID)
	}
}

func TestSubmit(t *testing.T) {
	f := newFixture(t)
	resp := f.call(t, loadEvent(t, "post_invoice.json"))
	s := wantSubmission(t, resp)
	if s.InvoiceID != keyedID {
		t.Errorf("invoiceId = %q, want %q (derived from the NIP and the Idempotency-Key)", s.InvoiceID, keyedID)
	}

	key := "api/" + keyedID + ".xml"
	if objs := f.s3.objects(bucket, key); len(objs) != 1 || !bytes.Equal(objs[0], sample(t)) {
		t.Errorf("s3://%s/%s has %d versions, want 1 with the invoice's bytes", bucket, key, len(objs))
	}
	in := f.s3.inputs[0]
	if aws.ToString(in.IfNoneMatch) != "*" || aws.ToString(in.ContentType) != "application/xml" || aws.ToInt64(in.ContentLength) != int64(len(sample(t))) {
		t.Errorf("PutObject IfNoneMatch %q, ContentType %q, ContentLength %d; want *, application/xml, %d",
			aws.ToString(in.IfNoneMatch), aws.ToString(in.ContentType), aws.ToInt64(in.ContentLength), len(sample(t)))
	}

	inv, err := f.ledger.Get(t.Context(), keyedID)
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Invoice{
		ID: keyedID, NIP: nip, Source: ledger.SourceAPI, Object: flow.S3Object{Bucket: bucket, Key: key},
		InvoiceHash: sampleHash, InvoiceNumber: "FV2026/02/150", Status: ledger.StatusReceived, ExecutionName: keyedID,
		CreatedAt: t0, UpdatedAt: t0, Version: 1,
	}
	if !reflect.DeepEqual(*inv, want) {
		t.Errorf("ledger item\n got %+v\nwant %+v", *inv, want)
	}
	if got, want := f.sfn.executions(), map[string]string{keyedID: executionInput(t, keyedID)}; !reflect.DeepEqual(got, want) {
		t.Errorf("executions %v, want %v", got, want)
	}
	if !strings.Contains(f.logs.String(), `"invoiceId":"`+keyedID+`"`) || !strings.Contains(f.logs.String(), `"caller":"arn:aws:sts::123456789012:assumed-role/invoicing-web/invoicing-web"`) {
		t.Errorf("log line without the invoice id or the caller: %s", f.logs)
	}
}

func TestSubmitJWTBase64(t *testing.T) {
	f := newFixture(t)
	s := wantSubmission(t, f.call(t, loadEvent(t, "post_invoice_jwt.json")))
	if !ledger.ValidID(s.InvoiceID) || !strings.HasPrefix(s.InvoiceID, "api-") || s.InvoiceID == keyedID {
		t.Errorf("invoiceId = %q, want a random api- id", s.InvoiceID)
	}
	if objs := f.s3.objects(bucket, "api/"+s.InvoiceID+".xml"); len(objs) != 1 || !bytes.Equal(objs[0], sample(t)) {
		t.Errorf("stored %d versions, want 1 with the decoded invoice", len(objs))
	}
	if got := f.sfn.executions()[s.InvoiceID]; got != executionInput(t, s.InvoiceID) {
		t.Errorf("execution input %q, want %q", got, executionInput(t, s.InvoiceID))
	}
	if !strings.Contains(f.logs.String(), `"caller":"sub=b3f4a5d6-7e8f-4a0b-9c1d-2e3f4a5b6c7d client=4kq8v2example6n3p1s0clientid"`) {
		t.Errorf("log line without the JWT subject and client: %s", f.logs)
	}
}

func TestSubmitSizeLimit(t *testing.T) {
	// Whitespace after the root element keeps the invoice valid: exactly the limit passes.
	pad := func(n int) []byte {
		b := sample(t)
		return append(b, bytes.Repeat([]byte("\n"), n-len(b))...)
	}
	f := newFixture(t)
	wantSubmission(t, f.call(t, postEvent(t, pad(maxBodyBytes), map[string]string{"idempotency-key": "at-limit"})))

	wantError(t, f.call(t, postEvent(t, pad(maxBodyBytes+1), map[string]string{"idempotency-key": "over-limit"})), http.StatusRequestEntityTooLarge, codePayloadTooLarge)
	ev := postEvent(t, nil, map[string]string{"idempotency-key": "over-limit-b64"})
	ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(pad(maxBodyBytes+1)), true
	wantError(t, f.call(t, ev), http.StatusRequestEntityTooLarge, codePayloadTooLarge)
	if f.s3.total() != 1 || f.ledger.count() != 1 || len(f.sfn.executions()) != 1 {
		t.Errorf("objects %d, ledger items %d, executions %d; want 1 each (the invoice at the limit)", f.s3.total(), f.ledger.count(), len(f.sfn.executions()))
	}
}

func TestSubmitRefused(t *testing.T) {
	attachment := bytes.Replace(sample(t), []byte("</Faktura>"), []byte("<Zalacznik><BlokDanych><ZNaglowek>x</ZNaglowek></BlokDanych></Zalacznik></Faktura>"), 1)
	tests := []struct {
		name    string
		body    []byte
		headers map[string]string
		now     time.Time
		status  int
		code    string
		problem string
	}{
		{name: "no content type", headers: map[string]string{"content-type": absent}, status: 415, code: codeUnsupportedMediaType},
		{name: "empty content type", headers: map[string]string{"content-type": ""}, status: 415, code: codeUnsupportedMediaType},
		{name: "json", headers: map[string]string{"content-type": "application/json"}, status: 415, code: codeUnsupportedMediaType},
		{name: "octet stream", headers: map[string]string{"content-type": "application/octet-stream"}, status: 415, code: codeUnsupportedMediaType},
		{name: "latin2", headers: map[string]string{"content-type": "application/xml; charset=iso-8859-2"}, status: 415, code: codeUnsupportedMediaType},
		{name: "two types", headers: map[string]string{"content-type": "application/xml, text/xml"}, status: 415, code: codeUnsupportedMediaType},
		{name: "gzip", headers: map[string]string{"content-encoding": "gzip"}, status: 415, code: codeUnsupportedMediaType},
		{name: "empty", body: []byte{}, status: 400, code: codeEmptyBody},
		{name: "no key", headers: map[string]string{"idempotency-key": absent}, status: 202},
		{name: "empty key", headers: map[string]string{"idempotency-key": ""}, status: 400, code: codeInvalidKey},
		{name: "longest key", headers: map[string]string{"idempotency-key": strings.Repeat("k", 255)}, status: 202},
		{name: "identity encoding", headers: map[string]string{"content-encoding": "identity"}, status: 202},
		{name: "long key", headers: map[string]string{"idempotency-key": strings.Repeat("k", 256)}, status: 400, code: codeInvalidKey},
		{name: "non-ASCII key", headers: map[string]string{"idempotency-key": "faktura-źdźbło"}, status: 400, code: codeInvalidKey},
		{name: "control character in key", headers: map[string]string{"idempotency-key": "a\tb"}, status: 400, code: codeInvalidKey},
		{name: "not XML", body: []byte("hello"), status: 400, code: codeInvalidInvoice, problem: "malformed"},
		{name: "other seller", body: bytes.Replace(sample(t), []byte("<NIP>9999999999</NIP>"), []byte("<NIP>5265877635</NIP>"), 1), status: 400, code: codeInvalidInvoice, problem: "seller-nip"},
		{name: "issued tomorrow", now: time.Date(2026, 2, 14, 12, 0, 0, 0, time.UTC), status: 400, code: codeInvalidInvoice, problem: "future-date"},
		{name: "BOM", body: append([]byte("\xef\xbb\xbf"), sample(t)...), status: 400, code: codeInvalidInvoice, problem: "bom"},
		{name: "attachment", body: attachment, status: 400, code: codeInvalidInvoice, problem: problemAttachment},
		{name: "charset UTF-8 and text/xml", headers: map[string]string{"content-type": "text/xml;charset=\"UTF-8\""}, status: 202},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if !tt.now.IsZero() {
				f.h.now = func() time.Time { return tt.now }
			}
			resp := f.call(t, postEvent(t, tt.body, tt.headers))
			if tt.status == http.StatusAccepted {
				wantSubmission(t, resp)
				return
			}
			e := wantError(t, resp, tt.status, tt.code)
			if e.Error.Problem != tt.problem {
				t.Errorf("problem = %q, want %q", e.Error.Problem, tt.problem)
			}
			if f.s3.total() != 0 || f.ledger.count() != 0 || f.sfn.calls != 0 {
				t.Errorf("refused invoice left %d objects, %d ledger items, %d StartExecution calls", f.s3.total(), f.ledger.count(), f.sfn.calls)
			}
		})
	}
}

func TestSubmitRetried(t *testing.T) {
	f := newFixture(t)
	first := f.call(t, loadEvent(t, "post_invoice.json"))
	again := f.call(t, loadEvent(t, "post_invoice.json"))
	if !reflect.DeepEqual(first, again) {
		t.Errorf("retry answered\n%+v\nwant the first answer\n%+v", again, first)
	}
	// While the invoice is received (its execution may not have started yet), a retry repeats
	// the idempotent steps: the conditional write is refused, StartExecution is a no-op.
	if f.s3.total() != 1 || f.ledger.count() != 1 || len(f.sfn.executions()) != 1 {
		t.Errorf("objects %d, ledger items %d, executions %d; want 1 each", f.s3.total(), f.ledger.count(), len(f.sfn.executions()))
	}
	calls := len(f.s3.inputs) + f.sfn.calls

	// Once the pipeline has moved on, a retry gets the same answer and calls nothing.
	inv, _ := f.ledger.Get(t.Context(), keyedID)
	inv.Status, inv.KSeFNumber = ledger.StatusAccepted, "9999999999-20260302-0100001AF629-AF"
	f.ledger.put(*inv)
	if late := f.call(t, loadEvent(t, "post_invoice.json")); !reflect.DeepEqual(late, first) {
		t.Errorf("late retry answered %+v, want %+v", late, first)
	}
	if got := len(f.s3.inputs) + f.sfn.calls; got != calls {
		t.Errorf("late retry called S3 or Step Functions %d times, want 0", got-calls)
	}
}

func TestSubmitKeyReused(t *testing.T) {
	f := newFixture(t)
	wantSubmission(t, f.call(t, loadEvent(t, "post_invoice.json")))
	if e := wantError(t, f.call(t, postEvent(t, otherInvoice(t), nil)), http.StatusConflict, codeKeyReused); e.Error.InvoiceID != keyedID {
		t.Errorf("key reuse names %q, want the key's invoice %q", e.Error.InvoiceID, keyedID)
	}
	if f.s3.total() != 1 || f.ledger.count() != 1 || len(f.sfn.executions()) != 1 {
		t.Errorf("objects %d, ledger items %d, executions %d; want 1 each", f.s3.total(), f.ledger.count(), len(f.sfn.executions()))
	}
	if objs := f.s3.objects(bucket, "api/"+keyedID+".xml"); len(objs) != 1 || !bytes.Equal(objs[0], sample(t)) {
		t.Error("the first invoice's object changed")
	}
}

func TestSubmitDuplicateContent(t *testing.T) {
	f := newFixture(t)
	wantSubmission(t, f.call(t, loadEvent(t, "post_invoice.json")))
	for _, key := range []string{"another-key", absent} {
		e := wantError(t, f.call(t, postEvent(t, nil, map[string]string{"idempotency-key": key})), http.StatusConflict, codeDuplicateInvoice)
		if e.Error.InvoiceID != keyedID || e.Error.StatusURL != apiURL+"/invoices/"+keyedID {
			t.Errorf("key %q: duplicate names %q at %q, want %q at %s/invoices/%s", key, e.Error.InvoiceID, e.Error.StatusURL, keyedID, apiURL, keyedID)
		}
	}
	// Another invoice is taken in as usual.
	wantSubmission(t, f.call(t, postEvent(t, otherInvoice(t), map[string]string{"idempotency-key": "second"})))
	if f.s3.total() != 2 || f.ledger.count() != 2 || len(f.sfn.executions()) != 2 {
		t.Errorf("objects %d, ledger items %d, executions %d; want 2 each", f.s3.total(), f.ledger.count(), len(f.sfn.executions()))
	}
}

// A request that stopped after the ledger write is finished by its retry, with or without a key.
func TestSubmitResumes(t *testing.T) {
	throttled := sdkError("SFN", "StartExecution", 400, "ThrottlingException", "Rate exceeded")
	s3Down := sdkError("S3", "PutObject", 500, "InternalError", "We encountered an internal error. Please try again.")

	t.Run("keyed, execution not started", func(t *testing.T) {
		f := newFixture(t)
		f.sfn.failures = []error{throttled}
		resp := f.call(t, loadEvent(t, "post_invoice.json"))
		wantError(t, resp, http.StatusServiceUnavailable, codeUnavailable)
		if resp.Headers["Retry-After"] != "1" {
			t.Errorf("Retry-After = %q, want 1", resp.Headers["Retry-After"])
		}
		if s := wantSubmission(t, f.call(t, loadEvent(t, "post_invoice.json"))); s.InvoiceID != keyedID {
			t.Errorf("retry answered %q, want %q", s.InvoiceID, keyedID)
		}
		if f.s3.total() != 1 || len(f.s3.inputs) != 2 || len(f.sfn.executions()) != 1 {
			t.Errorf("objects %d (PutObject calls %d), executions %d; want 1 object (2 calls, the second refused) and 1 execution",
				f.s3.total(), len(f.s3.inputs), len(f.sfn.executions()))
		}
		if !strings.Contains(f.logs.String(), "ThrottlingException") {
			t.Errorf("the 503's cause is not logged: %s", f.logs)
		}
	})

	t.Run("no key, object not stored", func(t *testing.T) {
		f := newFixture(t)
		f.s3.failures = []error{s3Down}
		ev := postEvent(t, nil, map[string]string{"idempotency-key": absent})
		wantError(t, f.call(t, ev), http.StatusServiceUnavailable, codeUnavailable)
		if f.ledger.count() != 1 || f.s3.total() != 0 || f.sfn.calls != 0 {
			t.Fatalf("after the failure: ledger items %d, objects %d, StartExecution calls %d; want 1, 0, 0", f.ledger.count(), f.s3.total(), f.sfn.calls)
		}
		var first string
		for id := range f.ledger.invoices {
			first = id
		}
		e := wantError(t, f.call(t, ev), http.StatusConflict, codeDuplicateInvoice)
		if e.Error.InvoiceID != first {
			t.Errorf("duplicate names %q, want the first request's %q", e.Error.InvoiceID, first)
		}
		if objs := f.s3.objects(bucket, "api/"+first+".xml"); len(objs) != 1 || !bytes.Equal(objs[0], sample(t)) {
			t.Errorf("the first request's invoice has %d stored versions, want 1", len(objs))
		}
		if got := f.sfn.executions()[first]; got != executionInput(t, first) {
			t.Errorf("the first request's execution has input %q, want %q", got, executionInput(t, first))
		}
		if f.ledger.count() != 1 {
			t.Errorf("ledger items %d, want 1", f.ledger.count())
		}
	})

	t.Run("execution finished", func(t *testing.T) {
		// The execution ran, but the ledger still says received: Step Functions answers
		// ExecutionAlreadyExists, which is success here.
		f := newFixture(t)
		f.sfn.failures = []error{throttled}
		wantError(t, f.call(t, loadEvent(t, "post_invoice.json")), http.StatusServiceUnavailable, codeUnavailable)
		f.sfn.inputs[keyedID] = executionInput(t, keyedID)
		f.sfn.finished[keyedID] = true
		wantSubmission(t, f.call(t, loadEvent(t, "post_invoice.json")))
		if !strings.Contains(f.logs.String(), `"executionStatus":"SUCCEEDED"`) {
			t.Errorf("no log of the finished execution: %s", f.logs)
		}
	})

	t.Run("execution with another input", func(t *testing.T) {
		// A bug elsewhere: surfaced as an internal error, not hidden behind a 202.
		f := newFixture(t)
		f.sfn.failures = []error{throttled}
		wantError(t, f.call(t, loadEvent(t, "post_invoice.json")), http.StatusServiceUnavailable, codeUnavailable)
		f.sfn.inputs[keyedID] = `{"nip":"9999999999","invoice":{"bucket":"elsewhere","key":"x.xml"}}`
		wantError(t, f.call(t, loadEvent(t, "post_invoice.json")), http.StatusInternalServerError, codeInternal)
		if !strings.Contains(f.logs.String(), "exists with another input") {
			t.Errorf("the cause is not logged: %s", f.logs)
		}
	})
}

// TestSubmitStorm sends the same request five times at once: one object, one ledger item, one
// execution, and five identical answers.
func TestSubmitStorm(t *testing.T) {
	f := newFixture(t)
	ev := loadEvent(t, "post_invoice.json")
	resps := storm(t, f.h, ev, 5)
	for i, r := range resps {
		checkResponse(t, &ev, &r)
		if !reflect.DeepEqual(r, resps[0]) {
			t.Errorf("answer %d = %+v, want %+v", i, r, resps[0])
		}
	}
	wantSubmission(t, resps[0])
	if f.s3.total() != 1 || f.ledger.count() != 1 || len(f.sfn.executions()) != 1 {
		t.Errorf("objects %d, ledger items %d, executions %d; want 1 each", f.s3.total(), f.ledger.count(), len(f.sfn.executions()))
	}
}

// storm runs n copies of ev through h concurrently.
func storm(t *testing.T, h *handler, ev events.APIGatewayV2HTTPRequest, n int) []events.APIGatewayV2HTTPResponse {
	t.Helper()
	resps := make([]events.APIGatewayV2HTTPResponse, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			resps[i], errs[i] = h.Handle(t.Context(), ev)
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Handle: %v", err)
	}
	return resps
}

func TestSubmitFailures(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(f *fixture)
		status int
		code   string
		cause  string // in the log
	}{
		{name: "ledger denied", status: 500, code: codeInternal, cause: "AccessDeniedException",
			setup: func(f *fixture) {
				f.ledger.err = sdkError("DynamoDB", "TransactWriteItems", 400, "AccessDeniedException", "not authorized to perform: dynamodb:TransactWriteItems")
			}},
		{name: "ledger throttled", status: 503, code: codeUnavailable, cause: "ProvisionedThroughputExceededException",
			setup: func(f *fixture) {
				f.ledger.err = sdkError("DynamoDB", "TransactWriteItems", 400, "ProvisionedThroughputExceededException", "throughput exceeded")
			}},
		{name: "no state machine", status: 500, code: codeInternal, cause: "StateMachineDoesNotExist",
			setup: func(f *fixture) { f.h.stateMachine = stateMachineARN + "-gone" }},
		{name: "conditional write conflict", status: 503, code: codeUnavailable, cause: "ConditionalRequestConflict",
			setup: func(f *fixture) {
				f.s3.failures = []error{sdkError("S3", "PutObject", 409, "ConditionalRequestConflict", "A conflicting conditional operation is currently in progress against this resource.")}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tt.setup(f)
			e := wantError(t, f.call(t, loadEvent(t, "post_invoice.json")), tt.status, tt.code)
			if strings.Contains(e.Error.Message, tt.cause) {
				t.Errorf("the message %q reveals the cause", e.Error.Message)
			}
			if !strings.Contains(f.logs.String(), tt.cause) || !strings.Contains(f.logs.String(), `"level":"ERROR"`) {
				t.Errorf("the cause %q is not logged as an error: %s", tt.cause, f.logs)
			}
		})
	}
}

// Close to the Lambda deadline, the handler still answers, with a JSON 503.
func TestSubmitNearDeadline(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(t.Context(), answerReserve/2)
	defer cancel()
	ev := loadEvent(t, "post_invoice.json")
	resp, err := f.h.Handle(ctx, ev)
	if err != nil {
		t.Fatal(err)
	}
	checkResponse(t, &ev, &resp)
	wantError(t, resp, http.StatusServiceUnavailable, codeUnavailable)
	if f.ledger.count() != 0 {
		t.Errorf("ledger items %d, want 0", f.ledger.count())
	}
}

func TestStatus(t *testing.T) {
	ksefNumber := "9999999999-20260302-0100001AF629-AF"
	acquired := time.Date(2026, 3, 2, 10, 0, 7, 123_000_000, time.UTC)
	base := ledger.Invoice{
		ID: keyedID, NIP: nip, Source: ledger.SourceAPI, Object: flow.S3Object{Bucket: bucket, Key: "api/" + keyedID + ".xml"},
		InvoiceHash: sampleHash, InvoiceNumber: "FV2026/02/150", ExecutionName: keyedID,
		CreatedAt: t0, UpdatedAt: t0.Add(9 * time.Second), Version: 3,
	}
	with := func(fn func(*ledger.Invoice)) ledger.Invoice {
		inv := base
		fn(&inv)
		return inv
	}
	accepted := with(func(inv *ledger.Invoice) {
		inv.Status, inv.KSeFNumber, inv.AcquisitionDate = ledger.StatusAccepted, ksefNumber, acquired
		inv.UPOKey, inv.ResultKey = "results/api/"+keyedID+".xml.upo.xml", "results/api/"+keyedID+".xml.result.json"
	})
	upoURL := "https://" + bucket + ".s3.eu-central-1.amazonaws.com/results/api/" + keyedID + ".xml.upo.xml?"
	tests := []struct {
		name   string
		stored []ledger.Invoice
		id     string
		want   string // JSON; upoUrl is compared by prefix
	}{
		{name: "received", stored: []ledger.Invoice{with(func(inv *ledger.Invoice) { inv.Status = ledger.StatusReceived })}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"pending","source":"api","invoiceNumber":"FV2026/02/150","createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "submitted", stored: []ledger.Invoice{with(func(inv *ledger.Invoice) {
			inv.Status, inv.SessionReferenceNumber = ledger.StatusSubmitted, "20260302-SO-2C3E6C8000-A1B2C3D4E5-7F"
		})}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"pending","source":"api","invoiceNumber":"FV2026/02/150","createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "accepted", stored: []ledger.Invoice{accepted}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"accepted","source":"api","invoiceNumber":"FV2026/02/150","ksefNumber":"` + ksefNumber +
				`","acquisitionDate":"2026-03-02T10:00:07.123Z","upoUrl":"` + upoURL + `","upoUrlExpiresAt":"2026-03-02T10:05:00Z","createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "accepted without UPO yet", stored: []ledger.Invoice{with(func(inv *ledger.Invoice) {
			inv.Status, inv.KSeFNumber, inv.AcquisitionDate = ledger.StatusAccepted, ksefNumber, acquired
		})}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"accepted","source":"api","invoiceNumber":"FV2026/02/150","ksefNumber":"` + ksefNumber +
				`","acquisitionDate":"2026-03-02T10:00:07.123Z","createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "reconciled duplicate", stored: []ledger.Invoice{with(func(inv *ledger.Invoice) {
			inv.Status, inv.KSeFNumber, inv.Reconciled = ledger.StatusAccepted, ksefNumber, true
		})}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"accepted","source":"api","invoiceNumber":"FV2026/02/150","ksefNumber":"` + ksefNumber +
				`","reconciled":true,"createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "rejected", stored: []ledger.Invoice{with(func(inv *ledger.Invoice) {
			inv.Status = ledger.StatusRejected
			inv.Reason = &ledger.Reason{Stage: "ksef", Code: 450, Message: "Błąd weryfikacji semantyki dokumentu faktury", Details: []string{"Nieprawidłowa kwota podatku"}}
		})}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"rejected","source":"api","invoiceNumber":"FV2026/02/150","reason":{"code":450,"message":"Błąd weryfikacji semantyki dokumentu faktury","details":["Nieprawidłowa kwota podatku"]},"createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "invalid", stored: []ledger.Invoice{with(func(inv *ledger.Invoice) {
			inv.Status = ledger.StatusInvalid
			inv.Reason = &ledger.Reason{Stage: "send", Message: "invoice rejected before sending: ksef: invalid invoice: issue date in the future"}
		})}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"rejected","source":"api","invoiceNumber":"FV2026/02/150","reason":{"message":"invoice rejected before sending: ksef: invalid invoice: issue date in the future"},"createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "failed without reason", stored: []ledger.Invoice{with(func(inv *ledger.Invoice) { inv.Status = ledger.StatusFailed })}, id: keyedID,
			want: `{"invoiceId":"` + keyedID + `","status":"failed","source":"api","invoiceNumber":"FV2026/02/150","reason":{"message":"no reason was recorded"},"createdAt":"2026-03-02T10:00:00Z","updatedAt":"2026-03-02T10:00:09Z"}`},
		{name: "duplicate upload", id: "s3-aaaaaaaaaaaaaaaaaaaaaaaaaa", stored: []ledger.Invoice{accepted, {
			ID: "s3-aaaaaaaaaaaaaaaaaaaaaaaaaa", NIP: nip, Source: ledger.SourceS3, Status: ledger.StatusDuplicateUpload, DuplicateOf: keyedID,
			Object: flow.S3Object{Bucket: bucket, Key: "inbox/FV150.xml", VersionID: "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"}, InvoiceHash: sampleHash,
			CreatedAt: t0.Add(time.Hour), UpdatedAt: t0.Add(time.Hour), Version: 1,
		}},
			want: `{"invoiceId":"s3-aaaaaaaaaaaaaaaaaaaaaaaaaa","status":"accepted","source":"s3","invoiceNumber":"FV2026/02/150","ksefNumber":"` + ksefNumber +
				`","duplicateOf":"` + keyedID + `","acquisitionDate":"2026-03-02T10:00:07.123Z","upoUrl":"` + upoURL + `","upoUrlExpiresAt":"2026-03-02T10:05:00Z","createdAt":"2026-03-02T11:00:00Z","updatedAt":"2026-03-02T11:00:00Z"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			for _, inv := range tt.stored {
				f.ledger.put(inv)
			}
			resp := f.call(t, getEvent(t, tt.id))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200; body %s", resp.StatusCode, resp.Body)
			}
			got := resp.Body
			if i := strings.Index(got, `"upoUrl":"`); i >= 0 {
				// Keep the URL up to its query: the signature part is the presigner's.
				start := i + len(`"upoUrl":"`)
				end := start + strings.Index(got[start:], `"`)
				u := got[start:end]
				for _, p := range []string{"X-Amz-Expires=300", "X-Amz-Date=20260302T100000Z"} {
					if !strings.Contains(u, p) {
						t.Errorf("upoUrl %q lacks %s", u, p)
					}
				}
				got = got[:start] + u[:strings.Index(u, "?")+1] + got[end:]
			}
			if got != tt.want {
				t.Errorf("body\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestStatusRefused(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"nope", "API-P45RQK4U6B3AAKNZ3TRGNK6D6A", "api-p45rqk4u6b3aaknz3trgnk6d6", "x-p45rqk4u6b3aaknz3trgnk6d6a"} {
		wantError(t, f.call(t, getEvent(t, id)), http.StatusBadRequest, codeInvalidID)
	}
	wantError(t, f.call(t, getEvent(t, keyedID)), http.StatusNotFound, codeNotFound)

	f.ledger.put(ledger.Invoice{ID: keyedID, Status: ledger.StatusAccepted, Source: ledger.SourceAPI, UPOKey: "results/x.upo.xml", CreatedAt: t0, UpdatedAt: t0})
	f.presign.err = errors.New("no credentials")
	wantError(t, f.call(t, getEvent(t, keyedID)), http.StatusInternalServerError, codeInternal)
}

// The status URL keeps the base path the request came through: a named stage, or a custom
// domain's API mapping.
func TestStatusURLBasePath(t *testing.T) {
	f := newFixture(t)
	ev := loadEvent(t, "post_invoice.json")
	ev.RawPath, ev.RequestContext.Stage = "/prod/invoices", "prod"
	ev.RequestContext.DomainName = "invoices.example.com"
	resp, err := f.h.Handle(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := resp.Headers["Location"], "https://invoices.example.com/prod/invoices/"+keyedID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
}

func TestUnknownRoute(t *testing.T) {
	f := newFixture(t)
	ev := loadEvent(t, "get_invoice.json")
	ev.RouteKey = "DELETE /invoices/{id}"
	resp, err := f.h.Handle(t.Context(), ev)
	if err != nil {
		t.Fatal(err)
	}
	wantError(t, resp, http.StatusNotFound, codeNotFound)
}

func TestLoadConfig(t *testing.T) {
	env := map[string]string{
		"KSEF_NIP": nip, "INVOICE_BUCKET": bucket, "LEDGER_TABLE": "ksef-ledger",
		"STATE_MACHINE_ARN": stateMachineARN, "S3_FORCE_PATH_STYLE": "true",
	}
	got, err := loadConfig(func(k string) string { return env[k] })
	want := config{NIP: nip, Bucket: bucket, LedgerTable: "ksef-ledger", StateMachine: stateMachineARN, S3PathStyle: true}
	if err != nil || got != want {
		t.Fatalf("loadConfig = %+v, %v; want %+v", got, err, want)
	}

	_, err = loadConfig(func(k string) string {
		if k == "KSEF_NIP" {
			return "123"
		}
		return ""
	})
	if err == nil {
		t.Fatal("loadConfig with a bad NIP and nothing else: no error")
	}
	for _, want := range []string{`KSEF_NIP "123"`, "INVOICE_BUCKET", "LEDGER_TABLE", "STATE_MACHINE_ARN"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
