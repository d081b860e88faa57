// Command challenge is the Lambda function that makes sure a valid KSeF access token is stored
// for a NIP before an invoice is sent: it reuses or refreshes the stored tokens, redeems a login
// that finished, or starts a login (KSeF token or XAdES signature) whose status the state machine
// polls.
package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
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
		store: env.Secrets,
		clients: func(ctx context.Context, nip string) (authClient, *secrets.Credentials, error) {
			return env.KSeF.Client(ctx, nip)
		},
		now: time.Now,
		log: log,
	}
	lambda.Start(h.Handle)
}
