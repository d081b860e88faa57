package ksef_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// emuNIP is the seller of every official sample invoice.
const emuNIP = "9999999999"

// emuStart is the emulator's starting time: after every sample's issue date.
var emuStart = time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)

// loginClient logs in to the emulator at base with a KSeF token of emuNIP and returns a client
// holding the access token.
func loginClient(tb testing.TB, base string, e *emulator.Emulator, clock *emutest.FakeClock, hc ksef.HTTPDoer) *ksef.Client {
	tb.Helper()
	ctx := tb.Context()
	token, err := e.GenerateToken(emuNIP)
	if err != nil {
		tb.Fatal(err)
	}
	opts := []ksef.Option{ksef.WithBaseURL(base), ksef.WithHTTPClient(hc), ksef.WithClock(e.Now)}
	anon, err := ksef.NewClient(opts...)
	if err != nil {
		tb.Fatal(err)
	}
	ch, err := anon.Challenge(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	init, err := anon.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{Challenge: ch, Context: ksef.NipContext(emuNIP), Token: ksef.Secret(token)})
	if err != nil {
		tb.Fatal(err)
	}
	clock.Advance(emulator.DefaultAuthDelay)
	if st, err := anon.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token); err != nil || st.Status.Code != 200 {
		tb.Fatalf("authentication: %+v, %v", st, err)
	}
	tokens, err := anon.RedeemTokens(ctx, init.AuthenticationToken.Token)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := ksef.NewClient(append(opts, ksef.WithAccessToken(ksef.StaticAccessToken(tokens.AccessToken.Token)))...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestBatchRoundTrip sends three official samples and one invalid invoice through the client
// and the emulator (which checks every API request and response against the OpenAPI
// description): build, open, upload, close, then the statuses, failures and UPOs.
func TestBatchRoundTrip(t *testing.T) {
	samples := official.SampleInvoices()
	bad := bytes.Replace(samples["FA_3_Przyklad_1.xml"], []byte("<P_2>FV2026/02/150</P_2>"), nil, 1)
	invoices := []ksef.BatchInvoice{
		{FileName: "FA_3_Przyklad_1.xml", Content: samples["FA_3_Przyklad_1.xml"]},
		{FileName: "FA_3_Przyklad_2.xml", Content: samples["FA_3_Przyklad_2.xml"]},
		{FileName: "bez numeru.xml", Content: bad},
		{FileName: "FA_3_Przyklad_10.xml", Content: samples["FA_3_Przyklad_10.xml"]},
	}
	tests := []struct {
		name      string
		opts      ksef.BatchOptions
		wantParts int // 0: several
	}{
		{"zip", ksef.BatchOptions{}, 1},
		{"zip in parts of 1500 bytes", ksef.BatchOptions{MaxPartSize: 1500}, 0},
		{"tar.gz in parts of 2000 bytes", ksef.BatchOptions{Compression: ksef.CompressionTarGz, MaxPartSize: 2000}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			srv := emutest.NewServerAt(t, emuStart, emulator.Config{})
			c := loginClient(t, srv.URL, srv.Emulator, srv.Clock, srv.Client())

			pkg, err := ksef.BuildBatch(invoices, tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if (tt.wantParts == 1) != (len(pkg.Parts) == 1) {
				t.Fatalf("%d parts, want %d (0: several)", len(pkg.Parts), tt.wantParts)
			}
			s, err := c.OpenBatchSession(ctx, ksef.FormCodeFA3(), pkg, nil)
			if err != nil {
				t.Fatal(err)
			}
			ref := s.Handle.ReferenceNumber
			if err := c.UploadBatchParts(ctx, s, pkg, 2); err != nil {
				t.Fatal(err)
			}
			if err := c.CloseBatchSession(ctx, ref); err != nil {
				t.Fatal(err)
			}
			if st, err := c.SessionStatus(ctx, ref); err != nil || st.Status.Code != 150 {
				t.Fatalf("after close: %+v, %v; want 150", st, err)
			}
			srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
			st, err := c.SessionStatus(ctx, ref)
			if err != nil {
				t.Fatal(err)
			}
			if st.Status.Code != 200 || st.InvoiceCount != 4 || st.SuccessfulInvoiceCount != 3 || st.FailedInvoiceCount != 1 || len(st.UPOPages) != 1 {
				t.Fatalf("processed: %+v, want 200 with 3 of 4 invoices accepted and one UPO page", st)
			}

			page, err := c.SessionInvoices(ctx, ref, &ksef.ListOptions{PageSize: 10})
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Invoices) != 4 {
				t.Fatalf("%d invoices, want 4", len(page.Invoices))
			}
			var numbers []string
			for i, inv := range page.Invoices {
				entry := pkg.Entries[i]
				if inv.InvoiceFileName != entry.FileName || inv.InvoiceHash != entry.Hash || inv.OrdinalNumber != i+1 {
					t.Errorf("invoice %d: %q %s, want %q %s", i+1, inv.InvoiceFileName, inv.InvoiceHash, entry.FileName, entry.Hash)
				}
				if entry.FileName == "bez numeru.xml" {
					if inv.Status.Code != 450 || inv.KSeFNumber != "" || !strings.Contains(strings.Join(inv.Status.Details, " "), "P_2") {
						t.Errorf("invalid invoice: %+v, want 450 naming P_2", inv.Status)
					}
					continue
				}
				if inv.Status.Code != 200 {
					t.Errorf("%s: %+v, want 200", entry.FileName, inv.Status)
					continue
				}
				n, err := ksef.ParseKSeFNumber(inv.KSeFNumber)
				if err != nil || n.SellerNIP != emuNIP {
					t.Errorf("%s: KSeF number %q: %v", entry.FileName, inv.KSeFNumber, err)
				}
				numbers = append(numbers, inv.KSeFNumber)
				upo, err := c.Download(ctx, inv.UPODownloadURL)
				if err != nil || !upo.HashVerified || !bytes.Contains(upo.Content, []byte(inv.KSeFNumber)) {
					t.Errorf("%s: invoice UPO: %v", entry.FileName, err)
				}
			}
			failed, err := c.FailedSessionInvoices(ctx, ref, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(failed.Invoices) != 1 || failed.Invoices[0].InvoiceFileName != "bez numeru.xml" {
				t.Errorf("failed invoices %+v, want the one without a number", failed.Invoices)
			}
			upo, err := c.SessionUPO(ctx, ref, st.UPOPages[0].ReferenceNumber)
			if err != nil || !upo.HashVerified {
				t.Fatalf("session UPO: %v", err)
			}
			for _, n := range numbers {
				if !bytes.Contains(upo.Content, []byte(n)) {
					t.Errorf("session UPO does not list %s", n)
				}
			}
			if byNumber, err := c.InvoiceUPOByKSeFNumber(ctx, ref, numbers[0]); err != nil || !bytes.Contains(byNumber.Content, []byte(numbers[0])) {
				t.Errorf("UPO by KSeF number: %v", err)
			}
		})
	}
}

// TestBatchRoundTripErrors: the emulator's refusals reach the caller as *ksef.APIError with
// KSeF's codes.
func TestBatchRoundTripErrors(t *testing.T) {
	invoices := []ksef.BatchInvoice{{FileName: "a.xml", Content: official.SampleInvoices()["FA_3_Przyklad_1.xml"]}}
	t.Run("part not uploaded", func(t *testing.T) {
		srv := emutest.NewServerAt(t, emuStart, emulator.Config{})
		c := loginClient(t, srv.URL, srv.Emulator, srv.Clock, srv.Client())
		pkg, err := ksef.BuildBatch(invoices, ksef.BatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.OpenBatchSession(t.Context(), ksef.FormCodeFA3(), pkg, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = c.CloseBatchSession(t.Context(), s.Handle.ReferenceNumber)
		var apiErr *ksef.APIError
		if !errors.As(err, &apiErr) || !apiErr.HasCode(ksef.CodeBatchPartMissing) {
			t.Errorf("close: %v, want code %d", err, ksef.CodeBatchPartMissing)
		}
	})
	t.Run("upload window over", func(t *testing.T) {
		srv := emutest.NewServerAt(t, emuStart, emulator.Config{AccessTokenTTL: time.Hour})
		c := loginClient(t, srv.URL, srv.Emulator, srv.Clock, srv.Client())
		pkg, err := ksef.BuildBatch(invoices, ksef.BatchOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.OpenBatchSession(t.Context(), ksef.FormCodeFA3(), pkg, nil)
		if err != nil {
			t.Fatal(err)
		}
		srv.Clock.Advance(emulator.BatchPartUploadWindow)
		err = c.UploadBatchParts(t.Context(), s, pkg, 0)
		if !errors.Is(err, ksef.ErrForbidden) || !strings.Contains(err.Error(), "part 1") || strings.Contains(err.Error(), "sig=") {
			t.Errorf("upload: %v, want a 403 for part 1 without the link's signature", err)
		}
		err = c.CloseBatchSession(t.Context(), s.Handle.ReferenceNumber)
		var apiErr *ksef.APIError
		if !errors.As(err, &apiErr) || !apiErr.HasCode(ksef.CodeBatchTimeout) {
			t.Errorf("close: %v, want code %d", err, ksef.CodeBatchTimeout)
		}
	})
}

// batch10000 is 10,000 invoices derived from official sample 1 by varying P_2.
func batch10000(tb testing.TB) []ksef.BatchInvoice {
	base := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	const old = "<P_2>FV2026/02/150</P_2>"
	if !bytes.Contains(base, []byte(old)) {
		tb.Fatal("sample 1 has no " + old)
	}
	out := make([]ksef.BatchInvoice, 10_000)
	for i := range out {
		out[i] = ksef.BatchInvoice{
			FileName: fmt.Sprintf("faktura-%05d.xml", i+1),
			Content:  bytes.Replace(base, []byte(old), fmt.Appendf(nil, "<P_2>BATCH/%05d</P_2>", i+1), 1),
		}
	}
	return out
}

// heapObjects is the heap occupied by objects, live or not yet freed.
func heapObjects() uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	return sample[0].Value.Uint64()
}

// heapPeak samples the heap every millisecond until stopped and reports the highest value
// above the heap at the start.
type heapPeak struct {
	stop chan struct{}
	done chan uint64
}

func watchHeap() *heapPeak {
	h := &heapPeak{stop: make(chan struct{}), done: make(chan uint64)}
	base := heapObjects()
	go func() {
		var peak uint64
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			peak = max(peak, heapObjects())
			select {
			case <-h.stop:
				h.done <- max(peak, base) - base
				return
			case <-tick.C:
			}
		}
	}()
	return h
}

func (h *heapPeak) end() uint64 {
	close(h.stop)
	return <-h.done
}

// BenchmarkBatch10000 sends 10,000 invoices in one batch session to an in-process emulator:
// the client builds the package (ZIP, SHA-256, AES-256-CBC), opens the session, uploads and
// closes it. The emulator unpacks and verifies all 10,000 invoices (XSD included) inside the
// close call, so close-ms is mostly the emulator's work; client-ms is build+open+upload. Its
// processing delay is on the fake clock and costs nothing. "emulator" serves the API plainly,
// "specValidated" checks every API request and response against the OpenAPI description, as
// emutest servers do.
//
// Metrics: build-ms, open-ms, upload-ms, close-ms, client-ms, package-MB (the encrypted parts),
// build-alloc-MB (allocated while building), build-peak-MB (the most the heap grew while
// building, over the 34 MB of input invoices: the client's own footprint) and send-peak-MB (the
// same over open and upload, the emulator's copy of the received part included).
//
//	go test ./pkg/ksef -run '^$' -bench Batch10000 -benchtime 1x
func BenchmarkBatch10000(b *testing.B) {
	invoices := batch10000(b)
	b.Run("emulator", func(b *testing.B) {
		benchBatch(b, invoices, func(b *testing.B) (string, *emulator.Emulator, *emutest.FakeClock, ksef.HTTPDoer) {
			clock := emutest.NewFakeClock(emuStart)
			e, err := emulator.New(emulator.Config{}, emulator.WithClock(clock))
			if err != nil {
				b.Fatal(err)
			}
			hs := httptest.NewServer(e.Handler())
			b.Cleanup(hs.Close)
			return hs.URL + "/v2", e, clock, hs.Client()
		})
	})
	b.Run("specValidated", func(b *testing.B) {
		benchBatch(b, invoices, func(b *testing.B) (string, *emulator.Emulator, *emutest.FakeClock, ksef.HTTPDoer) {
			srv := emutest.NewServerAt(b, emuStart, emulator.Config{})
			return srv.URL, srv.Emulator, srv.Clock, srv.Client()
		})
	})
}

func benchBatch(b *testing.B, invoices []ksef.BatchInvoice, start func(*testing.B) (string, *emulator.Emulator, *emutest.FakeClock, ksef.HTTPDoer)) {
	var build, open, upload, closing time.Duration
	var packageBytes, buildAlloc, buildPeak, sendPeak uint64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		base, e, clock, hc := start(b)
		c := loginClient(b, base, e, clock, hc)
		ctx := b.Context()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		watch := watchHeap()
		b.StartTimer()

		t0 := time.Now()
		pkg, err := ksef.BuildBatch(invoices, ksef.BatchOptions{})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		buildPeak = max(buildPeak, watch.end())
		runtime.ReadMemStats(&after)
		watch = watchHeap()
		s, err := c.OpenBatchSession(ctx, ksef.FormCodeFA3(), pkg, nil)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := c.UploadBatchParts(ctx, s, pkg, 0); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		sendPeak = max(sendPeak, watch.end())
		if err := c.CloseBatchSession(ctx, s.Handle.ReferenceNumber); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()

		b.StopTimer()
		build += t1.Sub(t0)
		open += t2.Sub(t1)
		upload += t3.Sub(t2)
		closing += t4.Sub(t3)
		buildAlloc += after.TotalAlloc - before.TotalAlloc
		for _, p := range pkg.Parts {
			packageBytes += uint64(p.Size)
		}
		clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
		st, err := c.SessionStatus(ctx, s.Handle.ReferenceNumber)
		if err != nil || st.Status.Code != 200 || st.SuccessfulInvoiceCount != len(invoices) {
			b.Fatalf("session after processing: %+v, %v; want 200 with %d invoices", st, err, len(invoices))
		}
		b.StartTimer()
	}
	n := float64(b.N)
	ms := func(d time.Duration) float64 { return float64(d.Milliseconds()) / n }
	b.ReportMetric(ms(build), "build-ms")
	b.ReportMetric(ms(open), "open-ms")
	b.ReportMetric(ms(upload), "upload-ms")
	b.ReportMetric(ms(closing), "close-ms")
	b.ReportMetric(ms(build+open+upload), "client-ms")
	b.ReportMetric(float64(packageBytes)/1e6/n, "package-MB")
	b.ReportMetric(float64(buildAlloc)/1e6/n, "build-alloc-MB")
	b.ReportMetric(float64(buildPeak)/1e6, "build-peak-MB")
	b.ReportMetric(float64(sendPeak)/1e6, "send-peak-MB")
}

// TestBatchClientStopsOtherUploads: with a blob store that refuses one part, the client reports
// that part and sends no more than it must.
func TestBatchClientStopsOtherUploads(t *testing.T) {
	srv := emutest.NewServerAt(t, emuStart, emulator.Config{})
	c := loginClient(t, srv.URL, srv.Emulator, srv.Clock, srv.Client())
	invoices := batch10000(t)[:200]
	pkg, err := ksef.BuildBatch(invoices, ksef.BatchOptions{MaxPartSize: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkg.Parts) < 4 {
		t.Fatalf("%d parts, want at least 4", len(pkg.Parts))
	}
	s, err := c.OpenBatchSession(t.Context(), ksef.FormCodeFA3(), pkg, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Break the signature of part 2's link: the blob store answers 403, which is final.
	s.PartUploadRequests[1].URL = strings.Replace(s.PartUploadRequests[1].URL, "sig=", "sig=x", 1)
	var calls atomic.Int32
	counting := ksef.HTTPDoer(doerCounter{next: srv.Client(), n: &calls})
	uc, err := ksef.NewClient(ksef.WithBaseURL(srv.URL), ksef.WithHTTPClient(counting))
	if err != nil {
		t.Fatal(err)
	}
	err = uc.UploadBatchParts(t.Context(), s, pkg, 1)
	if !errors.Is(err, ksef.ErrForbidden) || !strings.Contains(err.Error(), "part 2") {
		t.Fatalf("got %v, want the 403 of part 2", err)
	}
	if calls.Load() != 2 {
		t.Errorf("%d uploads sent one at a time, want 2 (stop after the failed part)", calls.Load())
	}
}

// doerCounter counts the requests it passes on.
type doerCounter struct {
	next ksef.HTTPDoer
	n    *atomic.Int32
}

func (d doerCounter) Do(r *http.Request) (*http.Response, error) {
	d.n.Add(1)
	return d.next.Do(r)
}
