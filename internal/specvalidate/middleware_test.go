package specvalidate_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/specvalidate"
)

const challengeJSON = `{"challenge":"20250514-CR-226FB7B000-3ACF9BE4C0-10","timestamp":"2025-07-11T12:23:56.0154302+00:00","timestampMs":1752236636015,"clientIp":"127.0.0.1"}`

// fake is a tiny stand-in for the emulator: it records what reached it and answers with a
// canned response.
type fake struct {
	mu     sync.Mutex
	bodies [][]byte // request bodies received, in order
	status int
	header http.Header
	body   string
}

func (f *fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f.mu.Lock()
	f.bodies = append(f.bodies, body)
	f.mu.Unlock()
	for k, vs := range f.header {
		w.Header()[k] = vs
	}
	w.WriteHeader(f.status)
	io.WriteString(w, f.body)
}

func (f *fake) calls() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.bodies
}

// report collects the middleware's callbacks.
type report struct {
	mu       sync.Mutex
	request  []error
	response []error
	statuses []int
}

func (rep *report) options(reject bool) specvalidate.Options {
	return specvalidate.Options{
		RejectInvalidRequests: reject,
		OnRequestError: func(_ *http.Request, err error) {
			rep.mu.Lock()
			defer rep.mu.Unlock()
			rep.request = append(rep.request, err)
		},
		OnResponseError: func(_ *http.Request, status int, err error) {
			rep.mu.Lock()
			defer rep.mu.Unlock()
			rep.response = append(rep.response, err)
			rep.statuses = append(rep.statuses, status)
		},
	}
}

// serve runs one request through the middleware in front of f.
func serve(t *testing.T, f *fake, opts specvalidate.Options, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	h := newValidator(t).Middleware(f, opts)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func jsonFake(status int, body string) *fake {
	return &fake{status: status, header: http.Header{"Content-Type": {"application/json"}, "X-Custom": {"kept"}}, body: body}
}

func TestMiddlewareValidExchange(t *testing.T) {
	var rep report
	f := jsonFake(http.StatusOK, challengeJSON)
	rec := serve(t, f, rep.options(true), newRequest("POST", "http://127.0.0.1:41234/v2/auth/challenge", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != challengeJSON || rec.Header().Get("X-Custom") != "kept" {
		t.Errorf("got %d %q (X-Custom %q), want the handler's 200 %q unchanged", rec.Code, rec.Body, rec.Header().Get("X-Custom"), challengeJSON)
	}
	if len(rep.request)+len(rep.response) != 0 {
		t.Errorf("callbacks: requests %v, responses %v, want none", rep.request, rep.response)
	}
}

func TestMiddlewareInvalidResponse(t *testing.T) {
	var rep report
	const body = `{"challenge":"20250514-CR-226FB7B000-3ACF9BE4C0-10","timestamp":"2025-07-11T12:23:56Z","timestampMs":1752236636015}`
	f := jsonFake(http.StatusOK, body)
	rec := serve(t, f, rep.options(true), newRequest("POST", "/v2/auth/challenge", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != body {
		t.Errorf("got %d %q, want the handler's response passed on unchanged", rec.Code, rec.Body)
	}
	if len(rep.response) != 1 || rep.statuses[0] != http.StatusOK || !strings.Contains(rep.response[0].Error(), `property "clientIp" is missing`) {
		t.Fatalf("OnResponseError got %v with statuses %v, want one error about clientIp for status 200", rep.response, rep.statuses)
	}
	if len(rep.request) != 0 {
		t.Errorf("OnRequestError got %v, want nothing", rep.request)
	}
}

func TestMiddlewareInvalidRequestPassedOn(t *testing.T) {
	var rep report
	body := sendInvoiceBody(t, 3392, func(m map[string]any) { m["invoiceHash"] = m["invoiceHash"].(string)[:43] })
	f := jsonFake(http.StatusAccepted, `{"referenceNumber":"20250625-EE-319D7EE000-B67F415CDC-2C"}`)
	req := newRequest("POST", "/v2/sessions/online/"+sessionRef+"/invoices", body, "Content-Type", "application/json", "Authorization", bearer)
	rec := serve(t, f, rep.options(false), req)
	if rec.Code != http.StatusAccepted {
		t.Errorf("got status %d, want the handler's 202", rec.Code)
	}
	if got := f.calls(); len(got) != 1 || !bytes.Equal(got[0], body) {
		t.Errorf("handler received %q, want the request body unchanged", got)
	}
	if len(rep.request) != 1 || !strings.Contains(rep.request[0].Error(), `Error at "/invoiceHash": minimum string length is 44`) {
		t.Errorf("OnRequestError got %v, want one error about invoiceHash", rep.request)
	}
	if len(rep.response) != 0 {
		t.Errorf("OnResponseError got %v, want nothing", rep.response)
	}
}

func TestMiddlewareRejects(t *testing.T) {
	v := newValidator(t)
	badBody := sendInvoiceBody(t, 3392, func(m map[string]any) { m["invoiceHash"] = m["invoiceHash"].(string)[:43] })
	goodBody := sendInvoiceBody(t, 3392, nil)
	sendPath := "/v2/sessions/online/" + sessionRef + "/invoices"
	tests := []struct {
		name        string
		req         *http.Request
		wantStatus  int
		wantType    string
		wantDetails string // in the 21405 entry, for 400
	}{
		{
			name:        "bad body, exception format",
			req:         newRequest("POST", sendPath, badBody, "Content-Type", "application/json", "Authorization", bearer),
			wantStatus:  http.StatusBadRequest,
			wantType:    "application/json",
			wantDetails: `Error at "/invoiceHash": minimum string length is 44`,
		},
		{
			name:        "bad body, problem details",
			req:         newRequest("POST", sendPath, badBody, "Content-Type", "application/json", "Authorization", bearer, "X-Error-Format", "problem-details"),
			wantStatus:  http.StatusBadRequest,
			wantType:    "application/problem+json",
			wantDetails: `Error at "/invoiceHash": minimum string length is 44`,
		},
		{
			name:       "missing bearer",
			req:        newRequest("POST", sendPath, goodBody, "Content-Type", "application/json"),
			wantStatus: http.StatusUnauthorized,
			wantType:   "application/problem+json",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep report
			f := jsonFake(http.StatusAccepted, `{"referenceNumber":"20250625-EE-319D7EE000-B67F415CDC-2C"}`)
			rec := serve(t, f, rep.options(true), tt.req)
			if rec.Code != tt.wantStatus || rec.Header().Get("Content-Type") != tt.wantType {
				t.Fatalf("got %d %s %s, want %d %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body, tt.wantStatus, tt.wantType)
			}
			if n := len(f.calls()); n != 0 {
				t.Errorf("handler called %d times, want 0", n)
			}
			if len(rep.request) != 1 {
				t.Errorf("OnRequestError got %v, want one error", rep.request)
			}
			if err := v.ValidateResponse(tt.req, rec.Code, rec.Header(), rec.Body.Bytes()); err != nil {
				t.Errorf("the middleware's own answer %s is off-spec: %v", rec.Body, err)
			}
			if strings.Contains(rec.Body.String(), "eyJhbGci") {
				t.Errorf("answer %s quotes the bearer token", rec.Body)
			}
			switch {
			case tt.wantStatus == http.StatusUnauthorized:
				var p struct {
					Title  string `json:"title"`
					Status int    `json:"status"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Title != "Unauthorized" || p.Status != 401 {
					t.Errorf("401 body %s (%v), want problem details titled Unauthorized", rec.Body, err)
				}
			case tt.wantType == "application/json":
				var e struct {
					Exception struct {
						ExceptionDetailList []struct {
							ExceptionCode        int      `json:"exceptionCode"`
							ExceptionDescription string   `json:"exceptionDescription"`
							Details              []string `json:"details"`
						} `json:"exceptionDetailList"`
					} `json:"exception"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
					t.Fatal(err)
				}
				l := e.Exception.ExceptionDetailList
				if len(l) != 1 || l[0].ExceptionCode != 21405 || l[0].ExceptionDescription != "Błąd walidacji danych wejściowych." ||
					len(l[0].Details) != 1 || !strings.Contains(l[0].Details[0], tt.wantDetails) {
					t.Errorf("exception body %s, want one 21405 entry with details containing %q", rec.Body, tt.wantDetails)
				}
			default:
				var p struct {
					Status int `json:"status"`
					Errors []struct {
						Code    int      `json:"code"`
						Details []string `json:"details"`
					} `json:"errors"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
					t.Fatal(err)
				}
				if p.Status != 400 || len(p.Errors) != 1 || p.Errors[0].Code != 21405 || len(p.Errors[0].Details) != 1 || !strings.Contains(p.Errors[0].Details[0], tt.wantDetails) {
					t.Errorf("problem body %s, want status 400 and one 21405 error with details containing %q", rec.Body, tt.wantDetails)
				}
			}
		})
	}
}

func TestMiddlewarePassThrough(t *testing.T) {
	tests := []struct {
		name        string
		req         *http.Request
		wantUnknown bool
	}{
		{name: "admin endpoint", req: newRequest("POST", "/admin/reset", []byte("not json"), "Content-Type", "application/json")},
		{name: "pre-signed upload", req: newRequest("PUT", "/upload/batch/part-1?sig=abc", []byte{0, 1, 2, 3})},
		{name: "prefix look-alike", req: newRequest("GET", "/v2x/anything", nil)},
		{name: "unknown /v2 path", req: newRequest("GET", "/v2/no/such/thing", nil), wantUnknown: true},
		{name: "wrong method", req: newRequest("DELETE", "/v2/auth/challenge", nil), wantUnknown: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep report
			want, _ := io.ReadAll(tt.req.Body)
			tt.req.Body = io.NopCloser(bytes.NewReader(want))
			f := &fake{status: http.StatusNotFound, body: "404 page not found"}
			rec := serve(t, f, rep.options(true), tt.req)
			if rec.Code != http.StatusNotFound || rec.Body.String() != "404 page not found" {
				t.Errorf("got %d %q, want the handler's answer", rec.Code, rec.Body)
			}
			if got := f.calls(); len(got) != 1 || !bytes.Equal(got[0], want) {
				t.Errorf("handler received %q, want %q", got, want)
			}
			if tt.wantUnknown {
				if len(rep.request) != 1 || !errors.Is(rep.request[0], specvalidate.ErrUnknownOperation) {
					t.Errorf("OnRequestError got %v, want one ErrUnknownOperation", rep.request)
				}
			} else if len(rep.request) != 0 {
				t.Errorf("OnRequestError got %v, want nothing", rep.request)
			}
			if len(rep.response) != 0 {
				t.Errorf("OnResponseError got %v, want nothing", rep.response)
			}
		})
	}
}

func TestMiddlewareEmptyAndXMLResponses(t *testing.T) {
	tests := []struct {
		name string
		req  *http.Request
		f    *fake
	}{
		{
			name: "204 close",
			req:  newRequest("POST", "/v2/sessions/online/"+sessionRef+"/close", nil, "Authorization", bearer),
			f:    &fake{status: http.StatusNoContent},
		},
		{
			name: "XAdES request and 202",
			req: newRequest("POST", "/v2/auth/xades-signature", []byte(`<?xml version="1.0"?><AuthTokenRequest xmlns="http://ksef.mf.gov.pl/auth/token/2.0"/>`),
				"Content-Type", "application/xml"),
			f: jsonFake(http.StatusAccepted, `{"referenceNumber":"20250514-AU-2DFC46C000-3AC6D5877F-D4","authenticationToken":{"token":"x.y.z","validUntil":"2025-07-11T12:23:56.0154302+00:00"}}`),
		},
		{
			name: "UPO download",
			req:  newRequest("GET", "/v2/sessions/"+sessionRef+"/upo/"+sessionRef, nil, "Authorization", bearer),
			f:    &fake{status: http.StatusOK, header: http.Header{"Content-Type": {"application/xml"}}, body: `<?xml version="1.0"?><Potwierdzenie/>`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var rep report
			rec := serve(t, tt.f, rep.options(true), tt.req)
			if rec.Code != tt.f.status || rec.Body.String() != tt.f.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body, tt.f.status, tt.f.body)
			}
			if len(rep.request)+len(rep.response) != 0 {
				t.Errorf("callbacks: requests %v, responses %v, want none", rep.request, rep.response)
			}
		})
	}
}

func TestMiddlewareConcurrent(t *testing.T) {
	var rep report
	h := newValidator(t).Middleware(jsonFake(http.StatusOK, challengeJSON), rep.options(true))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for range 8 {
		wg.Go(func() {
			for range 8 {
				req, err := http.NewRequestWithContext(t.Context(), "POST", srv.URL+"/v2/auth/challenge", nil)
				if err != nil {
					errc <- err
					return
				}
				resp, err := srv.Client().Do(req)
				if err != nil {
					errc <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || string(body) != challengeJSON {
					errc <- errors.New("unexpected response " + resp.Status + " " + string(body))
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if len(rep.request)+len(rep.response) != 0 {
		t.Errorf("callbacks: requests %v, responses %v, want none", rep.request, rep.response)
	}
}
