package localrun

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger/ledgertest"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

var (
	pipelineOnce sync.Once
	pipelineBin  string
	pipelineErr  error
)

// pipelineBinaries returns the directory holding lambda/<function>/bootstrap for the four
// functions and ksef-emulator: KSEF_LOCAL_BIN (make build-local), or a build into a temporary
// directory, once per test binary.
func pipelineBinaries(t *testing.T, root string) string {
	t.Helper()
	if bin := os.Getenv("KSEF_LOCAL_BIN"); bin != "" {
		return bin
	}
	pipelineOnce.Do(func() {
		dir, err := os.MkdirTemp("", "localrun-pipeline-")
		if err != nil {
			pipelineErr = err
			return
		}
		pipelineBin = dir
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		for _, f := range []string{FunctionChallenge, FunctionSend, FunctionPoll, FunctionIngest} {
			if pipelineErr = BuildFunction(ctx, root, "./functions/"+f, filepath.Join(dir, "lambda", f, "bootstrap")); pipelineErr != nil {
				return
			}
		}
		pipelineErr = BuildCommand(ctx, root, "./cmd/ksef-emulator", filepath.Join(dir, "ksef-emulator"))
	})
	if pipelineErr != nil {
		t.Fatalf("build the functions and the emulator: %v", pipelineErr)
	}
	return pipelineBin
}

// startPipeline starts the real pipeline with the S3 entry point, against the emulator.
func startPipeline(t *testing.T) *Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping the end-to-end run in -short mode")
	}
	root, rie := testTools(t)
	bin := pipelineBinaries(t, root)
	functions := map[string]string{}
	for _, f := range []string{FunctionChallenge, FunctionSend, FunctionPoll, FunctionIngest} {
		functions[f] = filepath.Join(bin, "lambda", f, "bootstrap")
		if _, err := os.Stat(functions[f]); err != nil {
			t.Fatalf("%v (KSEF_LOCAL_BIN=%s: run make build-local)", err, bin)
		}
	}
	opts := Options{Functions: functions, Definition: filepath.Join(root, "statemachine.asl.json"), RIEBin: rie}
	return startEmulatorStack(t, bin, opts, "function-ingest-0.log", "function-send-0.log", "function-poll-0.log", "executions.log")
}

// startEmulatorStack starts opts (the functions, the definitions and the RIE) against bin's
// emulator, with short KSeF delays and short Wait and Retry intervals. The stack closes when t
// ends; if t failed, the tail of each of logs (files of the run's logs directory) is logged
// first.
func startEmulatorStack(t *testing.T, bin string, opts Options, logs ...string) *Stack {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "emulator.json")
	if err := os.WriteFile(cfg, []byte(`{"authDelay":"200ms","acceptDelay":"100ms","processingDelay":"200ms","storageDelay":"200ms","rateLimits":false}`), 0o600); err != nil {
		t.Fatal(err)
	}
	opts.EmulatorBin, opts.EmulatorConfig = filepath.Join(bin, "ksef-emulator"), cfg
	opts.WaitOverride, opts.RetryOverride = 50*time.Millisecond, 50*time.Millisecond
	opts.RunDir = t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs: %s", st.RunDir())
			for _, f := range logs {
				if b, err := os.ReadFile(filepath.Join(st.RunDir(), "logs", f)); err == nil {
					t.Logf("%s:\n%s", f, b[max(0, len(b)-4000):])
				}
			}
		}
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

var onlineInvoice = regexp.MustCompile(`^POST /sessions/online/[^/]+/invoices$`)

// submissions counts the invoices sent to KSeF (POST /sessions/online/{ref}/invoices).
func submissions(st *Stack) int {
	n := 0
	for k, v := range st.Metrics().KSeFRequests {
		if onlineInvoice.MatchString(k) {
			n += v
		}
	}
	return n
}

func sampleInvoice(t *testing.T, number string) []byte {
	t.Helper()
	b := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	old := []byte("<P_2>FV2026/02/150</P_2>")
	if bytes.Count(b, old) != 1 {
		t.Fatal("sample invoice number not found")
	}
	return bytes.Replace(b, old, []byte("<P_2>"+number+"</P_2>"), 1)
}

// TestIngestEndToEnd runs the S3 entry point end to end: upload -> Object Created event ->
// ingest function -> execution -> accepted, with the ledger and the events; then a duplicate
// delivery of the event and a repeated upload, neither of which sends the invoice again.
func TestIngestEndToEnd(t *testing.T) {
	st := startPipeline(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// Upload -> accepted.
	in, err := st.Ingest(ctx, "2026/02/Faktura lutowa (1).xml", sampleInvoice(t, "FV/ING/1"))
	if err != nil {
		t.Fatal(err)
	}
	if in.Outcome.Action != "started" || in.Result == nil || !in.Result.Accepted() {
		t.Fatalf("outcome %+v, result %+v (failure %+v)", in.Outcome, in.Result, failure(in.Result))
	}
	id := in.Outcome.InvoiceID
	if want := ledger.ObjectID(st.Bucket(), "inbox/2026/02/Faktura lutowa (1).xml", in.Upload.VersionID); id != want {
		t.Errorf("invoice id %s, want the object's %s", id, want)
	}
	ksefNumber := in.Result.KSeFNumber()
	inv, err := st.LedgerInvoice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Status != ledger.StatusAccepted || inv.KSeFNumber != ksefNumber || ksefNumber == "" || inv.Source != ledger.SourceS3 ||
		inv.NIP != DefaultNIP || inv.UPOKey != in.Result.UPOKey || inv.AcquisitionDate.IsZero() || inv.InvoiceNumber != "FV/ING/1" ||
		inv.SessionReferenceNumber == "" || inv.Version < 3 {
		t.Errorf("ledger item %+v, want accepted with KSeF number %s (received, submitted, accepted)", inv, ksefNumber)
	}
	if n := submissions(st); n != 1 {
		t.Fatalf("%d KSeF submissions, want 1", n)
	}

	// The same event again, after the execution: nothing is started or sent.
	out, err := st.DeliverEvent(ctx, in.Upload.Event)
	if err != nil {
		t.Fatal(err)
	}
	if out.Action != "already-processed" || out.InvoiceID != id {
		t.Errorf("second delivery: %+v", out)
	}

	// The same bytes uploaded again to the same key (a new version): a duplicate upload, and
	// the original's result stays where it is, unchanged.
	before := in.Result.ResultJSON
	again, err := st.Ingest(ctx, "2026/02/Faktura lutowa (1).xml", sampleInvoice(t, "FV/ING/1"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Outcome.Action != "duplicate-upload" || again.Outcome.DuplicateOf != id || again.Result != nil {
		t.Errorf("repeated upload: %+v", again.Outcome)
	}
	if !bytes.Equal(again.Notice, before) {
		t.Errorf("the repeated upload changed the original's result:\n%s\nwant\n%s", again.Notice, before)
	}

	// The same bytes under another key: a duplicate upload, with a notice next to it.
	copied, err := st.Ingest(ctx, "2026/02/Faktura lutowa (kopia).xml", sampleInvoice(t, "FV/ING/1"))
	if err != nil {
		t.Fatal(err)
	}
	if copied.Outcome.Action != "duplicate-upload" || copied.Outcome.DuplicateOf != id || copied.Result != nil {
		t.Errorf("copy under another key: %+v", copied.Outcome)
	}
	var notice struct {
		Status, DuplicateOf, KSeFNumber string
	}
	if err := json.Unmarshal(copied.Notice, &notice); err != nil {
		t.Fatalf("notice %s: %v", copied.Notice, err)
	}
	if notice.Status != "duplicate-upload" || notice.DuplicateOf != id || notice.KSeFNumber != ksefNumber {
		t.Errorf("notice %+v", notice)
	}

	// A second invoice whose event is delivered twice at once, while nothing has run yet.
	up, err := st.UploadToInbox(ctx, DefaultNIP+"/FV-ING-2.xml", sampleInvoice(t, "FV/ING/2"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	outs := make([]*IngestOutcome, 2)
	errs := make([]error, 2)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = st.DeliverEvent(ctx, up.Event)
		}()
	}
	wg.Wait()
	for i := range outs {
		if errs[i] != nil || (outs[i].Action != "started" && outs[i].Action != "already-started") {
			t.Fatalf("concurrent delivery %d: %+v, %v", i, outs[i], errs[i])
		}
	}
	exec, err := st.WaitExecution(ctx, outs[0].InvoiceID)
	if err != nil || exec.Status != StatusSucceeded {
		t.Fatalf("second invoice's execution: %+v, %v", exec, err)
	}

	if got := st.StartedExecutions(); !slices.Equal(got, []string{id, outs[0].InvoiceID}) {
		t.Errorf("executions %v, want one per invoice", got)
	}
	if n := submissions(st); n != 2 {
		t.Errorf("%d KSeF submissions for two invoices, want 2", n)
	}

	// The events: one InvoiceAccepted per invoice, each matching docs/events.schema.json.
	checkPublished(t, st, map[string]string{id: ledger.DetailTypeAccepted, outs[0].InvoiceID: ledger.DetailTypeAccepted})
}

// TestIngestInvalidEndToEnd: an invoice the send step refuses ends invalid in the ledger, with
// its reason, a report and an InvoiceRejected event; nothing is sent.
func TestIngestInvalidEndToEnd(t *testing.T) {
	st := startPipeline(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	future := bytes.Replace(sampleInvoice(t, "FV/ING/3"), []byte("<P_1>2026-02-15</P_1>"), []byte("<P_1>2099-02-15</P_1>"), 1)
	in, err := st.Ingest(ctx, "future.xml", future)
	if err != nil {
		t.Fatal(err)
	}
	if in.Outcome.Action != "started" || in.Result == nil || in.Result.Accepted() || in.Result.ErrorJSON == nil {
		t.Fatalf("outcome %+v, result %+v", in.Outcome, in.Result)
	}
	inv, err := st.LedgerInvoice(ctx, in.Outcome.InvoiceID)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Status != ledger.StatusInvalid || inv.Reason == nil || inv.Reason.Stage != "send" || inv.ResultKey != in.Result.ErrorKey {
		t.Errorf("ledger item %+v (reason %+v), want invalid with the send step's reason", inv, inv.Reason)
	}
	if n := submissions(st); n != 0 {
		t.Errorf("%d KSeF submissions of an invalid invoice", n)
	}
	checkPublished(t, st, map[string]string{in.Outcome.InvoiceID: ledger.DetailTypeRejected})
}

func failure(r *Result) *Failure {
	if r == nil {
		return nil
	}
	return r.Failure()
}

// checkPublished checks the events the functions published: exactly the wanted detail-type per
// invoice id, each detail matching docs/events.schema.json.
func checkPublished(t *testing.T, st *Stack, want map[string]string) {
	t.Helper()
	got := map[string]string{}
	for _, e := range st.PublishedEvents() {
		if e.Source != ledger.EventSource || e.EventBus != "ksef-invoices-local" {
			t.Errorf("event from %s on %s", e.Source, e.EventBus)
		}
		if err := ledgertest.ValidateDetail(t, e.Detail); err != nil {
			t.Errorf("%s event does not match docs/events.schema.json: %v\n%s", e.DetailType, err, e.Detail)
		}
		var d ledger.Event
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if prev, dup := got[d.InvoiceID]; dup {
			t.Errorf("invoice %s announced twice (%s, %s)", d.InvoiceID, prev, e.DetailType)
		}
		got[d.InvoiceID] = e.DetailType
	}
	if !maps.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
}
