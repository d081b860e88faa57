package flow_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

func apiError(status int, details ...ksef.ExceptionDetail) *ksef.APIError {
	return &ksef.APIError{Op: "SendInvoice", StatusCode: status, Title: "Bad Request", Details: details}
}

func TestClassify(t *testing.T) {
	rateLimited := apiError(429)
	rateLimited.RetryAfter = 2500 * time.Millisecond
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: &timeoutError{}}

	tests := []struct {
		name        string
		err         error
		wantType    string
		wantCode    int
		wantDetails []string
		wantWait    int
	}{
		// The jitter drawn below is always its maximum: Retry-After rounded up, then doubled.
		{"429 with Retry-After", fmt.Errorf("open online session: %w", rateLimited), "RateLimitedError", 429, nil, 6},
		{"429 without Retry-After", apiError(429), "RateLimitedError", 429, nil, 2},
		{"401", apiError(401), "AuthFailedError", 401, nil, 0},
		{"403", apiError(403), "AuthFailedError", 403, nil, 0},
		{"400 with exception details", apiError(400,
			ksef.ExceptionDetail{Code: 21405, Description: "Błąd walidacji", Details: []string{"a", "b"}},
			ksef.ExceptionDetail{Code: 21403, Details: []string{"c"}}), "RejectedError", 21405, []string{"a", "b", "c"}, 0},
		{"400 without details", apiError(400), "RejectedError", 400, nil, 0},
		{"404", apiError(404), "RejectedError", 404, nil, 0},
		{"500", apiError(500), "RetryableError", 500, nil, 0},
		{"502", apiError(502), "RetryableError", 502, nil, 0},
		{"503", fmt.Errorf("send invoice: %w", apiError(503)), "RetryableError", 503, nil, 0},
		{"504", apiError(504), "RetryableError", 504, nil, 0},
		{"invoice inspection", fmt.Errorf("inspect: %w", ksef.ErrInvoiceBOM), "BadInputError", 0, nil, 0},
		{"login required", fmt.Errorf("access token: %w", secrets.ErrLoginRequired), "AuthFailedError", 0, nil, 0},
		// A refresh token KSeF refused: log in again, the invoice is not rejected.
		{"login required after a refused refresh", fmt.Errorf("send invoice: get access token: %w: refresh refused: %w", secrets.ErrLoginRequired,
			apiError(400, ksef.ExceptionDetail{Code: ksef.CodeNoAuthorization, Details: []string{"Status uwierzytelniania (425) nie pozwala na odświeżenie tokenu dostępowego."}})),
			"AuthFailedError", ksef.CodeNoAuthorization, []string{"Status uwierzytelniania (425) nie pozwala na odświeżenie tokenu dostępowego."}, 0},
		{"invalid credentials", &secrets.CredentialsError{Field: "ksefToken", Reason: "missing"}, "AuthFailedError", 0, nil, 0},
		{"credentials missing", fmt.Errorf("read: %w", secrets.ErrNotFound), "AuthFailedError", 0, nil, 0},
		{"state update conflict", fmt.Errorf("update: %w", secrets.ErrConflict), "RetryableError", 0, nil, 0},
		{"deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), "RetryableError", 0, nil, 0},
		{"cancelled", context.Canceled, "RetryableError", 0, nil, 0},
		{"network", fmt.Errorf("post: %w", timeout), "RetryableError", 0, nil, 0},
		{"anything else", errors.New("something odd"), "RetryableError", 0, nil, 0},
	}
	maxJitter := func(n int) int { return n - 1 }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flow.ClassifyWith("send", tt.err, maxJitter)
			if et := flow.ErrorType(got); et != tt.wantType {
				t.Fatalf("Classify(%v) errorType %q, want %q", tt.err, et, tt.wantType)
			}
			r, ok := flow.ReasonOf(got)
			if !ok {
				t.Fatalf("Classify(%v) = %v carries no Reason", tt.err, got)
			}
			if r.Stage != "send" || r.Code != tt.wantCode || r.Message != tt.err.Error() || r.RetryAfterSeconds != tt.wantWait {
				t.Errorf("Classify(%v) reason %+v, want stage send, code %d, wait %d and the error text", tt.err, r, tt.wantCode, tt.wantWait)
			}
			if !reflect.DeepEqual(r.Details, tt.wantDetails) && (len(r.Details) > 0 || len(tt.wantDetails) > 0) {
				t.Errorf("Classify(%v) details %q, want %q", tt.err, r.Details, tt.wantDetails)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("Classify(%v) does not wrap the original error", tt.err)
			}
		})
	}
}

type timeoutError struct{}

func (*timeoutError) Error() string   { return "i/o timeout" }
func (*timeoutError) Timeout() bool   { return true }
func (*timeoutError) Temporary() bool { return true }

func TestClassifyNil(t *testing.T) {
	if err := flow.Classify("poll", nil); err != nil {
		t.Errorf("Classify(nil) = %v, want nil", err)
	}
}

// TestClassifyFlowErrors checks that a flow error keeps its type and Reason, and that a wrapped
// one comes back unwrapped: aws-lambda-go would report a wrapper as "wrapError", which no
// ErrorEquals names, and its message would no longer be the Reason's JSON.
func TestClassifyFlowErrors(t *testing.T) {
	r := flow.Reason{Stage: "challenge", Message: "KSeF authentication failed", Code: 450}
	for _, fe := range allErrors(r, nil) {
		for _, in := range []error{fe, fmt.Errorf("start login: %w", fe), fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", fe))} {
			got := flow.Classify("send", in)
			if got != fe {
				t.Errorf("Classify(%v) = %v (%s), want the %s itself", in, got, flow.ErrorType(got), flow.ErrorType(fe))
			}
		}
	}
}

func TestClassifyTrimsDetails(t *testing.T) {
	long := strings.Repeat("ą", 600)      // 1200 bytes: byte 1000 starts a letter
	odd := "x" + strings.Repeat("ż", 700) // byte 1000 is the second byte of a letter
	var many []string
	for i := range 15 {
		many = append(many, fmt.Sprintf("detail %d", i))
	}
	got := flow.Classify("poll", apiError(400, ksef.ExceptionDetail{Code: 21405, Details: append([]string{long, odd}, many...)}))
	r, _ := flow.ReasonOf(got)
	if len(r.Details) != 10 {
		t.Fatalf("%d details kept, want 10", len(r.Details))
	}
	for i, d := range r.Details[:2] {
		if !utf8.ValidString(d) {
			t.Errorf("detail %d cut inside a UTF-8 sequence: %q", i, d[len(d)-8:])
		}
		if !strings.HasSuffix(d, "…") || len(d) > 1000+len("…") {
			t.Errorf("detail %d is %d bytes ending %q, want at most 1000 bytes and an ellipsis", i, len(d), d[len(d)-8:])
		}
	}
	if r.Details[9] != "detail 7" {
		t.Errorf("last detail kept %q, want %q", r.Details[9], "detail 7")
	}
}

func TestAuthFailure(t *testing.T) {
	limited := apiError(429)
	limited.RetryAfter = 10 * time.Second
	tests := []struct {
		name     string
		err      error
		wantType string
	}{
		{"refused token (400)", apiError(400, ksef.ExceptionDetail{Code: 21111}), "AuthFailedError"},
		{"no permissions (403)", apiError(403), "AuthFailedError"},
		{"bad credentials", &secrets.CredentialsError{Field: "privateKeyPem", Reason: "not PEM-encoded"}, "AuthFailedError"},
		{"unavailable (503)", apiError(503), "RetryableError"},
		{"rate limited", limited, "RateLimitedError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := flow.AuthFailure("challenge", "start KSeF authentication", tt.err)
			if et := flow.ErrorType(got); et != tt.wantType {
				t.Errorf("AuthFailure(%v) errorType %q, want %q", tt.err, et, tt.wantType)
			}
			r, _ := flow.ReasonOf(got)
			if tt.wantType == "RateLimitedError" && (r.RetryAfterSeconds < 10 || r.RetryAfterSeconds > 20) {
				t.Errorf("AuthFailure(%v) retryAfterSeconds %d, want Retry-After 10 s plus 0 to 10 s of jitter", tt.err, r.RetryAfterSeconds)
			}
			if r.Stage != "challenge" || !strings.HasPrefix(r.Message, "start KSeF authentication: ") {
				t.Errorf("AuthFailure(%v) reason %+v, want stage challenge and the step in the message", tt.err, r)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("AuthFailure(%v) does not wrap the original error", tt.err)
			}
		})
	}
}

func TestThrottleWait(t *testing.T) {
	tests := []struct {
		retryAfter time.Duration
		wantN      int // the draw: 0 to min(Retry-After, 60) s
	}{
		{0, 2},
		{1500 * time.Millisecond, 3},
		{8 * time.Second, 9},
		{60 * time.Second, 61},
		{61 * time.Second, 61},
		{time.Hour, 61},
	}
	for _, tt := range tests {
		base := flow.WaitSeconds(tt.retryAfter)
		for _, draw := range []string{"lowest", "highest"} {
			var gotN int
			got := flow.ThrottleWait(tt.retryAfter, func(n int) int {
				gotN = n
				if draw == "lowest" {
					return 0
				}
				return n - 1
			})
			want := base
			if draw == "highest" {
				want = base + tt.wantN - 1
			}
			if got != want || gotN != tt.wantN {
				t.Errorf("ThrottleWait(%s) with the %s draw = %d drawing from [0, %d), want %d drawing from [0, %d)",
					tt.retryAfter, draw, got, gotN, want, tt.wantN)
			}
		}
	}
}

// TestClassifySpreadsThrottledExecutions checks, with the real random source, that executions
// KSeF turned away together with one Retry-After come back spread over [Retry-After,
// 2×Retry-After] (31 possible seconds here), not together.
func TestClassifySpreadsThrottledExecutions(t *testing.T) {
	limited := apiError(429)
	limited.RetryAfter = 30 * time.Second
	seen := map[int]bool{}
	for range 500 {
		var rl *flow.RateLimitedError
		if !errors.As(flow.Classify("send", limited), &rl) {
			t.Fatalf("Classify(429) is not a RateLimitedError")
		}
		if w := rl.RetryAfterSeconds; w < 30 || w > 60 {
			t.Fatalf("retryAfterSeconds %d after Retry-After 30 s, want 30 to 60", w)
		}
		seen[rl.RetryAfterSeconds] = true
	}
	// Each of the 31 seconds is missed by 500 draws with probability (30/31)^500 < 1e-7.
	if len(seen) < 25 {
		t.Errorf("500 throttled executions wait only %d distinct times, want them spread over the 31 possible", len(seen))
	}
}

func TestWaitSeconds(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want int
	}{
		{0, 1}, {-time.Second, 1}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2}, {90 * time.Second, 90},
	} {
		if got := flow.WaitSeconds(tt.d); got != tt.want {
			t.Errorf("WaitSeconds(%s) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
