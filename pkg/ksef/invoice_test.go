package ksef

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// invoiceNow is a time after the issue dates of all official samples.
var invoiceNow = time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)

func TestInspectInvoiceOfficialSamples(t *testing.T) {
	type want struct {
		number, typ, date, hash string
		size                    int
	}
	wants := map[string]want{
		// The hash of sample 1 is the PROTOCOL.md §23 vector; the others are sha256sum | base64.
		"FA_3_Przyklad_1.xml":  {"FV2026/02/150", "VAT", "2026-02-15", "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA=", 3387},
		"FA_3_Przyklad_2.xml":  {"FK2026/03/200", "KOR", "2026-03-15", "eyROIS42niPMZdBMHNLFuekj6jyffHa7LeCVYKSVX3c=", 3061},
		"FA_3_Przyklad_4.xml":  {"FV2026/02/150", "VAT", "2026-02-15", "FgGUpk3qgen0hB3swSuSn49dgGojtVn5kTQElEMbz4c=", 5157},
		"FA_3_Przyklad_10.xml": {"FZ2026/02/150", "ZAL", "2026-02-15", "ULuup5EQUUxRqBOXqNySLvxZYCK6ts5+3aT3TXRgcXw=", 3519},
		"Fa_3_Przyklad_14.xml": {"FV2026/08/12", "ROZ", "2026-08-17", "lorChzBVooo7X9SEBxeXZOghiGLjO69s73LT6Ze7NSg=", 4420},
		"FA_3_Przyklad_15.xml": {"FV2026/02/150", "UPR", "2026-02-15", "ecbUP20eJjMRwFld+ShUH+PRWlZ9rlHIJ2A5VuWua+s=", 1903},
		"FA_3_Przyklad_22.xml": {"FV2026/02/150", "VAT", "2026-02-15", "aiyzP/l68xCcTDUuP/V/nYBVvY/L1TupjcQ9LvTe96E=", 2391},
	}
	samples := official.SampleInvoices()
	if len(samples) != len(wants) {
		t.Fatalf("%d official samples, the test knows %d", len(samples), len(wants))
	}
	for name, invoice := range samples {
		t.Run(name, func(t *testing.T) {
			w, ok := wants[name]
			if !ok {
				t.Fatalf("no expectations for sample %s", name)
			}
			info, err := InspectInvoice(invoice, InspectOptions{ContextNIP: "9999999999", Now: invoiceNow})
			if err != nil {
				t.Fatalf("InspectInvoice: %v", err)
			}
			got := *info
			exp := InvoiceInfo{
				SellerNIP: "9999999999", Number: w.number, InvoiceType: w.typ, FormCode: "FA (3)", SchemaVersion: "1-0E",
				IssueDate: mustDate(t, w.date), Size: w.size, Hash: w.hash, HasAttachment: false,
			}
			if got != exp {
				t.Fatalf("InspectInvoice(%s) =\n%+v\nwant\n%+v", name, got, exp)
			}
		})
	}
}

func mustDate(t *testing.T, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// secretMarker stands for invoice content (names, amounts, numbers) that must never reach an error.
const secretMarker = "POUFNE-DANE-KLIENTA"

// minimalInvoice holds just what InspectInvoice reads; it is not schema-valid FA(3).
const minimalInvoice = `<?xml version="1.0" encoding="UTF-8"?>
<Faktura xmlns="http://crd.gov.pl/wzor/2025/06/25/13775/" xmlns:x="urn:example:other">
	<Naglowek>
		<KodFormularza kodSystemowy="FA (3)" wersjaSchemy="1-0E">FA</KodFormularza>
	</Naglowek>
	<Podmiot1>
		<DaneIdentyfikacyjne>
			<NIP>5265877635</NIP>
			<Nazwa>POUFNE-DANE-KLIENTA sp. z o.o.</Nazwa>
		</DaneIdentyfikacyjne>
	</Podmiot1>
	<Fa>
		<P_1>2026-02-15</P_1>
		<P_2>FV/POUFNE-DANE-KLIENTA/1</P_2>
		<RodzajFaktury>VAT</RodzajFaktury>
	</Fa>
</Faktura>
`

// edit returns minimalInvoice with old replaced by new, failing if old is absent.
func edit(t *testing.T, old, new string) []byte {
	t.Helper()
	if !strings.Contains(minimalInvoice, old) {
		t.Fatalf("minimalInvoice does not contain %q", old)
	}
	return []byte(strings.Replace(minimalInvoice, old, new, 1))
}

// padTo pads an invoice with a comment before the closing root tag to exactly n bytes.
func padTo(t *testing.T, invoice []byte, n int) []byte {
	t.Helper()
	const open, close = "<!--", "-->"
	i := bytes.LastIndex(invoice, []byte("</Faktura>"))
	fill := n - len(invoice) - len(open) - len(close)
	if fill < 0 {
		t.Fatalf("invoice already has %d bytes, more than %d", len(invoice), n)
	}
	out := make([]byte, 0, n)
	out = append(out, invoice[:i]...)
	out = append(out, open...)
	out = append(out, bytes.Repeat([]byte("x"), fill)...)
	out = append(out, close...)
	return append(out, invoice[i:]...)
}

const attachment = "<Zalacznik><BlokDanych><ZNaglowek>Załącznik</ZNaglowek></BlokDanych></Zalacznik>\n</Faktura>"

func TestInspectInvoiceMinimal(t *testing.T) {
	info, err := InspectInvoice([]byte(minimalInvoice), InspectOptions{ContextNIP: "5265877635", Now: invoiceNow})
	if err != nil {
		t.Fatalf("InspectInvoice: %v", err)
	}
	if info.SellerNIP != "5265877635" || info.Number != "FV/POUFNE-DANE-KLIENTA/1" || info.InvoiceType != "VAT" ||
		!info.IssueDate.Equal(mustDate(t, "2026-02-15")) || info.Size != len(minimalInvoice) || info.HasAttachment {
		t.Fatalf("InspectInvoice(minimal) = %+v", info)
	}
}

func TestInspectInvoiceProblems(t *testing.T) {
	tests := []struct {
		name    string
		invoice []byte
		opts    InspectOptions
		want    error
		detail  string // substring of the error text
	}{
		{"empty", nil, InspectOptions{}, ErrInvoiceEmpty, "empty document"},
		{"larger than any limit", bytes.Repeat([]byte("<"), 3_000_001), InspectOptions{}, ErrInvoiceTooLarge,
			"too large: 3000001 bytes, limit 3000000 bytes"},
		{"over 1 MB without attachment", padTo(t, []byte(minimalInvoice), 1_000_001), InspectOptions{}, ErrInvoiceTooLarge,
			"1000001 bytes, limit 1000000 bytes for an invoice without attachment"},
		{"over 3 MB with attachment", padTo(t, edit(t, "</Faktura>", attachment), 3_000_001), InspectOptions{}, ErrInvoiceTooLarge,
			"3000001 bytes, limit 3000000 bytes"},
		{"over a context's own limit", []byte(minimalInvoice), InspectOptions{MaxSize: 400}, ErrInvoiceTooLarge,
			fmt.Sprintf("%d bytes, limit 400 bytes for an invoice without attachment", len(minimalInvoice))},
		{"over a context's own attachment limit", edit(t, "</Faktura>", attachment), InspectOptions{MaxSize: 1000, MaxSizeWithAttachment: 550},
			ErrInvoiceTooLarge, "limit 550 bytes for an invoice with attachment"},
		{"UTF-8 BOM", append([]byte{0xEF, 0xBB, 0xBF}, minimalInvoice...), InspectOptions{}, ErrInvoiceBOM, "byte order mark"},
		{"UTF-16 BOM", append([]byte{0xFF, 0xFE}, minimalInvoice...), InspectOptions{}, ErrInvoiceEncoding, "UTF-16"},
		{"invalid UTF-8", edit(t, "sp. z o.o.", "sp. z o.o.\xff"), InspectOptions{}, ErrInvoiceEncoding,
			fmt.Sprintf("invalid UTF-8 at byte offset %d", strings.Index(minimalInvoice, "sp. z o.o.")+len("sp. z o.o."))},
		{"ISO-8859-2 declaration", edit(t, `encoding="UTF-8"`, `encoding="ISO-8859-2"`), InspectOptions{}, ErrInvoiceEncoding,
			`XML declaration names encoding "ISO-8859-2"`},
		{"declaration with a garbage encoding", edit(t, `encoding="UTF-8"`, `encoding='POUFNE-DANE-KLIENTA!'`), InspectOptions{}, ErrInvoiceEncoding,
			"names encoding a malformed encoding name"},
		{"C1 control character", edit(t, "sp. z o.o.", "sp.\u0080"), InspectOptions{}, ErrInvoiceDiscouragedCharacter, "U+0080 at byte offset"},
		{"noncharacter U+FDD0", edit(t, "sp. z o.o.", "\ufdd0"), InspectOptions{}, ErrInvoiceDiscouragedCharacter, "U+FDD0"},
		{"noncharacter U+1FFFE", edit(t, "sp. z o.o.", "\U0001FFFE"), InspectOptions{}, ErrInvoiceDiscouragedCharacter, "U+1FFFE"},
		{"unclosed element", edit(t, "</Fa>", ""), InspectOptions{}, ErrInvoiceMalformed, "malformed XML: line 17: element <Fa> closed by </Faktura>"},
		{"truncated", []byte(minimalInvoice[:200]), InspectOptions{}, ErrInvoiceMalformed, "unexpected EOF"},
		{"undefined entity", edit(t, "sp. z o.o.", "&POUFNE-DANE-KLIENTA;"), InspectOptions{}, ErrInvoiceMalformed, "line 9: invalid character entity"},
		{"control character", edit(t, "sp. z o.o.", "\x01"), InspectOptions{}, ErrInvoiceMalformed, "illegal character code U+0001"},
		{"XML 1.1", edit(t, `version="1.0"`, `version="1.1"`), InspectOptions{}, ErrInvoiceMalformed, "XML version other than 1.0"},
		{"declaration not first", append([]byte("\n"), minimalInvoice...), InspectOptions{}, ErrInvoiceMalformed,
			"XML declaration not at the start"},
		{"DOCTYPE", edit(t, "<Faktura ", "<!DOCTYPE Faktura>\n<Faktura "), InspectOptions{}, ErrInvoiceMalformed, "DOCTYPE"},
		{"two root elements", []byte(minimalInvoice + "<Faktura/>"), InspectOptions{}, ErrInvoiceMalformed, "more than one root element"},
		{"text after the root", []byte(minimalInvoice + "POUFNE-DANE-KLIENTA"), InspectOptions{}, ErrInvoiceMalformed, "text outside the root element"},
		{"no root element", []byte(`<?xml version="1.0"?>` + "\n"), InspectOptions{}, ErrInvoiceMalformed, "no root element"},
		{"processing instruction", edit(t, "<Faktura ", "<?xml-stylesheet href=\"POUFNE-DANE-KLIENTA.xsl\"?>\n<Faktura "), InspectOptions{},
			ErrInvoiceProcessingInstruction, "processing instruction: line 2"},
		{"processing instruction inside", edit(t, "<Fa>", "<Fa><?POUFNE-DANE-KLIENTA?>"), InspectOptions{}, ErrInvoiceProcessingInstruction, "processing instruction: line 12"},
		{"FA(2) namespace", edit(t, FA3Namespace, "http://crd.gov.pl/wzor/2023/06/29/12648/"), InspectOptions{}, ErrInvoiceNamespace,
			"the root element must be Faktura in namespace " + FA3Namespace},
		{"no namespace", edit(t, `xmlns="`+FA3Namespace+`"`, ""), InspectOptions{}, ErrInvoiceNamespace, "Faktura"},
		{"other root", []byte(`<Invoice xmlns="urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"/>`), InspectOptions{}, ErrInvoiceNamespace, "Faktura"},
		{"no KodFormularza", edit(t, `<KodFormularza kodSystemowy="FA (3)" wersjaSchemy="1-0E">FA</KodFormularza>`, ""), InspectOptions{},
			ErrInvoiceMissingField, "missing field: Naglowek/KodFormularza"},
		{"no kodSystemowy", edit(t, `kodSystemowy="FA (3)" `, ""), InspectOptions{}, ErrInvoiceMissingField, "Naglowek/KodFormularza/@kodSystemowy"},
		{"no wersjaSchemy", edit(t, ` wersjaSchemy="1-0E"`, ""), InspectOptions{}, ErrInvoiceMissingField, "Naglowek/KodFormularza/@wersjaSchemy"},
		{"no seller NIP", edit(t, "<NIP>5265877635</NIP>", ""), InspectOptions{}, ErrInvoiceMissingField, "Podmiot1/DaneIdentyfikacyjne/NIP"},
		{"seller NIP in another namespace", edit(t, "<NIP>5265877635</NIP>", "<x:NIP>5265877635</x:NIP>"), InspectOptions{},
			ErrInvoiceMissingField, "Podmiot1/DaneIdentyfikacyjne/NIP"},
		{"no P_1", edit(t, "<P_1>2026-02-15</P_1>", ""), InspectOptions{}, ErrInvoiceMissingField, "Fa/P_1"},
		{"empty P_2", edit(t, "<P_2>FV/POUFNE-DANE-KLIENTA/1</P_2>", "<P_2>  </P_2>"), InspectOptions{}, ErrInvoiceMissingField, "Fa/P_2"},
		{"no RodzajFaktury", edit(t, "<RodzajFaktury>VAT</RodzajFaktury>", ""), InspectOptions{}, ErrInvoiceMissingField, "Fa/RodzajFaktury"},
		{"P_1 not a date", edit(t, "<P_1>2026-02-15</P_1>", "<P_1>15.02.2026</P_1>"), InspectOptions{}, ErrInvoiceInvalidField,
			"invalid field: Fa/P_1 is not a date in the form YYYY-MM-DD"},
		{"NIP format", edit(t, "<NIP>5265877635</NIP>", "<NIP>0265877635</NIP>"), InspectOptions{}, ErrInvoiceNIPFormat,
			"Podmiot1/DaneIdentyfikacyjne/NIP is not 10 digits"},
		{"seller is not the context", []byte(minimalInvoice), InspectOptions{ContextNIP: "9999999999"}, ErrInvoiceSellerNIP,
			"seller NIP differs from the context NIP"},
		{"issued tomorrow", []byte(minimalInvoice), InspectOptions{Now: time.Date(2026, 2, 14, 12, 0, 0, 0, time.UTC)}, ErrInvoiceFutureDate,
			"Fa/P_1 is after today's date in Europe/Warsaw, 2026-02-14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.opts.Now.IsZero() {
				tt.opts.Now = invoiceNow
			}
			info, err := InspectInvoice(tt.invoice, tt.opts)
			if err == nil {
				t.Fatalf("InspectInvoice = %+v, want error %v", info, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("InspectInvoice error = %v, want errors.Is %v", err, tt.want)
			}
			var ie *InvoiceError
			if !errors.As(err, &ie) || ie.Problem != tt.want.(*InvoiceError).Problem {
				t.Fatalf("InspectInvoice error = %#v, want an *InvoiceError with problem %s", err, tt.want.(*InvoiceError).Problem)
			}
			if !strings.Contains(err.Error(), tt.detail) {
				t.Errorf("error text %q does not contain %q", err, tt.detail)
			}
			if strings.Contains(err.Error(), secretMarker) || strings.Contains(err.Error(), "POUFNE") {
				t.Errorf("error text %q leaks invoice content", err)
			}
			for _, other := range []error{ErrInvoiceEmpty, ErrInvoiceTooLarge, ErrInvoiceMalformed, ErrInvoiceFutureDate} {
				if other != tt.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
		})
	}
}

func TestInspectInvoiceSizeLimits(t *testing.T) {
	withAttachment := edit(t, "</Faktura>", attachment)
	tests := []struct {
		name    string
		invoice []byte
		opts    InspectOptions
	}{
		{"exactly 1 MB without attachment", padTo(t, []byte(minimalInvoice), 1_000_000), InspectOptions{}},
		{"2 MB with attachment", padTo(t, withAttachment, 2_000_000), InspectOptions{}},
		{"exactly 3 MB with attachment", padTo(t, withAttachment, 3_000_000), InspectOptions{}},
		{"a context allowing 2 MB", padTo(t, []byte(minimalInvoice), 2_000_000), InspectOptions{MaxSize: 2_000_000}},
		{"a context allowing 5 MB with attachment", padTo(t, withAttachment, 5_000_000), InspectOptions{MaxSizeWithAttachment: 5_000_000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Now = invoiceNow
			info, err := InspectInvoice(tt.invoice, tt.opts)
			if err != nil {
				t.Fatalf("InspectInvoice(%d bytes): %v", len(tt.invoice), err)
			}
			if info.Size != len(tt.invoice) {
				t.Errorf("Size = %d, want %d", info.Size, len(tt.invoice))
			}
			if want := bytes.Contains(tt.invoice, []byte("<Zalacznik>")); info.HasAttachment != want {
				t.Errorf("HasAttachment = %v, want %v", info.HasAttachment, want)
			}
		})
	}
}

func TestInspectInvoiceIssueDateInWarsaw(t *testing.T) {
	// P_1 is 2026-02-15 (winter, UTC+1) in minimalInvoice.
	summer := edit(t, "<P_1>2026-02-15</P_1>", "<P_1>2026-07-01</P_1>") // CEST, UTC+2
	tests := []struct {
		name    string
		invoice []byte
		now     time.Time
		future  bool
	}{
		{"one second before midnight in Warsaw", []byte(minimalInvoice), time.Date(2026, 2, 14, 22, 59, 59, 0, time.UTC), true},
		{"midnight in Warsaw, still the 14th in UTC", []byte(minimalInvoice), time.Date(2026, 2, 14, 23, 0, 0, 0, time.UTC), false},
		{"same day", []byte(minimalInvoice), time.Date(2026, 2, 15, 12, 0, 0, 0, time.UTC), false},
		{"summer: before midnight CEST", summer, time.Date(2026, 6, 30, 21, 59, 59, 0, time.UTC), true},
		{"summer: midnight CEST", summer, time.Date(2026, 6, 30, 22, 0, 0, 0, time.UTC), false},
		{"a clock in another zone", []byte(minimalInvoice), time.Date(2026, 2, 15, 0, 30, 0, 0, time.FixedZone("UTC+1", 3600)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := InspectInvoice(tt.invoice, InspectOptions{Now: tt.now})
			if got := errors.Is(err, ErrInvoiceFutureDate); got != tt.future {
				t.Fatalf("InspectInvoice at %v: error %v, want future-date %v", tt.now, err, tt.future)
			}
		})
	}
}

func TestPolishOffsetMatchesTimeZoneDatabase(t *testing.T) {
	loc, err := time.LoadLocation("Europe/Warsaw")
	if err != nil {
		t.Fatal(err)
	}
	for at := time.Date(2020, 1, 1, 0, 30, 0, 0, time.UTC); at.Year() < 2036; at = at.Add(time.Hour) {
		_, off := at.In(loc).Zone()
		if got := polishOffset(at); got != time.Duration(off)*time.Second {
			t.Fatalf("polishOffset(%v) = %v, time zone database says %ds", at, got, off)
		}
	}
	// The exact switch instants (01:00 UTC on the last Sundays of March and October).
	for _, tt := range []struct {
		at   time.Time
		want time.Duration
	}{
		{time.Date(2026, 3, 29, 0, 59, 59, 0, time.UTC), time.Hour},
		{time.Date(2026, 3, 29, 1, 0, 0, 0, time.UTC), 2 * time.Hour},
		{time.Date(2026, 10, 25, 0, 59, 59, 0, time.UTC), 2 * time.Hour},
		{time.Date(2026, 10, 25, 1, 0, 0, 0, time.UTC), time.Hour},
	} {
		if got := polishOffset(tt.at); got != tt.want {
			t.Errorf("polishOffset(%v) = %v, want %v", tt.at, got, tt.want)
		}
	}
}

func TestInvoiceErrorIs(t *testing.T) {
	err := fmt.Errorf("send invoice: %w", &InvoiceError{Problem: InvoiceTooLarge, Detail: "5 bytes, limit 4 bytes"})
	if !errors.Is(err, ErrInvoiceTooLarge) {
		t.Errorf("errors.Is(%v, ErrInvoiceTooLarge) = false", err)
	}
	if errors.Is(err, ErrInvoiceEmpty) {
		t.Errorf("errors.Is(%v, ErrInvoiceEmpty) = true", err)
	}
	if got, want := err.Error(), "send invoice: ksef: invalid invoice: too large: 5 bytes, limit 4 bytes"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := ErrInvoiceEmpty.Error(), "ksef: invalid invoice: empty document"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func FuzzInspectInvoice(f *testing.F) {
	for _, name := range official.SampleInvoiceNames() {
		f.Add(official.SampleInvoices()[name])
	}
	f.Add([]byte(minimalInvoice))
	f.Add([]byte(strings.Replace(minimalInvoice, "</Faktura>", attachment, 1)))
	f.Add([]byte("\xef\xbb\xbf<a/>"))
	f.Add([]byte(`<?xml version="1.0" encoding="latin2"?><Faktura/>`))
	f.Fuzz(func(t *testing.T, invoice []byte) {
		info, err := InspectInvoice(invoice, InspectOptions{Now: invoiceNow})
		if err != nil {
			var ie *InvoiceError
			if !errors.As(err, &ie) {
				t.Fatalf("error %v (%T) is not an *InvoiceError", err, err)
			}
			return
		}
		if info.Size != len(invoice) || !ValidNIP(info.SellerNIP) || info.Number == "" || info.IssueDate.After(invoiceNow) {
			t.Fatalf("InspectInvoice accepted an invoice with %+v", info)
		}
	})
}
