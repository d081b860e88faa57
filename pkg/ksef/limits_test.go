package ksef

import (
	"net/http"
	"testing"
)

func TestRateLimits(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/rate-limits", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		serveFile(t, w, http.StatusOK, "rate_limits.json")
	})
	got, err := ts.client.RateLimits(t.Context())
	if err != nil {
		t.Fatalf("RateLimits: %v", err)
	}
	want := RateLimits{
		OnlineSession:       RateLimit{10, 30, 120},
		BatchSession:        RateLimit{10, 20, 60},
		InvoiceSend:         RateLimit{10, 30, 180},
		InvoiceStatus:       RateLimit{30, 120, 1200},
		SessionList:         RateLimit{5, 10, 60},
		SessionInvoiceList:  RateLimit{10, 20, 200},
		SessionMisc:         RateLimit{10, 120, 1200},
		InvoiceMetadata:     RateLimit{8, 16, 20},
		InvoiceExport:       RateLimit{8, 16, 20},
		InvoiceExportStatus: RateLimit{10, 60, 600},
		InvoiceDownload:     RateLimit{8, 16, 64},
		Other:               RateLimit{10, 30, 120},
	}
	if *got != want {
		t.Errorf("got  %+v\nwant %+v", *got, want)
	}
}

func TestContextLimits(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/limits/context", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		serveFile(t, w, http.StatusOK, "context_limits.json")
	})
	got, err := ts.client.ContextLimits(t.Context())
	if err != nil {
		t.Fatalf("ContextLimits: %v", err)
	}
	want := ContextLimits{
		OnlineSession: SessionLimits{MaxInvoiceSizeInMB: 1, MaxInvoiceWithAttachmentSizeInMB: 3, MaxInvoices: 10000},
		BatchSession:  SessionLimits{MaxInvoiceSizeInMB: 1, MaxInvoiceWithAttachmentSizeInMB: 3, MaxInvoices: 10000},
	}
	if *got != want {
		t.Errorf("got %+v, want %+v", *got, want)
	}
	if b := got.OnlineSession.MaxInvoiceBytes(); b != 1_000_000 {
		t.Errorf("MaxInvoiceBytes: got %d, want 1000000 (MB = 10^6 bytes)", b)
	}
	if b := got.OnlineSession.MaxInvoiceWithAttachmentBytes(); b != 3_000_000 {
		t.Errorf("MaxInvoiceWithAttachmentBytes: got %d, want 3000000", b)
	}
}
