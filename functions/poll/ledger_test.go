package main

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger/ledgertest"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// fakeLedger answers Transition with the invoice in the status it is told, applying the change
// when changed is set.
type fakeLedger struct {
	calls   []ledgerCall
	current ledger.Status // the invoice's status before the call; "" applies any change
	err     error
}

type ledgerCall struct {
	id string
	ch ledger.Change
}

func (f *fakeLedger) Transition(_ context.Context, id string, ch ledger.Change) (*ledger.Invoice, bool, error) {
	f.calls = append(f.calls, ledgerCall{id, ch})
	if f.err != nil {
		return nil, false, f.err
	}
	stored := &ledger.Invoice{ID: id, NIP: ch.NIP, Source: ledger.SourceS3, Object: ch.Object, Status: ch.Status,
		KSeFNumber: ch.KSeFNumber, AcquisitionDate: ch.AcquisitionDate, Reconciled: ch.Reconciled, ResultKey: ch.ResultKey,
		UPOKey: ch.UPOKey, Reason: ch.Reason, InvoiceHash: ch.InvoiceHash, InvoiceNumber: ch.InvoiceNumber,
		SessionReferenceNumber: ch.SessionReferenceNumber, InvoiceReferenceNumber: ch.InvoiceReferenceNumber}
	if f.current == "" {
		return stored, true, nil
	}
	if f.current == ch.Status { // a retried step: already recorded
		return stored, false, nil
	}
	return &ledger.Invoice{ID: id, NIP: ch.NIP, Source: ledger.SourceS3, Object: ch.Object, Status: f.current}, false, nil
}

type fakePublisher struct {
	events []ledger.Event
	err    error
}

func (f *fakePublisher) Publish(_ context.Context, e ledger.Event) error {
	if f.err != nil {
		return f.err
	}
	f.events = append(f.events, e)
	return nil
}

func TestHandleRecordsOutcome(t *testing.T) {
	acquired := time.Date(2026, 3, 2, 10, 0, 3, 120_000_000, time.UTC)
	obj := flow.S3Object{Bucket: bucket, Key: key, VersionID: "v1"}
	execution := ledger.ObjectID(bucket, key, "v1")
	resultKey, upoKey, reportKey := resultPrefix+key+".result.json", resultPrefix+key+".upo.xml", resultPrefix+key+".error.json"
	sub := submission()
	sent := func(status ledger.Status) ledger.Change {
		return ledger.Change{Status: status, NIP: nip, Object: obj, ExecutionName: execution, InvoiceHash: sampleHash,
			InvoiceNumber: "FV2026/02/150", SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef}
	}
	acceptedStatus := func(string, string) (*ksef.InvoiceStatus, error) {
		return &ksef.InvoiceStatus{KSeFNumber: ksefNumber, ReferenceNumber: invoiceRef, AcquisitionDate: acquired, Status: ksef.Status{Code: 200, Description: "Sukces"}}, nil
	}
	duplicateStatus := func(string, string) (*ksef.InvoiceStatus, error) {
		return &ksef.InvoiceStatus{ReferenceNumber: invoiceRef, Status: ksef.Status{Code: 440, Description: "Duplikat faktury",
			Extensions: map[string]string{"originalKsefNumber": origKSeF, "originalSessionReferenceNumber": origSession}}}, nil
	}
	invoiceIn := flow.PollInput{Kind: flow.PollInvoice, NIP: nip, Invoice: obj, Submission: sub, Attempt: 3, ExecutionName: execution}
	rejectedCause := `{"errorMessage":"{\"stage\":\"ksef\",\"message\":\"KSeF rejected the invoice\",\"code\":450,\"details\":[\"Element P_15: brak.\"]}","errorType":"RejectedError"}`
	failureIn := func(errorName, cause string, s *flow.Submission) flow.PollInput {
		return flow.PollInput{Kind: flow.PollFailure, NIP: nip, Invoice: obj, Submission: s, ExecutionName: execution,
			Error: &flow.TaskError{Error: errorName, Cause: cause}}
	}

	tests := []struct {
		name       string
		in         flow.PollInput
		status     func(string, string) (*ksef.InvoiceStatus, error)
		byNumber   func(string, string) (*ksef.Document, error)
		ledger     *fakeLedger // nil: no ledger
		events     *fakePublisher
		want       ledger.Change
		wantEvents []string // detail-type/status of the events published
		wantErr    string
		check      func(t *testing.T, ev ledger.Event)
	}{
		{
			name: "accepted", in: invoiceIn, status: acceptedStatus,
			byNumber: func(string, string) (*ksef.Document, error) { return upoDoc(t), nil },
			ledger:   &fakeLedger{}, events: &fakePublisher{},
			want: func() ledger.Change {
				c := sent(ledger.StatusAccepted)
				c.KSeFNumber, c.AcquisitionDate, c.ResultKey, c.UPOKey = ksefNumber, acquired, resultKey, upoKey
				return c
			}(),
			wantEvents: []string{"InvoiceAccepted/accepted"},
			check: func(t *testing.T, ev ledger.Event) {
				if ev.KSeFNumber != ksefNumber || !ev.AcquisitionDate.Equal(acquired) || ev.UPOKey != upoKey || ev.Source != ledger.SourceS3 || ev.InvoiceID != execution {
					t.Errorf("event %+v", ev)
				}
			},
		},
		{
			name: "accepted again (a retried poll): recorded already, announced again", in: invoiceIn, status: acceptedStatus,
			byNumber: func(string, string) (*ksef.Document, error) { return upoDoc(t), nil },
			ledger:   &fakeLedger{current: ledger.StatusAccepted}, events: &fakePublisher{},
			want: func() ledger.Change {
				c := sent(ledger.StatusAccepted)
				c.KSeFNumber, c.AcquisitionDate, c.ResultKey, c.UPOKey = ksefNumber, acquired, resultKey, upoKey
				return c
			}(),
			wantEvents: []string{"InvoiceAccepted/accepted"},
		},
		{
			name: "440 of the same content reconciled to the original KSeF number", in: invoiceIn, status: duplicateStatus,
			byNumber: func(string, string) (*ksef.Document, error) { return originalUPO(t, sampleHash), nil },
			ledger:   &fakeLedger{}, events: &fakePublisher{},
			want: func() ledger.Change {
				c := sent(ledger.StatusAccepted)
				c.KSeFNumber, c.Reconciled, c.ResultKey, c.UPOKey = origKSeF, true, resultKey, upoKey
				return c
			}(),
			wantEvents: []string{"InvoiceAccepted/accepted"},
			check: func(t *testing.T, ev ledger.Event) {
				if !ev.Reconciled || ev.KSeFNumber != origKSeF || !ev.AcquisitionDate.IsZero() {
					t.Errorf("event %+v, want reconciled to %s", ev, origKSeF)
				}
			},
		},
		{
			name: "rejected by KSeF", in: failureIn("RejectedError", rejectedCause, sub),
			ledger: &fakeLedger{}, events: &fakePublisher{},
			want: func() ledger.Change {
				c := sent(ledger.StatusRejected)
				c.ResultKey = reportKey
				c.Reason = &ledger.Reason{Stage: "ksef", Code: 450, Message: "KSeF rejected the invoice", Details: []string{"Element P_15: brak."}}
				return c
			}(),
			wantEvents: []string{"InvoiceRejected/rejected"},
			check: func(t *testing.T, ev ledger.Event) {
				if ev.Reason == nil || ev.Reason.Code != 450 || ev.ResultKey != reportKey {
					t.Errorf("event %+v", ev)
				}
			},
		},
		{
			name: "invalid before sending", in: failureIn("BadInputError", `{"errorMessage":"{\"stage\":\"send\",\"message\":\"invoice rejected before sending\"}","errorType":"BadInputError"}`, &flow.Submission{}),
			ledger: &fakeLedger{}, events: &fakePublisher{},
			want: ledger.Change{Status: ledger.StatusInvalid, NIP: nip, Object: obj, ExecutionName: execution, ResultKey: reportKey,
				Reason: &ledger.Reason{Stage: "send", Message: "invoice rejected before sending"}},
			wantEvents: []string{"InvoiceRejected/invalid"},
		},
		{
			name: "failed: Step Functions timeout", in: failureIn("States.Timeout", "State 'PollInvoice' timed out.", &flow.Submission{}),
			ledger: &fakeLedger{}, events: &fakePublisher{},
			want: ledger.Change{Status: ledger.StatusFailed, NIP: nip, Object: obj, ExecutionName: execution, ResultKey: reportKey,
				Reason: &ledger.Reason{Message: "State 'PollInvoice' timed out."}},
			wantEvents: []string{"InvoiceRejected/failed"},
		},
		{
			name: "a late failure of an accepted invoice: neither recorded nor announced", in: failureIn("States.Timeout", "late", &flow.Submission{}),
			ledger: &fakeLedger{current: ledger.StatusAccepted}, events: &fakePublisher{},
			want: ledger.Change{Status: ledger.StatusFailed, NIP: nip, Object: obj, ExecutionName: execution, ResultKey: reportKey,
				Reason: &ledger.Reason{Message: "late"}},
		},
		{
			name: "ledger failing: RetryableError, nothing announced", in: invoiceIn, status: acceptedStatus,
			byNumber: func(string, string) (*ksef.Document, error) { return upoDoc(t), nil },
			ledger:   &fakeLedger{err: errors.New("ProvisionedThroughputExceededException: rate exceeded")}, events: &fakePublisher{},
			want: func() ledger.Change {
				c := sent(ledger.StatusAccepted)
				c.KSeFNumber, c.AcquisitionDate, c.ResultKey, c.UPOKey = ksefNumber, acquired, resultKey, upoKey
				return c
			}(),
			wantErr: "RetryableError",
		},
		{
			name: "bus failing: RetryableError", in: failureIn("RejectedError", rejectedCause, sub),
			ledger: &fakeLedger{}, events: &fakePublisher{err: errors.New("PutEvents: InternalFailure")},
			want: func() ledger.Change {
				c := sent(ledger.StatusRejected)
				c.ResultKey = reportKey
				c.Reason = &ledger.Reason{Stage: "ksef", Code: 450, Message: "KSeF rejected the invoice", Details: []string{"Element P_15: brak."}}
				return c
			}(),
			wantErr: "RetryableError",
		},
		{
			name: "events without a ledger", in: invoiceIn, status: acceptedStatus,
			byNumber: func(string, string) (*ksef.Document, error) { return upoDoc(t), nil },
			events:   &fakePublisher{}, wantEvents: []string{"InvoiceAccepted/accepted"},
			check: func(t *testing.T, ev ledger.Event) {
				if ev.Source != "" || ev.KSeFNumber != ksefNumber || ev.InvoiceNumber != "FV2026/02/150" {
					t.Errorf("event %+v", ev)
				}
			},
		},
		{
			name: "ledger without events", in: failureIn("RejectedError", rejectedCause, sub),
			ledger: &fakeLedger{},
			want: func() ledger.Change {
				c := sent(ledger.StatusRejected)
				c.ResultKey = reportKey
				c.Reason = &ledger.Reason{Stage: "ksef", Code: 450, Message: "KSeF rejected the invoice", Details: []string{"Element P_15: brak."}}
				return c
			}(),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.ksef.invoiceStatus, e.ksef.upoByNumber = tt.status, tt.byNumber
			if tt.ledger != nil {
				e.h.ledger = tt.ledger
			}
			if tt.events != nil {
				e.h.events = tt.events
			}
			out, err := e.h.Handle(t.Context(), tt.in)
			if tt.wantErr != "" {
				if err == nil || flow.ErrorType(err) != tt.wantErr {
					t.Fatalf("error %v (%T), want a %s", err, err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if tt.ledger != nil {
				want := []ledgerCall{{execution, tt.want}}
				if !reflect.DeepEqual(tt.ledger.calls, want) {
					t.Errorf("ledger calls\n%+v\nwant\n%+v", tt.ledger.calls, want)
				}
			}
			var got []string
			if tt.events != nil {
				for _, ev := range tt.events.events {
					got = append(got, ev.DetailType()+"/"+string(ev.Status))
				}
				ledgertest.CheckEvents(t, tt.events.events)
				if tt.check != nil && len(tt.events.events) == 1 {
					tt.check(t, tt.events.events[0])
				}
			}
			if !reflect.DeepEqual(got, tt.wantEvents) {
				t.Errorf("events %v, want %v", got, tt.wantEvents)
			}
			assertNoSecrets(t, e, out, err)
		})
	}
}

// TestHandleRecordsNothingWhilePending: a status still processing touches neither.
func TestHandleRecordsNothingWhilePending(t *testing.T) {
	e := newEnv(t)
	l, p := &fakeLedger{}, &fakePublisher{}
	e.h.ledger, e.h.events = l, p
	e.ksef.invoiceStatus = func(string, string) (*ksef.InvoiceStatus, error) {
		return &ksef.InvoiceStatus{Status: ksef.Status{Code: 150, Description: "Trwa przetwarzanie"}}, nil
	}
	in := flow.PollInput{Kind: flow.PollInvoice, NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key}, Submission: submission()}
	if _, err := e.h.Handle(t.Context(), in); err != nil {
		t.Fatal(err)
	}
	if len(l.calls) != 0 || len(p.events) != 0 {
		t.Errorf("ledger calls %v, events %v while pending; want none", l.calls, p.events)
	}
}

// TestHandleRecordsNothingForAnotherInvoice: a 440 whose original is other content is neither
// recorded nor announced as accepted; the state machine's RecordFailure records the rejection.
func TestHandleRecordsNothingForAnotherInvoice(t *testing.T) {
	e := newEnv(t)
	l, p := &fakeLedger{}, &fakePublisher{}
	e.h.ledger, e.h.events = l, p
	e.ksef.invoiceStatus = func(string, string) (*ksef.InvoiceStatus, error) {
		return &ksef.InvoiceStatus{ReferenceNumber: invoiceRef, Status: ksef.Status{Code: 440, Description: "Duplikat faktury",
			Extensions: map[string]string{"originalKsefNumber": origKSeF, "originalSessionReferenceNumber": origSession}}}, nil
	}
	e.ksef.upoByNumber = func(string, string) (*ksef.Document, error) { return originalUPO(t, otherHash), nil }
	in := flow.PollInput{Kind: flow.PollInvoice, NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key}, Submission: submission()}
	if _, err := e.h.Handle(t.Context(), in); flow.ErrorType(err) != "RejectedError" {
		t.Fatalf("Handle: %v, want a RejectedError", err)
	}
	if len(l.calls) != 0 || len(p.events) != 0 || len(e.s3.puts) != 0 {
		t.Errorf("ledger calls %v, events %v, objects %v; want none", l.calls, p.events, e.s3.keys())
	}
}
