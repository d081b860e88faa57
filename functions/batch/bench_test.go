package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// BenchmarkSend10000 measures what one send invocation does for 10 000 waiting invoices, apart
// from AWS latency: list, read, hash and inspect each invoice, claim it, pack the batch (ZIP,
// SHA-256, AES-256-CBC per part), open the session, record the manifest and the submissions,
// upload the parts and close the session, against an in-process emulator (which also unpacks
// and verifies the package). S3 and the ledger are in memory; on AWS each invoice adds a
// ledger read, a transaction, an S3 read and a ledger update, 16 at a time (Workers). Run:
//
//	go test ./functions/batch -run '^$' -bench Send10000 -benchtime 1x
func BenchmarkSend10000(b *testing.B) {
	const n = 10_000
	for range b.N {
		b.StopTimer()
		h, srv := benchHandler(b, n)
		b.StartTimer()
		start := time.Now()
		raw, err := h.Handle(b.Context(), flow.BatchRequest{Action: flow.BatchSend, NIP: nip, ExecutionName: execA})
		if err != nil {
			b.Fatal(err)
		}
		out := raw.(flow.BatchSendResult)
		if out.Sent != n || len(out.Sessions) != 1 {
			b.Fatalf("sent %d in %d sessions", out.Sent, len(out.Sessions))
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/send")
		b.StopTimer()
		srv.Clock.Advance(time.Minute)
		start = time.Now()
		req := flow.BatchRequest{Action: flow.BatchPoll, NIP: nip, ExecutionName: execA, Session: &out.Sessions[0]}
		for {
			raw, err := h.Handle(b.Context(), req)
			if err != nil {
				b.Fatal(err)
			}
			p := raw.(flow.BatchPollResult)
			if p.Outcome == flow.BatchDone {
				break
			}
			req.Attempt, req.Cursor, req.Offset = p.Attempt, p.Cursor, p.Offset
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/poll-all")
		b.StartTimer()
	}
}

func benchHandler(b *testing.B, n int) (*handler, *emutest.Server) {
	srv := emutest.NewServerAt(b, emuStart, emulator.Config{})
	st := &stack{emu: srv}
	client := st.login(b)
	objects := &memS3{objects: map[string][]byte{}}
	base := invoice(b, "X")
	for i := range n {
		objects.objects[fmt.Sprintf("batch/%05d.xml", i)] = bytes.Replace(base, []byte("<P_2>X</P_2>"), fmt.Appendf(nil, "<P_2>BENCH/%05d</P_2>", i), 1)
	}
	cfg := config{
		Config:      lambdaenv.Config{Bucket: "bench", ResultPrefix: "results/", InboxPrefix: "inbox/", NIP: nip, LedgerTable: "bench"},
		BatchPrefix: "batch/", ManifestPrefix: "batch/manifests/", MaxInvoices: defaultMaxInvoices, MaxBytes: defaultMaxBytes,
		SessionInvoices: defaultSessionInvoices, PartSize: defaultPartSize, PageSize: defaultPageSize, ClaimTimeout: defaultClaimTimeout,
		Workers: defaultWorkers, Uploads: defaultUploadConcurrency,
	}
	return &handler{
		objects: objects,
		ledger:  &memLedger{items: map[string]*ledger.Invoice{}, hashes: map[string]string{}},
		clients: func(context.Context, string) (batchClient, error) { return client, nil },
		tokens:  &fakeTokens{},
		results: results.NewStore(objects, "bench", "results/"),
		cfg:     cfg,
		now:     srv.Clock.Now,
		log:     slog.New(slog.DiscardHandler),
	}, srv
}

// memS3 is an unversioned in-memory bucket (every object's version is "null", as S3 says).
type memS3 struct {
	mu      sync.Mutex
	objects map[string][]byte
}

func (m *memS3) ListObjectVersions(_ context.Context, in *s3.ListObjectVersionsInput, _ ...func(*s3.Options)) (*s3.ListObjectVersionsOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var keys []string
	for k := range m.objects {
		if strings.HasPrefix(k, aws.ToString(in.Prefix)) && k > aws.ToString(in.KeyMarker) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := &s3.ListObjectVersionsOutput{}
	if len(keys) > 1000 {
		keys = keys[:1000]
		out.IsTruncated, out.NextKeyMarker, out.NextVersionIdMarker = aws.Bool(true), aws.String(keys[999]), aws.String("null")
	}
	for _, k := range keys {
		out.Versions = append(out.Versions, s3types.ObjectVersion{Key: aws.String(k), VersionId: aws.String("null"), IsLatest: aws.Bool(true), Size: aws.Int64(int64(len(m.objects[k])))})
	}
	return out, nil
}

func (m *memS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.objects[aws.ToString(in.Key)]
	if !ok {
		return nil, &s3types.NoSuchKey{}
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(bytes.NewReader(b)), ContentLength: aws.Int64(int64(len(b)))}, nil
}

func (m *memS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	b, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.objects[aws.ToString(in.Key)] = b
	return &s3.PutObjectOutput{}, nil
}

// memLedger keeps the ledger's rules that a single run meets: an id and a content are taken in
// once; a transition sets the status.
type memLedger struct {
	mu     sync.Mutex
	items  map[string]*ledger.Invoice
	hashes map[string]string
}

func (l *memLedger) Get(_ context.Context, id string) (*ledger.Invoice, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	inv, ok := l.items[id]
	if !ok {
		return nil, ledger.ErrNotFound
	}
	c := *inv
	return &c, nil
}

func (l *memLedger) Create(_ context.Context, inv ledger.Invoice, _ *ledger.CreateOptions) (*ledger.Invoice, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.items[inv.ID]; ok {
		return nil, &ledger.ConflictError{Kind: ledger.ConflictID, InvoiceID: inv.ID}
	}
	if owner, ok := l.hashes[inv.InvoiceHash]; ok && inv.Status == ledger.StatusReceived {
		return nil, &ledger.ConflictError{Kind: ledger.ConflictContent, InvoiceID: owner}
	}
	if inv.Status == ledger.StatusReceived {
		l.hashes[inv.InvoiceHash] = inv.ID
	}
	c := inv
	l.items[inv.ID] = &c
	return &inv, nil
}

func (l *memLedger) Transition(_ context.Context, id string, ch ledger.Change) (*ledger.Invoice, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	inv, ok := l.items[id]
	if !ok {
		return nil, false, ledger.ErrNotFound
	}
	inv.Status, inv.SessionReferenceNumber = ch.Status, ch.SessionReferenceNumber
	c := *inv
	return &c, true, nil
}
