// Command ksef-local runs the serverless pipeline on this machine (no AWS, no Docker) with
// package internal/localrun: moto for S3 and Secrets Manager, the KSeF emulator, each Lambda
// function under aws-lambda-rie and the Step Functions definition under aws-local-stepfunctions.
//
// Usage:
//
//	ksef-local demo  [--invoice FILE] [--nip NIP] [--out DIR] [common flags]
//	ksef-local bench [--count N] [--concurrency C] [--instances K] [--invoice FILE] [--nip NIP]
//	                 [--auth-delay D] [--accept-delay D] [--processing-delay D] [--json] [common flags]
//
// demo sends one invoice (default: the official sample FA_3_Przyklad_1.xml, seller NIP
// 9999999999). On acceptance it prints the KSeF number and where the UPO is: its key in the local
// bucket and a copy under --out (default out/). On rejection it prints KSeF's code and details
// and exits with status 1.
//
// bench sends N distinct invoices for one NIP (copies of the sample that differ only in P_2, the
// invoice number) with the given concurrency and prints: invoices accepted, KSeF logins and
// sessions opened (counted from the emulator's request log), Secrets Manager writes (counted by
// a proxy in front of moto), Lambda invocations, state transitions per invoice, wall time and
// wall time beyond the emulator's configured delays. --json prints the report as JSON.
//
// Common flags: --auth token|xades (how the pipeline logs in to KSeF; xades uses a fresh
// self-signed company seal of the NIP), --root (module root; default: found from the working
// directory), --bin (where the functions are built, as <bin>/lambda/<name>/bootstrap, and the
// emulator, as <bin>/ksef-emulator; aws-lambda-rie is also looked for there; default <root>/bin,
// the layout of `make build-local`), --no-build (use what is in --bin), --run-dir (logs; default
// <root>/.local/runs/<time>), --wait-override (shorten every Wait state, e.g. 200ms; default:
// real waits), --emulator-config (a JSON config file for the emulator; bench writes its own),
// --timeout (give up after, default 15m), -v (debug progress).
//
// Needs: Go, moto_server, aws-lambda-rie (go install ...) and `npm ci` in local/ (Node 22 and
// aws-local-stepfunctions). Ctrl-C stops every process it started.
package main
