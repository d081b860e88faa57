package flow

// The batch state machine (batch.asl.json): a scheduled run authenticates as the pipeline does,
// then the batch function collects the invoices waiting under the batch prefix and sends them in
// KSeF batch sessions ("send"), and polls each session it opened until every invoice's outcome
// is stored ("poll"). A run that fails after taking invoices in gives them up ("release").
// Invoice bodies and the session's key never travel in the state: only session reference
// numbers and the S3 keys of the manifests that map each session's files to their objects.

// BatchInput is the execution input of the batch state machine (the schedule's input).
type BatchInput struct {
	NIP string `json:"nip"`
}

// Actions of the batch function.
const (
	BatchSend    = "send"    // collect waiting invoices and send them in batch sessions
	BatchPoll    = "poll"    // one session status call; a final session's invoices, one page
	BatchRelease = "release" // after a failure: give up the invoices taken in but not sent
)

// BatchRequest is the input of the batch function.
type BatchRequest struct {
	Action string `json:"action"`
	NIP    string `json:"nip"`
	// ExecutionName is the run's execution name ($$.Execution.Name): the ledger records it as
	// the owner of the invoices the run takes in.
	ExecutionName string `json:"executionName"`

	Round int `json:"round"` // send: rounds of this run so far
	// After is the key after which the send action goes on: the last key the previous round
	// got to ("" for the first round). It lets a run of many rounds read each key once.
	After string `json:"after"`

	Session *BatchSession `json:"session,omitempty"` // poll
	Attempt int           `json:"attempt"`           // poll: calls for this session so far
	// Cursor is where the next page of the session's invoices starts (KSeF's continuation
	// token; "" for the first page). It names no credential.
	Cursor string `json:"cursor"`
	// Offset is how many of the manifest's invoices are recorded after a failure of the whole
	// session.
	Offset int `json:"offset"`

	Error *TaskError `json:"error,omitempty"` // release: why the run failed
}

// BatchSession is a batch session opened by a run, or found by one (a session of a run that
// ended before its invoices' outcomes were stored).
type BatchSession struct {
	SessionReferenceNumber string `json:"sessionReferenceNumber"`
	// ManifestKey is the S3 key of the session's manifest: for each file of the archive, the
	// invoice's object, ledger id and what was sent.
	ManifestKey  string `json:"manifestKey"`
	InvoiceCount int    `json:"invoiceCount"`
}

// BatchSendResult is the output of the send and release actions. Sessions is never null.
type BatchSendResult struct {
	Sessions []BatchSession `json:"sessions"`
	// More means invoices are still waiting: the invocation stopped at its limits.
	More bool `json:"more"`
	// After is the last key this invocation got to; the next round goes on after it.
	After      string `json:"after"`
	Sent       int    `json:"sent"`       // invoices sent in the sessions opened by this invocation
	Invalid    int    `json:"invalid"`    // refused before sending, with a report
	Duplicates int    `json:"duplicates"` // the same content was taken in before, with a notice
	Abandoned  int    `json:"abandoned"`  // given up (failed, with a report): release, or a run that ended without sending them
	Skipped    int    `json:"skipped"`    // already taken care of (by this run or another)
}

// Outcomes of a batch poll.
const (
	BatchPending = "pending" // KSeF is still processing: poll again after WaitSeconds
	BatchMore    = "more"    // a page of outcomes is stored; poll again at once for the next
	BatchDone    = "done"    // every invoice's outcome is stored
)

// BatchPollResult is the output of the poll action. Every field the definition reads is always
// present.
type BatchPollResult struct {
	Outcome           string `json:"outcome"`
	StatusCode        int    `json:"statusCode"` // the session's status code
	StatusDescription string `json:"statusDescription"`
	WaitSeconds       int    `json:"waitSeconds"`
	Attempt           int    `json:"attempt"`
	Cursor            string `json:"cursor"`
	Offset            int    `json:"offset"`
	// What this invocation stored.
	Accepted int `json:"accepted"`
	Rejected int `json:"rejected"`
	Failed   int `json:"failed"`
}
