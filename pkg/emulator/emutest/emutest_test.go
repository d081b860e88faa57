package emutest_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// recordingTB records Errorf calls instead of failing.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recordingTB) errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errs...)
}

func get(t *testing.T, srv *emutest.Server, path string, header ...string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestRequestViolationsFailTheTest(t *testing.T) {
	tests := []struct {
		name     string
		path     string
		header   []string
		wantFail bool
	}{
		{"valid request", "/security/public-key-certificates", nil, false},
		{"missing bearer", "/sessions?sessionType=Online", nil, true},
		{"missing bearer, marked invalid", "/sessions?sessionType=Online", []string{emutest.InvalidRequestHeader, "1"}, false},
		{"unknown operation", "/no/such/operation", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recordingTB{TB: t}
			srv := emutest.NewServer(rec, emulator.Config{})
			get(t, srv, tt.path, tt.header...)
			errs := rec.errors()
			if got := len(errs) > 0; got != tt.wantFail {
				t.Fatalf("test failed: %v (errors %q), want %v", got, errs, tt.wantFail)
			}
			if tt.wantFail && !strings.Contains(errs[0], "violates the KSeF API description") {
				t.Errorf("error %q does not say what is wrong", errs[0])
			}
		})
	}
}

// TestInjectedServerErrorsDoNotFailTheTest: a 503 from an injected fault is not documented in the
// API description, but it is what the test asked for.
func TestInjectedServerErrorsDoNotFailTheTest(t *testing.T) {
	rec := &recordingTB{TB: t}
	srv := emutest.NewServer(rec, emulator.Config{Faults: []emulator.Fault{
		{Kind: emulator.FaultHTTPError, Path: "/security/public-key-certificates", Status: 503, Count: 1},
	}})
	if got := get(t, srv, "/security/public-key-certificates"); got != 503 {
		t.Fatalf("HTTP %d, want the injected 503", got)
	}
	if got := get(t, srv, "/security/public-key-certificates"); got != 200 {
		t.Fatalf("HTTP %d after the fault, want 200", got)
	}
	if errs := rec.errors(); len(errs) > 0 {
		t.Errorf("injected fault failed the test: %q", errs)
	}
}

func TestFakeClock(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	srv := emutest.NewServerAt(t, start, emulator.Config{})
	if got := srv.Emulator.Now(); !got.Equal(start) {
		t.Fatalf("emulator time %v, want %v", got, start)
	}
	srv.Clock.Advance(time.Hour)
	srv.Emulator.Advance(time.Minute)
	if got, want := srv.Emulator.Now(), start.Add(time.Hour+time.Minute); !got.Equal(want) {
		t.Errorf("emulator time %v, want %v", got, want)
	}
	srv.Clock.Set(start)
	if got, want := srv.Emulator.Now(), start.Add(time.Minute); !got.Equal(want) {
		t.Errorf("after Set: emulator time %v, want %v", got, want)
	}
	if !strings.HasSuffix(srv.URL, "/v2") || !strings.HasSuffix(srv.AdminURL, "/admin") {
		t.Errorf("URL %q, AdminURL %q", srv.URL, srv.AdminURL)
	}
}
