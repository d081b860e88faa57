package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunUsage(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantErr  string
	}{
		{nil, 2, "usage: ksef-local demo|bench"},
		{[]string{"help"}, 2, "usage: ksef-local demo|bench"},
		{[]string{"deploy"}, 2, `unknown command "deploy"`},
		{[]string{"demo", "--no-such-flag"}, 2, "flag provided but not defined: -no-such-flag"},
		{[]string{"bench", "--count", "0"}, 1, "--count, --concurrency and --instances must be at least 1"},
		{[]string{"demo", "--invoice", "/nonexistent/invoice.xml"}, 1, "read invoice"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantErr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantErr)
		}
		if stdout.Len() != 0 {
			t.Errorf("run(%q) wrote to stdout: %q", tt.args, stdout.String())
		}
	}
}
