package ksef

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	_ "time/tzdata" // Europe/Warsaw must resolve on Lambda, whose runtime has no zoneinfo
)

// FA3Namespace is the XML namespace of FA(3) invoices.
const FA3Namespace = "http://crd.gov.pl/wzor/2025/06/25/13775/"

// Default KSeF invoice size limits in bytes (MB means 10^6 bytes in KSeF). Contexts may have other
// limits: see GET /limits/context (maxInvoiceSizeInMB, maxInvoiceWithAttachmentSizeInMB).
const (
	DefaultMaxInvoiceSize               = 1_000_000
	DefaultMaxInvoiceSizeWithAttachment = 3_000_000
)

// InspectOptions configures InspectInvoice.
type InspectOptions struct {
	// ContextNIP, if set, must equal the seller's NIP (Podmiot1/DaneIdentyfikacyjne/NIP). Leave it
	// empty when the context legitimately differs from the seller (self-billing, an authorized
	// entity, a VAT group or JST subunit).
	ContextNIP string
	// Now is the current time; zero means time.Now(). P_1 must not be after today's date in
	// Europe/Warsaw, the date KSeF compares it with.
	Now time.Time
	// MaxSize limits invoices without attachment (no Zalacznik); zero means
	// DefaultMaxInvoiceSize (1 000 000 bytes).
	MaxSize int
	// MaxSizeWithAttachment limits invoices with a Zalacznik; zero means
	// DefaultMaxInvoiceSizeWithAttachment (3 000 000 bytes).
	MaxSizeWithAttachment int
}

// InvoiceInfo is what InspectInvoice learns about an invoice: enough to send it (size, hash, form
// code) and to recognise it later (seller NIP, number, type, date).
type InvoiceInfo struct {
	SellerNIP     string    // Podmiot1/DaneIdentyfikacyjne/NIP
	Number        string    // Fa/P_2, the seller's invoice number
	InvoiceType   string    // Fa/RodzajFaktury: VAT, KOR, ZAL, ROZ, UPR, KOR_ZAL, KOR_ROZ
	FormCode      string    // Naglowek/KodFormularza/@kodSystemowy, "FA (3)"
	SchemaVersion string    // Naglowek/KodFormularza/@wersjaSchemy, "1-0E"
	IssueDate     time.Time // Fa/P_1, a civil date at midnight UTC
	Size          int       // bytes, the invoiceSize of the send request
	Hash          string    // Base64 SHA-256 of the bytes, the invoiceHash of the send request
	HasAttachment bool      // the invoice has a Zalacznik, so the larger size limit applies
}

// InvoiceProblem classifies why InspectInvoice rejected an invoice.
type InvoiceProblem string

// Invoice problems. The values are stable and may be stored or shown.
const (
	InvoiceEmpty                 InvoiceProblem = "empty"
	InvoiceTooLarge              InvoiceProblem = "too-large"
	InvoiceBOM                   InvoiceProblem = "bom"
	InvoiceEncoding              InvoiceProblem = "encoding"
	InvoiceDiscouragedCharacter  InvoiceProblem = "discouraged-character"
	InvoiceMalformed             InvoiceProblem = "malformed"
	InvoiceProcessingInstruction InvoiceProblem = "processing-instruction"
	InvoiceNamespace             InvoiceProblem = "namespace"
	InvoiceMissingField          InvoiceProblem = "missing-field"
	InvoiceInvalidField          InvoiceProblem = "invalid-field"
	InvoiceNIPFormat             InvoiceProblem = "nip-format"
	InvoiceSellerNIP             InvoiceProblem = "seller-nip"
	InvoiceFutureDate            InvoiceProblem = "future-date"
)

var invoiceProblemText = map[InvoiceProblem]string{
	InvoiceEmpty:                 "empty document",
	InvoiceTooLarge:              "too large",
	InvoiceBOM:                   "starts with a UTF-8 byte order mark",
	InvoiceEncoding:              "not UTF-8",
	InvoiceDiscouragedCharacter:  "discouraged Unicode character",
	InvoiceMalformed:             "malformed XML",
	InvoiceProcessingInstruction: "processing instruction",
	InvoiceNamespace:             "not an FA(3) invoice",
	InvoiceMissingField:          "missing field",
	InvoiceInvalidField:          "invalid field",
	InvoiceNIPFormat:             "invalid NIP format",
	InvoiceSellerNIP:             "seller NIP differs from the context NIP",
	InvoiceFutureDate:            "issue date in the future",
}

// InvoiceError is the error InspectInvoice returns. Detail names the field, position or sizes
// involved; neither field ever contains text taken from the invoice.
type InvoiceError struct {
	Problem InvoiceProblem
	Detail  string
}

var _ error = (*InvoiceError)(nil)

// Error implements error.
func (e *InvoiceError) Error() string {
	text, ok := invoiceProblemText[e.Problem]
	if !ok {
		text = string(e.Problem)
	}
	if e.Detail == "" {
		return "ksef: invalid invoice: " + text
	}
	return "ksef: invalid invoice: " + text + ": " + e.Detail
}

// Is reports whether target is an *InvoiceError with the same Problem, so that
// errors.Is(err, ksef.ErrInvoiceTooLarge) matches any too-large error whatever its Detail.
func (e *InvoiceError) Is(target error) bool {
	t, ok := target.(*InvoiceError)
	return ok && t.Problem == e.Problem
}

// Sentinels for errors.Is, one per InvoiceProblem.
var (
	ErrInvoiceEmpty                 error = &InvoiceError{Problem: InvoiceEmpty}
	ErrInvoiceTooLarge              error = &InvoiceError{Problem: InvoiceTooLarge}
	ErrInvoiceBOM                   error = &InvoiceError{Problem: InvoiceBOM}
	ErrInvoiceEncoding              error = &InvoiceError{Problem: InvoiceEncoding}
	ErrInvoiceDiscouragedCharacter  error = &InvoiceError{Problem: InvoiceDiscouragedCharacter}
	ErrInvoiceMalformed             error = &InvoiceError{Problem: InvoiceMalformed}
	ErrInvoiceProcessingInstruction error = &InvoiceError{Problem: InvoiceProcessingInstruction}
	ErrInvoiceNamespace             error = &InvoiceError{Problem: InvoiceNamespace}
	ErrInvoiceMissingField          error = &InvoiceError{Problem: InvoiceMissingField}
	ErrInvoiceInvalidField          error = &InvoiceError{Problem: InvoiceInvalidField}
	ErrInvoiceNIPFormat             error = &InvoiceError{Problem: InvoiceNIPFormat}
	ErrInvoiceSellerNIP             error = &InvoiceError{Problem: InvoiceSellerNIP}
	ErrInvoiceFutureDate            error = &InvoiceError{Problem: InvoiceFutureDate}
)

func invoiceErr(p InvoiceProblem, format string, args ...any) error {
	return &InvoiceError{Problem: p, Detail: fmt.Sprintf(format, args...)}
}

// Invoice fields InspectInvoice reads, as paths of FA(3) elements below the root.
const (
	fieldFormCode    = "Naglowek/KodFormularza"
	fieldSellerNIP   = "Podmiot1/DaneIdentyfikacyjne/NIP"
	fieldIssueDate   = "Fa/P_1"
	fieldNumber      = "Fa/P_2"
	fieldInvoiceType = "Fa/RodzajFaktury"
	fieldAttachment  = "Zalacznik"
)

// InspectInvoice checks an FA(3) invoice for the problems KSeF would reject it for only after it
// has been sent, and returns what the send request and later bookkeeping need. It checks, in this
// order: empty input; size against the larger of the two limits (before any parsing); a UTF-8
// byte order mark; UTF-8 validity and the code points KSeF rejects (U+007F-U+0084, U+0086-U+009F,
// U+FDD0-U+FDEF, U+nFFFE and U+nFFFF); an XML declaration naming another encoding;
// well-formedness, processing instructions and DOCTYPEs; the root element (Faktura in
// FA3Namespace); the presence of KodFormularza, the seller's NIP, P_1, P_2 and RodzajFaktury;
// size against the limit that applies (with or without Zalacznik); the NIP format; the seller NIP
// against opts.ContextNIP; P_1 against today in Europe/Warsaw.
//
// It is no substitute for XSD validation (KSeF validates against the schema and rejects with
// status 430) and does not verify NIP checksums (KSeF does so on production only; see
// NIPChecksumValid). Errors are *InvoiceError values; they say which rule failed and where, never
// what the invoice contains.
func InspectInvoice(invoice []byte, opts InspectOptions) (*InvoiceInfo, error) {
	maxPlain, maxAttach := opts.MaxSize, opts.MaxSizeWithAttachment
	if maxPlain <= 0 {
		maxPlain = DefaultMaxInvoiceSize
	}
	if maxAttach <= 0 {
		maxAttach = DefaultMaxInvoiceSizeWithAttachment
	}
	size := len(invoice)
	switch {
	case size == 0:
		return nil, ErrInvoiceEmpty
	case size > max(maxPlain, maxAttach):
		return nil, invoiceErr(InvoiceTooLarge, "%d bytes, limit %d bytes", size, max(maxPlain, maxAttach))
	}
	if err := checkInvoiceEncoding(invoice); err != nil {
		return nil, err
	}
	info, err := scanInvoice(invoice)
	if err != nil {
		return nil, err
	}
	info.Size = size
	if info.HasAttachment && size > maxAttach {
		return nil, invoiceErr(InvoiceTooLarge, "%d bytes, limit %d bytes for an invoice with attachment", size, maxAttach)
	}
	if !info.HasAttachment && size > maxPlain {
		return nil, invoiceErr(InvoiceTooLarge, "%d bytes, limit %d bytes for an invoice without attachment", size, maxPlain)
	}
	if !ValidNIP(info.SellerNIP) {
		return nil, invoiceErr(InvoiceNIPFormat, "%s is not 10 digits in the NIP format", fieldSellerNIP)
	}
	if opts.ContextNIP != "" && info.SellerNIP != opts.ContextNIP {
		return nil, invoiceErr(InvoiceSellerNIP, "%s is not the context NIP", fieldSellerNIP)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	today := warsawDate(now)
	if info.IssueDate.After(today) {
		return nil, invoiceErr(InvoiceFutureDate, "%s is after today's date in Europe/Warsaw, %s", fieldIssueDate, today.Format(time.DateOnly))
	}
	sum := sha256.Sum256(invoice)
	info.Hash = base64.StdEncoding.EncodeToString(sum[:])
	return info, nil
}

// checkInvoiceEncoding checks the bytes before any XML parsing: BOM, UTF-8, the declared encoding
// and the code points KSeF rejects.
func checkInvoiceEncoding(invoice []byte) error {
	switch {
	case bytes.HasPrefix(invoice, utf8BOM):
		return ErrInvoiceBOM
	case bytes.HasPrefix(invoice, []byte{0xFE, 0xFF}), bytes.HasPrefix(invoice, []byte{0xFF, 0xFE}):
		return invoiceErr(InvoiceEncoding, "UTF-16 byte order mark")
	}
	for off := 0; off < len(invoice); {
		r, n := utf8.DecodeRune(invoice[off:])
		if r == utf8.RuneError && n <= 1 {
			return invoiceErr(InvoiceEncoding, "invalid UTF-8 at byte offset %d", off)
		}
		if discouragedRune(r) {
			return invoiceErr(InvoiceDiscouragedCharacter, "U+%04X at byte offset %d", r, off)
		}
		off += n
	}
	if enc, ok := declaredEncoding(invoice); ok && !strings.EqualFold(enc, "utf-8") {
		return invoiceErr(InvoiceEncoding, "XML declaration names encoding %s", quoteEncoding(enc))
	}
	return nil
}

// discouragedRune reports the code points KSeF rejects since API 2.4.0 (enforced on production from
// 2026-07-16): controls U+007F-U+0084 and U+0086-U+009F, the noncharacters U+FDD0-U+FDEF, and
// U+nFFFE/U+nFFFF of planes 1 to 16 (plane 0's are not XML characters at all).
func discouragedRune(r rune) bool {
	switch {
	case r >= 0x7F && r <= 0x84, r >= 0x86 && r <= 0x9F, r >= 0xFDD0 && r <= 0xFDEF:
		return true
	case r > 0xFFFF && r&0xFFFE == 0xFFFE:
		return true
	}
	return false
}

// scanInvoice parses the invoice in one streaming pass (encoding/xml, no tree, so 3 MB invoices
// cost little) and collects the fields InspectInvoice needs.
func scanInvoice(invoice []byte) (*InvoiceInfo, error) {
	dec := xml.NewDecoder(bytes.NewReader(invoice))
	dec.Strict = true
	var (
		path     []string // local names from the root down; "" for elements outside FA3Namespace
		rootSeen bool
		info     = &InvoiceInfo{}
		fields   = map[string]*strings.Builder{} // first occurrence of each collected field
		active   *strings.Builder                // the field whose text is being read, if any
	)
	collect := map[string]bool{fieldSellerNIP: true, fieldIssueDate: true, fieldNumber: true, fieldInvoiceType: true}
	for {
		offset := dec.InputOffset()
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, invoiceSyntaxError(err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if !rootSeen {
				if t.Name.Space != FA3Namespace || t.Name.Local != "Faktura" {
					return nil, invoiceErr(InvoiceNamespace, "the root element must be Faktura in namespace %s", FA3Namespace)
				}
				rootSeen = true
				path = append(path, "Faktura")
				continue
			}
			if len(path) == 0 {
				return nil, invoiceErr(InvoiceMalformed, "more than one root element")
			}
			name := ""
			if t.Name.Space == FA3Namespace {
				name = t.Name.Local
			}
			path = append(path, name)
			active = nil
			switch p := strings.Join(path[1:], "/"); {
			case p == fieldAttachment:
				info.HasAttachment = true
			case p == fieldFormCode && fields[p] == nil:
				fields[p] = &strings.Builder{}
				for _, a := range t.Attr {
					switch {
					case a.Name.Space != "":
					case a.Name.Local == "kodSystemowy":
						info.FormCode = a.Value
					case a.Name.Local == "wersjaSchemy":
						info.SchemaVersion = a.Value
					}
				}
			case collect[p] && fields[p] == nil:
				active = &strings.Builder{}
				fields[p] = active
			}
		case xml.EndElement:
			path = path[:len(path)-1]
			active = nil
		case xml.CharData:
			switch {
			case active != nil:
				active.Write(t)
			case len(path) == 0 && len(bytes.TrimSpace(t)) > 0:
				return nil, invoiceErr(InvoiceMalformed, "text outside the root element")
			}
		case xml.ProcInst:
			if t.Target == "xml" {
				if offset != 0 {
					return nil, invoiceErr(InvoiceMalformed, "XML declaration not at the start of the document")
				}
				continue
			}
			line, _ := dec.InputPos()
			return nil, invoiceErr(InvoiceProcessingInstruction, "line %d", line)
		case xml.Directive:
			line, _ := dec.InputPos()
			return nil, invoiceErr(InvoiceMalformed, "line %d: DOCTYPE and other declarations are not allowed", line)
		}
	}
	if !rootSeen {
		return nil, invoiceErr(InvoiceMalformed, "no root element")
	}

	if fields[fieldFormCode] == nil {
		return nil, invoiceErr(InvoiceMissingField, "%s", fieldFormCode)
	}
	if info.FormCode == "" {
		return nil, invoiceErr(InvoiceMissingField, "%s/@kodSystemowy", fieldFormCode)
	}
	if info.SchemaVersion == "" {
		return nil, invoiceErr(InvoiceMissingField, "%s/@wersjaSchemy", fieldFormCode)
	}
	value := func(field string) (string, error) {
		b := fields[field]
		if b == nil || strings.TrimSpace(b.String()) == "" {
			return "", invoiceErr(InvoiceMissingField, "%s", field)
		}
		return strings.TrimSpace(b.String()), nil
	}
	var err error
	if info.SellerNIP, err = value(fieldSellerNIP); err != nil {
		return nil, err
	}
	p1, err := value(fieldIssueDate)
	if err != nil {
		return nil, err
	}
	if info.Number, err = value(fieldNumber); err != nil {
		return nil, err
	}
	if info.InvoiceType, err = value(fieldInvoiceType); err != nil {
		return nil, err
	}
	if info.IssueDate, err = time.Parse(time.DateOnly, p1); err != nil {
		return nil, invoiceErr(InvoiceInvalidField, "%s is not a date in the form YYYY-MM-DD", fieldIssueDate)
	}
	return info, nil
}

// invoiceSyntaxError converts a parser error into an InvoiceError that keeps the line and the parser's
// description but none of the document's text.
func invoiceSyntaxError(err error) error {
	var se *xml.SyntaxError
	if !errors.As(err, &se) {
		// encoding/xml's other errors concern the XML declaration; the encoding was checked before.
		if strings.Contains(err.Error(), "unsupported version") {
			return invoiceErr(InvoiceMalformed, "XML version other than 1.0")
		}
		return invoiceErr(InvoiceMalformed, "unreadable XML declaration")
	}
	msg := se.Msg
	// encoding/xml quotes document text in these two messages only.
	for _, prefix := range []string{"invalid character entity", "invalid XML name"} {
		if strings.HasPrefix(msg, prefix) {
			msg = prefix
		}
	}
	return invoiceErr(InvoiceMalformed, "line %d: %s", se.Line, msg)
}

// warsawLocation is Europe/Warsaw, or nil if the time zone database cannot provide it (it always
// can: time/tzdata is embedded).
var warsawLocation = sync.OnceValue(func() *time.Location {
	loc, err := time.LoadLocation("Europe/Warsaw")
	if err != nil {
		return nil
	}
	return loc
})

// warsawDate returns the calendar date in Poland at instant t, as midnight UTC of that date.
func warsawDate(t time.Time) time.Time {
	if loc := warsawLocation(); loc != nil {
		t = t.In(loc)
	} else {
		t = t.UTC().Add(polishOffset(t))
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// polishOffset is the UTC offset of Polish time at t by the EU rule in force since 1996: CET
// (UTC+1), and CEST (UTC+2) from 01:00 UTC on the last Sunday of March to 01:00 UTC on the last
// Sunday of October. It backs warsawDate should the time zone database ever be unavailable.
func polishOffset(t time.Time) time.Duration {
	t = t.UTC()
	lastSunday := func(month time.Month) time.Time {
		d := time.Date(t.Year(), month+1, 1, 1, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
		return d.AddDate(0, 0, -int(d.Weekday()))
	}
	if !t.Before(lastSunday(time.March)) && t.Before(lastSunday(time.October)) {
		return 2 * time.Hour
	}
	return time.Hour
}
