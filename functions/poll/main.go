// Command poll is the Lambda function that makes one KSeF status call per invocation (an
// authentication or an invoice) and tells the state machine what to do next; on acceptance it
// stores the UPO and a result JSON next to the invoice, and it records failure reports.
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
		clients: func(ctx context.Context, nip string) (statusClient, error) {
			c, _, err := env.KSeF.Client(ctx, nip)
			return c, err
		},
		bucket:       cfg.Bucket,
		resultPrefix: cfg.ResultPrefix,
		now:          time.Now,
		log:          log,
	}
	if env.Ledger != nil {
		h.ledger = env.Ledger
	}
	if env.Events != nil {
		h.events = env.Events
	}
	lambda.Start(h.Handle)
}
