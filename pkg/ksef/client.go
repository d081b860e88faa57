package ksef

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// HTTPDoer sends HTTP requests. *http.Client implements it; tests and callers that need tracing,
// proxies or custom TLS pass their own.
type HTTPDoer interface {
	Do(*http.Request) (*http.Response, error)
}

// AccessTokenSource supplies the access token (a JWT obtained with RedeemTokens or
// RefreshAccessToken) sent as the bearer token to KSeF's business endpoints: sessions, invoices,
// UPOs and limits. The client asks for it before every attempt of a request, so a source may
// refresh a token that is about to expire.
type AccessTokenSource interface {
	AccessToken(ctx context.Context) (Secret, error)
}

// StaticAccessToken is an AccessTokenSource that always returns the same access token. Printing
// or logging it shows "[REDACTED]".
type StaticAccessToken Secret

// AccessToken implements AccessTokenSource.
func (t StaticAccessToken) AccessToken(context.Context) (Secret, error) {
	if t == "" {
		return "", errors.New("ksef: static access token is empty")
	}
	return Secret(t), nil
}

// String implements fmt.Stringer without revealing the token.
func (t StaticAccessToken) String() string { return Secret(t).String() }

// GoString implements fmt.GoStringer without revealing the token.
func (t StaticAccessToken) GoString() string { return Secret(t).String() }

// LogValue implements slog.LogValuer without revealing the token.
func (t StaticAccessToken) LogValue() slog.Value { return Secret(t).LogValue() }

// ErrNoAccessToken is returned by calls to business endpoints when the client was built without
// WithAccessToken.
var ErrNoAccessToken = errors.New("ksef: no access token source configured (use WithAccessToken)")

// defaultHTTPTimeout bounds one HTTP exchange of the default *http.Client. An invoice is at
// most a few megabytes and a UPO page a few more; a minute is generous and still far below
// the Lambda maximum.
const defaultHTTPTimeout = 60 * time.Second

// defaultUserAgent identifies the client to KSeF.
const defaultUserAgent = "ksef-serverless-go (+https://github.com/ksef-serverless/ksef-serverless)"

// options collects what the Option functions set; NewClient turns it into a Client.
type options struct {
	env            Environment
	baseURL        string
	qrBaseURL      string
	httpClient     HTTPDoer
	logger         *slog.Logger
	now            func() time.Time
	tokens         AccessTokenSource
	retry          RetryPolicy
	wait           func(ctx context.Context, d time.Duration) error
	userAgent      string
	problemDetails bool
}

// Option configures a Client. Options validate their arguments; NewClient returns the first
// error.
type Option func(*options) error

// WithEnvironment selects a KSeF environment: its API base URL and its QR (verification link)
// host. The default is Test.
func WithEnvironment(e Environment) Option {
	return func(o *options) error {
		if e.BaseURL() == "" {
			return fmt.Errorf("ksef: unknown environment %q", string(e))
		}
		o.env = e
		return nil
	}
}

// WithBaseURL points the client at any KSeF API base URL ending in /v2, such as the local
// emulator's. It takes precedence over the environment's URL; the QR host still comes from the
// environment unless WithQRBaseURL is given too.
func WithBaseURL(u string) Option {
	return func(o *options) error {
		base, err := parseBaseURL(u)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(base, "/v2") {
			return fmt.Errorf("ksef: base URL %q must end in /v2", base)
		}
		o.baseURL = base
		return nil
	}
}

// WithQRBaseURL sets the host used in verification links (QR codes), such as
// "https://qr-test.ksef.mf.gov.pl", overriding the environment's.
func WithQRBaseURL(u string) Option {
	return func(o *options) error {
		base, err := parseBaseURL(u)
		if err != nil {
			return err
		}
		o.qrBaseURL = base
		return nil
	}
}

// WithHTTPClient sets the transport. The default is an *http.Client with a 60-second timeout.
func WithHTTPClient(c HTTPDoer) Option {
	return func(o *options) error {
		if c == nil {
			return errors.New("ksef: nil HTTP client")
		}
		o.httpClient = c
		return nil
	}
}

// WithLogger sets the logger. The client logs one Debug record per HTTP attempt (method, path
// pattern, status, attempt, duration) and never logs tokens, keys or bodies. The default
// discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			return errors.New("ksef: nil logger")
		}
		o.logger = l
		return nil
	}
}

// WithClock sets the clock used to pick the valid MF public key and to turn an HTTP-date
// Retry-After into a wait. The default is time.Now. Context deadlines are always compared with
// the real clock.
func WithClock(now func() time.Time) Option {
	return func(o *options) error {
		if now == nil {
			return errors.New("ksef: nil clock")
		}
		o.now = now
		return nil
	}
}

// WithAccessToken sets the source of the bearer token for business endpoints. Authentication
// endpoints take their token as an argument instead.
func WithAccessToken(src AccessTokenSource) Option {
	return func(o *options) error {
		if src == nil {
			return errors.New("ksef: nil access token source")
		}
		o.tokens = src
		return nil
	}
}

// WithRetryPolicy sets how failed requests are retried. Zero fields take their defaults.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(o *options) error {
		p, err := p.withDefaults()
		if err != nil {
			return err
		}
		o.retry = p
		return nil
	}
}

// WithWait replaces the function that waits between attempts. It must return early with the
// context's error when the context ends. Tests inject one that records the durations and
// returns at once.
func WithWait(wait func(ctx context.Context, d time.Duration) error) Option {
	return func(o *options) error {
		if wait == nil {
			return errors.New("ksef: nil wait function")
		}
		o.wait = wait
		return nil
	}
}

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option {
	return func(o *options) error {
		if strings.TrimSpace(ua) == "" {
			return errors.New("ksef: empty user agent")
		}
		o.userAgent = ua
		return nil
	}
}

// WithProblemDetails makes the client send "X-Error-Format: problem-details", so that KSeF
// answers 400 errors as application/problem+json instead of the deprecated exception body.
// Both shapes decode into the same *APIError.
func WithProblemDetails(on bool) Option {
	return func(o *options) error {
		o.problemDetails = on
		return nil
	}
}

// Client talks to one KSeF 2.0 API. It is safe for concurrent use. Build it once (in a
// Lambda's main) and share it.
type Client struct {
	baseURL        string
	qrBaseURL      string
	http           HTTPDoer
	log            *slog.Logger
	now            func() time.Time
	tokens         AccessTokenSource
	retry          RetryPolicy
	wait           func(ctx context.Context, d time.Duration) error
	jitter         func() float64 // uniform in [0, 1); replaced in tests
	userAgent      string
	problemDetails bool

	keysMu sync.Mutex
	keys   keyCache
}

// NewClient builds a client. Without options it talks to the Test environment with a default
// HTTP client, no access token source and the default retry policy.
func NewClient(opts ...Option) (*Client, error) {
	o := options{env: Test}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("ksef: nil option")
		}
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	if o.baseURL == "" {
		o.baseURL = o.env.BaseURL()
	}
	if o.qrBaseURL == "" {
		o.qrBaseURL = o.env.QRBaseURL()
	}
	if o.httpClient == nil {
		o.httpClient = &http.Client{Timeout: defaultHTTPTimeout}
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.wait == nil {
		o.wait = waitContext
	}
	if o.userAgent == "" {
		o.userAgent = defaultUserAgent
	}
	retry, err := o.retry.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Client{
		baseURL:        o.baseURL,
		qrBaseURL:      o.qrBaseURL,
		http:           o.httpClient,
		log:            o.logger,
		now:            o.now,
		tokens:         o.tokens,
		retry:          retry,
		wait:           o.wait,
		jitter:         rand.Float64,
		userAgent:      o.userAgent,
		problemDetails: o.problemDetails,
	}, nil
}

// BaseURL returns the API base URL the client talks to, ending in /v2.
func (c *Client) BaseURL() string { return c.baseURL }

// QRBaseURL returns the host used in verification links (QR codes) for this client's
// environment.
func (c *Client) QRBaseURL() string { return c.qrBaseURL }

func parseBaseURL(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("ksef: invalid URL: %w", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return "", fmt.Errorf("ksef: URL %q must be absolute http or https", raw)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("ksef: URL %q must be a plain scheme://host[/path]", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// authMode says which bearer token, if any, a request carries.
type authMode int

const (
	authAccess   authMode = iota // the client's AccessTokenSource
	authNone                     // public endpoints and pre-signed URLs
	authExplicit                 // a token passed by the caller (authentication or refresh token)
)

// request is one API call on its way through do: the HTTP request (with a body that can be
// re-read for every attempt) plus what do needs to know about the call.
type request struct {
	*http.Request
	op         string   // Client method name, used in errors: "SendInvoice"
	route      string   // path pattern, logged instead of the real path
	repeatable bool     // safe to send again after a 5xx or an ambiguous network failure
	auth       authMode // which bearer token to send
	token      Secret   // the token for authExplicit
	// retryAny5xx also retries 500 and the other 5xx answers: for idempotent uploads to a
	// pre-signed blob URL, whose 500s are the blob store's transient failures.
	retryAny5xx bool
}

// apiPath is a request target: a path pattern such as "/sessions/{referenceNumber}" with its
// placeholders filled in, or an absolute pre-signed URL.
type apiPath struct {
	pattern string
	path    string
	query   url.Values
	abs     bool
	err     error
}

// pathOf fills the {placeholders} of pattern with args, in order, each path-escaped.
func pathOf(pattern string, args ...string) apiPath {
	var b strings.Builder
	rest := pattern
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 || len(args) == 0 {
			return apiPath{pattern: pattern, err: fmt.Errorf("path %q: missing argument", pattern)}
		}
		b.WriteString(rest[:i])
		b.WriteString(url.PathEscape(args[0]))
		args = args[1:]
		rest = rest[i+j+1:]
	}
	if len(args) != 0 {
		return apiPath{pattern: pattern, err: fmt.Errorf("path %q: too many arguments", pattern)}
	}
	return apiPath{pattern: pattern, path: b.String()}
}

// withQuery returns p with a query string.
func (p apiPath) withQuery(q url.Values) apiPath {
	p.query = q
	return p
}

// presigned is an absolute URL handed out by KSeF, used exactly as given.
func presigned(rawURL string) apiPath {
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		return apiPath{pattern: "(pre-signed URL)", err: errors.New("invalid pre-signed URL")}
	case (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return apiPath{pattern: "(pre-signed URL)", err: errors.New("pre-signed URL must be absolute http or https")}
	}
	return apiPath{pattern: "(pre-signed URL) " + u.Host, path: rawURL, abs: true}
}

// xmlBody is a request body sent as application/xml, byte for byte.
type xmlBody []byte

// newRequest builds a request for the API path p. A nil body sends nothing, an xmlBody is sent
// as it is, anything else is encoded as JSON. The defaults suit a business GET: bearer token
// from the AccessTokenSource, repeatable if the method is idempotent; callers adjust the
// fields of the returned request.
func (c *Client) newRequest(ctx context.Context, method string, p apiPath, body any) (*request, error) {
	if p.err != nil {
		return nil, p.err
	}
	target := p.path
	if !p.abs {
		target = c.baseURL + p.path
		if len(p.query) > 0 {
			target += "?" + p.query.Encode()
		}
	}
	var (
		reader      io.Reader
		contentType string
	)
	switch b := body.(type) {
	case nil:
	case xmlBody:
		reader, contentType = bytes.NewReader(b), "application/xml"
	default:
		buf, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request body: %w", err)
		}
		reader, contentType = bytes.NewReader(buf), "application/json"
	}
	hr, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", sanitizeError(err))
	}
	if contentType != "" {
		hr.Header.Set("Content-Type", contentType)
	}
	hr.Header.Set("Accept", "application/json")
	hr.Header.Set("User-Agent", c.userAgent)
	if c.problemDetails && !p.abs {
		hr.Header.Set("X-Error-Format", "problem-details")
	}
	return &request{
		Request:    hr,
		op:         method + " " + p.pattern,
		route:      p.pattern,
		repeatable: method == http.MethodGet || method == http.MethodHead || method == http.MethodDelete || method == http.MethodPut,
		auth:       authAccess,
	}, nil
}

// maxJSONResponse bounds a decoded JSON response; KSeF's largest (a page of 1000 invoice
// statuses) is far smaller.
const maxJSONResponse = 32 << 20

// maxDocument bounds a downloaded document (UPO page, invoice).
const maxDocument = 64 << 20

// do sends r, retrying as the retry policy allows, and decodes a 2xx response into v: nil
// discards the body, a *Document receives the raw bytes (checked against x-ms-meta-hash),
// anything else is decoded from JSON. A non-2xx response becomes an *APIError.
func (c *Client) do(r *request, v any) error {
	ctx := r.Context()
	p := c.retry
	for attempt := 1; ; attempt++ {
		hr, err := c.prepare(r)
		if err != nil {
			return err
		}
		resp, err := c.exchange(r, hr, attempt)
		if err != nil {
			if ctx.Err() != nil || !r.retryTransport(err) || attempt >= p.MaxAttempts {
				return err
			}
			delay := p.backoff(attempt, c.jitter)
			if p.HandBack || !fitsDeadline(ctx, delay, p.DeadlineMargin) {
				return err
			}
			c.logRetry(r, attempt, delay)
			if werr := c.wait(ctx, delay); werr != nil {
				return fmt.Errorf("ksef: %s: retry wait: %w (after: %w)", r.op, werr, err)
			}
			continue
		}
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return c.decodeResponse(r, resp, v)
		}
		apiErr := c.decodeError(r, resp)
		if !r.retryStatus(resp.StatusCode) {
			return apiErr
		}
		// The wait this failure calls for: at least what KSeF asked for.
		delay := max(p.backoff(attempt, c.jitter), apiErr.RetryAfter)
		switch {
		case apiErr.RetryAfter > p.MaxRetryAfter:
			return apiErr // too long to wait in-process; RetryAfter is KSeF's value
		case attempt >= p.MaxAttempts, p.HandBack, !fitsDeadline(ctx, delay, p.DeadlineMargin):
			apiErr.RetryAfter = delay
			return apiErr
		}
		c.logRetry(r, attempt, delay)
		if werr := c.wait(ctx, delay); werr != nil {
			apiErr.RetryAfter = delay
			return fmt.Errorf("ksef: %s: retry wait: %w (after: %w)", r.op, werr, apiErr)
		}
	}
}

// prepare makes a fresh copy of the request for one attempt: a fresh body and the bearer token.
func (c *Client) prepare(r *request) (*http.Request, error) {
	ctx := r.Context()
	hr := r.Clone(ctx)
	if r.GetBody != nil {
		body, err := r.GetBody()
		if err != nil {
			return nil, fmt.Errorf("ksef: %s: rewind body: %w", r.op, err)
		}
		hr.Body = body
	}
	switch r.auth {
	case authAccess:
		if c.tokens == nil {
			return nil, fmt.Errorf("ksef: %s: %w", r.op, ErrNoAccessToken)
		}
		tok, err := c.tokens.AccessToken(ctx)
		if err != nil {
			return nil, fmt.Errorf("ksef: %s: get access token: %w", r.op, err)
		}
		if tok == "" {
			return nil, fmt.Errorf("ksef: %s: access token source returned an empty token", r.op)
		}
		hr.Header.Set("Authorization", "Bearer "+tok.Reveal())
	case authExplicit:
		if r.token == "" {
			return nil, fmt.Errorf("ksef: %s: empty token", r.op)
		}
		hr.Header.Set("Authorization", "Bearer "+r.token.Reveal())
	}
	return hr, nil
}

// exchange sends one attempt and logs it. A network failure comes back as a *url.Error, with
// any query string redacted, wrapped with the operation.
func (c *Client) exchange(r *request, hr *http.Request, attempt int) (*http.Response, error) {
	ctx := r.Context()
	start := time.Now()
	resp, err := c.http.Do(hr)
	attrs := []slog.Attr{
		slog.String("op", r.op),
		slog.String("method", r.Method),
		slog.String("path", r.route),
		slog.Int("attempt", attempt),
		slog.Duration("duration", time.Since(start)),
	}
	if err != nil {
		err = fmt.Errorf("ksef: %s: %w", r.op, sanitizeError(err))
		attrs = append(attrs, slog.String("error", err.Error()))
		c.log.LogAttrs(ctx, slog.LevelDebug, "ksef request failed", attrs...)
		return nil, err
	}
	attrs = append(attrs, slog.Int("statusCode", resp.StatusCode))
	if w := resp.Header.Get("X-System-Warning"); w != "" {
		attrs = append(attrs, slog.String("systemWarning", redact(w)))
	}
	c.log.LogAttrs(ctx, slog.LevelDebug, "ksef request", attrs...)
	return resp, nil
}

func (c *Client) logRetry(r *request, attempt int, delay time.Duration) {
	c.log.LogAttrs(r.Context(), slog.LevelDebug, "ksef retry",
		slog.String("op", r.op), slog.String("path", r.route),
		slog.Int("attempt", attempt), slog.Duration("delay", delay))
}

// decodeResponse reads a 2xx response into v and closes the body.
func (c *Client) decodeResponse(r *request, resp *http.Response, v any) error {
	defer closeBody(resp)
	switch v := v.(type) {
	case nil:
		return nil
	case *Document:
		content, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
		if err != nil {
			return fmt.Errorf("ksef: %s: read document: %w", r.op, sanitizeError(err))
		}
		if len(content) > maxDocument {
			return fmt.Errorf("ksef: %s: document larger than %d bytes", r.op, maxDocument)
		}
		doc, err := newDocument(content, resp.Header.Get("x-ms-meta-hash"))
		if err != nil {
			return fmt.Errorf("ksef: %s: %w", r.op, err)
		}
		*v = *doc
		return nil
	default:
		dec := json.NewDecoder(io.LimitReader(resp.Body, maxJSONResponse))
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("ksef: %s: decode response (HTTP %d): %w", r.op, resp.StatusCode, sanitizeError(err))
		}
		return nil
	}
}

// closeBody drains a little of what is left, so that the connection can be reused, and closes.
func closeBody(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
}

// sanitizeError removes the query string and user info from the URL inside a *url.Error: a
// pre-signed URL carries its credential (the SAS signature) in the query.
func sanitizeError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return &url.Error{Op: ue.Op, URL: sanitizeURL(ue.URL), Err: ue.Err}
}

func sanitizeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "REDACTED"
	}
	u.Fragment = ""
	return u.String()
}

// apiTime decodes the date-times KSeF writes: RFC 3339 with up to 7 fractional digits and "Z"
// or an offset such as "+00:00", and also values without any offset (read as UTC, which is
// what KSeF writes there) and plain dates. null and "" decode to the zero time. Decoded times
// are in UTC.
type apiTime struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *apiTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("date-time must be a string: %w", err)
	}
	tt, err := parseTime(s)
	if err != nil {
		return err
	}
	t.Time = tt
	return nil
}

var timeLayouts = []string{
	time.RFC3339Nano,                      // 2025-07-11T12:23:56.0154302+00:00, ...Z
	"2006-01-02T15:04:05.999999999Z0700",  // +0000
	"2006-01-02T15:04:05.999999999",       // no offset: UTC
	"2006-01-02 15:04:05.999999999Z07:00", // space instead of T
	time.DateOnly,                         // format: date
}

// parseTime parses one KSeF date-time leniently; see apiTime.
func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range timeLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("unrecognised date-time %q", s)
}
