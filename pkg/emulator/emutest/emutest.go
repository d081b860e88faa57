package emutest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/specvalidate"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
)

// InvalidRequestHeader marks a request that deliberately breaks the official API description (a
// missing bearer token, a malformed field): the server does not fail the test for it. Responses
// are always checked.
const InvalidRequestHeader = "X-Emutest-Invalid-Request"

// Server is an emulator served over HTTP for one test.
type Server struct {
	// URL is the API base URL, ending in /v2: the value for a client's base-URL option.
	URL string
	// AdminURL is the base URL of the admin API (".../admin").
	AdminURL string
	// Emulator is the emulator behind the server, for direct control (faults, tokens, keys).
	Emulator *emulator.Emulator
	// Clock is the emulator's clock. It starts at the time NewServer ran and moves only when
	// told to, so tests never sleep: Advance it past AuthDelay, AcceptDelay+ProcessingDelay...
	Clock *FakeClock
	// HTTP is the underlying test server.
	HTTP *httptest.Server
}

type faultMarkKey struct{}

// NewServer starts an emulator configured by cfg behind the spec-validating middleware: every
// request and response is checked against the official OpenAPI description, and any violation
// fails tb (except for requests carrying InvalidRequestHeader, and for the undocumented 5xx
// answers of injected httpError faults). The server stops when tb ends. opts may add a logger or
// a wait function; the clock is always the server's FakeClock.
func NewServer(tb testing.TB, cfg emulator.Config, opts ...emulator.Option) *Server {
	tb.Helper()
	return NewServerAt(tb, time.Now(), cfg, opts...)
}

// NewServerAt is NewServer with the clock starting at start, for tests that depend on the date
// (invoice issue dates, KSeF numbers).
func NewServerAt(tb testing.TB, start time.Time, cfg emulator.Config, opts ...emulator.Option) *Server {
	tb.Helper()
	clock := NewFakeClock(start.UTC().Truncate(time.Millisecond))
	all := append([]emulator.Option{}, opts...)
	all = append(all,
		emulator.WithClock(clock),
		emulator.WithFaultObserver(func(r *http.Request) {
			if m, ok := r.Context().Value(faultMarkKey{}).(*atomic.Bool); ok {
				m.Store(true)
			}
		}),
		emulator.WithSpecValidation(specvalidate.Options{
			OnRequestError: func(r *http.Request, err error) {
				if r.Header.Get(InvalidRequestHeader) != "" {
					return
				}
				tb.Errorf("emutest: request %s %s violates the KSeF API description: %v", r.Method, r.URL.Path, err)
			},
			OnResponseError: func(r *http.Request, status int, err error) {
				if m, ok := r.Context().Value(faultMarkKey{}).(*atomic.Bool); ok && m.Load() && status >= 500 {
					return
				}
				tb.Errorf("emutest: response %d to %s %s violates the KSeF API description: %v", status, r.Method, r.URL.Path, err)
			},
		}),
	)
	e, err := emulator.New(cfg, all...)
	if err != nil {
		tb.Fatalf("emutest: %v", err)
	}
	inner := e.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var mark atomic.Bool
		inner.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), faultMarkKey{}, &mark)))
	}))
	tb.Cleanup(srv.Close)
	return &Server{
		URL:      strings.TrimSuffix(srv.URL, "/") + "/v2",
		AdminURL: strings.TrimSuffix(srv.URL, "/") + "/admin",
		Emulator: e,
		Clock:    clock,
		HTTP:     srv,
	}
}

// Client returns an HTTP client for the server.
func (s *Server) Client() *http.Client { return s.HTTP.Client() }

// FakeClock is a Clock that moves only when told to. It is safe for concurrent use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a clock showing t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set moves the clock to t.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
