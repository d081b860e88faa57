package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// maxSessionsPerInvocation bounds the sessions of earlier runs one send or release finds (each
// is a Map iteration, whose polls count against the execution's history of 25 000 events, and
// the list travels in the execution's state); the next round or run finds the others.
const maxSessionsPerInvocation = 10

// candidate is the latest version of an object waiting under the batch prefix, with its ledger
// item (nil if it has none).
type candidate struct {
	obj      flow.S3Object
	id       string
	size     int64
	otherNIP string // the NIP its folder names, when not the stack's (handler.otherNIP)
	inv      *ledger.Invoice
}

// plan is what a run does with a candidate.
type plan int

const (
	skip       plan = iota // taken care of: another run's, or final
	take                   // new: read, inspect, claim in the ledger, send
	refuseSize             // new and larger than KSeF accepts: invalid
	refuseNIP              // new and in a folder named after another NIP: invalid
	resend                 // claimed by this run and not sent (or sent in a session never closed)
	check                  // sent in a session by this run: processed? poll it : send again
	checkOther             // sent by a run that ended long ago: processed? poll it : give it up
	abandon                // claimed by a run that ended long ago (or by this failing run): give it up
	refinish               // refused or noticed by this run: store the report or notice again
)

// needsSlot reports whether the plan may put the invoice into a session of this invocation.
func (p plan) needsSlot() bool { return p == take || p == resend || p == check }

// outgoing is an invoice this invocation sends.
type outgoing struct {
	id   string
	obj  flow.S3Object
	body []byte
	info *ksef.InvoiceInfo
}

// run is one send or release invocation.
type run struct {
	h      *handler
	in     flow.BatchRequest
	client batchClient
	// claimUntil is when the invocation stops taking invoices in, so that sending them still
	// fits before the Lambda deadline; zero without a deadline.
	claimUntil time.Time
	release    *flow.Reason // release: why the run failed

	mu        sync.Mutex
	out       flow.BatchSendResult
	sessions  map[string]int // reference number -> index in out.Sessions
	processed map[string]*sessionCheck
	outgoing  []*outgoing
	slots     int   // invoices reserved or claimed
	bytes     int64 // their bytes
}

// sessionCheck is the memoized answer to "did KSeF process this batch session?".
type sessionCheck struct {
	once      sync.Once
	processed bool
	err       error
}

func (h *handler) newRun(ctx context.Context, in flow.BatchRequest, client batchClient) *run {
	r := &run{h: h, in: in, client: client, sessions: map[string]int{}, processed: map[string]*sessionCheck{}}
	r.out.Sessions = []flow.BatchSession{}
	if dl, ok := ctx.Deadline(); ok {
		// Half the time left takes invoices in; the other half sends them (measured: sending
		// takes far less than taking in, which reads every object and writes the ledger).
		now := h.now()
		r.claimUntil = now.Add(dl.Sub(now) / 2)
	}
	return r
}

// send takes in the invoices waiting under the batch prefix for the NIP (after in.After, within
// this invocation's limits) and sends them in batch sessions of at most cfg.SessionInvoices
// invoices each. It also finds the sessions of its own earlier attempts, and of runs that ended
// long ago, whose invoices' outcomes are not stored yet, for the state machine to poll.
func (h *handler) send(ctx context.Context, in flow.BatchRequest) (flow.BatchSendResult, error) {
	client, err := h.clients(ctx, in.NIP)
	if err != nil {
		return flow.BatchSendResult{}, flow.AuthFailure(stage, "load credentials", err)
	}
	r := h.newRun(ctx, in, client)
	if err := r.collect(ctx, in.After); err != nil {
		return flow.BatchSendResult{}, err
	}
	slices.SortFunc(r.outgoing, func(a, b *outgoing) int { return strings.Compare(a.obj.Key, b.obj.Key) })
	for chunk := range slices.Chunk(r.outgoing, h.cfg.SessionInvoices) {
		s, err := r.sendSession(ctx, chunk)
		if err != nil {
			return flow.BatchSendResult{}, err
		}
		r.addSession(s)
		r.out.Sent += s.InvoiceCount
	}
	h.log.InfoContext(ctx, "batch invoices sent", slog.String("nip", in.NIP), slog.String("executionName", in.ExecutionName),
		slog.Int("round", in.Round), slog.Int("sent", r.out.Sent), slog.Int("sessions", len(r.out.Sessions)),
		slog.Int("invalid", r.out.Invalid), slog.Int("duplicates", r.out.Duplicates), slog.Int("abandoned", r.out.Abandoned),
		slog.Int("skipped", r.out.Skipped), slog.Bool("more", r.out.More))
	return r.out, nil
}

// collect walks the NIP's objects under the batch prefix after the key after, in key order: it
// reads every candidate's ledger item, plans what to do with it, takes as many as the limits
// allow and carries the plans out. It stops at the first candidate that does not fit, and sets
// out.More and out.After so that the next round goes on from there.
func (r *run) collect(ctx context.Context, after string) error {
	h := r.h
	in := &s3.ListObjectVersionsInput{Bucket: aws.String(h.cfg.Bucket), Prefix: aws.String(h.cfg.BatchPrefix)}
	if after != "" {
		in.KeyMarker = aws.String(after) // the versions of keys after it
	}
	last := after
	for {
		if !r.claimUntil.IsZero() && last != after && r.h.now().After(r.claimUntil) {
			h.log.WarnContext(ctx, "stopping early to send in time", slog.String("after", last))
			r.out.More, r.out.After = true, last
			return nil
		}
		page, err := h.objects.ListObjectVersions(ctx, in)
		if err != nil {
			return fmt.Errorf("list s3://%s/%s: %w", h.cfg.Bucket, h.cfg.BatchPrefix, err)
		}
		cands, err := r.candidates(ctx, page.Versions)
		if err != nil {
			return err
		}
		type job struct {
			c candidate
			p plan
		}
		var jobs []job
		stopped := false
		for _, c := range cands {
			p := r.plan(c)
			if p.needsSlot() && !r.reserve(c.size) {
				stopped = true
				break
			}
			jobs = append(jobs, job{c, p})
		}
		var takes []candidate
		var others []job
		for _, j := range jobs {
			if j.p == take {
				takes = append(takes, j.c)
			} else {
				others = append(others, j)
			}
		}
		if err := each(ctx, h.cfg.Workers, others, func(ctx context.Context, j job) error { return r.carryOut(ctx, j.c, j.p) }); err != nil {
			return err
		}
		if err := r.takeAll(ctx, takes); err != nil {
			return err
		}
		if len(jobs) > 0 {
			last = jobs[len(jobs)-1].c.obj.Key
		}
		if stopped || len(r.out.Sessions) >= maxSessionsPerInvocation {
			r.out.More, r.out.After = true, last
			return nil
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		in.KeyMarker, in.VersionIdMarker = page.NextKeyMarker, page.NextVersionIdMarker
	}
}

// candidates returns the page's latest versions of waiting invoices with their ledger items.
func (r *run) candidates(ctx context.Context, versions []s3types.ObjectVersion) ([]candidate, error) {
	h := r.h
	var cands []candidate
	for _, v := range versions {
		key := aws.ToString(v.Key)
		if !aws.ToBool(v.IsLatest) || !h.waiting(key) {
			continue
		}
		obj := flow.S3Object{Bucket: h.cfg.Bucket, Key: key, VersionID: aws.ToString(v.VersionId)}
		cands = append(cands, candidate{obj: obj, id: ledger.ObjectID(obj.Bucket, obj.Key, obj.VersionID), size: aws.ToInt64(v.Size), otherNIP: h.otherNIP(key)})
	}
	err := each(ctx, h.cfg.Workers, indexes(len(cands)), func(ctx context.Context, i int) error {
		inv, err := h.ledger.Get(ctx, cands[i].id)
		switch {
		case errors.Is(err, ledger.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("read the ledger: %w", err)
		}
		cands[i].inv = inv
		return nil
	})
	return cands, err
}

func indexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// plan decides what to do with a candidate, from its ledger item. Only this run's own items
// (the ledger's executionName) and items a run left unfinished long ago are touched: overlapping
// runs never take each other's invoices.
func (r *run) plan(c candidate) plan {
	inv := c.inv
	if inv == nil {
		switch {
		case r.release != nil:
			return skip
		case c.otherNIP != "":
			return refuseNIP
		case c.size > maxInvoiceBytes:
			return refuseSize
		}
		return take
	}
	own := inv.ExecutionName == r.in.ExecutionName
	stale := r.h.now().Sub(inv.UpdatedAt) > r.h.cfg.ClaimTimeout
	switch inv.Status {
	case ledger.StatusReceived:
		switch {
		case own && r.release != nil:
			return abandon
		case own:
			return resend
		case stale:
			return abandon
		}
	case ledger.StatusSubmitted:
		switch {
		case own && r.release != nil:
			return checkOther
		case own:
			return check
		case stale:
			return checkOther
		}
	case ledger.StatusInvalid, ledger.StatusDuplicateUpload:
		if own && r.release == nil && inv.Source == ledger.SourceBatch {
			return refinish
		}
	}
	return skip
}

// reserve takes a place for an invoice of size bytes in this invocation's sessions, if the
// limits allow (the first invoice always fits).
func (r *run) reserve(size int64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.slots >= r.h.cfg.MaxInvoices || (r.slots > 0 && r.bytes+size > r.h.cfg.MaxBytes) {
		return false
	}
	r.slots++
	r.bytes += size
	return true
}

// unreserve gives a place back: the invoice is not sent after all.
func (r *run) unreserve(size int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.slots--
	r.bytes -= size
}

func (r *run) count(field *int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*field++
}

func (r *run) carryOut(ctx context.Context, c candidate, p plan) error {
	switch p {
	case refuseSize:
		base := r.base(c)
		return r.refuse(ctx, &base, fmt.Sprintf("invoice is %d bytes; KSeF accepts at most %d", c.size, maxInvoiceBytes), nil)
	case refuseNIP:
		base := r.base(c)
		base.NIP = c.otherNIP // what the upload asked for, in the report and the event
		return r.refuse(ctx, &base, fmt.Sprintf("this stack sends for NIP %s only, and the folder %s%s/ names NIP %s: "+
			"deploy a stack for NIP %s, or put invoices of NIP %s outside such a folder", r.in.NIP, r.h.cfg.BatchPrefix, c.otherNIP, c.otherNIP, c.otherNIP, r.in.NIP), nil)
	case resend:
		return r.resend(ctx, c)
	case check, checkOther:
		processed, err := r.sessionProcessed(ctx, c.inv.SessionReferenceNumber)
		if err != nil {
			return err
		}
		switch {
		case processed:
			if p == check {
				r.unreserve(c.size)
			}
			r.addSession(flow.BatchSession{SessionReferenceNumber: c.inv.SessionReferenceNumber, ManifestKey: r.h.manifestKey(c.inv.SessionReferenceNumber)})
			r.count(&r.out.Skipped)
			return nil
		case p == check:
			return r.resend(ctx, c) // the session was never closed: KSeF will not process it
		}
		return r.abandon(ctx, c.inv)
	case abandon:
		return r.abandon(ctx, c.inv)
	case refinish:
		r.count(&r.out.Skipped)
		return r.refinish(ctx, c.inv)
	}
	r.count(&r.out.Skipped)
	return nil
}

// base is the ledger item of a new invoice taken in by this run.
func (r *run) base(c candidate) ledger.Invoice {
	return ledger.Invoice{ID: c.id, NIP: r.in.NIP, Source: ledger.SourceBatch, Object: c.obj, ExecutionName: r.in.ExecutionName}
}

// taking is a new invoice read and inspected, to be claimed.
type taking struct {
	c    candidate
	body []byte
	base ledger.Invoice // with the invoice hash
	info *ksef.InvoiceInfo
	done bool // refused already (too large, invalid): nothing to claim
}

// prepare reads a new invoice and inspects it; one that cannot be sent is refused here (invalid,
// with a report).
func (r *run) prepare(ctx context.Context, c candidate) (*taking, error) {
	h := r.h
	t := &taking{c: c, base: r.base(c)}
	body, err := h.read(ctx, c.obj)
	if errors.Is(err, errTooLarge) {
		r.unreserve(c.size)
		t.done = true
		return t, r.refuse(ctx, &t.base, err.Error(), nil)
	}
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(body)
	t.base.InvoiceHash = base64.StdEncoding.EncodeToString(sum[:])
	t.info, err = ksef.InspectInvoice(body, ksef.InspectOptions{ContextNIP: r.in.NIP, Now: h.now()})
	if err != nil {
		r.unreserve(c.size)
		t.done = true
		return t, r.refuse(ctx, &t.base, "invoice rejected before sending: "+err.Error(), err)
	}
	t.body = body
	return t, nil
}

// claim claims a prepared invoice in the ledger: received (to be sent by this invocation), or a
// duplicate upload of content taken in before (with a notice). Another run claiming it first
// wins; this one leaves it.
func (r *run) claim(ctx context.Context, t *taking) error {
	h := r.h
	c := t.c
	inv := t.base
	inv.Status, inv.InvoiceNumber = ledger.StatusReceived, t.info.Number
	_, err := h.ledger.Create(ctx, inv, nil)
	var conflict *ledger.ConflictError
	switch {
	case err == nil:
		r.mu.Lock()
		r.outgoing = append(r.outgoing, &outgoing{id: c.id, obj: c.obj, body: t.body, info: t.info})
		r.mu.Unlock()
		return nil
	case !errors.As(err, &conflict):
		r.unreserve(c.size)
		return fmt.Errorf("claim %s in the ledger: %w", c.id, err)
	}
	r.unreserve(c.size)
	if conflict.Kind != ledger.ConflictContent { // another run took it first
		r.count(&r.out.Skipped)
		return nil
	}
	orig := conflict.Existing
	if orig == nil {
		if orig, err = h.ledger.Get(ctx, conflict.InvoiceID); err != nil && !errors.Is(err, ledger.ErrNotFound) {
			return fmt.Errorf("read %s, which took the content of %s in: %w", conflict.InvoiceID, c.id, err)
		}
	}
	dup := t.base
	dup.Status, dup.DuplicateOf, dup.InvoiceNumber = ledger.StatusDuplicateUpload, conflict.InvoiceID, t.info.Number
	if !sameKey(orig, c.obj) {
		dup.ResultKey = h.results.Key(c.obj, results.ResultSuffix) // the notice
	}
	if orig != nil && orig.Status == ledger.StatusAccepted {
		dup.KSeFNumber = orig.KSeFNumber
	}
	created, err := h.ledger.Create(ctx, dup, nil)
	if errors.As(err, &conflict) && conflict.Kind == ledger.ConflictID {
		r.count(&r.out.Skipped)
		return nil
	}
	if err != nil {
		return fmt.Errorf("record duplicate upload %s in the ledger: %w", c.id, err)
	}
	r.count(&r.out.Duplicates)
	return r.notice(ctx, created)
}

// takeAll reads and inspects the new invoices of a page in parallel, then claims them: the
// first of each content (in key order) before the others, so that of two copies under the
// batch prefix the first key is the original and the others its duplicate uploads.
func (r *run) takeAll(ctx context.Context, cands []candidate) error {
	w := r.h.cfg.Workers
	prepared := make([]*taking, len(cands))
	err := each(ctx, w, indexes(len(cands)), func(ctx context.Context, i int) error {
		t, err := r.prepare(ctx, cands[i])
		prepared[i] = t
		return err
	})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var first, later []*taking
	for _, t := range prepared {
		switch {
		case t.done:
		case seen[t.base.InvoiceHash]:
			later = append(later, t)
		default:
			seen[t.base.InvoiceHash] = true
			first = append(first, t)
		}
	}
	if err := each(ctx, w, first, r.claim); err != nil {
		return err
	}
	return each(ctx, w, later, r.claim)
}

// refuse records an invoice that cannot be sent as invalid, with a report.
func (r *run) refuse(ctx context.Context, base *ledger.Invoice, msg string, cause error) error {
	h := r.h
	reason := flow.Reason{Stage: stage, Message: msg}
	var invErr *ksef.InvoiceError
	if errors.As(cause, &invErr) {
		reason.Details = []string{invErr.Error()}
	}
	inv := *base
	inv.Status, inv.Reason = ledger.StatusInvalid, ledger.ReasonFrom(reason)
	inv.ResultKey = h.results.Key(inv.Object, results.ErrorSuffix)
	created, err := h.ledger.Create(ctx, inv, nil)
	var conflict *ledger.ConflictError
	if errors.As(err, &conflict) && conflict.Kind == ledger.ConflictID {
		r.count(&r.out.Skipped) // another run refused it first
		return nil
	}
	if err != nil {
		return fmt.Errorf("record invalid invoice %s in the ledger: %w", inv.ID, err)
	}
	r.count(&r.out.Invalid)
	return h.report(ctx, created, ledger.StatusInvalid, "BadInputError", reason, nil)
}

// refinish stores again what this run stored for an invoice it refused or found duplicated:
// a retried invocation does not know whether the first attempt got that far.
func (r *run) refinish(ctx context.Context, inv *ledger.Invoice) error {
	if inv.Status == ledger.StatusDuplicateUpload {
		return r.notice(ctx, inv)
	}
	reason := flow.Reason{Message: "invoice rejected before sending"}
	if inv.Reason != nil {
		reason = flow.Reason{Stage: inv.Reason.Stage, Message: inv.Reason.Message, Code: inv.Reason.Code, Details: inv.Reason.Details}
	}
	return r.h.report(ctx, inv, ledger.StatusInvalid, "BadInputError", reason, nil)
}

// sameKey reports whether the original invoice is an earlier version of the object obj: what
// is stored next to that key (the result, once the original has one) describes the same bytes,
// and must not be replaced by a notice.
func sameKey(orig *ledger.Invoice, obj flow.S3Object) bool {
	return orig != nil && orig.Object.Bucket == obj.Bucket && orig.Object.Key == obj.Key
}

// notice stores the duplicate notice next to a repeated upload, with what is known of the
// original now, as the ingest function does for the inbox; next to an upload of the same bytes
// to the original's key it writes nothing (the original's result, there or to come, stays).
func (r *run) notice(ctx context.Context, inv *ledger.Invoice) error {
	h := r.h
	orig, err := h.ledger.Get(ctx, inv.DuplicateOf)
	if err != nil && !errors.Is(err, ledger.ErrNotFound) {
		return fmt.Errorf("read the original of %s: %w", inv.ID, err)
	}
	if inv.ResultKey == "" || sameKey(orig, inv.Object) {
		h.log.InfoContext(ctx, "same bytes uploaded again to the original's key: its result stays, no notice", slog.String("invoiceId", inv.ID),
			slog.String("duplicateOf", inv.DuplicateOf), slog.String("key", inv.Object.Key))
		return nil
	}
	n := results.DuplicateNotice{
		Status:      string(ledger.StatusDuplicateUpload),
		NIP:         inv.NIP,
		Invoice:     inv.Object,
		InvoiceID:   inv.ID,
		InvoiceHash: inv.InvoiceHash,
		DuplicateOf: inv.DuplicateOf,
		KSeFNumber:  inv.KSeFNumber,
		Message:     "the same invoice content was already taken in as " + inv.DuplicateOf + "; this upload is not sent to KSeF",
		RecordedAt:  inv.CreatedAt,
	}
	if orig != nil {
		n.Original = &results.OriginalInvoice{Status: string(orig.Status), Invoice: orig.Object, ResultKey: orig.ResultKey}
		if orig.Status == ledger.StatusAccepted {
			n.KSeFNumber = orig.KSeFNumber
		}
	}
	return h.results.PutJSON(ctx, inv.ResultKey, n)
}

// resend reads again an invoice this run claimed earlier (a retried invocation) and sends it.
func (r *run) resend(ctx context.Context, c candidate) error {
	body, err := r.h.read(ctx, c.obj)
	if err != nil {
		return err
	}
	info, err := ksef.InspectInvoice(body, ksef.InspectOptions{ContextNIP: r.in.NIP, Now: r.h.now()})
	if err != nil { // cannot happen for the same bytes, but never send what fails inspection
		r.unreserve(c.size)
		reason := flow.Reason{Stage: stage, Message: "invoice rejected before sending: " + err.Error()}
		return r.h.report(ctx, c.inv, ledger.StatusInvalid, "BadInputError", reason, nil)
	}
	r.mu.Lock()
	r.outgoing = append(r.outgoing, &outgoing{id: c.id, obj: c.obj, body: body, info: info})
	r.mu.Unlock()
	return nil
}

// abandon gives up an invoice that a run took in and did not get processed: failed, with a
// report saying why and how to retry (upload it again: the new version takes the content
// over). The report is written before the ledger changes, and the ledger lets only one run
// record the failure.
func (r *run) abandon(ctx context.Context, inv *ledger.Invoice) error {
	var what string
	switch {
	case inv.Status == ledger.StatusSubmitted && r.release != nil:
		what = fmt.Sprintf("the batch run failed before batch session %s was closed: %s", inv.SessionReferenceNumber, r.release.Message)
	case r.release != nil:
		what = "the batch run failed before sending it: " + r.release.Message
	case inv.Status == ledger.StatusSubmitted:
		what = fmt.Sprintf("batch run %s sent it in batch session %s and ended without closing the session", inv.ExecutionName, inv.SessionReferenceNumber)
	default:
		what = fmt.Sprintf("batch run %s took it in at %s and ended without sending it", inv.ExecutionName, inv.CreatedAt.UTC().Format(time.RFC3339))
	}
	reason := flow.Reason{Stage: stage, Message: what + "; upload the invoice again to send it"}
	errorName := "RetryableError"
	if r.release != nil {
		reason.Code, reason.Details = r.release.Code, r.release.Details
		if r.in.Error != nil && r.in.Error.Error != "" {
			errorName = r.in.Error.Error
		}
	}
	var sub *flow.Submission
	if inv.SessionReferenceNumber != "" {
		sub = &flow.Submission{SessionReferenceNumber: inv.SessionReferenceNumber, InvoiceHash: inv.InvoiceHash, InvoiceNumber: inv.InvoiceNumber}
	}
	r.count(&r.out.Abandoned)
	return r.h.report(ctx, inv, ledger.StatusFailed, errorName, reason, sub)
}

// sessionProcessed reports whether KSeF processed (or is processing) a batch session: it was
// closed. A session still open, cancelled (440: never closed in time) or unknown never will be.
func (r *run) sessionProcessed(ctx context.Context, ref string) (bool, error) {
	r.mu.Lock()
	sc, ok := r.processed[ref]
	if !ok {
		sc = &sessionCheck{}
		r.processed[ref] = sc
	}
	r.mu.Unlock()
	sc.once.Do(func() {
		if r.client == nil {
			sc.err = fmt.Errorf("status of batch session %s: no KSeF client (credentials could not be loaded)", ref)
			return
		}
		st, err := r.client.SessionStatus(ctx, ref)
		var apiErr *ksef.APIError
		switch {
		case errors.As(err, &apiErr) && apiErr.HasCode(ksef.CodeSessionNotFound):
			sc.processed = false
		case errors.Is(err, ksef.ErrUnauthorized):
			sc.err = r.h.refused(ctx, r.in.NIP, err, r.release == nil)
		case err != nil:
			sc.err = fmt.Errorf("status of batch session %s: %w", ref, err)
		default:
			sc.processed = st.Status.Code != 100 && st.Status.Code != 440
		}
	})
	return sc.processed, sc.err
}

// addSession adds a session to poll, once.
func (r *run) addSession(s flow.BatchSession) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i, ok := r.sessions[s.SessionReferenceNumber]; ok {
		r.out.Sessions[i].InvoiceCount = max(r.out.Sessions[i].InvoiceCount, s.InvoiceCount)
		return
	}
	r.sessions[s.SessionReferenceNumber] = len(r.out.Sessions)
	r.out.Sessions = append(r.out.Sessions, s)
}

// sendSession packs invoices into a batch package, opens a batch session for it, stores the
// manifest, records the invoices as submitted in the session, uploads the parts exactly as KSeF
// says and closes the session.
func (r *run) sendSession(ctx context.Context, invoices []*outgoing) (flow.BatchSession, error) {
	h := r.h
	files := make([]ksef.BatchInvoice, len(invoices))
	var raw int64
	for i, c := range invoices {
		files[i] = ksef.BatchInvoice{FileName: c.id + ".xml", Content: c.body}
		raw += int64(len(c.body))
	}
	pkg, err := ksef.BuildBatch(files, ksef.BatchOptions{MaxPartSize: partSize(h.cfg.PartSize, raw, len(files)), ModTime: h.now()})
	if err != nil {
		return flow.BatchSession{}, fmt.Errorf("pack %d invoices: %w", len(files), err)
	}
	clear(files)
	for _, c := range invoices {
		c.body = nil // the package holds them now, encrypted
	}
	opened := h.now().UTC()
	bs, err := r.client.OpenBatchSession(ctx, ksef.FormCodeFA3(), pkg, nil)
	if err != nil {
		return flow.BatchSession{}, r.ksefError(ctx, "open batch session", err)
	}
	ref := bs.Handle.ReferenceNumber
	m := &manifest{
		SessionReferenceNumber: ref, NIP: r.in.NIP, ExecutionName: r.in.ExecutionName, OpenedAt: opened,
		ArchiveSize: pkg.Size, ArchiveHash: pkg.Hash, Parts: len(pkg.Parts), Invoices: make([]manifestEntry, len(invoices)),
	}
	for i, c := range invoices {
		m.Invoices[i] = manifestEntry{
			FileName: pkg.Entries[i].FileName, InvoiceID: c.id, Invoice: c.obj, InvoiceHash: pkg.Entries[i].Hash,
			InvoiceSize: pkg.Entries[i].Size, InvoiceNumber: c.info.Number, IssueDate: c.info.IssueDate.Format(time.DateOnly),
		}
	}
	key, err := h.putManifest(ctx, m)
	if err != nil {
		return flow.BatchSession{}, err
	}
	err = each(ctx, h.cfg.Workers, m.Invoices, func(ctx context.Context, e manifestEntry) error {
		inv, changed, err := h.ledger.Transition(ctx, e.InvoiceID, ledger.Change{
			Status: ledger.StatusSubmitted, NIP: r.in.NIP, Object: e.Invoice, ExecutionName: r.in.ExecutionName,
			InvoiceHash: e.InvoiceHash, InvoiceNumber: e.InvoiceNumber, SessionReferenceNumber: ref,
		})
		if err != nil {
			return fmt.Errorf("record %s as submitted: %w", e.InvoiceID, err)
		}
		if !changed {
			h.log.WarnContext(ctx, "ledger keeps the invoice's status", slog.String("invoiceId", e.InvoiceID), slog.String("status", string(inv.Status)))
		}
		return nil
	})
	if err != nil {
		return flow.BatchSession{}, err
	}
	if err := r.client.UploadBatchParts(ctx, bs, pkg, h.cfg.Uploads); err != nil {
		return flow.BatchSession{}, r.ksefError(ctx, "upload batch parts", err)
	}
	if err := r.client.CloseBatchSession(ctx, ref); err != nil {
		return flow.BatchSession{}, r.ksefError(ctx, "close batch session", err)
	}
	h.log.InfoContext(ctx, "batch session sent", slog.String("sessionReferenceNumber", ref), slog.Int("invoices", len(invoices)),
		slog.Int64("archiveBytes", pkg.Size), slog.Int("parts", len(pkg.Parts)), slog.String("manifestKey", key))
	return flow.BatchSession{SessionReferenceNumber: ref, ManifestKey: key, InvoiceCount: len(invoices)}, nil
}

// ksefError turns a failed KSeF call of the send action into the error the state machine acts
// on; a refused access token sends the run back to authentication once.
func (r *run) ksefError(ctx context.Context, what string, err error) error {
	if errors.Is(err, ksef.ErrUnauthorized) {
		return r.h.refused(ctx, r.in.NIP, err, true)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// partSize is the size of the archive's parts: cfg's, or larger when the archive would need
// more than KSeF's 50 parts. The archive is at most the invoices' bytes plus a little per file
// (compression makes it smaller, XML compresses well).
func partSize(configured, raw int64, files int) int64 {
	bound := raw + int64(files)*512 + 1024
	need := (bound + ksef.MaxBatchParts - 1) / ksef.MaxBatchParts
	return min(max(configured, need), ksef.MaxBatchPartSize)
}
