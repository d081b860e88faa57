package main

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

// TestInvoiceWait checks the schedule of invoice status calls against the definition's cap on
// them (statemachine.asl.json, InvoicePollDecision): the waits never shrink and never pass a
// minute, and the calls the definition allows follow an invoice for hours, not minutes, so that
// a slow day at KSeF does not lose the result.
func TestInvoiceWait(t *testing.T) {
	maxCalls := invoicePollCap(t)
	prev, total := 0, 0
	for attempt := 1; attempt < maxCalls; attempt++ { // no wait after the last call
		w := invoiceWait(attempt)
		if w < prev || w < 1 || w > 60 {
			t.Fatalf("invoiceWait(%d) = %d after %d, want a wait of 1 to 60 s that never shrinks", attempt, w, prev)
		}
		prev, total = w, total+w
	}
	if prev != 60 {
		t.Errorf("the last wait is %d s, want the schedule to reach 60 s", prev)
	}
	if d := time.Duration(total) * time.Second; d < 8*time.Hour {
		t.Errorf("%d status calls wait %s in total, want at least 8 hours", maxCalls, d)
	}
	// The first minute still polls often: most invoices are processed in seconds.
	calls, waited := 0, 0
	for attempt := 1; waited < 60; attempt++ {
		calls, waited = calls+1, waited+invoiceWait(attempt)
	}
	if calls < 15 {
		t.Errorf("%d status calls in the first minute, want at least 15", calls)
	}
}

// invoicePollCap reads from the definition the number of invoice status calls after which the
// execution gives up.
func invoicePollCap(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("../../statemachine.asl.json")
	if err != nil {
		t.Fatal(err)
	}
	var def struct {
		States map[string]struct {
			Choices []struct {
				Variable                 string
				NumericGreaterThanEquals *int
				Next                     string
			}
		}
	}
	if err := json.Unmarshal(b, &def); err != nil {
		t.Fatalf("statemachine.asl.json: %v", err)
	}
	for _, c := range def.States["InvoicePollDecision"].Choices {
		if c.Variable == "$.run.poll.attempt" && c.NumericGreaterThanEquals != nil {
			return *c.NumericGreaterThanEquals
		}
	}
	t.Fatal("statemachine.asl.json: InvoicePollDecision has no rule $.run.poll.attempt NumericGreaterThanEquals N")
	return 0
}
