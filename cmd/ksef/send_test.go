package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// testNIP is the seller NIP of every official sample invoice.
const testNIP = "9999999999"

// testStart is when the emulator's clock starts: after every sample's issue date (the latest is
// 2026-08-17), so that none is in the future.
var testStart = time.Date(2026, 9, 1, 10, 0, 0, 0, time.UTC)

// recorder is the command's HTTP client in tests: it records "METHOD PATH STATUS" of each call.
type recorder struct {
	next *http.Client
	mu   sync.Mutex
	log  []string
}

func (r *recorder) Do(req *http.Request) (*http.Response, error) {
	resp, err := r.next.Do(req)
	if err == nil {
		r.mu.Lock()
		r.log = append(r.log, fmt.Sprintf("%s %s %d", req.Method, req.URL.Path, resp.StatusCode))
		r.mu.Unlock()
	}
	return resp, err
}

func (r *recorder) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.log...)
}

// harness runs ksef send against an in-process emulator whose clock moves only when the
// command waits.
type harness struct {
	t     *testing.T
	srv   *emutest.Server
	token string // the KSeF token in KSEF_TOKEN
	vars  map[string]string
	http  *recorder
	dir   string

	mu    sync.Mutex
	waits []time.Duration
	// onWait, if set, runs after the clock has moved for a wait; its error ends the wait.
	onWait func(ctx context.Context, d time.Duration) error
}

func newHarness(t *testing.T, cfg emulator.Config) *harness {
	t.Helper()
	srv := emutest.NewServerAt(t, testStart, cfg)
	token, err := srv.Emulator.GenerateToken(testNIP)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{
		t:     t,
		srv:   srv,
		token: token,
		vars:  map[string]string{tokenEnv: token},
		http:  &recorder{next: srv.Client()},
		dir:   t.TempDir(),
	}
}

func (h *harness) env() procEnv {
	return procEnv{
		getenv: func(k string) string { return h.vars[k] },
		now:    h.srv.Emulator.Now,
		wait: func(ctx context.Context, d time.Duration) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			h.mu.Lock()
			h.waits = append(h.waits, d)
			h.mu.Unlock()
			h.srv.Clock.Advance(d)
			if h.onWait != nil {
				return h.onWait(ctx, d)
			}
			return nil
		},
		httpClient: h.http,
	}
}

// send runs "ksef send --base-url <emulator> --nip <testNIP> args..." and checks that no
// secret reached the output.
func (h *harness) send(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	h.t.Helper()
	full := append([]string{"send", "--base-url", h.srv.URL, "--nip", testNIP}, args...)
	var out, errOut bytes.Buffer
	code = run(ctx, full, &out, &errOut, h.env())
	stdout, stderr = out.String(), errOut.String()
	h.t.Logf("ksef %s -> %d\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), code, stdout, stderr)
	checkNoSecrets(h.t, h.token, stdout+stderr)
	return code, stdout, stderr
}

// checkNoSecrets fails if output holds the KSeF token, its secret part or a JWT.
func checkNoSecrets(t *testing.T, token, output string) {
	t.Helper()
	parts := strings.Split(token, "|")
	for _, secret := range []string{token, parts[len(parts)-1], "eyJ"} {
		if strings.Contains(output, secret) {
			t.Errorf("output contains a secret (%.3s...)", secret)
		}
	}
}

// called reports whether the command made a request matching method, the path pattern (as in
// path.Match on the part after /v2) and status.
func (h *harness) called(method, pattern string, status int) bool {
	re := regexp.MustCompile("^" + method + " /v2" + strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, `[^/]+`) + fmt.Sprintf(" %d$", status))
	for _, c := range h.http.calls() {
		if re.MatchString(c) {
			return true
		}
	}
	return false
}

// checkCleanedUp fails unless the command closed its online session and revoked its login.
func (h *harness) checkCleanedUp() {
	h.t.Helper()
	if !h.called("POST", "/sessions/online/*/close", 204) {
		h.t.Errorf("online session not closed; calls: %q", h.http.calls())
	}
	if !h.called("DELETE", "/auth/sessions/current", 204) {
		h.t.Errorf("authentication session not revoked; calls: %q", h.http.calls())
	}
}

// write writes files into the harness directory and returns their paths.
func (h *harness) write(name string, data []byte) string {
	h.t.Helper()
	p := filepath.Join(h.dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return p
}

func sample(t *testing.T, name string) []byte {
	t.Helper()
	data, ok := official.SampleInvoices()[name]
	if !ok {
		t.Fatalf("no official sample %s", name)
	}
	return data
}

// edit replaces old by new in an invoice, failing if old is not there.
func edit(t *testing.T, invoice []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(invoice, []byte(old)) {
		t.Fatalf("invoice does not contain %q", old)
	}
	return bytes.Replace(invoice, []byte(old), []byte(new), 1)
}

var (
	acceptedLine = regexp.MustCompile(`^(.+): KSeF number (\S+) \((?:duplicate of the invoice sent in session (\S+); )?UPO: (.+)\)$`)
	rejectedLine = regexp.MustCompile(`^(.+): rejected (\d{3}) (.*)$`)
)

// parseLines maps each file to its line of text output, failing on a repeated file.
func parseLines(t *testing.T, stdout string) map[string]string {
	t.Helper()
	lines := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		file, _, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			t.Fatalf("stdout line %q has no FILE: prefix", sc.Text())
		}
		if _, dup := lines[file]; dup {
			t.Errorf("two lines for %s", file)
		}
		lines[file] = sc.Text()
	}
	return lines
}

// checkAccepted checks an accepted line and its UPO file and returns the KSeF number.
func checkAccepted(t *testing.T, line, upoDir string) string {
	t.Helper()
	m := acceptedLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("line %q is not an acceptance", line)
	}
	number, upoPath := m[2], m[4]
	n, err := ksef.ParseKSeFNumber(number)
	if err != nil {
		t.Errorf("KSeF number %q: %v", number, err)
	} else if n.SellerNIP != testNIP {
		t.Errorf("KSeF number %s has seller NIP %s, want %s", number, n.SellerNIP, testNIP)
	}
	if want := filepath.Join(upoDir, number+".xml"); upoPath != want {
		t.Errorf("UPO path %q, want %q", upoPath, want)
	}
	upo, err := os.ReadFile(upoPath)
	if err != nil {
		t.Fatalf("UPO: %v", err)
	}
	if !bytes.Contains(upo, []byte("<NumerKSeFDokumentu>"+number+"</NumerKSeFDokumentu>")) {
		t.Errorf("UPO %s does not name KSeF number %s", upoPath, number)
	}
	return number
}

func TestSendOfficialSamples(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	upoDir := filepath.Join(h.dir, "upo", "new") // does not exist yet
	var files []string
	for _, name := range official.SampleInvoiceNames() {
		files = append(files, h.write(name, sample(t, name)))
	}
	code, stdout, stderr := h.send(t.Context(), append([]string{"--upo-dir", upoDir}, files...)...)

	// Samples 1, 4 and 22 are one invoice (seller, type and number): 1 is sent first (the names
	// are sorted), 4 and 22 are duplicates of it.
	if code != exitNotAccepted {
		t.Errorf("exit status %d, want %d (duplicates)", code, exitNotAccepted)
	}
	lines := parseLines(t, stdout)
	if len(lines) != len(files) {
		t.Fatalf("%d lines for %d files", len(lines), len(files))
	}
	first := checkAccepted(t, lines[filepath.Join(h.dir, "FA_3_Przyklad_1.xml")], upoDir)
	numbers := map[string]bool{first: true}
	for _, name := range []string{"FA_3_Przyklad_10.xml", "FA_3_Przyklad_15.xml", "FA_3_Przyklad_2.xml", "Fa_3_Przyklad_14.xml"} {
		n := checkAccepted(t, lines[filepath.Join(h.dir, name)], upoDir)
		if numbers[n] {
			t.Errorf("%s: KSeF number %s given twice", name, n)
		}
		numbers[n] = true
	}
	for _, name := range []string{"FA_3_Przyklad_4.xml", "FA_3_Przyklad_22.xml"} {
		line := lines[filepath.Join(h.dir, name)]
		m := rejectedLine.FindStringSubmatch(line)
		if m == nil || m[2] != "440" {
			t.Errorf("line %q, want a rejection with code 440", line)
			continue
		}
		if want := "(original KSeF number " + first + ")"; !strings.HasSuffix(line, want) {
			t.Errorf("line %q does not end with %q", line, want)
		}
	}
	entries, err := os.ReadDir(upoDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Errorf("%d files in the UPO directory, want 5 UPOs and no temporary files", len(entries))
	}
	for _, want := range []string{"checked 7 files: 7 to send, 0 invalid", "logged in", "5 of 7 invoices accepted", "logged out"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks progress %q", want)
		}
	}
	h.checkCleanedUp()
	for _, d := range h.waits {
		if d < time.Second || d > statusMaxDelay {
			t.Errorf("waited %v, want 1s..%v", d, statusMaxDelay)
		}
	}

	// Sending the duplicates again with --accept-duplicates: accepted, under sample 1's number,
	// with the original's UPO.
	t.Run("accept duplicates", func(t *testing.T) {
		dup := []string{filepath.Join(h.dir, "FA_3_Przyklad_4.xml"), filepath.Join(h.dir, "FA_3_Przyklad_22.xml")}
		dupDir := filepath.Join(h.dir, "upo-dup")
		code, stdout, _ := h.send(t.Context(), append([]string{"--accept-duplicates", "--upo-dir", dupDir}, dup...)...)
		if code != exitOK {
			t.Errorf("exit status %d, want 0", code)
		}
		lines := parseLines(t, stdout)
		for _, f := range dup {
			m := acceptedLine.FindStringSubmatch(lines[f])
			if m == nil || m[3] == "" {
				t.Fatalf("line %q, want an accepted duplicate", lines[f])
			}
			if n := checkAccepted(t, lines[f], dupDir); n != first {
				t.Errorf("%s: KSeF number %s, want the original %s", f, n, first)
			}
		}
	})
}

func TestSendJSON(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	upoDir := filepath.Join(h.dir, "upo")
	good := h.write("good.xml", sample(t, "FA_3_Przyklad_2.xml"))
	// Not in the FA(3) schema: KSeF rejects it after sending, with the validator's messages.
	invalid := h.write("xsd.xml", edit(t, sample(t, "FA_3_Przyklad_10.xml"), "<KodWaluty>PLN</KodWaluty>", "<KodWaluty>XYZ</KodWaluty>"))
	bad := h.write("bad.xml", []byte("not xml"))
	// Flags after the files work too.
	code, stdout, _ := h.send(t.Context(), good, invalid, bad, "--json", "--upo-dir", upoDir)
	if code != exitNotAccepted {
		t.Errorf("exit status %d, want %d", code, exitNotAccepted)
	}
	results := map[string]map[string]any{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var obj map[string]any
		if err := json.Unmarshal(sc.Bytes(), &obj); err != nil {
			t.Fatalf("stdout line %q is not JSON: %v", sc.Text(), err)
		}
		for key, kind := range map[string]string{
			"file": "string", "accepted": "bool", "referenceNumber": "string", "ksefNumber": "string",
			"statusCode": "float64", "statusDescription": "string", "upoPath": "string",
		} {
			if got := fmt.Sprintf("%T", obj[key]); got != kind {
				t.Errorf("line %s: %s is %s, want %s", sc.Text(), key, got, kind)
			}
		}
		results[obj["file"].(string)] = obj
	}
	if len(results) != 3 {
		t.Fatalf("%d results, want 3", len(results))
	}

	g := results[good]
	number, _ := g["ksefNumber"].(string)
	if _, err := ksef.ParseKSeFNumber(number); err != nil {
		t.Errorf("ksefNumber %q: %v", number, err)
	}
	if g["accepted"] != true || g["statusCode"] != 200.0 || g["upoPath"] != filepath.Join(upoDir, number+".xml") ||
		g["invoiceNumber"] != "FK2026/03/200" || g["referenceNumber"] == "" || g["sessionReferenceNumber"] == "" {
		t.Errorf("good invoice: %v", g)
	}
	if upo, err := os.ReadFile(filepath.Join(upoDir, number+".xml")); err != nil || !bytes.Contains(upo, []byte(number)) {
		t.Errorf("UPO of %s missing or without its number (%v)", number, err)
	}

	x := results[invalid]
	details, _ := x["statusDetails"].([]any)
	if x["accepted"] != false || x["statusCode"] != 450.0 || x["ksefNumber"] != "" || x["upoPath"] != "" || len(details) == 0 || x["referenceNumber"] == "" {
		t.Errorf("XSD-invalid invoice: %v", x)
	}
	if !strings.Contains(fmt.Sprint(details), "XYZ") {
		t.Errorf("details %q do not name the bad value", details)
	}

	b := results[bad]
	if b["accepted"] != false || b["statusCode"] != 0.0 || b["referenceNumber"] != "" || !strings.Contains(fmt.Sprint(b["error"]), "invalid invoice") {
		t.Errorf("bad file: %v", b)
	}
}

func TestSendRejected(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	invalid := h.write("xsd.xml", edit(t, sample(t, "FA_3_Przyklad_10.xml"), "<KodWaluty>PLN</KodWaluty>", "<KodWaluty>XYZ</KodWaluty>"))
	future := h.write("future.xml", edit(t, sample(t, "FA_3_Przyklad_2.xml"), "<P_1>2026-03-15</P_1>", "<P_1>2026-09-02</P_1>"))
	otherSeller := h.write("seller.xml", edit(t, sample(t, "FA_3_Przyklad_15.xml"), "<NIP>9999999999</NIP>", "<NIP>1111111111</NIP>"))
	missing := filepath.Join(h.dir, "missing.xml")
	code, stdout, _ := h.send(t.Context(), "--upo-dir", h.dir, invalid, future, otherSeller, missing)
	if code != exitNotAccepted {
		t.Errorf("exit status %d, want %d", code, exitNotAccepted)
	}
	lines := parseLines(t, stdout)
	tests := []struct {
		file string
		want *regexp.Regexp
	}{
		{invalid, regexp.MustCompile(`: rejected 450 Błąd weryfikacji semantyki dokumentu faktury: .*XYZ`)},
		{future, regexp.MustCompile(`: not sent: invalid invoice: .*`)},
		{otherSeller, regexp.MustCompile(`: not sent: invalid invoice: .*`)},
		{missing, regexp.MustCompile(`: not sent: open .*missing.xml: no such file or directory$`)},
	}
	for _, tt := range tests {
		if !tt.want.MatchString(lines[tt.file]) {
			t.Errorf("line %q does not match %q", lines[tt.file], tt.want)
		}
	}
	if strings.Contains(lines[future], "2026-09-02") {
		t.Errorf("line %q shows invoice content", lines[future])
	}
	h.checkCleanedUp()
}

// TestSendOnlyBadFiles: nothing to send, so no login at all.
func TestSendOnlyBadFiles(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	bad := h.write("bom.xml", append([]byte("\xEF\xBB\xBF"), sample(t, "FA_3_Przyklad_2.xml")...))
	code, stdout, _ := h.send(t.Context(), "--upo-dir", h.dir, bad)
	if code != exitNotAccepted {
		t.Errorf("exit status %d, want %d", code, exitNotAccepted)
	}
	if want := bad + ": not sent: invalid invoice: "; !strings.HasPrefix(stdout, want) {
		t.Errorf("stdout %q, want it to start with %q", stdout, want)
	}
	if calls := h.http.calls(); len(calls) != 0 {
		t.Errorf("requests made: %q", calls)
	}
}

func TestSendXAdES(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	delete(h.vars, tokenEnv)
	cert, key, err := ksef.NewTestCertificate(ksef.TestCertificateOptions{NIP: testNIP, Seal: true, Now: h.srv.Emulator.Now()})
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ksef.EncodePEM(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := h.write("seal.crt", certPEM), h.write("seal.key", keyPEM)
	invoice := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, stderr := h.send(t.Context(), "--cert", certFile, "--key", keyFile, "--upo-dir", h.dir, invoice)
	if code != exitOK {
		t.Fatalf("exit status %d, want 0", code)
	}
	checkAccepted(t, strings.TrimSpace(stdout), h.dir)
	if !h.called("POST", "/auth/xades-signature", 202) || h.called("POST", "/auth/ksef-token", 202) {
		t.Errorf("not an XAdES login: %q", h.http.calls())
	}
	if !strings.Contains(stderr, "XAdES signature") {
		t.Errorf("stderr does not name the login method")
	}
	if strings.Contains(stdout+stderr, "PRIVATE KEY") || strings.Contains(stdout+stderr, string(keyPEM[40:80])) {
		t.Errorf("output contains the private key")
	}
	h.checkCleanedUp()
}

func TestSendCredentials(t *testing.T) {
	t.Run("no token", func(t *testing.T) {
		h := newHarness(t, emulator.Config{})
		delete(h.vars, tokenEnv)
		code, stdout, stderr := h.send(t.Context(), h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml")))
		if code != exitUsage {
			t.Errorf("exit status %d, want %d", code, exitUsage)
		}
		if !strings.Contains(stderr, "set the environment variable KSEF_TOKEN") || stdout != "" {
			t.Errorf("stdout %q, stderr %q; want a message naming KSEF_TOKEN on stderr only", stdout, stderr)
		}
		if calls := h.http.calls(); len(calls) != 0 {
			t.Errorf("requests made: %q", calls)
		}
	})
	t.Run("wrong token", func(t *testing.T) {
		h := newHarness(t, emulator.Config{})
		wrong := h.token[:len(h.token)-8] + "00000000"
		h.vars[tokenEnv] = wrong
		file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
		code, stdout, stderr := h.send(t.Context(), file)
		if code != exitFailure {
			t.Errorf("exit status %d, want %d", code, exitFailure)
		}
		if !regexp.MustCompile(`ksef send: log in: authentication \S+ failed: 450 .*: Nieprawidłowy token`).MatchString(stderr) {
			t.Errorf("stderr %q does not give KSeF's code and details", stderr)
		}
		if want := file + ": not sent: login failed\n"; stdout != want {
			t.Errorf("stdout %q, want %q", stdout, want)
		}
		checkNoSecrets(t, wrong, stdout+stderr)
	})
}

// TestSendInterrupted: Ctrl-C while waiting for the verdict still closes the session and logs
// out, and the invoice is reported with its reference number.
func TestSendInterrupted(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h.onWait = func(ctx context.Context, _ time.Duration) error {
		if h.called("POST", "/sessions/online/*/invoices", 202) {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, stderr := h.send(ctx, "--upo-dir", h.dir, file)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	if !regexp.MustCompile(`^` + regexp.QuoteMeta(file) + `: status unknown \(reference \S+-EE-\S+, last status 100 [^)]+\): interrupted\n$`).MatchString(stdout) {
		t.Errorf("stdout %q, want the invoice with its reference number", stdout)
	}
	if !strings.Contains(stderr, "ksef send: interrupted") {
		t.Errorf("stderr %q does not say interrupted", stderr)
	}
	h.checkCleanedUp()
}

// TestSendTimeout: invoices stuck in processing end the command at --timeout, cleaned up.
func TestSendTimeout(t *testing.T) {
	h := newHarness(t, emulator.Config{Faults: []emulator.Fault{{Kind: emulator.FaultStuckInvoices}}})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, stderr := h.send(t.Context(), "--timeout", "1m", "--upo-dir", h.dir, file)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	if !strings.Contains(stdout, ": status unknown (reference ") || !strings.HasSuffix(stdout, ", last status 150 Trwa przetwarzanie): timed out\n") {
		t.Errorf("stdout %q, want the invoice's status unknown", stdout)
	}
	if !strings.Contains(stderr, "gave up after --timeout 1m0s") {
		t.Errorf("stderr %q does not explain the timeout", stderr)
	}
	var total time.Duration
	for _, d := range h.waits {
		total += d
	}
	if total > time.Minute {
		t.Errorf("waited %v in all, beyond --timeout", total)
	}
	h.checkCleanedUp()
}

// TestSendRefreshesAccessToken: slow processing outlives the access token; the command
// refreshes it and carries on.
func TestSendRefreshesAccessToken(t *testing.T) {
	h := newHarness(t, emulator.Config{AccessTokenTTL: time.Minute, ProcessingDelay: 3 * time.Minute})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, _ := h.send(t.Context(), "--upo-dir", h.dir, file)
	if code != exitOK {
		t.Fatalf("exit status %d, want 0", code)
	}
	checkAccepted(t, strings.TrimSpace(stdout), h.dir)
	if !h.called("POST", "/auth/token/refresh", 200) {
		t.Errorf("access token never refreshed: %q", h.http.calls())
	}
	h.checkCleanedUp()
}

// TestSendRateLimited: 429 answers are waited out (Retry-After) through the injected wait.
func TestSendRateLimited(t *testing.T) {
	h := newHarness(t, emulator.Config{Faults: []emulator.Fault{
		{Kind: emulator.FaultRateLimit, Method: "GET", Path: "/sessions/*/invoices/*", Count: 1, RetryAfter: 7 * time.Second},
	}})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, _ := h.send(t.Context(), "--upo-dir", h.dir, file)
	if code != exitOK {
		t.Fatalf("exit status %d, want 0", code)
	}
	checkAccepted(t, strings.TrimSpace(stdout), h.dir)
	found := false
	for _, d := range h.waits {
		found = found || d >= 7*time.Second
	}
	if !found {
		t.Errorf("waits %v: none honours Retry-After 7s", h.waits)
	}
}

// TestSendSessionFailure: a session that cannot be opened fails the run (exit 3), every file is
// reported, and the login is still revoked.
func TestSendSessionFailure(t *testing.T) {
	h := newHarness(t, emulator.Config{Faults: []emulator.Fault{
		{Kind: emulator.FaultHTTPError, Method: "POST", Path: "/sessions/online", Status: 500},
	}})
	files := []string{h.write("a.xml", sample(t, "FA_3_Przyklad_1.xml")), h.write("b.xml", sample(t, "FA_3_Przyklad_2.xml"))}
	code, stdout, stderr := h.send(t.Context(), append([]string{"--upo-dir", h.dir}, files...)...)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	if want := files[0] + ": not sent: stopped after an earlier error\n" + files[1] + ": not sent: stopped after an earlier error\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if !strings.Contains(stderr, "ksef send: open online session: ") || !strings.Contains(stderr, "HTTP 500") {
		t.Errorf("stderr %q does not explain the failure", stderr)
	}
	if !h.called("DELETE", "/auth/sessions/current", 204) {
		t.Errorf("login not revoked: %q", h.http.calls())
	}
}

// TestSendVerbose: the debug log shows the HTTP traffic, never a token.
func TestSendVerbose(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, _, stderr := h.send(t.Context(), "--verbose", "--upo-dir", h.dir, file)
	if code != exitOK {
		t.Fatalf("exit status %d, want 0", code)
	}
	if !strings.Contains(stderr, "level=DEBUG") || !strings.Contains(stderr, "/auth/ksef-token") {
		t.Errorf("stderr has no debug log of the requests")
	}
}

// TestSendUPOFallback: when the pre-signed UPO link fails (here: it has expired), the UPO comes
// through the API instead.
func TestSendUPOFallback(t *testing.T) {
	h := newHarness(t, emulator.Config{DownloadURLTTL: time.Millisecond})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, stderr := h.send(t.Context(), "--verbose", "--upo-dir", h.dir, file)
	if code != exitOK {
		t.Fatalf("exit status %d, want 0", code)
	}
	checkAccepted(t, strings.TrimSpace(stdout), h.dir)
	if !strings.Contains(stderr, "UPO link failed") || !h.called("GET", "/sessions/*/invoices/*/upo", 200) {
		t.Errorf("UPO not fetched through the API after the link failed: %q", h.http.calls())
	}
}

// TestSendUPOFailure: an accepted invoice whose UPO cannot be saved is printed with its KSeF
// number, and the command exits with 3, not 1: the invoice is in KSeF and must not be resent.
func TestSendUPOFailure(t *testing.T) {
	h := newHarness(t, emulator.Config{DownloadURLTTL: time.Millisecond, Faults: []emulator.Fault{
		{Kind: emulator.FaultHTTPError, Method: "GET", Path: "/sessions/*/invoices/*/upo", Status: 503},
	}})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, stderr := h.send(t.Context(), "--json", "--upo-dir", h.dir, file)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	var r result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("stdout %q: %v", stdout, err)
	}
	if _, err := ksef.ParseKSeFNumber(r.KSeFNumber); err != nil || !r.Accepted || r.UPOPath != "" || !strings.HasPrefix(r.Error, "UPO not saved: ") {
		t.Errorf("result %+v, want accepted with a KSeF number and a UPO error", r)
	}
	if !strings.Contains(stderr, "ksef send: 1 UPO could not be saved") {
		t.Errorf("stderr %q does not report the UPO failure", stderr)
	}
	h.checkCleanedUp()
}

// TestSendLoginStuck: a login that KSeF does not finish is given up after two minutes of
// one-second polls.
func TestSendLoginStuck(t *testing.T) {
	h := newHarness(t, emulator.Config{AuthDelay: time.Hour})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	code, stdout, stderr := h.send(t.Context(), file)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	if !regexp.MustCompile(`ksef send: log in: authentication \S+ still in progress after 2m0s \(status 100 `).MatchString(stderr) {
		t.Errorf("stderr %q does not explain the stuck login", stderr)
	}
	if want := file + ": not sent: login failed\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if len(h.waits) != int(authPollTimeout/authPollInterval) {
		t.Errorf("%d waits, want %d", len(h.waits), authPollTimeout/authPollInterval)
	}
	for _, d := range h.waits {
		if d != authPollInterval {
			t.Errorf("waited %v between authentication polls, want %v", d, authPollInterval)
		}
	}
}

// TestSendStopsOnSendFailure: a failure that is not about the invoice (here a 500, after which
// KSeF may or may not have the invoice) stops the sending; what was sent is still waited for.
func TestSendStopsOnSendFailure(t *testing.T) {
	h := newHarness(t, emulator.Config{Faults: []emulator.Fault{
		{Kind: emulator.FaultHTTPError, Method: "POST", Path: "/sessions/online/*/invoices", Status: 500, Count: 1},
	}})
	files := []string{
		h.write("a.xml", sample(t, "FA_3_Przyklad_1.xml")),
		h.write("b.xml", sample(t, "FA_3_Przyklad_2.xml")),
	}
	code, stdout, stderr := h.send(t.Context(), append([]string{"--upo-dir", h.dir}, files...)...)
	if code != exitFailure {
		t.Errorf("exit status %d, want %d", code, exitFailure)
	}
	lines := parseLines(t, stdout)
	if !strings.HasPrefix(lines[files[0]], files[0]+": not sent: SendInvoice: HTTP 500") ||
		!strings.HasSuffix(lines[files[0]], " (KSeF may have received it: check before sending it again)") {
		t.Errorf("line %q, want the send error", lines[files[0]])
	}
	if want := files[1] + ": not sent: stopped after an earlier error"; lines[files[1]] != want {
		t.Errorf("line %q, want %q", lines[files[1]], want)
	}
	if !strings.Contains(stderr, "ksef send: send "+files[0]+": ") {
		t.Errorf("stderr %q does not explain the failure", stderr)
	}
	h.checkCleanedUp()
}

// TestSendFileChanged: a file that changes between the check and the send is not sent.
func TestSendFileChanged(t *testing.T) {
	h := newHarness(t, emulator.Config{})
	file := h.write("fv.xml", sample(t, "FA_3_Przyklad_1.xml"))
	h.onWait = func(context.Context, time.Duration) error {
		// The first wait is during the login, after the check.
		h.write("fv.xml", sample(t, "FA_3_Przyklad_2.xml"))
		return nil
	}
	code, stdout, _ := h.send(t.Context(), "--upo-dir", h.dir, file)
	if code != exitNotAccepted {
		t.Errorf("exit status %d, want %d", code, exitNotAccepted)
	}
	if want := file + ": not sent: the file changed after it was checked\n"; stdout != want {
		t.Errorf("stdout %q, want %q", stdout, want)
	}
	if h.called("POST", "/sessions/online/*/invoices", 202) {
		t.Error("the changed file was sent")
	}
}

func TestInvoiceError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"validation", &ksef.APIError{StatusCode: 400, Details: []ksef.ExceptionDetail{{Code: ksef.CodeValidation}}}, true},
		{"hash mismatch", fmt.Errorf("send: %w", &ksef.APIError{StatusCode: 400, Details: []ksef.ExceptionDetail{{Code: ksef.CodeHashMismatch}}}), true},
		{"session closed", &ksef.APIError{StatusCode: 400, Details: []ksef.ExceptionDetail{{Code: ksef.CodeSessionStatus}}}, false},
		{"session unknown", &ksef.APIError{StatusCode: 400, Details: []ksef.ExceptionDetail{{Code: ksef.CodeSessionNotFound}}}, false},
		{"session full", &ksef.APIError{StatusCode: 400, Details: []ksef.ExceptionDetail{{Code: ksef.CodeInvoiceLimit}}}, false},
		{"unauthorized", &ksef.APIError{StatusCode: 401}, false},
		{"forbidden", &ksef.APIError{StatusCode: 403}, false},
		{"rate limited", &ksef.APIError{StatusCode: 429}, false},
		{"server error", &ksef.APIError{StatusCode: 500}, false},
		{"network", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		if got := invoiceError(tt.err); got != tt.want {
			t.Errorf("%s: invoiceError(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
