package localrun

import (
	"context"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// requireTools skips the test when a tool of the harness is missing, or fails it when CI is set
// (CI must run these tests).
func requireTools(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but a tool is missing: %v", err)
	}
	if errors.Is(err, ErrMissingTool) {
		t.Skipf("skipping: %v", err)
	}
	t.Fatal(err)
}

var (
	testfnOnce sync.Once
	testfnPath string
	testfnErr  error
)

// buildTestFunction builds testdata/testfn once per test binary.
func buildTestFunction(t *testing.T) string {
	t.Helper()
	testfnOnce.Do(func() {
		dir, err := os.MkdirTemp("", "localrun-testfn-")
		if err != nil {
			testfnErr = err
			return
		}
		testfnPath = filepath.Join(dir, "bootstrap")
		testfnErr = BuildFunction(context.Background(), ".", "./testdata/testfn", testfnPath)
	})
	if testfnErr != nil {
		t.Fatalf("build test function: %v", testfnErr)
	}
	return testfnPath
}

// testTools checks the tools of the harness (skipping or failing with requireTools) and returns
// the module root and aws-lambda-rie (also looked for where `make tools` puts it).
func testTools(t *testing.T) (root, rie string) {
	t.Helper()
	root, err := FindModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	_, err = FindNode(filepath.Join(root, "local"))
	requireTools(t, err)
	rie, err = FindRIE(t.Context(), os.Getenv("KSEF_LOCAL_BIN"), filepath.Join(root, "bin"))
	requireTools(t, err)
	_, err = FindMoto()
	requireTools(t, err)
	return root, rie
}

func startTestStack(t *testing.T, instances int) *Stack {
	t.Helper()
	_, rie := testTools(t)

	bootstrap := buildTestFunction(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{
		Functions:     map[string]string{"test": bootstrap},
		Definition:    "testdata/harness.asl.json",
		RIEBin:        rie,
		Instances:     instances,
		WaitOverride:  time.Millisecond,
		RetryOverride: time.Millisecond,
		RunDir:        t.TempDir(),
		FunctionEnv:   map[string]string{"EXTRA": "yes"},
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

type testInput struct {
	Key    string         `json:"key"`
	Fail   []string       `json:"fail"`
	Reason map[string]any `json:"reason"`
	Panic  bool           `json:"panic"`
	Env    []string       `json:"env"`
}

func input(key string, fail ...string) testInput {
	return testInput{Key: key, Fail: append([]string{}, fail...), Reason: map[string]any{"message": "from " + key}, Env: []string{}}
}

func run(t *testing.T, st *Stack, in testInput) *Execution {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	e, err := st.RunExecution(ctx, in)
	if err != nil {
		t.Fatalf("RunExecution(%+v): %v", in, err)
	}
	return e
}

func TestStackRetryCatchIntrinsicsWait(t *testing.T) {
	st := startTestStack(t, 1)
	in := input("throttle", "RetryableError", "RateLimitedError", "RetryableError")
	in.Reason["retryAfterSeconds"] = 7
	e := run(t, st, in)

	if e.Status != StatusSucceeded {
		t.Fatalf("status %s (%s: %s), want SUCCEEDED; states %v", e.Status, e.Error, e.Cause, e.States)
	}
	wantStates := []string{"Init", "Call", "Throttled", "ParseReason", "WaitRetryAfter", "Call", "Done"}
	if !slices.Equal(e.States, wantStates) {
		t.Errorf("states %v, want %v", e.States, wantStates)
	}
	if want := []Retry{{"Call", 1}, {"Call", 1}}; !slices.Equal(e.Retries, want) {
		t.Errorf("retries %v, want %v", e.Retries, want)
	}
	if want := []Caught{{State: "Call", Error: "RateLimitedError", Next: "Throttled"}}; !slices.Equal(e.Caught, want) {
		t.Errorf("caught %v, want %v", e.Caught, want)
	}
	// The Wait state asked for the retryAfterSeconds that reached it through
	// States.StringToJson twice (the Cause, then its errorMessage); the override kept it short.
	if want := []WaitEntry{{"WaitRetryAfter", 7}}; !slices.Equal(e.Waits, want) {
		t.Errorf("waits %v, want %v", e.Waits, want)
	}
	if e.Duration() > 5*time.Second {
		t.Errorf("execution took %v: the wait override did not apply", e.Duration())
	}
	if e.StateTransitions != len(wantStates)+2 {
		t.Errorf("state transitions %d, want %d (states entered + retries)", e.StateTransitions, len(wantStates)+2)
	}
	var out struct {
		Run struct {
			Count int `json:"count"`
		} `json:"run"`
		Result struct {
			Invocation int    `json:"invocation"`
			Function   string `json:"function"`
		} `json:"result"`
	}
	if err := json.Unmarshal(e.Output, &out); err != nil {
		t.Fatalf("decode output %s: %v", e.Output, err)
	}
	if out.Run.Count != 1 {
		t.Errorf("States.MathAdd: count %d, want 1", out.Run.Count)
	}
	if out.Result.Invocation != 4 || out.Result.Function != "test" {
		t.Errorf("result %+v, want invocation 4 of function test", out.Result)
	}
	m := st.Metrics()
	if got := m.Functions["test"]; got.Invocations != 4 || got.FunctionErrors != 3 {
		t.Errorf("router stats %+v, want 4 invocations, 3 function errors", got)
	}
	if m.Executions != 1 || m.StateTransitions != e.StateTransitions {
		t.Errorf("metrics executions %d transitions %d, want 1 and %d", m.Executions, m.StateTransitions, e.StateTransitions)
	}
}

func TestStackFailStateKeepsErrorAndCause(t *testing.T) {
	st := startTestStack(t, 1)
	in := input("rejected", "RejectedError")
	in.Reason["code"] = 450
	e := run(t, st, in)

	if e.Status != StatusFailed || e.Error != "RejectedError" {
		t.Fatalf("status %s error %q, want FAILED RejectedError", e.Status, e.Error)
	}
	// As on AWS, the Cause is the function's error payload as a JSON string.
	var payload struct {
		ErrorType    string `json:"errorType"`
		ErrorMessage string `json:"errorMessage"`
	}
	if err := json.Unmarshal([]byte(e.Cause), &payload); err != nil {
		t.Fatalf("cause %q is not the error payload: %v", e.Cause, err)
	}
	if payload.ErrorType != "RejectedError" || payload.ErrorMessage != `{"message":"from rejected","code":450}` {
		t.Errorf("cause payload %+v, want RejectedError with the reason JSON", payload)
	}
	if want := []string{"Init", "Call", "Failed"}; !slices.Equal(e.States, want) {
		t.Errorf("states %v, want %v", e.States, want)
	}
	res := &Result{Execution: e}
	f := res.Failure()
	if f == nil || f.Error != "RejectedError" || f.Code != 450 || f.Message != "from rejected" {
		t.Errorf("Failure() = %+v, want RejectedError 450 from rejected", f)
	}
}

func TestStackWaitPathCheckedDespiteOverride(t *testing.T) {
	st := startTestStack(t, 1)
	// No retryAfterSeconds in the reason: AWS fails the Wait state with States.Runtime.
	e := run(t, st, input("nopath", "RateLimitedError"))
	if e.Status != StatusFailed || e.Error != "States.Runtime" {
		t.Fatalf("status %s error %q (%s), want FAILED States.Runtime", e.Status, e.Error, e.Cause)
	}
	if !strings.Contains(e.Cause, "SecondsPath") {
		t.Errorf("cause %q does not name SecondsPath", e.Cause)
	}
	if n := st.Metrics().Functions["test"].Invocations; n != 1 {
		t.Errorf("%d invocations, want 1: the execution went on after the failed Wait", n)
	}
}

func TestStackFunctionEnvironment(t *testing.T) {
	st := startTestStack(t, 1)
	in := input("env")
	in.Env = []string{"AWS_REGION", "AWS_ENDPOINT_URL", "S3_FORCE_PATH_STYLE", "KSEF_ENVIRONMENT",
		"KSEF_CREDENTIALS_SECRET", "KSEF_STATE_SECRET", "INVOICE_BUCKET", "RESULT_PREFIX",
		"LOG_LEVEL", "AWS_LAMBDA_FUNCTION_TIMEOUT", "AWS_LAMBDA_FUNCTION_NAME", "EXTRA", "KSEF_BASE_URL",
		"INBOX_PREFIX", "KSEF_NIP", "LEDGER_TABLE", "EVENT_BUS_NAME", "STATE_MACHINE_ARN", "AWS_ENDPOINT_URL_SFN"}
	e := run(t, st, in)
	if e.Status != StatusSucceeded {
		t.Fatalf("status %s (%s: %s)", e.Status, e.Error, e.Cause)
	}
	var out struct {
		Result struct {
			Env map[string]string `json:"env"`
		} `json:"result"`
	}
	if err := json.Unmarshal(e.Output, &out); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"AWS_REGION": "eu-central-1", "AWS_ENDPOINT_URL": st.awsProxy, "S3_FORCE_PATH_STYLE": "true",
		"KSEF_ENVIRONMENT": "test", "KSEF_CREDENTIALS_SECRET": "ksef/{nip}/credentials",
		"KSEF_STATE_SECRET": "ksef/{nip}/session", "INVOICE_BUCKET": "ksef-invoices-local",
		"RESULT_PREFIX": "results/", "LOG_LEVEL": "info", "AWS_LAMBDA_FUNCTION_TIMEOUT": "30",
		"AWS_LAMBDA_FUNCTION_NAME": "test", "EXTRA": "yes", "KSEF_BASE_URL": "",
		"INBOX_PREFIX": "inbox/", "KSEF_NIP": DefaultNIP, "LEDGER_TABLE": "ksef-ledger-local", "EVENT_BUS_NAME": "ksef-invoices-local",
		"STATE_MACHINE_ARN": "arn:aws:states:eu-central-1:123456789012:stateMachine:ksef-local", "AWS_ENDPOINT_URL_SFN": st.sfnURL,
	}
	for k, v := range want {
		if got := out.Result.Env[k]; got != v {
			t.Errorf("function env %s = %q, want %q", k, got, v)
		}
	}
	// The credentials secret of the default NIP is in moto, with a fresh token.
	b, err := st.Secret(t.Context(), CredentialsSecretName(DefaultNIP))
	if err != nil {
		t.Fatal(err)
	}
	var cred credentialsSecret
	if err := json.Unmarshal(b, &cred); err != nil {
		t.Fatalf("credentials secret is not JSON: %v", err)
	}
	if cred.NIP != DefaultNIP || cred.AuthMethod != "token" || cred.Environment != "test" || !strings.Contains(cred.KSeFToken, "|nip-"+DefaultNIP+"|") {
		t.Errorf("credentials secret has nip %q method %q environment %q and a token of the wrong shape", cred.NIP, cred.AuthMethod, cred.Environment)
	}
}

func TestStackPanicAndRecovery(t *testing.T) {
	st := startTestStack(t, 1)
	in := input("panic")
	in.Panic = true
	e := run(t, st, in)
	// aws-lambda-go reports the panic with the panic value's type as errorType.
	if e.Status != StatusFailed || e.Error != "string" {
		t.Fatalf("status %s error %q, want FAILED string", e.Status, e.Error)
	}
	// aws-lambda-rie restarts the runtime for the next invocation.
	if e := run(t, st, input("after-panic")); e.Status != StatusSucceeded {
		t.Fatalf("after a panic: status %s (%s: %s), want SUCCEEDED", e.Status, e.Error, e.Cause)
	}
	if s := st.Metrics().Functions["test"]; s.Invocations != 2 || s.FunctionErrors != 1 {
		t.Errorf("router stats %+v, want 2 invocations, 1 function error", s)
	}
}

func TestStackConcurrentExecutionsAndCleanup(t *testing.T) {
	st := startTestStack(t, 2)
	const n = 6
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := "c" + string(rune('a'+i))
			e, err := st.RunExecution(t.Context(), input(key, "RetryableError"))
			switch {
			case err != nil:
				errs <- err.Error()
			case e.Status != StatusSucceeded:
				errs <- key + ": " + e.Status + " " + e.Error + " " + e.Cause
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// Each key's retry may land on the other instance (a different execution environment,
	// with its own counters), so only the total is fixed: 2 invocations per key at least.
	if s := st.Metrics().Functions["test"]; s.Invocations < 2*n {
		t.Errorf("%d invocations, want at least %d", s.Invocations, 2*n)
	}

	var pids []int
	for _, p := range st.procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	pids = append(pids, st.runner.p.cmd.Process.Pid)
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, pid := range pids {
		// Nothing of the process group may be left: kill(-pgid, 0) fails with ESRCH.
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after Close (kill: %v)", pid, err)
		}
	}
}

// startPipelineStack runs the real definition with testfn standing in for all three functions.
func startPipelineStack(t *testing.T, env map[string]string) *Stack {
	t.Helper()
	root, rie := testTools(t)
	bootstrap := buildTestFunction(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := Start(ctx, Options{
		Functions:     map[string]string{FunctionChallenge: bootstrap, FunctionSend: bootstrap, FunctionPoll: bootstrap},
		Definition:    filepath.Join(root, "statemachine.asl.json"),
		RIEBin:        rie,
		WaitOverride:  time.Millisecond,
		RetryOverride: time.Millisecond,
		RunDir:        t.TempDir(),
		FunctionEnv:   env,
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestPipelineDefinitionRecordsFailure(t *testing.T) {
	st := startPipelineStack(t, map[string]string{
		"TESTFN_FAIL":   "BadInputError",
		"TESTFN_REASON": `{"stage":"challenge","message":"credentials secret is missing"}`,
	})
	res, err := st.SendInvoice(t.Context(), DefaultNIP, "a.xml", []byte("<Faktura/>"))
	if err != nil {
		t.Fatal(err)
	}
	e := res.Execution
	if e.Status != StatusFailed || e.Error != "BadInputError" {
		t.Fatalf("status %s error %q (%s), want FAILED BadInputError", e.Status, e.Error, e.Cause)
	}
	if want := []string{"Init", "Authenticate", "RecordFailure", "Failed"}; !slices.Equal(e.States, want) {
		t.Errorf("states %v, want %v", e.States, want)
	}
	if f := res.Failure(); f.Message != "credentials secret is missing" {
		t.Errorf("Failure() = %+v, want the reason from the Cause", f)
	}
	m := st.Metrics()
	if m.Functions[FunctionChallenge].Invocations != 1 || m.Functions[FunctionPoll].Invocations != 1 || m.Functions[FunctionSend].Invocations != 0 {
		t.Errorf("invocations %+v, want challenge 1, poll 1 (RecordFailure), send 0", m.Functions)
	}
}

func TestStackXAdESCredentials(t *testing.T) {
	_, rie := testTools(t)
	st, err := Start(t.Context(), Options{
		RIEBin:     rie,
		Functions:  map[string]string{"test": buildTestFunction(t)},
		Definition: "testdata/harness.asl.json",
		NIPs:       []string{"5265877635"},
		AuthMethod: AuthXAdES,
		RunDir:     t.TempDir(),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	b, err := st.Secret(t.Context(), CredentialsSecretName("5265877635"))
	if err != nil {
		t.Fatal(err)
	}
	var cred credentialsSecret
	if err := json.Unmarshal(b, &cred); err != nil {
		t.Fatalf("credentials secret is not JSON: %v", err)
	}
	if cred.AuthMethod != AuthXAdES || cred.KSeFToken != "" {
		t.Errorf("authMethod %q, token set %v; want xades without a token", cred.AuthMethod, cred.KSeFToken != "")
	}
	cert, _, err := ksef.ParsePEM([]byte(cred.CertificatePEM), []byte(cred.PrivateKeyPEM))
	if err != nil {
		t.Fatalf("the certificate and key do not parse: %v", err)
	}
	orgID := ""
	for _, n := range cert.Subject.Names {
		if n.Type.Equal(asn1.ObjectIdentifier{2, 5, 4, 97}) { // organizationIdentifier
			orgID, _ = n.Value.(string)
		}
	}
	if orgID != "VATPL-5265877635" {
		t.Errorf("certificate organizationIdentifier %q, want VATPL-5265877635", orgID)
	}
}

func TestStartRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no functions", Options{Definition: "testdata/harness.asl.json"}, "Options.Functions is empty"},
		{"no definition", Options{Functions: map[string]string{"test": "testdata/harness.asl.json"}}, "Options.Definition is empty"},
		{"bootstrap not executable", Options{Functions: map[string]string{"test": "testdata/harness.asl.json"}, Definition: "testdata/harness.asl.json"}, "is not an executable file"},
		{"missing definition", Options{Functions: map[string]string{"test": "testdata/harness.asl.json"}, Definition: "testdata/nope.json"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(t.Context(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestPipelineDefinitionThrottle checks the definition's 429 path as AWS runs it: the Catch of a
// RateLimitedError gets Cause = the function's error payload ({"errorMessage": "<reason JSON>",
// "errorType": ...}), and the ThrottleWait state must wait the reason's retryAfterSeconds. When
// KSeF keeps answering 429 the failure is recorded after 250 waits, or once a day has been spent
// waiting, whichever comes first.
func TestPipelineDefinitionThrottle(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter int
		wantWaits  int
	}{
		{"short waits: the count gives up", 2, 250},
		{"long waits: the day gives up", 3600, 24},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reason, err := json.Marshal(map[string]any{"stage": "challenge", "message": "slow down", "retryAfterSeconds": tt.retryAfter})
			if err != nil {
				t.Fatal(err)
			}
			st := startPipelineStack(t, map[string]string{"TESTFN_FAIL": "RateLimitedError", "TESTFN_REASON": string(reason)})
			res, err := st.SendInvoice(t.Context(), DefaultNIP, "a.xml", []byte("<Faktura/>"))
			if err != nil {
				t.Fatal(err)
			}
			e := res.Execution
			var throttleWaits []WaitEntry
			for _, w := range e.Waits {
				if w.State == "ThrottleWait" {
					throttleWaits = append(throttleWaits, w)
				}
			}
			if len(throttleWaits) == 0 || throttleWaits[0].Seconds != tt.retryAfter {
				t.Fatalf("ThrottleWait waits %v, want %d s each (status %s, %s: %s; states %v)", throttleWaits, tt.retryAfter, e.Status, e.Error, e.Cause, e.States)
			}
			if e.Status != StatusFailed || e.Error != "RateLimitedError" || len(throttleWaits) != tt.wantWaits {
				t.Errorf("status %s error %q after %d throttle waits, want FAILED RateLimitedError after %d", e.Status, e.Error, len(throttleWaits), tt.wantWaits)
			}
		})
	}
}

func TestRunExecutionScriptSingleJob(t *testing.T) {
	root, err := FindModuleRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	local := filepath.Join(root, "local")
	node, err := FindNode(local)
	requireTools(t, err)
	def, err := filepath.Abs("testdata/harness.asl.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, job string
		wantExit  int
		want      Execution
	}{
		{"missing substitution", `{"definitionPath":"` + def + `","substitutions":{},"input":{}}`, 2,
			Execution{Status: StatusError, Error: "JobError", Cause: "definition substitutions missing: TestFunctionArn"}},
		{"not JSON", `{`, 2, Execution{Status: StatusError, Error: "JobError"}},
		// No Lambda endpoint listens on port 9: the Task fails as Step Functions reports an
		// unreachable Lambda, and the Catch sends it to the Fail state.
		{"lambda unreachable", `{"definitionPath":"` + def + `","substitutions":{"TestFunctionArn":"` + FunctionARN("test") +
			`"},"input":{"key":"k","fail":[],"reason":{},"panic":false,"env":[]}}`, 0,
			Execution{Status: StatusFailed, Error: "Lambda.SdkClientException"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), node, filepath.Join(local, "run-execution.mjs"))
			cmd.Env = append(baseEnv(), "AWS_REGION=eu-central-1", "AWS_ACCESS_KEY_ID=x", "AWS_SECRET_ACCESS_KEY=x", "AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:9")
			cmd.Stdin = strings.NewReader(tt.job)
			out, err := cmd.Output()
			exit := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				exit = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if exit != tt.wantExit || len(lines) != 1 {
				t.Fatalf("exit %d with %d output lines, want %d and exactly 1:\n%s", exit, len(lines), tt.wantExit, out)
			}
			var got Execution
			if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, out)
			}
			if got.Status != tt.want.Status || got.Error != tt.want.Error || (tt.want.Cause != "" && got.Cause != tt.want.Cause) {
				t.Errorf("got %s %s %q, want %s %s %q", got.Status, got.Error, got.Cause, tt.want.Status, tt.want.Error, tt.want.Cause)
			}
		})
	}
}

func TestStackLambdaServiceErrorName(t *testing.T) {
	_, rie := testTools(t)
	st, err := Start(t.Context(), Options{
		Functions:     map[string]string{"test": buildTestFunction(t)},
		Definition:    "testdata/harness.asl.json",
		Substitutions: map[string]string{"TestFunctionArn": FunctionARN("missing")},
		RIEBin:        rie,
		RetryOverride: time.Millisecond,
		RunDir:        t.TempDir(),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := run(t, st, input("k"))
	// The router answers 404 ResourceNotFoundException; Step Functions names it Lambda.<code>.
	if e.Status != StatusFailed || e.Error != "Lambda.ResourceNotFoundException" || !strings.Contains(e.Cause, "Function not found: missing") {
		t.Errorf("status %s error %q cause %q, want FAILED Lambda.ResourceNotFoundException", e.Status, e.Error, e.Cause)
	}
}
