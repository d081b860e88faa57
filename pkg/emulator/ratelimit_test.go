package emulator_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
)

func check429(t *testing.T, r reply, wantRetryAfter string, problem bool) {
	t.Helper()
	if r.status != 429 {
		t.Fatalf("HTTP %d, want 429; body %s", r.status, r.body)
	}
	if got := r.header.Get("Retry-After"); got != wantRetryAfter {
		t.Errorf("Retry-After %q, want %q", got, wantRetryAfter)
	}
	if problem {
		var p struct {
			Title  string `json:"title"`
			Status int    `json:"status"`
			Detail string `json:"detail"`
		}
		if err := json.Unmarshal(r.body, &p); err != nil || p.Status != 429 || !strings.Contains(p.Detail, "Spróbuj ponownie po "+wantRetryAfter+" sekundach") {
			t.Errorf("problem body %s", r.body)
		}
		return
	}
	var body struct {
		Status struct {
			Code        int      `json:"code"`
			Description string   `json:"description"`
			Details     []string `json:"details"`
		} `json:"status"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Status.Code != 429 || body.Status.Description != "Too Many Requests" ||
		!contains(body.Status.Details, "Spróbuj ponownie po "+wantRetryAfter+" sekundach") {
		t.Errorf("429 body %s", r.body)
	}
}

// TestRateLimits: sliding windows per second and per minute for GET /sessions (5/s, 10/min), per
// context, with Retry-After saying when a slot frees.
func TestRateLimits(t *testing.T) {
	cfg := emulator.Config{RateLimits: true, AccessTokenTTL: time.Hour}
	srv, c := tokenServer(t, cfg)
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	other := c.loginToken(otherNIP, "other-token").AccessToken.Token
	list := func(token string, extra ...string) reply {
		return c.do("GET", "/sessions?sessionType=Online", token, nil, extra...)
	}
	for i := range 5 {
		if r := list(access); r.status != 200 {
			t.Fatalf("request %d: HTTP %d", i+1, r.status)
		}
	}
	check429(t, list(access), "1", false)
	check429(t, list(access, "X-Error-Format", "problem-details"), "1", true)
	// Another context has its own counter.
	c.expect(list(other), 200)

	srv.Clock.Advance(time.Second)
	for i := range 5 {
		if r := list(access); r.status != 200 {
			t.Fatalf("second burst, request %d: HTTP %d", i+1, r.status)
		}
	}
	srv.Clock.Advance(time.Second)
	// Ten requests in the minute: the first leaves the window 60 s after it was made.
	check429(t, list(access), "58", false)
	srv.Clock.Advance(58 * time.Second)
	c.expect(list(access), 200)

	// The limits in force are published.
	r := c.do("GET", "/rate-limits", access, nil)
	c.expect(r, 200)
	var limits map[string]struct{ PerSecond, PerMinute, PerHour int }
	r.decode(t, &limits)
	if l := limits["sessionList"]; l.PerSecond != 5 || l.PerMinute != 10 || l.PerHour != 60 {
		t.Errorf("sessionList limits %+v, want 5/10/60", l)
	}
	if len(limits) != 12 {
		t.Errorf("%d groups, want the 12 of EffectiveApiRateLimits", len(limits))
	}
}

func TestRateLimitPublicAndOverrides(t *testing.T) {
	cfg := emulator.Config{RateLimits: true, RateLimitOverrides: map[string]emulator.Limit{"invoiceSend": {PerSecond: 1}}}
	_, c := tokenServer(t, cfg)
	for i := range 60 {
		if r := c.do("POST", "/auth/challenge", "", nil); r.status != 200 {
			t.Fatalf("challenge %d: HTTP %d", i+1, r.status)
		}
	}
	check429(t, c.do("POST", "/auth/challenge", "", nil), "1", false)
	// Another public endpoint has its own counter.
	c.expect(c.do("GET", "/security/public-key-certificates", "", nil), 200)

	srvClock := c.srv.Clock
	srvClock.Advance(time.Second)
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	s := c.openSession(access)
	c.sendInvoice(access, s, sample1("RL/1"))
	r := c.do("POST", "/sessions/online/"+s.ref+"/invoices", access, sendRequest(t, s, sample1("RL/2")))
	check429(t, r, "1", false)
	r = c.do("GET", "/rate-limits", access, nil)
	var limits map[string]struct{ PerSecond, PerMinute, PerHour int }
	r.decode(t, &limits)
	if l := limits["invoiceSend"]; l.PerSecond != 1 || l.PerMinute != 0 {
		t.Errorf("overridden invoiceSend limits %+v", l)
	}
}

func TestRateLimitsOff(t *testing.T) {
	_, c := tokenServer(t, emulator.Config{})
	for i := range 80 {
		if r := c.do("POST", "/auth/challenge", "", nil); r.status != 200 {
			t.Fatalf("challenge %d: HTTP %d with rate limits off", i+1, r.status)
		}
	}
}
