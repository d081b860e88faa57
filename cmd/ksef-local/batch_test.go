package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun/localruntest"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

var ksefNumberLine = regexp.MustCompile(`(?m)^(\S+): KSeF number 9999999999-\d{8}-[0-9A-F]{12}-[0-9A-F]{2}, UPO (\S+)$`)

// TestDemoBatchEndToEnd runs `ksef-local demo --mode batch`: the invoices go under batch/, the
// batch state machine runs once as the schedule starts it, and every invoice's outcome is
// printed, the UPOs copied.
func TestDemoBatchEndToEnd(t *testing.T) {
	root, _ := localruntest.RequireTools(t)
	bin := binArgs(t)

	t.Run("official samples", func(t *testing.T) {
		dir := t.TempDir()
		var stdout, stderr bytes.Buffer
		args := append([]string{"demo", "--mode", "batch", "--root", root, "--run-dir", filepath.Join(dir, "run"),
			"--out", filepath.Join(dir, "out"), "--wait-override", "100ms"}, bin...)
		if code := run(args, &stdout, &stderr); code != 0 {
			t.Fatalf("ksef-local demo --mode batch: exit %d\nstdout:\n%s\nstderr:\n%s\n%s", code, stdout.String(), stderr.String(), logs(filepath.Join(dir, "run")))
		}
		out := stdout.String()
		lines := ksefNumberLine.FindAllStringSubmatch(out, -1)
		if len(lines) != 7 || !strings.Contains(out, "7 of 7 invoices accepted in the batch run (SUCCEEDED)") {
			t.Fatalf("%d invoices with a KSeF number, want the 7 non-duplicate samples:\n%s", len(lines), out)
		}
		for _, l := range lines {
			upo, err := os.ReadFile(l[2])
			if err != nil || !bytes.Contains(upo, []byte("http://upo.schematy.mf.gov.pl/KSeF/v4-3")) {
				t.Errorf("%s: UPO copy %s: %v (%d bytes)", l[1], l[2], err, len(upo))
			}
		}
		if !strings.Contains(out, "FA_3_Przyklad_22-renumbered.xml: KSeF number") {
			t.Errorf("sample 22 (a duplicate of sample 1 for KSeF) not sent renumbered:\n%s", out)
		}
	})

	t.Run("folder with an invalid invoice and a repeated upload", func(t *testing.T) {
		dir := t.TempDir()
		in := filepath.Join(dir, "in")
		if err := os.Mkdir(in, 0o755); err != nil {
			t.Fatal(err)
		}
		base := official.SampleInvoices()[defaultSample]
		const number = "<P_2>FV2026/02/150</P_2>"
		write := func(name string, body []byte) {
			if err := os.WriteFile(filepath.Join(in, name), body, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for _, n := range []string{"1", "2", "3"} {
			write("faktura-"+n+".xml", bytes.Replace(base, []byte(number), []byte("<P_2>WSAD/"+n+"</P_2>"), 1))
		}
		write("faktura-4-bez-numeru.xml", bytes.Replace(base, []byte(number), nil, 1))
		write("faktura-5-kopia.xml", bytes.Replace(base, []byte(number), []byte("<P_2>WSAD/1</P_2>"), 1))
		write("notatki.txt", []byte("not an invoice"))

		var stdout, stderr bytes.Buffer
		args := append([]string{"demo", "--mode", "batch", "--dir", in, "--root", root, "--run-dir", filepath.Join(dir, "run"),
			"--out", filepath.Join(dir, "out"), "--wait-override", "100ms"}, bin...)
		if code := run(args, &stdout, &stderr); code != 1 {
			t.Fatalf("ksef-local demo --mode batch --dir: exit %d, want 1 (not every invoice accepted)\nstdout:\n%s\nstderr:\n%s\n%s",
				code, stdout.String(), stderr.String(), logs(filepath.Join(dir, "run")))
		}
		out := stdout.String()
		lines := ksefNumberLine.FindAllStringSubmatch(out, -1)
		var accepted []string
		for _, l := range lines {
			accepted = append(accepted, l[1])
		}
		if strings.Join(accepted, " ") != "faktura-1.xml faktura-2.xml faktura-3.xml" {
			t.Errorf("accepted %q, want faktura-1, -2 and -3:\n%s", accepted, out)
		}
		if !regexp.MustCompile(`(?m)^faktura-4-bez-numeru\.xml: NOT accepted \(invalid\): invoice rejected before sending: .*P_2`).MatchString(out) {
			t.Errorf("no report naming the missing P_2 of faktura-4:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^faktura-5-kopia\.xml: NOT accepted \(duplicate-upload\): the same invoice content was already taken in as s3-[a-z2-7]{26}$`).MatchString(out) {
			t.Errorf("faktura-5 (the bytes of faktura-1) not reported as a repeated upload:\n%s", out)
		}
		if strings.Contains(out, "notatki") || !strings.Contains(out, "3 of 5 invoices accepted in the batch run (SUCCEEDED)") {
			t.Errorf("summary:\n%s", out)
		}
		copies, _ := filepath.Glob(filepath.Join(dir, "out", "*.upo.xml"))
		if len(copies) != 3 {
			t.Errorf("UPO copies %q, want 3", copies)
		}
	})
}
