package emulator

import (
	"fmt"
	"regexp"
	"testing"
	"time"
)

// TestCRC8 uses the vectors of PROTOCOL §23: KSeF numbers and a reference number from the
// official documentation, and the CRC-8/SMBUS check value.
func TestCRC8(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want byte
	}{
		{"123456789", 0xF4},
		{"5265877635-20250826-0100001AF629", 0xAF},
		{"5265877635-20250626-010080DD2B5E", 0x26},
		{"20250514-AU-2DFC46C000-3AC6D5877F", 0xD4},
	} {
		if got := crc8(tt.in); got != tt.want {
			t.Errorf("crc8(%q) = %02X, want %02X", tt.in, got, tt.want)
		}
	}
}

func TestIdentifiers(t *testing.T) {
	// 23:30 UTC on 31 December is already 1 January in Warsaw.
	now := time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC)
	ref := newReferenceNumber(now, refInvoice)
	if !regexp.MustCompile(`^20270101-EE-[0-9A-F]{10}-[0-9A-F]{10}-[0-9A-F]{2}$`).MatchString(ref) {
		t.Errorf("reference number %q", ref)
	}
	if want := fmt.Sprintf("%02X", crc8(ref[:33])); ref[34:] != want {
		t.Errorf("reference number %q: checksum %s, want %s", ref, ref[34:], want)
	}
	n := newKSeFNumber("5265877635", now)
	if !regexp.MustCompile(`^5265877635-20270101-[0-9A-F]{12}-[0-9A-F]{2}$`).MatchString(n) {
		t.Errorf("KSeF number %q", n)
	}
	if want := fmt.Sprintf("%02X", crc8(n[:32])); n[33:] != want {
		t.Errorf("KSeF number %q: checksum %s, want %s", n, n[33:], want)
	}
}

func TestCheckXMLForm(t *testing.T) {
	for _, tt := range []struct {
		doc  string
		want string // substring of the detail; "" for accepted
	}{
		{`<?xml version="1.0" encoding="UTF-8"?><a/>`, ""},
		{`<?xml version="1.0" encoding='utf-8'?><a/>`, ""},
		{`<?xml version="1.0"?><a/>`, ""},
		{`<a/>`, ""},
		{"\xEF\xBB\xBF<a/>", "BOM"},
		{`<?xml version="1.0" encoding="windows-1250"?><a/>`, "windows-1250"},
		{`<a><?pi x?></a>`, "pi"},
		{`<!DOCTYPE a><a/>`, "DTD"},
		{`<a><b></a>`, ""}, // well-formedness is the schema validator's job
		{`<a><!-- c --><b></a>`, "XML"},
		{"<a>\xff</a>", "UTF-8"},
	} {
		got := checkXMLForm([]byte(tt.doc))
		if (tt.want == "") != (got == "") || !regexp.MustCompile(regexp.QuoteMeta(tt.want)).MatchString(got) {
			t.Errorf("checkXMLForm(%q) = %q, want %q", tt.doc, got, tt.want)
		}
	}
}

func TestRateLimiterWindows(t *testing.T) {
	rl := newRateLimiter()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := Limit{PerSecond: 2, PerMinute: 3, PerHour: 4}
	for i, tt := range []struct {
		at        time.Duration
		ok        bool
		wantRetry time.Duration
	}{
		{0, true, 0},
		{100 * time.Millisecond, true, 0},
		{200 * time.Millisecond, false, 800 * time.Millisecond}, // second full
		{time.Second, true, 0},
		{2 * time.Second, false, 58 * time.Second}, // minute full: the first leaves at 60 s
		{60 * time.Second, true, 0},
		{61 * time.Second, false, 59*time.Minute - time.Second}, // hour full: the first leaves at 60 min
		{time.Hour, true, 0},
	} {
		retry, _, ok := rl.take("k", l, start.Add(tt.at))
		if ok != tt.ok || retry != tt.wantRetry {
			t.Errorf("request %d at %v: ok %v retry %v, want %v %v", i+1, tt.at, ok, retry, tt.ok, tt.wantRetry)
		}
	}
}
