package flow

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"time"
	"unicode/utf8"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// maxDetails bounds how much of KSeF's detail text travels in the state (256 KiB payload limit).
const (
	maxDetails      = 10
	maxDetailLength = 1000
)

// maxThrottleJitter bounds the random seconds added to KSeF's Retry-After (see ThrottleWait).
const maxThrottleJitter = 60

// Classify turns any error a handler meets into one of the named flow errors, so that the state
// machine can retry, wait, re-authenticate or record the failure. Errors that already are flow
// errors pass through. stage names the step ("challenge", "send", "poll"). A 429 becomes a
// RateLimitedError whose RetryAfterSeconds is ThrottleWait of KSeF's Retry-After.
func Classify(stage string, err error) error {
	return classify(stage, err, rand.IntN)
}

// classify is Classify with the random source of the throttle jitter as a parameter (tests).
func classify(stage string, err error, intN func(n int) int) error {
	if err == nil {
		return nil
	}
	var fe flowError
	if errors.As(err, &fe) {
		// The flow error itself, not a wrapper around it: aws-lambda-go names the errorType
		// after the type of the value returned, and the message must stay the Reason's JSON.
		return fe
	}
	r := Reason{Stage: stage, Message: err.Error()}

	var apiErr *ksef.APIError
	var invErr *ksef.InvoiceError
	var netErr net.Error
	if errors.As(err, &apiErr) {
		r.Code = apiErr.StatusCode
		if len(apiErr.Details) > 0 {
			r.Code = apiErr.Details[0].Code
			for _, d := range apiErr.Details {
				r.Details = append(r.Details, d.Details...)
			}
		}
		r.Details = trimDetails(r.Details)
	}
	switch {
	case errors.As(err, &invErr):
		return &BadInputError{Reason: r, Err: err}
	case errors.Is(err, secrets.ErrLoginRequired), errors.Is(err, secrets.ErrInvalidCredentials), errors.Is(err, secrets.ErrNotFound):
		// Before KSeF's status: a refresh token that KSeF refused (400 21301, 401) means "log
		// in again", not an invoice rejected.
		return &AuthFailedError{Reason: r, Err: err}
	case apiErr != nil:
		switch {
		case errors.Is(err, ksef.ErrRateLimited):
			r.RetryAfterSeconds = ThrottleWait(apiErr.RetryAfter, intN)
			return &RateLimitedError{Reason: r, Err: err}
		case errors.Is(err, ksef.ErrUnauthorized), errors.Is(err, ksef.ErrForbidden):
			return &AuthFailedError{Reason: r, Err: err}
		case apiErr.Temporary():
			return &RetryableError{Reason: r, Err: err}
		case apiErr.StatusCode >= 400 && apiErr.StatusCode < 500:
			return &RejectedError{Reason: r, Err: err}
		}
		return &RetryableError{Reason: r, Err: err}
	case errors.Is(err, secrets.ErrConflict),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.As(err, &netErr):
		return &RetryableError{Reason: r, Err: err}
	}
	return &RetryableError{Reason: r, Err: fmt.Errorf("unclassified: %w", err)}
}

// WaitSeconds converts a wait into whole seconds for a Wait state: at least 1, rounded up.
func WaitSeconds(d interface{ Seconds() float64 }) int {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		return 1
	}
	return s
}

// ThrottleWait is how long the state machine waits after KSeF answered 429: the Retry-After in
// whole seconds (WaitSeconds), plus a random 0 to min(Retry-After, 60) seconds drawn with intN
// (rand.IntN's contract: a number in [0, n)). KSeF turns away every request of a burst for one
// NIP at once (invoiceSend allows 30 a minute and 180 an hour); without the jitter the
// executions it turned away would all wake up in the same second and collide again.
func ThrottleWait(retryAfter time.Duration, intN func(n int) int) int {
	s := WaitSeconds(retryAfter)
	return s + intN(min(s, maxThrottleJitter)+1)
}

func trimDetails(details []string) []string {
	if len(details) > maxDetails {
		details = details[:maxDetails]
	}
	out := make([]string, len(details))
	for i, d := range details {
		if len(d) > maxDetailLength {
			n := maxDetailLength
			for n > 0 && !utf8.RuneStart(d[n]) { // do not cut a UTF-8 sequence (Polish text)
				n--
			}
			d = d[:n] + "…"
		}
		out[i] = d
	}
	return out
}

// AuthFailure classifies a failure to log in or to load credentials: transient problems stay
// retryable and rate limits keep their wait, but what Classify would call a rejection (a refused
// token or signature, missing permissions, bad credentials) is an AuthFailedError.
func AuthFailure(stage, what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	c := Classify(stage, err)
	var rej *RejectedError
	if errors.As(c, &rej) {
		return &AuthFailedError{Reason: rej.Reason, Err: err}
	}
	return c
}
