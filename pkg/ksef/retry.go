package ksef

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// RetryPolicy says how the client retries a failed request. It retries network failures (for
// calls that are not safe to repeat, such as SendInvoice, only when the request surely never
// left, e.g. the connection was refused), HTTP 429 for every call, and 502/503/504 only for
// calls that are safe to repeat (GETs, DELETEs, the challenge, token refresh). Waits are
// capped exponential backoff with full jitter, never shorter than KSeF's Retry-After.
//
// A wait the client will not make (Retry-After longer than MaxRetryAfter, HandBack set, or a
// context deadline that would pass) ends the call with the *APIError, RetryAfter set, so that
// the caller (a Step Functions Wait state) can do the waiting.
type RetryPolicy struct {
	MaxAttempts   int           // total attempts, >= 1 (default 4); 1 disables retries
	BaseDelay     time.Duration // first backoff ceiling (default 500ms)
	MaxDelay      time.Duration // cap of the exponential part (default 20s)
	MaxRetryAfter time.Duration // longest Retry-After waited in-process (default 60s)
	HandBack      bool          // never wait in-process: return the retryable *APIError (with RetryAfter) to the caller
	// DeadlineMargin is the time that must be left before the context's deadline after a
	// wait, for the repeated request and for returning (default 2s).
	DeadlineMargin time.Duration
}

// Defaults of RetryPolicy.
const (
	DefaultMaxAttempts    = 4
	DefaultBaseDelay      = 500 * time.Millisecond
	DefaultMaxDelay       = 20 * time.Second
	DefaultMaxRetryAfter  = 60 * time.Second
	DefaultDeadlineMargin = 2 * time.Second
)

// withDefaults fills zero fields and rejects negative ones.
func (p RetryPolicy) withDefaults() (RetryPolicy, error) {
	if p.MaxAttempts < 0 || p.BaseDelay < 0 || p.MaxDelay < 0 || p.MaxRetryAfter < 0 || p.DeadlineMargin < 0 {
		return p, fmt.Errorf("ksef: retry policy: negative value in %+v", p)
	}
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.BaseDelay == 0 {
		p.BaseDelay = DefaultBaseDelay
	}
	if p.MaxDelay == 0 {
		p.MaxDelay = DefaultMaxDelay
	}
	if p.MaxRetryAfter == 0 {
		p.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if p.DeadlineMargin == 0 {
		p.DeadlineMargin = DefaultDeadlineMargin
	}
	if p.BaseDelay > p.MaxDelay {
		return p, fmt.Errorf("ksef: retry policy: base delay %s exceeds max delay %s", p.BaseDelay, p.MaxDelay)
	}
	return p, nil
}

// backoff is the wait after the given failed attempt (1 for the first): a uniformly random
// duration in [0, min(MaxDelay, BaseDelay*2^(attempt-1))) ("full jitter"). jitter returns a
// number in [0, 1).
func (p RetryPolicy) backoff(attempt int, jitter func() float64) time.Duration {
	ceiling := p.MaxDelay
	if shift := attempt - 1; shift < 32 {
		if d := p.BaseDelay << shift; d > 0 && d < p.MaxDelay {
			ceiling = d
		}
	}
	f := jitter()
	if f < 0 || f >= 1 {
		f = 0
	}
	return time.Duration(f * float64(ceiling))
}

// fitsDeadline reports whether waiting d still leaves margin before ctx's deadline. Deadlines
// are wall-clock times, so this uses the real clock.
func fitsDeadline(ctx context.Context, d, margin time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return !ok || time.Until(deadline)-margin >= d
}

// waitContext waits d or until ctx ends, whichever is first.
func waitContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryStatus reports whether an HTTP status may be retried for this request.
func (r *request) retryStatus(code int) bool {
	if r.retryAny5xx && code >= 500 && code <= 599 {
		return true
	}
	switch code {
	case http.StatusTooManyRequests:
		return true // rejected before processing: safe for every call
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return r.repeatable
	}
	return false
}

// retryTransport reports whether a network failure may be retried for this request.
func (r *request) retryTransport(err error) bool {
	if badTLS(err) {
		return false
	}
	if notSent(err) {
		return true
	}
	if !r.repeatable {
		return false
	}
	// *url.Error is itself a net.Error: look at what it wraps.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// notSent reports whether err shows that the request cannot have reached the server: name
// resolution or connection set-up failed.
func notSent(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}

// badTLS reports certificate and TLS protocol failures, which repeating will not cure.
func badTLS(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		record    tls.RecordHeaderError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &record) || errors.As(err, &authority) ||
		errors.As(err, &hostname) || errors.As(err, &invalid)
}
