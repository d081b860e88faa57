// Command batch is the Lambda function of the scheduled batch runs (batch.asl.json): an
// EventBridge Scheduler schedule starts a run for the stack's NIP, which authenticates as the
// pipeline does and then calls this function with one of three actions.
//
//   - send: collect the invoices waiting under BATCH_PREFIX (default batch/; the latest
//     version of each .xml object, never batch/manifests/), claim each in the ledger for this
//     run (its id is the object version's ledger.ObjectID, source batch; the ledger's
//     conditional writes let only one of two overlapping runs take an object version), inspect
//     it (an invalid one, or one in a folder named after another NIP than the stack's, gets a
//     report; a repeated upload of content taken in before a notice, unless it is a new version
//     of the original's key, whose result stays; none of them is sent), pack up to
//     BATCH_SESSION_INVOICES (10 000) of them into a ZIP archive cut into parts, each part
//     encrypted, open a batch session, store the session's manifest (which object each file
//     of the archive is) under batch/manifests/, record the invoices as submitted in the
//     session, upload the parts to exactly the URLs, with exactly the methods and headers,
//     KSeF returned, and close the session. One invocation takes in at most BATCH_MAX_INVOICES
//     invoices (and BATCH_MAX_BYTES bytes); "more" sends the state machine round again.
//   - poll: one session status call; once KSeF has processed the session, store the outcome of
//     one page (up to 1000) of its invoices per call, exactly as the poll function does for an
//     online invoice: results/<key>.upo.xml then results/<key>.result.json, or
//     results/<key>.error.json with KSeF's code and details; the ledger and an event.
//   - release: after the run failed, give up (failed, with a report) what it took in but did
//     not get processed, and poll the sessions it did close.
//
// A run that ends without finishing (aborted, timed out) is finished by a later run: its
// invoices still claimed after 6 hours (ClaimTimeout) are polled if their session was closed,
// else given up with a report. Nothing is lost and nothing is sent twice by this pipeline; an
// invoice given up is sent again by uploading it again (KSeF's duplicate check covers the rest).
package main
