package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// decodeStrict decodes a stored JSON document into v, refusing unknown fields.
func decodeStrict(t *testing.T, b []byte, v any) {
	t.Helper()
	if b == nil {
		t.Fatalf("no document to decode into %T", v)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s is not a %T: %v", b, v, err)
	}
}

// onlineResultKeys are the fields of the result the poll function stores for an online invoice
// (internal/results pins that document; functions/poll's tests pin the same).
func onlineResultKeys(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../internal/results/testdata/result_accepted.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return slices.Sorted(maps.Keys(m))
}

// checkAccepted checks everything stored for an accepted invoice: the UPO, then the result in
// the online pipeline's shape, the ledger item and the event.
func (st *stack) checkAccepted(key, version, sessionRef, exec string) *ledger.Invoice {
	t := st.t
	t.Helper()
	inv := st.item(key, version)
	if inv.Status != ledger.StatusAccepted || inv.KSeFNumber == "" || inv.Source != ledger.SourceBatch || inv.ExecutionName != exec ||
		inv.SessionReferenceNumber != sessionRef || inv.InvoiceReferenceNumber == "" || inv.AcquisitionDate.IsZero() {
		t.Errorf("%s: ledger %+v, want accepted with a KSeF number, source batch, run %s, session %s", key, inv, exec, sessionRef)
	}
	upoKey, resultKey := "results/"+key+".upo.xml", "results/"+key+".result.json"
	upo := st.object(upoKey)
	if !bytes.Contains(upo, []byte("http://upo.schematy.mf.gov.pl/KSeF/v4-3")) || !bytes.Contains(upo, []byte(inv.KSeFNumber)) {
		t.Errorf("%s: UPO %q is not a UPO v4-3 of %s", key, upo, inv.KSeFNumber)
	}
	raw := st.object(resultKey)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: result %s: %v", key, raw, err)
	}
	if got, want := slices.Sorted(maps.Keys(m)), onlineResultKeys(t); !slices.Equal(got, want) {
		t.Errorf("%s: result fields %q, want those of an online result %q", key, got, want)
	}
	var res results.Result
	decodeStrict(t, raw, &res)
	body := st.object(key)
	info, err := ksef.InspectInvoice(body, ksef.InspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sub := &flow.Submission{IssueDate: "2026-02-15", InvoiceHash: info.Hash}
	want := results.Result{
		Status: "accepted", NIP: nip, KSeFNumber: inv.KSeFNumber, InvoiceNumber: info.Number, IssueDate: "2026-02-15",
		AcquisitionDate: inv.AcquisitionDate, InvoicingDate: res.InvoicingDate, PermanentStorageDate: res.PermanentStorageDate,
		InvoicingMode: res.InvoicingMode, SessionReferenceNumber: sessionRef, InvoiceReferenceNumber: inv.InvoiceReferenceNumber,
		InvoiceHash: info.Hash, InvoiceSize: info.Size, Invoice: flow.S3Object{Bucket: st.bucket, Key: key, VersionID: version},
		UPO: &results.UPO{Key: upoKey, Hash: res.UPO.Hash}, QRCodeURL: results.VerificationURL("https://qr-test.ksef.mf.gov.pl", nip, sub),
		StatusCode: 200, StatusDescription: res.StatusDescription, RecordedAt: res.RecordedAt,
	}
	if !reflect.DeepEqual(res, want) || res.InvoicingDate.IsZero() || res.PermanentStorageDate.IsZero() || res.UPO.Hash == "" || res.StatusDescription == "" {
		t.Errorf("%s: result\n%+v\nwant\n%+v", key, res, want)
	}
	if inv.ResultKey != resultKey || inv.UPOKey != upoKey {
		t.Errorf("%s: ledger keys %q %q, want %q %q", key, inv.ResultKey, inv.UPOKey, resultKey, upoKey)
	}
	if got := st.events.byInvoice()[inv.ID]; !slices.Contains(got, "InvoiceAccepted/accepted") {
		t.Errorf("%s: events %q, want InvoiceAccepted", key, got)
	}
	return inv
}

// TestSendAndPoll sends what waits under the batch prefix: three invoices go out in one
// session, an invalid one gets a report, and so does one in another NIP's folder (unread), a
// copy of one of them a duplicate notice, and nothing else is touched; the session's outcomes
// are then stored exactly as for online invoices.
func TestSendAndPoll(t *testing.T) {
	st := newStack(t, nil) // the first copy in key order is the original, whatever the concurrency
	a, b, c := invoice(t, "B/1"), invoice(t, "B/2"), invoice(t, "B/3")
	va := st.upload("batch/2026/a.xml", a)
	vb := st.upload("batch/2026/b.xml", b)
	vc := st.upload("batch/c.XML", c)
	vBad := st.upload("batch/d-bez-numeru.xml", invalidInvoice(t))
	vCopy := st.upload("batch/e-kopia.xml", a)
	st.upload("batch/notes.txt", []byte("not an invoice"))
	vOther := st.upload("batch/"+otherNIP+"/x.xml", invoice(t, "OTHER/1")) // not this stack's NIP
	vOwn := st.upload("batch/"+nip+"/y.xml", invoice(t, "B/4"))            // the stack's NIP: sent
	st.upload("batch/manifests/20260101-SB-0000000000-0000000000-00.json", []byte("{}"))
	st.upload("inbox/f.xml", invoice(t, "INBOX/1"))

	out := st.mustSend(execA, 0, "")
	if len(out.Sessions) != 1 || out.Sessions[0].InvoiceCount != 4 || out.Sent != 4 || out.Invalid != 2 || out.Duplicates != 1 || out.More || out.Abandoned != 0 {
		t.Fatalf("send: %+v, want one session of 4, 2 invalid, 1 duplicate, no more", out)
	}
	s := out.Sessions[0]
	if s.ManifestKey != "batch/manifests/"+s.SessionReferenceNumber+".json" {
		t.Errorf("manifest key %q", s.ManifestKey)
	}
	var m manifest
	decodeStrict(t, st.object(s.ManifestKey), &m)
	var keys []string
	for _, e := range m.Invoices {
		keys = append(keys, e.Invoice.Key)
		if e.FileName != e.InvoiceID+".xml" || e.InvoiceID != ledger.ObjectID(st.bucket, e.Invoice.Key, e.Invoice.VersionID) {
			t.Errorf("manifest entry %+v: file name must be <ledger id>.xml", e)
		}
	}
	if want := []string{"batch/2026/a.xml", "batch/2026/b.xml", "batch/" + nip + "/y.xml", "batch/c.XML"}; !slices.Equal(keys, want) || m.ExecutionName != execA || m.NIP != nip {
		t.Errorf("manifest of %q for %s/%s, want %q of run %s", keys, m.NIP, m.ExecutionName, want, execA)
	}
	for key, v := range map[string]string{"batch/2026/a.xml": va, "batch/2026/b.xml": vb, "batch/c.XML": vc, "batch/" + nip + "/y.xml": vOwn} {
		if inv := st.item(key, v); inv.Status != ledger.StatusSubmitted || inv.SessionReferenceNumber != s.SessionReferenceNumber {
			t.Errorf("%s before polling: %+v, want submitted in %s", key, inv, s.SessionReferenceNumber)
		}
	}

	bad := st.item("batch/d-bez-numeru.xml", vBad)
	var rep results.Report
	decodeStrict(t, st.object("results/batch/d-bez-numeru.xml.error.json"), &rep)
	if bad.Status != ledger.StatusInvalid || rep.Status != "invalid" || rep.Error != "BadInputError" || !strings.Contains(rep.Reason.Message, "P_2") ||
		rep.InvoiceID != bad.ID || rep.Invoice.VersionID != vBad {
		t.Errorf("invalid invoice: ledger %+v, report %+v; want invalid, naming P_2", bad, rep)
	}
	other := st.item("batch/"+otherNIP+"/x.xml", vOther)
	decodeStrict(t, st.object("results/batch/"+otherNIP+"/x.xml.error.json"), &rep)
	if want := "this stack sends for NIP " + nip + " only, and the folder batch/" + otherNIP + "/ names NIP " + otherNIP; other.Status != ledger.StatusInvalid ||
		other.NIP != otherNIP || rep.Status != "invalid" || rep.Error != "BadInputError" || rep.NIP != otherNIP || !strings.Contains(rep.Reason.Message, want) {
		t.Errorf("another NIP's invoice: ledger %+v, report %+v; want invalid, saying %q", other, rep, want)
	}
	orig := st.item("batch/2026/a.xml", va)
	dup := st.item("batch/e-kopia.xml", vCopy)
	var notice results.DuplicateNotice
	decodeStrict(t, st.object("results/batch/e-kopia.xml.result.json"), &notice)
	if dup.Status != ledger.StatusDuplicateUpload || dup.DuplicateOf != orig.ID || notice.DuplicateOf != orig.ID || notice.Status != "duplicate-upload" {
		t.Errorf("copy: ledger %+v, notice %+v; want a duplicate upload of %s", dup, notice, orig.ID)
	}
	if got := st.s3.gets["batch/"+otherNIP+"/x.xml"] + st.s3.gets["batch/notes.txt"] + st.s3.gets["inbox/f.xml"]; got != 0 {
		t.Errorf("%d reads of objects that are not this run's invoices", got)
	}

	polls := st.pollSession(execA, s)
	last := polls[len(polls)-1]
	if last.Accepted != 4 || last.StatusCode != 200 {
		t.Errorf("last poll %+v, want 4 accepted in a processed session", last)
	}
	for key, v := range map[string]string{"batch/2026/a.xml": va, "batch/2026/b.xml": vb, "batch/c.XML": vc, "batch/" + nip + "/y.xml": vOwn} {
		st.checkAccepted(key, v, s.SessionReferenceNumber, execA)
	}
	for _, inv := range []*ledger.Invoice{bad, other} {
		if got := st.events.byInvoice()[inv.ID]; !slices.Equal(got, []string{"InvoiceRejected/invalid"}) {
			t.Errorf("events of the invalid invoice %s: %q", inv.Object.Key, got)
		}
	}
	if _, ok := st.events.byInvoice()[dup.ID]; ok {
		t.Error("an event for a duplicate upload (the ingest function announces none either)")
	}

	// A second run finds nothing to do.
	again := st.mustSend(execB, 0, "")
	if len(again.Sessions) != 0 || again.Sent != 0 || again.Skipped != 7 || again.More {
		t.Errorf("second run: %+v, want nothing sent and the 7 invoices skipped", again)
	}
}

// TestRepeatedUploadSameKey: the same bytes uploaded again to the original's key (a new
// version) are recorded as a duplicate upload and not sent, and nothing replaces the
// original's result stored next to that key, which describes these bytes; nor does a retried
// invocation.
func TestRepeatedUploadSameKey(t *testing.T) {
	st := newStack(t, nil)
	body := invoice(t, "AGAIN/1")
	v1 := st.upload("batch/a.xml", body)
	first := st.mustSend(execA, 0, "")
	st.pollSession(execA, first.Sessions[0])
	orig := st.checkAccepted("batch/a.xml", v1, first.Sessions[0].SessionReferenceNumber, execA)
	result := st.object("results/batch/a.xml.result.json")

	v2 := st.upload("batch/a.xml", body)
	for attempt := range 2 { // Step Functions' retry of the invocation: the same input
		out := st.mustSend(execB, 0, "")
		want := flow.BatchSendResult{Sessions: []flow.BatchSession{}, Duplicates: 1}
		if attempt > 0 {
			want = flow.BatchSendResult{Sessions: []flow.BatchSession{}, Skipped: 1}
		}
		if !reflect.DeepEqual(out, want) {
			t.Errorf("attempt %d: %+v, want %+v", attempt, out, want)
		}
	}
	dup := st.item("batch/a.xml", v2)
	if dup.Status != ledger.StatusDuplicateUpload || dup.DuplicateOf != orig.ID || dup.KSeFNumber != orig.KSeFNumber || dup.ResultKey != "" {
		t.Errorf("second version: %+v, want a duplicate upload of %s with its KSeF number and no notice key", dup, orig.ID)
	}
	if got := st.object("results/batch/a.xml.result.json"); !bytes.Equal(got, result) {
		t.Errorf("the original's result was replaced:\n%s\nwant\n%s", got, result)
	}
	if n := st.client.calls["OpenBatchSession"]; n != 1 {
		t.Errorf("%d sessions opened, want only the original's", n)
	}
}

// TestOverlappingRuns runs two sends at once over the same objects: each object version goes
// to KSeF once, in one run's session, and every invoice ends accepted (none a 440 duplicate).
func TestOverlappingRuns(t *testing.T) {
	st := newStack(t, func(c *config) { c.Workers = 8 })
	versions := map[string]string{}
	for i := range 12 {
		key := fmt.Sprintf("batch/%02d.xml", i)
		versions[key] = st.upload(key, invoice(t, fmt.Sprintf("OVL/%02d", i)))
	}
	var wg sync.WaitGroup
	outs := make([]flow.BatchSendResult, 2)
	errs := make([]error, 2)
	for i, exec := range []string{execA, execB} {
		wg.Go(func() { outs[i], errs[i] = st.send(exec, 0, "") })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	if outs[0].Sent+outs[1].Sent != 12 || outs[0].Skipped+outs[1].Skipped != 12 {
		t.Fatalf("runs sent %d + %d and skipped %d + %d, want 12 sent and 12 skipped in all", outs[0].Sent, outs[1].Sent, outs[0].Skipped, outs[1].Skipped)
	}
	sent := map[string]int{}
	for i, exec := range []string{execA, execB} {
		for _, s := range outs[i].Sessions {
			var m manifest
			decodeStrict(t, st.object(s.ManifestKey), &m)
			for _, e := range m.Invoices {
				sent[e.Invoice.Key]++
			}
			st.pollSession(exec, s)
		}
	}
	for key, v := range versions {
		if sent[key] != 1 {
			t.Errorf("%s sent %d times", key, sent[key])
		}
		inv := st.item(key, v)
		if inv.Status != ledger.StatusAccepted || inv.Reconciled {
			t.Errorf("%s: %+v, want accepted once (not reconciled to a duplicate)", key, inv)
		}
	}
	if n := st.client.calls["OpenBatchSession"]; n > 2 {
		t.Errorf("%d sessions opened, want at most one per run", n)
	}
}

// TestSessionLimit splits what one invocation takes in into sessions of at most
// SessionInvoices invoices.
func TestSessionLimit(t *testing.T) {
	st := newStack(t, func(c *config) { c.SessionInvoices = 2 })
	versions := map[string]string{}
	for i := range 3 {
		key := fmt.Sprintf("batch/%d.xml", i)
		versions[key] = st.upload(key, invoice(t, fmt.Sprintf("LIM/%d", i)))
	}
	out := st.mustSend(execA, 0, "")
	if len(out.Sessions) != 2 || out.Sessions[0].InvoiceCount != 2 || out.Sessions[1].InvoiceCount != 1 || out.Sent != 3 {
		t.Fatalf("send: %+v, want sessions of 2 and 1", out)
	}
	for _, s := range out.Sessions {
		st.pollSession(execA, s)
	}
	for key, v := range versions {
		inv := st.item(key, v)
		if inv.Status != ledger.StatusAccepted {
			t.Errorf("%s: %s", key, inv.Status)
		}
	}
}

// TestInvocationLimit stops an invocation at MaxInvoices: the next round goes on after the
// last key taken, reading no invoice twice.
func TestInvocationLimit(t *testing.T) {
	st := newStack(t, func(c *config) { c.MaxInvoices = 2 })
	for i := range 5 {
		st.upload(fmt.Sprintf("batch/%d.xml", i), invoice(t, fmt.Sprintf("INV/%d", i)))
	}
	st.upload("batch/5-invalid.xml", invalidInvoice(t))
	var rounds []flow.BatchSendResult
	after := ""
	for round := range 5 {
		out := st.mustSend(execA, round, after)
		rounds = append(rounds, out)
		if !out.More {
			break
		}
		after = out.After
	}
	var sent []int
	for _, r := range rounds {
		sent = append(sent, r.Sent)
	}
	if !slices.Equal(sent, []int{2, 2, 1}) || rounds[0].After != "batch/1.xml" || rounds[1].After != "batch/3.xml" || rounds[2].Invalid != 1 {
		t.Errorf("rounds %+v, want 2, 2 and 1 sent, going on after batch/1.xml and batch/3.xml", rounds)
	}
	for key, n := range st.s3.gets {
		if strings.HasPrefix(key, "batch/") && !strings.HasPrefix(key, "batch/manifests/") && n != 1 {
			t.Errorf("%s read %d times, want once", key, n)
		}
	}
}

// TestPollPages stores a session's outcomes a page at a time, following KSeF's continuation.
func TestPollPages(t *testing.T) {
	st := newStack(t, nil) // PageSize 10, the smallest KSeF allows
	versions := map[string]string{}
	for i := range 12 {
		key := fmt.Sprintf("batch/p%02d.xml", i)
		versions[key] = st.upload(key, invoice(t, fmt.Sprintf("PAGE/%02d", i)))
	}
	out := st.mustSend(execA, 0, "")
	if len(out.Sessions) != 1 {
		t.Fatalf("send: %+v", out)
	}
	st.emu.Clock.Advance(time.Minute)
	polls := st.pollSession(execA, out.Sessions[0])
	var outcomes []string
	accepted := 0
	for _, p := range polls {
		outcomes = append(outcomes, fmt.Sprintf("%s:%d", p.Outcome, p.Accepted))
		accepted += p.Accepted
	}
	if !slices.Equal(outcomes, []string{"more:10", "done:2"}) || polls[0].Cursor == "" || polls[1].Cursor != "" {
		t.Errorf("polls %q (%+v), want a page of 10 with a continuation, then the last 2", outcomes, polls)
	}
	if accepted != 12 || st.client.calls["SessionInvoices"] != 2 {
		t.Errorf("%d accepted in %d list calls, want 12 in 2", accepted, st.client.calls["SessionInvoices"])
	}
	for key, v := range versions {
		st.checkAccepted(key, v, out.Sessions[0].SessionReferenceNumber, execA)
	}
}

// TestPollWhileProcessing waits while KSeF processes the session, then stores the outcomes.
func TestPollWhileProcessing(t *testing.T) {
	st := newStack(t, nil)
	v := st.upload("batch/a.xml", invoice(t, "WAIT/1"))
	out := st.mustSend(execA, 0, "")
	polls := st.pollSession(execA, out.Sessions[0])
	if polls[0].Outcome != flow.BatchPending || polls[0].StatusCode != 150 || polls[0].WaitSeconds < 1 {
		t.Errorf("first poll right after closing: %+v, want pending while KSeF processes (150)", polls[0])
	}
	st.checkAccepted("batch/a.xml", v, out.Sessions[0].SessionReferenceNumber, execA)
}

// TestRetryAfterUploadFailure: an invocation that fails after opening a session (its parts not
// all uploaded) is retried; the retry sends the invoices again in a new session, and the first,
// never closed, is never processed.
func TestRetryAfterUploadFailure(t *testing.T) {
	st := newStack(t, nil)
	versions := map[string]string{}
	for i := range 3 {
		key := fmt.Sprintf("batch/%d.xml", i)
		versions[key] = st.upload(key, invoice(t, fmt.Sprintf("RETRY/%d", i)))
	}
	st.client.upload = once(apiError("UploadBatchParts", 503, 0))
	_, err := st.send(execA, 0, "")
	if flow.ErrorType(err) != "RetryableError" {
		t.Fatalf("send with a failing upload: %v (%s), want a RetryableError", err, flow.ErrorType(err))
	}
	first := st.item("batch/0.xml", versions["batch/0.xml"]).SessionReferenceNumber

	out := st.mustSend(execA, 0, "") // Step Functions' retry: the same input
	if len(out.Sessions) != 1 || out.Sent != 3 || out.Sessions[0].SessionReferenceNumber == first {
		t.Fatalf("retry: %+v, want the 3 invoices sent in a new session (not %s)", out, first)
	}
	st.pollSession(execA, out.Sessions[0])
	for key, v := range versions {
		st.checkAccepted(key, v, out.Sessions[0].SessionReferenceNumber, execA)
	}
	status, err := st.client.batchClient.SessionStatus(t.Context(), first)
	if err != nil || status.Status.Code != 100 {
		t.Errorf("first session: %+v, %v; want still open (100), never processed", status, err)
	}
}

// TestRetryAfterLostCloseAnswer: KSeF closed the session but the answer was lost; the retry
// finds the session processing and polls it instead of sending again.
func TestRetryAfterLostCloseAnswer(t *testing.T) {
	st := newStack(t, nil)
	v := st.upload("batch/a.xml", invoice(t, "LOST/1"))
	st.client.closeAfter = once(apiError("CloseBatchSession", 504, 0))
	if _, err := st.send(execA, 0, ""); flow.ErrorType(err) != "RetryableError" {
		t.Fatalf("send: %v, want a RetryableError", err)
	}
	ref := st.item("batch/a.xml", v).SessionReferenceNumber
	out := st.mustSend(execA, 0, "")
	if len(out.Sessions) != 1 || out.Sessions[0].SessionReferenceNumber != ref || out.Sent != 0 || st.client.calls["OpenBatchSession"] != 1 {
		t.Fatalf("retry: %+v after %d sessions opened, want session %s to poll and nothing sent", out, st.client.calls["OpenBatchSession"], ref)
	}
	st.pollSession(execA, out.Sessions[0])
	st.checkAccepted("batch/a.xml", v, ref, execA)
}

// TestRelease gives up, after the run failed, what it took in: failed, with a report and an
// event; uploading the invoice again sends it.
func TestRelease(t *testing.T) {
	st := newStack(t, nil)
	va := st.upload("batch/a.xml", invoice(t, "REL/1"))
	vb := st.upload("batch/b.xml", invoice(t, "REL/2"))
	st.client.open = func() error { return apiError("OpenBatchSession", 400, ksef.CodeValidation) }
	if _, err := st.send(execA, 0, ""); flow.ErrorType(err) != "RejectedError" {
		t.Fatalf("send: %v, want a RejectedError", err)
	}
	if inv := st.item("batch/a.xml", va); inv.Status != ledger.StatusReceived || inv.ExecutionName != execA {
		t.Fatalf("claimed invoice: %+v", inv)
	}
	cause := `{"errorMessage":"{\"stage\":\"batch\",\"message\":\"open batch session: KSeF said no\",\"code\":21405,\"details\":[\"injected\"]}","errorType":"RejectedError"}`
	out, err := call[flow.BatchSendResult](t, st.h, flow.BatchRequest{Action: flow.BatchRelease, NIP: nip, ExecutionName: execA,
		Error: &flow.TaskError{Error: "RejectedError", Cause: cause}})
	if err != nil {
		t.Fatal(err)
	}
	if out.Abandoned != 2 || len(out.Sessions) != 0 || out.Sent != 0 || out.More {
		t.Errorf("release: %+v, want 2 given up", out)
	}
	for key, v := range map[string]string{"batch/a.xml": va, "batch/b.xml": vb} {
		inv := st.item(key, v)
		var rep results.Report
		decodeStrict(t, st.object("results/"+key+".error.json"), &rep)
		if inv.Status != ledger.StatusFailed || rep.Status != "failed" || rep.Error != "RejectedError" || rep.Reason.Code != 21405 ||
			!strings.Contains(rep.Reason.Message, "KSeF said no") || !strings.Contains(rep.Reason.Message, "upload the invoice again") {
			t.Errorf("%s: ledger %s, report %+v; want failed with the run's reason and how to retry", key, inv.Status, rep)
		}
		if got := st.events.byInvoice()[inv.ID]; !slices.Equal(got, []string{"InvoiceRejected/failed"}) {
			t.Errorf("%s: events %q", key, got)
		}
	}

	// Uploading it again: the new version takes the failed one's content over and is sent.
	st.client.open = nil
	va2 := st.upload("batch/a.xml", invoice(t, "REL/1"))
	out2 := st.mustSend(execB, 0, "")
	if out2.Sent != 1 || out2.Duplicates != 0 {
		t.Fatalf("after uploading again: %+v, want the new version sent", out2)
	}
	st.pollSession(execB, out2.Sessions[0])
	st.checkAccepted("batch/a.xml", va2, out2.Sessions[0].SessionReferenceNumber, execB)
}

// TestRunsThatEndedEarly: a later run finishes what a run that ended long ago (aborted, timed
// out) left: its closed session is polled, its unsent claims given up; within ClaimTimeout
// they are left alone (that run may still be working).
func TestRunsThatEndedEarly(t *testing.T) {
	st := newStack(t, nil)
	vSent := st.upload("batch/a.xml", invoice(t, "END/1"))
	sent := st.mustSend(execA, 0, "") // run A sends and is never heard of again
	vClaimed := st.upload("batch/b.xml", invoice(t, "END/2"))
	st.client.open = once(apiError("OpenBatchSession", 503, 0))
	if _, err := st.send(execA, 1, ""); err == nil { // ... and claims b, but fails to send it
		t.Fatal("send with a failing open succeeded")
	}

	early := st.mustSend(execB, 0, "")
	if early.Sent != 0 || early.Abandoned != 0 || len(early.Sessions) != 0 || early.Skipped != 2 {
		t.Fatalf("run B within the claim timeout: %+v, want run A's invoices left alone", early)
	}

	st.skew = 7 * time.Hour
	late := st.mustSend("nightly-c", 0, "")
	if late.Abandoned != 1 || len(late.Sessions) != 1 || late.Sessions[0].SessionReferenceNumber != sent.Sessions[0].SessionReferenceNumber || late.Sent != 0 {
		t.Fatalf("run C after the claim timeout: %+v, want run A's session to poll and its unsent claim given up", late)
	}
	st.skew = 0
	st.pollSession("nightly-c", late.Sessions[0])
	st.checkAccepted("batch/a.xml", vSent, sent.Sessions[0].SessionReferenceNumber, execA)
	inv := st.item("batch/b.xml", vClaimed)
	var rep results.Report
	decodeStrict(t, st.object("results/batch/b.xml.error.json"), &rep)
	if inv.Status != ledger.StatusFailed || !strings.Contains(rep.Reason.Message, "batch run "+execA) || !strings.Contains(rep.Reason.Message, "upload the invoice again") {
		t.Errorf("abandoned claim: %s, report %+v", inv.Status, rep)
	}
}

// TestSessionFailure records every invoice of a session KSeF could not process as failed, with
// the session's code and details.
func TestSessionFailure(t *testing.T) {
	st := newStack(t, func(c *config) { c.PageSize = 2 })
	versions := map[string]string{}
	for i := range 3 {
		key := fmt.Sprintf("batch/%d.xml", i)
		versions[key] = st.upload(key, invoice(t, fmt.Sprintf("FAIL/%d", i)))
	}
	out := st.mustSend(execA, 0, "")
	st.client.status = func(_ string, s *ksef.SessionStatus) (*ksef.SessionStatus, error) {
		c := *s
		c.Status = ksef.Status{Code: 435, Description: "Błąd odszyfrowania dostarczonych części", Details: []string{"część 1"}}
		return &c, nil
	}
	polls := st.pollSession(execA, out.Sessions[0])
	var failed []int
	for _, p := range polls {
		failed = append(failed, p.Failed)
	}
	if !slices.Equal(failed, []int{2, 1}) || polls[1].Outcome != flow.BatchDone {
		t.Errorf("polls %+v, want the manifest swept 2 at a time", polls)
	}
	for key, v := range versions {
		inv := st.item(key, v)
		var rep results.Report
		decodeStrict(t, st.object("results/"+key+".error.json"), &rep)
		if inv.Status != ledger.StatusFailed || rep.Reason.Code != 435 || !slices.Equal(rep.Reason.Details, []string{"część 1"}) || rep.Submission == nil ||
			rep.Submission.SessionReferenceNumber != out.Sessions[0].SessionReferenceNumber {
			t.Errorf("%s: ledger %s, report %+v; want failed with KSeF's 435", key, inv.Status, rep)
		}
	}
}

// TestRefusedAccessToken: KSeF refusing the access token drops it; sending goes back to
// authentication (AuthFailedError), polling is retried (RetryableError).
func TestRefusedAccessToken(t *testing.T) {
	st := newStack(t, nil)
	st.upload("batch/a.xml", invoice(t, "AUTH/1"))
	st.client.open = once(apiError("OpenBatchSession", 401, 0))
	if _, err := st.send(execA, 0, ""); flow.ErrorType(err) != "AuthFailedError" {
		t.Fatalf("send with a refused token: %v (%s), want AuthFailedError", err, flow.ErrorType(err))
	}
	out := st.mustSend(execA, 0, "")
	st.client.listInvoice = once(apiError("SessionInvoices", 401, 0))
	st.emu.Clock.Advance(time.Minute)
	_, err := call[flow.BatchPollResult](t, st.h, flow.BatchRequest{Action: flow.BatchPoll, NIP: nip, ExecutionName: execA, Session: &out.Sessions[0]})
	if flow.ErrorType(err) != "RetryableError" {
		t.Fatalf("poll with a refused token: %v, want RetryableError", err)
	}
	if !slices.Equal(st.tokens.dropped, []string{nip, nip}) {
		t.Errorf("tokens dropped for %q, want twice for %s", st.tokens.dropped, nip)
	}
	st.pollSession(execA, out.Sessions[0])
}

func TestBadRequests(t *testing.T) {
	st := newStack(t, nil)
	session := &flow.BatchSession{SessionReferenceNumber: "20260901-SB-0000000000-0000000000-00", ManifestKey: "batch/manifests/20260901-SB-0000000000-0000000000-00.json"}
	for _, tt := range []struct {
		name string
		req  flow.BatchRequest
		want string
	}{
		{"unknown action", flow.BatchRequest{Action: "archive", NIP: nip, ExecutionName: execA}, "unknown batch action"},
		{"invalid NIP", flow.BatchRequest{Action: flow.BatchSend, NIP: "123", ExecutionName: execA}, "invalid NIP"},
		{"another NIP", flow.BatchRequest{Action: flow.BatchSend, NIP: otherNIP, ExecutionName: execA}, "this stack sends for NIP " + nip + " only, not " + otherNIP},
		{"no execution name", flow.BatchRequest{Action: flow.BatchSend, NIP: nip}, "execution name"},
		{"poll without a session", flow.BatchRequest{Action: flow.BatchPoll, NIP: nip, ExecutionName: execA}, "reference number"},
		{"manifest elsewhere", flow.BatchRequest{Action: flow.BatchPoll, NIP: nip, ExecutionName: execA,
			Session: &flow.BatchSession{SessionReferenceNumber: session.SessionReferenceNumber, ManifestKey: "results/x.json"}}, "manifest"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := call[flow.BatchSendResult](t, st.h, tt.req)
			var bad *flow.BadInputError
			if !errors.As(err, &bad) || flow.ErrorType(err) != "BadInputError" || !strings.Contains(bad.Message, tt.want) {
				t.Errorf("Handle(%+v) = %v, want a BadInputError saying %q", tt.req, err, tt.want)
			}
		})
	}
}

// TestNothingWaiting: the output the definition reads is complete even when there is nothing
// to send (sessions is [] for the Map, not null).
func TestNothingWaiting(t *testing.T) {
	st := newStack(t, nil)
	raw, err := st.h.Handle(t.Context(), flow.BatchRequest{Action: flow.BatchSend, NIP: nip, ExecutionName: execA})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(raw)
	for _, want := range []string{`"sessions":[]`, `"more":false`, `"after":""`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("output %s lacks %s", b, want)
		}
	}
	if st.client.calls["OpenBatchSession"] != 0 {
		t.Error("a session opened for nothing")
	}
}

// TestListFailure: a failing S3 listing is retryable and claims nothing.
func TestListFailure(t *testing.T) {
	st := newStack(t, nil)
	st.upload("batch/a.xml", invoice(t, "LIST/1"))
	st.s3.listErr = errors.New("connection reset by peer")
	if _, err := st.send(execA, 0, ""); flow.ErrorType(err) != "RetryableError" {
		t.Errorf("send with S3 failing: %v, want RetryableError", err)
	}
}
