// Package lambdaenv builds what every Lambda handler's main needs, once per container: the
// configuration read from environment variables, the JSON logger, the AWS SDK clients, the
// Secrets Manager store, one KSeF client per NIP configured from that NIP's credentials, and the
// invoice ledger and event publisher when they are configured.
package lambdaenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// Config is the functions' configuration, read from environment variables (set by template.yaml
// on AWS and by the local run otherwise).
type Config struct {
	Environment       ksef.Environment // KSEF_ENVIRONMENT: test, demo or prod
	BaseURL           string           // KSEF_BASE_URL: optional API base URL (an emulator)
	CredentialsSecret string           // KSEF_CREDENTIALS_SECRET: secret id or ARN; "{nip}" is replaced by the NIP
	StateSecret       string           // KSEF_STATE_SECRET: secret id or ARN; "{nip}" is replaced by the NIP
	Bucket            string           // INVOICE_BUCKET: the only bucket invoices are read from and results written to
	ResultPrefix      string           // RESULT_PREFIX: key prefix of UPOs, results and failure reports
	S3PathStyle       bool             // S3_FORCE_PATH_STYLE: path-style S3 addressing (local S3)

	// The entry points and the ledger; all optional.
	InboxPrefix     string // INBOX_PREFIX: key prefix of uploads that start an execution (default inbox/)
	NIP             string // KSEF_NIP: the stack's NIP, for uploads that do not name one
	StateMachineARN string // STATE_MACHINE_ARN: the state machine the entry points start
	LedgerTable     string // LEDGER_TABLE: the invoice ledger; unset: no ledger is kept
	EventBus        string // EVENT_BUS_NAME: where outcome events go; unset: none are published
}

// LoadConfig reads the configuration with getenv (os.Getenv in main).
func LoadConfig(getenv func(string) string) (Config, error) {
	c := Config{
		BaseURL:           strings.TrimRight(getenv("KSEF_BASE_URL"), "/"),
		CredentialsSecret: getenv("KSEF_CREDENTIALS_SECRET"),
		StateSecret:       getenv("KSEF_STATE_SECRET"),
		Bucket:            getenv("INVOICE_BUCKET"),
		ResultPrefix:      getenv("RESULT_PREFIX"),
		S3PathStyle:       getenv("S3_FORCE_PATH_STYLE") == "true",
		InboxPrefix:       getenv("INBOX_PREFIX"),
		NIP:               getenv("KSEF_NIP"),
		StateMachineARN:   getenv("STATE_MACHINE_ARN"),
		LedgerTable:       getenv("LEDGER_TABLE"),
		EventBus:          getenv("EVENT_BUS_NAME"),
	}
	var problems []string
	env := getenv("KSEF_ENVIRONMENT")
	if env == "" {
		env = string(ksef.Test)
	}
	e, err := ksef.ParseEnvironment(env)
	if err != nil {
		problems = append(problems, "KSEF_ENVIRONMENT: "+err.Error())
	}
	c.Environment = e
	if c.CredentialsSecret == "" {
		problems = append(problems, "KSEF_CREDENTIALS_SECRET is not set")
	}
	if c.StateSecret == "" {
		problems = append(problems, "KSEF_STATE_SECRET is not set")
	}
	if c.Bucket == "" {
		problems = append(problems, "INVOICE_BUCKET is not set")
	}
	if c.ResultPrefix == "" {
		c.ResultPrefix = "results/"
	}
	if !strings.HasSuffix(c.ResultPrefix, "/") {
		c.ResultPrefix += "/"
	}
	if c.InboxPrefix == "" {
		c.InboxPrefix = "inbox/"
	}
	if !strings.HasSuffix(c.InboxPrefix, "/") {
		c.InboxPrefix += "/"
	}
	if strings.HasPrefix(c.ResultPrefix, c.InboxPrefix) || strings.HasPrefix(c.InboxPrefix, c.ResultPrefix) {
		problems = append(problems, fmt.Sprintf("RESULT_PREFIX %q and INBOX_PREFIX %q overlap: stored results would be taken for uploads", c.ResultPrefix, c.InboxPrefix))
	}
	if c.NIP != "" && !ksef.ValidNIP(c.NIP) {
		problems = append(problems, fmt.Sprintf("KSEF_NIP %q is not a valid NIP", c.NIP))
	}
	if len(problems) > 0 {
		return Config{}, fmt.Errorf("invalid configuration: %s", strings.Join(problems, "; "))
	}
	return c, nil
}

// SecretNames maps a NIP to its credentials and session-state secret ids.
func (c Config) SecretNames(nip string) (credentials, state string) {
	return strings.ReplaceAll(c.CredentialsSecret, "{nip}", nip), strings.ReplaceAll(c.StateSecret, "{nip}", nip)
}

// NewLogger returns the JSON logger of a function: it honours AWS_LAMBDA_LOG_FORMAT and
// AWS_LAMBDA_LOG_LEVEL (set by the function's LoggingConfig) and adds the request id to every
// record logged with a Lambda context.
func NewLogger() *slog.Logger {
	return lambdacontext.NewLogger()
}

// Env is everything a handler needs, built once in main. Ledger is nil without LEDGER_TABLE and
// Events nil without EVENT_BUS_NAME: the functions then keep no ledger or publish no events.
type Env struct {
	Config        Config
	Log           *slog.Logger
	S3            *s3.Client
	Secrets       *secrets.Store
	KSeF          *ClientPool
	StepFunctions *sfn.Client
	Ledger        *ledger.Ledger
	Events        *ledger.Publisher
}

// New loads the AWS configuration and builds the clients.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Env, error) {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = cfg.S3PathStyle })
	smc := secretsmanager.NewFromConfig(awsCfg)
	store := secrets.New(smc, secrets.WithLogger(log), secrets.WithNames(cfg.SecretNames))
	env := &Env{
		Config:        cfg,
		Log:           log,
		S3:            s3c,
		Secrets:       store,
		KSeF:          NewClientPool(cfg, store, log, nil),
		StepFunctions: sfn.NewFromConfig(awsCfg),
	}
	if cfg.LedgerTable != "" {
		env.Ledger = ledger.New(dynamodb.NewFromConfig(awsCfg), cfg.LedgerTable)
	}
	if cfg.EventBus != "" {
		env.Events = ledger.NewPublisher(eventbridge.NewFromConfig(awsCfg), cfg.EventBus)
	}
	return env, nil
}

// credentialsReader is the part of the secrets store the pool needs.
type credentialsReader interface {
	Credentials(ctx context.Context, nip string) (*secrets.Credentials, error)
	TokenSource(nip string, r secrets.Refresher) *secrets.TokenSource
}

// ClientPool hands out one KSeF client per NIP, built from the NIP's credentials on first use
// and kept for the life of the container (its public-key cache and connections are reused).
type ClientPool struct {
	cfg     Config
	store   credentialsReader
	log     *slog.Logger
	http    ksef.HTTPDoer
	mu      sync.Mutex
	clients map[string]*ksef.Client
}

// NewClientPool returns a pool. httpClient may be nil for a default *http.Client.
func NewClientPool(cfg Config, store credentialsReader, log *slog.Logger, httpClient ksef.HTTPDoer) *ClientPool {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 20 * time.Second}
	}
	return &ClientPool{cfg: cfg, store: store, log: log, http: httpClient, clients: map[string]*ksef.Client{}}
}

// ErrEnvironmentMismatch means the credentials are for another KSeF environment than the
// functions are configured for (a TEST token against production, say).
var ErrEnvironmentMismatch = errors.New("credentials are for another KSeF environment")

// Client returns the NIP's KSeF client and its credentials.
func (p *ClientPool) Client(ctx context.Context, nip string) (*ksef.Client, *secrets.Credentials, error) {
	creds, err := p.store.Credentials(ctx, nip)
	if err != nil {
		return nil, nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.clients[nip]; ok {
		return c, creds, nil
	}
	if creds.Environment != "" && creds.Environment != p.cfg.Environment {
		return nil, nil, fmt.Errorf("%w: secret says %q, functions use %q", ErrEnvironmentMismatch, creds.Environment, p.cfg.Environment)
	}
	opts := []ksef.Option{
		ksef.WithEnvironment(p.cfg.Environment),
		ksef.WithHTTPClient(p.http),
		ksef.WithLogger(p.log),
		ksef.WithProblemDetails(true),
		ksef.WithUserAgent("ksef-serverless"),
		// Short in-process retries only: a longer wait is handed back to the state machine,
		// which waits without a running Lambda.
		ksef.WithRetryPolicy(ksef.RetryPolicy{MaxAttempts: 3, BaseDelay: 300 * time.Millisecond, MaxDelay: 3 * time.Second, MaxRetryAfter: 5 * time.Second}),
	}
	base := p.cfg.BaseURL
	if base == "" {
		base = creds.BaseURL
	}
	if base != "" {
		opts = append(opts, ksef.WithBaseURL(base))
	}
	// Two clients over one HTTP client: the first talks to the authentication endpoints, which
	// take their tokens explicitly, and is the refresher behind the second's access-token
	// source; the store decides when to reuse, refresh or log in.
	auth, err := ksef.NewClient(opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("build KSeF client: %w", err)
	}
	c, err := ksef.NewClient(append(opts, ksef.WithAccessToken(p.store.TokenSource(nip, auth)))...)
	if err != nil {
		return nil, nil, fmt.Errorf("build KSeF client: %w", err)
	}
	p.clients[nip] = c
	return c, creds, nil
}
