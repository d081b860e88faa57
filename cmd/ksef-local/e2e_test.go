package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
	"github.com/ksef-serverless/ksef-serverless/internal/localrun/localruntest"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// binArgs returns the --bin flags: the binaries `make build-local` made (KSEF_LOCAL_BIN), or a
// fresh build into a temporary directory.
func binArgs(t *testing.T) []string {
	t.Helper()
	if bin := os.Getenv("KSEF_LOCAL_BIN"); bin != "" {
		return []string{"--bin", bin, "--no-build"}
	}
	return []string{"--bin", filepath.Join(t.TempDir(), "bin")}
}

func TestDemoEndToEnd(t *testing.T) {
	root, _ := localruntest.RequireTools(t)
	bin := binArgs(t)
	for _, auth := range []string{localrun.AuthToken, localrun.AuthXAdES} {
		t.Run(auth, func(t *testing.T) {
			dir := t.TempDir()
			var stdout, stderr bytes.Buffer
			args := append([]string{"demo", "--auth", auth, "--root", root, "--run-dir", filepath.Join(dir, "run"),
				"--out", filepath.Join(dir, "out"), "--wait-override", "100ms"}, bin...)
			code := run(args, &stdout, &stderr)
			if code != 0 {
				t.Fatalf("ksef-local demo: exit %d\nstdout:\n%s\nstderr:\n%s\n%s", code, stdout.String(), stderr.String(), logs(filepath.Join(dir, "run")))
			}
			out := stdout.String()
			if !regexp.MustCompile(`(?m)^KSeF number: 9999999999-\d{8}-[0-9A-F]{12}-[0-9A-F]{2}$`).MatchString(out) {
				t.Errorf("no KSeF number of NIP 9999999999 in the output:\n%s", out)
			}
			upo, err := os.ReadFile(filepath.Join(dir, "out", defaultSample+".upo.xml"))
			if err != nil {
				t.Fatalf("UPO copy: %v", err)
			}
			if !bytes.Contains(upo, []byte("http://upo.schematy.mf.gov.pl/KSeF/v4-3")) {
				t.Errorf("the UPO copy is not a UPO v4-3 document (%d bytes)", len(upo))
			}
			if !strings.Contains(out, "UPO: s3://ksef-invoices-local/results/inbox/"+defaultSample+".upo.xml") {
				t.Errorf("the output does not name the UPO's key in the bucket:\n%s", out)
			}
		})
	}
}

func TestDemoRejection(t *testing.T) {
	root, _ := localruntest.RequireTools(t)
	dir := t.TempDir()
	// The sample with its issue date a year ahead: KSeF (and the send function before it)
	// refuses an invoice dated after today.
	inv := bytes.Replace(official.SampleInvoices()[defaultSample], []byte("<P_1>2026-02-15</P_1>"), []byte("<P_1>2099-02-15</P_1>"), 1)
	file := filepath.Join(dir, "future.xml")
	if err := os.WriteFile(file, inv, 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := append([]string{"demo", "--invoice", file, "--root", root, "--run-dir", filepath.Join(dir, "run"),
		"--out", filepath.Join(dir, "out"), "--wait-override", "100ms"}, binArgs(t)...)
	if code := run(args, &stdout, &stderr); code != 1 {
		t.Fatalf("ksef-local demo of a future-dated invoice: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "was NOT accepted") || !strings.Contains(out, "Reason: ") || !strings.Contains(out, "future.xml.error.json") {
		t.Errorf("the output does not explain the rejection:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "out", "future.xml.upo.xml")); err == nil {
		t.Error("a UPO was written for a rejected invoice")
	}
}

func TestBenchEndToEnd(t *testing.T) {
	root, _ := localruntest.RequireTools(t)
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := append([]string{"bench", "--root", root, "--run-dir", filepath.Join(dir, "run"),
		"--count", "4", "--concurrency", "2", "--instances", "2", "--json", "--wait-override", "100ms",
		"--auth-delay", "300ms", "--accept-delay", "100ms", "--processing-delay", "300ms"}, binArgs(t)...)
	code := run(args, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("ksef-local bench: exit %d\nstdout:\n%s\nstderr:\n%s\n%s", code, stdout.String(), stderr.String(), logs(filepath.Join(dir, "run")))
	}
	var r benchReport
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	if r.Invoices != 4 || r.Accepted != 4 {
		t.Errorf("%d of %d invoices accepted, want 4 of 4: %v", r.Accepted, r.Invoices, r.Failures)
	}
	if r.KSeFLogins < 1 || r.KSeFSessions < 1 || r.SecretsWrites < 1 {
		t.Errorf("logins %d, sessions %d, secrets writes %d: the counters did not see the pipeline", r.KSeFLogins, r.KSeFSessions, r.SecretsWrites)
	}
	if r.TransitionsPerInvoice.Min < 5 || r.Invocations[localrun.FunctionSend] < 4 {
		t.Errorf("transitions %+v, invocations %v: fewer than the happy path needs", r.TransitionsPerInvoice, r.Invocations)
	}
	if r.WallSeconds <= 0 {
		t.Errorf("wall time %v", r.WallSeconds)
	}
	t.Logf("bench: logins %d, sessions %d, secrets writes %d, transitions/invoice %.1f, wall %.2fs",
		r.KSeFLogins, r.KSeFSessions, r.SecretsWrites, r.TransitionsPerInvoice.Mean, r.WallSeconds)
}

// logs returns the tail of every log file of a run, for failure messages.
func logs(runDir string) string {
	files, _ := filepath.Glob(filepath.Join(runDir, "logs", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		b.WriteString("--- " + filepath.Base(f) + "\n" + strings.Join(lines, "\n") + "\n")
	}
	return b.String()
}
