// Package e2e holds the end-to-end tests of the serverless pipeline: the real challenge, send and
// poll functions under aws-lambda-rie, the real statemachine.asl.json under
// aws-local-stepfunctions, S3 and Secrets Manager in moto, and KSeF as the local emulator, all
// started by internal/localrun. The package has no code of its own; its tests are the product.
//
// # Running
//
//	make build-local tools npm
//	KSEF_LOCAL_BIN=$PWD/bin go test ./e2e/
//
// Without KSEF_LOCAL_BIN the tests build the functions and the emulator into a temporary
// directory first. They skip with -short, and skip when a tool of the local stack (Node 22 from
// local/, aws-lambda-rie, moto_server) is missing, unless CI is set, in which case they fail.
// Each test starts its own stack (fresh emulator, moto, functions), with short emulator delays
// and short Wait and Retry intervals; the durations the definition asked for are still checked.
//
// # What is checked
//
// Every scenario asserts the execution's status, the exact path through the definition's
// states (as a pattern allowing the polling loops to repeat), the objects written under
// results/ (the result JSON and its fields; the UPO, validated against the official UPO v4-3
// schema and confirming the KSeF number; or the error report with KSeF's code and details),
// that the original invoice is still the single, unchanged version uploaded, and the relevant
// counters of localrun.Metrics and of the emulator's request log.
//
// Scenarios: the happy path with KSeF-token and XAdES login; rejection by KSeF (injected, and
// an invoice invalid against the FA(3) schema that passes our own inspection); invalid input
// caught before sending; an expired access token (refreshed, no second login); a revoked
// authentication (the refresh refused, one new login); 429 with a long and a short
// Retry-After; transient 503s on the status GET and on the session open; a duplicate of the
// same content reconciled to the original KSeF number, and an invoice number reused for other
// content rejected; an online session that expired between two invoices; ten invoices at once.
//
// When each stack stops, every log file of its run directory (functions, emulator, moto, Node)
// and every object version in the bucket is searched for the secrets seen during the run: the
// KSeF token or XAdES private key, every JWT (and anything shaped like one) and every online
// session's AES key. A hit fails the test.
package e2e
