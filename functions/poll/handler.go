package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// objectPutter writes results to S3.
type objectPutter interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
}

// store is the part of the secrets store the handler uses.
type store interface {
	AccessToken(ctx context.Context, nip string, r secrets.Refresher) (ksef.Secret, error)
	DropAccessToken(ctx context.Context, nip string) error
	LatestState(ctx context.Context, nip string) (*secrets.State, error)
	Update(ctx context.Context, nip string, fn func(*secrets.State) error) (*secrets.State, error)
}

// statusClient is the part of the KSeF client the handler uses.
type statusClient interface {
	RefreshAccessToken(ctx context.Context, refreshToken ksef.Secret) (*ksef.Token, error)
	AuthStatus(ctx context.Context, referenceNumber string, authToken ksef.Secret) (*ksef.AuthStatus, error)
	InvoiceStatus(ctx context.Context, sessionRef, invoiceRef string) (*ksef.InvoiceStatus, error)
	InvoiceUPOByKSeFNumber(ctx context.Context, sessionRef, ksefNumber string) (*ksef.Document, error)
	Download(ctx context.Context, url string) (*ksef.Document, error)
	QRBaseURL() string
}

type clientFor func(ctx context.Context, nip string) (statusClient, error)

type handler struct {
	objects      objectPutter
	store        store
	clients      clientFor
	ledger       ledgerWriter   // nil: no ledger (LEDGER_TABLE unset)
	events       eventPublisher // nil: no events (EVENT_BUS_NAME unset)
	bucket       string
	resultPrefix string
	now          func() time.Time
	log          *slog.Logger
}

// Handle makes one KSeF status call (an authentication or an invoice) and says what the state
// machine should do next, or records the reason an execution failed. Still processing is a
// result (with a suggested wait), not an error.
func (h *handler) Handle(ctx context.Context, in flow.PollInput) (any, error) {
	var (
		out any
		err error
	)
	switch in.Kind {
	case flow.PollAuth:
		out, err = h.pollAuth(ctx, in)
	case flow.PollInvoice:
		out, err = h.pollInvoice(ctx, in)
	case flow.PollFailure:
		out, err = h.recordFailure(ctx, in)
	default:
		err = &flow.BadInputError{Reason: flow.Reason{Stage: "poll", Message: fmt.Sprintf("unknown poll kind %q", in.Kind)}}
	}
	if err != nil {
		err = flow.Classify("poll", err)
		h.log.ErrorContext(ctx, "poll failed", slog.String("kind", in.Kind), slog.String("nip", in.NIP),
			slog.String("key", in.Invoice.Key), slog.String("error", err.Error()))
		return nil, err
	}
	return out, nil
}

// pollAuth checks the NIP's login in progress, which it reads from the state secret (the
// authentication token never travels in the execution's state).
func (h *handler) pollAuth(ctx context.Context, in flow.PollInput) (flow.AuthState, error) {
	next := flow.AuthState{Attempt: in.Attempt + 1, WaitSeconds: 1}
	client, err := h.clients(ctx, in.NIP)
	if err != nil {
		return next, flow.AuthFailure("poll", "load credentials", err)
	}
	// The state first: this environment's memory may hold an access token that KSeF refused and
	// another execution dropped (which is why a login is running). AccessToken answers from it.
	st, err := h.store.LatestState(ctx, in.NIP)
	if err != nil {
		return next, fmt.Errorf("read session state: %w", err)
	}
	if _, err := h.store.AccessToken(ctx, in.NIP, client); err == nil {
		next.Ready, next.StatusCode = true, 200 // another execution finished the login
		return next, nil
	}
	p := st.PendingAuth
	switch {
	case p == nil:
		next.StatusCode = 0 // nothing in progress: the challenge step starts a login
		return next, nil
	case p.ReferenceNumber == "":
		next.StatusCode = 100 // being started by another execution
		return next, nil
	}
	next.ReferenceNumber, next.Method = p.ReferenceNumber, string(p.Method)
	status, err := client.AuthStatus(ctx, p.ReferenceNumber, p.AuthenticationToken.Token)
	if errors.Is(err, ksef.ErrUnauthorized) || errors.Is(err, ksef.ErrGone) {
		// The authentication token expired before the login finished: start over.
		h.dropLogin(ctx, in.NIP, p.ReferenceNumber)
		next.StatusCode = 0
		return next, nil
	}
	if err != nil {
		return next, fmt.Errorf("authentication status: %w", err)
	}
	next.StatusCode = status.Status.Code
	switch {
	case status.Status.Code < 200:
		return next, nil
	case status.Status.Code == 200:
		h.log.InfoContext(ctx, "KSeF authentication succeeded", slog.String("nip", in.NIP), slog.String("referenceNumber", p.ReferenceNumber))
		return next, nil
	}
	h.dropLogin(ctx, in.NIP, p.ReferenceNumber)
	return next, &flow.AuthFailedError{Reason: flow.Reason{
		Stage:   "auth",
		Message: "KSeF authentication failed: " + status.Status.Description,
		Code:    status.Status.Code,
		Details: status.Status.Details,
	}}
}

// dropLogin forgets a login that failed or expired, so that the next challenge starts afresh.
func (h *handler) dropLogin(ctx context.Context, nip, ref string) {
	_, err := h.store.Update(ctx, nip, func(st *secrets.State) error {
		if st.PendingAuth == nil || st.PendingAuth.ReferenceNumber != ref {
			return secrets.ErrNoChange
		}
		st.PendingAuth = nil
		return nil
	})
	if err != nil {
		h.log.WarnContext(ctx, "could not drop finished login", slog.String("nip", nip), slog.String("error", err.Error()))
	}
}

// pollInvoice checks one invoice. On success it stores the UPO and then the result (so a result
// always has its UPO); on a duplicate confirmed to be this invoice it stores the original's UPO
// and a result pointing at the original KSeF number.
func (h *handler) pollInvoice(ctx context.Context, in flow.PollInput) (flow.PollResult, error) {
	sub := in.Submission
	out := flow.PollResult{Kind: flow.PollInvoice, Outcome: flow.OutcomePending, Attempt: in.Attempt + 1, WaitSeconds: invoiceWait(in.Attempt + 1)}
	if sub == nil || sub.SessionReferenceNumber == "" || sub.InvoiceReferenceNumber == "" {
		return out, &flow.BadInputError{Reason: flow.Reason{Stage: "poll", Message: "invoice poll needs the submission's session and invoice reference numbers"}}
	}
	client, err := h.clients(ctx, in.NIP)
	if err != nil {
		return out, flow.AuthFailure("poll", "load credentials", err)
	}
	st, err := client.InvoiceStatus(ctx, sub.SessionReferenceNumber, sub.InvoiceReferenceNumber)
	if errors.Is(err, ksef.ErrUnauthorized) {
		return out, h.refused(ctx, in.NIP, err)
	}
	if err != nil {
		return out, fmt.Errorf("invoice status: %w", err)
	}
	out.StatusCode, out.StatusDescription = st.Status.Code, st.Status.Description
	switch code := st.Status.Code; {
	case code < 200:
		return out, nil
	case code == 200:
		return h.accepted(ctx, in, client, st, out)
	case code == 440:
		return h.duplicate(ctx, in, client, st, out)
	}
	return out, &flow.RejectedError{Reason: flow.Reason{
		Stage:   "ksef",
		Message: "KSeF rejected the invoice: " + st.Status.Description,
		Code:    st.Status.Code,
		Details: st.Status.Details,
	}}
}

func (h *handler) accepted(ctx context.Context, in flow.PollInput, client statusClient, st *ksef.InvoiceStatus, out flow.PollResult) (flow.PollResult, error) {
	upo, err := results.FetchUPO(ctx, client, in.Submission.SessionReferenceNumber, st.KSeFNumber, st.UPODownloadURL, h.log)
	if results.UPONotReady(err) {
		out.WaitSeconds = 2 // accepted, the UPO is being generated
		return out, nil
	}
	if errors.Is(err, ksef.ErrUnauthorized) {
		return out, h.refused(ctx, in.NIP, err)
	}
	if err != nil {
		return out, fmt.Errorf("download UPO: %w", err)
	}
	docs := h.documents()
	upoKey := docs.Key(in.Invoice, results.UPOSuffix)
	if err := docs.PutXML(ctx, upoKey, upo.Content); err != nil {
		return out, err
	}
	res := results.NewResult(results.StatusAccepted, in.NIP, in.Invoice, in.Submission, st, h.now())
	res.UPO = &results.UPO{Key: upoKey, Hash: upo.Hash}
	res.QRCodeURL = results.VerificationURL(client.QRBaseURL(), in.NIP, in.Submission)
	resultKey := docs.Key(in.Invoice, results.ResultSuffix)
	if err := docs.PutJSON(ctx, resultKey, res); err != nil {
		return out, err
	}
	ch := change(in, ledger.StatusAccepted)
	ch.KSeFNumber, ch.AcquisitionDate, ch.ResultKey, ch.UPOKey = st.KSeFNumber, st.AcquisitionDate, resultKey, upoKey
	if err := h.record(ctx, in, ch); err != nil {
		return out, err
	}
	h.log.InfoContext(ctx, "invoice accepted", slog.String("nip", in.NIP), slog.String("key", in.Invoice.Key),
		slog.String("ksefNumber", st.KSeFNumber), slog.String("upoKey", upoKey))
	out.Outcome, out.KSeFNumber, out.AcquisitionDate, out.ResultKey, out.UPOKey = flow.OutcomeAccepted, st.KSeFNumber, st.AcquisitionDate, resultKey, upoKey
	out.WaitSeconds = 0
	return out, nil
}

// refused handles KSeF refusing the access token of a status or UPO call: KSeF can end a token
// before its validUntil (its authentication revoked, or expired by KSeF's clock first), while
// this execution environment would keep using it from memory. The token is dropped (here and in
// the state secret, unless already replaced) and the state machine retries the poll, which then
// gets a refreshed token. Going back to authentication is not an option for a poll: that path
// sends the invoice again.
func (h *handler) refused(ctx context.Context, nip string, err error) error {
	if derr := h.store.DropAccessToken(ctx, nip); derr != nil {
		h.log.WarnContext(ctx, "could not drop refused access token", slog.String("nip", nip), slog.String("error", derr.Error()))
	}
	return &flow.RetryableError{Reason: flow.Reason{
		Stage:   "poll",
		Message: "KSeF refused the access token; polling again with a renewed one",
		Code:    http.StatusUnauthorized,
	}, Err: err}
}

// duplicate handles a 440: KSeF already holds an invoice with this seller, type and number,
// under the KSeF number in the status extensions. It is reconciled (the original's KSeF number
// and UPO stored as this invoice's result) only when the original's UPO lists the original with
// this invoice's hash; an invoice number reused for other content, or a duplicate that cannot be
// checked, is a RejectedError (results.ConfirmDuplicate).
func (h *handler) duplicate(ctx context.Context, in flow.PollInput, client statusClient, st *ksef.InvoiceStatus, out flow.PollResult) (flow.PollResult, error) {
	orig, err := results.ConfirmDuplicate(ctx, client, st, in.Submission.InvoiceHash)
	switch {
	case results.UPONotReady(err):
		out.WaitSeconds = 2 // the original was accepted moments ago (a send repeated); its UPO is being generated
		return out, nil
	case errors.Is(err, ksef.ErrUnauthorized):
		return out, h.refused(ctx, in.NIP, err)
	case err != nil:
		return out, err
	}
	docs := h.documents()
	upoKey := docs.Key(in.Invoice, results.UPOSuffix)
	if err := docs.PutXML(ctx, upoKey, orig.UPO.Content); err != nil {
		return out, err
	}
	res := results.NewResult(results.StatusDuplicate, in.NIP, in.Invoice, in.Submission, st, h.now())
	res.KSeFNumber, res.OriginalSessionReferenceNumber = orig.KSeFNumber, orig.SessionReferenceNumber
	res.UPO = &results.UPO{Key: upoKey, Hash: orig.UPO.Hash}
	res.QRCodeURL = results.VerificationURL(client.QRBaseURL(), in.NIP, in.Submission)
	resultKey := docs.Key(in.Invoice, results.ResultSuffix)
	if err := docs.PutJSON(ctx, resultKey, res); err != nil {
		return out, err
	}
	ch := change(in, ledger.StatusAccepted)
	ch.KSeFNumber, ch.Reconciled, ch.ResultKey, ch.UPOKey = orig.KSeFNumber, true, resultKey, upoKey
	if err := h.record(ctx, in, ch); err != nil {
		return out, err
	}
	h.log.InfoContext(ctx, "duplicate invoice reconciled", slog.String("nip", in.NIP), slog.String("key", in.Invoice.Key),
		slog.String("originalKsefNumber", orig.KSeFNumber))
	out.Outcome, out.KSeFNumber, out.ResultKey, out.UPOKey, out.WaitSeconds = flow.OutcomeDuplicate, orig.KSeFNumber, resultKey, upoKey, 0
	return out, nil
}

// recordFailure stores why an execution failed next to the invoice: KSeF's code and details for
// a rejection, our validation error for bad input, the error otherwise.
func (h *handler) recordFailure(ctx context.Context, in flow.PollInput) (flow.PollResult, error) {
	out := flow.PollResult{Kind: flow.PollFailure, Outcome: flow.OutcomeRecorded}
	if in.Invoice.Key == "" || in.Invoice.Bucket != h.bucket {
		return out, &flow.BadInputError{Reason: flow.Reason{Stage: "poll", Message: "failure record needs the invoice's object in the invoice bucket"}}
	}
	var taskErr flow.TaskError
	if in.Error != nil {
		taskErr = *in.Error
	}
	status := "failed"
	switch taskErr.Error {
	case "RejectedError":
		status = "rejected"
	case "BadInputError":
		status = "invalid"
	}
	rep := results.Report{
		Status:     status,
		Error:      taskErr.Error,
		Reason:     flow.ParseReason(taskErr.Cause),
		NIP:        in.NIP,
		Invoice:    in.Invoice,
		RecordedAt: h.now().UTC(),
	}
	if s := in.Submission; s != nil && s.InvoiceReferenceNumber != "" {
		rep.Submission = s
	}
	docs := h.documents()
	key := docs.Key(in.Invoice, results.ErrorSuffix)
	if err := docs.PutJSON(ctx, key, rep); err != nil {
		return out, err
	}
	ch := change(in, ledger.Status(status))
	ch.Reason, ch.ResultKey = ledger.ReasonFrom(rep.Reason), key
	if err := h.record(ctx, in, ch); err != nil {
		return out, err
	}
	h.log.InfoContext(ctx, "failure recorded", slog.String("nip", in.NIP), slog.String("key", in.Invoice.Key),
		slog.String("status", status), slog.String("error", taskErr.Error), slog.String("reportKey", key))
	out.ResultKey = key
	return out, nil
}

// documents writes the documents stored next to invoices (internal/results): results live
// under their own prefix so that writing them never starts another execution.
func (h *handler) documents() *results.Store {
	return results.NewStore(h.objects, h.bucket, h.resultPrefix)
}

// invoiceWait is the wait in seconds before the next invoice status call, attempt being the
// number of calls made: quick at first (KSeF usually answers within seconds), then slower and
// slower, so that an invoice KSeF takes hours over is still followed (the state machine allows
// 600 calls, some 9 hours) without spending the execution's event history or KSeF's
// invoiceStatus limit (1200 calls an hour per context) on it.
//
//	after call        1–2   3–5   6–20   21–40    41–60   61 on
//	wait              1 s   2 s    5 s    15 s     30 s    60 s
//	waited in total   2 s   8 s   83 s  6.4 min 16.4 min  + 1 min a call
func invoiceWait(attempt int) int {
	switch {
	case attempt <= 2:
		return 1
	case attempt <= 5:
		return 2
	case attempt <= 20:
		return 5
	case attempt <= 40:
		return 15
	case attempt <= 60:
		return 30
	}
	return 60
}
