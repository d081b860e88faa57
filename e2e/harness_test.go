package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
	"github.com/ksef-serverless/ksef-serverless/internal/localrun/localruntest"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// Timings of every stack: short emulator delays and short Wait and Retry intervals keep a
// scenario within seconds; the durations the definition asks for are still evaluated and
// reported (Execution.Waits).
const (
	waitOverride  = 50 * time.Millisecond
	retryOverride = 50 * time.Millisecond
	startTimeout  = 2 * time.Minute
	sendTimeout   = 3 * time.Minute
)

// emulatorConfig is the emulator configuration of every stack.
var emulatorConfig = map[string]any{
	"authDelay":       "200ms",
	"acceptDelay":     "100ms",
	"processingDelay": "200ms",
	"storageDelay":    "200ms",
	// Rate limits stay off so that fast polling cannot make a scenario flaky; the 429 scenarios
	// inject their 429s as faults.
	"rateLimits": false,
}

// sampleName is the official sample invoice the scenarios send (seller NIP 9999999999, issued
// 2026-02-15), and sampleNumber its invoice number (P_2).
const (
	sampleName   = "FA_3_Przyklad_1.xml"
	sampleNumber = "FV2026/02/150"
)

func sample(t *testing.T) []byte {
	t.Helper()
	b, ok := official.SampleInvoices()[sampleName]
	if !ok {
		t.Fatalf("official sample %s is missing", sampleName)
	}
	return b
}

// invoiceNumbered returns the sample with its invoice number (P_2) replaced, so that KSeF does
// not take it for a duplicate of another invoice.
func invoiceNumbered(t *testing.T, number string) []byte {
	t.Helper()
	old := []byte("<P_2>" + sampleNumber + "</P_2>")
	b := sample(t)
	if bytes.Count(b, old) != 1 {
		t.Fatalf("sample %s does not hold %s exactly once", sampleName, old)
	}
	return bytes.Replace(b, old, []byte("<P_2>"+number+"</P_2>"), 1)
}

// tools are the programs a stack runs.
type tools struct {
	root      string            // module root
	rie       string            // aws-lambda-rie
	emulator  string            // ksef-emulator
	functions map[string]string // function name -> bootstrap
}

var (
	buildOnce sync.Once
	buildDir  string // temporary, removed by TestMain
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// requireStack skips the test in -short mode or when a tool of the local stack is missing (and
// fails it instead when CI is set), and returns the tools. The functions and the emulator are
// those `make build-local` left in KSEF_LOCAL_BIN, or are built once into a temporary directory.
func requireStack(t *testing.T) tools {
	t.Helper()
	root, rie := localruntest.RequireTools(t)
	bin := os.Getenv("KSEF_LOCAL_BIN")

	tl := tools{root: root, rie: rie, functions: map[string]string{}}
	if bin == "" {
		buildOnce.Do(func() { buildErr = build(root) })
		if buildErr != nil {
			t.Fatalf("build the functions and the emulator: %v", buildErr)
		}
		bin = buildDir
	}
	tl.emulator = filepath.Join(bin, "ksef-emulator")
	for _, f := range []string{localrun.FunctionChallenge, localrun.FunctionSend, localrun.FunctionPoll} {
		tl.functions[f] = filepath.Join(bin, "lambda", f, "bootstrap")
	}
	for _, p := range append(slices.Collect(maps.Values(tl.functions)), tl.emulator) {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%v (KSEF_LOCAL_BIN=%s: run make build-local)", err, bin)
		}
	}
	return tl
}

// build builds the three functions and the emulator into a new temporary directory, laid out as
// `make build-local` lays out bin/.
func build(root string) error {
	dir, err := os.MkdirTemp("", "ksef-e2e-bin-")
	if err != nil {
		return err
	}
	buildDir = dir
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for _, f := range []string{localrun.FunctionChallenge, localrun.FunctionSend, localrun.FunctionPoll} {
		if err := localrun.BuildFunction(ctx, root, "./functions/"+f, filepath.Join(dir, "lambda", f, "bootstrap")); err != nil {
			return err
		}
	}
	return localrun.BuildCommand(ctx, root, "./cmd/ksef-emulator", filepath.Join(dir, "ksef-emulator"))
}

// stackOptions varies a stack.
type stackOptions struct {
	auth      string // localrun.AuthToken (default) or localrun.AuthXAdES
	instances int    // aws-lambda-rie instances per function; default 1
}

// stack is a running local pipeline for one NIP, with what the scenarios need around it.
type stack struct {
	*localrun.Stack
	nip string
	s3  *s3.Client // moto, directly (not counted in Metrics)

	mu         sync.Mutex
	secrets    map[string]string // secret value -> what it is; never printed
	executions []*localrun.Execution
}

// startStack starts a stack for localrun.DefaultNIP. When the test ends, the stack is searched
// for leaked secrets (see checkNoLeaks) and stopped; its run directory is removed, or kept and
// named if the test failed.
func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	tl := requireStack(t)
	runDir, err := os.MkdirTemp("", "ksef-e2e-run-")
	if err != nil {
		t.Fatal(err)
	}
	var s *stack
	t.Cleanup(func() {
		if !t.Failed() {
			_ = os.RemoveAll(runDir)
			return
		}
		tails := jwtShape.ReplaceAllString(logTails(runDir), "[JWT]")
		if s != nil {
			tails = s.redact(tails)
		}
		t.Logf("logs kept in %s\n%s", runDir, tails)
	})
	b, err := json.Marshal(emulatorConfig)
	if err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(runDir, "emulator.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	st, err := localrun.Start(ctx, localrun.Options{
		Functions:      tl.functions,
		Definition:     filepath.Join(tl.root, "statemachine.asl.json"),
		EmulatorBin:    tl.emulator,
		EmulatorConfig: cfgPath,
		NIPs:           []string{localrun.DefaultNIP},
		AuthMethod:     o.auth,
		Instances:      o.instances,
		WaitOverride:   waitOverride,
		RetryOverride:  retryOverride,
		LocalDir:       filepath.Join(tl.root, "local"),
		RIEBin:         tl.rie,
		RunDir:         filepath.Join(runDir, "run"),
	})
	if err != nil {
		t.Fatalf("start the local stack: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("stop the local stack: %v", err)
		}
	})
	s = &stack{
		Stack:   st,
		nip:     localrun.DefaultNIP,
		s3:      s3Client(st.MotoURL()),
		secrets: map[string]string{},
	}
	if err := s.collectSecrets(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.checkNoLeaks(t) }) // runs first: it needs moto, then stops the stack
	return s
}

func s3Client(endpoint string) *s3.Client {
	cfg := aws.Config{
		Region:       localrun.Region,
		Credentials:  credentials.NewStaticCredentialsProvider("e2e", "e2e", ""),
		BaseEndpoint: aws.String(endpoint),
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
}

// send runs one execution for the invoice (uploaded as inbox/<name>) and fails the test if the
// harness could not run it. A failed execution is a result, not an error.
func (s *stack) send(t *testing.T, name string, body []byte) *localrun.Result {
	t.Helper()
	res, err := s.trySend(t.Context(), name, body)
	if err != nil {
		t.Fatalf("send %s: %v", name, err)
	}
	return res
}

// trySend is send for goroutines: it returns the error instead of failing the test.
func (s *stack) trySend(ctx context.Context, name string, body []byte) (*localrun.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	res, err := s.SendInvoice(ctx, s.nip, name, body)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.executions = append(s.executions, res.Execution)
	s.mu.Unlock()
	if err := s.collectSecrets(ctx); err != nil {
		return nil, err
	}
	return res, nil
}

// admin calls the emulator's admin API and fails the test on error.
func (s *stack) admin(t *testing.T, method, urlPath string, body, out any) {
	t.Helper()
	if err := s.EmulatorAdmin(t.Context(), method, urlPath, body, out); err != nil {
		t.Fatal(err)
	}
}

// requests counts the KSeF requests seen so far by method and path pattern (path.Match, below
// /v2: "/sessions/online/*/invoices").
func requests(m localrun.Metrics, method, pattern string) int {
	n := 0
	for k, v := range m.KSeFRequests {
		meth, p, _ := strings.Cut(k, " ")
		if ok, _ := path.Match(pattern, p); ok && meth == method {
			n += v
		}
	}
	return n
}

// Request patterns the scenarios count.
const (
	sendInvoicePath   = "/sessions/online/*/invoices"
	invoiceStatusPath = "/sessions/*/invoices/*"
	openSessionPath   = "/sessions/online"
	refreshPath       = "/auth/token/refresh"
)

// emulatorRequest is one line of the emulator's request log.
type emulatorRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
}

// emulatorRequests reads the emulator's request log: every request with its answer's status.
func (s *stack) emulatorRequests(t *testing.T) []emulatorRequest {
	t.Helper()
	var out []emulatorRequest
	for _, line := range jsonLines(t, filepath.Join(s.RunDir(), "logs", "emulator.log")) {
		var r emulatorRequest
		if json.Unmarshal(line, &r) == nil && r.Method != "" && r.Path != "" {
			r.Path = strings.TrimPrefix(r.Path, "/v2")
			out = append(out, r)
		}
	}
	return out
}

// countStatus counts the logged requests matching method and pattern that got status.
func countStatus(reqs []emulatorRequest, method, pattern string, status int) int {
	n := 0
	for _, r := range reqs {
		if ok, _ := path.Match(pattern, r.Path); ok && r.Method == method && r.Status == status {
			n++
		}
	}
	return n
}

// functionLog returns the JSON log records of every instance of a function.
func (s *stack) functionLog(t *testing.T, function string) []map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.RunDir(), "logs", "function-"+function+"-*.log"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no log of function %s in %s (%v)", function, s.RunDir(), err)
	}
	var out []map[string]any
	for _, f := range files {
		for _, line := range jsonLines(t, f) {
			var m map[string]any
			if json.Unmarshal(line, &m) == nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// jsonLines returns the lines of a file that look like JSON objects.
func jsonLines(t *testing.T, file string) [][]byte {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][]byte
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		if line := bytes.TrimSpace(sc.Bytes()); bytes.HasPrefix(line, []byte("{")) {
			out = append(out, bytes.Clone(line))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	return out
}

// Fragments of state paths through statemachine.asl.json, for wantStates. Each ends in a space.
const (
	// pathLogin starts a login, polls it until KSeF reports 200, and redeems it.
	pathLogin = "Authenticate IsAuthenticated (WaitForAuth PollAuth AuthPollDecision )+Authenticate IsAuthenticated "
	// pathTokenReady finds (or refreshes) a stored access token.
	pathTokenReady = "Authenticate IsAuthenticated "
	// pathPoll polls the invoice status until it is final.
	pathPoll = "StartInvoicePolling (WaitForInvoice PollInvoice InvoicePollDecision )+"
)

// wantStates checks the states an execution entered against a regular expression over their
// names, each followed by a space ("Init Authenticate ...").
func wantStates(t *testing.T, e *localrun.Execution, pattern string) {
	t.Helper()
	got := strings.Join(e.States, " ") + " "
	if !regexp.MustCompile("^" + pattern + "$").MatchString(got) {
		t.Errorf("states entered:\n  %s\nwant the pattern:\n  %s", got, pattern)
	}
}

// wantStatus checks an execution's status and, for a failure, its error name.
func wantStatus(t *testing.T, res *localrun.Result, status, errorName string) {
	t.Helper()
	e := res.Execution
	if e.Status != status || e.Error != errorName {
		t.Fatalf("%s: execution %s error %q, want %s %q\ncause: %s\nstates: %v", res.Key, e.Status, e.Error, status, errorName, e.Cause, e.States)
	}
}

// checkOriginal checks that the uploaded invoice is still the only version of its object, with
// the bytes uploaded: the pipeline writes its results elsewhere and never touches the original.
func (s *stack) checkOriginal(t *testing.T, res *localrun.Result, body []byte) {
	t.Helper()
	out, err := s.s3.ListObjectVersions(t.Context(), &s3.ListObjectVersionsInput{Bucket: aws.String(res.Bucket), Prefix: aws.String(res.Key)})
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, v := range out.Versions {
		if aws.ToString(v.Key) == res.Key {
			versions = append(versions, aws.ToString(v.VersionId))
		}
	}
	if len(out.DeleteMarkers) > 0 || !slices.Equal(versions, []string{res.VersionID}) {
		t.Errorf("s3://%s/%s has versions %v and %d delete markers, want only the uploaded version %s", res.Bucket, res.Key, versions, len(out.DeleteMarkers), res.VersionID)
	}
	got, err := s.Object(t.Context(), res.Key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, body) {
		t.Errorf("s3://%s/%s changed: %d bytes, want the %d bytes uploaded", res.Bucket, res.Key, len(got), len(body))
	}
}

// objects returns every version of every object in the bucket, keyed "key@versionId".
func (s *stack) objects(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	p := s3.NewListObjectVersionsPaginator(s.s3, &s3.ListObjectVersionsInput{Bucket: aws.String(s.Bucket())})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list objects: %w", err)
		}
		for _, v := range page.Versions {
			obj, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Bucket()), Key: v.Key, VersionId: v.VersionId})
			if err != nil {
				return nil, fmt.Errorf("get %s: %w", aws.ToString(v.Key), err)
			}
			b, err := io.ReadAll(obj.Body)
			obj.Body.Close()
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", aws.ToString(v.Key), err)
			}
			out[aws.ToString(v.Key)+"@"+aws.ToString(v.VersionId)] = b
		}
	}
	return out, nil
}

// logTails returns the last lines of every log file under dir, for failure messages.
func logTails(dir string) string {
	files, _ := filepath.Glob(filepath.Join(dir, "run", "logs", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 12 {
			lines = lines[len(lines)-12:]
		}
		b.WriteString("--- " + filepath.Base(f) + "\n" + strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}

// state returns the NIP's session state as the functions stored it.
func (s *stack) state(t *testing.T) *secrets.State {
	t.Helper()
	b, err := s.Secret(t.Context(), localrun.StateSecretName(s.nip))
	if err != nil {
		t.Fatal(err)
	}
	var st secrets.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode the state secret: %v", err)
	}
	return &st
}

// wantFunctions checks the invocations of each function (a negative want means "at least -want")
// and that none of them answered with a function error other than those expected.
func wantFunctions(t *testing.T, m localrun.Metrics, want, wantErrors map[string]int) {
	t.Helper()
	for f, n := range want {
		got := m.Functions[f]
		if (n >= 0 && got.Invocations != n) || (n < 0 && got.Invocations < -n) {
			t.Errorf("function %s: %d invocations, want %s", f, got.Invocations, atLeast(n))
		}
		if got.FunctionErrors != wantErrors[f] {
			t.Errorf("function %s: %d function errors, want %d", f, got.FunctionErrors, wantErrors[f])
		}
	}
}

func atLeast(n int) string {
	if n < 0 {
		return "at least " + strconv.Itoa(-n)
	}
	return strconv.Itoa(n)
}

// pathPollFails polls the invoice status until the poll fails (KSeF rejected the invoice).
const pathPollFails = "StartInvoicePolling (WaitForInvoice PollInvoice InvoicePollDecision )*WaitForInvoice PollInvoice "

// fault is an emulator fault as its admin API takes it (pkg/emulator/README.md).
type fault struct {
	Kind       string   `json:"kind"`
	Method     string   `json:"method,omitempty"`
	Path       string   `json:"path,omitempty"`
	NIP        string   `json:"nip,omitempty"`
	Count      int      `json:"count,omitempty"`
	Status     int      `json:"status,omitempty"`
	RetryAfter string   `json:"retryAfter,omitempty"`
	Details    []string `json:"details,omitempty"`
}

// wantCaught checks the errors caught by a Catch during an execution.
func wantCaught(t *testing.T, e *localrun.Execution, want ...localrun.Caught) {
	t.Helper()
	if !slices.Equal(e.Caught, want) {
		t.Errorf("caught %+v, want %+v", e.Caught, want)
	}
}

// withComment returns the invoice grown to size bytes by a comment before its end tag.
func withComment(t *testing.T, invoice []byte, size int) []byte {
	t.Helper()
	end := []byte("</Faktura>")
	i := bytes.LastIndex(invoice, end)
	if i < 0 {
		t.Fatal("no </Faktura> in the invoice")
	}
	pad := max(size-len(invoice)-len("<!--  -->"), 0)
	return slices.Concat(invoice[:i], []byte("<!-- "+strings.Repeat("x", pad)+" -->"), invoice[i:])
}
