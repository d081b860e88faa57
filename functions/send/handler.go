package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

const (
	// maxInvoiceBytes is the largest invoice KSeF accepts (3 MB with attachments; the
	// inspection applies the exact limit). Larger objects are refused before they are read.
	maxInvoiceBytes = 3_000_000
	// minSessionLeft is the validity an online session must still have to take another invoice;
	// an older one is replaced (and closed) so that no invoice is sent into a closing session.
	minSessionLeft = time.Hour
	// firstPollSeconds is the wait before the first invoice status call.
	firstPollSeconds = 1
)

// objectGetter reads invoices from S3.
type objectGetter interface {
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

// store is the part of the secrets store the handler uses.
type store interface {
	State(ctx context.Context, nip string) (*secrets.State, error)
	Update(ctx context.Context, nip string, fn func(*secrets.State) error) (*secrets.State, error)
	DropAccessToken(ctx context.Context, nip string) error
}

// sessionClient is the part of the KSeF client the handler uses. Its business calls take the
// access token from the secrets store.
type sessionClient interface {
	OpenOnlineSession(ctx context.Context, form ksef.FormCode) (*ksef.SessionHandle, error)
	SendInvoice(ctx context.Context, s *ksef.SessionHandle, invoice []byte, opts *ksef.SendOptions) (*ksef.SentInvoice, error)
	CloseOnlineSession(ctx context.Context, sessionRef string) error
}

type clientFor func(ctx context.Context, nip string) (sessionClient, error)

// ledgerWriter records the submission in the invoice ledger.
type ledgerWriter interface {
	Transition(ctx context.Context, id string, ch ledger.Change) (*ledger.Invoice, bool, error)
}

type handler struct {
	objects objectGetter
	store   store
	clients clientFor
	ledger  ledgerWriter // nil: no ledger (LEDGER_TABLE unset)
	bucket  string
	now     func() time.Time
	log     *slog.Logger
}

// Handle reads the invoice version named in the input, checks it as KSeF would (encoding, FA(3)
// namespace, seller NIP equal to the NIP, dates, size), and sends it encrypted in the NIP's
// shared online session, opening or replacing that session when needed.
func (h *handler) Handle(ctx context.Context, in flow.SendInput) (flow.Submission, error) {
	out, err := h.handle(ctx, in)
	if err != nil {
		err = flow.Classify("send", err)
		h.log.ErrorContext(ctx, "send failed", slog.String("nip", in.NIP), slog.String("key", in.Invoice.Key),
			slog.String("error", err.Error()))
		return flow.Submission{}, err
	}
	h.log.InfoContext(ctx, "invoice sent", slog.String("nip", in.NIP), slog.String("key", in.Invoice.Key),
		slog.String("sessionReferenceNumber", out.SessionReferenceNumber),
		slog.String("invoiceReferenceNumber", out.InvoiceReferenceNumber), slog.String("invoiceNumber", out.InvoiceNumber))
	h.recordSubmission(ctx, in, out)
	return out, nil
}

// recordSubmission marks the invoice submitted in the ledger, with its reference numbers. It is
// best effort: the invoice is in KSeF now, and failing here would make the state machine send it
// again; the poll step records the same facts with the outcome.
func (h *handler) recordSubmission(ctx context.Context, in flow.SendInput, out flow.Submission) {
	if h.ledger == nil {
		return
	}
	id := ledger.IDFor(in.ExecutionName, in.Invoice)
	inv, changed, err := h.ledger.Transition(ctx, id, ledger.Change{
		Status:                 ledger.StatusSubmitted,
		NIP:                    in.NIP,
		Object:                 in.Invoice,
		ExecutionName:          in.ExecutionName,
		InvoiceHash:            out.InvoiceHash,
		InvoiceNumber:          out.InvoiceNumber,
		SessionReferenceNumber: out.SessionReferenceNumber,
		InvoiceReferenceNumber: out.InvoiceReferenceNumber,
	})
	switch {
	case err != nil:
		h.log.WarnContext(ctx, "could not record the submission in the ledger", slog.String("invoiceId", id), slog.String("error", err.Error()))
	case !changed:
		h.log.WarnContext(ctx, "ledger keeps the invoice's status", slog.String("invoiceId", id), slog.String("status", string(inv.Status)))
	}
}

func (h *handler) handle(ctx context.Context, in flow.SendInput) (flow.Submission, error) {
	if !ksef.ValidNIP(in.NIP) {
		return flow.Submission{}, badInput(fmt.Sprintf("invalid NIP %q", in.NIP), nil)
	}
	if in.Invoice.Bucket != h.bucket || in.Invoice.Key == "" {
		return flow.Submission{}, badInput(fmt.Sprintf("invoice must be an object in bucket %q", h.bucket), nil)
	}
	body, err := h.read(ctx, in.Invoice)
	if err != nil {
		return flow.Submission{}, err
	}
	info, err := ksef.InspectInvoice(body, ksef.InspectOptions{ContextNIP: in.NIP, Now: h.now()})
	if err != nil {
		return flow.Submission{}, badInput("invoice rejected before sending: "+err.Error(), err)
	}
	if info.HasAttachment {
		return flow.Submission{}, badInput("invoice has attachments (Zalacznik), which KSeF accepts only in batch sessions", nil)
	}
	client, err := h.clients(ctx, in.NIP)
	if err != nil {
		return flow.Submission{}, flow.AuthFailure("send", "load credentials", err)
	}

	session, err := h.session(ctx, in.NIP, client, "")
	if err != nil {
		return flow.Submission{}, err
	}
	sent, err := client.SendInvoice(ctx, session, body, nil)
	if sessionGone(err) {
		// The session closed, expired or filled up under us: replace it and send once more.
		h.log.InfoContext(ctx, "online session no longer takes invoices; opening another",
			slog.String("nip", in.NIP), slog.String("sessionReferenceNumber", session.ReferenceNumber), slog.String("error", err.Error()))
		if session, err = h.session(ctx, in.NIP, client, session.ReferenceNumber); err != nil {
			return flow.Submission{}, err
		}
		sent, err = client.SendInvoice(ctx, session, body, nil)
	}
	if errors.Is(err, ksef.ErrUnauthorized) {
		h.forgetAccessToken(ctx, in.NIP)
		return flow.Submission{}, &flow.AuthFailedError{Reason: flow.Reason{Stage: "send", Message: "KSeF refused the access token; authenticating again", Code: 401}, Err: err}
	}
	if err != nil {
		return flow.Submission{}, fmt.Errorf("send invoice: %w", err)
	}
	return flow.Submission{
		SessionReferenceNumber: session.ReferenceNumber,
		InvoiceReferenceNumber: sent.ReferenceNumber,
		InvoiceHash:            sent.InvoiceHash,
		InvoiceSize:            sent.InvoiceSize,
		InvoiceNumber:          info.Number,
		IssueDate:              info.IssueDate.Format(time.DateOnly),
		SentAt:                 h.now().UTC(),
		WaitSeconds:            firstPollSeconds,
	}, nil
}

// read fetches the exact object version, refusing objects larger than KSeF could accept.
func (h *handler) read(ctx context.Context, obj flow.S3Object) ([]byte, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(obj.Bucket), Key: aws.String(obj.Key)}
	if obj.VersionID != "" {
		in.VersionId = aws.String(obj.VersionID)
	}
	out, err := h.objects.GetObject(ctx, in)
	if err != nil {
		var noKey *types.NoSuchKey
		var apiErr smithy.APIError
		if errors.As(err, &noKey) || (errors.As(err, &apiErr) && apiErr.ErrorCode() == "NoSuchVersion") {
			return nil, badInput(fmt.Sprintf("cannot read invoice s3://%s/%s (version %q)", obj.Bucket, obj.Key, obj.VersionID), err)
		}
		return nil, fmt.Errorf("read invoice s3://%s/%s: %w", obj.Bucket, obj.Key, err)
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > maxInvoiceBytes {
		return nil, badInput(fmt.Sprintf("invoice is %d bytes; KSeF accepts at most %d", n, maxInvoiceBytes), nil)
	}
	body, err := io.ReadAll(io.LimitReader(out.Body, maxInvoiceBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read invoice s3://%s/%s: %w", obj.Bucket, obj.Key, err)
	}
	if len(body) > maxInvoiceBytes {
		return nil, badInput(fmt.Sprintf("invoice is over %d bytes", maxInvoiceBytes), nil)
	}
	return body, nil
}

// session returns the NIP's shared online session, opening one if there is none with enough
// validity left or if the current one is the session retired (which KSeF no longer accepts).
// Concurrent executions agree on one session through the compare-and-swap of the state secret:
// a loser closes the session it opened and uses the winner's.
func (h *handler) session(ctx context.Context, nip string, client sessionClient, retired string) (*ksef.SessionHandle, error) {
	now := h.now()
	usable := func(s *secrets.OnlineSession) bool {
		return s != nil && s.Handle != nil && s.Handle.ReferenceNumber != retired && s.Handle.ValidUntil.Sub(now) > minSessionLeft
	}
	st, err := h.store.State(ctx, nip)
	if err != nil {
		return nil, fmt.Errorf("read session state: %w", err)
	}
	if usable(st.Session) {
		return st.Session.Handle, nil
	}

	opened, err := client.OpenOnlineSession(ctx, ksef.FormCodeFA3())
	if err != nil {
		return nil, fmt.Errorf("open online session: %w", err)
	}
	var chosen, replaced *secrets.OnlineSession
	if _, err := h.store.Update(ctx, nip, func(st *secrets.State) error {
		chosen, replaced = nil, nil
		if usable(st.Session) {
			chosen = st.Session
			return secrets.ErrNoChange
		}
		replaced = st.Session
		st.Session = &secrets.OnlineSession{Handle: opened, OpenedAt: now.UTC()}
		chosen = st.Session
		return nil
	}); err != nil {
		h.closeSession(ctx, client, opened.ReferenceNumber, "its handle could not be stored")
		return nil, fmt.Errorf("store online session: %w", err)
	}
	if chosen.Handle.ReferenceNumber != opened.ReferenceNumber {
		h.closeSession(ctx, client, opened.ReferenceNumber, "another execution opened one first")
		return chosen.Handle, nil
	}
	h.log.InfoContext(ctx, "online session opened", slog.String("nip", nip), slog.String("sessionReferenceNumber", opened.ReferenceNumber),
		slog.Time("validUntil", opened.ValidUntil))
	if replaced != nil && replaced.Handle != nil {
		h.closeSession(ctx, client, replaced.Handle.ReferenceNumber, "replaced by a newer session")
	}
	return opened, nil
}

// closeSession closes a session the pipeline will not use again. Invoices already sent in it are
// still processed by KSeF. Best effort: a session that is not closed expires on its own.
func (h *handler) closeSession(ctx context.Context, client sessionClient, ref, why string) {
	err := client.CloseOnlineSession(ctx, ref)
	var apiErr *ksef.APIError
	if errors.As(err, &apiErr) && (apiErr.HasCode(ksef.CodeSessionStatus) || apiErr.HasCode(ksef.CodeSessionNotFound)) {
		err = nil // already closed or expired
	}
	if err != nil {
		h.log.WarnContext(ctx, "could not close online session", slog.String("sessionReferenceNumber", ref), slog.String("error", err.Error()))
		return
	}
	h.log.InfoContext(ctx, "online session closed", slog.String("sessionReferenceNumber", ref), slog.String("reason", why))
}

// forgetAccessToken drops the access token that KSeF refused, keeping the refresh token, so that
// it is refreshed before the next call; a token that another execution has already put in its
// place stays. Best effort.
func (h *handler) forgetAccessToken(ctx context.Context, nip string) {
	if err := h.store.DropAccessToken(ctx, nip); err != nil {
		h.log.WarnContext(ctx, "could not drop refused access token", slog.String("nip", nip), slog.String("error", err.Error()))
	}
}

// sessionGone reports whether KSeF refused an invoice because of the session itself: closed or
// expired (21180), unknown (21173), or full (21155).
func sessionGone(err error) bool {
	var apiErr *ksef.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.HasCode(ksef.CodeSessionStatus) || apiErr.HasCode(ksef.CodeSessionNotFound) || apiErr.HasCode(ksef.CodeInvoiceLimit))
}

func badInput(msg string, err error) error {
	r := flow.Reason{Stage: "send", Message: msg}
	var invErr *ksef.InvoiceError
	if errors.As(err, &invErr) {
		r.Details = []string{invErr.Error()}
	}
	return &flow.BadInputError{Reason: r, Err: err}
}
