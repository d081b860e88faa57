package localrun

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// InboxPrefix is where SendInvoice uploads invoices; ResultPrefix is where the functions write
// what became of them (RESULT_PREFIX).
const (
	InboxPrefix  = "inbox/"
	ResultPrefix = "results/"
)

// Result is what became of one invoice sent through the pipeline.
type Result struct {
	NIP       string
	Bucket    string
	Key       string // the invoice's key, inbox/<name>
	VersionID string
	Execution *Execution

	ResultKey  string // results/<key>.result.json
	ResultJSON []byte // nil if the function did not write it
	UPOKey     string // results/<key>.upo.xml
	UPO        []byte
	ErrorKey   string // results/<key>.error.json
	ErrorJSON  []byte
}

// Accepted reports whether the execution succeeded (KSeF accepted the invoice, or already held
// it and the result points at the original KSeF number).
func (r *Result) Accepted() bool { return r.Execution.Status == StatusSucceeded }

// KSeFNumber returns the KSeF number from the stored result (or, failing that, from the
// execution output), or "".
func (r *Result) KSeFNumber() string {
	if n := findString(r.ResultJSON, "ksefNumber"); n != "" {
		return n
	}
	return findString(r.Execution.Output, "ksefNumber")
}

// Failure is why an invoice was not accepted.
type Failure struct {
	Error   string   `json:"error"` // the Step Functions error name, e.g. RejectedError
	Code    int      `json:"code,omitempty"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

// Failure returns why the invoice was not accepted, from the stored error report and the
// execution's error, or nil if it was accepted.
func (r *Result) Failure() *Failure {
	if r.Accepted() {
		return nil
	}
	f := &Failure{Error: r.Execution.Error}
	fillFailure(f, r.ErrorJSON)
	if strings.HasPrefix(f.Message, "{") {
		// The report kept a raw Step Functions Cause (the function's error payload): unwrap it.
		inner := &Failure{Error: f.Error}
		fillFailure(inner, causeReason(f.Message))
		if inner.Message != "" {
			f = inner
		}
	}
	if f.Message == "" && f.Code == 0 {
		fillFailure(f, causeReason(r.Execution.Cause))
	}
	if f.Message == "" && f.Code == 0 {
		f.Message = r.Execution.Cause
	}
	return f
}

// causeReason unwraps a Step Functions Cause: the function's error payload
// {"errorType", "errorMessage"} whose errorMessage is the error's JSON reason, or the reason itself.
func causeReason(cause string) []byte {
	var payload struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if err := json.Unmarshal([]byte(cause), &payload); err == nil && payload.ErrorMessage != "" {
		if json.Valid([]byte(payload.ErrorMessage)) && strings.HasPrefix(strings.TrimSpace(payload.ErrorMessage), "{") {
			return []byte(payload.ErrorMessage)
		}
		b, _ := json.Marshal(map[string]string{"message": payload.ErrorMessage})
		return b
	}
	if json.Valid([]byte(cause)) {
		return []byte(cause)
	}
	return nil
}

// fillFailure takes code, message and details from a JSON report, looking at its top level and
// into the objects "reason", "error" and "status" (the report's exact shape belongs to the
// functions).
func fillFailure(f *Failure, report []byte) {
	var m map[string]any
	if len(report) == 0 || json.Unmarshal(report, &m) != nil {
		return
	}
	objs := []map[string]any{m}
	for _, k := range []string{"reason", "error", "status"} {
		if o, ok := m[k].(map[string]any); ok {
			objs = append(objs, o)
		}
	}
	for _, o := range objs {
		if f.Code == 0 {
			for _, k := range []string{"code", "statusCode", "exceptionCode"} {
				if v, ok := o[k].(float64); ok && v != 0 {
					f.Code = int(v)
					break
				}
			}
		}
		if f.Message == "" {
			for _, k := range []string{"message", "description", "statusDescription", "exceptionDescription"} {
				if v, ok := o[k].(string); ok && v != "" {
					f.Message = v
					break
				}
			}
		}
		if len(f.Details) == 0 {
			if d, ok := o["details"].([]any); ok {
				for _, x := range d {
					if s, ok := x.(string); ok {
						f.Details = append(f.Details, s)
					}
				}
			}
		}
		if e, ok := o["error"].(string); ok && f.Error == "" {
			f.Error = e
		}
	}
}

// findString returns the first string value under key anywhere in a JSON document.
func findString(doc []byte, key string) string {
	var v any
	if len(doc) == 0 || json.Unmarshal(doc, &v) != nil {
		return ""
	}
	var walk func(any) string
	walk = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x[key].(string); ok && s != "" {
				return s
			}
			for _, k := range sortedKeys(x) {
				if s := walk(x[k]); s != "" {
					return s
				}
			}
		case []any:
			for _, e := range x {
				if s := walk(e); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v)
}

// executionInput is the state machine's input (flow.Input in the pipeline).
type executionInput struct {
	NIP     string    `json:"nip"`
	Invoice invoiceID `json:"invoice"`
}

type invoiceID struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	VersionID string `json:"versionId,omitempty"`
}

// SendInvoice uploads body as inbox/<name>, runs one execution for it and reads back what the
// functions stored under results/. An execution that fails (KSeF rejected the invoice) is not an
// error: see Result.Accepted and Result.Failure.
func (s *Stack) SendInvoice(ctx context.Context, nip, name string, body []byte) (*Result, error) {
	if _, ok := s.ksefTokens[nip]; !ok {
		return nil, fmt.Errorf("localrun: NIP %s is not set up (Options.NIPs)", nip)
	}
	if name == "" || strings.Contains(name, "/") || name != path.Clean(name) {
		return nil, fmt.Errorf("localrun: invalid invoice name %q", name)
	}
	key := InboxPrefix + name
	version, err := s.Upload(ctx, key, body)
	if err != nil {
		return nil, err
	}
	exec, err := s.RunExecution(ctx, executionInput{NIP: nip, Invoice: invoiceID{Bucket: s.opts.Bucket, Key: key, VersionID: version}})
	if err != nil {
		return nil, fmt.Errorf("send invoice %s: %w", name, err)
	}
	return s.collect(ctx, nip, key, version, exec)
}

// collect reads back what the functions stored under results/ for an invoice's execution.
func (s *Stack) collect(ctx context.Context, nip, key, version string, exec *Execution) (*Result, error) {
	r := &Result{
		NIP: nip, Bucket: s.opts.Bucket, Key: key, VersionID: version, Execution: exec,
		ResultKey: ResultPrefix + key + ".result.json",
		UPOKey:    ResultPrefix + key + ".upo.xml",
		ErrorKey:  ResultPrefix + key + ".error.json",
	}
	if k := findString(exec.Output, "resultKey"); k != "" {
		r.ResultKey = k
	}
	if k := findString(exec.Output, "upoKey"); k != "" {
		r.UPOKey = k
	}
	for _, o := range []struct {
		key string
		dst *[]byte
	}{{r.ResultKey, &r.ResultJSON}, {r.UPOKey, &r.UPO}, {r.ErrorKey, &r.ErrorJSON}} {
		b, err := s.Object(ctx, o.key)
		if err != nil {
			return nil, fmt.Errorf("results of %s: %w", key, err)
		}
		*o.dst = b
	}
	return r, nil
}
