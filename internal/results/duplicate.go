package results

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// codeDuplicate is the invoice status KSeF gives an invoice whose seller NIP, invoice type
// (RodzajFaktury) and number (P_2) it already holds.
const codeDuplicate = 440

// upoNamespacePrefix starts the namespace of every UPO version (v4-3 since 2025-12-22).
const upoNamespacePrefix = "http://upo.schematy.mf.gov.pl/KSeF/"

// Original is the invoice KSeF already holds, confirmed to be the one a 440 duplicate repeats.
type Original struct {
	KSeFNumber             string
	SessionReferenceNumber string
	// UPO is the original's UPO, which lists KSeFNumber with the duplicate's invoice hash.
	UPO *ksef.Document
}

// OriginalUPOSource is the part of the KSeF client ConfirmDuplicate uses.
type OriginalUPOSource interface {
	InvoiceUPOByKSeFNumber(ctx context.Context, sessionRef, ksefNumber string) (*ksef.Document, error)
}

// ConfirmDuplicate decides what a 440 means for the invoice sent with invoiceHash. KSeF
// answers 440 when it holds an invoice with the same seller, type and number, whatever its
// content, and names the original in the status extensions. The original's UPO, fetched from
// the original's session by its KSeF number, lists the hash of the original's content: only
// when it equals invoiceHash is the invoice sent the one KSeF holds, and the original is
// returned with its UPO.
//
// Otherwise the error is a *flow.RejectedError with code 440 and KSeF's details: the number is
// used for a different invoice, or the duplicate could not be confirmed to be this invoice (no
// original named, its UPO not available or not listing it), because an invoice that may not be
// in KSeF is never reported accepted. Failures worth another try are returned wrapped instead:
// UPONotReady (the original was accepted moments ago, its UPO is being generated),
// ksef.ErrUnauthorized (the access token refused), rate limits, 5xx and transport errors.
func ConfirmDuplicate(ctx context.Context, src OriginalUPOSource, st *ksef.InvoiceStatus, invoiceHash string) (*Original, error) {
	orig := &Original{
		KSeFNumber:             st.Status.Extensions["originalKsefNumber"],
		SessionReferenceNumber: st.Status.Extensions["originalSessionReferenceNumber"],
	}
	switch {
	case orig.KSeFNumber == "":
		return nil, duplicateRejected(st, "KSeF reported a duplicate without the original KSeF number: "+st.Status.Description)
	case orig.SessionReferenceNumber == "":
		return nil, notConfirmed(st, orig.KSeFNumber, "KSeF did not name the original's session, where its UPO is")
	}
	upo, err := src.InvoiceUPOByKSeFNumber(ctx, orig.SessionReferenceNumber, orig.KSeFNumber)
	if err != nil {
		if unavailable(err) {
			return nil, notConfirmed(st, orig.KSeFNumber, "the original's UPO is not available: "+err.Error())
		}
		return nil, fmt.Errorf("UPO of the original invoice %s: %w", orig.KSeFNumber, err)
	}
	docs, err := upoDocuments(upo.Content)
	if err != nil {
		return nil, notConfirmed(st, orig.KSeFNumber, "the original's UPO cannot be read: "+err.Error())
	}
	hash, ok := docs[orig.KSeFNumber]
	switch {
	case !ok:
		return nil, notConfirmed(st, orig.KSeFNumber, "the original's UPO does not list it")
	case hash != invoiceHash:
		return nil, duplicateRejected(st, fmt.Sprintf("invoice number already used by KSeF number %s for a different invoice (SHA-256 %s, this invoice's %s)",
			orig.KSeFNumber, hash, invoiceHash))
	}
	orig.UPO = upo
	return orig, nil
}

// unavailable reports whether KSeF refused the original's UPO for good (not found, another
// context's session, ...), as opposed to "not yet" (21178), an access token to renew, a rate
// limit or a transient failure.
func unavailable(err error) bool {
	var apiErr *ksef.APIError
	if !errors.As(err, &apiErr) || UPONotReady(err) || apiErr.Temporary() {
		return false
	}
	return apiErr.StatusCode >= 400 && apiErr.StatusCode < 500 && apiErr.StatusCode != http.StatusUnauthorized
}

func notConfirmed(st *ksef.InvoiceStatus, ksefNumber, why string) error {
	return duplicateRejected(st, fmt.Sprintf("KSeF reported a duplicate of KSeF number %s that could not be confirmed to be this invoice: %s", ksefNumber, why))
}

func duplicateRejected(st *ksef.InvoiceStatus, message string) error {
	return &flow.RejectedError{Reason: flow.Reason{Stage: "ksef", Message: message, Code: codeDuplicate, Details: st.Status.Details}}
}

// upoDocuments returns the hash (SkrotDokumentu) of each document a UPO lists, by KSeF number.
func upoDocuments(b []byte) (map[string]string, error) {
	var upo struct {
		XMLName   xml.Name
		Documents []struct {
			KSeFNumber string `xml:"NumerKSeFDokumentu"`
			Hash       string `xml:"SkrotDokumentu"`
		} `xml:"Dokument"`
	}
	if err := xml.NewDecoder(bytes.NewReader(b)).Decode(&upo); err != nil {
		return nil, fmt.Errorf("decode UPO: %w", err)
	}
	if upo.XMLName.Local != "Potwierdzenie" || !strings.HasPrefix(upo.XMLName.Space, upoNamespacePrefix) {
		return nil, fmt.Errorf("root element {%s}%s is not a UPO", upo.XMLName.Space, upo.XMLName.Local)
	}
	docs := make(map[string]string, len(upo.Documents))
	for _, d := range upo.Documents {
		// Both are xsd:token: whitespace around them is not part of the value.
		docs[strings.TrimSpace(d.KSeFNumber)] = strings.TrimSpace(d.Hash)
	}
	return docs, nil
}
