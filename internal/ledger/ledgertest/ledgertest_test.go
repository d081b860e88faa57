package ledgertest_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger/ledgertest"
)

func TestValidateDetail(t *testing.T) {
	inv := &ledger.Invoice{
		ID:                     ledger.ObjectID("ksef-invoices-123456789012", "inbox/a.xml", "v1"),
		NIP:                    "9999999999",
		Source:                 ledger.SourceS3,
		Object:                 flow.S3Object{Bucket: "ksef-invoices-123456789012", Key: "inbox/a.xml", VersionID: "v1"},
		Status:                 ledger.StatusAccepted,
		KSeFNumber:             "9999999999-20260302-0100001AF629-AF",
		AcquisitionDate:        time.Date(2026, 3, 2, 10, 0, 3, 0, time.UTC),
		SessionReferenceNumber: "20260302-SO-2C3E6C8000-A1B2C3D4E5-7F",
		InvoiceReferenceNumber: "20260302-EE-2C3E6C8000-1A2B3C4D5E-11",
		ResultKey:              "results/inbox/a.xml.result.json",
	}
	accepted, err := json.Marshal(ledger.EventOf(inv, time.Date(2026, 3, 2, 10, 0, 5, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	if err := ledgertest.ValidateDetail(t, accepted); err != nil {
		t.Errorf("ValidateDetail(%s) = %v, want nil", accepted, err)
	}
	if !strings.Contains(string(accepted), `"occurredAt":"2026-03-02T10:00:05Z"`) {
		t.Fatalf("detail %s has no occurredAt 2026-03-02T10:00:05Z", accepted)
	}
	for name, detail := range map[string]string{
		"accepted without a KSeF number": `{"schemaVersion":"1","invoiceId":"x","nip":"9999999999","status":"accepted","invoice":{"bucket":"b","key":"k"},"occurredAt":"2026-03-02T10:00:05Z"}`,
		"undocumented field":             string(accepted[:len(accepted)-1]) + `,"extra":1}`,
		"date-time format":               strings.Replace(string(accepted), `"occurredAt":"2026-03-02T10:00:05Z"`, `"occurredAt":"yesterday"`, 1),
		"not an object":                  `[]`,
	} {
		if err := ledgertest.ValidateDetail(t, []byte(detail)); err == nil {
			t.Errorf("%s: ValidateDetail(%s) = nil, want a validation error", name, detail)
		}
	}
}

// recorder is a testing.TB that records the errors reported to it.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestCheckEvents(t *testing.T) {
	good := ledger.EventOf(&ledger.Invoice{
		ID:         ledger.ObjectID("ksef-invoices-123456789012", "k", "v"),
		NIP:        "9999999999",
		Object:     flow.S3Object{Bucket: "ksef-invoices-123456789012", Key: "k"},
		Status:     ledger.StatusAccepted,
		KSeFNumber: "9999999999-20260302-0100001AF629-AF",
	}, time.Date(2026, 3, 2, 10, 0, 5, 0, time.UTC))
	bad := good
	bad.KSeFNumber = "" // an accepted event must carry it

	r := &recorder{TB: t}
	ledgertest.CheckEvents(r, []ledger.Event{good, bad, good})
	if len(r.errors) != 1 || !strings.HasPrefix(r.errors[0], "event 1 does not match docs/events.schema.json") {
		t.Errorf("CheckEvents reported %q, want one error, for event 1", r.errors)
	}
}
