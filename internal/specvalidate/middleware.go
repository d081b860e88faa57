package specvalidate

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Texts of KSeF's generic validation failure, as in the 400 tables of the API description.
const (
	codeValidation        = 21405
	descriptionValidation = "Błąd walidacji danych wejściowych."
	detailBadRequest      = "Żądanie jest nieprawidłowe."
	detailUnauthorized    = "Wymagane jest uwierzytelnienie."
)

// Options configure Middleware.
type Options struct {
	// RejectInvalidRequests makes the middleware answer an invalid request itself instead of
	// passing it on: 400 with KSeF's exception body, code 21405 and the validator's message in
	// details (problem details if the request asks with "X-Error-Format: problem-details"), or
	// 401 with KSeF's problem details if the bearer token is missing.
	RejectInvalidRequests bool
	// OnRequestError, if set, is called with every invalid request under /v2, including those
	// that match no operation, which are always passed on.
	OnRequestError func(r *http.Request, err error)
	// OnResponseError, if set, is called with every response under /v2 that does not conform
	// to the description.
	OnResponseError func(r *http.Request, status int, err error)
}

// Middleware validates every request under /v2 and every response to it, and passes the request
// on to next. Requests outside /v2 (admin endpoints, pre-signed upload URLs) pass through
// untouched. Both bodies are buffered, in full, and passed on unchanged; responses therefore
// reach the client only when next returns, so streaming and http.Flusher are not available under
// /v2.
func (v *Validator) Middleware(next http.Handler, opts Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != basePath && !strings.HasPrefix(r.URL.Path, basePath+"/") {
			next.ServeHTTP(w, r)
			return
		}
		body, err := readBody(r)
		if err != nil {
			err = fmt.Errorf("specvalidate: read request body: %w", err)
			if opts.OnRequestError != nil {
				opts.OnRequestError(r, err)
			}
			writeBadRequest(w, r, err.Error())
			return
		}

		route, params, rerr := v.router.FindRoute(r)
		if rerr != nil {
			// Not an operation of the API: report it and let next answer (typically 404).
			if opts.OnRequestError != nil {
				opts.OnRequestError(r, routeError(r, rerr))
			}
			next.ServeHTTP(w, r)
			return
		}
		if err := v.validateRequest(r, route, params, body); err != nil {
			if opts.OnRequestError != nil {
				opts.OnRequestError(r, err)
			}
			if opts.RejectInvalidRequests {
				var e *Error
				switch {
				case errors.As(err, &e) && e.kind == kindSecurity:
					writeUnauthorized(w, r)
				case e != nil:
					writeBadRequest(w, r, e.Reason)
				default:
					writeBadRequest(w, r, err.Error())
				}
				return
			}
		}

		rec := &recorder{header: make(http.Header), status: http.StatusOK, w: w}
		next.ServeHTTP(rec, r)
		if err := v.validateResponse(r, route, params, rec.status, rec.header, rec.body.Bytes()); err != nil && opts.OnResponseError != nil {
			opts.OnResponseError(r, rec.status, err)
		}
		rec.flush()
	})
}

// readBody reads r's body and puts an unread copy back.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, err
}

// recorder buffers a response so that it can be validated before it is sent.
type recorder struct {
	w           http.ResponseWriter
	header      http.Header
	status      int
	wroteHeader bool
	body        bytes.Buffer
}

// Header returns the buffered header map.
func (rec *recorder) Header() http.Header { return rec.header }

// WriteHeader records the status; informational (1xx) statuses go straight to the client.
func (rec *recorder) WriteHeader(status int) {
	if status >= 100 && status < 200 {
		copyHeader(rec.w.Header(), rec.header)
		rec.w.WriteHeader(status)
		return
	}
	if rec.wroteHeader {
		return
	}
	rec.status = status
	rec.wroteHeader = true
}

// Write buffers b.
func (rec *recorder) Write(b []byte) (int, error) {
	rec.wroteHeader = true
	return rec.body.Write(b)
}

// flush sends the buffered response.
func (rec *recorder) flush() {
	copyHeader(rec.w.Header(), rec.header)
	rec.w.WriteHeader(rec.status)
	rec.w.Write(rec.body.Bytes()) // an error means the client went away; nothing to do
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append([]string(nil), vs...)
	}
}

// exceptionResponse is KSeF's default 400 body (schema ExceptionResponse).
type exceptionResponse struct {
	Exception exceptionInfo `json:"exception"`
}

type exceptionInfo struct {
	ExceptionDetailList []exceptionDetail `json:"exceptionDetailList"`
	ServiceCode         string            `json:"serviceCode"`
	Timestamp           string            `json:"timestamp"`
}

type exceptionDetail struct {
	ExceptionCode        int      `json:"exceptionCode"`
	ExceptionDescription string   `json:"exceptionDescription"`
	Details              []string `json:"details"`
}

// badRequestProblem is KSeF's 400 body with "X-Error-Format: problem-details" (schema
// BadRequestProblemDetails).
type badRequestProblem struct {
	Title     string     `json:"title"`
	Status    int        `json:"status"`
	Instance  string     `json:"instance"`
	Detail    string     `json:"detail"`
	Errors    []apiError `json:"errors"`
	Timestamp string     `json:"timestamp"`
	TraceID   string     `json:"traceId"`
}

type apiError struct {
	Code        int      `json:"code"`
	Description string   `json:"description"`
	Details     []string `json:"details"`
}

// unauthorizedProblem is KSeF's 401 body (schema UnauthorizedProblemDetails).
type unauthorizedProblem struct {
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance"`
	TraceID   string `json:"traceId"`
	Timestamp string `json:"timestamp"`
}

// writeBadRequest answers 400 with code 21405 and detail in the format the request asked for.
func writeBadRequest(w http.ResponseWriter, r *http.Request, detail string) {
	now := time.Now().UTC()
	traceID := newTraceID()
	if strings.EqualFold(r.Header.Get("X-Error-Format"), "problem-details") {
		writeJSON(w, http.StatusBadRequest, "application/problem+json", badRequestProblem{
			Title:     "Bad Request",
			Status:    http.StatusBadRequest,
			Instance:  r.URL.Path,
			Detail:    detailBadRequest,
			Errors:    []apiError{{Code: codeValidation, Description: descriptionValidation, Details: []string{detail}}},
			Timestamp: now.Format("2006-01-02T15:04:05.0000000") + "+00:00",
			TraceID:   traceID,
		})
		return
	}
	writeJSON(w, http.StatusBadRequest, "application/json", exceptionResponse{Exception: exceptionInfo{
		ExceptionDetailList: []exceptionDetail{{ExceptionCode: codeValidation, ExceptionDescription: descriptionValidation, Details: []string{detail}}},
		ServiceCode:         "00-" + traceID + "-" + traceID[:16] + "-00",
		Timestamp:           now.Format("2006-01-02T15:04:05.0000000"), // KSeF gives no offset here
	}})
}

// writeUnauthorized answers 401 as KSeF does, always with problem details.
func writeUnauthorized(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusUnauthorized, "application/problem+json", unauthorizedProblem{
		Title:     "Unauthorized",
		Status:    http.StatusUnauthorized,
		Detail:    detailUnauthorized,
		Instance:  r.URL.Path,
		TraceID:   newTraceID(),
		Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05.0000000") + "+00:00",
	})
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen: plain structs of strings and ints
		http.Error(w, "specvalidate: encode error body", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	w.Write(body) // an error means the client went away; nothing to do
}

// newTraceID returns 16 random bytes in hex, the shape of KSeF's traceId.
func newTraceID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}
