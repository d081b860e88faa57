package ksef

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// The §23 test vector: key 00..1F, IV 00..0F, the official sample invoice FA_3_Przyklad_1.xml.
const (
	vectorInvoiceHash          = "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA="
	vectorEncryptedInvoiceHash = "EWB5+Jp1PzZKVE5lLS5w5DyQ/77SZZ7qPCGPboOwz3k="
	vectorEncryptedSize        = 3392
	vectorInvoiceSize          = 3387
	vectorFirstBlockHex        = "d2ee3a0af3da74a195d80586a5721e50"
)

func sequence(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

// fixedHandle is a session handle with the test-vector key and IV.
func fixedHandle() *SessionHandle {
	return &SessionHandle{ReferenceNumber: testSessionRef, FormCode: FormCodeFA3(), Key: sequence(32), IV: sequence(16)}
}

func sampleInvoice(t testing.TB) []byte {
	t.Helper()
	inv, ok := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	if !ok {
		t.Fatal("official sample FA_3_Przyklad_1.xml missing")
	}
	return inv
}

func TestOpenOnlineSession(t *testing.T) {
	ts := newTestServer(t)
	var gotKey, gotIV []byte
	ts.mux.HandleFunc("/v2/sessions/online", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		testHeader(t, r, "Content-Type", "application/json")
		raw := readBody(t, r)
		checkGoldenJSON(t, "open_online_session", raw, "encryption.encryptedSymmetricKey", "encryption.initializationVector")
		body := decodeBody(t, raw)
		if got := field(t, body, "encryption.publicKeyId"); got != ts.symKey.id {
			t.Errorf("publicKeyId: got %v, want the SymmetricKeyEncryption key %s", got, ts.symKey.id)
		}
		gotKey = decryptOAEP(t, ts.symKey, b64Field(t, body, "encryption.encryptedSymmetricKey"))
		gotIV = b64Field(t, body, "encryption.initializationVector")
		serveFile(t, w, http.StatusCreated, "session_open.json")
	})
	s, err := ts.client.OpenOnlineSession(t.Context(), FormCodeFA3())
	if err != nil {
		t.Fatalf("OpenOnlineSession: %v", err)
	}
	if len(gotKey) != 32 || len(gotIV) != 16 {
		t.Fatalf("server got a %d-byte key and a %d-byte IV, want 32 and 16", len(gotKey), len(gotIV))
	}
	if !bytes.Equal(s.Key, gotKey) || !bytes.Equal(s.IV, gotIV) {
		t.Error("the handle's key and IV differ from what was sent")
	}
	want := &SessionHandle{
		ReferenceNumber: "20250625-SO-2C3E6C8000-B675CF5D68-07",
		FormCode:        FormCode{SystemCode: "FA (3)", SchemaVersion: "1-0E", Value: "FA"},
		ValidUntil:      time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC),
		Key:             gotKey,
		IV:              gotIV,
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("handle: got %+v, want %+v", s, want)
	}
}

func TestOpenOnlineSessionDrawsFreshKeys(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/online", func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusCreated, "session_open.json")
	})
	a, err := ts.client.OpenOnlineSession(t.Context(), FormCodeFA3())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.client.OpenOnlineSession(t.Context(), FormCodeFA3())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Key, b.Key) || bytes.Equal(a.IV, b.IV) {
		t.Error("two sessions got the same key or IV")
	}
	if ts.keyFetches() != 1 {
		t.Errorf("MF key list fetched %d times, want 1 (cached)", ts.keyFetches())
	}
}

func TestOpenOnlineSessionRejectsIncompleteFormCode(t *testing.T) {
	ts := newTestServer(t)
	_, err := ts.client.OpenOnlineSession(t.Context(), FormCode{SystemCode: "FA (3)", Value: "FA"})
	if err == nil || !strings.Contains(err.Error(), "form code") {
		t.Errorf("got %v, want a form code error", err)
	}
}

func TestSendInvoice(t *testing.T) {
	ts := newTestServer(t)
	invoice := sampleInvoice(t)
	handle := fixedHandle()
	ts.mux.HandleFunc("/v2/sessions/online/{ref}/invoices", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		testHeader(t, r, "Content-Type", "application/json")
		if got := r.PathValue("ref"); got != testSessionRef {
			t.Errorf("session in path: got %q, want %q", got, testSessionRef)
		}
		raw := readBody(t, r)
		// With the test-vector key and IV the request is deterministic: compare all of it.
		checkGoldenJSON(t, "send_invoice", raw)
		body := decodeBody(t, raw)
		content := b64Field(t, body, "encryptedInvoiceContent")
		if got := hex.EncodeToString(content[:16]); got != vectorFirstBlockHex {
			t.Errorf("first ciphertext block: got %x, want %s (the IV must not be prepended)", content[:16], vectorFirstBlockHex)
		}
		plain, err := decryptAESCBC(handle.Key, handle.IV, content)
		if err != nil || !bytes.Equal(plain, invoice) {
			t.Errorf("decrypted invoice differs from the original (err %v)", err)
		}
		serveFile(t, w, http.StatusAccepted, "invoice_send.json")
	})
	sent, err := ts.client.SendInvoice(t.Context(), handle, invoice, nil)
	if err != nil {
		t.Fatalf("SendInvoice: %v", err)
	}
	want := &SentInvoice{
		ReferenceNumber:      "20250625-EE-319D7EE000-B67F415CDC-2C",
		InvoiceHash:          vectorInvoiceHash,
		InvoiceSize:          vectorInvoiceSize,
		EncryptedInvoiceHash: vectorEncryptedInvoiceHash,
		EncryptedInvoiceSize: vectorEncryptedSize,
	}
	if *sent != *want {
		t.Errorf("SentInvoice: got %+v, want %+v", sent, want)
	}
}

func TestSendInvoiceOptions(t *testing.T) {
	ts := newTestServer(t)
	corrected := vectorInvoiceHash
	tests := []struct {
		name        string
		opts        *SendOptions
		wantOffline bool
		wantHash    any
	}{
		{"defaults", nil, false, nil},
		{"offline", &SendOptions{OfflineMode: true}, true, nil},
		{"technical correction", &SendOptions{OfflineMode: true, HashOfCorrectedInvoice: corrected}, true, corrected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body map[string]any
			srvHandle := fixedHandle()
			srvHandle.ReferenceNumber = "S-" + strings.ReplaceAll(tt.name, " ", "-")
			ts.mux.HandleFunc("/v2/sessions/online/"+srvHandle.ReferenceNumber+"/invoices", func(w http.ResponseWriter, r *http.Request) {
				body = decodeBody(t, readBody(t, r))
				serveFile(t, w, http.StatusAccepted, "invoice_send.json")
			})
			if _, err := ts.client.SendInvoice(t.Context(), srvHandle, []byte("<Faktura/>"), tt.opts); err != nil {
				t.Fatal(err)
			}
			if body["offlineMode"] != tt.wantOffline || body["hashOfCorrectedInvoice"] != tt.wantHash {
				t.Errorf("got offlineMode %v, hashOfCorrectedInvoice %v; want %v, %v",
					body["offlineMode"], body["hashOfCorrectedInvoice"], tt.wantOffline, tt.wantHash)
			}
		})
	}
}

func TestSendInvoiceValidation(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/online/{ref}/invoices", func(w http.ResponseWriter, r *http.Request) {
		t.Error("request sent despite invalid input")
	})
	with := func(f func(*SessionHandle)) *SessionHandle {
		h := fixedHandle()
		f(h)
		return h
	}
	tests := []struct {
		name    string
		handle  *SessionHandle
		invoice []byte
		opts    *SendOptions
		want    string
	}{
		{"nil handle", nil, []byte("x"), nil, "nil session handle"},
		{"no reference", with(func(h *SessionHandle) { h.ReferenceNumber = "" }), []byte("x"), nil, "no reference number"},
		{"AES-128 key", with(func(h *SessionHandle) { h.Key = sequence(16) }), []byte("x"), nil, "key must be 32 bytes, got 16"},
		{"no key", with(func(h *SessionHandle) { h.Key = nil }), []byte("x"), nil, "key must be 32 bytes, got 0"},
		{"GCM-sized IV", with(func(h *SessionHandle) { h.IV = sequence(12) }), []byte("x"), nil, "IV must be 16 bytes, got 12"},
		{"empty invoice", fixedHandle(), nil, nil, "empty invoice"},
		{"hex corrected hash", fixedHandle(), []byte("x"), &SendOptions{HashOfCorrectedInvoice: strings.Repeat("ab", 32)}, "HashOfCorrectedInvoice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ts.client.SendInvoice(t.Context(), tt.handle, tt.invoice, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSendInvoiceWithStoredHandle(t *testing.T) {
	// A handle stored as JSON (in a secret store) and read back by another process still works.
	stored, err := json.Marshal(fixedHandle())
	if err != nil {
		t.Fatal(err)
	}
	var handle SessionHandle
	if err := json.Unmarshal(stored, &handle); err != nil {
		t.Fatal(err)
	}
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/online/{ref}/invoices", func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusAccepted, "invoice_send.json")
	})
	sent, err := ts.client.SendInvoice(t.Context(), &handle, sampleInvoice(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sent.EncryptedInvoiceHash != vectorEncryptedInvoiceHash {
		t.Errorf("encryptedInvoiceHash: got %s, want %s", sent.EncryptedInvoiceHash, vectorEncryptedInvoiceHash)
	}
}

func TestSendInvoiceErrors(t *testing.T) {
	tests := []struct {
		name string
		code int
		is   error
	}{
		{"hash mismatch", CodeHashMismatch, nil},
		{"session closed", CodeSessionStatus, nil},
		{"unknown session", CodeSessionNotFound, ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/v2/sessions/online/{ref}/invoices", func(w http.ResponseWriter, r *http.Request) {
				writeJSON(w, http.StatusBadRequest, exceptionBody(tt.code, tt.name))
			})
			_, err := ts.client.SendInvoice(t.Context(), fixedHandle(), []byte("<Faktura/>"), nil)
			var apiErr *APIError
			if !errors.As(err, &apiErr) || !apiErr.HasCode(tt.code) || apiErr.Op != "SendInvoice" || apiErr.Temporary() {
				t.Fatalf("got %v, want a permanent SendInvoice *APIError with code %d", err, tt.code)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.is)
			}
		})
	}
}

func TestInvoiceStatus(t *testing.T) {
	tests := []struct {
		file string
		want InvoiceStatus
	}{
		{"invoice_status_200.json", InvoiceStatus{
			OrdinalNumber:                1,
			InvoiceNumber:                "FA/XPWIC-7900685789/06/2025",
			KSeFNumber:                   "5265877635-20250626-010080DD2B5E-26",
			ReferenceNumber:              "20250918-EE-2F15D39000-242207E5C4-1B",
			InvoiceHash:                  "mkht+3m5trnfxlTYhq3QFn74LkEO69MFNlsMAkCDSPA=",
			AcquisitionDate:              time.Date(2025, 9, 18, 12, 24, 16, 15430200, time.UTC),
			InvoicingDate:                time.Date(2025, 9, 18, 12, 23, 56, 15430200, time.UTC),
			PermanentStorageDate:         time.Date(2025, 9, 18, 12, 24, 1, 15432000, time.UTC),
			UPODownloadURL:               "https://api-test.ksef.mf.gov.pl/storage/01/20250918-SB-3789A40000-20373E1269-A3/invoice-upo/upo_5265877635-20250626-010080DD2B5E-26.xml?sv=2025-01-05&st=2025-09-18T14%3A49%3A20Z&se=2025-09-21T14%3A54%3A20Z&sr=b&sp=r&sig=%2BUWFPA10gS580VhngGKW%2FZiOOtiHPOiTyMlxhG6ZvWs%3D",
			UPODownloadURLExpirationDate: time.Date(2025, 9, 21, 14, 54, 20, 0, time.UTC),
			InvoicingMode:                "Online",
			Status:                       Status{Code: 200, Description: "Sukces"},
		}},
		{"invoice_status_440.json", InvoiceStatus{
			OrdinalNumber:   2,
			ReferenceNumber: "20250626-EE-2F20AD2000-242386DF86-52",
			InvoicingDate:   time.Date(2025, 7, 11, 12, 23, 56, 15430200, time.UTC),
			Status: Status{Code: 440, Description: "Duplikat faktury",
				Details: []string{"Duplikat faktury. Faktura o numerze KSeF: 5265877635-20250626-010080DD2B5E-26 została już prawidłowo przesłana do systemu w sesji: 20250626-SO-2F14610000-242991F8C9-B4"},
				Extensions: map[string]string{
					"originalSessionReferenceNumber": "20250626-SO-2F14610000-242991F8C9-B4",
					"originalKsefNumber":             "5265877635-20250626-010080DD2B5E-26",
				}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/v2/sessions/{ref}/invoices/{inv}", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, http.MethodGet)
				testBearer(t, r, testAccessToken)
				if r.PathValue("ref") != testSessionRef || r.PathValue("inv") != testInvoiceRef {
					t.Errorf("path: got %s", r.URL.Path)
				}
				serveFile(t, w, http.StatusOK, tt.file)
			})
			got, err := ts.client.InvoiceStatus(t.Context(), testSessionRef, testInvoiceRef)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestSessionInvoiceLists(t *testing.T) {
	tests := []struct {
		name string
		path string
		call func(*Client, *testing.T, *ListOptions) (*InvoicePage, error)
	}{
		{"all", "/v2/sessions/{ref}/invoices", func(c *Client, t *testing.T, o *ListOptions) (*InvoicePage, error) {
			return c.SessionInvoices(t.Context(), testSessionRef, o)
		}},
		{"failed", "/v2/sessions/{ref}/invoices/failed", func(c *Client, t *testing.T, o *ListOptions) (*InvoicePage, error) {
			return c.FailedSessionInvoices(t.Context(), testSessionRef, o)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			var calls int
			ts.mux.HandleFunc(tt.path, func(w http.ResponseWriter, r *http.Request) {
				calls++
				testMethod(t, r, http.MethodGet)
				testBearer(t, r, testAccessToken)
				if calls == 1 {
					testQuery(t, r, "")
					testHeader(t, r, "x-continuation-token", "")
				} else {
					testQuery(t, r, "pageSize=1000")
					testHeader(t, r, "x-continuation-token", "W34idG9rZW4iOiJ9")
				}
				serveFile(t, w, http.StatusOK, "session_invoices.json")
			})
			page, err := tt.call(ts.client, t, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Invoices) != 2 || page.Invoices[0].KSeFNumber != "5265877635-20250626-010080DD2B5E-26" ||
				page.Invoices[1].Status.Code != 440 || !strings.HasPrefix(page.ContinuationToken, "W34idG9rZW4i") {
				t.Errorf("page: got %+v", page)
			}
			if _, err := tt.call(ts.client, t, &ListOptions{PageSize: 1000, ContinuationToken: "W34idG9rZW4iOiJ9"}); err != nil {
				t.Fatal(err)
			}
			for _, size := range []int{9, 1001, -1} {
				if _, err := tt.call(ts.client, t, &ListOptions{PageSize: size}); err == nil || !strings.Contains(err.Error(), "page size") {
					t.Errorf("page size %d: got %v, want a page size error", size, err)
				}
			}
			if calls != 2 {
				t.Errorf("requests: got %d, want 2", calls)
			}
		})
	}
}

func TestCloseOnlineSession(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/online/{ref}/close", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		if r.PathValue("ref") != testSessionRef {
			t.Errorf("path: got %s", r.URL.Path)
		}
		if len(readBody(t, r)) != 0 {
			t.Error("close has a body")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if err := ts.client.CloseOnlineSession(t.Context(), testSessionRef); err != nil {
		t.Fatalf("CloseOnlineSession: %v", err)
	}
	if err := ts.client.CloseOnlineSession(t.Context(), ""); err == nil {
		t.Error("CloseOnlineSession(\"\"): got no error")
	}
}

func TestSessionStatus(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/{ref}", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		serveFile(t, w, http.StatusOK, "session_status.json")
	})
	got, err := ts.client.SessionStatus(t.Context(), testSessionRef)
	if err != nil {
		t.Fatal(err)
	}
	want := &SessionStatus{
		Status:      Status{Code: 200, Description: "Sesja interaktywna przetworzona pomyślnie"},
		DateCreated: time.Date(2025, 9, 18, 15, 0, 30, 0, time.UTC),
		DateUpdated: time.Date(2025, 9, 18, 15, 1, 20, 0, time.UTC),
		UPOPages: []UPOPage{{
			ReferenceNumber:           "20250918-EU-2EBD6FA000-242EB9B66D-43",
			DownloadURL:               "https://api-test.ksef.mf.gov.pl/storage/01/20250918-so-3789a40000-20373e1269-a3/session-upo/upo_00.xml?sv=2025-01-05&st=2025-09-18T14%3A55%3A50Z&se=2025-09-21T15%3A00%3A50Z&sr=b&sp=r&sig=ZlQO6Xtzu3VQQDwmEMfb0VryMxe9WcUgWtkdiB6X2Qo%3D",
			DownloadURLExpirationDate: time.Date(2025, 9, 21, 15, 0, 50, 0, time.UTC),
		}},
		InvoiceCount:           10,
		SuccessfulInvoiceCount: 8,
		FailedInvoiceCount:     2,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}
