package emulator_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

func TestFaultHTTPError(t *testing.T) {
	for _, status := range []int{500, 502, 503, 504} {
		_, c := tokenServer(t, emulator.Config{Faults: []emulator.Fault{
			{Kind: emulator.FaultHTTPError, Method: "POST", Path: "/sessions/online", Status: status, Count: 2},
		}})
		access := c.loginToken(sellerNIP, token1).AccessToken.Token
		for range 2 {
			r := c.openSessionReply(access, make([]byte, 32), make([]byte, 16))
			if r.status != status || !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
				t.Fatalf("faulted request: HTTP %d %q, want %d problem+json", r.status, r.header.Get("Content-Type"), status)
			}
		}
		c.expect(c.openSessionReply(access, make([]byte, 32), make([]byte, 16)), 201)
	}
}

// TestFaultPathPattern: faults match method and path glob; other requests pass.
func TestFaultPathPattern(t *testing.T) {
	srv, c := tokenServer(t, emulator.Config{})
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	s := c.openSession(access)
	if err := srv.Emulator.AddFault(emulator.Fault{Kind: emulator.FaultHTTPError, Method: "POST", Path: "/sessions/online/*/invoices", Status: 502}); err != nil {
		t.Fatal(err)
	}
	for range 3 { // Count 0: until cleared
		r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(t, s, sample1("FP/1")))
		if r.status != 502 {
			t.Fatalf("HTTP %d, want 502", r.status)
		}
	}
	c.expect(c.do("GET", "/sessions/"+s.ref, access, nil), 200)
	if got := srv.Emulator.Faults(); len(got) != 1 || got[0].Count != 0 {
		t.Errorf("active faults %+v", got)
	}
	srv.Emulator.ClearFaults()
	c.sendInvoice(access, s, sample1("FP/1"))
}

func TestFaultRateLimitBurst(t *testing.T) {
	srv, c := tokenServer(t, emulator.Config{})
	if err := srv.Emulator.AddFault(emulator.Fault{Kind: emulator.FaultRateLimit, Path: "/auth/challenge", RetryAfter: 6500 * time.Millisecond, Count: 3}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		check429(t, c.do("POST", "/auth/challenge", "", nil), "7", false)
	}
	c.challenge()
}

// TestFaultLatency: the request waits for the injected latency (through the injected wait
// function, so the test does not sleep), then is served normally.
func TestFaultLatency(t *testing.T) {
	var mu sync.Mutex
	var waited []time.Duration
	srv := emutest.NewServerAt(t, testStart, emulator.Config{Faults: []emulator.Fault{
		{Kind: emulator.FaultLatency, Path: "/security/*", Latency: 2 * time.Second, Count: 1},
	}}, emulator.WithWait(func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		waited = append(waited, d)
		return nil
	}))
	c := newClient(t, srv)
	c.publicKeys()
	c.publicKeys()
	mu.Lock()
	defer mu.Unlock()
	if len(waited) != 1 || waited[0] != 2*time.Second {
		t.Errorf("waited %v, want one 2s wait", waited)
	}
}

// TestFaultLatencyHonoursCancellation: a client that gives up during injected latency ends the
// wait; the request is dropped and logged with status 499.
func TestFaultLatencyHonoursCancellation(t *testing.T) {
	var logs syncBuffer
	waiting := make(chan struct{})
	e, err := emulator.New(emulator.Config{Faults: []emulator.Fault{{Kind: emulator.FaultLatency, Latency: time.Hour}}},
		emulator.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))),
		emulator.WithWait(func(ctx context.Context, _ time.Duration) error {
			close(waiting)
			<-ctx.Done()
			return ctx.Err()
		}))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		<-waiting
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v2/auth/challenge", nil)
	if _, err := srv.Client().Do(req); !errors.Is(err, context.Canceled) {
		t.Fatalf("client error %v, want context.Canceled", err)
	}
	srv.Close() // waits for the handler to finish
	if !strings.Contains(logs.String(), `"status":499`) {
		t.Errorf("log %s does not record the dropped request", logs.String())
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestFaultStuckInvoices(t *testing.T) {
	srv, c, access, s := sellerSession(t, emulator.Config{AccessTokenTTL: 24 * time.Hour, Faults: []emulator.Fault{
		{Kind: emulator.FaultStuckInvoices, NIP: sellerNIP, Count: 1},
	}})
	stuck := c.sendInvoice(access, s, sample1("ST/1"))
	fine := c.sendInvoice(access, s, sample1("ST/2"))
	srv.Clock.Advance(time.Hour)
	if st := c.invoiceStatus(access, s, stuck); st.Status.Code != 150 {
		t.Errorf("stuck invoice: %d, want 150 for ever", st.Status.Code)
	}
	if st := c.invoiceStatus(access, s, fine); st.Status.Code != 200 {
		t.Errorf("next invoice: %d, want 200", st.Status.Code)
	}
	c.closeSession(access, s)
	srv.Clock.Advance(time.Hour)
	if st := c.sessionStatus(access, s); st.Status.Code != 170 {
		t.Errorf("session with a stuck invoice: %d, want 170", st.Status.Code)
	}
}

func TestFaultRejectInvoices(t *testing.T) {
	_, c, access, s := sellerSession(t, emulator.Config{Faults: []emulator.Fault{
		{Kind: emulator.FaultRejectInvoices, Status: 550, Details: []string{"Przetwarzanie zostało przerwane z przyczyn wewnętrznych systemu. Spróbuj ponownie"}, Count: 2},
		{Kind: emulator.FaultRejectInvoices, NIP: otherNIP, Status: 450},
	}})
	refs := []string{c.sendInvoice(access, s, sample1("RJ/1")), c.sendInvoice(access, s, sample1("RJ/2")), c.sendInvoice(access, s, sample1("RJ/3"))}
	c.settle()
	for i, want := range []int{550, 550, 200} {
		st := c.invoiceStatus(access, s, refs[i])
		if st.Status.Code != want {
			t.Errorf("invoice %d: %+v, want %d", i+1, st.Status, want)
		}
		if want == 550 && (st.Status.Description != "Operacja została anulowana przez system" || !contains(st.Status.Details, "Spróbuj ponownie")) {
			t.Errorf("invoice %d: %+v lacks the chosen details", i+1, st.Status)
		}
	}
}

// adminPost sends a JSON body to the admin API.
func adminPost(t *testing.T, srv *emutest.Server, path string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequestWithContext(t.Context(), "POST", srv.AdminURL+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	return resp.StatusCode, out.Bytes()
}

func TestAdminAPI(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)

	// Token seeding: a generated KSeF-shaped token, and a chosen one.
	status, body := adminPost(t, srv, "/tokens", map[string]string{"nip": sellerNIP})
	var seeded struct{ NIP, Token string }
	if err := json.Unmarshal(body, &seeded); status != 201 || err != nil || strings.Count(seeded.Token, "|") != 2 {
		t.Fatalf("POST /admin/tokens: %d %s", status, body)
	}
	tk := c.loginToken(sellerNIP, seeded.Token)
	if status, _ := adminPost(t, srv, "/tokens", map[string]string{"nip": otherNIP, "token": "chosen"}); status != 201 {
		t.Fatalf("seeding a chosen token: %d", status)
	}
	c.loginToken(otherNIP, "chosen")
	if status, _ := adminPost(t, srv, "/tokens", map[string]string{"nip": "123"}); status != 400 {
		t.Errorf("seeding for a bad NIP: %d, want 400", status)
	}

	// Faults over HTTP.
	if status, body := adminPost(t, srv, "/faults", map[string]any{"kind": "httpError", "path": "/auth/challenge", "status": 503, "count": 1}); status != 201 {
		t.Fatalf("POST /admin/faults: %d %s", status, body)
	}
	if status, _ := adminPost(t, srv, "/faults", map[string]any{"kind": "httpError", "status": 418}); status != 400 {
		t.Errorf("bad fault accepted")
	}
	if status, _ := adminPost(t, srv, "/faults", map[string]any{"kind": "latency", "latency": "250ms", "path": "/nothing"}); status != 201 {
		t.Errorf("latency fault refused")
	}
	if f := srv.Emulator.Faults(); len(f) != 2 || f[1].Latency != 250*time.Millisecond {
		t.Errorf("faults %+v", f)
	}
	if r := c.do("POST", "/auth/challenge", "", nil); r.status != 503 {
		t.Errorf("challenge under fault: %d, want 503", r.status)
	}
	req, _ := http.NewRequestWithContext(t.Context(), "DELETE", srv.AdminURL+"/faults", nil)
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatalf("DELETE /admin/faults: %v", err)
	}
	if f := srv.Emulator.Faults(); len(f) != 0 {
		t.Errorf("faults left after DELETE: %+v", f)
	}

	// Expiry of a NIP's access tokens and sessions.
	s := c.openSession(tk.AccessToken.Token)
	status, body = adminPost(t, srv, "/expire-sessions", map[string]string{"nip": sellerNIP})
	if status != 200 || !strings.Contains(string(body), `"expired":1`) {
		t.Errorf("expire-sessions: %d %s", status, body)
	}
	r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", tk.AccessToken.Token, sendRequest(t, s, sample1("AD/1")))
	if c.expect(r, 400); r.exceptionCode(t) != 21180 {
		t.Errorf("send after session expiry: code %d, want 21180", r.exceptionCode(t))
	}
	status, body = adminPost(t, srv, "/expire-access-tokens", map[string]string{"nip": sellerNIP})
	if status != 200 || !strings.Contains(string(body), `"expired":1`) {
		t.Errorf("expire-access-tokens: %d %s", status, body)
	}
	checkUnauthorized(t, c.do("GET", "/rate-limits", tk.AccessToken.Token, nil), "expired by the admin API")
	c.expect(c.do("POST", "/auth/token/refresh", tk.RefreshToken.Token, nil), 200)

	// Clock.
	before := srv.Emulator.Now()
	status, body = adminPost(t, srv, "/clock", map[string]string{"advance": "90s"})
	if status != 200 || !srv.Emulator.Now().Equal(before.Add(90*time.Second)) {
		t.Errorf("POST /admin/clock: %d %s", status, body)
	}
	if status, _ := adminPost(t, srv, "/clock", map[string]string{"advance": "-1s"}); status != 400 {
		t.Errorf("moving the clock back was accepted")
	}

	// Key rotation.
	if status, _ := adminPost(t, srv, "/rotate-keys", map[string]bool{"emergency": false}); status != 204 {
		t.Errorf("rotate-keys: %d", status)
	}
	if n := len(c.publicKeys()); n != 4 {
		t.Errorf("%d keys after a planned rotation, want 4", n)
	}

	// Reset forgets everything but the configuration.
	if status, _ := adminPost(t, srv, "/reset", nil); status != 204 {
		t.Errorf("reset: %d", status)
	}
	checkUnauthorized(t, c.do("GET", "/rate-limits", tk.AccessToken.Token, nil), "token issued before reset")
	if n := len(c.publicKeys()); n != 2 {
		t.Errorf("%d keys after reset, want 2", n)
	}
	srv.Clock.Advance(emulator.DefaultKeyOverlap)
	if n := len(c.publicKeys()); n != 2 {
		t.Errorf("%d keys once the pre-reset rotation's overlap is over, want the initial 2", n)
	}
	if !srv.Emulator.Now().Equal(srv.Clock.Now()) {
		t.Errorf("reset kept the clock offset")
	}
	r = c.startTokenAuth(sellerNIP, seeded.Token)
	c.expect(r, 202)
	var ai authInit
	r.decode(t, &ai)
	srv.Clock.Advance(emulator.DefaultAuthDelay)
	if st := c.authStatus(ai); st.Status.Code != 450 {
		t.Errorf("token seeded before reset: status %d, want 450", st.Status.Code)
	}
}

// TestRequestLog: one JSON line per request with method, path, status and duration; never a
// token, a query string or a body.
func TestRequestLog(t *testing.T) {
	var logs syncBuffer
	srv := emutest.NewServerAt(t, testStart, emulator.Config{Tokens: map[string][]string{sellerNIP: {token1}}},
		emulator.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	c := newClient(t, srv)
	tk := c.loginToken(sellerNIP, token1)
	s := c.openSession(tk.AccessToken.Token)
	ref := c.sendInvoice(tk.AccessToken.Token, s, sample1("LG/1"))
	c.settle()
	st := c.invoiceStatus(tk.AccessToken.Token, s, ref)
	c.expect(c.doURL("GET", st.UPODownloadURL, "", nil), 200)

	out := logs.String()
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l struct {
			Msg        string   `json:"msg"`
			Method     string   `json:"method"`
			Path       string   `json:"path"`
			Status     int      `json:"status"`
			DurationMs *float64 `json:"durationMs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		if l.Msg != "request" || l.Method == "" || !strings.HasPrefix(l.Path, "/") || l.Status == 0 || l.DurationMs == nil {
			t.Errorf("log line %s lacks a field", sc.Text())
		}
		lines++
	}
	if lines != 11 {
		t.Errorf("%d log lines, want one per request (11)", lines)
	}
	for _, secret := range []string{tk.AccessToken.Token, tk.RefreshToken.Token, token1, "sig=", "Bearer", "<Faktura"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q", secret)
		}
	}
}
