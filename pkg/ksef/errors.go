package ksef

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Sentinel errors matched by *APIError.Is, for use with errors.Is.
var (
	// ErrUnauthorized matches HTTP 401: a missing, expired or wrong kind of token.
	ErrUnauthorized = errors.New("ksef: unauthorized")
	// ErrForbidden matches HTTP 403; APIError.ReasonCode says why (missing-permissions,
	// ip-not-allowed, ...).
	ErrForbidden = errors.New("ksef: forbidden")
	// ErrNotFound matches HTTP 404 and the HTTP 400 exception codes KSeF uses for unknown
	// resources: 21164 (invoice), 21173 (session), 21178 (UPO), 21304 (authentication).
	ErrNotFound = errors.New("ksef: not found")
	// ErrRateLimited matches HTTP 429; APIError.RetryAfter says how long to wait.
	ErrRateLimited = errors.New("ksef: rate limited")
	// ErrGone matches HTTP 410: the status of an asynchronous operation has expired.
	ErrGone = errors.New("ksef: gone")
)

// Exception codes that the client or its callers act on, from the per-endpoint tables of the
// KSeF OpenAPI description.
const (
	CodeInvalidChallenge   = 21111 // challenge unknown or expired (ksef-token, xades-signature)
	CodeInvoiceLimit       = 21155 // session invoice limit reached (send invoice)
	CodeInvoiceNotFound    = 21164 // no invoice with that KSeF number
	CodeInvoiceNotReady    = 21165 // invoice processed but not yet available for download
	CodeSessionNotFound    = 21173 // unknown session
	CodeUPONotFound        = 21178 // UPO not found (yet)
	CodeSessionStatus      = 21180 // the session's status forbids the operation (closed, ...)
	CodeNoAuthorization    = 21301 // tokens already redeemed, authentication not finished, token revoked
	CodeAuthNotFound       = 21304 // unknown authentication operation
	CodeSizeMismatch       = 21402 // declared size differs from the content (send invoice)
	CodeHashMismatch       = 21403 // declared hash differs from the content (send invoice)
	CodeValidation         = 21405 // request validation error; the validator's text is in Details
	CodeContinuationToken  = 21418 // malformed continuation token (paged lists)
	CodeUnknownPublicKey   = 21470 // unknown or retired publicKeyId: refetch the MF keys
	codeRateLimitedLegacy  = 429   // the status.code of the deprecated 429 body
	maxErrorRead           = 64 << 10
	maxErrorBody           = 4 << 10
	maxErrorSnippet        = 200
	maxRetryAfterParseSecs = 7 * 24 * 3600
)

// ExceptionDetail is one entry of KSeF's error list: exceptionDetailList of the exception body,
// or errors of a problem-details body.
type ExceptionDetail struct {
	Code        int      `json:"code"`
	Description string   `json:"description,omitempty"`
	Details     []string `json:"details,omitempty"`
}

// APIError is a non-2xx answer from KSeF. It is decoded from any of KSeF's error bodies: the
// exception body ({"exception":{"exceptionDetailList":[...]}}), problem details
// (application/problem+json, as sent for 401, 403, 410 and, with WithProblemDetails, for 400
// and 429) and the deprecated 429 body ({"status":{"code":429,...}}). All text taken from the
// body has anything that looks like a token replaced with "[REDACTED]".
type APIError struct {
	Op         string            // the Client method, e.g. "SendInvoice"
	StatusCode int               // HTTP status
	Title      string            // problem title, or the HTTP status text
	Detail     string            // problem detail, or the 429 description and details
	ReasonCode string            // 403 reason: missing-permissions, ip-not-allowed, ...
	TraceID    string            // problem traceId, or serviceCode of the exception body
	Instance   string            // problem instance
	Timestamp  time.Time         // when KSeF reported the error, if it said
	Details    []ExceptionDetail // exception codes with descriptions
	Security   map[string]any    // 403 data depending on ReasonCode (requiredAnyOfPermissions, clientIp, ...)
	// RetryAfter is how long to wait before repeating the call: KSeF's Retry-After header or,
	// when the client gives a retryable failure back without waiting (attempts used up, the
	// context deadline too close, RetryPolicy.HandBack), the wait it would have made.
	RetryAfter time.Duration
	Body       []byte // the raw body, at most 4 KiB, tokens redacted
}

var _ error = (*APIError)(nil)

// Error describes the failure on one line: operation, HTTP status, exception codes with their
// descriptions and details, and the trace id.
func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("ksef: ")
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
	if e.Title != "" {
		b.WriteString(" ")
		b.WriteString(e.Title)
	}
	if e.ReasonCode != "" {
		b.WriteString(" [")
		b.WriteString(e.ReasonCode)
		b.WriteString("]")
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	for i, d := range e.Details {
		if i == 0 && e.Detail == "" {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d", d.Code)
		if d.Description != "" {
			b.WriteString(" ")
			b.WriteString(d.Description)
		}
		if len(d.Details) > 0 {
			b.WriteString(" (")
			b.WriteString(strings.Join(d.Details, "; "))
			b.WriteString(")")
		}
	}
	if e.Detail == "" && len(e.Details) == 0 && len(e.Body) > 0 {
		b.WriteString(": ")
		b.WriteString(snippet(e.Body))
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	if e.TraceID != "" {
		b.WriteString(" (trace ")
		b.WriteString(e.TraceID)
		b.WriteString(")")
	}
	return redact(b.String())
}

// Is makes errors.Is(err, ErrNotFound) and the other sentinels work; see their descriptions.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound ||
			e.HasCode(CodeInvoiceNotFound) || e.HasCode(CodeSessionNotFound) ||
			e.HasCode(CodeUPONotFound) || e.HasCode(CodeAuthNotFound)
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrGone:
		return e.StatusCode == http.StatusGone
	}
	return false
}

// HasCode reports whether KSeF listed the exception code, e.g. CodeUnknownPublicKey.
func (e *APIError) HasCode(code int) bool {
	for _, d := range e.Details {
		if d.Code == code {
			return true
		}
	}
	return false
}

// Temporary reports whether the failure is transient: HTTP 429, 502, 503 or 504. Repeating
// the call later may succeed. For calls that are not safe to repeat (SendInvoice,
// RedeemTokens, opening and closing sessions) a 5xx leaves open whether KSeF acted on the
// request: check the state (invoice or session status) before sending again.
func (e *APIError) Temporary() bool {
	switch e.StatusCode {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// decodeError turns a non-2xx response into an *APIError and closes the body.
func (c *Client) decodeError(r *request, resp *http.Response) *APIError {
	defer closeBody(resp)
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorRead)) // a short read still tells something
	e := parseAPIError(resp.StatusCode, resp.Header, raw, c.now())
	e.Op = r.op
	return e
}

// parseAPIError decodes whichever of KSeF's error shapes raw holds. It never fails: what it
// cannot decode stays in Body.
func parseAPIError(status int, h http.Header, raw []byte, now time.Time) *APIError {
	e := &APIError{StatusCode: status}
	if d, ok := parseRetryAfter(h.Get("Retry-After"), now); ok {
		e.RetryAfter = d
	}
	body := redact(string(raw))
	if len(body) > maxErrorBody {
		body = redact(truncateUTF8(body, maxErrorBody))
	}
	if body != "" {
		e.Body = []byte(body)
	}

	var top map[string]json.RawMessage
	if json.Unmarshal(bytes.TrimSpace(raw), &top) == nil {
		e.decodeException(top["exception"])
		e.Title = str(top["title"])
		e.Detail = str(top["detail"])
		e.Instance = str(top["instance"])
		e.ReasonCode = str(top["reasonCode"])
		if id := str(top["traceId"]); id != "" {
			e.TraceID = id
		}
		if ts := timestamp(top["timestamp"]); !ts.IsZero() {
			e.Timestamp = ts
		}
		var problems []ExceptionDetail
		if json.Unmarshal(top["errors"], &problems) == nil {
			e.Details = append(e.Details, problems...)
		}
		var security map[string]any
		if json.Unmarshal(top["security"], &security) == nil && len(security) > 0 {
			e.Security = security
		}
		e.decodeLegacyStatus(top["status"])
	}
	if e.Title == "" {
		e.Title = http.StatusText(status)
	}
	e.redactFields()
	return e
}

// decodeException reads the exception body: {"exception":{"exceptionDetailList":[...],...}}.
func (e *APIError) decodeException(raw json.RawMessage) {
	var ex map[string]json.RawMessage
	if len(raw) == 0 || json.Unmarshal(raw, &ex) != nil {
		return
	}
	var list []struct {
		Code        int      `json:"exceptionCode"`
		Description string   `json:"exceptionDescription"`
		Details     []string `json:"details"`
	}
	if json.Unmarshal(ex["exceptionDetailList"], &list) == nil {
		for _, d := range list {
			e.Details = append(e.Details, ExceptionDetail{Code: d.Code, Description: d.Description, Details: d.Details})
		}
	}
	e.TraceID = str(ex["serviceCode"])
	e.Timestamp = timestamp(ex["timestamp"])
}

// decodeLegacyStatus reads the deprecated 429 body: {"status":{"code":429,"description":...,
// "details":[...]}}. In problem details "status" is a number, which this ignores.
func (e *APIError) decodeLegacyStatus(raw json.RawMessage) {
	var st struct {
		Code        int      `json:"code"`
		Description string   `json:"description"`
		Details     []string `json:"details"`
	}
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &st) != nil {
		return
	}
	if e.Title == "" {
		e.Title = st.Description
	}
	if e.Detail == "" {
		e.Detail = strings.Join(st.Details, " ")
	}
	if st.Code != 0 && st.Code != e.StatusCode && st.Code != codeRateLimitedLegacy {
		e.Details = append(e.Details, ExceptionDetail{Code: st.Code, Description: st.Description, Details: st.Details})
	}
}

func (e *APIError) redactFields() {
	e.Title = redact(e.Title)
	e.Detail = redact(e.Detail)
	e.ReasonCode = redact(e.ReasonCode)
	e.TraceID = redact(e.TraceID)
	e.Instance = redact(e.Instance)
	for i := range e.Details {
		d := &e.Details[i]
		d.Description = redact(d.Description)
		for j := range d.Details {
			d.Details[j] = redact(d.Details[j])
		}
	}
	if e.Security != nil {
		e.Security = redactAny(e.Security).(map[string]any)
	}
}

// redactAny redacts every string, keys included, of a decoded JSON value.
func redactAny(v any) any {
	switch v := v.(type) {
	case string:
		return redact(v)
	case []any:
		for i := range v {
			v[i] = redactAny(v[i])
		}
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[redact(k)] = redactAny(x)
		}
		return out
	}
	return v
}

// str decodes a JSON string, or returns "" for anything else.
func str(raw json.RawMessage) string {
	var s string
	if len(raw) == 0 || json.Unmarshal(raw, &s) != nil {
		return ""
	}
	return s
}

// timestamp decodes a KSeF date-time, or returns the zero time.
func timestamp(raw json.RawMessage) time.Time {
	var t apiTime
	if len(raw) == 0 || json.Unmarshal(raw, &t) != nil {
		return time.Time{}
	}
	return t.Time
}

// secretPattern matches what looks like a credential in text KSeF sends back: JWTs (also cut
// short), KSeF tokens (reference|context|secret), long hex secrets and bearer values.
var secretPattern = regexp.MustCompile(
	`eyJ[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*){0,2}` +
		`|\d{8}-EC-[0-9A-Fa-f]{10}-[0-9A-Fa-f]{10}-[0-9A-Fa-f]{2}\|[^|"\s]*(?:\|[0-9A-Za-z]*)?` +
		`|[0-9a-fA-F]{64,}` +
		`|(?i:bearer)\s+[^\s"'\[\]]+`)

// redact replaces everything in s that looks like a credential with "[REDACTED]".
func redact(s string) string {
	if !secretPattern.MatchString(s) {
		return s
	}
	return secretPattern.ReplaceAllStringFunc(s, func(m string) string {
		if len(m) > 6 && strings.EqualFold(m[:6], "bearer") {
			return m[:6] + " " + redacted
		}
		return redacted
	})
}

// snippet is the start of a body on one line, for error messages when nothing else is known.
func snippet(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > maxErrorSnippet {
		s = truncateUTF8(s, maxErrorSnippet) + "..."
	}
	return s
}

// truncateUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// parseRetryAfter reads a Retry-After header: delay-seconds or an HTTP-date. The result is
// never negative; absurd values are capped at a week.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		switch {
		case secs < 0:
			return 0, false
		case secs > maxRetryAfterParseSecs:
			secs = maxRetryAfterParseSecs
		}
		return time.Duration(secs) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		switch {
		case d < 0:
			d = 0
		case d > maxRetryAfterParseSecs*time.Second:
			d = maxRetryAfterParseSecs * time.Second
		}
		return d, true
	}
	return 0, false
}
