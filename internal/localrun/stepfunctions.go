package localrun

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
)

// StateMachineName is the local state machine's name.
const StateMachineName = "ksef-local"

// stepFunctions is a local AWS Step Functions API for the entry points (AWS_ENDPOINT_URL_SFN of
// the functions): StartExecution and DescribeExecution of the one state machine, over the AWS
// JSON 1.0 protocol, with Step Functions' rules for names. A started execution runs in the
// stack's runner under its name ($$.Execution.Name).
type stepFunctions struct {
	arn string
	run func(ctx context.Context, input any, name string) (*Execution, error)
	ctx context.Context // ends when the stack closes

	mu         sync.Mutex
	executions map[string]*localExecution // by name
	order      []string
	calls      map[string]int
}

type localExecution struct {
	name, arn string
	input     json.RawMessage
	started   time.Time
	done      chan struct{}
	stopped   time.Time
	result    *Execution
	err       error
}

func newStepFunctions(ctx context.Context, arn string, run func(context.Context, any, string) (*Execution, error)) *stepFunctions {
	return &stepFunctions{arn: arn, run: run, ctx: ctx, executions: map[string]*localExecution{}, calls: map[string]int{}}
}

var executionName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)

func (sf *stepFunctions) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload))
	if err != nil {
		sfnError(w, "InvalidRequestContentException", "read request: "+err.Error())
		return
	}
	sf.mu.Lock()
	sf.calls[target]++
	sf.mu.Unlock()
	switch target {
	case "AWSStepFunctions.StartExecution":
		sf.start(w, body)
	case "AWSStepFunctions.DescribeExecution":
		sf.describe(w, body)
	default:
		sfnError(w, "UnknownOperationException", "operation "+target+" is not emulated locally")
	}
}

func (sf *stepFunctions) start(w http.ResponseWriter, body []byte) {
	var in struct {
		StateMachineArn string `json:"stateMachineArn"`
		Name            string `json:"name"`
		Input           string `json:"input"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		sfnError(w, "InvalidRequestContentException", err.Error())
		return
	}
	if in.StateMachineArn != sf.arn {
		sfnError(w, "StateMachineDoesNotExist", "State Machine Does Not Exist: '"+in.StateMachineArn+"'")
		return
	}
	if in.Name == "" {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		in.Name = hex.EncodeToString(b)
	}
	if !executionName.MatchString(in.Name) {
		sfnError(w, "InvalidName", "Invalid Name: '"+in.Name+"'")
		return
	}
	if in.Input == "" {
		in.Input = "{}"
	}
	if !json.Valid([]byte(in.Input)) {
		sfnError(w, "InvalidExecutionInput", "Invalid State Machine Execution Input: not JSON")
		return
	}
	sf.mu.Lock()
	e, exists := sf.executions[in.Name]
	if exists {
		sf.mu.Unlock()
		// As Step Functions (STANDARD): the same name and input as a running execution answer
		// as the first start did; an ended execution, or another input, is an error.
		select {
		case <-e.done:
		default:
			if string(e.input) == in.Input {
				sfnJSON(w, map[string]any{"executionArn": e.arn, "startDate": epoch(e.started)})
				return
			}
		}
		sfnError(w, "ExecutionAlreadyExists", "Execution Already Exists: '"+e.arn+"'")
		return
	}
	e = &localExecution{
		name: in.Name, arn: executionARN(in.Name), input: json.RawMessage(in.Input),
		started: time.Now(), done: make(chan struct{}),
	}
	sf.executions[in.Name] = e
	sf.order = append(sf.order, in.Name)
	sf.mu.Unlock()
	go func() {
		e.result, e.err = sf.run(sf.ctx, e.input, e.name)
		e.stopped = time.Now()
		close(e.done)
	}()
	sfnJSON(w, map[string]any{"executionArn": e.arn, "startDate": epoch(e.started)})
}

func (sf *stepFunctions) describe(w http.ResponseWriter, body []byte) {
	var in struct {
		ExecutionArn string `json:"executionArn"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		sfnError(w, "InvalidRequestContentException", err.Error())
		return
	}
	sf.mu.Lock()
	var e *localExecution
	for _, x := range sf.executions {
		if x.arn == in.ExecutionArn {
			e = x
		}
	}
	sf.mu.Unlock()
	if e == nil {
		sfnError(w, "ExecutionDoesNotExist", "Execution Does Not Exist: '"+in.ExecutionArn+"'")
		return
	}
	out := map[string]any{
		"executionArn": e.arn, "stateMachineArn": sf.arn, "name": e.name,
		"status": "RUNNING", "startDate": epoch(e.started), "input": string(e.input),
	}
	select {
	case <-e.done:
		out["stopDate"] = epoch(e.stopped)
		switch {
		case e.err != nil:
			out["status"] = StatusFailed
		default:
			out["status"] = e.result.Status
			if e.result.Status == StatusSucceeded {
				out["output"] = string(e.result.Output)
			}
		}
	default:
	}
	sfnJSON(w, out)
}

// wait returns the named execution's outcome once it has ended.
func (sf *stepFunctions) wait(ctx context.Context, name string) (*Execution, error) {
	sf.mu.Lock()
	e, ok := sf.executions[name]
	sf.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("localrun: no execution %q was started", name)
	}
	select {
	case <-e.done:
		return e.result, e.err
	case <-ctx.Done():
		return nil, fmt.Errorf("localrun: wait for execution %s: %w", name, ctx.Err())
	}
}

func (sf *stepFunctions) started() []string {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	return append([]string(nil), sf.order...)
}

func (sf *stepFunctions) snapshot() map[string]int {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	out := make(map[string]int, len(sf.calls))
	for k, v := range sf.calls {
		out["StepFunctions."+strings.TrimPrefix(k, "AWSStepFunctions.")] += v
	}
	return out
}

// StateMachineARN is the local state machine's ARN (STATE_MACHINE_ARN of the functions).
const StateMachineARN = "arn:aws:states:" + Region + ":" + Account + ":stateMachine:" + StateMachineName

// executionARN is the ARN of the local state machine's execution of that name.
func executionARN(name string) string {
	return "arn:aws:states:" + Region + ":" + Account + ":execution:" + StateMachineName + ":" + name
}

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func sfnJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(v)
}

// sfnError answers as the Step Functions API does: HTTP 400 and the error's type.
func sfnError(w http.ResponseWriter, code, message string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("X-Amzn-Errortype", code)
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": message})
}
