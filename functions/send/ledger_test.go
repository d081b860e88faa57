package main

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// fakeLedger records the transitions asked for and answers as told.
type fakeLedger struct {
	changes []ledgerCall
	status  ledger.Status // the status the invoice has after the call
	changed bool
	err     error
}

type ledgerCall struct {
	id string
	ch ledger.Change
}

func (f *fakeLedger) Transition(_ context.Context, id string, ch ledger.Change) (*ledger.Invoice, bool, error) {
	f.changes = append(f.changes, ledgerCall{id, ch})
	if f.err != nil {
		return nil, false, f.err
	}
	return &ledger.Invoice{ID: id, Status: f.status}, f.changed, nil
}

func TestHandleRecordsSubmission(t *testing.T) {
	obj := flow.S3Object{Bucket: bucket, Key: key, VersionID: version}
	apiID := ledger.RequestID(nip, "order-17")
	tests := []struct {
		name      string
		execution string
		ledger    *fakeLedger
		wantID    string
		wantLog   string
	}{
		{"started by an entry point", apiID, &fakeLedger{status: ledger.StatusSubmitted, changed: true}, apiID, ""},
		{"started by hand", "6f1c2e1e-9b7a-4d55-8d8f-0d7c1f5f6a10", &fakeLedger{status: ledger.StatusSubmitted, changed: true}, ledger.ObjectID(bucket, key, version), ""},
		{"already final: kept", apiID, &fakeLedger{status: ledger.StatusAccepted}, apiID, "ledger keeps the invoice's status"},
		{"ledger failing: the submission stands", apiID, &fakeLedger{err: errors.New("ProvisionedThroughputExceededException")}, apiID, "could not record the submission in the ledger"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.sm.SetJSON(t, stateSecret, secrets.State{Session: &secrets.OnlineSession{Handle: handle(sessionA, 10*time.Hour)}})
			e.h.ledger = tt.ledger
			out, err := e.h.Handle(t.Context(), flow.SendInput{NIP: nip, Invoice: obj, ExecutionName: tt.execution})
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			want := []ledgerCall{{tt.wantID, ledger.Change{
				Status: ledger.StatusSubmitted, NIP: nip, Object: obj, ExecutionName: tt.execution,
				InvoiceHash: sampleHash, InvoiceNumber: "FV2026/02/150",
				SessionReferenceNumber: sessionA, InvoiceReferenceNumber: out.InvoiceReferenceNumber,
			}}}
			if !reflect.DeepEqual(tt.ledger.changes, want) {
				t.Errorf("ledger calls %+v,\nwant %+v", tt.ledger.changes, want)
			}
			if tt.wantLog != "" && !strings.Contains(e.logs.String(), tt.wantLog) {
				t.Errorf("logs do not say %q:\n%s", tt.wantLog, e.logs.String())
			}
			assertNoSecrets(t, e, out, err)
		})
	}
}

// TestHandleFailureLeavesLedger: a failed send records nothing; RecordFailure does.
func TestHandleFailureLeavesLedger(t *testing.T) {
	e := newEnv(t)
	l := &fakeLedger{}
	e.h.ledger = l
	if _, err := e.h.Handle(t.Context(), flow.SendInput{NIP: "1111111111", Invoice: flow.S3Object{Bucket: bucket, Key: key, VersionID: version}}); err == nil {
		t.Fatal("an invoice of another seller was sent")
	}
	if len(l.changes) != 0 {
		t.Errorf("ledger calls %+v after a failed send, want none", l.changes)
	}
}
