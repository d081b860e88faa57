// Command ingest is the Lambda function behind the S3 entry point: an EventBridge rule sends it
// S3's "Object Created" events for the invoice bucket's inbox, and it records each new invoice
// in the ledger and starts its state machine execution, exactly once per object version and
// once per content.
package main

import (
	"errors"
	"time"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
)

func main() {
	env := lambdaenv.Setup(loadConfig)
	cfg := env.Config
	h := &handler{
		objects:         env.S3,
		ledger:          env.Ledger,
		executions:      env.StepFunctions,
		bucket:          cfg.Bucket,
		inboxPrefix:     cfg.InboxPrefix,
		resultPrefix:    cfg.ResultPrefix,
		nip:             cfg.NIP,
		stateMachineARN: cfg.StateMachineARN,
		now:             time.Now,
		log:             env.Log,
	}
	if env.Events != nil {
		h.events = env.Events
	}
	lambda.Start(h.Handle)
}

// loadConfig is lambdaenv.LoadConfig with the settings the ingest function cannot do without.
func loadConfig(getenv func(string) string) (lambdaenv.Config, error) {
	cfg, err := lambdaenv.LoadConfig(getenv)
	if err == nil && (cfg.LedgerTable == "" || cfg.StateMachineARN == "" || cfg.NIP == "") {
		err = errMissing
	}
	return cfg, err
}

// errMissing: the S3 entry point's guarantees (one execution per object version and per
// content) rest on the ledger, it needs the state machine to start, and the NIP it sends for.
var errMissing = errors.New("invalid configuration: the ingest function needs LEDGER_TABLE, STATE_MACHINE_ARN and KSEF_NIP")
