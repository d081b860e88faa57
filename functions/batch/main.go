package main

import (
	"context"
	"net/http"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
)

// uploadTimeout bounds each HTTP request of the function's KSeF client: a part upload of up to
// 20 MB (PartSize) on the slowest link it should survive.
const uploadTimeout = 5 * time.Minute

func main() {
	var cfg config // the batch settings besides env.Config
	env := lambdaenv.Setup(func(getenv func(string) string) (lambdaenv.Config, error) {
		var err error
		cfg, err = loadConfig(getenv)
		return cfg.Config, err
	})
	log := env.Log
	pool := lambdaenv.NewClientPool(cfg.Config, env.Secrets, log, &http.Client{Timeout: uploadTimeout})
	h := &handler{
		objects: env.S3,
		ledger:  env.Ledger,
		clients: func(ctx context.Context, nip string) (batchClient, error) {
			c, _, err := pool.Client(ctx, nip)
			return c, err
		},
		tokens:  env.Secrets,
		results: results.NewStore(env.S3, cfg.Bucket, cfg.ResultPrefix),
		cfg:     cfg,
		now:     time.Now,
		log:     log,
	}
	if env.Events != nil {
		h.events = env.Events
	}
	lambda.Start(h.Handle)
}
