// Command api is the Lambda function behind the stack's HTTP API (an API Gateway HTTP API,
// payload format 2.0), through which web applications send invoices to KSeF and learn what
// became of them. The API is described in api/openapi.yaml; in short:
//
//	POST /invoices       Content-Type: application/xml (or text/xml), UTF-8
//	                     Idempotency-Key: <1-255 printable ASCII characters> (optional)
//	                     body: an FA(3) invoice of at most 1 000 000 bytes
//	                     -> 202 {"invoiceId", "status": "pending", "statusUrl"} + Location
//	GET  /invoices/{id}  -> 200 {"invoiceId", "status": "pending|accepted|rejected|failed",
//	                             "ksefNumber", "acquisitionDate", "reason", "upoUrl", ...}
//
// A POST checks the invoice with ksef.InspectInvoice against the stack's NIP, records it in the
// ledger as received (one DynamoDB transaction that also claims the idempotency key and the
// content hash), stores it as api/<invoiceId>.xml with a conditional write (If-None-Match: *, so
// that nothing ever overwrites it), and starts the state machine execution named <invoiceId>
// with the input {nip, invoice: {bucket, key}, invoiceId, source: "api"}. Every step is
// idempotent, so a retry resumes a request that stopped half-way: the ledger record comes first
// and is the arbiter between concurrent requests, the object is write-once, and StartExecution
// with the same name and input is a no-op (an ExecutionAlreadyExists is checked with
// DescribeExecution: the same input is the invoice's own execution, another would be a bug and
// is answered 500). While the invoice is still received, a retry repeats those two calls;
// once the pipeline has moved it on, a retry only reads the ledger.
//
// The invoice id is "api-" followed by 26 lowercase base32 characters: derived from the NIP and
// the Idempotency-Key when one is given (so a retry finds the first request's invoice), random
// otherwise. A repeated key with the same body answers the same 202; with another body, 409
// idempotency_key_reused. An invoice whose exact bytes were taken in before under another id
// (a retry without a key, a double click, the same file uploaded to the inbox) is answered with
// 409 duplicate_invoice naming the existing id, rather than with a 202: the request created
// nothing and started nothing, which a 2xx would claim, and a 202 carrying an id other than the
// one the key derives would break the key's contract; the 409 still gives the client all it
// needs (the id and its status URL). If that earlier invoice was taken in by this API but its
// request stopped before the execution started, the duplicate request finishes that work
// first, so no invoice is left pending for ever.
//
// Every error is a JSON object {"error": {"code", "message", ...}} with a stable code, also when
// a dependency is slow: the handler stops its calls a second before the Lambda deadline to
// answer 503 itself. Logs hold one line per request (route, status, invoice id, caller, error
// code, and for a 5xx the failure); never the invoice, the Idempotency-Key or the Authorization
// header.
//
// Configuration (environment): KSEF_NIP (the stack's NIP), INVOICE_BUCKET, LEDGER_TABLE,
// STATE_MACHINE_ARN, and S3_FORCE_PATH_STYLE=true for a local S3.
package main
