package emulator

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"time"
)

// statusClientClosed is logged (never sent) when the client went away before an answer.
const statusClientClosed = 499

// statusRecorder remembers the status written through it.
type statusRecorder struct {
	http.ResponseWriter
	status    int
	abandoned bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type recorderKey struct{}

// markAbandoned records, for the log line, that the request was dropped because the client gave
// up.
func markAbandoned(r *http.Request) {
	if rec, ok := r.Context().Value(recorderKey{}).(*statusRecorder); ok {
		rec.abandoned = true
	}
}

// logMiddleware writes one JSON line per request: method, path (never the query, which holds the
// signatures of pre-signed links), status and duration. Bodies and headers are never logged.
func (e *Emulator) logMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), recorderKey{}, rec)))
		status := rec.status
		switch {
		case rec.abandoned:
			status = statusClientClosed
		case status == 0:
			status = http.StatusOK
		}
		e.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
			slog.String("clientIp", clientIP(r)),
		)
	})
}

func errAttr(err error) slog.Attr { return slog.String("error", err.Error()) }

func sha256Base64(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}
