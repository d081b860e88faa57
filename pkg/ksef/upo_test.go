package ksef

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

func sampleUPO(t testing.TB) []byte {
	t.Helper()
	upo, ok := official.SampleUPOs()["upo-faktura-kontekst-id-nip.xml"]
	if !ok {
		t.Fatal("official sample UPO missing")
	}
	return upo
}

func TestUPODownloads(t *testing.T) {
	upo := sampleUPO(t)
	const ksefNumber = "5265877635-20250626-010080DD2B5E-26"
	const upoRef = "20250918-EU-2EBD6FA000-242EB9B66D-43"
	tests := []struct {
		name string
		path string // the request path KSeF must see
		call func(*Client, *testing.T) (*Document, error)
	}{
		{"by invoice reference", "/v2/sessions/" + testSessionRef + "/invoices/" + testInvoiceRef + "/upo",
			func(c *Client, t *testing.T) (*Document, error) {
				return c.InvoiceUPO(t.Context(), testSessionRef, testInvoiceRef)
			}},
		{"by KSeF number", "/v2/sessions/" + testSessionRef + "/invoices/ksef/" + ksefNumber + "/upo",
			func(c *Client, t *testing.T) (*Document, error) {
				return c.InvoiceUPOByKSeFNumber(t.Context(), testSessionRef, ksefNumber)
			}},
		{"session UPO page", "/v2/sessions/" + testSessionRef + "/upo/" + upoRef,
			func(c *Client, t *testing.T) (*Document, error) {
				return c.SessionUPO(t.Context(), testSessionRef, upoRef)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc(tt.path, func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, http.MethodGet)
				testBearer(t, r, testAccessToken)
				testHeader(t, r, "Accept", "application/xml, */*")
				w.Header().Set("Content-Type", "application/xml")
				w.Header().Set("x-ms-meta-hash", sha256Base64(upo))
				_, _ = w.Write(upo)
			})
			doc, err := tt.call(ts.client, t)
			if err != nil {
				t.Fatal(err)
			}
			if string(doc.Content) != string(upo) || !doc.HashVerified || doc.Hash != sha256Base64(upo) {
				t.Errorf("document: got %d bytes, verified %v, hash %s", len(doc.Content), doc.HashVerified, doc.Hash)
			}
		})
	}
}

func TestUPOArgumentsRequired(t *testing.T) {
	ts := newTestServer(t)
	c, ctx := ts.client, t.Context()
	for name, call := range map[string]func() (*Document, error){
		"InvoiceUPO":             func() (*Document, error) { return c.InvoiceUPO(ctx, testSessionRef, "") },
		"InvoiceUPOByKSeFNumber": func() (*Document, error) { return c.InvoiceUPOByKSeFNumber(ctx, "", "x") },
		"SessionUPO":             func() (*Document, error) { return c.SessionUPO(ctx, testSessionRef, " ") },
		"Download":               func() (*Document, error) { return c.Download(ctx, "") },
	} {
		if _, err := call(); err == nil {
			t.Errorf("%s with an empty argument: got no error", name)
		}
	}
}

func TestUPONotFoundYet(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/sessions/{ref}/invoices/{inv}/upo", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadRequest, exceptionBody(CodeUPONotFound, "Nie znaleziono UPO."))
	})
	_, err := ts.client.InvoiceUPO(t.Context(), testSessionRef, testInvoiceRef)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("got %v, want ErrNotFound", err)
	}
}

func TestDocumentHash(t *testing.T) {
	body := []byte("<Potwierdzenie/>")
	sum := sha256.Sum256(body)
	tests := []struct {
		name         string
		header       string
		wantVerified bool
		wantErr      bool
	}{
		{"standard Base64", base64.StdEncoding.EncodeToString(sum[:]), true, false},
		{"unpadded Base64URL", base64.RawURLEncoding.EncodeToString(sum[:]), true, false},
		{"hex", hex.EncodeToString(sum[:]), true, false},
		{"absent", "", false, false},
		{"mismatch", sha256Base64([]byte("something else")), false, true},
		{"garbage", "not-a-hash", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/storage/upo.xml", func(w http.ResponseWriter, r *http.Request) {
				if tt.header != "" {
					w.Header().Set("x-ms-meta-hash", tt.header)
				}
				_, _ = w.Write(body)
			})
			doc, err := ts.client.Download(t.Context(), ts.srv.URL+"/storage/upo.xml")
			if tt.wantErr {
				if !errors.Is(err, ErrDocumentHash) {
					t.Errorf("got %v, want ErrDocumentHash", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if doc.HashVerified != tt.wantVerified || doc.Hash != base64.StdEncoding.EncodeToString(sum[:]) {
				t.Errorf("got verified %v, hash %s; want %v, %s", doc.HashVerified, doc.Hash, tt.wantVerified, base64.StdEncoding.EncodeToString(sum[:]))
			}
		})
	}
}

func TestDownloadPresignedURL(t *testing.T) {
	// Problem details on: the header must still not go to the storage.
	ts := newTestServer(t, WithProblemDetails(true))
	upo := sampleUPO(t)
	const query = "sv=2025-01-05&st=2025-09-18T14%3A49%3A20Z&se=2025-09-21T14%3A54%3A20Z&sr=b&sp=r&sig=%2BUWFPA10gS580VhngGKW%2FZiOOtiHPOiTyMlxhG6ZvWs%3D"
	const path = "/storage/01/20250918-SB-3789A40000-20373E1269-A3/invoice-upo/upo_5265877635-20250626-010080DD2B5E-26.xml"
	ts.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testHeader(t, r, "Authorization", "")
		testHeader(t, r, "X-Error-Format", "")
		testQuery(t, r, query)
		w.Header().Set("x-ms-meta-hash", sha256Base64(upo))
		_, _ = w.Write(upo)
	})
	doc, err := ts.client.Download(t.Context(), ts.srv.URL+path+"?"+query)
	if err != nil {
		t.Fatalf("Download: %v", err)
	}
	if string(doc.Content) != string(upo) || !doc.HashVerified {
		t.Error("downloaded document differs or was not verified")
	}
	if strings.Contains(ts.logs.String(), "sig=") || strings.Contains(ts.logs.String(), "%2BUWFPA") {
		t.Errorf("the pre-signed URL's signature was logged:\n%s", ts.logs.String())
	}
}

func TestDownloadExpiredLink(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/storage/upo.xml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Signature not valid in the specified time frame</Message></Error>`))
	})
	_, err := ts.client.Download(t.Context(), ts.srv.URL+"/storage/upo.xml?se=2025-09-21&sig=SECRETSIG")
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Op != "Download" || !errors.Is(err, ErrForbidden) {
		t.Fatalf("got %v, want a 403 Download *APIError", err)
	}
	if strings.Contains(err.Error(), "SECRETSIG") || !strings.Contains(err.Error(), "AuthenticationFailed") {
		t.Errorf("Error(): got %q", err.Error())
	}
}

func TestDownloadRejectsRelativeURLs(t *testing.T) {
	ts := newTestServer(t)
	for _, u := range []string{"/v2/sessions/x/upo", "ftp://storage/upo.xml", "https://", "://bad"} {
		if _, err := ts.client.Download(t.Context(), u); err == nil {
			t.Errorf("Download(%q): got no error", u)
		}
	}
}
