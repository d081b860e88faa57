package localrun

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

func TestRunBatchNeedsItsPieces(t *testing.T) {
	for _, tt := range []struct {
		name string
		opts Options
		want string
	}{
		{"no batch definition", Options{Functions: map[string]string{FunctionBatch: "bin/batch"}}, "Options.BatchDefinition"},
		{"no batch function", Options{BatchDefinition: "batch.asl.json", Functions: map[string]string{FunctionPoll: "bin/poll"}}, "no batch function"},
		{"NIP not set up", Options{BatchDefinition: "batch.asl.json", Functions: map[string]string{FunctionBatch: "bin/batch"}}, "NIP 9999999999 is not set up"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := &Stack{opts: tt.opts}
			if _, err := s.RunBatch(t.Context(), DefaultNIP); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("RunBatch = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestUploadBatchNames(t *testing.T) {
	s := &Stack{}
	for _, name := range []string{"", "/a.xml", "a/../b.xml", "manifests/x.json"} {
		if _, err := s.UploadBatch(t.Context(), name, []byte("<x/>")); err == nil || !strings.Contains(err.Error(), "invalid name") {
			t.Errorf("UploadBatch(%q) = %v, want an invalid name", name, err)
		}
	}
}

func TestDocumentVersion(t *testing.T) {
	for doc, want := range map[string]string{
		`{"status":"accepted","invoice":{"bucket":"b","key":"batch/a.xml","versionId":"v2"}}`: "v2",
		`{"status":"failed","invoice":{"bucket":"b","key":"batch/a.xml"}}`:                    "",
		`not json`: "",
	} {
		if got := documentVersion([]byte(doc)); got != want {
			t.Errorf("documentVersion(%s) = %q, want %q", doc, got, want)
		}
	}
}

func TestBatchInvoiceFailure(t *testing.T) {
	report := []byte(`{"status":"rejected","error":"RejectedError","reason":{"stage":"ksef","message":"KSeF rejected the invoice: Błąd","code":450,"details":["Element P_15: brak."]}}`)
	for _, tt := range []struct {
		name string
		inv  BatchInvoice
		want *Failure
	}{
		{"accepted", BatchInvoice{Invoice: &ledger.Invoice{Status: ledger.StatusAccepted}}, nil},
		{"the report", BatchInvoice{Invoice: &ledger.Invoice{Status: ledger.StatusRejected}, ErrorJSON: report},
			&Failure{Error: "RejectedError", Code: 450, Message: "KSeF rejected the invoice: Błąd", Details: []string{"Element P_15: brak."}}},
		{"the ledger's reason without a report", BatchInvoice{Invoice: &ledger.Invoice{Status: ledger.StatusFailed, Reason: &ledger.Reason{Code: 435, Message: "not processed"}}},
			&Failure{Code: 435, Message: "not processed"}},
		{"a repeated upload", BatchInvoice{Invoice: &ledger.Invoice{Status: ledger.StatusDuplicateUpload, DuplicateOf: "s3-aaaaaaaaaaaaaaaaaaaaaaaaaa"}},
			&Failure{Error: "duplicate-upload", Message: "the same invoice content was already taken in as s3-aaaaaaaaaaaaaaaaaaaaaaaaaa"}},
		{"not taken in", BatchInvoice{}, &Failure{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.inv.Failure(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Failure() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
