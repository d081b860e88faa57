package ksef

import (
	"fmt"
	"strings"
	"time"
)

// KSeFNumber is the number KSeF assigns to an accepted invoice:
// NNNNNNNNNN-YYYYMMDD-HHHHHHHHHHHH-CC, that is the seller's NIP, the date the invoice was accepted
// for processing, a 12-digit uppercase hexadecimal technical part and a CRC-8 checksum.
type KSeFNumber struct {
	SellerNIP string    // 10 digits
	Date      time.Time // acceptance date, a civil date at midnight UTC
	Technical string    // 12 uppercase hexadecimal digits
	Checksum  string    // 2 uppercase hexadecimal digits
}

// ParseKSeFNumber parses and verifies a KSeF number. It accepts the 35-character KSeF 2.0 form and,
// like the API (OpenAPI schema KsefNumber), the 36-character KSeF 1.0 form that has an extra hyphen
// in the middle of the technical part. The checksum of a 36-character number is verified over its
// 35-character form, the form KSeF 2.0 uses and String returns. KSeF documents the checksum only
// for the 35-character form; computing it over that form for KSeF 1.0 numbers too is our reading.
func ParseKSeFNumber(s string) (KSeFNumber, error) {
	switch len(s) {
	case 35:
	case 36:
		// NNNNNNNNNN-YYYYMMDD-HHHHHH-HHHHHH-CC: drop the hyphen at index 26.
		if s[26] != '-' {
			return KSeFNumber{}, fmt.Errorf("ksef: invalid KSeF number: 36 characters without a hyphen inside the technical part")
		}
		s = s[:26] + s[27:]
	default:
		return KSeFNumber{}, fmt.Errorf("ksef: invalid KSeF number: length %d, want 35 (or 36 for the KSeF 1.0 form)", len(s))
	}
	if s[10] != '-' || s[19] != '-' || s[32] != '-' {
		return KSeFNumber{}, fmt.Errorf("ksef: invalid KSeF number: want NNNNNNNNNN-YYYYMMDD-HHHHHHHHHHHH-CC")
	}
	n := KSeFNumber{SellerNIP: s[:10], Technical: s[20:32], Checksum: s[33:]}
	if !ValidNIP(n.SellerNIP) {
		return KSeFNumber{}, fmt.Errorf("ksef: invalid KSeF number: seller NIP is not a valid NIP")
	}
	date, err := parseKSeFNumberDate(s[11:19])
	if err != nil {
		return KSeFNumber{}, err
	}
	n.Date = date
	if !isUpperHex(n.Technical) {
		return KSeFNumber{}, fmt.Errorf("ksef: invalid KSeF number: technical part is not 12 uppercase hexadecimal digits")
	}
	if !isUpperHex(n.Checksum) {
		return KSeFNumber{}, fmt.Errorf("ksef: invalid KSeF number: checksum is not 2 uppercase hexadecimal digits")
	}
	if want := KSeFNumberChecksum(s[:32]); n.Checksum != want {
		return KSeFNumber{}, fmt.Errorf("ksef: invalid KSeF number: checksum %s does not match the computed %s", n.Checksum, want)
	}
	return n, nil
}

// parseKSeFNumberDate parses YYYYMMDD, restricted like the OpenAPI pattern to the years 2020-9999.
func parseKSeFNumberDate(s string) (time.Time, error) {
	d, err := time.Parse("20060102", s)
	if err != nil || d.Year() < 2020 {
		return time.Time{}, fmt.Errorf("ksef: invalid KSeF number: date part is not a valid YYYYMMDD date")
	}
	return d, nil
}

// String returns the 35-character form of n. If n.Checksum is empty it is computed, so that
// KSeFNumber{SellerNIP: nip, Date: d, Technical: t}.String() yields a valid number.
func (n KSeFNumber) String() string {
	first := n.SellerNIP + "-" + n.Date.Format("20060102") + "-" + n.Technical
	sum := n.Checksum
	if sum == "" {
		sum = KSeFNumberChecksum(first)
	}
	return first + "-" + sum
}

// KSeFNumberChecksum returns the checksum of a KSeF number: the CRC-8 of the ASCII bytes of its
// first 32 characters (hyphens included), printed as 2 uppercase hexadecimal digits. The CRC is
// the CRC-8/SMBUS variant: polynomial 0x07, initial value 0, no reflection, no final XOR (check
// value of "123456789": F4). It is computed over whatever string is passed.
func KSeFNumberChecksum(first32 string) string {
	var crc byte
	for i := 0; i < len(first32); i++ {
		crc ^= first32[i]
		for range 8 {
			if crc&0x80 != 0 {
				crc = crc<<1 ^ 0x07
			} else {
				crc <<= 1
			}
		}
	}
	return fmt.Sprintf("%02X", crc)
}

// ValidNIP reports whether nip has the format of a Polish NIP as the OpenAPI schema Nip defines it:
// ten digits, the first not 0, the second and third not both 0. It does not verify the checksum;
// see NIPChecksumValid.
func ValidNIP(nip string) bool {
	if len(nip) != 10 || strings.IndexFunc(nip, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return false
	}
	return nip[0] != '0' && (nip[1] != '0' || nip[2] != '0')
}

// NIPChecksumValid reports whether nip is ten digits whose last digit is the NIP check digit: the
// sum of the first nine digits weighted 6, 5, 7, 2, 3, 4, 5, 6, 7, modulo 11 (a remainder of 10 is
// never valid). KSeF verifies NIP checksums in invoices on the production environment only.
func NIPChecksumValid(nip string) bool {
	if len(nip) != 10 {
		return false
	}
	weights := [9]int{6, 5, 7, 2, 3, 4, 5, 6, 7}
	sum := 0
	for i := range 10 {
		if nip[i] < '0' || nip[i] > '9' {
			return false
		}
		if i < 9 {
			sum += weights[i] * int(nip[i]-'0')
		}
	}
	return sum%11 == int(nip[9]-'0')
}

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'A' || c > 'F') {
			return false
		}
	}
	return s != ""
}
