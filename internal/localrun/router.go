package localrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// maxPayload is Lambda's limit on a synchronous invocation's request and response (6 MB).
const maxPayload = 6 * 1024 * 1024

// Router is an HTTP server implementing the Lambda Invoke API
// (POST /2015-03-31/functions/{name or ARN}/invocations) in front of aws-lambda-rie instances.
// Point an AWS SDK at it with AWS_ENDPOINT_URL_LAMBDA.
//
// aws-lambda-rie answers only /2015-03-31/functions/function/invocations, reports a handler
// error as HTTP 200 without the X-Amz-Function-Error header, a panic as HTTP 502 and a timeout as
// HTTP 200 with plain text, and crashes if it gets a second invocation while one runs. The router
// makes that look like Lambda: it serialises invocations per instance (a function with several
// instances behaves like several warm execution environments), and answers every function error
// with HTTP 200, X-Amz-Function-Error: Unhandled and a JSON error payload, so that the SDK reports
// a function error whose errorType Step Functions matches in Retry and Catch.
type Router struct {
	client    *http.Client
	functions map[string]*pool

	mu    sync.Mutex
	stats map[string]*FunctionStats
}

// FunctionStats counts the invocations of one function.
type FunctionStats struct {
	Invocations    int           `json:"invocations"`
	FunctionErrors int           `json:"functionErrors"` // answered with X-Amz-Function-Error
	Busy           time.Duration `json:"busyNs"`         // time spent inside the function
}

type pool struct {
	free chan string // base URLs of idle instances
}

// NewRouter returns a router for the given functions: name -> invocation URLs of the
// function's aws-lambda-rie instances (http://host:port/2015-03-31/functions/function/invocations).
// timeout bounds one invocation as seen by the router; make it longer than the function timeout.
func NewRouter(functions map[string][]string, timeout time.Duration) *Router {
	r := &Router{
		client:    &http.Client{Timeout: timeout},
		functions: make(map[string]*pool, len(functions)),
		stats:     make(map[string]*FunctionStats, len(functions)),
	}
	for name, urls := range functions {
		p := &pool{free: make(chan string, len(urls))}
		for _, u := range urls {
			p.free <- u
		}
		r.functions[name] = p
		r.stats[name] = &FunctionStats{}
	}
	return r
}

// Stats returns a copy of the invocation counters, by function name.
func (r *Router) Stats() map[string]FunctionStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]FunctionStats, len(r.stats))
	for k, v := range r.stats {
		out[k] = *v
	}
	return out
}

// ServeHTTP implements http.Handler.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	const prefix, suffix = "/2015-03-31/functions/", "/invocations"
	path := req.URL.Path
	if req.Method != http.MethodPost || !strings.HasPrefix(path, prefix) || !strings.HasSuffix(path, suffix) || len(path) <= len(prefix)+len(suffix) {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "unknown operation "+req.Method+" "+path)
		return
	}
	name, qualifier := functionName(path[len(prefix) : len(path)-len(suffix)])
	if q := req.URL.Query().Get("Qualifier"); q != "" {
		qualifier = q
	}
	p, ok := r.functions[name]
	if !ok || (qualifier != "" && qualifier != "$LATEST") {
		lambdaError(w, http.StatusNotFound, "ResourceNotFoundException", "Function not found: "+name+functionQualifier(qualifier))
		return
	}
	if t := req.Header.Get("X-Amz-Invocation-Type"); t != "" && t != "RequestResponse" {
		lambdaError(w, http.StatusBadRequest, "InvalidParameterValueException", "only RequestResponse invocations run locally, not "+t)
		return
	}
	payload, err := io.ReadAll(io.LimitReader(req.Body, maxPayload+1))
	if err != nil {
		lambdaError(w, http.StatusBadRequest, "InvalidRequestContentException", "read request payload: "+err.Error())
		return
	}
	if len(payload) > maxPayload {
		lambdaError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException", "Request must be smaller than 6291456 bytes for the InvokeFunction operation")
		return
	}
	if len(payload) == 0 {
		payload = []byte("{}")
	}

	var instance string
	select {
	case instance = <-p.free:
	case <-req.Context().Done():
		return
	}
	start := time.Now()
	status, body, ferr := r.invoke(req.Context(), instance, payload)
	busy := time.Since(start)
	p.free <- instance

	if ferr != nil {
		r.count(name, busy, false)
		lambdaError(w, http.StatusBadGateway, "ServiceException", "invoke "+name+": "+ferr.Error())
		return
	}
	functionError := false
	switch {
	case status == http.StatusOK && len(bytes.TrimSpace(body)) == 0:
		body = []byte("null")
	case isErrorPayload(body):
		functionError = true
	case status != http.StatusOK:
		body, _ = json.Marshal(map[string]string{"errorType": "Runtime.ExitError", "errorMessage": fmt.Sprintf("RequestId: local Error: Runtime exited with HTTP status %d", status)})
		functionError = true
	case !json.Valid(body):
		// A timeout: RIE answers plain text ("Task timed out after 30.00 seconds"). Lambda
		// answers a payload without errorType, which Step Functions reports as Lambda.Unknown.
		body, _ = json.Marshal(map[string]string{"errorMessage": strings.TrimSpace(string(body))})
		functionError = true
	}
	r.count(name, busy, functionError)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amz-Executed-Version", "$LATEST")
	if functionError {
		w.Header().Set("X-Amz-Function-Error", "Unhandled")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

func (r *Router) invoke(ctx context.Context, url string, payload []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPayload+1))
	if err != nil {
		return 0, nil, fmt.Errorf("read response: %w", err)
	}
	return resp.StatusCode, body, nil
}

func (r *Router) count(name string, busy time.Duration, functionError bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.stats[name]
	s.Invocations++
	s.Busy += busy
	if functionError {
		s.FunctionErrors++
	}
}

// functionName extracts the function name and qualifier from what the Invoke API accepts: a
// name ("challenge"), a partial ARN ("123456789012:function:challenge") or a full ARN, each
// optionally followed by ":qualifier".
func functionName(s string) (name, qualifier string) {
	parts := strings.Split(s, ":")
	for i, p := range parts {
		if p == "function" && i+1 < len(parts) {
			name = parts[i+1]
			if i+2 < len(parts) {
				qualifier = parts[i+2]
			}
			return name, qualifier
		}
	}
	if len(parts) == 2 {
		return parts[0], parts[1]
	}
	return s, ""
}

func functionQualifier(q string) string {
	if q == "" {
		return ""
	}
	return ":" + q
}

// isErrorPayload reports whether a function's response is an error payload
// ({"errorMessage": ..., "errorType": ...}), as the Lambda runtime writes it.
func isErrorPayload(body []byte) bool {
	var v struct {
		ErrorMessage *string `json:"errorMessage"`
		ErrorType    *string `json:"errorType"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return false
	}
	return v.ErrorType != nil && v.ErrorMessage != nil
}

// lambdaError writes an error the way the Lambda API does, so that the AWS SDK maps it to the
// modelled exception (Step Functions then reports Lambda.<code>).
func lambdaError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"Type": "User", "message": message})
}
