package emulator

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Type codes of reference numbers, as seen in the examples of the official OpenAPI description.
const (
	refChallenge  = "CR" // authentication challenge
	refAuth       = "AU" // authentication operation
	refOnline     = "SO" // online session
	refInvoice    = "EE" // invoice inside a session
	refSessionUPO = "EU" // page of a session UPO
	refKSeFToken  = "EC" // KSeF token
)

// crc8 computes CRC-8 with polynomial 0x07, initial value 0, no reflection and no final XOR
// (CRC-8/SMBUS): the checksum of KSeF numbers and, as observed, of reference numbers.
func crc8(s string) byte {
	var c byte
	for i := 0; i < len(s); i++ {
		c ^= s[i]
		for range 8 {
			if c&0x80 != 0 {
				c = c<<1 ^ 0x07
			} else {
				c <<= 1
			}
		}
	}
	return c
}

// randomHex returns n random upper-case hexadecimal characters.
func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("emulator: crypto/rand failed: %v", err)) // cannot happen since Go 1.24
	}
	return strings.ToUpper(hex.EncodeToString(b))[:n]
}

// newReferenceNumber returns a 36-character reference number
// YYYYMMDD-TT-HHHHHHHHHH-HHHHHHHHHH-CC whose last two characters are the CRC-8 of the first 33,
// the date being the Polish calendar day of now.
func newReferenceNumber(now time.Time, typ string) string {
	s := now.In(warsaw).Format("20060102") + "-" + typ + "-" + randomHex(10) + "-" + randomHex(10)
	return fmt.Sprintf("%s-%02X", s, crc8(s))
}

// newKSeFNumber returns a 35-character KSeF number NNNNNNNNNN-YYYYMMDD-HHHHHHHHHHHH-CC: seller NIP,
// Polish calendar day of acceptance, 12 technical hex characters and the CRC-8 of the first 32.
func newKSeFNumber(nip string, accepted time.Time) string {
	s := nip + "-" + accepted.In(warsaw).Format("20060102") + "-" + randomHex(12)
	return fmt.Sprintf("%s-%02X", s, crc8(s))
}

// newTraceID returns 32 lower-case hex characters, the shape of KSeF's traceId.
func newTraceID() string { return strings.ToLower(randomHex(32)) }
