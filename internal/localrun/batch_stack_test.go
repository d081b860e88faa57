package localrun

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
)

var (
	batchFnOnce sync.Once
	batchFnPath string
	batchFnErr  error
)

// batchFunction returns the batch function's bootstrap: KSEF_LOCAL_BIN's (make build-local),
// or one built into a temporary directory, once per test binary.
func batchFunction(t *testing.T, root, bin string) string {
	t.Helper()
	if p := filepath.Join(bin, "lambda", FunctionBatch, "bootstrap"); isExecutable(p) {
		return p
	}
	batchFnOnce.Do(func() {
		dir, err := os.MkdirTemp("", "localrun-batch-")
		if err != nil {
			batchFnErr = err
			return
		}
		batchFnPath = filepath.Join(dir, "bootstrap")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		batchFnErr = BuildFunction(ctx, root, "./functions/"+FunctionBatch, batchFnPath)
	})
	if batchFnErr != nil {
		t.Fatalf("build the batch function: %v", batchFnErr)
	}
	return batchFnPath
}

// startBatchStack starts the batch runs' functions and definition against the emulator.
func startBatchStack(t *testing.T) *Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping the end-to-end run in -short mode")
	}
	root, rie := testTools(t)
	bin := pipelineBinaries(t, root)
	functions := map[string]string{FunctionBatch: batchFunction(t, root, bin)}
	for _, f := range []string{FunctionChallenge, FunctionPoll} {
		functions[f] = filepath.Join(bin, "lambda", f, "bootstrap")
	}
	opts := Options{
		Functions:       functions,
		Definition:      filepath.Join(root, "statemachine.asl.json"),
		BatchDefinition: filepath.Join(root, "batch.asl.json"),
		RIEBin:          rie,
	}
	return startEmulatorStack(t, bin, opts, "function-batch-0.log", "executions.log")
}

// byKey returns a batch run's invoices under batch/<folder>/.
func byKey(run *BatchRun, folder string) map[string]*BatchInvoice {
	out := map[string]*BatchInvoice{}
	for _, inv := range run.Invoices {
		if name, ok := strings.CutPrefix(inv.Key, BatchPrefix+folder+"/"); ok {
			out[name] = inv
		}
	}
	return out
}

// TestBatchRunEndToEnd runs batch.asl.json with the real functions against the emulator, on
// its paths: a rate limit waited out, KSeF rejecting an invoice, and KSeF failing until the
// run gives up and releases what it took in (which an upload again then sends).
func TestBatchRunEndToEnd(t *testing.T) {
	st := startBatchStack(t)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	upload := func(name string, body []byte) {
		t.Helper()
		if _, err := st.UploadBatch(ctx, name, body); err != nil {
			t.Fatal(err)
		}
	}
	fault := func(f map[string]any) {
		t.Helper()
		if err := st.EmulatorAdmin(ctx, "POST", "/admin/faults", f, nil); err != nil {
			t.Fatal(err)
		}
	}
	clearFaults := func() {
		t.Helper()
		if err := st.EmulatorAdmin(ctx, "DELETE", "/admin/faults", nil, nil); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("rate limited, then sent", func(t *testing.T) {
		upload("limit/a.xml", sampleInvoice(t, "BATCH/L/1"))
		upload("limit/b.xml", sampleInvoice(t, "BATCH/L/2"))
		// Longer than the functions' KSeF client waits in-process: the state machine waits.
		fault(map[string]any{"kind": "rateLimit", "method": "POST", "path": "/sessions/batch", "count": 1, "retryAfter": "30s"})
		defer clearFaults()
		run, err := st.RunBatch(ctx, DefaultNIP)
		if err != nil {
			t.Fatal(err)
		}
		e := run.Execution
		// The Retry-After plus up to as long again at random (flow.ThrottleWait).
		waited := slices.ContainsFunc(e.Waits, func(w WaitEntry) bool { return w.State == "ThrottleWait" && w.Seconds >= 30 && w.Seconds <= 60 })
		if e.Status != StatusSucceeded || !slices.Contains(e.Caught, Caught{State: "CollectAndSend", Error: "RateLimitedError", Next: "SendThrottled"}) || !waited {
			t.Fatalf("run %s, caught %v, waits %v: want the 429 waited out for its Retry-After (30 to 60 s with the jitter)", e.Status, e.Caught, e.Waits)
		}
		invs := byKey(run, "limit")
		for _, n := range []string{"a.xml", "b.xml"} {
			if inv := invs[n]; inv == nil || !inv.Accepted() || inv.UPO == nil || inv.ResultJSON == nil {
				t.Errorf("%s: %+v, want accepted with its UPO and result", n, inv)
			}
		}
	})

	t.Run("an invoice rejected by KSeF", func(t *testing.T) {
		upload("reject/a.xml", sampleInvoice(t, "BATCH/R/1"))
		fault(map[string]any{"kind": "rejectInvoices", "nip": DefaultNIP, "status": 450, "count": 1, "details": []string{"Element P_15: brak."}})
		defer clearFaults()
		run, err := st.RunBatch(ctx, DefaultNIP)
		if err != nil {
			t.Fatal(err)
		}
		inv := byKey(run, "reject")["a.xml"]
		if run.Execution.Status != StatusSucceeded || inv == nil || inv.Status() != "rejected" {
			t.Fatalf("run %s, invoice %+v: want the run to succeed and the invoice rejected", run.Execution.Status, inv)
		}
		f := inv.Failure()
		if f.Code != 450 || f.Error != "RejectedError" || !slices.Equal(f.Details, []string{"Element P_15: brak."}) || inv.UPO != nil {
			t.Errorf("failure %+v (UPO %d bytes), want KSeF's 450 with its details and no UPO", f, len(inv.UPO))
		}
	})

	t.Run("KSeF failing: the run releases what it took in", func(t *testing.T) {
		body := sampleInvoice(t, "BATCH/F/1")
		upload("fail/a.xml", body)
		fault(map[string]any{"kind": "httpError", "method": "POST", "path": "/sessions/batch", "status": 503})
		run, err := st.RunBatch(ctx, DefaultNIP)
		clearFaults()
		if err != nil {
			t.Fatal(err)
		}
		e := run.Execution
		for _, s := range []string{"ReleaseClaims", "MarkReleased", "PollSessions", "Failed"} {
			if !slices.Contains(e.States, s) {
				t.Errorf("states %v, want %s", e.States, s)
			}
		}
		inv := byKey(run, "fail")["a.xml"]
		if e.Status != StatusFailed || e.Error != "RetryableError" || inv == nil || inv.Status() != string(ledger.StatusFailed) {
			t.Fatalf("run %s (%s), invoice %+v: want the run failed and the invoice given up", e.Status, e.Error, inv)
		}
		var rep struct {
			Status string `json:"status"`
			Reason struct {
				Message string `json:"message"`
			} `json:"reason"`
		}
		if err := json.Unmarshal(inv.ErrorJSON, &rep); err != nil || rep.Status != "failed" || !strings.Contains(rep.Reason.Message, "upload the invoice again") {
			t.Errorf("report %s (%v), want failed, saying how to send it again", inv.ErrorJSON, err)
		}

		upload("fail/a.xml", body) // again: a new version takes the content over
		again, err := st.RunBatch(ctx, DefaultNIP)
		if err != nil {
			t.Fatal(err)
		}
		if inv := byKey(again, "fail")["a.xml"]; again.Execution.Status != StatusSucceeded || inv == nil || !inv.Accepted() {
			t.Errorf("after uploading again: run %s, invoice %+v; want it accepted", again.Execution.Status, inv)
		}
	})
}
