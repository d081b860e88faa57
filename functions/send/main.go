// Command send is the Lambda function that reads one invoice version from S3, inspects it, and
// sends it encrypted in the NIP's online KSeF session.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
)

func main() {
	log := lambdaenv.NewLogger()
	cfg, err := lambdaenv.LoadConfig(os.Getenv)
	if err != nil {
		log.Error("bad configuration", slog.String("error", err.Error()))
		os.Exit(1)
	}
	env, err := lambdaenv.New(context.Background(), cfg, log)
	if err != nil {
		log.Error("cannot start", slog.String("error", err.Error()))
		os.Exit(1)
	}
	h := &handler{
		objects: env.S3,
		store:   env.Secrets,
		clients: func(ctx context.Context, nip string) (sessionClient, error) {
			c, _, err := env.KSeF.Client(ctx, nip)
			return c, err
		},
		bucket: cfg.Bucket,
		now:    time.Now,
		log:    log,
	}
	if env.Ledger != nil {
		h.ledger = env.Ledger
	}
	lambda.Start(h.Handle)
}
