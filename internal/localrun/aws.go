package localrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dbtypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Region is the AWS region everything runs in locally.
const Region = "eu-central-1"

// Dummy credentials for moto; they are not secrets.
const (
	dummyAccessKeyID     = "local"
	dummySecretAccessKey = "local"
)

// awsCounter is a reverse proxy in front of moto that counts the AWS API calls passing through
// it. The functions talk to moto through it, the harness talks to moto directly, so the counts
// are the pipeline's own calls. It also keeps the events the functions put on EventBridge.
type awsCounter struct {
	proxy *httputil.ReverseProxy
	// serial passes one request at a time to moto, which does not apply a request atomically
	// (two concurrent conditional writes can both pass their condition), while DynamoDB, S3
	// and Secrets Manager do; the pipeline's compare-and-swap and ledger rely on that.
	serial sync.Mutex
	mu     sync.Mutex
	calls  map[string]int
	events []PublishedEvent
}

// PublishedEvent is an event a function put on EventBridge (PutEvents), as it sent it.
type PublishedEvent struct {
	EventBus   string          `json:"eventBus"`
	Source     string          `json:"source"`
	DetailType string          `json:"detailType"`
	Detail     json.RawMessage `json:"detail"`
}

func newAWSCounter(target *url.URL) *awsCounter {
	c := &awsCounter{calls: make(map[string]int)}
	c.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(target)
			r.Out.Host = r.In.Host // moto's S3 routing looks at the Host header
		},
	}
	return c
}

func (c *awsCounter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	op := awsOperation(r)
	var events []PublishedEvent
	if op == "EventBridge.PutEvents" {
		body, err := io.ReadAll(io.LimitReader(r.Body, maxPayload))
		if err != nil {
			http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		events = putEvents(body)
	}
	c.mu.Lock()
	c.calls[op]++
	c.events = append(c.events, events...)
	c.mu.Unlock()
	c.serial.Lock()
	defer c.serial.Unlock()
	c.proxy.ServeHTTP(w, r)
}

// putEvents decodes the entries of a PutEvents request (JSON 1.1 protocol).
func putEvents(body []byte) []PublishedEvent {
	var in struct {
		Entries []struct {
			EventBusName string
			Source       string
			DetailType   string
			Detail       string
		}
	}
	if json.Unmarshal(body, &in) != nil {
		return nil
	}
	out := make([]PublishedEvent, 0, len(in.Entries))
	for _, e := range in.Entries {
		out = append(out, PublishedEvent{EventBus: e.EventBusName, Source: e.Source, DetailType: e.DetailType, Detail: json.RawMessage(e.Detail)})
	}
	return out
}

func (c *awsCounter) published() []PublishedEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]PublishedEvent(nil), c.events...)
}

func (c *awsCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.calls))
	for k, v := range c.calls {
		out[k] = v
	}
	return out
}

// awsOperation names the AWS API call of a request: "SecretsManager.PutSecretValue" from the
// JSON protocol's X-Amz-Target header, or "S3.<method> object|bucket" for S3's REST protocol.
func awsOperation(r *http.Request) string {
	if t := r.Header.Get("X-Amz-Target"); t != "" {
		svc, op, ok := strings.Cut(t, ".")
		if !ok {
			return t
		}
		switch {
		case svc == "secretsmanager":
			svc = "SecretsManager"
		case strings.HasPrefix(svc, "DynamoDB_"):
			svc = "DynamoDB"
		case svc == "AWSEvents":
			svc = "EventBridge"
		case svc == "AWSStepFunctions":
			svc = "StepFunctions"
		}
		return svc + "." + op
	}
	kind := "bucket"
	if p := strings.Trim(r.URL.Path, "/"); strings.Contains(p, "/") {
		kind = "object"
	}
	return "S3." + r.Method + " " + kind
}

// startMoto starts moto_server on a free port and waits until it answers, on fresh ports again
// if it exits first.
func startMoto(ctx context.Context, bin, logDir string, timeout time.Duration) (*process, string, error) {
	var err error
	for attempt := 1; attempt <= portAttempts; attempt++ {
		var p *process
		var endpoint string
		p, endpoint, err = startMotoOnce(ctx, bin, logDir, timeout)
		if err == nil || ctx.Err() != nil {
			return p, endpoint, err
		}
	}
	return nil, "", err
}

func startMotoOnce(ctx context.Context, bin, logDir string, timeout time.Duration) (*process, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := startProcess(processSpec{
		name:    "moto_server",
		argv:    []string{bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port)},
		env:     hostEnv(),
		logPath: logDir + "/moto.log",
	})
	if err != nil {
		return nil, "", err
	}
	endpoint := "http://" + hostPort(port)
	err = waitReady(ctx, p, timeout, 50*time.Millisecond, func(ctx context.Context) error {
		return probeHTTP(ctx, endpoint+"/moto-api/data.json")
	})
	if err != nil {
		p.stop(time.Second)
		return nil, "", err
	}
	return p, endpoint, nil
}

// probeHTTP succeeds once url answers with a status below 500.
func probeHTTP(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("%s: HTTP %d: %w", url, resp.StatusCode, errNotReady)
	}
	return nil
}

// awsConfig returns an SDK configuration for moto at endpoint: dummy static credentials, the
// local region, nothing read from the host (no profiles, no IMDS).
func awsConfig(endpoint string) aws.Config {
	return aws.Config{
		Region:       Region,
		Credentials:  credentials.NewStaticCredentialsProvider(dummyAccessKeyID, dummySecretAccessKey, ""),
		BaseEndpoint: aws.String(endpoint),
		HTTPClient:   &http.Client{Timeout: 30 * time.Second},
	}
}

func newS3(endpoint string) *s3.Client {
	return s3.NewFromConfig(awsConfig(endpoint), func(o *s3.Options) { o.UsePathStyle = true })
}

func newSecretsManager(endpoint string) *secretsmanager.Client {
	return secretsmanager.NewFromConfig(awsConfig(endpoint))
}

// createLedgerTable creates the invoice ledger as template.yaml's LedgerTable is shaped.
func createLedgerTable(ctx context.Context, c *dynamodb.Client, table string) error {
	_, err := c.CreateTable(ctx, &dynamodb.CreateTableInput{
		TableName:            aws.String(table),
		AttributeDefinitions: []dbtypes.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: dbtypes.ScalarAttributeTypeS}},
		KeySchema:            []dbtypes.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: dbtypes.KeyTypeHash}},
		BillingMode:          dbtypes.BillingModePayPerRequest,
	})
	if err != nil {
		return fmt.Errorf("create ledger table %s: %w", table, err)
	}
	return nil
}

// createEventBus creates the bus the functions publish their events to.
func createEventBus(ctx context.Context, c *eventbridge.Client, bus string) error {
	if _, err := c.CreateEventBus(ctx, &eventbridge.CreateEventBusInput{Name: aws.String(bus)}); err != nil {
		return fmt.Errorf("create event bus %s: %w", bus, err)
	}
	return nil
}

// createBucket creates a versioned bucket in the local region.
func createBucket(ctx context.Context, c *s3.Client, bucket string) error {
	_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{
		Bucket: aws.String(bucket),
		CreateBucketConfiguration: &s3types.CreateBucketConfiguration{
			LocationConstraint: s3types.BucketLocationConstraint(Region),
		},
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", bucket, err)
	}
	_, err = c.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{
		Bucket:                  aws.String(bucket),
		VersioningConfiguration: &s3types.VersioningConfiguration{Status: s3types.BucketVersioningStatusEnabled},
	})
	if err != nil {
		return fmt.Errorf("enable versioning of bucket %s: %w", bucket, err)
	}
	return nil
}

// getObject returns the object's bytes, or nil and no error if it does not exist.
func getObject(ctx context.Context, c *s3.Client, bucket, key string) ([]byte, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *s3types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, nil
		}
		return nil, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, out.Body); err != nil {
		return nil, fmt.Errorf("read s3://%s/%s: %w", bucket, key, err)
	}
	return buf.Bytes(), nil
}
