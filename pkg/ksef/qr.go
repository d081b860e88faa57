package ksef

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// VerificationURL returns the link encoded in QR code I ("KOD I"), which every invoice shown
// outside KSeF carries:
//
//	<qrBaseURL>/invoice/<sellerNIP>/<DD-MM-YYYY>/<Base64URL of SHA-256 of the invoice, no padding>
//
// qrBaseURL is the QR host of the environment (Environment.QRBaseURL); a trailing slash is ignored.
// issueDate is the invoice's P_1: its calendar date is used as is, without any time-zone conversion
// (InvoiceInfo.IssueDate holds exactly that). invoice must be the exact bytes sent to KSeF, so the
// hash equals the invoiceHash of the send request. The NIP comes before the date.
func VerificationURL(qrBaseURL, sellerNIP string, issueDate time.Time, invoice []byte) string {
	sum := sha256.Sum256(invoice)
	return verificationURL(qrBaseURL, sellerNIP, issueDate, sum[:])
}

// VerificationURLFromHash is VerificationURL for a caller that kept only the invoice's hash:
// invoiceHash is the standard Base64 SHA-256 sent as invoiceHash (44 characters).
func VerificationURLFromHash(qrBaseURL, sellerNIP string, issueDate time.Time, invoiceHash string) (string, error) {
	sum, err := base64.StdEncoding.DecodeString(invoiceHash)
	if err != nil || len(sum) != sha256.Size {
		return "", fmt.Errorf("ksef: invoice hash %q is not a Base64 SHA-256 digest", invoiceHash)
	}
	return verificationURL(qrBaseURL, sellerNIP, issueDate, sum), nil
}

func verificationURL(qrBaseURL, sellerNIP string, issueDate time.Time, sum []byte) string {
	return strings.TrimRight(qrBaseURL, "/") +
		"/invoice/" + url.PathEscape(sellerNIP) +
		"/" + issueDate.Format("02-01-2006") +
		"/" + base64.RawURLEncoding.EncodeToString(sum)
}
