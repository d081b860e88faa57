package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sfn"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// config is the function's configuration, read from environment variables set by template.yaml.
type config struct {
	NIP          string // KSEF_NIP: the NIP the stack sends for, every invoice's seller
	Bucket       string // INVOICE_BUCKET: where invoices are stored, under api/
	LedgerTable  string // LEDGER_TABLE: the invoice ledger (DynamoDB)
	StateMachine string // STATE_MACHINE_ARN: the invoice state machine
	S3PathStyle  bool   // S3_FORCE_PATH_STYLE: path-style S3 addressing (local S3)
}

// loadConfig reads the configuration with getenv (os.Getenv in main).
func loadConfig(getenv func(string) string) (config, error) {
	c := config{
		NIP:          getenv("KSEF_NIP"),
		Bucket:       getenv("INVOICE_BUCKET"),
		LedgerTable:  getenv("LEDGER_TABLE"),
		StateMachine: getenv("STATE_MACHINE_ARN"),
		S3PathStyle:  getenv("S3_FORCE_PATH_STYLE") == "true",
	}
	var problems []string
	if !ksef.ValidNIP(c.NIP) {
		problems = append(problems, fmt.Sprintf("KSEF_NIP %q is not a NIP", c.NIP))
	}
	for _, v := range []struct{ name, value string }{
		{"INVOICE_BUCKET", c.Bucket}, {"LEDGER_TABLE", c.LedgerTable}, {"STATE_MACHINE_ARN", c.StateMachine},
	} {
		if v.value == "" {
			problems = append(problems, v.name+" is not set")
		}
	}
	if len(problems) > 0 {
		return config{}, fmt.Errorf("invalid configuration: %s", strings.Join(problems, "; "))
	}
	return c, nil
}

func main() {
	log := lambdaenv.NewLogger()
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Error("bad configuration", slog.String("error", err.Error()))
		os.Exit(1)
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Error("cannot start", slog.String("error", fmt.Errorf("load AWS configuration: %w", err).Error()))
		os.Exit(1)
	}
	h := newHandler(cfg, awsCfg, log)
	lambda.Start(h.Handle)
}

// newHandler builds the handler over the AWS SDK clients of awsCfg.
func newHandler(cfg config, awsCfg aws.Config, log *slog.Logger) *handler {
	s3c := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.S3PathStyle
		// S3 answers 409 ConditionalRequestConflict to a conditional write racing another one
		// for the key; retried, it gets 412 (the other one won) or succeeds.
		o.Retryer = retry.AddWithErrorCodes(o.Retryer, "ConditionalRequestConflict")
	})
	return &handler{
		nip:          cfg.NIP,
		bucket:       cfg.Bucket,
		stateMachine: cfg.StateMachine,
		ledger:       ledger.New(dynamodb.NewFromConfig(awsCfg), cfg.LedgerTable),
		objects:      s3c,
		presign:      s3.NewPresignClient(s3c),
		executions:   sfn.NewFromConfig(awsCfg),
		now:          time.Now,
		log:          log,
	}
}
