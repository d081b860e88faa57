package flow_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// TestBatchPayloads decodes the batch state machine's payloads in testdata (the batch function's
// inputs as batch.asl.json's Parameters build them, its outputs), rejecting unknown fields,
// re-encodes them and compares: a renamed JSON field fails here.
func TestBatchPayloads(t *testing.T) {
	tests := []struct {
		file  string
		value any
		check func(t *testing.T, v any)
	}{
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
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(tt.value); err != nil {
				t.Fatalf("decode %s into %T: %v", tt.file, tt.value, err)
			}
			again, err := json.Marshal(tt.value)
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(raw, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(again, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%T re-encoded as\n%s\nwant (testdata/%s)\n%s", tt.value, again, tt.file, raw)
			}
			if tt.check != nil {
				tt.check(t, tt.value)
			}
		})
	}
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
		b, err := json.Marshal(tt.value)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range tt.keys {
			if _, ok := m[k]; !ok {
				t.Errorf("%T encodes as %s, without %q", tt.value, b, k)
			}
		}
	}
}
