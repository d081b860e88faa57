// Package localrun runs the whole serverless pipeline on one machine, without AWS and without
// Docker: the Step Functions definition (statemachine.asl.json) with aws-local-stepfunctions on
// Node 22, each Lambda function's bootstrap under aws-lambda-rie (the Lambda Runtime Interface
// Emulator), S3, Secrets Manager, the DynamoDB ledger table and the EventBridge bus in
// moto_server, and KSeF as the local emulator (cmd/ksef-emulator). It serves `ksef-local demo`,
// `ksef-local bench` and end-to-end tests.
//
// # Pieces
//
//   - local/run-execution.mjs runs executions with the aws-local-stepfunctions JS API. Its Task
//     states call Lambda through the AWS SDK, and report failures as AWS does: Error is the
//     function's errorType, Cause its error payload as a JSON string; see the script's header
//     for the other differences from the library that it corrects.
//   - Router implements the Lambda Invoke API in front of the aws-lambda-rie instances (one
//     invocation at a time per instance, X-Amz-Function-Error on function errors) and counts
//     invocations per function.
//   - A counting reverse proxy sits between the functions and moto (AWS_ENDPOINT_URL), so
//     Metrics reports the pipeline's own AWS calls (Secrets Manager, S3, DynamoDB, EventBridge),
//     and PublishedEvents the events the functions put on EventBridge.
//   - A local Step Functions API (AWS_ENDPOINT_URL_SFN: StartExecution, DescribeExecution) lets
//     the entry points start executions as on AWS: each runs under its name
//     ($$.Execution.Name), and a repeated start follows Step Functions' rules (same name and
//     input while running: the same execution; otherwise ExecutionAlreadyExists).
//   - The emulator's request log (one JSON line per request) gives the KSeF logins
//     (POST /auth/ksef-token, /auth/xades-signature) and sessions opened (POST /sessions/online).
//
// Every program runs in its own process group with Pdeathsig set, its output captured in
// RunDir/logs; Close stops the groups (TERM, then KILL), so nothing outlives the harness, not even
// after Ctrl-C or a failed test. Ports come from the OS; readiness is polled with bounded loops.
//
// # Use
//
//	st, err := localrun.Start(ctx, localrun.Options{
//		Functions: map[string]string{
//			localrun.FunctionChallenge: "bin/challenge/bootstrap",
//			localrun.FunctionSend:      "bin/send/bootstrap",
//			localrun.FunctionPoll:      "bin/poll/bootstrap",
//		},
//		Definition:  "statemachine.asl.json",
//		EmulatorBin: "bin/ksef-emulator",
//	})
//	if err != nil { ... }
//	defer st.Close()
//	res, err := st.SendInvoice(ctx, localrun.DefaultNIP, "FA_3_Przyklad_1.xml", xml)
//	// res.Accepted(), res.KSeFNumber(), res.UPO, res.Failure(), st.Metrics()
//
// SendInvoice starts the execution itself. The S3 entry point runs with the ingest function in
// Options.Functions (FunctionIngest): Ingest uploads to the inbox, delivers S3's "Object
// Created" EventBridge event (the documented shape, key URL-encoded as S3 encodes it) to the
// ingest function through the Lambda router, waits for the execution it started and reads back
// the results; UploadToInbox, DeliverEvent (for a second delivery of the same event) and
// WaitExecution are its steps, LedgerInvoice reads the ledger:
//
//	in, err := st.Ingest(ctx, "2026/02/invoice.xml", xml)
//	// in.Outcome.Action ("started", "duplicate-upload", ...), in.Outcome.InvoiceID, in.Result
//	inv, err := st.LedgerInvoice(ctx, in.Outcome.InvoiceID) // inv.Status, inv.KSeFNumber
//
// Batch runs need the batch function (FunctionBatch) and Options.BatchDefinition
// (batch.asl.json): UploadBatch puts invoices under batch/, RunBatch runs one execution of the
// batch definition for a NIP, as the schedule starts it, and reads back, for every invoice
// waiting under batch/, its ledger item and the documents stored next to it:
//
//	_, err := st.UploadBatch(ctx, "FA_3_Przyklad_1.xml", xml)
//	run, err := st.RunBatch(ctx, localrun.DefaultNIP)
//	// run.Execution.Status; per invoice: inv.Status(), inv.KSeFNumber(), inv.UPO, inv.Failure()
//
// BuildFunction and BuildCommand build the bootstraps and the emulator; FindRIE, FindMoto and
// FindNode locate the tools and fail with ErrMissingTool when one is not installed.
//
// # The functions' environment
//
// Each function gets exactly: AWS_REGION=eu-central-1, AWS_ENDPOINT_URL (moto, through the
// counting proxy), dummy AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, S3_FORCE_PATH_STYLE=true,
// KSEF_ENVIRONMENT=test, KSEF_BASE_URL (the emulator's /v2 base URL),
// KSEF_CREDENTIALS_SECRET=ksef/{nip}/credentials, KSEF_STATE_SECRET=ksef/{nip}/session,
// INVOICE_BUCKET, RESULT_PREFIX=results/, INBOX_PREFIX=inbox/, BATCH_PREFIX=batch/, KSEF_NIP (the first of
// Options.NIPs), LEDGER_TABLE (Options.LedgerTable, created in moto with the template's key
// schema), EVENT_BUS_NAME (Options.EventBus, created in moto), STATE_MACHINE_ARN and
// AWS_ENDPOINT_URL_SFN (the local Step Functions API), LOG_LEVEL=info,
// AWS_LAMBDA_LOG_FORMAT=JSON, AWS_LAMBDA_LOG_LEVEL=INFO, AWS_LAMBDA_FUNCTION_TIMEOUT,
// AWS_LAMBDA_FUNCTION_NAME, plus PATH, HOME and Options.FunctionEnv. The credentials secret of each NIP is created in moto as
// {"nip","environment":"test","baseUrl","authMethod":"token","ksefToken"} with a random token
// that the emulator is started with (--token NIP=TOKEN), or with Options.AuthMethod AuthXAdES as
// {..., "authMethod":"xades","certificatePem","privateKeyPem"} holding a fresh self-signed
// company-seal certificate of the NIP.
package localrun
