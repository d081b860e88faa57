package flow

import "time"

// S3Object points at one version of an object in S3.
type S3Object struct {
	Bucket    string `json:"bucket"`
	Key       string `json:"key"`
	VersionID string `json:"versionId,omitempty"`
}

// Input is what an execution of the state machine starts with. The entry points (S3 events, the
// HTTP API, scheduled runs) build it.
type Input struct {
	NIP       string   `json:"nip"`
	Invoice   S3Object `json:"invoice"`
	InvoiceID string   `json:"invoiceId,omitempty"`
	Source    string   `json:"source,omitempty"`
}

// ChallengeInput is the input of the challenge function.
type ChallengeInput struct {
	NIP     string `json:"nip"`
	Attempt int    `json:"attempt"` // polls of the current login so far, passed through
	// StatusCode is the last authentication status the state machine saw: 200 means the login
	// in progress finished and its tokens can be redeemed, or (after ReauthenticateOnce) that
	// KSeF refused the access token the NIP was ready with. Either way the function reads the
	// latest state rather than trusting what its execution environment remembers.
	StatusCode int `json:"statusCode"`
}

// AuthState is the output of the challenge function and of an authentication poll. Ready means
// a usable access token is stored for the NIP; otherwise an authentication is in progress under
// ReferenceNumber and the state machine waits WaitSeconds before polling it. ReferenceNumber and
// StatusCode are always present, even when empty or 0: the definition reads them (a Choice on
// statusCode, PollAuth's Parameters), and a path that is missing fails the execution with
// States.Runtime.
type AuthState struct {
	Ready           bool   `json:"ready"`
	ReferenceNumber string `json:"referenceNumber"`
	Method          string `json:"method,omitempty"`
	WaitSeconds     int    `json:"waitSeconds"`
	Attempt         int    `json:"attempt"`
	StatusCode      int    `json:"statusCode"`
}

// SendInput is the input of the send function.
type SendInput struct {
	NIP     string   `json:"nip"`
	Invoice S3Object `json:"invoice"`
	// ExecutionName is the execution's name ($$.Execution.Name), which the entry points set to
	// the invoice's id in the ledger.
	ExecutionName string `json:"executionName,omitempty"`
}

// Submission is the output of the send function: where the invoice went in KSeF.
type Submission struct {
	SessionReferenceNumber string    `json:"sessionReferenceNumber"`
	InvoiceReferenceNumber string    `json:"invoiceReferenceNumber"`
	InvoiceHash            string    `json:"invoiceHash"`
	InvoiceSize            int       `json:"invoiceSize"`
	InvoiceNumber          string    `json:"invoiceNumber"`
	IssueDate              string    `json:"issueDate"` // P_1, YYYY-MM-DD
	SentAt                 time.Time `json:"sentAt"`
	WaitSeconds            int       `json:"waitSeconds"`
}

// Poll kinds.
const (
	PollAuth    = "auth"    // one GET /auth/{ref}
	PollInvoice = "invoice" // one GET /sessions/{ref}/invoices/{ref}; on a final status, store the outcome
	PollFailure = "failure" // no KSeF call: record why the execution failed next to the invoice
)

// PollInput is the input of the poll function.
type PollInput struct {
	Kind            string      `json:"kind"`
	NIP             string      `json:"nip"`
	Invoice         S3Object    `json:"invoice"`
	ReferenceNumber string      `json:"referenceNumber,omitempty"` // authentication reference (kind auth)
	Submission      *Submission `json:"submission,omitempty"`      // kind invoice, and failure when known
	Attempt         int         `json:"attempt"`
	Error           *TaskError  `json:"error,omitempty"` // kind failure: the caught error
	// ExecutionName is the execution's name (kinds invoice and failure), the invoice's id in the
	// ledger when an entry point started the execution.
	ExecutionName string `json:"executionName,omitempty"`
}

// Outcomes of a poll.
const (
	OutcomePending   = "pending"   // keep polling after WaitSeconds
	OutcomeAccepted  = "accepted"  // KSeF number assigned, UPO and result stored
	OutcomeDuplicate = "duplicate" // 440 for this very invoice: reconciled to the original KSeF number, result stored
	OutcomeRecorded  = "recorded"  // kind failure: the failure report is stored
)

// PollResult is the output of the poll function.
type PollResult struct {
	Kind              string    `json:"kind"`
	Outcome           string    `json:"outcome"`
	StatusCode        int       `json:"statusCode"`
	StatusDescription string    `json:"statusDescription,omitempty"`
	WaitSeconds       int       `json:"waitSeconds"`
	Attempt           int       `json:"attempt"`
	KSeFNumber        string    `json:"ksefNumber,omitempty"`
	AcquisitionDate   time.Time `json:"acquisitionDate,omitzero"`
	ResultKey         string    `json:"resultKey,omitempty"`
	UPOKey            string    `json:"upoKey,omitempty"`
}

// TaskError is what a Catch puts into the state (ResultPath "$.error"): the errorType name and
// the errorMessage of the failed task.
type TaskError struct {
	Error string `json:"Error"`
	Cause string `json:"Cause"`
}
