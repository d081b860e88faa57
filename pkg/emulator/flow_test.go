package emulator_test

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/internal/xsd"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

var upoSchema = sync.OnceValues(func() (*xsd.Schema, error) {
	return xsd.Compile(official.FS(), official.UPOSchema)
})

// validateUPO checks a UPO against the official XSD after normalising the TEST receiver name,
// which the XSD fixes to "Ministerstwo Finansów" while TEST appends its name.
func validateUPO(t testing.TB, doc []byte) {
	t.Helper()
	s, err := upoSchema()
	if err != nil {
		t.Fatalf("compile UPO schema: %v", err)
	}
	const testName = "Ministerstwo Finansów - środowisko testowe (TE)"
	if !bytes.Contains(doc, []byte("<NazwaPodmiotuPrzyjmujacego>"+testName+"<")) {
		t.Errorf("UPO does not name the receiver as KSeF TEST does:\n%s", doc)
	}
	normalized := bytes.Replace(doc, []byte(testName), []byte("Ministerstwo Finansów"), 1)
	if err := s.Validate(normalized); err != nil {
		t.Fatalf("UPO does not validate against the UPO XSD: %v\n%s", err, doc)
	}
}

type upoDoc struct {
	XMLName    xml.Name `xml:"http://upo.schematy.mf.gov.pl/KSeF/v4-3 Potwierdzenie"`
	SessionRef string   `xml:"NumerReferencyjnySesji"`
	ContextNIP string   `xml:"Uwierzytelnienie>IdKontekstu>Nip"`
	TokenRef   string   `xml:"Uwierzytelnienie>NumerReferencyjnyTokenaKSeF"`
	DocHash    string   `xml:"Uwierzytelnienie>SkrotDokumentuUwierzytelniajacego"`
	Page       int      `xml:"OpisPotwierdzenia>Strona"`
	Total      int      `xml:"OpisPotwierdzenia>CalkowitaLiczbaDokumentow"`
	FormCode   string   `xml:"KodFormularza"`
	Documents  []struct {
		SellerNIP  string `xml:"NipSprzedawcy"`
		KSeFNumber string `xml:"NumerKSeFDokumentu"`
		Number     string `xml:"NumerFaktury"`
		IssueDate  string `xml:"DataWystawieniaFaktury"`
		Sent       string `xml:"DataPrzeslaniaDokumentu"`
		Numbered   string `xml:"DataNadaniaNumeruKSeF"`
		Hash       string `xml:"SkrotDokumentu"`
		Mode       string `xml:"TrybWysylki"`
	} `xml:"Dokument"`
}

func parseUPO(t testing.TB, doc []byte) upoDoc {
	t.Helper()
	var u upoDoc
	if err := xml.Unmarshal(doc, &u); err != nil {
		t.Fatalf("parse UPO: %v\n%s", err, doc)
	}
	return u
}

var reKSeFNumber = regexp.MustCompile(`^([1-9](\d[1-9]|[1-9]\d)\d{7})-(20[2-9][0-9]|2[1-9]\d{2}|[3-9]\d{3})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])-([0-9A-F]{6})-?([0-9A-F]{6})-([0-9A-F]{2})$`)

// crc8 is the KSeF number checksum (polynomial 0x07, initial value 0), written here from the
// documentation, independently of the emulator.
func crc8(s string) byte {
	var crc byte
	for _, b := range []byte(s) {
		crc ^= b
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x07
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

func checkKSeFNumber(t testing.TB, n, nip string, day time.Time) {
	t.Helper()
	if !reKSeFNumber.MatchString(n) || len(n) != 35 {
		t.Fatalf("KSeF number %q does not match the documented pattern", n)
	}
	if want := fmt.Sprintf("%02X", crc8(n[:32])); n[33:] != want {
		t.Errorf("KSeF number %q: checksum %s, want %s", n, n[33:], want)
	}
	warsaw, _ := time.LoadLocation("Europe/Warsaw")
	if want := nip + "-" + day.In(warsaw).Format("20060102") + "-"; !strings.HasPrefix(n, want) {
		t.Errorf("KSeF number %q does not start with %q", n, want)
	}
}

// TestSampleInvoicesHappyPath sends every official sample invoice through the whole flow, each in
// its own emulator (samples 1, 4 and 22 are duplicates of each other): token login, session,
// send, status 100 -> 150 -> 200, UPO three ways, close, session UPO, invoice download.
func TestSampleInvoicesHappyPath(t *testing.T) {
	for _, name := range official.SampleInvoiceNames() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			invoice := official.SampleInvoices()[name]
			srv := emutest.NewServerAt(t, testStart, emulator.Config{Tokens: map[string][]string{sellerNIP: {"sample-token"}}})
			c := newClient(t, srv)
			tk := c.loginToken(sellerNIP, "sample-token")
			access := tk.AccessToken.Token
			s := c.openSession(access)
			sent := srv.Clock.Now()
			invRef := c.sendInvoice(access, s, invoice)

			if st := c.invoiceStatus(access, s, invRef); st.Status.Code != 100 || st.KSeFNumber != "" {
				t.Fatalf("right after sending: status %d ksefNumber %q, want 100 and none", st.Status.Code, st.KSeFNumber)
			}
			srv.Clock.Advance(emulator.DefaultAcceptDelay)
			if st := c.invoiceStatus(access, s, invRef); st.Status.Code != 150 {
				t.Fatalf("after AcceptDelay: status %d, want 150", st.Status.Code)
			}
			srv.Clock.Advance(emulator.DefaultProcessingDelay)
			st := c.invoiceStatus(access, s, invRef)
			if st.Status.Code != 200 {
				t.Fatalf("after processing: status %+v, want 200", st.Status)
			}
			checkKSeFNumber(t, st.KSeFNumber, sellerNIP, srv.Clock.Now())
			if st.InvoiceHash != b64sha256(invoice) || st.OrdinalNumber != 1 || st.ReferenceNumber != invRef {
				t.Errorf("status %+v does not describe the invoice sent", st)
			}
			if !st.InvoicingDate.Equal(sent) {
				t.Errorf("invoicingDate %v, want the time of sending %v", st.InvoicingDate, sent)
			}
			if st.AcquisitionDate == nil || !st.AcquisitionDate.After(st.InvoicingDate) {
				t.Errorf("acquisitionDate %v is not after invoicingDate %v", st.AcquisitionDate, st.InvoicingDate)
			}
			if st.PermanentStorageDate != nil {
				t.Errorf("permanentStorageDate %v present before storage", st.PermanentStorageDate)
			}
			if st.InvoicingMode != "Offline" { // every sample was issued before testStart
				t.Errorf("invoicingMode %q, want Offline for an invoice issued on an earlier day", st.InvoicingMode)
			}
			// The invoice becomes downloadable at permanentStorageDate.
			r := c.do("GET", "/invoices/ksef/"+st.KSeFNumber, access, nil)
			if c.expect(r, 400); r.exceptionCode(t) != 21165 {
				t.Errorf("download before storage: code %d, want 21165", r.exceptionCode(t))
			}
			srv.Clock.Advance(emulator.DefaultStorageDelay)
			st = c.invoiceStatus(access, s, invRef)
			if st.PermanentStorageDate == nil || !st.PermanentStorageDate.After(*st.AcquisitionDate) {
				t.Errorf("permanentStorageDate %v, want after acquisitionDate %v", st.PermanentStorageDate, st.AcquisitionDate)
			}
			r = c.do("GET", "/invoices/ksef/"+st.KSeFNumber, access, nil)
			c.expect(r, 200)
			if !bytes.Equal(r.body, invoice) || r.header.Get("x-ms-meta-hash") != b64sha256(invoice) {
				t.Errorf("downloaded invoice differs from the one sent or has a wrong x-ms-meta-hash")
			}

			// Invoice UPO: the pre-signed link (no bearer), by reference and by KSeF number.
			viaLink := c.doURL("GET", st.UPODownloadURL, "", nil)
			c.expect(viaLink, 200)
			viaRef := c.do("GET", "/sessions/"+s.ref+"/invoices/"+invRef+"/upo", access, nil)
			c.expect(viaRef, 200)
			viaNumber := c.do("GET", "/sessions/"+s.ref+"/invoices/ksef/"+st.KSeFNumber+"/upo", access, nil)
			c.expect(viaNumber, 200)
			for _, u := range []reply{viaLink, viaRef, viaNumber} {
				if got := u.header.Get("Content-Type"); !strings.HasPrefix(got, "application/xml") {
					t.Errorf("UPO content type %q", got)
				}
				if u.header.Get("x-ms-meta-hash") != b64sha256(u.body) {
					t.Errorf("x-ms-meta-hash %q is not the SHA-256 of the UPO", u.header.Get("x-ms-meta-hash"))
				}
				if !bytes.Equal(u.body, viaLink.body) {
					t.Errorf("the three UPO downloads differ")
				}
			}
			validateUPO(t, viaLink.body)
			u := parseUPO(t, viaLink.body)
			if len(u.Documents) != 1 || u.Documents[0].KSeFNumber != st.KSeFNumber || u.Documents[0].Hash != b64sha256(invoice) ||
				u.Documents[0].SellerNIP != sellerNIP || u.SessionRef != s.ref || u.ContextNIP != sellerNIP || u.TokenRef == "" ||
				u.FormCode != "FA (3)" || u.Documents[0].Mode != "Offline" {
				t.Errorf("invoice UPO %+v does not describe the invoice", u)
			}

			// Close: 170, then 200 with the session UPO.
			c.closeSession(access, s)
			if ss := c.sessionStatus(access, s); ss.Status.Code != 170 || ss.UPO != nil {
				t.Fatalf("after close: session %+v, want 170 without UPO", ss.Status)
			}
			srv.Clock.Advance(emulator.DefaultProcessingDelay)
			ss := c.sessionStatus(access, s)
			if ss.Status.Code != 200 || ss.UPO == nil || len(ss.UPO.Pages) != 1 {
				t.Fatalf("processed session: %+v, want 200 with one UPO page", ss)
			}
			if ss.InvoiceCount != 1 || ss.SuccessfulInvoiceCount != 1 || ss.FailedInvoiceCount != 0 {
				t.Errorf("counts %d/%d/%d, want 1/1/0", ss.InvoiceCount, ss.SuccessfulInvoiceCount, ss.FailedInvoiceCount)
			}
			page := ss.UPO.Pages[0]
			sessionUPO := c.doURL("GET", page.DownloadURL, "", nil)
			c.expect(sessionUPO, 200)
			byRef := c.do("GET", "/sessions/"+s.ref+"/upo/"+page.ReferenceNumber, access, nil)
			c.expect(byRef, 200)
			if !bytes.Equal(sessionUPO.body, byRef.body) || sessionUPO.header.Get("x-ms-meta-hash") != b64sha256(sessionUPO.body) {
				t.Errorf("session UPO downloads differ or carry a wrong hash")
			}
			validateUPO(t, sessionUPO.body)
			if su := parseUPO(t, sessionUPO.body); su.Page != 1 || su.Total != 1 || len(su.Documents) != 1 || su.Documents[0].KSeFNumber != st.KSeFNumber {
				t.Errorf("session UPO %+v does not list the invoice", su)
			}
		})
	}
}

// TestDuplicateSamples sends samples 1, 4 and 22 (same seller, RodzajFaktury and P_2) to one
// emulator: the second and third are 440 duplicates naming the first.
func TestDuplicateSamples(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{Tokens: map[string][]string{sellerNIP: {"tok"}}})
	c := newClient(t, srv)
	access := c.loginToken(sellerNIP, "tok").AccessToken.Token
	first := c.openSession(access)
	samples := official.SampleInvoices()
	ref1 := c.sendInvoice(access, first, samples["FA_3_Przyklad_1.xml"])
	c.settle()
	orig := c.invoiceStatus(access, first, ref1)
	if orig.Status.Code != 200 {
		t.Fatalf("first: %+v", orig.Status)
	}
	second := c.openSession(access)
	for _, name := range []string{"FA_3_Przyklad_4.xml", "FA_3_Przyklad_22.xml"} {
		ref := c.sendInvoice(access, second, samples[name])
		c.settle()
		st := c.invoiceStatus(access, second, ref)
		if st.Status.Code != 440 || st.Status.Description != "Duplikat faktury" {
			t.Fatalf("%s: status %+v, want 440", name, st.Status)
		}
		if st.Status.Extensions["originalKsefNumber"] != orig.KSeFNumber || st.Status.Extensions["originalSessionReferenceNumber"] != first.ref {
			t.Errorf("%s: extensions %v, want the original %s in %s", name, st.Status.Extensions, orig.KSeFNumber, first.ref)
		}
		if st.KSeFNumber != "" || st.UPODownloadURL != "" {
			t.Errorf("%s: a duplicate got a KSeF number or UPO", name)
		}
	}
	// Sample 15 shares P_2 but is a UPR invoice: not a duplicate.
	ref := c.sendInvoice(access, second, samples["FA_3_Przyklad_15.xml"])
	c.settle()
	if st := c.invoiceStatus(access, second, ref); st.Status.Code != 200 {
		t.Errorf("sample 15: %+v, want 200", st.Status)
	}
	r := c.do("GET", "/sessions/"+second.ref+"/invoices/failed", access, nil)
	c.expect(r, 200)
	var failed struct {
		Invoices []invoiceStatus `json:"invoices"`
	}
	r.decode(t, &failed)
	if len(failed.Invoices) != 2 || failed.Invoices[0].Status.Code != 440 {
		t.Errorf("failed list %+v, want the two duplicates", failed.Invoices)
	}
}

// TestUPOProductionName: with EnvironmentName "PRD" the UPO names the receiver exactly as the
// XSD fixes it, and validates without normalisation.
func TestUPOProductionName(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{EnvironmentName: "PRD", Tokens: map[string][]string{sellerNIP: {"tok"}}})
	c := newClient(t, srv)
	access := c.loginToken(sellerNIP, "tok").AccessToken.Token
	s := c.openSession(access)
	ref := c.sendInvoice(access, s, official.SampleInvoices()["FA_3_Przyklad_2.xml"])
	c.settle()
	r := c.do("GET", "/sessions/"+s.ref+"/invoices/"+ref+"/upo", access, nil)
	c.expect(r, 200)
	schema, err := upoSchema()
	if err != nil {
		t.Fatal(err)
	}
	if err := schema.Validate(r.body); err != nil {
		t.Errorf("PRD UPO does not validate as it is: %v\n%s", err, r.body)
	}
}
