package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// sweepCursor marks a poll that goes through the manifest itself, Offset entries at a time,
// after KSeF failed the whole session or left invoices out of its list. KSeF's continuation
// tokens never take this form.
const sweepCursor = "#manifest"

// poll makes one status call for a batch session. While KSeF processes the session it says how
// long to wait; once it has, every call stores the outcomes of one page of the session's
// invoices (UPO, result or report, ledger, event), exactly as the poll function does for an
// online invoice, and says whether more pages follow.
func (h *handler) poll(ctx context.Context, in flow.BatchRequest) (flow.BatchPollResult, error) {
	out := flow.BatchPollResult{Outcome: flow.BatchPending, Attempt: in.Attempt + 1, Cursor: in.Cursor, Offset: in.Offset, WaitSeconds: sessionWait(in.Attempt + 1)}
	s := in.Session
	if s == nil || s.SessionReferenceNumber == "" || !strings.HasPrefix(s.ManifestKey, h.cfg.ManifestPrefix) {
		return out, &flow.BadInputError{Reason: flow.Reason{Stage: stage, Message: "a batch poll needs the session's reference number and its manifest under " + h.cfg.ManifestPrefix}}
	}
	client, err := h.clients(ctx, in.NIP)
	if err != nil {
		return out, flow.AuthFailure(stage, "load credentials", err)
	}
	st, err := client.SessionStatus(ctx, s.SessionReferenceNumber)
	if errors.Is(err, ksef.ErrUnauthorized) {
		return out, h.refused(ctx, in.NIP, err, false)
	}
	if err != nil {
		return out, fmt.Errorf("status of batch session %s: %w", s.SessionReferenceNumber, err)
	}
	out.StatusCode, out.StatusDescription = st.Status.Code, st.Status.Description
	if st.Status.Code < 200 { // 100 open (closing), 150 processing
		return out, nil
	}
	m, err := h.manifest(ctx, s.ManifestKey)
	if err != nil {
		return out, err
	}
	if m.SessionReferenceNumber != s.SessionReferenceNumber {
		return out, &flow.BadInputError{Reason: flow.Reason{Stage: stage, Message: fmt.Sprintf("manifest %s is of session %s, not %s", s.ManifestKey, m.SessionReferenceNumber, s.SessionReferenceNumber)}}
	}
	p := &sessionPoll{h: h, in: in, client: client, m: m, st: st, out: out}
	switch {
	case in.Cursor == sweepCursor:
		return p.sweep(ctx, in.Offset)
	case st.Status.Code == 200 || st.Status.Code == 445: // processed; 445: no invoice was valid
		return p.page(ctx)
	}
	return p.sweep(ctx, 0) // KSeF could not process the package at all
}

// maxCachedManifests bounds the manifests a container keeps decoded (up to 10 000 entries, a
// few MB, each): a run's sessions are polled one after another, page after page.
const maxCachedManifests = 2

// manifestCache keeps the manifests a container read last, by key. A manifest never changes
// once its session is open (it is written before anything is uploaded, under the session's
// reference number), so polling a session's pages reads and decodes it once per container
// rather than once per page. Cached manifests are shared and never modified.
type manifestCache struct {
	mu      sync.Mutex
	entries []cachedManifest // least recently used first
}

type cachedManifest struct {
	key string
	m   *manifest
}

// get returns the manifest cached under key, or nil, and marks it used.
func (c *manifestCache) get(key string) *manifest {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, e := range c.entries {
		if e.key == key {
			c.entries = append(slices.Delete(c.entries, i, i+1), e)
			return e.m
		}
	}
	return nil
}

// put caches m under key, dropping the least recently used manifest beyond maxCachedManifests.
func (c *manifestCache) put(key string, m *manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = slices.DeleteFunc(c.entries, func(e cachedManifest) bool { return e.key == key })
	c.entries = append(c.entries, cachedManifest{key, m})
	if n := len(c.entries) - maxCachedManifests; n > 0 {
		c.entries = slices.Delete(c.entries, 0, n)
	}
}

// manifest returns the manifest stored under key, read from the bucket only if this container
// has not read it lately.
func (h *handler) manifest(ctx context.Context, key string) (*manifest, error) {
	if m := h.manifests.get(key); m != nil {
		return m, nil
	}
	m, err := h.loadManifest(ctx, key)
	if err != nil {
		return nil, err
	}
	h.manifests.put(key, m)
	return m, nil
}

// sessionWait is the wait before the next status call of a batch session: KSeF processes
// thousands of invoices in minutes, not seconds.
func sessionWait(attempt int) int {
	switch {
	case attempt <= 1:
		return 2
	case attempt <= 5:
		return 5
	case attempt <= 10:
		return 10
	case attempt <= 20:
		return 30
	}
	return 60
}

// sessionPoll is one poll of a processed (or failed) session.
type sessionPoll struct {
	h      *handler
	in     flow.BatchRequest
	client batchClient
	m      *manifest
	st     *ksef.SessionStatus
	out    flow.BatchPollResult
}

func (p *sessionPoll) ref() string { return p.m.SessionReferenceNumber }

// page stores the outcomes of one page of the session's invoices. A page with an invoice still
// in progress (or whose UPO is not generated yet) is polled again, whole, after a short wait.
func (p *sessionPoll) page(ctx context.Context) (flow.BatchPollResult, error) {
	h := p.h
	out := p.out
	page, err := p.client.SessionInvoices(ctx, p.ref(), &ksef.ListOptions{PageSize: h.cfg.PageSize, ContinuationToken: p.in.Cursor})
	var apiErr *ksef.APIError
	switch {
	case errors.Is(err, ksef.ErrUnauthorized):
		return out, h.refused(ctx, p.in.NIP, err, false)
	case errors.As(err, &apiErr) && apiErr.HasCode(ksef.CodeContinuationToken):
		// KSeF no longer knows where the list stood: start it over (storing is idempotent).
		h.log.WarnContext(ctx, "continuation token refused; listing the session's invoices again", slog.String("sessionReferenceNumber", p.ref()))
		out.Cursor, out.WaitSeconds = "", 1
		return out, nil
	case err != nil:
		return out, fmt.Errorf("invoices of batch session %s: %w", p.ref(), err)
	}
	for _, st := range page.Invoices {
		if st.Status.Code < 200 {
			out.WaitSeconds = 2
			return out, nil
		}
	}
	files := p.m.byFileName()
	var (
		mu       sync.Mutex
		notReady bool
	)
	err = each(ctx, h.cfg.Workers, page.Invoices, func(ctx context.Context, st ksef.InvoiceStatus) error {
		e := files[st.InvoiceFileName]
		if e == nil {
			h.log.ErrorContext(ctx, "KSeF lists a file the session's manifest does not name", slog.String("sessionReferenceNumber", p.ref()),
				slog.String("invoiceFileName", st.InvoiceFileName))
			return nil
		}
		stored, kind, err := p.outcome(ctx, e, &st)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case err != nil:
		case !stored:
			notReady = true
		case kind == ledger.StatusAccepted:
			out.Accepted++
		case kind == ledger.StatusRejected:
			out.Rejected++
		default:
			out.Failed++
		}
		return err
	})
	if err != nil {
		return out, err
	}
	if notReady {
		out.Outcome, out.WaitSeconds = flow.BatchPending, 2
		return out, nil
	}
	out.WaitSeconds = 0
	if page.ContinuationToken != "" {
		out.Outcome, out.Cursor = flow.BatchMore, page.ContinuationToken
		return out, nil
	}
	if p.st.InvoiceCount < len(p.m.Invoices) {
		// KSeF left invoices out (a file it could not read): record them as failed.
		out.Outcome, out.Cursor, out.Offset = flow.BatchMore, sweepCursor, 0
		return out, nil
	}
	out.Outcome, out.Cursor = flow.BatchDone, ""
	h.log.InfoContext(ctx, "batch session done", slog.String("sessionReferenceNumber", p.ref()), slog.Int("statusCode", p.st.Status.Code),
		slog.Int("invoices", p.st.InvoiceCount), slog.Int("successful", p.st.SuccessfulInvoiceCount), slog.Int("failed", p.st.FailedInvoiceCount))
	return out, nil
}

// outcome stores what became of one invoice of the session and records it. It returns false
// when the invoice is not done yet (its UPO is being generated).
func (p *sessionPoll) outcome(ctx context.Context, e *manifestEntry, st *ksef.InvoiceStatus) (bool, ledger.Status, error) {
	sub := e.submission(p.m, st.ReferenceNumber)
	switch code := st.Status.Code; {
	case code == 200:
		return p.accepted(ctx, e, st, sub)
	case code == 440:
		return p.duplicate(ctx, e, st, sub)
	case code >= 500: // 500 unknown, 550 cancelled by KSeF: sending again may work
		reason := flow.Reason{Stage: "ksef", Message: "KSeF did not process the invoice: " + st.Status.Description, Code: code, Details: st.Status.Details}
		return true, ledger.StatusFailed, p.h.report(ctx, p.invoice(e), ledger.StatusFailed, "RetryableError", reason, sub)
	}
	reason := flow.Reason{Stage: "ksef", Message: "KSeF rejected the invoice: " + st.Status.Description, Code: st.Status.Code, Details: st.Status.Details}
	return true, ledger.StatusRejected, p.h.report(ctx, p.invoice(e), ledger.StatusRejected, "RejectedError", reason, sub)
}

func (p *sessionPoll) invoice(e *manifestEntry) *ledger.Invoice {
	return &ledger.Invoice{ID: e.InvoiceID, NIP: p.m.NIP, Object: e.Invoice}
}

func (p *sessionPoll) change(e *manifestEntry, sub *flow.Submission) ledger.Change {
	return ledger.Change{
		Status: ledger.StatusAccepted, NIP: p.m.NIP, Object: e.Invoice, InvoiceHash: sub.InvoiceHash, InvoiceNumber: sub.InvoiceNumber,
		SessionReferenceNumber: sub.SessionReferenceNumber, InvoiceReferenceNumber: sub.InvoiceReferenceNumber,
	}
}

// accepted stores the UPO, then the result (so a result always has its UPO), then records it.
func (p *sessionPoll) accepted(ctx context.Context, e *manifestEntry, st *ksef.InvoiceStatus, sub *flow.Submission) (bool, ledger.Status, error) {
	h := p.h
	upo, err := results.FetchUPO(ctx, p.client, p.ref(), st.KSeFNumber, st.UPODownloadURL, h.log)
	switch {
	case results.UPONotReady(err):
		return false, "", nil
	case errors.Is(err, ksef.ErrUnauthorized):
		return false, "", h.refused(ctx, p.in.NIP, err, false)
	case err != nil:
		return false, "", fmt.Errorf("download the UPO of %s: %w", st.KSeFNumber, err)
	}
	upoKey := h.results.Key(e.Invoice, results.UPOSuffix)
	if err := h.results.PutXML(ctx, upoKey, upo.Content); err != nil {
		return false, "", err
	}
	res := results.NewResult(results.StatusAccepted, p.m.NIP, e.Invoice, sub, st, h.now())
	res.UPO = &results.UPO{Key: upoKey, Hash: upo.Hash}
	res.QRCodeURL = results.VerificationURL(p.client.QRBaseURL(), p.m.NIP, sub)
	resultKey := h.results.Key(e.Invoice, results.ResultSuffix)
	if err := h.results.PutJSON(ctx, resultKey, res); err != nil {
		return false, "", err
	}
	ch := p.change(e, sub)
	ch.KSeFNumber, ch.AcquisitionDate, ch.ResultKey, ch.UPOKey = st.KSeFNumber, st.AcquisitionDate, resultKey, upoKey
	return true, ledger.StatusAccepted, h.record(ctx, e.InvoiceID, ch)
}

// duplicate handles a 440 as the poll function does: KSeF already holds an invoice with this
// seller, type and number, under the KSeF number in the status extensions. It is reconciled
// (the original's UPO and KSeF number stored as this invoice's) only when the original's UPO
// lists the original with this invoice's hash; an invoice number reused for other content, or
// a duplicate that cannot be checked, is recorded rejected (results.ConfirmDuplicate).
func (p *sessionPoll) duplicate(ctx context.Context, e *manifestEntry, st *ksef.InvoiceStatus, sub *flow.Submission) (bool, ledger.Status, error) {
	h := p.h
	orig, err := results.ConfirmDuplicate(ctx, p.client, st, sub.InvoiceHash)
	var rej *flow.RejectedError
	switch {
	case results.UPONotReady(err):
		return false, "", nil // the original was accepted moments ago; its UPO is being generated
	case errors.Is(err, ksef.ErrUnauthorized):
		return false, "", h.refused(ctx, p.in.NIP, err, false)
	case errors.As(err, &rej):
		h.log.InfoContext(ctx, "duplicate invoice not reconciled", slog.String("invoiceId", e.InvoiceID),
			slog.String("originalKsefNumber", st.Status.Extensions["originalKsefNumber"]), slog.String("reason", rej.Message))
		return true, ledger.StatusRejected, h.report(ctx, p.invoice(e), ledger.StatusRejected, "RejectedError", rej.Reason, sub)
	case err != nil:
		return false, "", fmt.Errorf("check the duplicate %s: %w", st.ReferenceNumber, err)
	}
	upoKey := h.results.Key(e.Invoice, results.UPOSuffix)
	if err := h.results.PutXML(ctx, upoKey, orig.UPO.Content); err != nil {
		return false, "", err
	}
	res := results.NewResult(results.StatusDuplicate, p.m.NIP, e.Invoice, sub, st, h.now())
	res.KSeFNumber, res.OriginalSessionReferenceNumber = orig.KSeFNumber, orig.SessionReferenceNumber
	res.UPO = &results.UPO{Key: upoKey, Hash: orig.UPO.Hash}
	res.QRCodeURL = results.VerificationURL(p.client.QRBaseURL(), p.m.NIP, sub)
	resultKey := h.results.Key(e.Invoice, results.ResultSuffix)
	if err := h.results.PutJSON(ctx, resultKey, res); err != nil {
		return false, "", err
	}
	ch := p.change(e, sub)
	ch.KSeFNumber, ch.Reconciled, ch.ResultKey, ch.UPOKey = orig.KSeFNumber, true, resultKey, upoKey
	return true, ledger.StatusAccepted, h.record(ctx, e.InvoiceID, ch)
}

// sweep goes through the manifest from offset, a page at a time, and records as failed every
// invoice still waiting for this session: KSeF failed the whole session (a package it could not
// decrypt, unpack or verify, too many invoices, ...), or processed it without listing them.
func (p *sessionPoll) sweep(ctx context.Context, offset int) (flow.BatchPollResult, error) {
	h := p.h
	out := p.out
	offset = min(max(offset, 0), len(p.m.Invoices))
	end := min(offset+h.cfg.PageSize, len(p.m.Invoices))
	reason := flow.Reason{Stage: "ksef", Code: p.st.Status.Code, Details: p.st.Status.Details,
		Message: fmt.Sprintf("KSeF did not process batch session %s: %s", p.ref(), p.st.Status.Description)}
	if code := p.st.Status.Code; code == 200 || code == 445 {
		reason = flow.Reason{Stage: "ksef", Message: fmt.Sprintf("KSeF processed batch session %s without listing this invoice", p.ref())}
	}
	var mu sync.Mutex
	err := each(ctx, h.cfg.Workers, p.m.Invoices[offset:end], func(ctx context.Context, e manifestEntry) error {
		inv, err := h.ledger.Get(ctx, e.InvoiceID)
		if err != nil {
			return fmt.Errorf("read the ledger: %w", err)
		}
		if inv.Status != ledger.StatusSubmitted || inv.SessionReferenceNumber != p.ref() {
			return nil // recorded already, or sent again elsewhere
		}
		if err := h.report(ctx, inv, ledger.StatusFailed, "RetryableError", reason, e.submission(p.m, "")); err != nil {
			return err
		}
		mu.Lock()
		out.Failed++
		mu.Unlock()
		return nil
	})
	if err != nil {
		return out, err
	}
	out.Cursor, out.Offset, out.WaitSeconds = sweepCursor, end, 0
	out.Outcome = flow.BatchMore
	if end == len(p.m.Invoices) {
		out.Outcome = flow.BatchDone
		h.log.WarnContext(ctx, "batch session failed", slog.String("sessionReferenceNumber", p.ref()), slog.Int("statusCode", p.st.Status.Code),
			slog.String("statusDescription", p.st.Status.Description), slog.Int("invoices", len(p.m.Invoices)))
	}
	return out, nil
}
