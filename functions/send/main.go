// Command send is the Lambda function that reads one invoice version from S3, inspects it, and
// sends it encrypted in the NIP's online KSeF session.
package main

import (
	"context"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
)

func main() {
	env := lambdaenv.Setup(lambdaenv.LoadConfig)
	cfg, log := env.Config, env.Log
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
