package ksef

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// dialError is what the transport reports when the connection could not be opened.
func dialError() error {
	return &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused", Addr: "127.0.0.1:1"}}
}

func TestBackoff(t *testing.T) {
	p, err := RetryPolicy{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	half := func() float64 { return 0.5 }
	tests := []struct {
		attempt int
		jitter  func() float64
		want    time.Duration
	}{
		{1, half, 250 * time.Millisecond},
		{2, half, 500 * time.Millisecond},
		{3, half, time.Second},
		{6, half, 8 * time.Second},
		{7, half, 10 * time.Second}, // 32s capped at 20s
		{40, half, 10 * time.Second},
		{1000, half, 10 * time.Second},
		{3, func() float64 { return 0 }, 0},
		{3, func() float64 { return 0.999 }, 1998 * time.Millisecond},
		{3, func() float64 { return 1.5 }, 0}, // a broken source is clamped
		{3, func() float64 { return -1 }, 0},
	}
	for _, tt := range tests {
		if got := p.backoff(tt.attempt, tt.jitter); got != tt.want {
			t.Errorf("backoff(attempt %d, jitter %v): got %s, want %s", tt.attempt, tt.jitter(), got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"30", 30 * time.Second, true},
		{" 0 ", 0, true},
		{"Tue, 01 Dec 2026 10:00:45 GMT", 45 * time.Second, true},
		{"Tue, 01 Dec 2026 09:59:00 GMT", 0, true}, // in the past: retry now
		{"99999999999", 7 * 24 * time.Hour, true},
		{"Wed, 01 Dec 2100 10:00:00 GMT", 7 * 24 * time.Hour, true},
		{"-5", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseRetryAfter(%q): got %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// countingHandler answers with the given statuses in turn (the last one repeats) and counts
// the attempts. Bodies of 2xx answers come from okFile.
func countingHandler(t *testing.T, attempts *atomic.Int32, okFile string, headers map[string]string, statuses ...int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		n := int(attempts.Add(1))
		status := statuses[min(n, len(statuses))-1]
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		switch {
		case status < 300:
			serveFile(t, w, status, okFile)
		case status == http.StatusTooManyRequests:
			serveFile(t, w, status, "error_legacy_429.json")
		default:
			w.WriteHeader(status)
		}
	}
}

func TestRetryRateLimitedHonoursRetryAfterSeconds(t *testing.T) {
	ts := newTestServer(t)
	var attempts atomic.Int32
	ts.mux.Handle("/v2/sessions/{ref}", countingHandler(t, &attempts, "session_status.json",
		map[string]string{"Retry-After": "7"}, 429, 429, 200))
	if _, err := ts.client.SessionStatus(t.Context(), testSessionRef); err != nil {
		t.Fatalf("SessionStatus: %v", err)
	}
	if got := attempts.Load(); got != 3 {
		t.Errorf("attempts: got %d, want 3", got)
	}
	assertWaits(t, ts.recordedWaits(), 7*time.Second, 7*time.Second)
}

func TestRetryRateLimitedHonoursRetryAfterDate(t *testing.T) {
	ts := newTestServer(t)
	var attempts atomic.Int32
	date := testNow.Add(30 * time.Second).Format(http.TimeFormat)
	ts.mux.Handle("/v2/rate-limits", countingHandler(t, &attempts, "rate_limits.json",
		map[string]string{"Retry-After": date}, 429, 200))
	if _, err := ts.client.RateLimits(t.Context()); err != nil {
		t.Fatalf("RateLimits: %v", err)
	}
	assertWaits(t, ts.recordedWaits(), 30*time.Second)
}

func TestRetryAfterIsMinimumNotMaximum(t *testing.T) {
	// With jitter 0.5 the third backoff is 1s, longer than Retry-After: 0.
	ts := newTestServer(t)
	var attempts atomic.Int32
	ts.mux.Handle("/v2/rate-limits", countingHandler(t, &attempts, "rate_limits.json",
		map[string]string{"Retry-After": "0"}, 429, 429, 429, 200))
	if _, err := ts.client.RateLimits(t.Context()); err != nil {
		t.Fatalf("RateLimits: %v", err)
	}
	assertWaits(t, ts.recordedWaits(), 250*time.Millisecond, 500*time.Millisecond, time.Second)
}

func TestRetry429EvenForSendInvoice(t *testing.T) {
	ts := newTestServer(t)
	var attempts atomic.Int32
	var bodies []string
	ts.mux.HandleFunc("/v2/sessions/online/{ref}/invoices", func(w http.ResponseWriter, r *http.Request) {
		bodies = append(bodies, string(readBody(t, r)))
		if attempts.Add(1) == 1 {
			w.Header().Set("Retry-After", "3")
			serveFile(t, w, http.StatusTooManyRequests, "error_legacy_429.json")
			return
		}
		serveFile(t, w, http.StatusAccepted, "invoice_send.json")
	})
	if _, err := ts.client.SendInvoice(t.Context(), fixedHandle(), []byte("<Faktura/>"), nil); err != nil {
		t.Fatalf("SendInvoice: %v", err)
	}
	if len(bodies) != 2 || bodies[0] != bodies[1] || bodies[0] == "" {
		t.Errorf("the retried request must carry the same body again; got %d bodies", len(bodies))
	}
	assertWaits(t, ts.recordedWaits(), 3*time.Second)
}

func TestRetryServerErrors(t *testing.T) {
	tests := []struct {
		name         string
		status       int
		call         func(*Client, context.Context) error
		wantAttempts int32
	}{
		{"503 on GET is retried", 503, func(c *Client, ctx context.Context) error {
			_, err := c.SessionStatus(ctx, testSessionRef)
			return err
		}, 4},
		{"502 on the challenge is retried", 502, func(c *Client, ctx context.Context) error {
			_, err := c.Challenge(ctx)
			return err
		}, 4},
		{"504 on refresh is retried", 504, func(c *Client, ctx context.Context) error {
			_, err := c.RefreshAccessToken(ctx, testRefreshToken)
			return err
		}, 4},
		{"503 on SendInvoice is not retried", 503, func(c *Client, ctx context.Context) error {
			_, err := c.SendInvoice(ctx, fixedHandle(), []byte("<Faktura/>"), nil)
			return err
		}, 1},
		{"503 on redeem is not retried", 503, func(c *Client, ctx context.Context) error {
			_, err := c.RedeemTokens(ctx, testAuthToken)
			return err
		}, 1},
		{"503 on close is not retried", 503, func(c *Client, ctx context.Context) error {
			return c.CloseOnlineSession(ctx, testSessionRef)
		}, 1},
		{"500 is never retried", 500, func(c *Client, ctx context.Context) error {
			_, err := c.SessionStatus(ctx, testSessionRef)
			return err
		}, 1},
		{"400 is never retried", 400, func(c *Client, ctx context.Context) error {
			_, err := c.SessionStatus(ctx, testSessionRef)
			return err
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			var attempts atomic.Int32
			ts.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
				attempts.Add(1)
				w.WriteHeader(tt.status)
			})
			err := tt.call(ts.client, t.Context())
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tt.status {
				t.Fatalf("got %v, want an *APIError with status %d", err, tt.status)
			}
			if got := attempts.Load(); got != tt.wantAttempts {
				t.Errorf("attempts: got %d, want %d", got, tt.wantAttempts)
			}
			if got := len(ts.recordedWaits()); got != int(tt.wantAttempts)-1 {
				t.Errorf("waits: got %d, want %d", got, tt.wantAttempts-1)
			}
			if tt.wantAttempts > 1 && apiErr.RetryAfter != 2*time.Second {
				// After the 4th attempt the suggested wait is the 4th backoff: 0.5 * 4s.
				t.Errorf("RetryAfter after the last attempt: got %s, want 2s", apiErr.RetryAfter)
			}
		})
	}
}

func TestRetryAfterLongerThanCapIsHandedBack(t *testing.T) {
	ts := newTestServer(t)
	var attempts atomic.Int32
	ts.mux.Handle("/v2/rate-limits", countingHandler(t, &attempts, "rate_limits.json",
		map[string]string{"Retry-After": "120"}, 429))
	_, err := ts.client.RateLimits(t.Context())
	var apiErr *APIError
	if !errors.As(err, &apiErr) || !errors.Is(err, ErrRateLimited) {
		t.Fatalf("got %v, want a rate-limited *APIError", err)
	}
	if apiErr.RetryAfter != 120*time.Second {
		t.Errorf("RetryAfter: got %s, want 2m0s", apiErr.RetryAfter)
	}
	if attempts.Load() != 1 || len(ts.recordedWaits()) != 0 {
		t.Errorf("got %d attempts and waits %v; want 1 attempt, no wait", attempts.Load(), ts.recordedWaits())
	}
}

func TestHandBack(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		header     string
		wantAfter  time.Duration
		temporary  bool
		rateLimted bool
	}{
		{"429 with Retry-After", 429, "5", 5 * time.Second, true, true},
		{"503 without Retry-After gets the backoff", 503, "", 250 * time.Millisecond, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, WithRetryPolicy(RetryPolicy{HandBack: true}))
			var attempts atomic.Int32
			h := map[string]string{}
			if tt.header != "" {
				h["Retry-After"] = tt.header
			}
			ts.mux.Handle("/v2/sessions/{ref}", countingHandler(t, &attempts, "session_status.json", h, tt.status))
			_, err := ts.client.SessionStatus(t.Context(), testSessionRef)
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("got %v, want *APIError", err)
			}
			if apiErr.RetryAfter != tt.wantAfter || apiErr.Temporary() != tt.temporary || errors.Is(err, ErrRateLimited) != tt.rateLimted {
				t.Errorf("got RetryAfter %s, Temporary %v, rate limited %v; want %s, %v, %v",
					apiErr.RetryAfter, apiErr.Temporary(), errors.Is(err, ErrRateLimited), tt.wantAfter, tt.temporary, tt.rateLimted)
			}
			if attempts.Load() != 1 || len(ts.recordedWaits()) != 0 {
				t.Errorf("got %d attempts, waits %v; want 1 attempt and no wait", attempts.Load(), ts.recordedWaits())
			}
		})
	}
}

func TestDeadlineHandBack(t *testing.T) {
	ts := newTestServer(t)
	var attempts atomic.Int32
	ts.mux.Handle("/v2/sessions/{ref}", countingHandler(t, &attempts, "session_status.json",
		map[string]string{"Retry-After": "10"}, 429, 200))
	// 10s of Retry-After do not fit into what is left of the context (a Lambda near its end).
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Second)
	defer cancel()
	_, err := ts.client.SessionStatus(ctx, testSessionRef)
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.RetryAfter != 10*time.Second {
		t.Fatalf("got %v, want *APIError with RetryAfter 10s", err)
	}
	if attempts.Load() != 1 || len(ts.recordedWaits()) != 0 {
		t.Errorf("got %d attempts, waits %v; want 1 attempt and no wait", attempts.Load(), ts.recordedWaits())
	}

	// With enough time left the same call waits and succeeds.
	ctx2, cancel2 := context.WithTimeout(t.Context(), time.Hour)
	defer cancel2()
	attempts.Store(0)
	if _, err := ts.client.SessionStatus(ctx2, testSessionRef); err != nil {
		t.Fatalf("SessionStatus with time left: %v", err)
	}
	assertWaits(t, ts.recordedWaits(), 10*time.Second)
}

func TestContextCancelledDuringWait(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	ts := newTestServer(t, WithWait(func(ctx context.Context, d time.Duration) error {
		cancel() // the Lambda is being shut down while we wait
		return waitContext(ctx, d)
	}))
	var attempts atomic.Int32
	ts.mux.Handle("/v2/sessions/{ref}", countingHandler(t, &attempts, "session_status.json",
		map[string]string{"Retry-After": "3600"}, 503))
	ts.client.retry.MaxRetryAfter = 2 * time.Hour
	_, err := ts.client.SessionStatus(ctx, testSessionRef)
	var apiErr *APIError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &apiErr) || apiErr.StatusCode != 503 {
		t.Fatalf("got %v, want an error wrapping context.Canceled and the 503 *APIError", err)
	}
	if attempts.Load() != 1 {
		t.Errorf("attempts: got %d, want 1", attempts.Load())
	}
}

func TestAttemptsBounded(t *testing.T) {
	ts := newTestServer(t, WithRetryPolicy(RetryPolicy{MaxAttempts: 2}))
	var attempts atomic.Int32
	ts.mux.Handle("/v2/sessions/{ref}", countingHandler(t, &attempts, "session_status.json", nil, 429))
	_, err := ts.client.SessionStatus(t.Context(), testSessionRef)
	if !errors.Is(err, ErrRateLimited) {
		t.Fatalf("got %v, want ErrRateLimited", err)
	}
	if attempts.Load() != 2 {
		t.Errorf("attempts: got %d, want 2", attempts.Load())
	}
	assertWaits(t, ts.recordedWaits(), 250*time.Millisecond)
}

func TestTransportErrors(t *testing.T) {
	reset := &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}
	tests := []struct {
		name         string
		err          error
		call         func(*Client, context.Context) error
		wantAttempts int
	}{
		{"dial error on POST is retried: nothing was sent", dialError(), sendCall, 4},
		{"DNS error on POST is retried", &net.DNSError{Err: "no such host", Name: "api-test.ksef.mf.gov.pl"}, sendCall, 4},
		{"reset on POST is not retried: it may have arrived", reset, sendCall, 1},
		{"unexpected EOF on POST is not retried", io.ErrUnexpectedEOF, sendCall, 1},
		{"reset on GET is retried", reset, statusCall, 4},
		{"unexpected EOF on GET is retried", io.ErrUnexpectedEOF, statusCall, 4},
		{"bad certificate is never retried", x509.UnknownAuthorityError{}, statusCall, 1},
		{"other errors on GET are not retried", errors.New("stopped after 10 redirects"), statusCall, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var attempts int
			var waits []time.Duration
			c, err := NewClient(
				WithBaseURL("https://ksef.invalid/v2"),
				WithAccessToken(StaticAccessToken(testAccessToken)),
				WithHTTPClient(doerFunc(func(r *http.Request) (*http.Response, error) {
					attempts++
					return nil, &url.Error{Op: r.Method, URL: r.URL.String(), Err: tt.err}
				})),
				WithWait(func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }),
			)
			if err != nil {
				t.Fatal(err)
			}
			c.jitter = func() float64 { return 0.5 }
			err = tt.call(c, t.Context())
			if !errors.Is(err, tt.err) && !errors.As(err, new(x509.UnknownAuthorityError)) {
				t.Errorf("got %v, want it to wrap %v", err, tt.err)
			}
			if attempts != tt.wantAttempts || len(waits) != tt.wantAttempts-1 {
				t.Errorf("got %d attempts and %d waits, want %d and %d", attempts, len(waits), tt.wantAttempts, tt.wantAttempts-1)
			}
		})
	}
}

func sendCall(c *Client, ctx context.Context) error {
	_, err := c.SendInvoice(ctx, fixedHandle(), []byte("<Faktura/>"), nil)
	return err
}

func statusCall(c *Client, ctx context.Context) error {
	_, err := c.SessionStatus(ctx, testSessionRef)
	return err
}

func TestTransportRetryHandsBackNearDeadline(t *testing.T) {
	var attempts int
	c, err := NewClient(
		WithBaseURL("https://ksef.invalid/v2"),
		WithAccessToken(StaticAccessToken(testAccessToken)),
		WithHTTPClient(doerFunc(func(r *http.Request) (*http.Response, error) {
			attempts++
			return nil, &url.Error{Op: r.Method, URL: r.URL.String(), Err: dialError()}
		})),
		WithWait(func(context.Context, time.Duration) error { t.Error("unexpected wait"); return nil }),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second) // less than the 2s margin
	defer cancel()
	if err := statusCall(c, ctx); err == nil || attempts != 1 {
		t.Errorf("got %v after %d attempts, want the dial error after 1", err, attempts)
	}
}

func TestWaitContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	if err := waitContext(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("waitContext on a cancelled context: got %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Minute {
		t.Error("waitContext did not return when the context ended")
	}
	if err := waitContext(t.Context(), 0); err != nil {
		t.Errorf("waitContext(0): got %v", err)
	}
	if err := waitContext(t.Context(), time.Nanosecond); err != nil {
		t.Errorf("waitContext(1ns): got %v", err)
	}
}

func assertWaits(t *testing.T, got []time.Duration, want ...time.Duration) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("waits: got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("waits: got %v, want %v", got, want)
			return
		}
	}
}

func TestRetryLogsAreDebugOnly(t *testing.T) {
	ts := newTestServer(t)
	var attempts atomic.Int32
	ts.mux.Handle("/v2/sessions/{ref}", countingHandler(t, &attempts, "session_status.json", nil, 503, 200))
	if _, err := ts.client.SessionStatus(t.Context(), testSessionRef); err != nil {
		t.Fatal(err)
	}
	logs := ts.logs.String()
	if strings.Count(logs, `"msg":"ksef request"`) != 2 || strings.Count(logs, `"msg":"ksef retry"`) != 1 {
		t.Errorf("want two request records and one retry record, got:\n%s", logs)
	}
	if strings.Contains(logs, `"level":"INFO"`) || strings.Contains(logs, `"level":"WARN"`) {
		t.Errorf("the client logs above Debug:\n%s", logs)
	}
}
