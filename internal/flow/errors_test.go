package flow_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// allErrors holds one value of every flow error type, in the order of ErrorNames.
func allErrors(r flow.Reason, cause error) []error {
	return []error{
		&flow.RetryableError{Reason: r, Err: cause},
		&flow.RateLimitedError{Reason: r, Err: cause},
		&flow.RejectedError{Reason: r, Err: cause},
		&flow.BadInputError{Reason: r, Err: cause},
		&flow.AuthFailedError{Reason: r, Err: cause},
	}
}

// valueError is an error type used as a value, not behind a pointer.
type valueError struct{}

func (valueError) Error() string { return "value" }

func TestErrorType(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{&flow.RejectedError{}, "RejectedError"},
		{valueError{}, "valueError"},
		{fmt.Errorf("send: %w", &flow.RetryableError{}), "wrapError"}, // ErrorEquals cannot match what it wraps
		{errors.New("plain"), "errorString"},
		{errors.Join(&flow.BadInputError{}), "joinError"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := flow.ErrorType(tt.err); got != tt.want {
			t.Errorf("ErrorType(%#v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestErrorNames(t *testing.T) {
	var got []string
	for _, err := range allErrors(flow.Reason{}, nil) {
		got = append(got, flow.ErrorType(err))
	}
	if want := flow.ErrorNames(); !slices.Equal(got, want) {
		t.Errorf("errorType names %v, ErrorNames() %v: they must be the same, in order", got, want)
	}
}

func TestErrorMessageIsReasonJSON(t *testing.T) {
	r := flow.Reason{Stage: "poll", Message: "KSeF rejected the invoice: \"P_15\" <brak>", Code: 450,
		Details: []string{"Element P_15: brak.", "zażółć gęślą jaźń"}, RetryAfterSeconds: 3}
	cause := errors.New("ksef: InvoiceStatus: HTTP 200")
	for _, err := range allErrors(r, cause) {
		var back flow.Reason
		if jerr := json.Unmarshal([]byte(err.Error()), &back); jerr != nil {
			t.Errorf("%s message %q is not JSON: %v", flow.ErrorType(err), err.Error(), jerr)
			continue
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("%s message decodes to %+v, want %+v", flow.ErrorType(err), back, r)
		}
		if !errors.Is(err, cause) {
			t.Errorf("%s does not unwrap to its cause", flow.ErrorType(err))
		}
		if got, ok := flow.ReasonOf(err); !ok || !reflect.DeepEqual(got, r) {
			t.Errorf("ReasonOf(%s) = %+v, %t; want %+v", flow.ErrorType(err), got, ok, r)
		}
		if got, ok := flow.ReasonOf(fmt.Errorf("context: %w", err)); !ok || !reflect.DeepEqual(got, r) {
			t.Errorf("ReasonOf(wrapped %s) = %+v, %t; want %+v", flow.ErrorType(err), got, ok, r)
		}
	}
}

func TestErrorMessageOmitsEmptyFields(t *testing.T) {
	err := &flow.BadInputError{Reason: flow.Reason{Message: "invalid NIP"}}
	if got, want := err.Error(), `{"message":"invalid NIP"}`; got != want {
		t.Errorf("Error() = %s, want %s", got, want)
	}
}

func TestReasonOfOther(t *testing.T) {
	for _, err := range []error{nil, errors.New("boom"), fmt.Errorf("x: %w", errors.New("y"))} {
		if r, ok := flow.ReasonOf(err); ok || !reflect.DeepEqual(r, flow.Reason{}) {
			t.Errorf("ReasonOf(%v) = %+v, %t; want nothing", err, r, ok)
		}
	}
}

// TestParseReason reads back the Cause of a caught error in the forms the state machine meets.
func TestParseReason(t *testing.T) {
	reason := flow.Reason{Stage: "ksef", Message: "KSeF rejected the invoice", Code: 450, Details: []string{"Element P_15: brak."}}
	rl := &flow.RateLimitedError{Reason: flow.Reason{Stage: "send", Message: "slow down", Code: 429, RetryAfterSeconds: 30}}
	// What aws-lambda-go sends to the Lambda runtime API for a returned error, and Step
	// Functions puts in the Cause: {"errorMessage": err.Error(), "errorType": ...}.
	payload := func(err error) string {
		b, jerr := json.Marshal(map[string]any{"errorMessage": err.Error(), "errorType": flow.ErrorType(err)})
		if jerr != nil {
			t.Fatal(jerr)
		}
		return string(b)
	}
	tests := []struct {
		name  string
		cause string
		want  flow.Reason
	}{
		{"Lambda error payload", payload(&flow.RejectedError{Reason: reason}), reason},
		{"Lambda error payload with stack trace", `{"errorMessage":"{\"message\":\"m\",\"code\":7}","errorType":"RetryableError","stackTrace":[]}`, flow.Reason{Message: "m", Code: 7}},
		{"rate limit keeps its wait", payload(rl), rl.Reason},
		{"Reason JSON set by a Pass state", `{"stage":"auth","message":"KSeF authentication did not finish within the polling limit"}`,
			flow.Reason{Stage: "auth", Message: "KSeF authentication did not finish within the polling limit"}},
		{"payload of a foreign error", `{"errorMessage":"runtime error: index out of range [3] with length 3","errorType":"boundsError"}`,
			flow.Reason{Message: "runtime error: index out of range [3] with length 3"}},
		{"Step Functions text", "State 'SendInvoice' timed out.", flow.Reason{Message: "State 'SendInvoice' timed out."}},
		{"JSON without a message", `{"code":450}`, flow.Reason{Message: `{"code":450}`}},
		{"empty", "", flow.Reason{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := flow.ParseReason(tt.cause); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseReason(%q) = %+v, want %+v", tt.cause, got, tt.want)
			}
		})
	}
}
