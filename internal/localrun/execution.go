package localrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
)

// Execution statuses, as Step Functions names them, plus StatusError for a job the local runner
// could not run at all (invalid definition, missing substitution).
const (
	StatusSucceeded = "SUCCEEDED"
	StatusFailed    = "FAILED"
	StatusTimedOut  = "TIMED_OUT"
	StatusAborted   = "ABORTED"
	StatusError     = "ERROR"
)

// Execution is the outcome of one state machine execution, as local/run-execution.mjs reports it.
type Execution struct {
	Status string          `json:"status"`
	Output json.RawMessage `json:"output"`
	Error  string          `json:"error"`
	Cause  string          `json:"cause"`
	// StateTransitions counts states entered plus retries, as Step Functions bills them.
	StateTransitions int         `json:"stateTransitions"`
	States           []string    `json:"states"` // names of the states entered, in order
	Retries          []Retry     `json:"retries"`
	Caught           []Caught    `json:"caught"`
	Waits            []WaitEntry `json:"waits"` // every Wait state entered and the seconds it asked for
	DurationMs       float64     `json:"durationMs"`
}

// Retry is one retry of a state.
type Retry struct {
	State   string `json:"state"`
	Attempt int    `json:"attempt"`
}

// Caught is one error caught by a Catch.
type Caught struct {
	State string `json:"state"`
	Error string `json:"error"`
	Next  string `json:"next"`
}

// WaitEntry is one Wait state entered and the duration it asked for (without any override).
type WaitEntry struct {
	State   string `json:"state"`
	Seconds int    `json:"seconds"`
}

// Duration returns how long the execution took.
func (e *Execution) Duration() time.Duration {
	return time.Duration(e.DurationMs * float64(time.Millisecond))
}

// WaitedSeconds returns the total of the seconds asked for by the Wait states entered.
func (e *Execution) WaitedSeconds() int {
	n := 0
	for _, w := range e.Waits {
		n += w.Seconds
	}
	return n
}

// job is the input of local/run-execution.mjs.
type job struct {
	ID                      string            `json:"id,omitempty"`
	DefinitionPath          string            `json:"definitionPath"`
	Substitutions           map[string]string `json:"substitutions"`
	Input                   any               `json:"input"`
	WaitTimeOverrideMs      *int64            `json:"waitTimeOverrideMs,omitempty"`
	RetryIntervalOverrideMs *int64            `json:"retryIntervalOverrideMs,omitempty"`
	TimeoutMs               int64             `json:"timeoutMs,omitempty"`
	StateMachineName        string            `json:"stateMachineName,omitempty"`
	ExecutionName           string            `json:"executionName,omitempty"`
}

type jobResult struct {
	ID string `json:"id"`
	Execution
}

// runner keeps one `run-execution.mjs --serve` process and sends it one job per execution; it
// runs them concurrently, so starting Node once serves a whole benchmark.
type runner struct {
	p     *process
	stdin io.WriteCloser

	mu      sync.Mutex
	nextID  int
	pending map[string]chan jobResult
	broken  error
}

func startRunner(nodeBin, script string, env []string, logDir string) (*runner, error) {
	r := &runner{pending: make(map[string]chan jobResult)}
	p, err := startProcess(processSpec{
		name:        "run-execution",
		argv:        []string{nodeBin, script, "--serve"},
		env:         env,
		logPath:     logDir + "/executions.log",
		stdoutLines: r.result,
		stdin:       true,
	})
	if err != nil {
		return nil, err
	}
	r.p, r.stdin = p, p.stdin
	go func() {
		<-p.done
		r.fail(p.exitError())
	}()
	return r, nil
}

func (r *runner) result(line string) {
	var res jobResult
	if err := json.Unmarshal([]byte(line), &res); err != nil {
		return // not a result line
	}
	r.mu.Lock()
	ch := r.pending[res.ID]
	delete(r.pending, res.ID)
	r.mu.Unlock()
	if ch != nil {
		ch <- res
	}
}

func (r *runner) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.broken == nil {
		r.broken = err
	}
	for id, ch := range r.pending {
		close(ch)
		delete(r.pending, id)
	}
}

// run sends j and waits for its result. If ctx has a deadline the runner aborts the execution
// by then too.
func (r *runner) run(ctx context.Context, j job) (*Execution, error) {
	if dl, ok := ctx.Deadline(); ok {
		ms := time.Until(dl).Milliseconds()
		if ms < 1 {
			ms = 1
		}
		j.TimeoutMs = ms
	}
	ch := make(chan jobResult, 1)
	r.mu.Lock()
	if r.broken != nil {
		err := r.broken
		r.mu.Unlock()
		return nil, fmt.Errorf("execution runner stopped: %w", err)
	}
	r.nextID++
	j.ID = strconv.Itoa(r.nextID)
	r.pending[j.ID] = ch
	line, err := json.Marshal(j)
	if err == nil {
		_, err = r.stdin.Write(append(line, '\n'))
	}
	if err != nil {
		delete(r.pending, j.ID)
		r.mu.Unlock()
		return nil, fmt.Errorf("send execution job: %w", err)
	}
	r.mu.Unlock()

	select {
	case res, ok := <-ch:
		if !ok {
			r.mu.Lock()
			err := r.broken
			r.mu.Unlock()
			return nil, fmt.Errorf("execution runner stopped: %w", err)
		}
		if res.Status == StatusError {
			return nil, fmt.Errorf("run execution: %s: %s", res.Error, res.Cause)
		}
		return &res.Execution, nil
	case <-ctx.Done():
		r.mu.Lock()
		delete(r.pending, j.ID)
		r.mu.Unlock()
		return nil, fmt.Errorf("run execution: %w", ctx.Err())
	}
}

// stop closes the runner's input, which lets it finish and exit, and kills it after grace.
func (r *runner) stop(grace time.Duration) {
	_ = r.stdin.Close()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.p.done:
	case <-t.C:
	}
	r.p.stop(time.Second)
	r.fail(errors.New("runner stopped"))
}
