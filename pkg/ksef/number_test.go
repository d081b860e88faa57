package ksef

import (
	"strings"
	"testing"
	"time"
)

func TestKSeFNumberChecksum(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"123456789", "F4"}, // the CRC-8/SMBUS check value
		{"", "00"},
		// PROTOCOL.md §23, numbers from the KSeF documentation.
		{"5265877635-20250826-0100001AF629", "AF"},
		{"5265877635-20250626-010080DD2B5E", "26"},
	}
	for _, tt := range tests {
		if got := KSeFNumberChecksum(tt.in); got != tt.want {
			t.Errorf("KSeFNumberChecksum(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestParseKSeFNumber(t *testing.T) {
	tests := []struct {
		in   string
		want KSeFNumber
	}{
		{"5265877635-20250826-0100001AF629-AF", KSeFNumber{
			SellerNIP: "5265877635", Date: time.Date(2025, 8, 26, 0, 0, 0, 0, time.UTC), Technical: "0100001AF629", Checksum: "AF",
		}},
		{"5265877635-20250626-010080DD2B5E-26", KSeFNumber{
			SellerNIP: "5265877635", Date: time.Date(2025, 6, 26, 0, 0, 0, 0, time.UTC), Technical: "010080DD2B5E", Checksum: "26",
		}},
		// The 36-character KSeF 1.0 form: verified and printed as its 35-character form.
		{"5265877635-20250826-010000-1AF629-AF", KSeFNumber{
			SellerNIP: "5265877635", Date: time.Date(2025, 8, 26, 0, 0, 0, 0, time.UTC), Technical: "0100001AF629", Checksum: "AF",
		}},
	}
	for _, tt := range tests {
		got, err := ParseKSeFNumber(tt.in)
		if err != nil {
			t.Errorf("ParseKSeFNumber(%q): %v", tt.in, err)
			continue
		}
		if got.SellerNIP != tt.want.SellerNIP || !got.Date.Equal(tt.want.Date) || got.Technical != tt.want.Technical || got.Checksum != tt.want.Checksum {
			t.Errorf("ParseKSeFNumber(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if s := got.String(); len(s) != 35 || strings.ReplaceAll(s, "-", "") != strings.ReplaceAll(tt.in, "-", "") {
			t.Errorf("ParseKSeFNumber(%q).String() = %q, want the 35-character form", tt.in, s)
		}
	}
}

func TestParseKSeFNumberInvalid(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{"empty", "", "length 0"},
		{"too short", "5265877635-20250826-0100001AF629-A", "length 34"},
		{"too long", "5265877635-20250826-0100001AF629-AF00", "length 37"},
		{"wrong checksum", "5265877635-20250826-0100001AF629-AE", "checksum AE does not match the computed AF"},
		{"lower-case hex", "5265877635-20250826-0100001af629-AF", "technical part"},
		{"lower-case checksum", "5265877635-20250626-010080DD2B5E-2f", "checksum is not"},
		{"NIP with leading zero", "0265877635-20250826-0100001AF629-AF", "seller NIP"},
		{"NIP with 00 after first digit", "5005877635-20250826-0100001AF629-AF", "seller NIP"},
		{"letters in NIP", "52658776X5-20250826-0100001AF629-AF", "seller NIP"},
		{"no such day", "5265877635-20250231-0100001AF629-AF", "date part"},
		{"year before 2020", "5265877635-20190826-0100001AF629-AF", "date part"},
		{"hyphens misplaced", "5265877635020250826-0100001AF629-AF", "want NNNNNNNNNN"},
		{"36 characters, hyphen elsewhere", "5265877635-20250826-01000-01AF629-AF", "without a hyphen inside"},
		{"36 characters, wrong checksum", "5265877635-20250826-010000-1AF629-AE", "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseKSeFNumber(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseKSeFNumber(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
		})
	}
}

func TestKSeFNumberStringComputesChecksum(t *testing.T) {
	n := KSeFNumber{SellerNIP: "5265877635", Date: time.Date(2025, 8, 26, 0, 0, 0, 0, time.UTC), Technical: "0100001AF629"}
	if got, want := n.String(), "5265877635-20250826-0100001AF629-AF"; got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	if _, err := ParseKSeFNumber(n.String()); err != nil {
		t.Fatalf("String() does not parse back: %v", err)
	}
}

func TestValidNIP(t *testing.T) {
	tests := []struct {
		nip  string
		want bool
	}{
		{"5265877635", true},
		{"9999999999", true},
		{"1010000000", true},  // second digit 0, third not
		{"1100000000", true},  // third digit 0, second not
		{"1000000000", false}, // second and third both 0
		{"0123456789", false}, // leading zero
		{"526587763", false},
		{"52658776355", false},
		{"526587763a", false},
		{"526-587-76-35", false},
		{"", false},
		{"５２６５８７７６３５", false}, // full-width digits
	}
	for _, tt := range tests {
		if got := ValidNIP(tt.nip); got != tt.want {
			t.Errorf("ValidNIP(%q) = %v, want %v", tt.nip, got, tt.want)
		}
	}
}

func TestNIPChecksumValid(t *testing.T) {
	tests := []struct {
		nip  string
		want bool
	}{
		{"5265877635", true}, // KSeF documentation examples
		{"9999999999", true}, // official sample invoices
		{"1111111111", true},
		{"5265877634", false},
		{"1234567890", false}, // remainder 10: no NIP ends like that
		{"123456789", false},
		{"12345678901", false},
		{"52658776x5", false},
	}
	for _, tt := range tests {
		if got := NIPChecksumValid(tt.nip); got != tt.want {
			t.Errorf("NIPChecksumValid(%q) = %v, want %v", tt.nip, got, tt.want)
		}
	}
}

func FuzzParseKSeFNumber(f *testing.F) {
	for _, s := range []string{
		"5265877635-20250826-0100001AF629-AF",
		"5265877635-20250626-010080DD2B5E-26",
		"5265877635-20250826-010000-1AF629-AF",
		"5265877635-20250231-0100001AF629-AF",
		"",
		"----------------------------------",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseKSeFNumber(s)
		if err != nil {
			return
		}
		out := n.String()
		if len(out) != 35 {
			t.Fatalf("ParseKSeFNumber(%q).String() = %q, want 35 characters", s, out)
		}
		again, err := ParseKSeFNumber(out)
		if err != nil || again != n {
			t.Fatalf("String() of a parsed number does not round-trip: %q -> %q: %+v, %v", s, out, again, err)
		}
	})
}
