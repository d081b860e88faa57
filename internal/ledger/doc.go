// Package ledger records what happens to every invoice, in one DynamoDB table, and announces
// the outcome on EventBridge.
//
// # Items
//
// The table has a string partition key "pk" and three kinds of items:
//
//	INV#<invoiceId>                 the invoice: NIP, source, S3 object, invoice hash, status,
//	                                KSeF number, reference numbers, result/UPO keys, reason, ...
//	HASH#<nip>#<invoiceHash>        content claim -> invoiceId: the same bytes are taken in once
//	IDEM#<nip>#<sha256(key)>        API idempotency key -> invoiceId and request hash
//
// Create writes an invoice and its claims in one transaction, so that neither a second
// delivery of an S3 event, nor a repeated upload of the same bytes, nor a retried API request
// records (and sends) an invoice twice; a *ConflictError says which claim was taken and by whom.
// Transition moves an invoice forward with a conditional update: a final status is never
// replaced by one in progress, accepted is never replaced, and a retried step is a no-op.
//
// # Ids
//
// An invoice id is "<source>-" and 26 characters of lower-case base32. ObjectID derives it from
// an S3 object version and RequestID from an API idempotency key, so retries find the same id;
// the id is also the name of the invoice's Step Functions execution (IDFor recovers it from the
// execution's name).
//
// # Use
//
//	l := ledger.New(dynamodb.NewFromConfig(cfg), os.Getenv("LEDGER_TABLE"))
//	inv, err := l.Create(ctx, ledger.Invoice{ID: id, NIP: nip, Source: ledger.SourceS3,
//		Object: obj, InvoiceHash: hash, Status: ledger.StatusReceived}, nil)
//	var conflict *ledger.ConflictError
//	if errors.As(err, &conflict) { ... conflict.Kind, conflict.InvoiceID ... }
//
//	inv, changed, err := l.Transition(ctx, id, ledger.Change{Status: ledger.StatusAccepted,
//		KSeFNumber: n, AcquisitionDate: d, ResultKey: rk, UPOKey: uk})
//
//	p := ledger.NewPublisher(eventbridge.NewFromConfig(cfg), os.Getenv("EVENT_BUS_NAME"))
//	err = p.Publish(ctx, ledger.EventOf(inv, time.Now()))
package ledger
