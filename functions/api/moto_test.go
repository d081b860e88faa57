package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	ddbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/motoserver"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

type motoStack struct {
	h      *handler
	sfn    *fakeSFN
	s3     *s3.Client
	ddb    *dynamodb.Client
	ledger *ledger.Ledger
	bucket string
	table  string
	logs   *syncBuffer
}

// newMotoStack creates a versioned bucket and a ledger table in moto, named after the test, and
// the handler main would build for them, with a fake Step Functions.
func newMotoStack(t *testing.T) *motoStack {
	t.Helper()
	srv := motoserver.Start(t)
	cfg := motoserver.AWSConfig(t, srv.Endpoint)
	cfg.HTTPClient = motoserver.SerialHTTPClient()
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(t.Name()))
	st := &motoStack{bucket: "api-" + name, table: "ledger-" + name, sfn: newFakeSFN(stateMachineARN), logs: &syncBuffer{}}

	st.s3 = s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	ctx := t.Context()
	if _, err := st.s3.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket:                    aws.String(st.bucket),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(motoserver.Region)},
	}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	if _, err := st.s3.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(st.bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	}); err != nil {
		t.Fatalf("enable versioning: %v", err)
	}
	st.ddb = dynamodb.NewFromConfig(cfg)
	if _, err := st.ddb.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(st.table),
		AttributeDefinitions: []ddbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: ddbtypes.ScalarAttributeTypeS}},
		KeySchema:            []ddbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: ddbtypes.KeyTypeHash}},
		BillingMode:          ddbtypes.BillingModePayPerRequest,
	}); err != nil {
		t.Fatalf("create table: %v", err)
	}
	st.ledger = ledger.New(st.ddb, st.table)

	log := slog.New(slog.NewJSONHandler(st.logs, nil))
	st.h = newHandler(config{NIP: nip, Bucket: st.bucket, LedgerTable: st.table, StateMachine: stateMachineARN, S3PathStyle: true}, cfg, log)
	st.h.executions = st.sfn
	t.Cleanup(func() { checkLogs(t, st.logs.String()) })
	return st
}

// versions lists the versions of an object.
func (st *motoStack) versions(t *testing.T, key string) []s3types.ObjectVersion {
	t.Helper()
	out, err := st.s3.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: aws.String(st.bucket), Prefix: aws.String(key)})
	if err != nil {
		t.Fatalf("list object versions: %v", err)
	}
	return out.Versions
}

// items counts the ledger's items by kind.
func (st *motoStack) items(t *testing.T) map[string]int {
	t.Helper()
	out, err := st.ddb.Scan(t.Context(), &dynamodb.ScanInput{TableName: aws.String(st.table), ConsistentRead: aws.Bool(true)})
	if err != nil {
		t.Fatalf("scan ledger: %v", err)
	}
	kinds := map[string]int{}
	for _, it := range out.Items {
		k, _ := it["kind"].(*ddbtypes.AttributeValueMemberS)
		if k == nil {
			t.Fatalf("ledger item without kind: %v", it["pk"])
		}
		kinds[k.Value]++
	}
	return kinds
}

func (st *motoStack) object(t *testing.T, key string) []byte {
	t.Helper()
	out, err := st.s3.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(st.bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get s3://%s/%s: %v", st.bucket, key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (st *motoStack) call(t *testing.T, ev events.APIGatewayV2HTTPRequest) events.APIGatewayV2HTTPResponse {
	t.Helper()
	resp, err := st.h.Handle(t.Context(), ev)
	if err != nil {
		t.Fatalf("Handle: %v", err)
	}
	checkResponse(t, &ev, &resp)
	return resp
}

// TestMotoSubmitAndStatus takes an invoice in, lets the pipeline's steps record its acceptance
// in the ledger, and reads its status with a working UPO link.
func TestMotoSubmitAndStatus(t *testing.T) {
	st := newMotoStack(t)
	ctx := t.Context()
	s := wantSubmission(t, st.call(t, loadEvent(t, "post_invoice.json")))
	if s.InvoiceID != keyedID {
		t.Fatalf("invoiceId = %q, want %q", s.InvoiceID, keyedID)
	}
	key := "api/" + keyedID + ".xml"
	if got := st.object(t, key); !bytes.Equal(got, sample(t)) {
		t.Errorf("stored invoice differs from the one sent (%d bytes, want %d)", len(got), len(sample(t)))
	}
	if got := st.sfn.executions()[keyedID]; got != strings.ReplaceAll(executionInput(t, keyedID), bucket, st.bucket) {
		t.Errorf("execution input %s", got)
	}
	inv, err := st.ledger.Get(ctx, keyedID)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Status != ledger.StatusReceived || inv.Source != ledger.SourceAPI || inv.InvoiceHash != sampleHash || inv.Object.Key != key {
		t.Errorf("ledger item %+v, want received from api with the sample's hash at %s", inv, key)
	}
	wantStatus(t, st.call(t, getEvent(t, keyedID)), "pending")

	// What the send and poll functions record.
	upoKey := "results/" + key + ".upo.xml"
	upo := []byte(`<?xml version="1.0" encoding="UTF-8"?><Potwierdzenie>UPO fixture</Potwierdzenie>`)
	if _, err := st.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(st.bucket), Key: aws.String(upoKey), Body: bytes.NewReader(upo)}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.ledger.Transition(ctx, keyedID, ledger.Change{Status: ledger.StatusSubmitted,
		SessionReferenceNumber: "20260302-SO-2C3E6C8000-A1B2C3D4E5-7F", InvoiceReferenceNumber: "20260302-EE-2C3E6C8000-1A2B3C4D5E-11"}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, st.call(t, getEvent(t, keyedID)), "pending")
	acquired := time.Date(2026, 3, 2, 10, 0, 7, 0, time.UTC)
	if _, _, err := st.ledger.Transition(ctx, keyedID, ledger.Change{Status: ledger.StatusAccepted,
		KSeFNumber: "9999999999-20260302-0100001AF629-AF", AcquisitionDate: acquired, UPOKey: upoKey, ResultKey: "results/" + key + ".result.json"}); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Truncate(time.Second)
	got := wantStatus(t, st.call(t, getEvent(t, keyedID)), "accepted")
	if got.KSeFNumber != "9999999999-20260302-0100001AF629-AF" || !got.AcquisitionDate.Equal(acquired) {
		t.Errorf("ksefNumber %q, acquisitionDate %v", got.KSeFNumber, got.AcquisitionDate)
	}
	if exp := got.UPOURLExpiresAt; exp.Before(before.Add(upoURLLifetime)) || exp.After(time.Now().Add(upoURLLifetime)) {
		t.Errorf("upoUrlExpiresAt = %v, want 5 minutes from now", exp)
	}
	resp, err := http.Get(got.UPOURL) // a plain GET, as a browser would
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, upo) {
		t.Errorf("GET upoUrl: %d %q, want 200 and the UPO", resp.StatusCode, body)
	}
	u, _ := url.Parse(got.UPOURL)
	if u.Path != "/"+st.bucket+"/"+upoKey || u.Query().Get("X-Amz-Expires") != "300" {
		t.Errorf("upoUrl %s: want the UPO's path and X-Amz-Expires=300", got.UPOURL)
	}
}

func wantStatus(t *testing.T, resp events.APIGatewayV2HTTPResponse, status string) invoiceStatus {
	t.Helper()
	var s invoiceStatus
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", resp.StatusCode, resp.Body)
	}
	if err := json.Unmarshal([]byte(resp.Body), &s); err != nil {
		t.Fatal(err)
	}
	if s.Status != status {
		t.Fatalf("status %q, want %q; body %s", s.Status, status, resp.Body)
	}
	return s
}

// TestMotoStorm sends the same request five times at once, with and without an
// Idempotency-Key: one object, one ledger invoice, one execution.
func TestMotoStorm(t *testing.T) {
	for _, keyed := range []bool{true, false} {
		t.Run(fmt.Sprintf("keyed=%v", keyed), func(t *testing.T) {
			st := newMotoStack(t)
			ev := loadEvent(t, "post_invoice.json")
			if !keyed {
				delete(ev.Headers, "idempotency-key")
			}
			resps := storm(t, st.h, ev, 5)
			var id string
			accepted := 0
			for _, r := range resps {
				checkResponse(t, &ev, &r)
				switch r.StatusCode {
				case http.StatusAccepted:
					accepted++
					id = wantSubmission(t, r).InvoiceID
				case http.StatusConflict:
					if keyed {
						t.Errorf("keyed retry answered %s", r.Body)
					}
				default:
					t.Errorf("answer %d %s", r.StatusCode, r.Body)
				}
			}
			if keyed && accepted != 5 || !keyed && accepted != 1 {
				t.Fatalf("%d answers 202, want %v", accepted, map[bool]int{true: 5, false: 1}[keyed])
			}
			for _, r := range resps {
				if r.StatusCode == http.StatusConflict {
					if e := wantError(t, r, http.StatusConflict, codeDuplicateInvoice); e.Error.InvoiceID != id {
						t.Errorf("duplicate names %q, want %q", e.Error.InvoiceID, id)
					}
				}
			}
			if v := st.versions(t, "api/"); len(v) != 1 || aws.ToString(v[0].Key) != "api/"+id+".xml" {
				t.Errorf("object versions under api/: %d, want 1 of api/%s.xml", len(v), id)
			}
			wantItems := map[string]int{"invoice": 1, "content": 1}
			if keyed {
				wantItems["idempotency"] = 1
			}
			if got := st.items(t); fmt.Sprint(got) != fmt.Sprint(wantItems) {
				t.Errorf("ledger items by kind %v, want %v", got, wantItems)
			}
			if got := st.sfn.executions(); len(got) != 1 || got[id] == "" {
				t.Errorf("executions %v, want one named %s", got, id)
			}
		})
	}
}

// TestMotoConflicts checks the 409s against the real ledger.
func TestMotoConflicts(t *testing.T) {
	st := newMotoStack(t)
	wantSubmission(t, st.call(t, loadEvent(t, "post_invoice.json")))
	wantError(t, st.call(t, postEvent(t, otherInvoice(t), nil)), http.StatusConflict, codeKeyReused)
	e := wantError(t, st.call(t, postEvent(t, nil, map[string]string{"idempotency-key": "another"})), http.StatusConflict, codeDuplicateInvoice)
	if e.Error.InvoiceID != keyedID {
		t.Errorf("duplicate names %q, want %q", e.Error.InvoiceID, keyedID)
	}
	wantError(t, st.call(t, getEvent(t, "api-aaaaaaaaaaaaaaaaaaaaaaaaaa")), http.StatusNotFound, codeNotFound)

	// Content whose invoice failed is taken in again under the new request.
	if _, _, err := st.ledger.Transition(t.Context(), keyedID, ledger.Change{Status: ledger.StatusFailed,
		Reason: ledger.ReasonFrom(flow.Reason{Stage: "auth", Message: "KSeF unavailable"})}); err != nil {
		t.Fatal(err)
	}
	s := wantSubmission(t, st.call(t, postEvent(t, nil, map[string]string{"idempotency-key": "after-failure"})))
	if s.InvoiceID != ledger.RequestID(nip, "after-failure") {
		t.Errorf("invoiceId %q, want the new key's", s.InvoiceID)
	}
	failed := wantStatus(t, st.call(t, getEvent(t, keyedID)), "failed")
	if failed.Reason == nil || failed.Reason.Message != "KSeF unavailable" {
		t.Errorf("reason %+v, want the recorded one", failed.Reason)
	}
}
