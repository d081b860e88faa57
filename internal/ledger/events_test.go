package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger/ledgertest"
)

type fakeEvents struct {
	entries []ebtypes.PutEventsRequestEntry
	failed  bool
	err     error
}

func (f *fakeEvents) PutEvents(_ context.Context, in *eventbridge.PutEventsInput, _ ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	f.entries = append(f.entries, in.Entries...)
	if f.failed {
		return &eventbridge.PutEventsOutput{FailedEntryCount: 1, Entries: []ebtypes.PutEventsResultEntry{{ErrorCode: aws.String("InternalFailure"), ErrorMessage: aws.String("try again")}}}, nil
	}
	return &eventbridge.PutEventsOutput{Entries: []ebtypes.PutEventsResultEntry{{EventId: aws.String("e-1")}}}, nil
}

func TestPublish(t *testing.T) {
	obj := flow.S3Object{Bucket: bucket, Key: "inbox/a.xml", VersionID: "v1"}
	acquired := time.Date(2026, 3, 2, 10, 0, 3, 120_000_000, time.UTC)
	accepted := &Invoice{ID: ObjectID(bucket, obj.Key, obj.VersionID), NIP: nip, Source: SourceS3, Object: obj, InvoiceHash: hashA,
		InvoiceNumber: "FV2026/02/150", Status: StatusAccepted, KSeFNumber: ksefNumber, AcquisitionDate: acquired,
		SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef, ResultKey: "results/inbox/a.xml.result.json", UPOKey: "results/inbox/a.xml.upo.xml",
		Reason: &Reason{Message: "stale, from an earlier failure"}}
	reconciled := &Invoice{ID: accepted.ID, NIP: nip, Source: SourceAPI, Object: obj, Status: StatusAccepted, KSeFNumber: ksefNumber, Reconciled: true,
		SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef, ResultKey: "results/inbox/a.xml.result.json"}
	rejected := &Invoice{ID: accepted.ID, NIP: nip, Source: SourceS3, Object: obj, Status: StatusRejected, InvoiceNumber: "FV2026/02/150",
		SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef, ResultKey: "results/inbox/a.xml.error.json",
		Reason: &Reason{Stage: "ksef", Code: 450, Message: "KSeF rejected the invoice", Details: []string{"Element P_15: brak."}}}
	invalidNoNIP := &Invoice{ID: accepted.ID, Source: SourceS3, Object: obj, Status: StatusInvalid, ResultKey: "results/inbox/a.xml.error.json",
		Reason: &Reason{Stage: "ingest", Message: "no NIP"}}

	for _, tt := range []struct {
		name           string
		inv            *Invoice
		wantDetailType string
		check          func(t *testing.T, d map[string]any)
	}{
		{"accepted", accepted, DetailTypeAccepted, func(t *testing.T, d map[string]any) {
			if d["ksefNumber"] != ksefNumber || d["acquisitionDate"] != "2026-03-02T10:00:03.12Z" || d["reason"] != nil || d["reconciled"] != nil {
				t.Errorf("detail %v", d)
			}
		}},
		{"reconciled", reconciled, DetailTypeAccepted, func(t *testing.T, d map[string]any) {
			if d["reconciled"] != true || d["acquisitionDate"] != nil || d["source"] != "api" {
				t.Errorf("detail %v", d)
			}
		}},
		{"rejected", rejected, DetailTypeRejected, func(t *testing.T, d map[string]any) {
			r, _ := d["reason"].(map[string]any)
			if r["code"] != float64(450) || r["stage"] != "ksef" || d["ksefNumber"] != nil {
				t.Errorf("detail %v", d)
			}
		}},
		{"invalid without a NIP", invalidNoNIP, DetailTypeRejected, func(t *testing.T, d map[string]any) {
			if d["nip"] != "" || d["status"] != "invalid" {
				t.Errorf("detail %v", d)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeEvents{}
			p := NewPublisher(f, "ksef-invoices")
			if err := p.Publish(t.Context(), EventOf(tt.inv, t0)); err != nil {
				t.Fatal(err)
			}
			if len(f.entries) != 1 {
				t.Fatalf("%d entries, want 1", len(f.entries))
			}
			e := f.entries[0]
			if aws.ToString(e.EventBusName) != "ksef-invoices" || aws.ToString(e.Source) != EventSource ||
				aws.ToString(e.DetailType) != tt.wantDetailType || !aws.ToTime(e.Time).Equal(t0) {
				t.Errorf("entry bus %s source %s detail-type %s time %v", aws.ToString(e.EventBusName), aws.ToString(e.Source), aws.ToString(e.DetailType), e.Time)
			}
			detail := []byte(aws.ToString(e.Detail))
			if err := ledgertest.ValidateDetail(t, detail); err != nil {
				t.Errorf("detail does not match docs/events.schema.json: %v\n%s", err, detail)
			}
			var d map[string]any
			if err := json.Unmarshal(detail, &d); err != nil {
				t.Fatal(err)
			}
			if d["invoiceId"] != tt.inv.ID || d["schemaVersion"] != "1" || d["occurredAt"] != "2026-03-02T10:00:00Z" {
				t.Errorf("detail %v", d)
			}
			tt.check(t, d)
		})
	}

	t.Run("failures", func(t *testing.T) {
		boom := errors.New("connection reset")
		if err := NewPublisher(&fakeEvents{err: boom}, "b").Publish(t.Context(), EventOf(accepted, t0)); !errors.Is(err, boom) {
			t.Errorf("error %v, want the PutEvents error", err)
		}
		err := NewPublisher(&fakeEvents{failed: true}, "b").Publish(t.Context(), EventOf(accepted, t0))
		if err == nil || !strings.Contains(err.Error(), "InternalFailure") {
			t.Errorf("error %v, want the failed entry's code", err)
		}
	})
}

// TestSchemaRejects shows that the schema catches what it is there to catch.
func TestSchemaRejects(t *testing.T) {
	good := EventOf(&Invoice{ID: ObjectID(bucket, "k", "v"), NIP: nip, Status: StatusAccepted, KSeFNumber: ksefNumber,
		Object: flow.S3Object{Bucket: bucket, Key: "k"}}, t0)
	b, _ := json.Marshal(good)
	if err := ledgertest.ValidateDetail(t, b); err != nil {
		t.Fatalf("a minimal accepted event does not validate: %v", err)
	}
	for name, mutate := range map[string]func(d map[string]any){
		"undocumented field":           func(d map[string]any) { d["colour"] = "red" },
		"accepted without KSeF number": func(d map[string]any) { delete(d, "ksefNumber") },
		"accepted with a reason":       func(d map[string]any) { d["reason"] = map[string]any{"message": "x"} },
		"rejected without a reason":    func(d map[string]any) { d["status"] = "rejected" },
		"unknown status":               func(d map[string]any) { d["status"] = "pending" },
		"bad invoice id":               func(d map[string]any) { d["invoiceId"] = "INV-1" },
		"bad time":                     func(d map[string]any) { d["occurredAt"] = "yesterday" },
		"accepted without a NIP":       func(d map[string]any) { d["nip"] = "" },
		"invoice without its key":      func(d map[string]any) { d["invoice"] = map[string]any{"bucket": bucket} },
		"malformed reference number":   func(d map[string]any) { d["sessionReferenceNumber"] = "ref-1" },
		"wrong schema version":         func(d map[string]any) { d["schemaVersion"] = "2" },
		"reason without its message": func(d map[string]any) {
			d["status"] = "failed"
			delete(d, "ksefNumber")
			d["reason"] = map[string]any{"code": 1}
		},
		"invoice hash of another shape": func(d map[string]any) { d["invoiceHash"] = "abc" },
	} {
		var d map[string]any
		_ = json.Unmarshal(b, &d)
		mutate(d)
		bad, _ := json.Marshal(d)
		if ledgertest.ValidateDetail(t, bad) == nil {
			t.Errorf("%s: validates: %s", name, bad)
		}
	}
}

// TestDocumentedExamples validates the example events of docs/events.md against the schema.
func TestDocumentedExamples(t *testing.T) {
	md, err := os.ReadFile("../../docs/events.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(md, -1)
	n := 0
	for _, b := range blocks {
		var ev struct {
			DetailType any             `json:"detail-type"`
			Source     any             `json:"source"`
			Detail     json.RawMessage `json:"detail"`
		}
		if err := json.Unmarshal(b[1], &ev); err != nil {
			t.Fatalf("docs/events.md: a json block does not parse: %v\n%s", err, b[1])
		}
		detailType, isEvent := ev.DetailType.(string)
		if !isEvent {
			continue // a rule's event pattern
		}
		n++
		if ev.Source != EventSource {
			t.Errorf("example %s: source %v", detailType, ev.Source)
		}
		if err := ledgertest.ValidateDetail(t, ev.Detail); err != nil {
			t.Errorf("example %s does not match the schema: %v", detailType, err)
		}
		var d Event
		if err := json.Unmarshal(ev.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if d.DetailType() != detailType {
			t.Errorf("example %s has status %s", detailType, d.Status)
		}
	}
	if n != 2 {
		t.Errorf("%d example events checked, want 2", n)
	}
}
