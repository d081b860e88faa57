package specvalidate

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestCheckDateTime(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"2025-07-11T12:23:56.0154302+00:00", true},
		{"2025-10-11T12:23:56.0154302", true}, // ExceptionInfo.timestamp: no offset
		{"2025-07-11T12:23:56Z", true},
		{"2025-07-11T12:23:56-05:30", true},
		{"2024-02-29T00:00:00", true},
		{"2025-02-29T00:00:00", false},
		{"2025-13-11T12:23:56", false},
		{"2025-07-11T24:00:00Z", false},
		{"2025-07-11T12:23:56+24:00", false},
		{"2025-07-11 12:23:56Z", false},
		{"2025-07-11", false},
		{"2025-07-11T12:23:56.Z", false},
		{"", false},
	}
	for _, tt := range tests {
		err := checkDateTime(tt.in)
		if (err == nil) != tt.want {
			t.Errorf("checkDateTime(%q) = %v, want valid %v", tt.in, err, tt.want)
		}
		if err != nil && tt.in != "" && strings.Contains(err.Error(), tt.in) {
			t.Errorf("checkDateTime(%q) error %q quotes the value", tt.in, err)
		}
	}
}

func TestCheckBase64(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"", true},
		{base64.StdEncoding.EncodeToString([]byte("a")), true},   // "YQ=="
		{base64.StdEncoding.EncodeToString([]byte("ab")), true},  // "YWI="
		{base64.StdEncoding.EncodeToString([]byte("abc")), true}, // "YWJj"
		{"QIoAK/Yc3s27Z4t3SZY4Mhp8JNLH7Vl4N3lNlJAEig8=", true},
		{"YQ", false},   // no padding
		{"_-8A", false}, // Base64URL
		{"YQ=a", false},
		{"Y===", false},
		{"=YQ=", false},
		{"YW I=", false},
		{"...", false},
	}
	for _, tt := range tests {
		if err := checkBase64(tt.in); (err == nil) != tt.want {
			t.Errorf("checkBase64(%q) = %v, want valid %v", tt.in, err, tt.want)
		}
	}
}
