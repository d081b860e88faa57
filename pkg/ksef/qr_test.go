package ksef

import (
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

func TestVerificationURLOfficialSample(t *testing.T) {
	// PROTOCOL.md §23: QR code I of FA_3_Przyklad_1.xml on TEST.
	invoice := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	info, err := InspectInvoice(invoice, InspectOptions{Now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatalf("InspectInvoice: %v", err)
	}
	got := VerificationURL(Test.QRBaseURL(), info.SellerNIP, info.IssueDate, invoice)
	want := "https://qr-test.ksef.mf.gov.pl/invoice/9999999999/15-02-2026/X-wQflQVyRs1fImlI-xDPnWk1V37hys4O1lkx9iJbSA"
	if got != want {
		t.Fatalf("VerificationURL = %q\nwant %q", got, want)
	}
}

func TestVerificationURL(t *testing.T) {
	// SHA-256 of the empty input, Base64URL without padding.
	const emptyHash = "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
	warsaw, err := time.LoadLocation("Europe/Warsaw")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, base, nip string
		date            time.Time
		want            string
	}{
		{
			"production host", Prod.QRBaseURL(), "5265877635", time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
			"https://qr.ksef.mf.gov.pl/invoice/5265877635/01-02-2026/" + emptyHash,
		},
		{
			"trailing slash on the base", "http://localhost:8080/", "1111111111", time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC),
			"http://localhost:8080/invoice/1111111111/31-12-2026/" + emptyHash,
		},
		{
			// Midnight in Warsaw is the previous day in UTC: the calendar date is used as given.
			"no time-zone conversion", Demo.QRBaseURL(), "9999999999", time.Date(2026, 3, 1, 0, 0, 0, 0, warsaw),
			"https://qr-demo.ksef.mf.gov.pl/invoice/9999999999/01-03-2026/" + emptyHash,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := VerificationURL(tt.base, tt.nip, tt.date, nil); got != tt.want {
				t.Fatalf("VerificationURL(%q, %q, %v) = %q, want %q", tt.base, tt.nip, tt.date, got, tt.want)
			}
		})
	}
}

func TestVerificationURLFromHash(t *testing.T) {
	issued := time.Date(2026, 2, 15, 0, 0, 0, 0, time.UTC)
	got, err := VerificationURLFromHash("https://qr-test.ksef.mf.gov.pl", "9999999999", issued, "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA=")
	if err != nil {
		t.Fatal(err)
	}
	const want = "https://qr-test.ksef.mf.gov.pl/invoice/9999999999/15-02-2026/X-wQflQVyRs1fImlI-xDPnWk1V37hys4O1lkx9iJbSA"
	if got != want {
		t.Errorf("VerificationURLFromHash = %q, want %q", got, want)
	}
	for _, bad := range []string{"", "not base64!", "AAAA"} {
		if _, err := VerificationURLFromHash("https://qr-test.ksef.mf.gov.pl", "9999999999", issued, bad); err == nil {
			t.Errorf("VerificationURLFromHash(hash %q) succeeded, want an error", bad)
		}
	}
}
