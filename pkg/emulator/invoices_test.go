package emulator_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// sample1 returns official sample 1 with the invoice number replaced by number.
func sample1(number string) []byte {
	doc := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	return bytes.Replace(doc, []byte("<P_2>FV2026/02/150</P_2>"), []byte("<P_2>"+number+"</P_2>"), 1)
}

func replace(doc []byte, old, repl string) []byte {
	if !bytes.Contains(doc, []byte(old)) {
		panic("sample does not contain " + old)
	}
	return bytes.Replace(doc, []byte(old), []byte(repl), 1)
}

// session logs in as the seller of the samples and opens a session.
func sellerSession(t *testing.T, cfg emulator.Config) (*emutest.Server, *kclient, string, onlineSession) {
	t.Helper()
	srv, c := tokenServer(t, cfg)
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	return srv, c, access, c.openSession(access)
}

// TestInvoiceRejected covers invoices KSeF accepts for processing (202) and then rejects, each
// with its documented status and a detail saying why.
func TestInvoiceRejected(t *testing.T) {
	today := testStart.Format("2006-01-02")
	tests := []struct {
		name       string
		doc        []byte
		wantCode   int
		wantDetail string
	}{
		{"malformed XML", replace(sample1("M/1"), "</Podmiot1>", "</Podmiot>"), 450, "tag mismatch"},
		{"byte order mark", append([]byte("\xEF\xBB\xBF"), sample1("B/1")...), 450, "BOM"},
		{"non-UTF-8 declaration", replace(sample1("E/1"), `encoding="UTF-8"`, `encoding="ISO-8859-2"`), 450, "ISO-8859-2"},
		{"processing instruction", replace(sample1("P/1"), "<Faktura ", "<?xml-stylesheet href=\"a.xsl\"?>\n<Faktura "), 450, "xml-stylesheet"},
		{"DTD", replace(sample1("D/1"), "<Faktura ", "<!DOCTYPE Faktura>\n<Faktura "), 450, "DTD"},
		{"XSD: missing P_2", replace(sample1("X/1"), "<P_2>X/1</P_2>", ""), 450, "P_2"},
		{"XSD: unknown element", replace(sample1("X/2"), "<P_1M>Warszawa</P_1M>", "<P_1X>Warszawa</P_1X>"), 450, "P_1X"},
		{"issue date in the future", replace(sample1("F/1"), "<P_1>2026-02-15</P_1>", "<P_1>"+testStart.AddDate(0, 0, 1).Format("2006-01-02")+"</P_1>"), 450, "P_1"},
		{"seller is not the context", replace(sample1("N/1"), "<NIP>9999999999</NIP>", "<NIP>1234563218</NIP>"), 410, "1234563218"},
		{"attachment in an online session", replace(sample1("Z/1"), "</Faktura>",
			"<Zalacznik><BlokDanych><MetaDane><ZKlucz>k</ZKlucz><ZWartosc>v</ZWartosc></MetaDane></BlokDanych></Zalacznik></Faktura>"), 415, "załącznik"},
		{"over 1 MB", replace(sample1("S/1"), "</Faktura>", "<!--"+strings.Repeat("x", 1_000_000)+"--></Faktura>"), 430, "1000000"},
		{"issued today is fine", replace(sample1("T/1"), "<P_1>2026-02-15</P_1>", "<P_1>"+today+"</P_1>"), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c, access, s := sellerSession(t, emulator.Config{})
			ref := c.sendInvoice(access, s, tt.doc)
			c.settle()
			st := c.invoiceStatus(access, s, ref)
			if st.Status.Code != tt.wantCode {
				t.Fatalf("status %+v, want %d", st.Status, tt.wantCode)
			}
			if tt.wantCode == 200 {
				if st.InvoicingMode != "Online" {
					t.Errorf("invoicingMode %q, want Online for an invoice issued today", st.InvoicingMode)
				}
				return
			}
			if !contains(st.Status.Details, tt.wantDetail) {
				t.Errorf("details %q do not mention %q", st.Status.Details, tt.wantDetail)
			}
			if st.KSeFNumber != "" || st.UPODownloadURL != "" || st.AcquisitionDate != nil {
				t.Errorf("a rejected invoice has a KSeF number, UPO or acquisition date: %+v", st)
			}
		})
	}
}

// TestInvoiceXSDMessage checks that the schema validator's own message reaches the details.
func TestInvoiceXSDMessage(t *testing.T) {
	_, c, access, s := sellerSession(t, emulator.Config{})
	ref := c.sendInvoice(access, s, replace(sample1("X/3"), "<KodWaluty>PLN</KodWaluty>", "<KodWaluty>PLNX</KodWaluty>"))
	c.settle()
	st := c.invoiceStatus(access, s, ref)
	if st.Status.Code != 450 || st.Status.Description != "Błąd weryfikacji semantyki dokumentu faktury" {
		t.Fatalf("status %+v, want 450", st.Status)
	}
	if !contains(st.Status.Details, "line ") || !contains(st.Status.Details, "KodWaluty") {
		t.Errorf("details %q do not carry the validator's message with its line", st.Status.Details)
	}
}

// TestSendInvoiceBadRequest covers the synchronous 400 answers of POST .../invoices.
func TestSendInvoiceBadRequest(t *testing.T) {
	doc := sample1("H/1")
	tests := []struct {
		name     string
		mutate   func(req map[string]any)
		wantCode int
	}{
		{"encrypted size", func(req map[string]any) { req["encryptedInvoiceSize"] = req["encryptedInvoiceSize"].(int) + 16 }, 21402},
		{"encrypted hash", func(req map[string]any) { req["encryptedInvoiceHash"] = b64sha256([]byte("other")) }, 21403},
		{"hash of the Base64 text", func(req map[string]any) {
			req["encryptedInvoiceHash"] = b64sha256([]byte(fmt.Sprint(req["encryptedInvoiceContent"])))
		}, 21403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, c, access, s := sellerSession(t, emulator.Config{})
			req := sendRequest(t, s, doc)
			tt.mutate(req)
			r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, req)
			c.expect(r, 400)
			if code := r.exceptionCode(t); code != tt.wantCode {
				t.Errorf("code %d, want %d", code, tt.wantCode)
			}
		})
	}
	t.Run("hash too short", func(t *testing.T) {
		_, c, access, s := sellerSession(t, emulator.Config{})
		req := sendRequest(t, s, doc)
		req["invoiceHash"] = req["invoiceHash"].(string)[:43]
		r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, req, invalid()...)
		if c.expect(r, 400); r.exceptionCode(t) != 21405 {
			t.Errorf("code %d, want 21405", r.exceptionCode(t))
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		_, c, access, s := sellerSession(t, emulator.Config{})
		r := c.do("POST", "/sessions/online/20250625-SO-2C3E6C8000-B675CF5D68-07/invoices", access, sendRequest(t, s, doc))
		if c.expect(r, 400); r.exceptionCode(t) != 21173 {
			t.Errorf("code %d, want 21173", r.exceptionCode(t))
		}
	})
}

// TestInvoiceContentMismatch: the plaintext does not match the declared invoiceSize or
// invoiceHash. KSeF finds that only after decryption: status 430.
func TestInvoiceContentMismatch(t *testing.T) {
	doc := sample1("C/1")
	for _, tt := range []struct {
		name   string
		mutate func(req map[string]any)
		detail string
	}{
		{"size", func(req map[string]any) { req["invoiceSize"] = len(doc) + 1 }, "Rozmiar"},
		{"size with BOM counted", func(req map[string]any) { req["invoiceSize"] = len(doc) + 3 }, "Rozmiar"},
		{"hash", func(req map[string]any) { req["invoiceHash"] = b64sha256(append([]byte("\xEF\xBB\xBF"), doc...)) }, "Skrót"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, c, access, s := sellerSession(t, emulator.Config{})
			req := sendRequest(t, s, doc)
			tt.mutate(req)
			r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, req)
			c.expect(r, 202)
			var out struct {
				ReferenceNumber string `json:"referenceNumber"`
			}
			r.decode(t, &out)
			c.settle()
			st := c.invoiceStatus(access, s, out.ReferenceNumber)
			if st.Status.Code != 430 || !contains(st.Status.Details, tt.detail) {
				t.Errorf("status %+v, want 430 about %s", st.Status, tt.detail)
			}
		})
	}
}

// TestInvoiceDecryptionFailure: an invoice encrypted with another key or IV is 435.
func TestInvoiceDecryptionFailure(t *testing.T) {
	_, c, access, s := sellerSession(t, emulator.Config{})
	wrong := s
	wrong.key = make([]byte, 32)
	_, _ = rand.Read(wrong.key)
	r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(t, wrong, sample1("K/1")))
	c.expect(r, 202)
	var out struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	r.decode(t, &out)
	c.settle()
	st := c.invoiceStatus(access, s, out.ReferenceNumber)
	// A wrong key yields garbage that is almost never valid PKCS#7 padding; when it is, the
	// plaintext fails the declared hash instead.
	if st.Status.Code != 435 && st.Status.Code != 430 {
		t.Fatalf("status %+v, want 435", st.Status)
	}
}

// TestSessionKeyNotDecryptable: a symmetric key encrypted with OAEP SHA-1 cannot be decrypted:
// the session is opened (201) but its status is 415 and sending gives 21180.
func TestSessionKeyNotDecryptable(t *testing.T) {
	_, c := tokenServer(t, emulator.Config{})
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	pub, keyID := c.mfKey("SymmetricKeyEncryption")
	s := onlineSession{key: make([]byte, 32), iv: make([]byte, 16)}
	enc, err := rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, s.key, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := c.do("POST", "/sessions/online", access, map[string]any{
		"formCode":   formCodeFA3(),
		"encryption": map[string]any{"encryptedSymmetricKey": enc, "initializationVector": s.iv, "publicKeyId": keyID},
	})
	c.expect(r, 201)
	var out struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	r.decode(t, &out)
	s.ref = out.ReferenceNumber
	if st := c.sessionStatus(access, s); st.Status.Code != 415 {
		t.Fatalf("session status %+v, want 415", st.Status)
	}
	r = c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(t, s, sample1("Q/1")))
	if c.expect(r, 400); r.exceptionCode(t) != 21180 || !contains(r.exceptionDetails(t), "(415)") {
		t.Errorf("send to a 415 session: %s, want 21180 naming status 415", r.body)
	}
}

func TestOpenSessionBadRequest(t *testing.T) {
	_, c := tokenServer(t, emulator.Config{})
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	pub, keyID := c.mfKey("SymmetricKeyEncryption")
	key := make([]byte, 32)
	for _, tt := range []struct {
		name string
		form map[string]string
		iv   []byte
	}{
		{"form code without the space", map[string]string{"systemCode": "FA(3)", "schemaVersion": "1-0E", "value": "FA"}, make([]byte, 16)},
		{"unknown form", map[string]string{"systemCode": "FA (9)", "schemaVersion": "1-0E", "value": "FA"}, make([]byte, 16)},
		{"short IV", formCodeFA3(), make([]byte, 8)},
	} {
		r := c.do("POST", "/sessions/online", access, map[string]any{
			"formCode":   tt.form,
			"encryption": map[string]any{"encryptedSymmetricKey": oaepSHA256(t, pub, key), "initializationVector": tt.iv, "publicKeyId": keyID},
		})
		if c.expect(r, 400); r.exceptionCode(t) != 21405 {
			t.Errorf("%s: code %d, want 21405", tt.name, r.exceptionCode(t))
		}
	}
}

// TestSessionLifecycle: closed and expired sessions refuse invoices (21180), the invoice limit
// (21155), a session without invoices is cancelled (440), one without valid invoices is 445.
func TestSessionLifecycle(t *testing.T) {
	t.Run("closed", func(t *testing.T) {
		_, c, access, s := sellerSession(t, emulator.Config{})
		c.sendInvoice(access, s, sample1("L/1"))
		c.closeSession(access, s)
		r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(t, s, sample1("L/2")))
		if c.expect(r, 400); r.exceptionCode(t) != 21180 || !contains(r.exceptionDetails(t), "(170)") {
			t.Errorf("send to a closed session: %s, want 21180 naming status 170", r.body)
		}
		r = c.do("POST", "/sessions/online/"+s.ref+"/close", access, nil)
		if c.expect(r, 400); r.exceptionCode(t) != 21180 {
			t.Errorf("second close: code %d, want 21180", r.exceptionCode(t))
		}
	})
	t.Run("expired", func(t *testing.T) {
		srv, c, _, s := sellerSession(t, emulator.Config{OnlineSessionTTL: time.Hour, AccessTokenTTL: 2 * time.Hour})
		access := c.loginToken(sellerNIP, token1).AccessToken.Token
		c.sendInvoice(access, s, sample1("L/3"))
		srv.Clock.Advance(time.Hour)
		r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(t, s, sample1("L/4")))
		if c.expect(r, 400); r.exceptionCode(t) != 21180 {
			t.Errorf("send to an expired session: code %d, want 21180", r.exceptionCode(t))
		}
		if st := c.sessionStatus(access, s); st.Status.Code != 170 {
			t.Errorf("expired session: %+v, want it closed (170)", st.Status)
		}
		srv.Clock.Advance(emulator.DefaultProcessingDelay)
		if st := c.sessionStatus(access, s); st.Status.Code != 200 || st.SuccessfulInvoiceCount != 1 {
			t.Errorf("expired session: %+v, want it closed and processed (200)", st)
		}
	})
	t.Run("invoice limit", func(t *testing.T) {
		_, c, access, s := sellerSession(t, emulator.Config{MaxInvoicesPerSession: 2})
		c.sendInvoice(access, s, sample1("L/5"))
		c.sendInvoice(access, s, sample1("L/6"))
		r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(t, s, sample1("L/7")))
		if c.expect(r, 400); r.exceptionCode(t) != 21155 {
			t.Errorf("third invoice: code %d, want 21155", r.exceptionCode(t))
		}
		r = c.do("GET", "/limits/context", access, nil)
		c.expect(r, 200)
		var limits struct {
			OnlineSession struct {
				MaxInvoiceSizeInMB               int `json:"maxInvoiceSizeInMB"`
				MaxInvoiceWithAttachmentSizeInMB int `json:"maxInvoiceWithAttachmentSizeInMB"`
				MaxInvoices                      int `json:"maxInvoices"`
			} `json:"onlineSession"`
		}
		r.decode(t, &limits)
		if l := limits.OnlineSession; l.MaxInvoices != 2 || l.MaxInvoiceSizeInMB != 1 || l.MaxInvoiceWithAttachmentSizeInMB != 3 {
			t.Errorf("limits %+v, want 1 MB / 3 MB / 2 invoices", l)
		}
	})
	t.Run("no invoices", func(t *testing.T) {
		srv, c, access, s := sellerSession(t, emulator.Config{})
		c.closeSession(access, s)
		srv.Clock.Advance(emulator.DefaultProcessingDelay)
		if st := c.sessionStatus(access, s); st.Status.Code != 440 || !contains(st.Status.Details, "Nie przesłano faktur") {
			t.Errorf("empty session: %+v, want 440", st.Status)
		}
	})
	t.Run("no valid invoices", func(t *testing.T) {
		srv, c, access, s := sellerSession(t, emulator.Config{})
		c.sendInvoice(access, s, replace(sample1("V/1"), "<P_2>V/1</P_2>", ""))
		c.closeSession(access, s)
		if st := c.sessionStatus(access, s); st.Status.Code != 170 {
			t.Errorf("just closed: %d, want 170", st.Status.Code)
		}
		srv.Clock.Advance(emulator.DefaultAcceptDelay + emulator.DefaultProcessingDelay)
		st := c.sessionStatus(access, s)
		if st.Status.Code != 445 || st.FailedInvoiceCount != 1 || st.UPO != nil {
			t.Errorf("session with only a rejected invoice: %+v, want 445 without UPO", st)
		}
	})
	t.Run("unknown session", func(t *testing.T) {
		_, c, access, _ := sellerSession(t, emulator.Config{})
		r := c.do("GET", "/sessions/20250625-SO-2C3E6C8000-B675CF5D68-07", access, nil)
		if c.expect(r, 400); r.exceptionCode(t) != 21173 {
			t.Errorf("code %d, want 21173", r.exceptionCode(t))
		}
	})
}

// TestSessionInvoiceListPaging: 12 invoices in pages of 10 with x-continuation-token.
func TestSessionInvoiceListPaging(t *testing.T) {
	_, c, access, s := sellerSession(t, emulator.Config{})
	var refs []string
	for i := range 12 {
		refs = append(refs, c.sendInvoice(access, s, sample1("PG/"+strconv.Itoa(i))))
	}
	c.settle()
	var got []string
	token := ""
	for range 3 {
		var extra []string
		if token != "" {
			extra = []string{"x-continuation-token", token}
		}
		r := c.do("GET", "/sessions/"+s.ref+"/invoices?pageSize=10", access, nil, extra...)
		c.expect(r, 200)
		var page struct {
			ContinuationToken string          `json:"continuationToken"`
			Invoices          []invoiceStatus `json:"invoices"`
		}
		r.decode(t, &page)
		for _, inv := range page.Invoices {
			got = append(got, inv.ReferenceNumber)
			if inv.Status.Code != 200 || inv.KSeFNumber == "" {
				t.Errorf("invoice %s: %+v", inv.ReferenceNumber, inv.Status)
			}
		}
		if token = page.ContinuationToken; token == "" {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(refs, ",") {
		t.Errorf("paged through %v, want %v", got, refs)
	}
	r := c.do("GET", "/sessions/"+s.ref+"/invoices", access, nil, "x-continuation-token", "not-a-token")
	if c.expect(r, 400); r.exceptionCode(t) != 21418 {
		t.Errorf("malformed token: code %d, want 21418", r.exceptionCode(t))
	}
}

func TestListSessions(t *testing.T) {
	srv, c, access, first := sellerSession(t, emulator.Config{})
	c.sendInvoice(access, first, sample1("LS/1"))
	c.closeSession(access, first)
	srv.Clock.Advance(time.Minute)
	second := c.openSession(access)
	list := func(query string) []string {
		t.Helper()
		r := c.do("GET", "/sessions?sessionType=Online"+query, access, nil)
		c.expect(r, 200)
		var out struct {
			Sessions []struct {
				ReferenceNumber   string `json:"referenceNumber"`
				TotalInvoiceCount int    `json:"totalInvoiceCount"`
			} `json:"sessions"`
		}
		r.decode(t, &out)
		var refs []string
		for _, s := range out.Sessions {
			refs = append(refs, s.ReferenceNumber)
		}
		return refs
	}
	if got := list(""); len(got) != 2 || got[0] != second.ref || got[1] != first.ref {
		t.Errorf("sessions %v, want newest first [%s %s]", got, second.ref, first.ref)
	}
	if got := list("&statuses=Succeeded"); len(got) != 1 || got[0] != first.ref {
		t.Errorf("succeeded sessions %v, want [%s]", got, first.ref)
	}
	if got := list("&statuses=InProgress"); len(got) != 1 || got[0] != second.ref {
		t.Errorf("sessions in progress %v, want [%s]", got, second.ref)
	}
	if got := list("&dateCreatedFrom=" + srv.Clock.Now().Format(time.RFC3339)); len(got) != 1 {
		t.Errorf("sessions created since now %v, want one", got)
	}
	r := c.do("GET", "/sessions?sessionType=Batch", access, nil)
	c.expect(r, 200)
}

// TestUPONotFound: UPOs of unknown or not yet accepted invoices give 21178.
func TestUPONotFound(t *testing.T) {
	_, c, access, s := sellerSession(t, emulator.Config{})
	ref := c.sendInvoice(access, s, sample1("U/1"))
	for _, path := range []string{
		"/sessions/" + s.ref + "/invoices/" + ref + "/upo",
		"/sessions/" + s.ref + "/invoices/ksef/9999999999-20261125-0100001AF629-AF/upo",
		"/sessions/" + s.ref + "/upo/20250918-EU-2EBD6FA000-242EB9B66D-43",
	} {
		r := c.do("GET", path, access, nil)
		if c.expect(r, 400); r.exceptionCode(t) != 21178 {
			t.Errorf("%s: code %d, want 21178", path, r.exceptionCode(t))
		}
	}
}

// TestPresignedLinkExpires: the UPO link needs no bearer, ignores one, and stops working at its
// expiry; a tampered link is refused.
func TestPresignedLinkExpires(t *testing.T) {
	srv, c, access, s := sellerSession(t, emulator.Config{DownloadURLTTL: time.Hour, AccessTokenTTL: 2 * time.Hour})
	ref := c.sendInvoice(access, s, sample1("EX/1"))
	c.settle()
	st := c.invoiceStatus(access, s, ref)
	c.expect(c.doURL("GET", st.UPODownloadURL, access, nil), 200)
	c.expect(c.doURL("GET", strings.Replace(st.UPODownloadURL, "sig=", "sig=x", 1), "", nil), 403)
	if !st.UPODownloadURLExpirationDate.Equal(srv.Clock.Now().Add(time.Hour).Truncate(time.Second)) &&
		!st.UPODownloadURLExpirationDate.Equal(srv.Clock.Now().Add(time.Hour)) {
		t.Errorf("link expires %v, want in an hour", st.UPODownloadURLExpirationDate)
	}
	srv.Clock.Advance(time.Hour)
	c.expect(c.doURL("GET", st.UPODownloadURL, "", nil), 403)
	// Each status call issues a fresh link.
	st = c.invoiceStatus(access, s, ref)
	c.expect(c.doURL("GET", st.UPODownloadURL, "", nil), 200)
}
