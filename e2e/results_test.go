package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"encoding/xml"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/xsd"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// storedResult is the result JSON the poll function stores next to an accepted or reconciled
// invoice (results/<key>.result.json).
type storedResult struct {
	Status                         string        `json:"status"`
	NIP                            string        `json:"nip"`
	KSeFNumber                     string        `json:"ksefNumber"`
	InvoiceNumber                  string        `json:"invoiceNumber"`
	IssueDate                      string        `json:"issueDate"`
	AcquisitionDate                time.Time     `json:"acquisitionDate"`
	InvoicingMode                  string        `json:"invoicingMode"`
	SessionReferenceNumber         string        `json:"sessionReferenceNumber"`
	InvoiceReferenceNumber         string        `json:"invoiceReferenceNumber"`
	OriginalSessionReferenceNumber string        `json:"originalSessionReferenceNumber"`
	InvoiceHash                    string        `json:"invoiceHash"`
	InvoiceSize                    int           `json:"invoiceSize"`
	Invoice                        flow.S3Object `json:"invoice"`
	UPO                            *struct {
		Key  string `json:"key"`
		Hash string `json:"hash"`
	} `json:"upo"`
	QRCodeURL         string `json:"qrCodeUrl"`
	StatusCode        int    `json:"statusCode"`
	StatusDescription string `json:"statusDescription"`
}

// storedReport is the error report the poll function stores next to an invoice that was not
// accepted (results/<key>.error.json).
type storedReport struct {
	Status     string           `json:"status"`
	Error      string           `json:"error"`
	Reason     flow.Reason      `json:"reason"`
	NIP        string           `json:"nip"`
	Invoice    flow.S3Object    `json:"invoice"`
	Submission *flow.Submission `json:"submission"`
}

func sha256Base64(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// sampleIssueDate is the P_1 of the sample invoice.
var sampleIssueDate = time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC)

// checkAccepted checks an execution that ended in Accepted: the result JSON, the UPO and the
// untouched original. number is the invoice's P_2.
func (s *stack) checkAccepted(t *testing.T, res *localrun.Result, body []byte, number string) storedResult {
	t.Helper()
	wantStatus(t, res, localrun.StatusSucceeded, "")
	r := s.checkResult(t, res, body, number, "accepted")
	if r.StatusCode != 200 || r.StatusDescription != "Sukces" {
		t.Errorf("result statusCode %d statusDescription %q, want 200 Sukces", r.StatusCode, r.StatusDescription)
	}
	if r.InvoiceHash != sha256Base64(body) || r.InvoiceSize != len(body) {
		t.Errorf("result invoiceHash %s invoiceSize %d, want %s and %d", r.InvoiceHash, r.InvoiceSize, sha256Base64(body), len(body))
	}
	if r.AcquisitionDate.IsZero() {
		t.Error("result has no acquisitionDate")
	}
	// P_1 is a day before the sending day, so KSeF records the invoice as issued offline.
	if r.InvoicingMode != "Offline" {
		t.Errorf("result invoicingMode %q, want Offline (P_1 %s is before today)", r.InvoicingMode, sampleIssueDate.Format(time.DateOnly))
	}
	if r.OriginalSessionReferenceNumber != "" {
		t.Errorf("result of an accepted invoice has originalSessionReferenceNumber %s", r.OriginalSessionReferenceNumber)
	}
	checkUPO(t, res.UPO, upoWant{
		nip: s.nip, ksefNumber: r.KSeFNumber, invoiceNumber: number, hash: r.InvoiceHash, session: r.SessionReferenceNumber,
	})
	return r
}

// checkResult checks the result JSON fields common to accepted and reconciled invoices.
func (s *stack) checkResult(t *testing.T, res *localrun.Result, body []byte, number, status string) storedResult {
	t.Helper()
	if res.ResultJSON == nil {
		t.Fatalf("no result stored at %s", res.ResultKey)
	}
	if want := localrun.ResultPrefix + res.Key + ".result.json"; res.ResultKey != want {
		t.Errorf("result key %s, want %s", res.ResultKey, want)
	}
	if res.ErrorJSON != nil {
		t.Errorf("an error report is stored for a %s invoice: %s", status, res.ErrorJSON)
	}
	var r storedResult
	if err := json.Unmarshal(res.ResultJSON, &r); err != nil {
		t.Fatalf("result %s is not JSON: %v", res.ResultKey, err)
	}
	if r.Status != status || r.NIP != s.nip {
		t.Errorf("result status %q nip %q, want %q %q", r.Status, r.NIP, status, s.nip)
	}
	n, err := ksef.ParseKSeFNumber(r.KSeFNumber)
	if err != nil || n.SellerNIP != s.nip {
		t.Errorf("result ksefNumber %q: %v, want a valid KSeF number of NIP %s", r.KSeFNumber, err, s.nip)
	}
	if got := res.KSeFNumber(); got != r.KSeFNumber {
		t.Errorf("execution output ksefNumber %q, result %q", got, r.KSeFNumber)
	}
	if r.InvoiceNumber != number || r.IssueDate != sampleIssueDate.Format(time.DateOnly) {
		t.Errorf("result invoiceNumber %q issueDate %q, want %q %s", r.InvoiceNumber, r.IssueDate, number, sampleIssueDate.Format(time.DateOnly))
	}
	if want := (flow.S3Object{Bucket: res.Bucket, Key: res.Key, VersionID: res.VersionID}); r.Invoice != want {
		t.Errorf("result invoice %+v, want %+v", r.Invoice, want)
	}
	if r.SessionReferenceNumber == "" || r.InvoiceReferenceNumber == "" {
		t.Errorf("result sessionReferenceNumber %q invoiceReferenceNumber %q: want both set", r.SessionReferenceNumber, r.InvoiceReferenceNumber)
	}
	if want := ksef.VerificationURL(ksef.Test.QRBaseURL(), s.nip, sampleIssueDate, body); r.QRCodeURL != want {
		t.Errorf("result qrCodeUrl %q, want %q", r.QRCodeURL, want)
	}
	if res.UPO == nil {
		t.Fatalf("no UPO stored at %s", res.UPOKey)
	}
	if want := localrun.ResultPrefix + res.Key + ".upo.xml"; res.UPOKey != want {
		t.Errorf("UPO key %s, want %s", res.UPOKey, want)
	}
	if r.UPO == nil || r.UPO.Key != res.UPOKey || r.UPO.Hash != sha256Base64(res.UPO) {
		t.Errorf("result upo %+v, want key %s and hash %s", r.UPO, res.UPOKey, sha256Base64(res.UPO))
	}
	s.checkOriginal(t, res, body)
	return r
}

// checkFailure checks an execution that failed with errorName: the error report (with the
// report status), the reason it shares with the execution's Cause, no result and no UPO, and
// the untouched original.
func (s *stack) checkFailure(t *testing.T, res *localrun.Result, body []byte, errorName, status string) storedReport {
	t.Helper()
	wantStatus(t, res, localrun.StatusFailed, errorName)
	if res.ResultJSON != nil || res.UPO != nil {
		t.Errorf("a result (%t) or UPO (%t) is stored for a failed invoice", res.ResultJSON != nil, res.UPO != nil)
	}
	if res.ErrorJSON == nil {
		t.Fatalf("no error report stored at %s", res.ErrorKey)
	}
	if want := localrun.ResultPrefix + res.Key + ".error.json"; res.ErrorKey != want {
		t.Errorf("error report key %s, want %s", res.ErrorKey, want)
	}
	var r storedReport
	if err := json.Unmarshal(res.ErrorJSON, &r); err != nil {
		t.Fatalf("error report %s is not JSON: %v", res.ErrorKey, err)
	}
	if r.Status != status || r.Error != errorName || r.NIP != s.nip {
		t.Errorf("error report status %q error %q nip %q, want %q %q %q", r.Status, r.Error, r.NIP, status, errorName, s.nip)
	}
	if want := (flow.S3Object{Bucket: res.Bucket, Key: res.Key, VersionID: res.VersionID}); r.Invoice != want {
		t.Errorf("error report invoice %+v, want %+v", r.Invoice, want)
	}
	if r.Reason.Message == "" {
		t.Errorf("error report reason has no message: %s", res.ErrorJSON)
	}
	// The Fail state keeps the function's error: its reason is the one reported.
	if cause := flow.ParseReason(res.Execution.Cause); !reasonsEqual(cause, r.Reason) {
		t.Errorf("execution cause reason %+v, report reason %+v: want equal", cause, r.Reason)
	}
	if f := res.Failure(); f.Error != errorName || f.Code != r.Reason.Code || !slices.Equal(f.Details, r.Reason.Details) {
		t.Errorf("Failure() = %+v, want error %s code %d details %q", f, errorName, r.Reason.Code, r.Reason.Details)
	}
	s.checkOriginal(t, res, body)
	return r
}

func reasonsEqual(a, b flow.Reason) bool {
	return a.Stage == b.Stage && a.Message == b.Message && a.Code == b.Code && slices.Equal(a.Details, b.Details) &&
		a.RetryAfterSeconds == b.RetryAfterSeconds
}

// upo is the part of a UPO v4-3 document the scenarios check.
type upo struct {
	XMLName                xml.Name `xml:"http://upo.schematy.mf.gov.pl/KSeF/v4-3 Potwierdzenie"`
	NumerReferencyjnySesji string   `xml:"NumerReferencyjnySesji"`
	ContextNIP             string   `xml:"Uwierzytelnienie>IdKontekstu>Nip"`
	KodFormularza          string   `xml:"KodFormularza"`
	Dokumenty              []struct {
		NipSprzedawcy      string `xml:"NipSprzedawcy"`
		NumerKSeFDokumentu string `xml:"NumerKSeFDokumentu"`
		NumerFaktury       string `xml:"NumerFaktury"`
		SkrotDokumentu     string `xml:"SkrotDokumentu"`
	} `xml:"Dokument"`
}

// upoReceiverTest is how KSeF TEST (and the emulator) names the receiver in a UPO.
const upoReceiverTest = "Ministerstwo Finansów - środowisko testowe (TE)"

type upoWant struct {
	nip, ksefNumber, invoiceNumber, hash, session string
}

var upoSchema = sync.OnceValues(func() (*xsd.Schema, error) {
	return xsd.Compile(official.FS(), official.UPOSchema)
})

// checkUPO validates a stored UPO against the official UPO v4-3 schema and checks that it
// confirms exactly the invoice wanted.
func checkUPO(t *testing.T, doc []byte, want upoWant) {
	t.Helper()
	schema, err := upoSchema()
	if err != nil {
		t.Fatalf("compile the UPO schema: %v", err)
	}
	// KSeF TEST names itself with an environment suffix that the schema's fixed value does not
	// allow (the official TEST samples fail validation the same way, PROTOCOL §5): require that
	// name, and validate the rest of the document under the production name.
	receiver := []byte("<NazwaPodmiotuPrzyjmujacego>" + upoReceiverTest + "</NazwaPodmiotuPrzyjmujacego>")
	if bytes.Count(doc, receiver) != 1 {
		t.Errorf("the UPO does not name the receiver %q", upoReceiverTest)
	}
	prod := bytes.Replace(doc, receiver, []byte("<NazwaPodmiotuPrzyjmujacego>Ministerstwo Finansów</NazwaPodmiotuPrzyjmujacego>"), 1)
	if err := schema.Validate(prod); err != nil {
		t.Errorf("the UPO is not valid against %s: %v", official.UPOSchema, err)
	}
	var u upo
	if err := xml.Unmarshal(doc, &u); err != nil {
		t.Fatalf("the UPO does not parse as a UPO v4-3 document: %v", err)
	}
	if u.NumerReferencyjnySesji != want.session || u.ContextNIP != want.nip || u.KodFormularza != "FA (3)" {
		t.Errorf("UPO session %q context NIP %q form %q, want %q %q %q", u.NumerReferencyjnySesji, u.ContextNIP, u.KodFormularza, want.session, want.nip, "FA (3)")
	}
	if len(u.Dokumenty) != 1 {
		t.Fatalf("the UPO confirms %d documents, want 1", len(u.Dokumenty))
	}
	d := u.Dokumenty[0]
	if d.NumerKSeFDokumentu != want.ksefNumber || d.NumerFaktury != want.invoiceNumber || d.NipSprzedawcy != want.nip || d.SkrotDokumentu != want.hash {
		t.Errorf("UPO document %+v, want KSeF number %s, invoice number %s, seller %s, hash %s", d, want.ksefNumber, want.invoiceNumber, want.nip, want.hash)
	}
}
