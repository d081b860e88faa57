package flow_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// TestPayloads decodes the state machine's payloads in testdata (task inputs as the
// definition's Parameters build them, task outputs as the functions return them), rejecting
// unknown fields, re-encodes them and compares: a renamed JSON field fails here.
func TestPayloads(t *testing.T) {
	testPayloads(t, []payload{
		{"challenge_input.json", &flow.ChallengeInput{}, func(t *testing.T, v any) {
			if in := v.(*flow.ChallengeInput); in.StatusCode != 200 || in.Attempt != 3 {
				t.Errorf("decoded %+v", in)
			}
		}},
		{"auth_state_pending.json", &flow.AuthState{}, nil},
		{"auth_state_no_login.json", &flow.AuthState{}, nil},
		{"send_input.json", &flow.SendInput{}, nil},
		{"submission.json", &flow.Submission{}, func(t *testing.T, v any) {
			if s := v.(*flow.Submission); !s.SentAt.Equal(time.Date(2026, 3, 2, 9, 59, 55, 250_000_000, time.UTC)) {
				t.Errorf("sentAt %s", s.SentAt)
			}
		}},
		{"poll_auth_input.json", &flow.PollInput{}, nil},
		{"poll_invoice_input.json", &flow.PollInput{}, nil},
		{"poll_failure_input.json", &flow.PollInput{}, func(t *testing.T, v any) {
			in := v.(*flow.PollInput)
			want := flow.Reason{Stage: "ksef", Message: "KSeF rejected the invoice: Błąd weryfikacji semantyki dokumentu faktury", Code: 450, Details: []string{"Element P_15: brak."}}
			if in.Error == nil || in.Error.Error != "RejectedError" {
				t.Fatalf("error %+v, want a RejectedError", in.Error)
			}
			if got := flow.ParseReason(in.Error.Cause); !reflect.DeepEqual(got, want) {
				t.Errorf("ParseReason(Cause) = %+v, want %+v", got, want)
			}
		}},
		{"poll_result_accepted.json", &flow.PollResult{}, nil},
		{"poll_result_pending.json", &flow.PollResult{}, nil},
	})
}

// payload is a state machine payload in testdata and the type it decodes into; check, if set,
// looks at the decoded value.
type payload struct {
	file  string
	value any
	check func(t *testing.T, v any)
}

// testPayloads decodes each payload, rejecting unknown fields, re-encodes it and compares the
// JSON with the file's: a renamed JSON field fails here.
func testPayloads(t *testing.T, payloads []payload) {
	t.Helper()
	for _, tt := range payloads {
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

// TestAuthStateFieldsAlwaysPresent pins that an AuthState always carries the fields the
// definition reads: a Choice on a missing $.run.auth.statusCode, or PollAuth's Parameters on a
// missing $.run.auth.referenceNumber, fail the execution with States.Runtime.
func TestAuthStateFieldsAlwaysPresent(t *testing.T) {
	checkKeys(t, flow.AuthState{}, "ready", "referenceNumber", "waitSeconds", "attempt", "statusCode")
}

// checkKeys fails t unless v encodes as a JSON object with every one of keys (a zero value
// included: the definition reads these paths whatever the outcome).
func checkKeys(t *testing.T, v any, keys ...string) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%T encodes as %s, without %q", v, b, k)
		}
	}
}

func TestPollResultOmitsEmptyAcquisitionDate(t *testing.T) {
	b, err := json.Marshal(flow.PollResult{Kind: flow.PollInvoice, Outcome: flow.OutcomePending})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(b, []byte("acquisitionDate")) || bytes.Contains(b, []byte("0001-01-01")) {
		t.Errorf("pending result %s carries a zero acquisition date", b)
	}
}
