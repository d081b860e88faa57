package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/ledger"
	"github.com/ksef-serverless/ksef-serverless/internal/results"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// TestDuplicateOfTheSameInvoice reconciles an invoice KSeF already holds (440) to the original
// KSeF number, as the poll function does, once the original's UPO shows the same content: here
// the original was accepted by KSeF although the run recorded it failed (its session status
// misread), and the same bytes were uploaded again.
func TestDuplicateOfTheSameInvoice(t *testing.T) {
	st := newStack(t, nil)
	body := invoice(t, "DUP/1")
	va := st.upload("batch/a.xml", body)
	first := st.mustSend(execA, 0, "")
	ref := first.Sessions[0].SessionReferenceNumber
	st.client.status = func(_ string, s *ksef.SessionStatus) (*ksef.SessionStatus, error) {
		c := *s
		c.Status = ksef.Status{Code: 500, Description: "Nieznany błąd"}
		return &c, nil
	}
	st.pollSession(execA, first.Sessions[0])
	st.client.status = nil
	st.emu.Clock.Advance(time.Minute)
	if inv := st.item("batch/a.xml", va); inv.Status != ledger.StatusFailed {
		t.Fatalf("original: %s, want failed", inv.Status)
	}
	page, err := st.client.SessionInvoices(t.Context(), ref, nil)
	if err != nil || len(page.Invoices) != 1 || page.Invoices[0].Status.Code != 200 {
		t.Fatalf("KSeF's view of the first session: %+v, %v; want the invoice accepted", page, err)
	}
	origKSeF := page.Invoices[0].KSeFNumber

	vb := st.upload("batch/b.xml", body) // the content of a failed invoice is taken in again
	second := st.mustSend(execB, 0, "")
	if second.Sent != 1 || second.Duplicates != 0 {
		t.Fatalf("second run: %+v, want the copy sent", second)
	}
	polls := st.pollSession(execB, second.Sessions[0])
	if last := polls[len(polls)-1]; last.Accepted != 1 {
		t.Errorf("last poll %+v, want 1 accepted", last)
	}
	inv := st.item("batch/b.xml", vb)
	var res results.Result
	decodeStrict(t, st.object("results/batch/b.xml.result.json"), &res)
	if inv.Status != ledger.StatusAccepted || !inv.Reconciled || inv.KSeFNumber != origKSeF || res.Status != "duplicate" ||
		res.KSeFNumber != origKSeF || res.OriginalSessionReferenceNumber != ref || res.StatusCode != 440 ||
		res.UPO == nil || res.UPO.Key != "results/batch/b.xml.upo.xml" || inv.UPOKey != res.UPO.Key {
		t.Errorf("duplicate: ledger %+v, result %+v; want reconciled to %s with the original's UPO", inv, res, origKSeF)
	}
	upo := st.object("results/batch/b.xml.upo.xml")
	if !bytes.Contains(upo, []byte("<NumerKSeFDokumentu>"+origKSeF+"</NumerKSeFDokumentu>")) ||
		!bytes.Contains(upo, []byte("<SkrotDokumentu>"+res.InvoiceHash+"</SkrotDokumentu>")) {
		t.Errorf("stored UPO does not confirm %s with hash %s:\n%s", origKSeF, res.InvoiceHash, upo)
	}
	if got := st.events.byInvoice()[inv.ID]; !slices.Equal(got, []string{"InvoiceAccepted/accepted"}) {
		t.Errorf("events %q, want InvoiceAccepted", got)
	}
}

// TestDuplicateOfAnotherInvoice: an invoice number already used in KSeF for other content gets
// a 440 too; the invoice is not in KSeF, so it is recorded rejected, not reconciled.
func TestDuplicateOfAnotherInvoice(t *testing.T) {
	st := newStack(t, nil)
	body := invoice(t, "DUP/2")
	va := st.upload("batch/a.xml", body)
	first := st.mustSend(execA, 0, "")
	st.pollSession(execA, first.Sessions[0])
	orig := st.checkAccepted("batch/a.xml", va, first.Sessions[0].SessionReferenceNumber, execA)

	const item = "<P_7>wniesienie sprzętu</P_7>"
	if bytes.Count(body, []byte(item)) != 1 {
		t.Fatalf("the sample does not hold %s once", item)
	}
	other := bytes.Replace(body, []byte(item), []byte("<P_7>wniesienie i montaż sprzętu</P_7>"), 1) // same number, other invoice
	vb := st.upload("batch/b.xml", other)
	second := st.mustSend(execB, 0, "")
	if second.Sent != 1 {
		t.Fatalf("second run: %+v", second)
	}
	polls := st.pollSession(execB, second.Sessions[0])
	if last := polls[len(polls)-1]; last.Rejected != 1 || last.Accepted != 0 {
		t.Errorf("last poll %+v, want 1 rejected", last)
	}
	inv := st.item("batch/b.xml", vb)
	var rep results.Report
	decodeStrict(t, st.object("results/batch/b.xml.error.json"), &rep)
	want := "invoice number already used by KSeF number " + orig.KSeFNumber + " for a different invoice"
	if inv.Status != ledger.StatusRejected || inv.Reconciled || inv.KSeFNumber != "" || rep.Status != "rejected" || rep.Error != "RejectedError" ||
		rep.Reason.Code != 440 || !strings.HasPrefix(rep.Reason.Message, want) || len(rep.Reason.Details) == 0 {
		t.Errorf("ledger %+v, report %+v; want rejected: %q with KSeF's details", inv, rep, want)
	}
	if inv.Reason == nil || inv.Reason.Code != 440 {
		t.Errorf("ledger reason %+v, want 440", inv.Reason)
	}
	for _, key := range []string{"results/batch/b.xml.result.json", "results/batch/b.xml.upo.xml"} {
		if st.object(key) != nil {
			t.Errorf("%s stored for an invoice KSeF does not hold", key)
		}
	}
	if got := st.events.byInvoice()[inv.ID]; !slices.Equal(got, []string{"InvoiceRejected/rejected"}) {
		t.Errorf("events %q, want InvoiceRejected/rejected", got)
	}
}

// TestPollReadsManifestOnce: polling a session page after page reads its manifest once.
func TestPollReadsManifestOnce(t *testing.T) {
	st := newStack(t, nil) // PageSize 10
	for i := range 25 {
		key := fmt.Sprintf("batch/m%02d.xml", i)
		st.upload(key, invoice(t, fmt.Sprintf("MAN/%02d", i)))
	}
	out := st.mustSend(execA, 0, "")
	if len(out.Sessions) != 1 {
		t.Fatalf("send: %+v", out)
	}
	s := out.Sessions[0]
	polls := st.pollSession(execA, s)
	var lists int
	for _, p := range polls {
		if p.StatusCode == 200 {
			lists++
		}
	}
	if lists < 3 {
		t.Fatalf("polls %+v, want 3 pages or more", polls)
	}
	if n := st.s3.gets[s.ManifestKey]; n != 1 {
		t.Errorf("manifest read %d times in %d polls of a processed session, want once", n, lists)
	}
}

func TestManifestCache(t *testing.T) {
	var c manifestCache
	a, b, d := &manifest{NIP: "a"}, &manifest{NIP: "b"}, &manifest{NIP: "d"}
	if got := c.get("a"); got != nil {
		t.Fatalf("empty cache: get = %+v", got)
	}
	c.put("a", a)
	c.put("b", b)
	if c.get("a") != a || c.get("b") != b {
		t.Fatal("a and b not cached")
	}
	c.get("a")    // a used last
	c.put("d", d) // drops b, the least recently used
	c.put("a", a) // again: no second entry
	c.put("d", d) // again
	if c.get("b") != nil || c.get("a") != a || c.get("d") != d || len(c.entries) != maxCachedManifests {
		t.Errorf("cache %+v, want a and d, %d entries", c.entries, maxCachedManifests)
	}
}
