package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eventbridge"
	ebtypes "github.com/aws/aws-sdk-go-v2/service/eventbridge/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// The EventBridge events announcing an invoice's outcome (docs/events.md; the JSON Schema of
// their detail is docs/events.schema.json).
const (
	EventSource        = "ksef-serverless"
	DetailTypeAccepted = "InvoiceAccepted" // accepted, or reconciled to the original KSeF number
	DetailTypeRejected = "InvoiceRejected" // rejected by KSeF, invalid, or failed
	// EventSchemaVersion is the detail's schemaVersion; it changes only with incompatible
	// changes (new optional fields keep it).
	EventSchemaVersion = "1"
)

// EventReason is the reason in an InvoiceRejected event.
type EventReason struct {
	Stage   string   `json:"stage,omitempty"`
	Code    int      `json:"code,omitempty"`
	Message string   `json:"message"`
	Details []string `json:"details,omitempty"`
}

// Event is the detail of an InvoiceAccepted or InvoiceRejected event.
type Event struct {
	SchemaVersion string        `json:"schemaVersion"`
	InvoiceID     string        `json:"invoiceId"`
	NIP           string        `json:"nip"`
	Source        Source        `json:"source,omitempty"` // absent without a ledger
	Status        Status        `json:"status"`           // accepted; or rejected, invalid, failed
	Invoice       flow.S3Object `json:"invoice"`
	InvoiceNumber string        `json:"invoiceNumber,omitempty"`
	InvoiceHash   string        `json:"invoiceHash,omitempty"`

	KSeFNumber             string    `json:"ksefNumber,omitempty"`
	AcquisitionDate        time.Time `json:"acquisitionDate,omitzero"`
	Reconciled             bool      `json:"reconciled,omitempty"`
	SessionReferenceNumber string    `json:"sessionReferenceNumber,omitempty"`
	InvoiceReferenceNumber string    `json:"invoiceReferenceNumber,omitempty"`

	ResultKey string       `json:"resultKey,omitempty"` // the result, or the report of a failure
	UPOKey    string       `json:"upoKey,omitempty"`
	Reason    *EventReason `json:"reason,omitempty"`

	OccurredAt time.Time `json:"occurredAt"`
}

// DetailType returns the event's detail-type: InvoiceAccepted for an accepted invoice,
// InvoiceRejected otherwise.
func (e *Event) DetailType() string {
	if e.Status == StatusAccepted {
		return DetailTypeAccepted
	}
	return DetailTypeRejected
}

// EventOf returns the event announcing the invoice's current (final) status.
func EventOf(inv *Invoice, occurredAt time.Time) Event {
	e := Event{
		SchemaVersion:          EventSchemaVersion,
		InvoiceID:              inv.ID,
		NIP:                    inv.NIP,
		Source:                 inv.Source,
		Status:                 inv.Status,
		Invoice:                inv.Object,
		InvoiceNumber:          inv.InvoiceNumber,
		InvoiceHash:            inv.InvoiceHash,
		KSeFNumber:             inv.KSeFNumber,
		AcquisitionDate:        inv.AcquisitionDate,
		Reconciled:             inv.Reconciled,
		SessionReferenceNumber: inv.SessionReferenceNumber,
		InvoiceReferenceNumber: inv.InvoiceReferenceNumber,
		ResultKey:              inv.ResultKey,
		UPOKey:                 inv.UPOKey,
		OccurredAt:             occurredAt.UTC(),
	}
	if r := inv.Reason; r != nil && inv.Status != StatusAccepted {
		e.Reason = &EventReason{Stage: r.Stage, Code: r.Code, Message: r.Message, Details: r.Details}
	}
	return e
}

// EventsAPI is the part of the EventBridge client a Publisher uses, with the exact
// aws-sdk-go-v2 signature.
type EventsAPI interface {
	PutEvents(ctx context.Context, in *eventbridge.PutEventsInput, optFns ...func(*eventbridge.Options)) (*eventbridge.PutEventsOutput, error)
}

var _ EventsAPI = (*eventbridge.Client)(nil)

// Publisher puts events on one event bus.
type Publisher struct {
	api EventsAPI
	bus string
}

// NewPublisher returns a publisher to the bus (a name or ARN; "default" is the account's default
// bus).
func NewPublisher(api EventsAPI, bus string) *Publisher { return &Publisher{api: api, bus: bus} }

// Publish puts the event on the bus, with source EventSource and the event's detail-type.
// Delivery is at least once: a step that is retried publishes again, so consumers should treat
// (invoiceId, status) as the identity of an event.
func (p *Publisher) Publish(ctx context.Context, e Event) error {
	detail, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("ledger: encode %s event of %s: %w", e.DetailType(), e.InvoiceID, err)
	}
	out, err := p.api.PutEvents(ctx, &eventbridge.PutEventsInput{Entries: []ebtypes.PutEventsRequestEntry{{
		EventBusName: aws.String(p.bus),
		Source:       aws.String(EventSource),
		DetailType:   aws.String(e.DetailType()),
		Detail:       aws.String(string(detail)),
		Time:         aws.Time(e.OccurredAt),
	}}})
	if err != nil {
		return fmt.Errorf("ledger: publish %s event of %s: %w", e.DetailType(), e.InvoiceID, err)
	}
	if out.FailedEntryCount > 0 {
		code, msg := "unknown", ""
		if len(out.Entries) > 0 {
			code, msg = aws.ToString(out.Entries[0].ErrorCode), aws.ToString(out.Entries[0].ErrorMessage)
		}
		return fmt.Errorf("ledger: publish %s event of %s: entry failed: %s %s", e.DetailType(), e.InvoiceID, code, msg)
	}
	return nil
}
