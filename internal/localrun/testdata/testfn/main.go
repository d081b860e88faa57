// Command testfn is a Lambda function for the localrun harness tests. It returns errors whose Go
// type names are those of internal/flow (RetryableError, RateLimitedError, ...; declared here so
// that the harness tests do not depend on the pipeline packages), so that a test can check that
// Step Functions Retry and Catch see the same error names locally as on AWS. Build it with
// -tags lambda.norpc.
//
// Input:
//
//	{"key": "k", "fail": ["RetryableError", "RateLimitedError"], "reason": {...}, "panic": false, "env": ["NAME"]}
//
// The n-th invocation with a given key (counted inside this process) fails with fail[n-1] while
// there are entries left, then succeeds with {"key", "invocation", "function", "env"}.
//
// An input without "fail" (the pipeline's own inputs, when testfn stands in for its functions)
// fails every time with the error named by the environment variable TESTFN_FAIL, if set, whose
// reason is the JSON in TESTFN_REASON.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/aws/aws-lambda-go/lambda"
)

// reason has the JSON shape of flow.Reason: an error's message is its JSON form.
type reason struct {
	Stage             string   `json:"stage,omitempty"`
	Message           string   `json:"message"`
	Code              int      `json:"code,omitempty"`
	Details           []string `json:"details,omitempty"`
	RetryAfterSeconds int      `json:"retryAfterSeconds,omitempty"`
}

func (r reason) text() string {
	b, err := json.Marshal(r)
	if err != nil {
		return r.Message
	}
	return string(b)
}

// The error types, named as in internal/flow.
type (
	RetryableError   struct{ reason }
	RateLimitedError struct{ reason }
	RejectedError    struct{ reason }
	BadInputError    struct{ reason }
	AuthFailedError  struct{ reason }
)

func (e *RetryableError) Error() string   { return e.text() }
func (e *RateLimitedError) Error() string { return e.text() }
func (e *RejectedError) Error() string    { return e.text() }
func (e *BadInputError) Error() string    { return e.text() }
func (e *AuthFailedError) Error() string  { return e.text() }

type input struct {
	Key    string    `json:"key"`
	Fail   *[]string `json:"fail"`
	Reason reason    `json:"reason"`
	Panic  bool      `json:"panic"`
	Env    []string  `json:"env"`
}

type output struct {
	Key        string            `json:"key"`
	Invocation int               `json:"invocation"`
	Function   string            `json:"function"`
	Env        map[string]string `json:"env,omitempty"`
}

type handler struct {
	mu    sync.Mutex
	calls map[string]int
}

func (h *handler) handle(_ context.Context, in input) (output, error) {
	h.mu.Lock()
	h.calls[in.Key]++
	n := h.calls[in.Key]
	h.mu.Unlock()
	if in.Panic {
		panic("testfn: panic requested")
	}
	if in.Fail == nil {
		if name := os.Getenv("TESTFN_FAIL"); name != "" {
			var r reason
			if err := json.Unmarshal([]byte(os.Getenv("TESTFN_REASON")), &r); err != nil {
				return output{}, fmt.Errorf("testfn: TESTFN_REASON: %w", err)
			}
			return output{}, named(name, r)
		}
	} else if fail := *in.Fail; n <= len(fail) {
		return output{}, named(fail[n-1], in.Reason)
	}
	out := output{Key: in.Key, Invocation: n, Function: os.Getenv("AWS_LAMBDA_FUNCTION_NAME")}
	if len(in.Env) > 0 {
		out.Env = make(map[string]string, len(in.Env))
		for _, k := range in.Env {
			out.Env[k] = os.Getenv(k)
		}
	}
	return out, nil
}

func named(name string, r reason) error {
	switch name {
	case "RetryableError":
		return &RetryableError{r}
	case "RateLimitedError":
		return &RateLimitedError{r}
	case "RejectedError":
		return &RejectedError{r}
	case "BadInputError":
		return &BadInputError{r}
	case "AuthFailedError":
		return &AuthFailedError{r}
	case "errorString":
		return errors.New(r.Message)
	}
	return fmt.Errorf("testfn: unknown error name %q", name)
}

func main() {
	h := &handler{calls: make(map[string]int)}
	lambda.Start(h.handle)
}
