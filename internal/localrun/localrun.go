package localrun

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// Names of the pipeline's functions, as used in Options.Functions and in the definitions'
// substitutions (ChallengeFunctionArn, SendFunctionArn, PollFunctionArn, BatchFunctionArn), and
// of the S3 entry point's function, which Ingest and DeliverEvent invoke.
const (
	FunctionChallenge = "challenge"
	FunctionSend      = "send"
	FunctionPoll      = "poll"
	FunctionIngest    = "ingest"
	FunctionBatch     = "batch" // the batch runs' function (batch.asl.json), for RunBatch
)

// DefaultNIP is the seller NIP of the official sample invoices.
const DefaultNIP = "9999999999"

// Authentication methods of Options.AuthMethod, as the credentials secret names them.
const (
	AuthToken = "token"
	AuthXAdES = "xades"
)

// Account is the AWS account ID used in local ARNs.
const Account = "123456789012"

// Options configures a local stack. Only Functions and Definition are required.
type Options struct {
	// Functions maps a Lambda function name to its bootstrap executable (built for linux and
	// this machine's architecture with -tags lambda.norpc; see BuildFunction).
	Functions map[string]string
	// Definition is the path of the ASL definition (statemachine.asl.json).
	Definition string
	// BatchDefinition is the path of the batch runs' definition (batch.asl.json), which
	// RunBatch runs; empty if the stack runs no batches.
	BatchDefinition string
	// Substitutions adds to (or overrides) the definition substitutions. By default each
	// function f gets "<F>FunctionArn" = arn:aws:lambda:eu-central-1:123456789012:function:f.
	Substitutions map[string]string

	// EmulatorBin is the ksef-emulator binary. Empty: no emulator (KSEF_BASE_URL is not set).
	EmulatorBin string
	// EmulatorConfig is passed to the emulator as --config when set.
	EmulatorConfig string
	// EmulatorArgs are extra emulator arguments.
	EmulatorArgs []string
	// NIPs are the companies to set up: a random KSeF token each, given to the emulator and
	// stored in the credentials secret ksef/<nip>/credentials. Default: DefaultNIP.
	NIPs []string
	// AuthMethod is the login the credentials secrets ask for: AuthToken (default) or
	// AuthXAdES (a fresh self-signed company-seal certificate per NIP, organizationIdentifier
	// VATPL-<NIP>, which KSeF TEST and the emulator accept for the NIP's own context).
	AuthMethod string

	// Instances is the number of aws-lambda-rie instances (warm execution environments) per
	// function. Default 1. Invocations beyond that wait for a free instance.
	Instances int
	// FunctionTimeout is AWS_LAMBDA_FUNCTION_TIMEOUT. Default 30 s, as in template.yaml.
	FunctionTimeout time.Duration
	// FunctionEnv adds to (or overrides) the functions' environment.
	FunctionEnv map[string]string
	// Bucket is the invoice bucket. Default "ksef-invoices-local".
	Bucket string
	// LedgerTable is the invoice ledger's DynamoDB table (LEDGER_TABLE). Default
	// "ksef-ledger-local".
	LedgerTable string
	// EventBus is the EventBridge bus the functions publish outcomes to (EVENT_BUS_NAME).
	// Default "ksef-invoices-local".
	EventBus string

	// WaitOverride, if positive, replaces the duration of every Wait state (the requested
	// durations are still evaluated and reported in Execution.Waits). Zero: real waits.
	WaitOverride time.Duration
	// RetryOverride, if positive, replaces every Retry interval (no backoff, no jitter).
	RetryOverride time.Duration

	// LocalDir holds run-execution.mjs and its node_modules. Default: <module root>/local.
	LocalDir string
	// NodeBin is Node 22. Default: LocalDir/node_modules/.bin/node.
	NodeBin string
	// RIEBin is aws-lambda-rie. Default: FindRIE.
	RIEBin string
	// MotoBin is moto_server. Default: FindMoto.
	MotoBin string
	// RunDir receives the logs of every process. Default: a new directory under os.TempDir(),
	// kept after Close for inspection.
	RunDir string
	// StartTimeout bounds the start of each service. Default 60 s.
	StartTimeout time.Duration
	// Logger receives progress messages. Default: discard.
	Logger *slog.Logger
}

// Stack is a running local pipeline: moto (S3, Secrets Manager) behind a counting proxy, the
// KSeF emulator, aws-lambda-rie instances of each function behind a Lambda router, and a Node
// process that runs state machine executions. Close stops all of it.
type Stack struct {
	opts          Options
	runDir        string
	log           *slog.Logger
	substitutions map[string]string

	procs      []*process
	servers    []*http.Server
	router     *Router
	counter    *awsCounter
	emuLog     *emulatorLog
	emulator   string // base URL ending in /v2; "" without emulator
	moto       string
	awsProxy   string
	routerURL  string
	runner     *runner
	s3         *s3.Client
	sm         *secretsmanager.Client
	db         *dynamodb.Client
	sfn        *stepFunctions // the local Step Functions API of the entry points
	sfnURL     string
	cancel     context.CancelFunc // ends the executions started through sfn
	ksefTokens map[string]string  // NIP -> KSeF token; never logged

	mu          sync.Mutex
	executions  int
	transitions int

	closeOnce sync.Once
	closeErr  error
}

// Start starts a local stack and sets up the bucket and the credentials secrets. On error
// everything started so far is stopped. Call Close when done, also after a cancelled ctx.
func Start(ctx context.Context, opts Options) (st *Stack, err error) {
	if err := opts.defaults(ctx); err != nil {
		return nil, err
	}
	s := &Stack{opts: opts, runDir: opts.RunDir, log: opts.Logger, ksefTokens: make(map[string]string)}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	logDir := filepath.Join(s.runDir, "logs")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, fmt.Errorf("create log directory: %w", err)
	}
	for _, nip := range opts.NIPs {
		tok, err := newKSeFToken(nip)
		if err != nil {
			return nil, err
		}
		s.ksefTokens[nip] = tok
	}

	s.log.InfoContext(ctx, "starting moto", "runDir", s.runDir)
	motoProc, motoURL, err := startMoto(ctx, opts.MotoBin, logDir, opts.StartTimeout)
	if err != nil {
		return nil, fmt.Errorf("start moto: %w", err)
	}
	s.procs = append(s.procs, motoProc)
	s.moto = motoURL
	target, _ := url.Parse(motoURL)
	s.counter = newAWSCounter(target)
	if s.awsProxy, err = s.serve(s.counter); err != nil {
		return nil, fmt.Errorf("start aws counting proxy: %w", err)
	}
	s.s3 = newS3(motoURL)
	s.sm = newSecretsManager(motoURL)
	s.db = dynamodb.NewFromConfig(awsConfig(motoURL))
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.sfn = newStepFunctions(runCtx, StateMachineARN, s.runExecution)
	if s.sfnURL, err = s.serve(s.sfn); err != nil {
		return nil, fmt.Errorf("start local step functions api: %w", err)
	}

	if opts.EmulatorBin != "" {
		s.log.InfoContext(ctx, "starting ksef emulator")
		p, l, base, err := startEmulator(ctx, opts.EmulatorBin, opts.EmulatorConfig, opts.EmulatorArgs, s.ksefTokens, logDir, opts.StartTimeout)
		if err != nil {
			return nil, err
		}
		s.procs = append(s.procs, p)
		s.emuLog, s.emulator = l, base
		s.log.InfoContext(ctx, "ksef emulator ready", "baseUrl", base)
	}

	if err := s.setupAWS(ctx); err != nil {
		return nil, err
	}
	s.log.DebugContext(ctx, "bucket, secrets, ledger table and event bus created", "bucket", opts.Bucket, "nips", opts.NIPs)

	instances := make(map[string][]string, len(opts.Functions))
	for _, name := range sortedKeys(opts.Functions) {
		for i := range opts.Instances {
			u, p, err := s.startFunction(ctx, name, i, logDir)
			if p != nil {
				s.procs = append(s.procs, p)
			}
			if err != nil {
				return nil, err
			}
			instances[name] = append(instances[name], u)
			s.log.DebugContext(ctx, "function started", "function", name, "instance", i)
		}
	}
	s.router = NewRouter(instances, opts.FunctionTimeout+30*time.Second)
	if s.routerURL, err = s.serve(s.router); err != nil {
		return nil, fmt.Errorf("start lambda router: %w", err)
	}

	s.substitutions = make(map[string]string)
	for name := range opts.Functions {
		s.substitutions[arnSubstitution(name)] = FunctionARN(name)
	}
	for k, v := range opts.Substitutions {
		s.substitutions[k] = v
	}
	runnerEnv := append(baseEnv(),
		"AWS_REGION="+Region,
		"AWS_ACCESS_KEY_ID="+dummyAccessKeyID,
		"AWS_SECRET_ACCESS_KEY="+dummySecretAccessKey,
		"AWS_ENDPOINT_URL_LAMBDA="+s.routerURL,
		"AWS_EC2_METADATA_DISABLED=true",
	)
	if s.runner, err = startRunner(opts.NodeBin, filepath.Join(opts.LocalDir, "run-execution.mjs"), runnerEnv, logDir); err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "local stack ready", "functions", sortedKeys(opts.Functions), "instances", opts.Instances)
	return s, nil
}

func (o *Options) defaults(ctx context.Context) error {
	if len(o.Functions) == 0 {
		return errors.New("localrun: Options.Functions is empty")
	}
	if o.Definition == "" {
		return errors.New("localrun: Options.Definition is empty")
	}
	def, err := filepath.Abs(o.Definition)
	if err != nil {
		return fmt.Errorf("localrun: definition path: %w", err)
	}
	o.Definition = def
	if _, err := os.Stat(o.Definition); err != nil {
		return fmt.Errorf("localrun: definition: %w", err)
	}
	if o.BatchDefinition != "" {
		if o.BatchDefinition, err = filepath.Abs(o.BatchDefinition); err != nil {
			return fmt.Errorf("localrun: batch definition path: %w", err)
		}
		if _, err := os.Stat(o.BatchDefinition); err != nil {
			return fmt.Errorf("localrun: batch definition: %w", err)
		}
	}
	for name, p := range o.Functions {
		if !isExecutable(p) {
			return fmt.Errorf("localrun: bootstrap of function %s: %s is not an executable file", name, p)
		}
	}
	if o.LocalDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return fmt.Errorf("localrun: %w", err)
		}
		root, err := FindModuleRoot(wd)
		if err != nil {
			return fmt.Errorf("localrun: locate local/: %w", err)
		}
		o.LocalDir = filepath.Join(root, "local")
	}
	if o.NodeBin == "" {
		if o.NodeBin, err = FindNode(o.LocalDir); err != nil {
			return err
		}
	}
	if o.RIEBin == "" {
		if o.RIEBin, err = FindRIE(ctx); err != nil {
			return err
		}
	}
	if o.MotoBin == "" {
		if o.MotoBin, err = FindMoto(); err != nil {
			return err
		}
	}
	if o.RunDir == "" {
		if o.RunDir, err = os.MkdirTemp("", "ksef-local-"); err != nil {
			return fmt.Errorf("localrun: create run directory: %w", err)
		}
	}
	if len(o.NIPs) == 0 {
		o.NIPs = []string{DefaultNIP}
	}
	switch o.AuthMethod {
	case "":
		o.AuthMethod = AuthToken
	case AuthToken, AuthXAdES:
	default:
		return fmt.Errorf("localrun: unknown AuthMethod %q (want %s or %s)", o.AuthMethod, AuthToken, AuthXAdES)
	}
	if o.Instances <= 0 {
		o.Instances = 1
	}
	if o.FunctionTimeout <= 0 {
		o.FunctionTimeout = 30 * time.Second
	}
	if o.Bucket == "" {
		o.Bucket = "ksef-invoices-local"
	}
	if o.LedgerTable == "" {
		o.LedgerTable = "ksef-ledger-local"
	}
	if o.EventBus == "" {
		o.EventBus = "ksef-invoices-local"
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 60 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// FunctionARN returns the local ARN of a function.
func FunctionARN(name string) string {
	return "arn:aws:lambda:" + Region + ":" + Account + ":function:" + name
}

// arnSubstitution returns the definition substitution of a function: "send" -> "SendFunctionArn".
func arnSubstitution(name string) string {
	r := []rune(name)
	r[0] = unicode.ToUpper(r[0])
	return string(r) + "FunctionArn"
}

// serve runs h on a new listener on 127.0.0.1 and returns its URL.
func (s *Stack) serve(h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.servers = append(s.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}

// functionEnv is the environment contract between the harness and the functions.
func (s *Stack) functionEnv(name string) []string {
	env := map[string]string{
		"AWS_REGION":                  Region,
		"AWS_DEFAULT_REGION":          Region,
		"AWS_ENDPOINT_URL":            s.awsProxy,
		"AWS_ACCESS_KEY_ID":           dummyAccessKeyID,
		"AWS_SECRET_ACCESS_KEY":       dummySecretAccessKey,
		"AWS_EC2_METADATA_DISABLED":   "true",
		"S3_FORCE_PATH_STYLE":         "true",
		"KSEF_ENVIRONMENT":            "test",
		"KSEF_CREDENTIALS_SECRET":     "ksef/{nip}/credentials",
		"KSEF_STATE_SECRET":           "ksef/{nip}/session",
		"INVOICE_BUCKET":              s.opts.Bucket,
		"RESULT_PREFIX":               ResultPrefix,
		"INBOX_PREFIX":                InboxPrefix,
		"BATCH_PREFIX":                BatchPrefix,
		"KSEF_NIP":                    s.opts.NIPs[0],
		"LEDGER_TABLE":                s.opts.LedgerTable,
		"EVENT_BUS_NAME":              s.opts.EventBus,
		"STATE_MACHINE_ARN":           StateMachineARN,
		"AWS_ENDPOINT_URL_SFN":        s.sfnURL,
		"LOG_LEVEL":                   "info",
		"AWS_LAMBDA_LOG_FORMAT":       "JSON", // LoggingConfig.LogFormat JSON in template.yaml
		"AWS_LAMBDA_LOG_LEVEL":        "INFO",
		"AWS_LAMBDA_FUNCTION_TIMEOUT": fmt.Sprint(int(s.opts.FunctionTimeout.Round(time.Second) / time.Second)),
		"AWS_LAMBDA_FUNCTION_NAME":    name,
	}
	if s.emulator != "" {
		env["KSEF_BASE_URL"] = s.emulator
	}
	for k, v := range s.opts.FunctionEnv {
		env[k] = v
	}
	return append(baseEnv(), envList(env)...)
}

// startFunction starts one aws-lambda-rie instance of a function and returns its invocation URL.
// An instance that exits before it is ready (its port was taken meanwhile) is started again on
// fresh ports.
func (s *Stack) startFunction(ctx context.Context, name string, i int, logDir string) (string, *process, error) {
	var err error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		var url string
		var p *process
		url, p, err = s.startFunctionOnce(ctx, name, i, logDir)
		if err == nil || p == nil || !p.exited() {
			return url, p, err
		}
		p.stop(time.Second)
	}
	return "", nil, err
}

func (s *Stack) startFunctionOnce(ctx context.Context, name string, i int, logDir string) (string, *process, error) {
	apiPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	rapidPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	bootstrap, err := filepath.Abs(s.opts.Functions[name])
	if err != nil {
		return "", nil, fmt.Errorf("function %s: %w", name, err)
	}
	p, err := startProcess(processSpec{
		name: fmt.Sprintf("function %s #%d", name, i),
		argv: []string{s.opts.RIEBin,
			"--runtime-interface-emulator-address", hostPort(apiPort),
			"--runtime-api-address", hostPort(rapidPort),
			"--log-level", "error",
			bootstrap},
		env:     s.functionEnv(name),
		dir:     filepath.Dir(bootstrap),
		logPath: filepath.Join(logDir, fmt.Sprintf("function-%s-%d.log", name, i)),
	})
	if err != nil {
		return "", nil, err
	}
	if err := waitReady(ctx, p, s.opts.StartTimeout, 20*time.Millisecond, probeTCP(hostPort(apiPort))); err != nil {
		return "", p, fmt.Errorf("start function %s: %w", name, err)
	}
	return "http://" + hostPort(apiPort) + "/2015-03-31/functions/function/invocations", p, nil
}

// credentialsSecret is the credentials secret the pipeline reads (format: pkg/secrets).
type credentialsSecret struct {
	NIP            string `json:"nip"`
	Environment    string `json:"environment"`
	BaseURL        string `json:"baseUrl,omitempty"`
	AuthMethod     string `json:"authMethod"`
	KSeFToken      string `json:"ksefToken,omitempty"`
	CertificatePEM string `json:"certificatePem,omitempty"`
	PrivateKeyPEM  string `json:"privateKeyPem,omitempty"`
}

func (s *Stack) setupAWS(ctx context.Context) error {
	if err := createBucket(ctx, s.s3, s.opts.Bucket); err != nil {
		return err
	}
	if err := createLedgerTable(ctx, s.db, s.opts.LedgerTable); err != nil {
		return err
	}
	if err := createEventBus(ctx, eventbridge.NewFromConfig(awsConfig(s.moto)), s.opts.EventBus); err != nil {
		return err
	}
	for _, nip := range s.opts.NIPs {
		cred := credentialsSecret{NIP: nip, Environment: "test", BaseURL: s.emulator, AuthMethod: s.opts.AuthMethod}
		switch s.opts.AuthMethod {
		case AuthToken:
			cred.KSeFToken = s.ksefTokens[nip]
		case AuthXAdES:
			cert, key, err := ksef.NewTestCertificate(ksef.TestCertificateOptions{NIP: nip, Seal: true})
			if err != nil {
				return fmt.Errorf("test certificate of %s: %w", nip, err)
			}
			certPEM, keyPEM, err := ksef.EncodePEM(cert, key)
			if err != nil {
				return fmt.Errorf("test certificate of %s: %w", nip, err)
			}
			cred.CertificatePEM, cred.PrivateKeyPEM = string(certPEM), string(keyPEM)
		}
		b, err := json.Marshal(cred)
		if err != nil {
			return fmt.Errorf("encode credentials of %s: %w", nip, err)
		}
		if err := s.PutSecret(ctx, CredentialsSecretName(nip), b); err != nil {
			return err
		}
	}
	return nil
}

// CredentialsSecretName is the name of a NIP's credentials secret.
func CredentialsSecretName(nip string) string { return "ksef/" + nip + "/credentials" }

// StateSecretName is the name of a NIP's session-state secret.
func StateSecretName(nip string) string { return "ksef/" + nip + "/session" }

// PutSecret creates the secret or stores a new value in it, directly in moto (not counted in
// Metrics). Use it to replace the credentials, e.g. with an XAdES certificate and key.
func (s *Stack) PutSecret(ctx context.Context, name string, value []byte) error {
	_, err := s.sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(string(value))})
	if err == nil {
		return nil
	}
	if _, perr := s.sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(string(value))}); perr != nil {
		return fmt.Errorf("store secret %s: %w", name, errors.Join(err, perr))
	}
	return nil
}

// Secret returns the current value of a secret, or nil if it does not exist.
func (s *Stack) Secret(ctx context.Context, name string) ([]byte, error) {
	out, err := s.sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, fmt.Errorf("get secret %s: %w", name, err)
	}
	return []byte(aws.ToString(out.SecretString)), nil
}

// newKSeFToken returns a random token shaped like a real KSeF token:
// <reference number>|nip-<NIP>|<64 hex>.
func newKSeFToken(nip string) (string, error) {
	b := make([]byte, 43)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate ksef token: %w", err)
	}
	h := strings.ToUpper(hex.EncodeToString(b[:11]))
	ref := time.Now().UTC().Format("20060102") + "-EC-" + h[:10] + "-" + h[10:20] + "-" + h[20:22]
	return ref + "|nip-" + nip + "|" + hex.EncodeToString(b[11:]), nil
}

// RunExecution runs one execution of the definition with the given input, under a random name.
func (s *Stack) RunExecution(ctx context.Context, input any) (*Execution, error) {
	return s.runExecution(ctx, input, "")
}

// runExecution runs an execution named name ($$.Execution.Name); "" for a random name.
func (s *Stack) runExecution(ctx context.Context, input any, name string) (*Execution, error) {
	return s.runDefinition(ctx, s.opts.Definition, StateMachineName, input, name)
}

// runDefinition runs an execution of a definition, of the state machine named machine.
func (s *Stack) runDefinition(ctx context.Context, definition, machine string, input any, name string) (*Execution, error) {
	j := job{DefinitionPath: definition, Substitutions: s.substitutions, Input: input, StateMachineName: machine, ExecutionName: name}
	if s.opts.WaitOverride > 0 {
		ms := s.opts.WaitOverride.Milliseconds()
		j.WaitTimeOverrideMs = &ms
	}
	if s.opts.RetryOverride > 0 {
		ms := s.opts.RetryOverride.Milliseconds()
		j.RetryIntervalOverrideMs = &ms
	}
	e, err := s.runner.run(ctx, j)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.executions++
	s.transitions += e.StateTransitions
	s.mu.Unlock()
	return e, nil
}

// Upload stores body in the invoice bucket under key and returns the new version ID.
func (s *Stack) Upload(ctx context.Context, key string, body []byte) (string, error) {
	out, err := s.s3.PutObject(ctx, &s3.PutObjectInput{
		Bucket:      aws.String(s.opts.Bucket),
		Key:         aws.String(key),
		Body:        bytes.NewReader(body),
		ContentType: aws.String("application/xml"),
	})
	if err != nil {
		return "", fmt.Errorf("upload s3://%s/%s: %w", s.opts.Bucket, key, err)
	}
	return aws.ToString(out.VersionId), nil
}

// Object returns an object of the invoice bucket, or nil if it does not exist.
func (s *Stack) Object(ctx context.Context, key string) ([]byte, error) {
	return getObject(ctx, s.s3, s.opts.Bucket, key)
}

// EmulatorAdmin calls the emulator's admin API (path like "/admin/faults") with body encoded as
// JSON (nil: no body) and decodes a JSON answer into out (nil: ignored).
func (s *Stack) EmulatorAdmin(ctx context.Context, method, path string, body, out any) error {
	if s.emulator == "" {
		return errors.New("localrun: no emulator running")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("emulator admin %s %s: encode body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimSuffix(s.emulator, "/v2") + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("emulator admin %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("emulator admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("emulator admin %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("emulator admin %s %s: HTTP %d: %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil && len(bytes.TrimSpace(b)) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("emulator admin %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// Metrics counts what the pipeline did since Start.
type Metrics struct {
	Functions        map[string]FunctionStats `json:"functions"`    // by function name
	KSeFRequests     map[string]int           `json:"ksefRequests"` // "POST /auth/ksef-token" -> n
	KSeFLogins       int                      `json:"ksefLogins"`   // POST /auth/ksef-token and /auth/xades-signature
	KSeFSessions     int                      `json:"ksefSessionsOpened"`
	AWSCalls         map[string]int           `json:"awsCalls"`      // by the functions: "SecretsManager.PutSecretValue", "StepFunctions.StartExecution" -> n
	SecretsWrites    int                      `json:"secretsWrites"` // PutSecretValue + CreateSecret by the functions
	SecretsReads     int                      `json:"secretsReads"`  // GetSecretValue by the functions
	Executions       int                      `json:"executions"`
	StateTransitions int                      `json:"stateTransitions"`
}

// Metrics returns the counters.
func (s *Stack) Metrics() Metrics {
	m := Metrics{Functions: s.router.Stats(), AWSCalls: s.counter.snapshot(), KSeFRequests: map[string]int{}}
	for op, n := range s.sfn.snapshot() {
		m.AWSCalls[op] += n
	}
	if s.emuLog != nil {
		m.KSeFRequests = s.emuLog.snapshot()
	}
	m.KSeFLogins = m.KSeFRequests["POST /auth/ksef-token"] + m.KSeFRequests["POST /auth/xades-signature"]
	m.KSeFSessions = m.KSeFRequests["POST /sessions/online"]
	m.SecretsWrites = m.AWSCalls["SecretsManager.PutSecretValue"] + m.AWSCalls["SecretsManager.CreateSecret"]
	m.SecretsReads = m.AWSCalls["SecretsManager.GetSecretValue"]
	s.mu.Lock()
	m.Executions, m.StateTransitions = s.executions, s.transitions
	s.mu.Unlock()
	return m
}

// EmulatorURL returns the emulator's API base URL (ending in /v2), or "" without emulator.
func (s *Stack) EmulatorURL() string { return s.emulator }

// MotoURL returns moto's endpoint (direct, not counted).
func (s *Stack) MotoURL() string { return s.moto }

// LambdaURL returns the Lambda router's endpoint (for AWS_ENDPOINT_URL_LAMBDA).
func (s *Stack) LambdaURL() string { return s.routerURL }

// Bucket returns the invoice bucket.
func (s *Stack) Bucket() string { return s.opts.Bucket }

// RunDir returns the directory holding the logs (logs/*.log).
func (s *Stack) RunDir() string { return s.runDir }

// Close stops every process (process groups: TERM, then KILL) and server. It is safe to call
// more than once.
func (s *Stack) Close() error {
	s.closeOnce.Do(func() {
		if s.cancel != nil {
			s.cancel()
		}
		if s.runner != nil {
			s.runner.stop(2 * time.Second)
		}
		var wg sync.WaitGroup
		for _, p := range s.procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.stop(3 * time.Second)
			}()
		}
		wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var errs []error
		for _, srv := range s.servers {
			if err := srv.Shutdown(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			s.closeErr = fmt.Errorf("localrun: stop servers: %w", errors.Join(errs...))
		}
	})
	return s.closeErr
}
