package results_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	nip        = "9999999999"
	bucket     = "ksef-invoices-123456789012"
	ksefNumber = "9999999999-20260302-0100001AF629-AF"
	sessionRef = "20260302-SB-2C3E6C8000-A1B2C3D4E5-7F"
	invoiceRef = "20260302-EE-2C3E6C8000-1A2B3C4D5E-11"
	// The official sample FA_3_Przyklad_1.xml: its invoiceHash and QR code I on TEST
	// (PROTOCOL.md, self-computed test vectors).
	sampleHash = "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA="
	sampleQR   = "https://qr-test.ksef.mf.gov.pl/invoice/9999999999/15-02-2026/X-wQflQVyRs1fImlI-xDPnWk1V37hys4O1lkx9iJbSA"
)

var (
	t0  = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	obj = flow.S3Object{Bucket: bucket, Key: "batch/2026/03/FA_3_Przyklad_1.xml", VersionID: "v1"}
	sub = &flow.Submission{
		SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: invoiceRef, InvoiceHash: sampleHash,
		InvoiceSize: 3387, InvoiceNumber: "FV2026/02/150", IssueDate: "2026-02-15", SentAt: t0,
	}
)

// putter records PutObject calls, or fails them.
type putter struct {
	mu   sync.Mutex
	puts []put
	err  error
}

type put struct {
	bucket, key, contentType string
	body                     []byte
}

func (p *putter) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return nil, p.err
	}
	b, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	p.puts = append(p.puts, put{aws.ToString(in.Bucket), aws.ToString(in.Key), aws.ToString(in.ContentType), b})
	return &s3.PutObjectOutput{}, nil
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test -update rewrites it)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

// TestDocuments pins the JSON of every document a reader of the bucket may depend on: the
// functions that send online and in batches both write exactly these.
func TestDocuments(t *testing.T) {
	acquired := time.Date(2026, 3, 2, 10, 0, 3, 120_000_000, time.UTC)
	st := &ksef.InvoiceStatus{
		KSeFNumber: ksefNumber, ReferenceNumber: invoiceRef, AcquisitionDate: acquired,
		InvoicingDate: t0.Add(-5 * time.Second), PermanentStorageDate: acquired.Add(time.Second),
		InvoicingMode: "Online", Status: ksef.Status{Code: 200, Description: "Sukces"},
	}
	accepted := results.NewResult(results.StatusAccepted, nip, obj, sub, st, t0.In(time.FixedZone("CET", 3600)))
	accepted.UPO = &results.UPO{Key: "results/" + obj.Key + results.UPOSuffix, Hash: "dGhlLXVwby1oYXNo"}
	accepted.QRCodeURL = results.VerificationURL("https://qr-test.ksef.mf.gov.pl", nip, sub)

	dupStatus := &ksef.InvoiceStatus{ReferenceNumber: invoiceRef, Status: ksef.Status{Code: 440, Description: "Duplikat faktury"}}
	duplicate := results.NewResult(results.StatusDuplicate, nip, obj, sub, dupStatus, t0)
	duplicate.KSeFNumber, duplicate.OriginalSessionReferenceNumber = ksefNumber, "20260301-SO-2C3E6C8000-B1B2C3D4E5-0A"

	report := results.Report{
		Status: results.StatusRejected, Error: "RejectedError",
		Reason: flow.Reason{Stage: "ksef", Message: "KSeF rejected the invoice: Błąd weryfikacji semantyki dokumentu faktury", Code: 450, Details: []string{"Element P_15: brak."}},
		NIP:    nip, Invoice: obj, InvoiceID: "s3-abcdefghijklmnopqrstuvwxyz", Submission: sub, RecordedAt: t0,
	}
	notice := results.DuplicateNotice{
		Status: "duplicate-upload", NIP: nip, Invoice: obj, InvoiceID: "s3-bbcdefghijklmnopqrstuvwxyz",
		InvoiceHash: sampleHash, DuplicateOf: "s3-abcdefghijklmnopqrstuvwxyz", KSeFNumber: ksefNumber,
		Original: &results.OriginalInvoice{Status: "accepted", Invoice: flow.S3Object{Bucket: bucket, Key: "inbox/a.xml", VersionID: "v0"}, ResultKey: "results/inbox/a.xml.result.json"},
		Message:  "the same invoice content was already taken in as s3-abcdefghijklmnopqrstuvwxyz; this upload is not sent to KSeF", RecordedAt: t0,
	}
	for name, doc := range map[string]any{
		"result_accepted.json": accepted, "result_duplicate.json": duplicate,
		"report_rejected.json": report, "duplicate_notice.json": notice,
	} {
		t.Run(name, func(t *testing.T) {
			p := &putter{}
			s := results.NewStore(p, bucket, "results/")
			if err := s.PutJSON(t.Context(), "results/x.json", doc); err != nil {
				t.Fatal(err)
			}
			if len(p.puts) != 1 || p.puts[0].contentType != "application/json" || p.puts[0].bucket != bucket {
				t.Fatalf("puts %+v, want one application/json object in %s", p.puts, bucket)
			}
			golden(t, name, p.puts[0].body)
		})
	}
	if accepted.QRCodeURL != sampleQR {
		t.Errorf("QR code I %q, want %q", accepted.QRCodeURL, sampleQR)
	}
}

func TestVerificationURLWithoutWhatItNeeds(t *testing.T) {
	for _, s := range []*flow.Submission{
		{InvoiceHash: sampleHash},
		{IssueDate: "15.02.2026", InvoiceHash: sampleHash},
		{IssueDate: "2026-02-15", InvoiceHash: "not-base64"},
	} {
		if got := results.VerificationURL("https://qr-test.ksef.mf.gov.pl", nip, s); got != "" {
			t.Errorf("VerificationURL(%+v) = %q, want \"\"", s, got)
		}
	}
}

func TestStore(t *testing.T) {
	p := &putter{}
	s := results.NewStore(p, bucket, "results/")
	if got, want := s.Key(obj, results.ErrorSuffix), "results/batch/2026/03/FA_3_Przyklad_1.xml.error.json"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	if s.Bucket() != bucket {
		t.Errorf("Bucket = %q, want %q", s.Bucket(), bucket)
	}
	upo := []byte("<Potwierdzenie>\r\n</Potwierdzenie>")
	if err := s.PutXML(t.Context(), "results/a.upo.xml", upo); err != nil {
		t.Fatal(err)
	}
	if got := p.puts[0]; got.contentType != "application/xml" || !bytes.Equal(got.body, upo) || got.key != "results/a.upo.xml" {
		t.Errorf("PutXML stored %+v, want the bytes as they are, application/xml", got)
	}

	p.err = &smithy.GenericAPIError{Code: "SlowDown", Message: "Please reduce your request rate."}
	err := s.PutJSON(t.Context(), "results/b.result.json", map[string]int{"a": 1})
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || !strings.Contains(err.Error(), "store s3://"+bucket+"/results/b.result.json") {
		t.Errorf("PutJSON error %v, want the S3 error wrapped with the object's address", err)
	}
	if err := s.PutJSON(t.Context(), "results/c.json", func() {}); err == nil || !strings.Contains(err.Error(), "encode results/c.json") {
		t.Errorf("PutJSON of a function: %v, want an encoding error", err)
	}
}

// upoSource is a fake KSeF client for FetchUPO.
type upoSource struct {
	calls    []string
	download func(string) (*ksef.Document, error)
	byNumber func(string, string) (*ksef.Document, error)
}

func (u *upoSource) Download(_ context.Context, url string) (*ksef.Document, error) {
	u.calls = append(u.calls, "Download")
	return u.download(url)
}

func (u *upoSource) InvoiceUPOByKSeFNumber(_ context.Context, s, n string) (*ksef.Document, error) {
	u.calls = append(u.calls, "InvoiceUPOByKSeFNumber "+s+" "+n)
	return u.byNumber(s, n)
}

func TestFetchUPO(t *testing.T) {
	const link = "https://upo.example/x?sig=SECRET-signature"
	doc := &ksef.Document{Content: []byte("<Potwierdzenie/>"), Hash: "h"}
	ok := func(string) (*ksef.Document, error) { return doc, nil }
	okBy := func(string, string) (*ksef.Document, error) { return doc, nil }
	failing := func(string) (*ksef.Document, error) { return nil, errors.New("ksef: Download: HTTP 403") }
	notReady := &ksef.APIError{Op: "InvoiceUPOByKSeFNumber", StatusCode: 400, Details: []ksef.ExceptionDetail{{Code: ksef.CodeUPONotFound}}}
	tests := []struct {
		name      string
		url       string
		src       *upoSource
		wantCalls []string
		wantErr   error
	}{
		{"pre-signed link", link, &upoSource{download: ok}, []string{"Download"}, nil},
		{"link failing: the API", link, &upoSource{download: failing, byNumber: okBy}, []string{"Download", "InvoiceUPOByKSeFNumber " + sessionRef + " " + ksefNumber}, nil},
		{"no link: the API", "", &upoSource{byNumber: okBy}, []string{"InvoiceUPOByKSeFNumber " + sessionRef + " " + ksefNumber}, nil},
		{"not generated yet", "", &upoSource{byNumber: func(string, string) (*ksef.Document, error) { return nil, notReady }}, []string{"InvoiceUPOByKSeFNumber " + sessionRef + " " + ksefNumber}, notReady},
		{"cancelled: no second call", link, &upoSource{download: func(string) (*ksef.Document, error) { return nil, context.Canceled }}, []string{"Download"}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			got, err := results.FetchUPO(t.Context(), tt.src, sessionRef, ksefNumber, tt.url, slog.New(slog.NewTextHandler(&logs, nil)))
			if fmt.Sprint(tt.src.calls) != fmt.Sprint(tt.wantCalls) {
				t.Errorf("calls %q, want %q", tt.src.calls, tt.wantCalls)
			}
			switch {
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("error %v, want %v", err, tt.wantErr)
			case tt.wantErr == nil && (err != nil || got != doc):
				t.Errorf("FetchUPO = %v, %v; want the document", got, err)
			}
			if strings.Contains(logs.String(), "SECRET") {
				t.Errorf("the link's signature reached the log: %s", logs.String())
			}
			if results.UPONotReady(err) != (tt.wantErr == notReady) {
				t.Errorf("UPONotReady(%v) = %t", err, results.UPONotReady(err))
			}
		})
	}
}
