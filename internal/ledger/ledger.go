package ledger

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// API is the part of the DynamoDB client the ledger uses, with the exact aws-sdk-go-v2
// signatures: *dynamodb.Client satisfies it, and tests pass a fake.
type API interface {
	GetItem(ctx context.Context, in *dynamodb.GetItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *dynamodb.UpdateItemInput, optFns ...func(*dynamodb.Options)) (*dynamodb.UpdateItemOutput, error)
	TransactWriteItems(ctx context.Context, in *dynamodb.TransactWriteItemsInput, optFns ...func(*dynamodb.Options)) (*dynamodb.TransactWriteItemsOutput, error)
}

var _ API = (*dynamodb.Client)(nil)

// Status is where an invoice stands.
type Status string

// Statuses. Received and submitted are in progress; the others are final. Accepted covers a
// duplicate that KSeF already held (440), reconciled to the original KSeF number.
const (
	StatusReceived        Status = "received"         // recorded by an entry point; the execution is starting
	StatusSubmitted       Status = "submitted"        // sent to KSeF; its reference numbers are known
	StatusAccepted        Status = "accepted"         // KSeF number assigned (or reconciled)
	StatusRejected        Status = "rejected"         // KSeF refused it
	StatusInvalid         Status = "invalid"          // our validation refused it before sending
	StatusFailed          Status = "failed"           // gave up on infrastructure (KSeF down, login failing, ...)
	StatusDuplicateUpload Status = "duplicate-upload" // the same content was already taken in; see DuplicateOf
)

// Final reports whether s is a final status.
func (s Status) Final() bool {
	switch s {
	case StatusAccepted, StatusRejected, StatusInvalid, StatusFailed, StatusDuplicateUpload:
		return true
	}
	return false
}

func (s Status) valid() bool {
	return s == StatusReceived || s == StatusSubmitted || s.Final()
}

// transitions lists, for each status a Transition may set, the statuses it may replace. A final
// status is never replaced by one in progress, accepted and duplicate-upload are never replaced,
// and setting the status an invoice already has is a no-op (so a retried step changes nothing).
// Submitted may follow submitted: a send retried after a lost answer has new reference numbers.
var transitions = map[Status][]Status{
	StatusSubmitted: {StatusReceived, StatusSubmitted},
	StatusAccepted:  {StatusReceived, StatusSubmitted, StatusRejected, StatusInvalid, StatusFailed},
	StatusRejected:  {StatusReceived, StatusSubmitted, StatusInvalid, StatusFailed},
	StatusInvalid:   {StatusReceived, StatusSubmitted, StatusRejected, StatusFailed},
	StatusFailed:    {StatusReceived, StatusSubmitted, StatusRejected, StatusInvalid},
}

// Reason says why an invoice was not accepted: KSeF's status or exception code and details, or
// our validation error.
type Reason struct {
	Stage   string // send, ksef, auth, poll, ingest, ...
	Code    int    // KSeF status or exception code; 0 if none
	Message string
	Details []string
}

// ReasonFrom converts the reason a pipeline step failed with.
func ReasonFrom(r flow.Reason) *Reason {
	return &Reason{Stage: r.Stage, Code: r.Code, Message: r.Message, Details: r.Details}
}

// Invoice is one invoice's item in the ledger.
type Invoice struct {
	ID     string
	NIP    string
	Source Source
	Object flow.S3Object // the invoice as stored (bucket, key, version)
	// InvoiceHash is the Base64 SHA-256 of the invoice bytes (KSeF's invoiceHash).
	InvoiceHash   string
	InvoiceNumber string // P_2, once the invoice has been read
	Status        Status

	KSeFNumber      string
	AcquisitionDate time.Time
	// Reconciled means KSeF already held this invoice (440) and KSeFNumber is the original's.
	Reconciled             bool
	SessionReferenceNumber string
	InvoiceReferenceNumber string
	// ResultKey is the JSON stored next to the invoice: the result when accepted, the report
	// when not, the notice of a duplicate upload.
	ResultKey string
	UPOKey    string
	Reason    *Reason
	// DuplicateOf is, for a duplicate upload, the id of the invoice that took the content in.
	DuplicateOf   string
	ExecutionName string

	CreatedAt time.Time
	UpdatedAt time.Time
	Version   int64 // 1 when created, incremented by every change
}

// Sentinel errors, tested with errors.Is. Create returns a *ConflictError that matches one of
// the last three.
var (
	ErrNotFound = errors.New("ledger: invoice not found")
	// ErrExists means an invoice with the id is already recorded.
	ErrExists = errors.New("ledger: invoice already recorded")
	// ErrDuplicateContent means another invoice of the NIP with the same content (invoice
	// hash) was already taken in.
	ErrDuplicateContent = errors.New("ledger: invoice content already taken in")
	// ErrIdempotencyKeyUsed means the NIP's idempotency key is already bound to an invoice.
	ErrIdempotencyKeyUsed = errors.New("ledger: idempotency key already used")
)

// Conflict names what a Create collided with.
type Conflict string

// Conflicts.
const (
	ConflictID             Conflict = "id"
	ConflictContent        Conflict = "content"
	ConflictIdempotencyKey Conflict = "idempotency-key"
)

// ConflictError is why Create wrote nothing: the id, the content or the idempotency key is
// already taken, by the invoice InvoiceID.
type ConflictError struct {
	Kind      Conflict
	InvoiceID string // the invoice holding the id, the content or the key
	// RequestHash is what was stored with the idempotency key (ConflictIdempotencyKey), for the
	// caller to tell a retried request from another request reusing the key.
	RequestHash string
	// Existing is the invoice InvoiceID, when it could be read.
	Existing *Invoice
}

func (e *ConflictError) Error() string {
	switch e.Kind {
	case ConflictContent:
		return "ledger: invoice content already taken in as " + e.InvoiceID
	case ConflictIdempotencyKey:
		return "ledger: idempotency key already used for " + e.InvoiceID
	}
	return "ledger: invoice " + e.InvoiceID + " already recorded"
}

// Is maps the conflict onto ErrExists, ErrDuplicateContent or ErrIdempotencyKeyUsed.
func (e *ConflictError) Is(target error) bool {
	switch target {
	case ErrExists:
		return e.Kind == ConflictID
	case ErrDuplicateContent:
		return e.Kind == ConflictContent
	case ErrIdempotencyKeyUsed:
		return e.Kind == ConflictIdempotencyKey
	}
	return false
}

const (
	defaultAttempts = 4 // Create's attempts on transaction conflicts and content take-overs
	baseDelay       = 50 * time.Millisecond
)

// Ledger records every invoice in one DynamoDB table (partition key "pk", a string) and keeps it
// consistent under retries and concurrency with conditional writes. It is safe for concurrent
// use.
type Ledger struct {
	api      API
	table    string
	now      func() time.Time
	wait     func(ctx context.Context, d time.Duration) error
	attempts int
}

// Option configures a Ledger.
type Option func(*Ledger)

// WithClock sets the clock of the timestamps (default time.Now).
func WithClock(now func() time.Time) Option { return func(l *Ledger) { l.now = now } }

// WithWait sets how Create waits between attempts after a transaction conflict (default: a
// timer that honours ctx). Tests pass a function that records the waits.
func WithWait(wait func(ctx context.Context, d time.Duration) error) Option {
	return func(l *Ledger) { l.wait = wait }
}

// New returns a ledger on the table.
func New(api API, table string, opts ...Option) *Ledger {
	l := &Ledger{api: api, table: table, now: time.Now, wait: sleep, attempts: defaultAttempts}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Table returns the table name.
func (l *Ledger) Table() string { return l.table }

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Get returns the invoice with the id (a strongly consistent read), or an error matching
// ErrNotFound.
func (l *Ledger) Get(ctx context.Context, id string) (*Invoice, error) {
	item, err := l.get(ctx, invoiceKey(id))
	if err != nil {
		return nil, fmt.Errorf("ledger: get invoice %s: %w", id, err)
	}
	if item == nil {
		return nil, fmt.Errorf("ledger: get invoice %s: %w", id, ErrNotFound)
	}
	inv, err := decodeInvoice(item)
	if err != nil {
		return nil, fmt.Errorf("ledger: get invoice %s: %w", id, err)
	}
	return inv, nil
}

func (l *Ledger) get(ctx context.Context, pk string) (map[string]types.AttributeValue, error) {
	out, err := l.api.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(l.table),
		Key:            map[string]types.AttributeValue{attrPK: str(pk)},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		return nil, err
	}
	if len(out.Item) == 0 {
		return nil, nil
	}
	return out.Item, nil
}

// CreateOptions are the claims an API request adds to Create.
type CreateOptions struct {
	// IdempotencyKey, if set, is bound to the invoice (an item keyed by the NIP and the
	// SHA-256 of the key) in the same transaction.
	IdempotencyKey string
	// RequestHash is stored with the idempotency key and returned in a conflict.
	RequestHash string
}

// Create records a new invoice, in one transaction with its claims: the invoice's id; for an
// invoice going to KSeF (status received) with a NIP and an invoice hash, its content, so that
// the same bytes are taken in once per NIP; and the idempotency key of opts. If any claim is
// taken nothing is written and the error is a *ConflictError (the idempotency key is reported
// first, then the id, then the content). Content whose invoice ended failed is taken over by the
// new invoice: uploading an invoice again after an infrastructure failure retries it.
//
// inv.ID must be an invoice id, inv.Source and inv.Status valid; CreatedAt, UpdatedAt and
// Version are set here. It returns the invoice as stored.
func (l *Ledger) Create(ctx context.Context, inv Invoice, opts *CreateOptions) (*Invoice, error) {
	if opts == nil {
		opts = &CreateOptions{}
	}
	switch {
	case !ValidID(inv.ID):
		return nil, fmt.Errorf("ledger: create: invalid invoice id %q", inv.ID)
	case !inv.Source.valid():
		return nil, fmt.Errorf("ledger: create %s: invalid source %q", inv.ID, inv.Source)
	case !inv.Status.valid():
		return nil, fmt.Errorf("ledger: create %s: invalid status %q", inv.ID, inv.Status)
	case opts.IdempotencyKey != "" && inv.NIP == "":
		return nil, fmt.Errorf("ledger: create %s: an idempotency key needs the NIP", inv.ID)
	}
	now := l.now().UTC()
	inv.CreatedAt, inv.UpdatedAt, inv.Version = now, now, 1
	claimContent := inv.Status == StatusReceived && inv.NIP != "" && inv.InvoiceHash != ""

	takeOver := "" // a failed invoice whose content this one takes over
	for attempt := 1; ; attempt++ {
		w := newWrite(l.table, inv, claimContent, takeOver, opts, now)
		_, err := l.api.TransactWriteItems(ctx, &dynamodb.TransactWriteItemsInput{TransactItems: w.items})
		if err == nil {
			return &inv, nil
		}
		var tce *types.TransactionCanceledException
		if !errors.As(err, &tce) {
			return nil, fmt.Errorf("ledger: create %s: %w", inv.ID, err)
		}
		retry, next, cerr := l.canceled(ctx, w, tce.CancellationReasons)
		if cerr != nil {
			return nil, cerr
		}
		if !retry {
			return nil, fmt.Errorf("ledger: create %s: %w", inv.ID, err)
		}
		if attempt >= l.attempts {
			return nil, fmt.Errorf("ledger: create %s: still conflicting after %d attempts: %w", inv.ID, attempt, err)
		}
		if next == takeOver { // a transaction conflict: back off before the same attempt
			d := time.Duration(mrand.Int64N(int64(baseDelay) << (attempt - 1)))
			if err := l.wait(ctx, d); err != nil {
				return nil, fmt.Errorf("ledger: create %s: %w", inv.ID, err)
			}
		}
		takeOver = next
	}
}

// canceled interprets the cancellation reasons of Create's transaction. It returns the
// *ConflictError to report, or whether to try again and with which take-over.
func (l *Ledger) canceled(ctx context.Context, w *write, reasons []types.CancellationReason) (retry bool, takeOver string, err error) {
	code := func(i int) string {
		if i < 0 || i >= len(reasons) {
			return ""
		}
		return aws.ToString(reasons[i].Code)
	}
	item := func(i int) map[string]types.AttributeValue {
		if i < 0 || i >= len(reasons) {
			return nil
		}
		return reasons[i].Item
	}
	const failed = "ConditionalCheckFailed"
	inv := w.inv
	switch {
	case code(w.idem) == failed:
		it := item(w.idem)
		if it == nil {
			if it, err = l.get(ctx, idempotencyKey(inv.NIP, w.opts.IdempotencyKey)); err != nil {
				return false, "", fmt.Errorf("ledger: create %s: read idempotency key: %w", inv.ID, err)
			}
		}
		ce := &ConflictError{Kind: ConflictIdempotencyKey, InvoiceID: getS(it, attrInvoiceID), RequestHash: getS(it, attrRequestHash)}
		ce.Existing = l.existing(ctx, ce.InvoiceID)
		return false, "", ce
	case code(w.inv0) == failed:
		ce := &ConflictError{Kind: ConflictID, InvoiceID: inv.ID}
		if it := item(w.inv0); it != nil {
			ce.Existing, _ = decodeInvoice(it)
		}
		if ce.Existing == nil {
			ce.Existing = l.existing(ctx, inv.ID)
		}
		return false, "", ce
	case code(w.hash) == failed || code(w.check) == failed:
		// The content is taken (or the take-over lost a race): by whom, and did it fail?
		it := item(w.hash)
		if it == nil || w.takeOver != "" {
			if it, err = l.get(ctx, contentKey(inv.NIP, inv.InvoiceHash)); err != nil {
				return false, "", fmt.Errorf("ledger: create %s: read content claim: %w", inv.ID, err)
			}
		}
		owner := getS(it, attrInvoiceID)
		if owner == "" { // the claim went away meanwhile
			return true, "", nil
		}
		orig := l.existing(ctx, owner)
		if orig != nil && orig.Status == StatusFailed {
			return true, owner, nil
		}
		return false, "", &ConflictError{Kind: ConflictContent, InvoiceID: owner, Existing: orig}
	}
	for _, r := range reasons {
		if aws.ToString(r.Code) == "TransactionConflict" {
			return true, w.takeOver, nil
		}
	}
	return false, "", nil
}

// existing reads an invoice for a ConflictError; nil if it cannot be read.
func (l *Ledger) existing(ctx context.Context, id string) *Invoice {
	if id == "" {
		return nil
	}
	inv, err := l.Get(ctx, id)
	if err != nil {
		return nil
	}
	return inv
}

// write is Create's transaction and the index of each of its items (-1 if absent).
type write struct {
	inv                     Invoice
	opts                    *CreateOptions
	takeOver                string
	items                   []types.TransactWriteItem
	inv0, hash, check, idem int
}

func newWrite(table string, inv Invoice, claimContent bool, takeOver string, opts *CreateOptions, now time.Time) *write {
	w := &write{inv: inv, opts: opts, takeOver: takeOver, hash: -1, check: -1, idem: -1}
	notExists := "attribute_not_exists(#pk)"
	pkName := map[string]string{"#pk": attrPK}
	add := func(tw types.TransactWriteItem) int {
		w.items = append(w.items, tw)
		return len(w.items) - 1
	}
	w.inv0 = add(types.TransactWriteItem{Put: &types.Put{
		TableName:                           aws.String(table),
		Item:                                encodeInvoice(&inv),
		ConditionExpression:                 aws.String(notExists),
		ExpressionAttributeNames:            pkName,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}})
	if claimContent {
		put := &types.Put{
			TableName: aws.String(table),
			Item: map[string]types.AttributeValue{
				attrPK:          str(contentKey(inv.NIP, inv.InvoiceHash)),
				attrKind:        str(kindContent),
				attrInvoiceID:   str(inv.ID),
				attrNIP:         str(inv.NIP),
				attrInvoiceHash: str(inv.InvoiceHash),
				attrCreatedAt:   str(formatTime(now)),
			},
			ConditionExpression:                 aws.String(notExists),
			ExpressionAttributeNames:            pkName,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}
		if takeOver != "" {
			put.ConditionExpression = aws.String("#invoiceId = :owner")
			put.ExpressionAttributeNames = map[string]string{"#invoiceId": attrInvoiceID}
			put.ExpressionAttributeValues = map[string]types.AttributeValue{":owner": str(takeOver)}
		}
		w.hash = add(types.TransactWriteItem{Put: put})
		if takeOver != "" {
			w.check = add(types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
				TableName:                 aws.String(table),
				Key:                       map[string]types.AttributeValue{attrPK: str(invoiceKey(takeOver))},
				ConditionExpression:       aws.String("#status = :failed"),
				ExpressionAttributeNames:  map[string]string{"#status": attrStatus},
				ExpressionAttributeValues: map[string]types.AttributeValue{":failed": str(string(StatusFailed))},
			}})
		}
	}
	if opts.IdempotencyKey != "" {
		item := map[string]types.AttributeValue{
			attrPK:        str(idempotencyKey(inv.NIP, opts.IdempotencyKey)),
			attrKind:      str(kindIdempotency),
			attrInvoiceID: str(inv.ID),
			attrNIP:       str(inv.NIP),
			attrCreatedAt: str(formatTime(now)),
		}
		if opts.RequestHash != "" {
			item[attrRequestHash] = str(opts.RequestHash)
		}
		w.idem = add(types.TransactWriteItem{Put: &types.Put{
			TableName:                           aws.String(table),
			Item:                                item,
			ConditionExpression:                 aws.String(notExists),
			ExpressionAttributeNames:            pkName,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}})
	}
	return w
}

// Change is what a pipeline step learnt about an invoice: its new status and the facts that go
// with it. Empty fields are left as they are.
type Change struct {
	Status Status
	// NIP and Object describe the invoice for an item this change creates: an execution
	// started by hand has no item until its first step records it (source "manual").
	NIP    string
	Object flow.S3Object

	InvoiceHash            string
	InvoiceNumber          string
	SessionReferenceNumber string
	InvoiceReferenceNumber string
	KSeFNumber             string
	AcquisitionDate        time.Time
	Reconciled             bool
	ResultKey              string
	UPOKey                 string
	// Reason is set for rejected, invalid and failed; accepting an invoice removes an old one.
	Reason        *Reason
	ExecutionName string
}

// Transition applies a change if the invoice's current status allows it (see Status): it
// returns the invoice after the change and true, or, when the change is not allowed (a retried
// step, a late failure after acceptance), the invoice as it is and false. Only submitted,
// accepted, rejected, invalid and failed can be set this way.
func (l *Ledger) Transition(ctx context.Context, id string, ch Change) (*Invoice, bool, error) {
	from, ok := transitions[ch.Status]
	switch {
	case !ValidID(id):
		return nil, false, fmt.Errorf("ledger: transition: invalid invoice id %q", id)
	case !ok:
		return nil, false, fmt.Errorf("ledger: transition %s: status %q cannot be set by a transition", id, ch.Status)
	}
	in := buildTransition(l.table, id, ch, from, l.now().UTC())
	out, err := l.api.UpdateItem(ctx, in)
	if err == nil {
		inv, err := decodeInvoice(out.Attributes)
		if err != nil {
			return nil, false, fmt.Errorf("ledger: transition %s to %s: %w", id, ch.Status, err)
		}
		return inv, true, nil
	}
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return nil, false, fmt.Errorf("ledger: transition %s to %s: %w", id, ch.Status, err)
	}
	if len(ccf.Item) > 0 {
		if inv, err := decodeInvoice(ccf.Item); err == nil {
			return inv, false, nil
		}
	}
	inv, err := l.Get(ctx, id)
	if err != nil {
		return nil, false, fmt.Errorf("ledger: transition %s to %s: %w", id, ch.Status, err)
	}
	return inv, false, nil
}

func buildTransition(table, id string, ch Change, from []Status, now time.Time) *dynamodb.UpdateItemInput {
	names := map[string]string{}
	values := map[string]types.AttributeValue{}
	var sets, removes []string
	name := func(attr string) string {
		names["#"+attr] = attr
		return "#" + attr
	}
	set := func(attr string, v types.AttributeValue) {
		values[":"+attr] = v
		sets = append(sets, name(attr)+" = :"+attr)
	}
	setIfAbsent := func(attr string, v types.AttributeValue) {
		values[":"+attr] = v
		n := name(attr)
		sets = append(sets, n+" = if_not_exists("+n+", :"+attr+")")
	}
	setIfAbsent(attrKind, str(kindInvoice))
	setIfAbsent(attrInvoiceID, str(id))
	setIfAbsent(attrSource, str(string(SourceManual)))
	setIfAbsent(attrCreatedAt, str(formatTime(now)))
	set(attrStatus, str(string(ch.Status)))
	set(attrUpdatedAt, str(formatTime(now)))
	values[":zero"], values[":one"] = num(0), num(1)
	sets = append(sets, name(attrVersion)+" = if_not_exists("+name(attrVersion)+", :zero) + :one")
	for attr, v := range map[string]string{attrNIP: ch.NIP, attrBucket: ch.Object.Bucket, attrObjectKey: ch.Object.Key, attrVersionID: ch.Object.VersionID, attrExecutionName: ch.ExecutionName} {
		if v != "" {
			setIfAbsent(attr, str(v))
		}
	}
	for attr, v := range map[string]string{
		attrInvoiceHash: ch.InvoiceHash, attrInvoiceNumber: ch.InvoiceNumber,
		attrSessionRef: ch.SessionReferenceNumber, attrInvoiceRef: ch.InvoiceReferenceNumber,
		attrKSeFNumber: ch.KSeFNumber, attrResultKey: ch.ResultKey, attrUPOKey: ch.UPOKey,
	} {
		if v != "" {
			set(attr, str(v))
		}
	}
	if !ch.AcquisitionDate.IsZero() {
		set(attrAcquisitionDate, str(formatTime(ch.AcquisitionDate)))
	}
	if ch.Reconciled {
		set(attrReconciled, &types.AttributeValueMemberBOOL{Value: true})
	}
	switch {
	case ch.Reason != nil:
		set(attrReason, encodeReason(ch.Reason))
	case ch.Status == StatusAccepted:
		removes = append(removes, name(attrReason))
	}
	slices.Sort(sets) // deterministic expressions (map iteration above)
	update := "SET " + strings.Join(sets, ", ")
	if len(removes) > 0 {
		update += " REMOVE " + strings.Join(removes, ", ")
	}

	cond := "attribute_not_exists(" + name(attrPK) + ") OR " + name(attrStatus) + " IN ("
	for i, s := range from {
		k := fmt.Sprintf(":from%d", i)
		values[k] = str(string(s))
		if i > 0 {
			cond += ", "
		}
		cond += k
	}
	cond += ")"
	return &dynamodb.UpdateItemInput{
		TableName:                           aws.String(table),
		Key:                                 map[string]types.AttributeValue{attrPK: str(invoiceKey(id))},
		UpdateExpression:                    aws.String(update),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            names,
		ExpressionAttributeValues:           values,
		ReturnValues:                        types.ReturnValueAllNew,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
}
