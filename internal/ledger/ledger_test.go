package ledger

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/motoserver"
)

func TestMain(m *testing.M) { motoserver.Main(m) }

const (
	nip        = "9999999999"
	otherNIP   = "5265877635"
	bucket     = "ksef-invoices-123456789012"
	hashA      = "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA="
	hashB      = "m2cD6Uq8Dq6I3vBJwQ8bm9F3Vn1+7d3S6OQhLl9e3xk="
	ksefNumber = "9999999999-20260302-0100001AF629-AF"
	sessionRef = "20260302-SO-2C3E6C8000-A1B2C3D4E5-7F"
	invoiceRef = "20260302-EE-2C3E6C8000-1A2B3C4D5E-11"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// clock is a test clock that moves a second per reading.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// backend is a table the scenarios run against: the in-memory fake, or a table in moto.
type backend struct {
	api  API
	fake *fakeDB // nil for moto
	name string
}

var tables atomic.Int64

// forEachBackend runs fn against the fake and against a fresh table in moto.
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Helper()
	t.Run("fake", func(t *testing.T) {
		f := newFakeDB()
		fn(t, backend{api: f, fake: f, name: "invoices"})
	})
	t.Run("moto", func(t *testing.T) {
		b := motoTable(t)
		fn(t, b)
	})
}

// motoTable creates a table shaped as template.yaml's LedgerTable in moto.
func motoTable(t *testing.T) backend {
	t.Helper()
	srv := motoserver.Start(t)
	cfg := motoserver.AWSConfig(t, srv.Endpoint)
	// moto does not apply a conditional write atomically: concurrent requests can both pass
	// the condition. DynamoDB does, so the concurrency tests send one request at a time.
	cfg.HTTPClient = motoserver.SerialHTTPClient()
	db := dynamodb.NewFromConfig(cfg)
	name := fmt.Sprintf("ledger-test-%d", tables.Add(1))
	_, err := db.CreateTable(t.Context(), &dynamodb.CreateTableInput{
		TableName:            aws.String(name),
		AttributeDefinitions: []types.AttributeDefinition{{AttributeName: aws.String("pk"), AttributeType: types.ScalarAttributeTypeS}},
		KeySchema:            []types.KeySchemaElement{{AttributeName: aws.String("pk"), KeyType: types.KeyTypeHash}},
		BillingMode:          types.BillingModePayPerRequest,
	})
	if err != nil {
		t.Fatalf("create table %s: %v", name, err)
	}
	return backend{api: db, name: name}
}

func newLedger(b backend, opts ...Option) *Ledger {
	c := &clock{t: t0}
	return New(b.api, b.name, append([]Option{WithClock(c.now), WithWait(func(context.Context, time.Duration) error { return nil })}, opts...)...)
}

func received(id string, hash string) Invoice {
	return Invoice{
		ID: id, NIP: nip, Source: SourceS3, Status: StatusReceived, InvoiceHash: hash, ExecutionName: id,
		Object: flow.S3Object{Bucket: bucket, Key: "inbox/" + id + ".xml", VersionID: "v-" + id},
	}
}

func mustCreate(t *testing.T, l *Ledger, inv Invoice, opts *CreateOptions) *Invoice {
	t.Helper()
	got, err := l.Create(t.Context(), inv, opts)
	if err != nil {
		t.Fatalf("Create(%s): %v", inv.ID, err)
	}
	return got
}

func conflict(t *testing.T, err error, kind Conflict, sentinel error, owner string) *ConflictError {
	t.Helper()
	var ce *ConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v, want a *ConflictError", err)
	}
	if ce.Kind != kind || ce.InvoiceID != owner || !errors.Is(err, sentinel) {
		t.Fatalf("conflict %+v (%v), want kind %s held by %s, matching %v", ce, err, kind, owner, sentinel)
	}
	return ce
}

func TestIDs(t *testing.T) {
	a := ObjectID(bucket, "inbox/a.xml", "v1")
	for _, tt := range []struct {
		name, got string
		want      bool
	}{
		{"object id", a, true},
		{"request id", RequestID(nip, "order-17"), true},
		{"uppercase", strings.ToUpper(a), false},
		{"unknown source", "ftp-" + a[3:], false},
		{"short", a[:len(a)-1], false},
		{"uuid execution name", "6f1c2e1e-9b7a-4d55-8d8f-0d7c1f5f6a10", false},
	} {
		if ValidID(tt.got) != tt.want {
			t.Errorf("%s: ValidID(%q) = %t, want %t", tt.name, tt.got, !tt.want, tt.want)
		}
	}
	if len(a) != 29 || !strings.HasPrefix(a, "s3-") {
		t.Errorf("ObjectID = %q, want s3- and 26 characters", a)
	}
	distinct := map[string]string{}
	for _, parts := range [][3]string{
		{bucket, "inbox/a.xml", "v1"}, {bucket, "inbox/a.xml", "v2"}, {bucket, "inbox/b.xml", "v1"},
		{"other", "inbox/a.xml", "v1"}, {bucket + "inbox/a.xml", "", "v1"}, {bucket, "inbox/a.xmlv1", ""},
	} {
		id := ObjectID(parts[0], parts[1], parts[2])
		if prev, dup := distinct[id]; dup {
			t.Errorf("ObjectID%q = ObjectID%s = %s", parts, prev, id)
		}
		distinct[id] = fmt.Sprintf("%q", parts)
	}
	if ObjectID(bucket, "inbox/a.xml", "v1") != a {
		t.Error("ObjectID is not deterministic")
	}
	if RequestID(nip, "k") == RequestID(otherNIP, "k") {
		t.Error("RequestID ignores the NIP")
	}
	r1, err1 := NewID(SourceAPI)
	r2, err2 := NewID(SourceAPI)
	if err1 != nil || err2 != nil || r1 == r2 || !ValidID(r1) || !strings.HasPrefix(r1, "api-") {
		t.Errorf("NewID: %q, %q (%v, %v), want two distinct api- ids", r1, r2, err1, err2)
	}
	if _, err := NewID("ftp"); err == nil {
		t.Error("NewID(ftp) succeeded")
	}
	obj := flow.S3Object{Bucket: bucket, Key: "inbox/a.xml", VersionID: "v1"}
	if got := IDFor(r1, obj); got != r1 {
		t.Errorf("IDFor(invoice id) = %s, want the name", got)
	}
	if got := IDFor("6f1c2e1e-9b7a-4d55-8d8f-0d7c1f5f6a10", obj); got != a {
		t.Errorf("IDFor(uuid) = %s, want the object's id %s", got, a)
	}
}

func TestCreateAndGet(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		l := newLedger(b)
		in := received(ObjectID(bucket, "inbox/a.xml", "v1"), hashA)
		in.InvoiceNumber = "FV2026/02/150"
		in.Reason = &Reason{Stage: "send", Code: 21405, Message: "opis", Details: []string{"a", "b"}}
		got := mustCreate(t, l, in, nil)
		if got.Version != 1 || got.CreatedAt.IsZero() || !got.CreatedAt.Equal(got.UpdatedAt) {
			t.Errorf("created %+v, want version 1 and equal timestamps", got)
		}
		read, err := l.Get(t.Context(), in.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(read, got) {
			t.Errorf("Get = %+v,\nwant %+v", read, got)
		}
		if _, err := l.Get(t.Context(), ObjectID(bucket, "missing", "")); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(missing) error %v, want ErrNotFound", err)
		}
	})
}

func TestCreateRejectsBadInput(t *testing.T) {
	l := newLedger(backend{api: newFakeDB(), name: "t"})
	ok := received(ObjectID(bucket, "k", "v"), hashA)
	for name, inv := range map[string]Invoice{
		"bad id":     func() Invoice { i := ok; i.ID = "INV-1"; return i }(),
		"bad source": func() Invoice { i := ok; i.Source = "ftp"; return i }(),
		"bad status": func() Invoice { i := ok; i.Status = "pending"; return i }(),
	} {
		if _, err := l.Create(t.Context(), inv, nil); err == nil {
			t.Errorf("%s: Create succeeded", name)
		}
	}
	noNIP := ok
	noNIP.NIP = ""
	if _, err := l.Create(t.Context(), noNIP, &CreateOptions{IdempotencyKey: "k"}); err == nil {
		t.Error("an idempotency key without a NIP was accepted")
	}
}

func TestCreateClaims(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		l := newLedger(b)
		first := mustCreate(t, l, received(ObjectID(bucket, "inbox/a.xml", "v1"), hashA), nil)

		// The same object version again (a second delivery of its event).
		_, err := l.Create(ctx, received(first.ID, hashA), nil)
		ce := conflict(t, err, ConflictID, ErrExists, first.ID)
		if ce.Existing == nil || ce.Existing.Version != 1 || ce.Existing.Object != first.Object {
			t.Errorf("existing %+v, want the first invoice", ce.Existing)
		}

		// The same bytes as another object (a repeated upload).
		again := received(ObjectID(bucket, "inbox/a.xml", "v2"), hashA)
		_, err = l.Create(ctx, again, nil)
		ce = conflict(t, err, ConflictContent, ErrDuplicateContent, first.ID)
		if ce.Existing == nil || ce.Existing.ID != first.ID {
			t.Errorf("existing %+v, want the first invoice", ce.Existing)
		}
		if _, err := l.Get(ctx, again.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("a cancelled transaction left the invoice: %v", err)
		}
		// It is recorded as a duplicate upload, which claims no content.
		dup := again
		dup.Status, dup.DuplicateOf = StatusDuplicateUpload, first.ID
		mustCreate(t, l, dup, nil)
		// Invalid invoices claim no content either.
		inv := received(ObjectID(bucket, "inbox/a.xml", "v3"), hashA)
		inv.Status, inv.Reason = StatusInvalid, &Reason{Stage: "ingest", Message: "too large"}
		mustCreate(t, l, inv, nil)

		// Other content, and the same content for another NIP, are new invoices.
		mustCreate(t, l, received(ObjectID(bucket, "inbox/b.xml", "v1"), hashB), nil)
		other := received(ObjectID(bucket, "inbox/5265877635/a.xml", "v1"), hashA)
		other.NIP = otherNIP
		mustCreate(t, l, other, nil)
	})
}

func TestCreateIdempotencyKey(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		l := newLedger(b)
		id := RequestID(nip, "order-17")
		inv := received(id, hashA)
		inv.Source = SourceAPI
		mustCreate(t, l, inv, &CreateOptions{IdempotencyKey: "order-17", RequestHash: "req-1"})

		// The retried request: the key is reported first, with the stored request hash.
		_, err := l.Create(ctx, inv, &CreateOptions{IdempotencyKey: "order-17", RequestHash: "req-1"})
		ce := conflict(t, err, ConflictIdempotencyKey, ErrIdempotencyKeyUsed, id)
		if ce.RequestHash != "req-1" || ce.Existing == nil || ce.Existing.ID != id {
			t.Errorf("conflict %+v, want request hash req-1 and the invoice", ce)
		}
		// The key reused by another request under another id.
		other := received(RequestID(nip, "other"), hashB)
		_, err = l.Create(ctx, other, &CreateOptions{IdempotencyKey: "order-17", RequestHash: "req-2"})
		conflict(t, err, ConflictIdempotencyKey, ErrIdempotencyKeyUsed, id)
		if _, err := l.Get(ctx, other.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("the invoice was written despite the conflict: %v", err)
		}
		// The same key for another NIP is another key.
		third := received(RequestID(otherNIP, "order-17"), hashB)
		third.NIP = otherNIP
		mustCreate(t, l, third, &CreateOptions{IdempotencyKey: "order-17", RequestHash: "req-1"})
	})
}

func TestCreateTakesOverFailedContent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		l := newLedger(b)
		first := mustCreate(t, l, received(ObjectID(bucket, "inbox/a.xml", "v1"), hashA), nil)
		if _, changed, err := l.Transition(ctx, first.ID, Change{Status: StatusFailed, Reason: &Reason{Message: "KSeF unavailable"}}); err != nil || !changed {
			t.Fatalf("Transition to failed: %v, %t", err, changed)
		}
		// Uploading it again retries it.
		retry := mustCreate(t, l, received(ObjectID(bucket, "inbox/a.xml", "v2"), hashA), nil)
		// Now the retry holds the content: a third upload is its duplicate.
		_, err := l.Create(ctx, received(ObjectID(bucket, "inbox/a.xml", "v3"), hashA), nil)
		conflict(t, err, ConflictContent, ErrDuplicateContent, retry.ID)

		// Content whose invoice was rejected is not taken over.
		rej := mustCreate(t, l, received(ObjectID(bucket, "inbox/r.xml", "v1"), hashB), nil)
		if _, _, err := l.Transition(ctx, rej.ID, Change{Status: StatusRejected, Reason: &Reason{Code: 450, Message: "semantyka"}}); err != nil {
			t.Fatal(err)
		}
		_, err = l.Create(ctx, received(ObjectID(bucket, "inbox/r.xml", "v2"), hashB), nil)
		conflict(t, err, ConflictContent, ErrDuplicateContent, rej.ID)
	})
}

var allStatuses = []Status{StatusReceived, StatusSubmitted, StatusAccepted, StatusRejected, StatusInvalid, StatusFailed, StatusDuplicateUpload}

// TestTransitionMatrix sets every status a transition may set on an invoice in every status.
func TestTransitionMatrix(t *testing.T) {
	allowed := func(from, to Status) bool {
		switch {
		case from == StatusAccepted, from == StatusDuplicateUpload: // never replaced
			return false
		case from == to: // a retried step
			return to == StatusSubmitted
		case from.Final() && !to.Final(): // final is never replaced by in progress
			return false
		}
		return true
	}
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		l := newLedger(b)
		n := 0
		for _, from := range allStatuses {
			for _, to := range []Status{StatusSubmitted, StatusAccepted, StatusRejected, StatusInvalid, StatusFailed} {
				n++
				inv := received(ObjectID(bucket, fmt.Sprintf("inbox/%d.xml", n), "v1"), "")
				inv.Status = from
				if from == StatusRejected {
					inv.Reason = &Reason{Code: 450, Message: "old reason"}
				}
				before := mustCreate(t, l, inv, nil)
				ch := Change{Status: to, KSeFNumber: ksefNumber, SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef}
				if to != StatusSubmitted && to != StatusAccepted {
					ch.KSeFNumber, ch.Reason = "", &Reason{Stage: "ksef", Code: 440, Message: "new reason", Details: []string{"x"}}
				}
				got, changed, err := l.Transition(ctx, inv.ID, ch)
				if err != nil {
					t.Fatalf("%s -> %s: %v", from, to, err)
				}
				want := allowed(from, to)
				if changed != want {
					t.Errorf("%s -> %s: changed %t, want %t", from, to, changed, want)
					continue
				}
				stored, err := l.Get(ctx, inv.ID)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(stored, got) {
					t.Errorf("%s -> %s: returned %+v, stored %+v", from, to, got, stored)
				}
				if !want {
					if !reflect.DeepEqual(got, before) {
						t.Errorf("%s -> %s: a refused transition changed the item:\n%+v\nwas\n%+v", from, to, got, before)
					}
					continue
				}
				switch {
				case got.Status != to, got.Version != 2, !got.UpdatedAt.After(before.UpdatedAt), !got.CreatedAt.Equal(before.CreatedAt):
					t.Errorf("%s -> %s: %+v, want status %s, version 2, newer updatedAt, same createdAt", from, to, got, to)
				case got.SessionReferenceNumber != sessionRef || got.Source != SourceS3 || got.Object != before.Object:
					t.Errorf("%s -> %s: facts not kept or set: %+v", from, to, got)
				case to == StatusAccepted && (got.Reason != nil || got.KSeFNumber != ksefNumber):
					t.Errorf("%s -> accepted: %+v, want the KSeF number and no reason", from, got)
				case to.Final() && to != StatusAccepted && (got.Reason == nil || got.Reason.Message != "new reason" || got.Reason.Code != 440):
					t.Errorf("%s -> %s: reason %+v, want the new one", from, to, got.Reason)
				}
			}
		}
	})
}

func TestTransitionCreatesManualItem(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		ctx := t.Context()
		l := newLedger(b)
		obj := flow.S3Object{Bucket: bucket, Key: "inbox/manual.xml", VersionID: "v9"}
		id := IDFor("a-console-execution", obj)
		got, changed, err := l.Transition(ctx, id, Change{Status: StatusSubmitted, NIP: nip, Object: obj, ExecutionName: "a-console-execution",
			InvoiceHash: hashA, InvoiceNumber: "FV1", SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef})
		if err != nil || !changed {
			t.Fatalf("Transition: %v, %t", err, changed)
		}
		want := &Invoice{ID: id, NIP: nip, Source: SourceManual, Object: obj, InvoiceHash: hashA, InvoiceNumber: "FV1", Status: StatusSubmitted,
			SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef, ExecutionName: "a-console-execution",
			CreatedAt: got.CreatedAt, UpdatedAt: got.CreatedAt, Version: 1}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Transition created %+v,\nwant %+v", got, want)
		}
		// Later changes do not rewrite where the invoice is or who started it.
		acq := t0.Add(3*time.Second + 120*time.Millisecond)
		got, _, err = l.Transition(ctx, id, Change{Status: StatusAccepted, NIP: otherNIP, Object: flow.S3Object{Bucket: "x", Key: "y"}, ExecutionName: "other",
			KSeFNumber: ksefNumber, AcquisitionDate: acq, Reconciled: true, ResultKey: "results/r.json", UPOKey: "results/u.xml"})
		if err != nil {
			t.Fatal(err)
		}
		if got.NIP != nip || got.Object != obj || got.ExecutionName != "a-console-execution" || got.Version != 2 ||
			!got.AcquisitionDate.Equal(acq) || !got.Reconciled || got.UPOKey != "results/u.xml" {
			t.Errorf("after acceptance %+v", got)
		}
	})
}

func TestTransitionRejectsBadInput(t *testing.T) {
	l := newLedger(backend{api: newFakeDB(), name: "t"})
	if _, _, err := l.Transition(t.Context(), "INV-1", Change{Status: StatusAccepted}); err == nil {
		t.Error("a bad id was accepted")
	}
	for _, s := range []Status{StatusReceived, StatusDuplicateUpload, "pending"} {
		if _, _, err := l.Transition(t.Context(), ObjectID(bucket, "k", ""), Change{Status: s}); err == nil {
			t.Errorf("Transition to %q succeeded", s)
		}
	}
}

// TestConcurrentCreate races writers of the same invoice (duplicate deliveries) and of the same
// content (repeated uploads): exactly one wins each race.
func TestConcurrentCreate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		l := newLedger(b)
		const writers = 6
		for round, sameID := range []bool{true, false} {
			var wg sync.WaitGroup
			errs := make([]error, writers)
			for i := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					id := ObjectID(bucket, fmt.Sprintf("inbox/race-%d.xml", round), "v1")
					if !sameID {
						id = ObjectID(bucket, fmt.Sprintf("inbox/race-%d.xml", round), fmt.Sprintf("v%d", i))
					}
					_, errs[i] = l.Create(t.Context(), received(id, fmt.Sprintf("round-%d-hash", round)), nil)
				}()
			}
			wg.Wait()
			wins := 0
			for _, err := range errs {
				var ce *ConflictError
				switch {
				case err == nil:
					wins++
				case errors.As(err, &ce):
				default:
					t.Errorf("round %d: unexpected error %v", round, err)
				}
			}
			if wins != 1 {
				t.Errorf("round %d (same id %t): %d writers won, want 1: %v", round, sameID, wins, errs)
			}
		}
	})
}

// TestConcurrentOutcomes races an acceptance and a late failure of the same invoice: whatever
// the order, it ends accepted.
func TestConcurrentOutcomes(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		l := newLedger(b)
		for i := range 5 {
			inv := mustCreate(t, l, received(ObjectID(bucket, fmt.Sprintf("inbox/o-%d.xml", i), "v1"), ""), nil)
			var wg sync.WaitGroup
			for _, s := range []Status{StatusAccepted, StatusFailed, StatusRejected} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ch := Change{Status: s, KSeFNumber: ksefNumber}
					if s != StatusAccepted {
						ch = Change{Status: s, Reason: &Reason{Message: "late"}}
					}
					if _, _, err := l.Transition(t.Context(), inv.ID, ch); err != nil {
						t.Errorf("Transition to %s: %v", s, err)
					}
				}()
			}
			wg.Wait()
			got, err := l.Get(t.Context(), inv.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status != StatusAccepted || got.Reason != nil || got.KSeFNumber != ksefNumber {
				t.Errorf("round %d: ended %s (reason %+v), want accepted without a reason", i, got.Status, got.Reason)
			}
		}
	})
}

// TestCreateRetriesTransactionConflicts uses the fake to answer TransactionConflict, which
// DynamoDB returns when another transaction holds one of the items.
func TestCreateRetriesTransactionConflicts(t *testing.T) {
	conflicted := func(n int) *types.TransactionCanceledException {
		r := make([]types.CancellationReason, n)
		for i := range r {
			r[i] = types.CancellationReason{Code: aws.String("None")}
		}
		r[n-1].Code = aws.String("TransactionConflict")
		return &types.TransactionCanceledException{Message: aws.String("Transaction cancelled"), CancellationReasons: r}
	}
	for _, tt := range []struct {
		name      string
		conflicts int
		wantErr   bool
		wantWaits int
	}{
		{"one conflict", 1, false, 1},
		{"three conflicts", 3, false, 3},
		{"conflicting throughout", 10, true, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDB()
			left := tt.conflicts
			f.beforeTransact = func(in *dynamodb.TransactWriteItemsInput) error {
				if left == 0 {
					return nil
				}
				left--
				return conflicted(len(in.TransactItems))
			}
			var waits []time.Duration
			l := newLedger(backend{api: f, fake: f, name: "t"}, WithWait(func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return nil
			}))
			inv := received(ObjectID(bucket, "inbox/a.xml", "v1"), hashA)
			_, err := l.Create(t.Context(), inv, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Create error %v, want error %t", err, tt.wantErr)
			}
			if len(waits) != tt.wantWaits {
				t.Errorf("waited %d times (%v), want %d", len(waits), waits, tt.wantWaits)
			}
			for i, d := range waits {
				if d < 0 || d >= baseDelay<<i {
					t.Errorf("wait %d = %v, want in [0, %v)", i, d, baseDelay<<i)
				}
			}
			if !tt.wantErr && f.item(invoiceKey(inv.ID)) == nil {
				t.Error("invoice not written after the conflicts cleared")
			}
		})
	}
	t.Run("cancelled context", func(t *testing.T) {
		f := newFakeDB()
		f.beforeTransact = func(in *dynamodb.TransactWriteItemsInput) error { return conflicted(len(in.TransactItems)) }
		l := newLedger(backend{api: f, name: "t"}, WithWait(func(context.Context, time.Duration) error { return context.Canceled }))
		if _, err := l.Create(t.Context(), received(ObjectID(bucket, "k", "v"), hashA), nil); !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
	})
}

// TestCreateTakeOverRace: while an upload takes over failed content, another upload takes it
// over first; the loser is a duplicate of the winner.
func TestCreateTakeOverRace(t *testing.T) {
	f := newFakeDB()
	l := newLedger(backend{api: f, fake: f, name: "t"})
	ctx := t.Context()
	first := mustCreate(t, l, received(ObjectID(bucket, "inbox/a.xml", "v1"), hashA), nil)
	if _, _, err := l.Transition(ctx, first.ID, Change{Status: StatusFailed, Reason: &Reason{Message: "down"}}); err != nil {
		t.Fatal(err)
	}
	winner := received(ObjectID(bucket, "inbox/a.xml", "v2"), hashA)
	raced := false
	f.beforeTransact = func(in *dynamodb.TransactWriteItemsInput) error {
		// When the loser's take-over transaction comes, the winner's lands first.
		if !raced && len(in.TransactItems) == 3 && keyOf(in.TransactItems[0].Put.Item) != invoiceKey(winner.ID) {
			raced = true
			if _, err := l.Create(ctx, winner, nil); err != nil {
				t.Errorf("winner: %v", err)
			}
		}
		return nil
	}
	_, err := l.Create(ctx, received(ObjectID(bucket, "inbox/a.xml", "v3"), hashA), nil)
	if !raced {
		t.Fatal("the race did not happen")
	}
	conflict(t, err, ConflictContent, ErrDuplicateContent, winner.ID)
}

func TestStatusFinal(t *testing.T) {
	var final []Status
	for _, s := range allStatuses {
		if s.Final() {
			final = append(final, s)
		}
	}
	want := []Status{StatusAccepted, StatusRejected, StatusInvalid, StatusFailed, StatusDuplicateUpload}
	if !slices.Equal(final, want) {
		t.Errorf("final statuses %v, want %v", final, want)
	}
}
