package flow_test

import (
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// TestBatchPayloads decodes the batch state machine's payloads in testdata (the batch function's
// inputs as batch.asl.json's Parameters build them, its outputs), rejecting unknown fields,
// re-encodes them and compares: a renamed JSON field fails here.
func TestBatchPayloads(t *testing.T) {
	testPayloads(t, []payload{
		{"batch_request_send.json", &flow.BatchRequest{}, nil},
		{"batch_request_poll.json", &flow.BatchRequest{}, func(t *testing.T, v any) {
			if in := v.(*flow.BatchRequest); in.Session == nil || in.Session.InvoiceCount != 7 {
				t.Errorf("decoded %+v", in)
			}
		}},
		{"batch_request_release.json", &flow.BatchRequest{}, func(t *testing.T, v any) {
			in := v.(*flow.BatchRequest)
			if got := flow.ParseReason(in.Error.Cause); got.Code != 503 || got.Stage != "batch" {
				t.Errorf("ParseReason(Cause) = %+v, want the send's 503", got)
			}
		}},
		{"batch_send_result.json", &flow.BatchSendResult{}, nil},
		{"batch_poll_result.json", &flow.BatchPollResult{}, nil},
	})
}

// TestBatchOutputsCarryWhatTheDefinitionReads pins that the batch function's zero outputs
// still carry every field batch.asl.json reads (a missing path fails the execution).
func TestBatchOutputsCarryWhatTheDefinitionReads(t *testing.T) {
	for _, tt := range []struct {
		value any
		keys  []string
	}{
		{flow.BatchSendResult{Sessions: []flow.BatchSession{}}, []string{"sessions", "more", "after"}},
		{flow.BatchPollResult{}, []string{"outcome", "waitSeconds", "attempt", "cursor", "offset"}},
	} {
		checkKeys(t, tt.value, tt.keys...)
	}
}
