package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// noEnv is a process environment for commands that must not get as far as the network.
func noEnv(t *testing.T) procEnv {
	return procEnv{
		getenv: func(string) string { return "" },
		now:    func() time.Time { return testStart },
		wait: func(context.Context, time.Duration) error {
			t.Error("unexpected wait")
			return nil
		},
		httpClient: doerFunc(func() { t.Error("unexpected HTTP request") }),
	}
}

type doerFunc func()

func (f doerFunc) Do(*http.Request) (*http.Response, error) {
	f()
	return nil, errors.New("no network in this test")
}

func TestRunUsage(t *testing.T) {
	invoice := filepath.Join(t.TempDir(), "fv.xml")
	if err := os.WriteFile(invoice, sample(t, "FA_3_Przyklad_1.xml"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring; "" means stdout must be empty
		wantStderr string // substring; "" means stderr must be empty
	}{
		{"no command", nil, 2, "", "Usage: ksef <command>"},
		{"help", []string{"help"}, 0, "Usage: ksef <command>", ""},
		{"-h", []string{"-h"}, 0, "  send     send invoices", ""},
		{"help send", []string{"help", "send"}, 0, "Usage: ksef send [--env test|demo|prod | --base-url URL] --nip NIP", ""},
		{"help unknown", []string{"help", "frob"}, 2, "", `ksef help: unknown command "frob"`},
		{"unknown command", []string{"frob"}, 2, "", `ksef: unknown command "frob"`},
		{"send -h", []string{"send", "-h"}, 0, "  --accept-duplicates ", ""},
		{"send --help lists defaults", []string{"send", "--help"}, 0, "(default 15m0s)", ""},
		{"unknown flag", []string{"send", "--bogus", invoice}, 2, "", "flag provided but not defined: -bogus\n\nUsage: ksef send"},
		{"no files", []string{"send", "--nip", testNIP}, 2, "", "ksef send: no invoice files given\nRun 'ksef help send' for usage."},
		{"no nip", []string{"send", invoice}, 2, "", "ksef send: --nip is required"},
		{"bad nip", []string{"send", "--nip", "0123456789", invoice}, 2, "", `--nip "0123456789" is not a NIP`},
		{"bad env", []string{"send", "--nip", testNIP, "--env", "staging", invoice}, 2, "", `--env: unknown environment "staging"`},
		{"env and base URL", []string{"send", "--nip", testNIP, "--env", "prod", "--base-url", "http://localhost/v2", invoice}, 2, "", "give --env or --base-url, not both"},
		{"bad base URL", []string{"send", "--nip", testNIP, "--base-url", "http://localhost/api", invoice}, 2, "", "must end in /v2"},
		{"bad timeout", []string{"send", "--nip", testNIP, "--timeout", "0s", invoice}, 2, "", "--timeout must be positive"},
		{"no credentials", []string{"send", "--nip", testNIP, invoice}, 2, "", "no credentials: set the environment variable KSEF_TOKEN"},
		{"cert without key", []string{"send", "--nip", testNIP, "--cert", invoice, invoice}, 2, "", "--cert and --key go together"},
		{"missing cert", []string{"send", "--nip", testNIP, "--cert", "/nonexistent.crt", "--key", "/nonexistent.key", invoice}, 2, "", "read --cert: open /nonexistent.crt"},
		{"not a certificate", []string{"send", "--nip", testNIP, "--cert", invoice, "--key", invoice, invoice}, 2, "", "load --cert and --key: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(t.Context(), tt.args, &stdout, &stderr, noEnv(t))
			if code != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d", tt.args, code, tt.wantCode)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", stdout.String(), tt.wantStdout}, {"stderr", stderr.String(), tt.wantStderr}} {
				if (c.want == "") != (c.got == "") || !strings.Contains(c.got, c.want) {
					t.Errorf("run(%q) %s:\n%s\nwant it to contain %q", tt.args, c.name, c.got, c.want)
				}
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	tests := []struct {
		args     []string
		wantPos  []string
		wantJSON bool
		wantDir  string
	}{
		{[]string{"a.xml", "b.xml"}, []string{"a.xml", "b.xml"}, false, "."},
		{[]string{"a.xml", "--json", "b.xml", "--upo-dir", "u"}, []string{"a.xml", "b.xml"}, true, "u"},
		{[]string{"--json", "--", "--upo-dir", "-b.xml"}, []string{"--upo-dir", "-b.xml"}, true, "."},
		{[]string{"a.xml", "--", "--json"}, []string{"a.xml", "--json"}, false, "."},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		jsonOut := fs.Bool("json", false, "")
		dir := fs.String("upo-dir", ".", "")
		pos, err := parseFlags(fs, tt.args, io.Discard, io.Discard, func(io.Writer) {})
		if err != nil {
			t.Errorf("parseFlags(%q): %v", tt.args, err)
			continue
		}
		if !reflect.DeepEqual(pos, tt.wantPos) || *jsonOut != tt.wantJSON || *dir != tt.wantDir {
			t.Errorf("parseFlags(%q) = %q, json %v, dir %q; want %q, %v, %q", tt.args, pos, *jsonOut, *dir, tt.wantPos, tt.wantJSON, tt.wantDir)
		}
	}
}

func TestResultText(t *testing.T) {
	tests := []struct {
		name string
		r    result
		want string
	}{
		{"accepted", result{File: "a.xml", Accepted: true, StatusCode: 200, KSeFNumber: "N1", UPOPath: "u/N1.xml"},
			"a.xml: KSeF number N1 (UPO: u/N1.xml)"},
		{"accepted, UPO failed", result{File: "a.xml", Accepted: true, StatusCode: 200, KSeFNumber: "N1", Error: "UPO not saved: disk full"},
			"a.xml: KSeF number N1 (UPO not saved: disk full)"},
		{"accepted duplicate", result{File: "a.xml", Accepted: true, StatusCode: 440, KSeFNumber: "N0", OriginalKSeFNumber: "N0", OriginalSessionReferenceNumber: "S0", UPOPath: "u/N0.xml"},
			"a.xml: KSeF number N0 (duplicate of the invoice sent in session S0; UPO: u/N0.xml)"},
		{"accepted duplicate, no UPO", result{File: "a.xml", Accepted: true, StatusCode: 440, KSeFNumber: "N0", OriginalKSeFNumber: "N0", OriginalSessionReferenceNumber: "S0", Error: "UPO of the original not saved: HTTP 404"},
			"a.xml: KSeF number N0 (duplicate of the invoice sent in session S0; UPO of the original not saved: HTTP 404)"},
		{"rejected", result{File: "a.xml", ReferenceNumber: "R", StatusCode: 450, StatusDescription: "Błąd", StatusDetails: []string{"line 1:\n bad", "line 2"}},
			"a.xml: rejected 450 Błąd: line 1: bad; line 2"},
		{"rejected without details", result{File: "a.xml", ReferenceNumber: "R", StatusCode: 550, StatusDescription: "Anulowano"},
			"a.xml: rejected 550 Anulowano"},
		{"duplicate", result{File: "a.xml", ReferenceNumber: "R", StatusCode: 440, StatusDescription: "Duplikat faktury", OriginalKSeFNumber: "N0"},
			"a.xml: rejected 440 Duplikat faktury (original KSeF number N0)"},
		{"status unknown", result{File: "a.xml", ReferenceNumber: "R", Error: "interrupted"},
			"a.xml: status unknown (reference R): interrupted"},
		{"status unknown after polling", result{File: "a.xml", ReferenceNumber: "R", StatusCode: 150, StatusDescription: "Trwa przetwarzanie", Error: "timed out"},
			"a.xml: status unknown (reference R, last status 150 Trwa przetwarzanie): timed out"},
		{"not sent", result{File: "a.xml", Error: "login failed"},
			"a.xml: not sent: login failed"},
	}
	for _, tt := range tests {
		if got := tt.r.text(); got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	for _, content := range []string{"<UPO>1</UPO>", "<UPO>2</UPO>"} { // the second replaces the first
		path, err := writeFileAtomic(dir, "n.xml", []byte(content))
		if err != nil {
			t.Fatal(err)
		}
		if path != filepath.Join(dir, "n.xml") {
			t.Errorf("path %q", path)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != content {
			t.Errorf("read %q, %v; want %q", got, err, content)
		}
		info, err := os.Stat(path)
		if err != nil || info.Mode().Perm() != 0o644 {
			t.Errorf("mode %v, %v; want 0644", info.Mode(), err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 {
		t.Errorf("directory holds %v (%v), want only n.xml", entries, err)
	}
	if _, err := writeFileAtomic(filepath.Join(dir, "missing"), "n.xml", nil); err == nil {
		t.Error("writing into a missing directory succeeded")
	}
}
