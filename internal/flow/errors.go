package flow

import (
	"encoding/json"
	"errors"
	"reflect"
)

// Reason is the structured description every handler error carries. Its JSON form is the
// error's message, so that the state machine can read it back from a Catch's Cause with
// States.StringToJson, and the failure report can store it as it is.
type Reason struct {
	Stage             string   `json:"stage,omitempty"` // challenge, send, poll, ...
	Message           string   `json:"message"`
	Code              int      `json:"code,omitempty"` // KSeF status code or exception code
	Details           []string `json:"details,omitempty"`
	RetryAfterSeconds int      `json:"retryAfterSeconds,omitempty"`
}

func (r Reason) text() string {
	b, err := json.Marshal(r)
	if err != nil { // cannot happen: Reason has only plain fields
		return r.Message
	}
	return string(b)
}

// ParseReason decodes the Cause of a caught error back into a Reason. Step Functions gives a
// Lambda function's error as the function's error payload, {"errorMessage":...,"errorType":...},
// whose errorMessage is the Reason's JSON; a Pass state may set the Reason's JSON directly. A
// Cause that is neither (a Lambda runtime failure, a timeout) becomes a Reason whose Message is
// the raw text, or the payload's errorMessage if there is one.
func ParseReason(cause string) Reason {
	var payload struct {
		ErrorMessage *string `json:"errorMessage"`
	}
	if json.Unmarshal([]byte(cause), &payload) == nil && payload.ErrorMessage != nil {
		cause = *payload.ErrorMessage
	}
	var r Reason
	if err := json.Unmarshal([]byte(cause), &r); err != nil || r.Message == "" {
		return Reason{Message: cause}
	}
	return r
}

// RetryableError is a transient failure (KSeF 5xx, a network error, a conflicting concurrent
// update) that the state machine retries with backoff.
type RetryableError struct {
	Reason
	Err error `json:"-"`
}

func (e *RetryableError) Error() string { return e.text() }
func (e *RetryableError) Unwrap() error { return e.Err }

// RateLimitedError means KSeF answered 429. RetryAfterSeconds is how long the state machine
// waits (in a Wait state, without a running Lambda) before repeating the task.
type RateLimitedError struct {
	Reason
	Err error `json:"-"`
}

func (e *RateLimitedError) Error() string { return e.text() }
func (e *RateLimitedError) Unwrap() error { return e.Err }

// RejectedError means KSeF refused the invoice for good (a 4xx invoice status or a permanent
// 400 on sending). The reason is stored next to the invoice before it is returned.
type RejectedError struct {
	Reason
	Err error `json:"-"`
}

func (e *RejectedError) Error() string { return e.text() }
func (e *RejectedError) Unwrap() error { return e.Err }

// BadInputError means the input cannot be processed as it is: a malformed or oversized invoice,
// a seller NIP other than the context's, a missing object, an invalid execution input.
type BadInputError struct {
	Reason
	Err error `json:"-"`
}

func (e *BadInputError) Error() string { return e.text() }
func (e *BadInputError) Unwrap() error { return e.Err }

// AuthFailedError means there is no usable access token: the KSeF login failed (bad token,
// no permissions, certificate error) or the credentials are missing or invalid. Raised by the
// send function it sends the execution back to the challenge step once.
type AuthFailedError struct {
	Reason
	Err error `json:"-"`
}

func (e *AuthFailedError) Error() string { return e.text() }
func (e *AuthFailedError) Unwrap() error { return e.Err }

// ErrorNames lists the errorType names of the error types above, as the state machine sees them.
func ErrorNames() []string {
	return []string{"RetryableError", "RateLimitedError", "RejectedError", "BadInputError", "AuthFailedError"}
}

// ErrorType returns the errorType that aws-lambda-go reports to Step Functions when a handler
// returns err, and so the name a Retry's or a Catch's ErrorEquals matches: the name of err's
// type, behind the pointer (lambda/errors.go). For a *RejectedError it is "RejectedError"; for
// a fmt.Errorf("...: %w", err) wrapper it is "wrapError", whatever it wraps. ErrorType(nil) is
// "": no error.
func ErrorType(err error) string {
	if err == nil {
		return ""
	}
	t := reflect.TypeOf(err)
	if t.Kind() == reflect.Pointer {
		return t.Elem().Name()
	}
	return t.Name()
}

// ReasonOf returns the Reason carried by err if it is (or wraps) one of the flow errors.
func ReasonOf(err error) (Reason, bool) {
	var fe flowError
	if errors.As(err, &fe) {
		return fe.reason(), true
	}
	return Reason{}, false
}

// flowError is implemented by the error types above (reason is promoted from the embedded
// Reason), and by nothing outside this package.
type flowError interface {
	error
	reason() Reason
}

func (r Reason) reason() Reason { return r }
