package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
)

// uploadTimeout bounds each HTTP request of the function's KSeF client: a part upload of up to
// 20 MB (PartSize) on the slowest link it should survive.
const uploadTimeout = 5 * time.Minute

func main() {
	log := lambdaenv.NewLogger()
	cfg, err := loadConfig(os.Getenv)
	if err != nil {
		log.Error("bad configuration", slog.String("error", err.Error()))
		os.Exit(1)
	}
	env, err := lambdaenv.New(context.Background(), cfg.Config, log)
	if err != nil {
		log.Error("cannot start", slog.String("error", err.Error()))
		os.Exit(1)
	}
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
