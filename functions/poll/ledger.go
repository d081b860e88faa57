package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

// ledgerWriter records outcomes in the invoice ledger.
type ledgerWriter interface {
	Transition(ctx context.Context, id string, ch ledger.Change) (*ledger.Invoice, bool, error)
}

// eventPublisher announces outcomes on EventBridge.
type eventPublisher interface {
	Publish(ctx context.Context, e ledger.Event) error
}

// change returns a ledger change to status with what the execution knows about the invoice:
// where it is, and where it went in KSeF when it was sent.
func change(in flow.PollInput, status ledger.Status) ledger.Change {
	ch := ledger.Change{Status: status, NIP: in.NIP, Object: in.Invoice, ExecutionName: in.ExecutionName}
	if s := in.Submission; s != nil {
		ch.InvoiceHash, ch.InvoiceNumber = s.InvoiceHash, s.InvoiceNumber
		ch.SessionReferenceNumber, ch.InvoiceReferenceNumber = s.SessionReferenceNumber, s.InvoiceReferenceNumber
	}
	return ch
}

// record writes a final outcome to the ledger and announces it, after the result or report is
// stored in S3 (so that whoever reads the ledger or gets the event finds them). Both are
// optional (LEDGER_TABLE, EVENT_BUS_NAME). An error makes the state machine retry the step; the
// ledger then finds the outcome already recorded and the event is published again (events are
// delivered at least once). An outcome the ledger refuses (a late failure of an invoice already
// accepted) is neither recorded nor announced.
func (h *handler) record(ctx context.Context, in flow.PollInput, ch ledger.Change) error {
	id := ledger.IDFor(in.ExecutionName, in.Invoice)
	inv := invoiceOf(id, ch)
	if h.ledger != nil {
		cur, changed, err := h.ledger.Transition(ctx, id, ch)
		if err != nil {
			return fmt.Errorf("record %s in the ledger: %w", ch.Status, err)
		}
		if !changed && cur.Status != ch.Status {
			h.log.WarnContext(ctx, "ledger keeps the invoice's status; outcome not recorded", slog.String("invoiceId", id),
				slog.String("status", string(cur.Status)), slog.String("outcome", string(ch.Status)))
			return nil
		}
		inv = cur
	}
	if h.events != nil {
		if err := h.events.Publish(ctx, ledger.EventOf(inv, h.now())); err != nil {
			return fmt.Errorf("announce %s: %w", ch.Status, err)
		}
	}
	return nil
}

// invoiceOf is what an event says about an invoice without a ledger.
func invoiceOf(id string, ch ledger.Change) *ledger.Invoice {
	return &ledger.Invoice{
		ID: id, NIP: ch.NIP, Object: ch.Object, Status: ch.Status,
		InvoiceHash: ch.InvoiceHash, InvoiceNumber: ch.InvoiceNumber,
		KSeFNumber: ch.KSeFNumber, AcquisitionDate: ch.AcquisitionDate, Reconciled: ch.Reconciled,
		SessionReferenceNumber: ch.SessionReferenceNumber, InvoiceReferenceNumber: ch.InvoiceReferenceNumber,
		ResultKey: ch.ResultKey, UPOKey: ch.UPOKey, Reason: ch.Reason, ExecutionName: ch.ExecutionName,
	}
}
