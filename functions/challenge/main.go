// Command challenge is the Lambda function that makes sure a valid KSeF access token is stored
// for a NIP before an invoice is sent: it reuses or refreshes the stored tokens, redeems a login
// that finished, or starts a login (KSeF token or XAdES signature) whose status the state machine
// polls.
package main

import (
	"context"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

func main() {
	env := lambdaenv.Setup(lambdaenv.LoadConfig)
	h := &handler{
		store: env.Secrets,
		clients: func(ctx context.Context, nip string) (authClient, *secrets.Credentials, error) {
			return env.KSeF.Client(ctx, nip)
		},
		now: time.Now,
		log: env.Log,
	}
	lambda.Start(h.Handle)
}
