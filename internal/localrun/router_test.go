package localrun

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// fakeRIE answers like aws-lambda-rie: the handler decides the status and body.
func fakeRIE(t *testing.T, h func(payload string) (int, string)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/2015-03-31/functions/function/invocations" {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		status, body := h(string(b))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/2015-03-31/functions/function/invocations"
}

func TestRouterInvoke(t *testing.T) {
	backend := fakeRIE(t, func(payload string) (int, string) {
		switch payload {
		case `{"case":"ok"}`:
			return 200, `{"ready":true}`
		case `{"case":"error"}`:
			return 200, `{"errorMessage":"{\"message\":\"slow down\"}","errorType":"RateLimitedError"}`
		case `{"case":"panic"}`:
			return 502, `{"errorMessage":"boom","errorType":"string","stackTrace":[]}`
		case `{"case":"timeout"}`:
			return 200, "Task timed out after 30.00 seconds"
		case `{"case":"crash"}`:
			return 502, ""
		case `{"case":"null"}`:
			return 200, ""
		}
		return 500, "unexpected payload " + payload
	})
	r := NewRouter(map[string][]string{"send": {backend}}, 5*time.Second)
	srv := httptest.NewServer(r)
	defer srv.Close()

	tests := []struct {
		name, function, payload string
		wantStatus              int
		wantFunctionError       bool
		wantBody, wantErrorType string
	}{
		{name: "plain name", function: "send", payload: `{"case":"ok"}`, wantStatus: 200, wantBody: `{"ready":true}`},
		{name: "full ARN", function: "arn:aws:lambda:eu-central-1:123456789012:function:send", payload: `{"case":"ok"}`, wantStatus: 200, wantBody: `{"ready":true}`},
		{name: "escaped ARN with $LATEST", function: "arn%3Aaws%3Alambda%3Aeu-central-1%3A123456789012%3Afunction%3Asend%3A%24LATEST", payload: `{"case":"ok"}`, wantStatus: 200, wantBody: `{"ready":true}`},
		{name: "partial ARN", function: "123456789012:function:send", payload: `{"case":"ok"}`, wantStatus: 200, wantBody: `{"ready":true}`},
		{name: "handler error", function: "send", payload: `{"case":"error"}`, wantStatus: 200, wantFunctionError: true,
			wantBody: `{"errorMessage":"{\"message\":\"slow down\"}","errorType":"RateLimitedError"}`},
		{name: "panic (RIE 502 with payload)", function: "send", payload: `{"case":"panic"}`, wantStatus: 200, wantFunctionError: true,
			wantBody: `{"errorMessage":"boom","errorType":"string","stackTrace":[]}`},
		{name: "timeout (RIE plain text)", function: "send", payload: `{"case":"timeout"}`, wantStatus: 200, wantFunctionError: true,
			wantBody: `{"errorMessage":"Task timed out after 30.00 seconds"}`},
		{name: "runtime crash without payload", function: "send", payload: `{"case":"crash"}`, wantStatus: 200, wantFunctionError: true,
			wantBody: `{"errorMessage":"RequestId: local Error: Runtime exited with HTTP status 502","errorType":"Runtime.ExitError"}`},
		{name: "empty result", function: "send", payload: `{"case":"null"}`, wantStatus: 200, wantBody: `null`},
		{name: "unknown function", function: "nope", payload: `{}`, wantStatus: 404, wantErrorType: "ResourceNotFoundException"},
		{name: "unknown qualifier", function: "send:7", payload: `{}`, wantStatus: 404, wantErrorType: "ResourceNotFoundException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(srv.URL+"/2015-03-31/functions/"+tt.function+"/invocations", "application/json", strings.NewReader(tt.payload))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("POST %s %s: status %d (%s), want %d", tt.function, tt.payload, resp.StatusCode, body, tt.wantStatus)
			}
			if got := resp.Header.Get("X-Amz-Function-Error") == "Unhandled"; got != tt.wantFunctionError {
				t.Errorf("X-Amz-Function-Error present %v, want %v", got, tt.wantFunctionError)
			}
			if tt.wantBody != "" && string(body) != tt.wantBody {
				t.Errorf("body %s, want %s", body, tt.wantBody)
			}
			if got := resp.Header.Get("X-Amzn-Errortype"); got != tt.wantErrorType {
				t.Errorf("X-Amzn-ErrorType %q, want %q", got, tt.wantErrorType)
			}
		})
	}
	s := r.Stats()["send"]
	if s.Invocations != 9 || s.FunctionErrors != 4 {
		t.Errorf("stats %+v, want 9 invocations and 4 function errors", s)
	}
}

// TestRouterSerialisesPerInstance sends six invocations at once to a function with two
// instances whose invocations block until released. It runs in a synctest bubble, over an
// in-memory transport instead of the network, so that synctest.Wait is an exact barrier: it
// returns once every invocation is either held by an instance or blocked in the router, and only
// then are the invocations that reached an instance counted.
func TestRouterSerialisesPerInstance(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// aws-lambda-rie crashes on a second concurrent invocation: the router must never send one.
		const n = 6
		var (
			mu      sync.Mutex
			running = map[string]int{} // by instance
			reached int
			overlap bool
		)
		release := make(chan struct{})
		instances := []string{"http://rie-a/2015-03-31/functions/function/invocations", "http://rie-b/2015-03-31/functions/function/invocations"}
		r := NewRouter(map[string][]string{"poll": instances}, 5*time.Second)
		r.client.Transport = roundTripFunc(func(req *http.Request) (*http.Response, error) {
			mu.Lock()
			reached++
			running[req.URL.Host]++
			overlap = overlap || running[req.URL.Host] > 1
			mu.Unlock()
			<-release
			mu.Lock()
			running[req.URL.Host]--
			mu.Unlock()
			return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{}`)), Request: req}, nil
		})

		var wg sync.WaitGroup
		codes := make([]int, n)
		for i := range n {
			wg.Go(func() {
				w := httptest.NewRecorder()
				r.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/2015-03-31/functions/poll/invocations", strings.NewReader(`{}`)))
				codes[i] = w.Code
			})
		}
		// Every goroutine blocked: both instances busy, the other invocations queued.
		synctest.Wait()
		mu.Lock()
		busy := reached
		mu.Unlock()
		if busy != 2 {
			t.Errorf("%d invocations reached the two instances before any finished, want 2 (the others queued in the router)", busy)
		}

		close(release)
		wg.Wait()
		if reached != n {
			t.Errorf("%d invocations reached an instance after the release, want %d", reached, n)
		}
		if overlap {
			t.Error("an instance got two invocations at once")
		}
		for i, c := range codes {
			if c != http.StatusOK {
				t.Errorf("invocation %d answered %d, want 200", i, c)
			}
		}
		if s := r.Stats()["poll"]; s.Invocations != n {
			t.Errorf("%d invocations counted, want %d", s.Invocations, n)
		}
	})
}

// roundTripFunc is an http.RoundTripper made of a function.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func TestFunctionName(t *testing.T) {
	tests := []struct{ in, name, qualifier string }{
		{"send", "send", ""},
		{"send:prod", "send", "prod"},
		{"123456789012:function:send", "send", ""},
		{"arn:aws:lambda:eu-central-1:123456789012:function:send", "send", ""},
		{"arn:aws:lambda:eu-central-1:123456789012:function:send:$LATEST", "send", "$LATEST"},
	}
	for _, tt := range tests {
		name, q := functionName(tt.in)
		if name != tt.name || q != tt.qualifier {
			t.Errorf("functionName(%q) = %q, %q; want %q, %q", tt.in, name, q, tt.name, tt.qualifier)
		}
	}
}
