package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/localrun"
)

func TestHappyPath(t *testing.T) {
	for _, tt := range []struct {
		auth, loginPath string
	}{
		{localrun.AuthToken, "/auth/ksef-token"},
		{localrun.AuthXAdES, "/auth/xades-signature"},
	} {
		t.Run(tt.auth, func(t *testing.T) {
			s := startStack(t, stackOptions{auth: tt.auth})
			body := sample(t)
			res := s.send(t, sampleName, body)
			s.checkAccepted(t, res, body, sampleNumber)
			wantStates(t, res.Execution, "Init "+pathLogin+"SendInvoice "+pathPoll+"Accepted ")

			e := res.Execution
			if len(e.Retries) != 0 || len(e.Caught) != 0 {
				t.Errorf("retries %v, caught %v: want none on the happy path", e.Retries, e.Caught)
			}
			m := s.Metrics()
			if m.KSeFLogins != 1 || requests(m, "POST", tt.loginPath) != 1 || requests(m, "POST", "/auth/token/redeem") != 1 {
				t.Errorf("%d logins (%d POST %s), %d redeems; want 1 login by %s, redeemed once", m.KSeFLogins, requests(m, "POST", tt.loginPath), tt.loginPath, requests(m, "POST", "/auth/token/redeem"), tt.auth)
			}
			if m.KSeFSessions != 1 || requests(m, "POST", sendInvoicePath) != 1 || requests(m, "POST", refreshPath) != 0 {
				t.Errorf("%d sessions opened, %d invoices sent, %d refreshes; want 1, 1, 0", m.KSeFSessions, requests(m, "POST", sendInvoicePath), requests(m, "POST", refreshPath))
			}
			wantFunctions(t, m, map[string]int{localrun.FunctionChallenge: 2, localrun.FunctionSend: 1, localrun.FunctionPoll: -2}, nil)
			if m.Executions != 1 || m.StateTransitions != e.StateTransitions || e.StateTransitions != len(e.States) {
				t.Errorf("metrics: %d executions, %d transitions; execution: %d transitions, %d states: want 1 execution, all equal",
					m.Executions, m.StateTransitions, e.StateTransitions, len(e.States))
			}
			// The state secret is created by the login's claim, then written when the login
			// starts, when its tokens are redeemed and when the session is opened.
			if m.SecretsWrites != 4 || m.AWSCalls["SecretsManager.CreateSecret"] != 1 {
				t.Errorf("%d Secrets Manager writes (%d creates), want 4 (1 create)", m.SecretsWrites, m.AWSCalls["SecretsManager.CreateSecret"])
			}
		})
	}
}

func TestRejectedByKSeF(t *testing.T) {
	s := startStack(t, stackOptions{})

	t.Run("injected", func(t *testing.T) {
		details := []string{"Suma wartości pozycji nie zgadza się z P_15.", "Wiersz 2: niepoprawna stawka podatku."}
		s.admin(t, "POST", "/admin/faults", fault{Kind: "rejectInvoices", NIP: s.nip, Status: 450, Details: details, Count: 1}, nil)
		before := s.Metrics()
		body := invoiceNumbered(t, "REJ/1")
		res := s.send(t, "rejected.xml", body)
		r := s.checkFailure(t, res, body, "RejectedError", "rejected")
		wantStates(t, res.Execution, "Init ("+pathLogin+"|"+pathTokenReady+")SendInvoice "+pathPollFails+"RecordFailure Failed ")
		if r.Reason.Code != 450 || !slices.Equal(r.Reason.Details, details) || r.Reason.Stage != "ksef" ||
			r.Reason.Message != "KSeF rejected the invoice: Błąd weryfikacji semantyki dokumentu faktury" {
			t.Errorf("report reason %+v, want KSeF's 450 with the injected details", r.Reason)
		}
		if r.Submission == nil || r.Submission.InvoiceReferenceNumber == "" || r.Submission.InvoiceNumber != "REJ/1" {
			t.Errorf("report submission %+v, want the invoice's submission", r.Submission)
		}
		wantCaught(t, res.Execution, localrun.Caught{State: "PollInvoice", Error: "RejectedError", Next: "RecordFailure"})
		after := s.Metrics()
		if n := requests(after, "POST", sendInvoicePath) - requests(before, "POST", sendInvoicePath); n != 1 {
			t.Errorf("%d invoices sent, want 1", n)
		}
		if n := after.Functions[localrun.FunctionPoll].FunctionErrors - before.Functions[localrun.FunctionPoll].FunctionErrors; n != 1 {
			t.Errorf("%d poll function errors, want 1 (the rejection)", n)
		}
	})

	t.Run("schema", func(t *testing.T) {
		// A currency outside the FA(3) enumeration: well-formed, right namespace, seller and
		// dates, so our inspection passes it and KSeF's schema validation rejects it.
		body := bytes.Replace(invoiceNumbered(t, "REJ/2"), []byte("<KodWaluty>PLN</KodWaluty>"), []byte("<KodWaluty>XYZ</KodWaluty>"), 1)
		before := s.Metrics()
		res := s.send(t, "schema.xml", body)
		r := s.checkFailure(t, res, body, "RejectedError", "rejected")
		wantStates(t, res.Execution, "Init "+pathTokenReady+"SendInvoice "+pathPollFails+"RecordFailure Failed ")
		if r.Reason.Code != 450 || len(r.Reason.Details) == 0 || !strings.Contains(strings.Join(r.Reason.Details, "\n"), "KodWaluty") {
			t.Errorf("report reason %+v, want 450 with the schema error on KodWaluty in the details", r.Reason)
		}
		if n := requests(s.Metrics(), "POST", sendInvoicePath) - requests(before, "POST", sendInvoicePath); n != 1 {
			t.Errorf("%d invoices sent, want 1", n)
		}
	})

	m := s.Metrics()
	if m.KSeFLogins != 1 || m.KSeFSessions != 1 {
		t.Errorf("%d logins, %d sessions opened; want 1 and 1", m.KSeFLogins, m.KSeFSessions)
	}
}

func TestInvalidInput(t *testing.T) {
	s := startStack(t, stackOptions{})
	inv := sample(t)
	tests := []struct {
		name    string
		body    []byte
		message string // in the report's reason message
		detail  string // in the report's details; "" for none
	}{
		{"malformed", inv[:len(inv)-200], "invoice rejected before sending", "malformed"},
		{"bom", append([]byte("\xEF\xBB\xBF"), invoiceNumbered(t, "BAD/2")...), "invoice rejected before sending", "byte order mark"},
		{"seller", bytes.Replace(invoiceNumbered(t, "BAD/3"), []byte("<NIP>9999999999</NIP>"), []byte("<NIP>5265877635</NIP>"), 1),
			"invoice rejected before sending", "is not the context NIP"},
		// Over KSeF's 1 MB for an invoice without attachments: refused by the inspection.
		{"over 1 MB", withComment(t, invoiceNumbered(t, "BAD/4"), 1_000_001), "invoice rejected before sending", "limit 1000000 bytes"},
		// Over the 3 MB any invoice may have: refused on its size alone, before it is read.
		{"over 3 MB", withComment(t, invoiceNumbered(t, "BAD/5"), 3_000_001), "KSeF accepts at most 3000000", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Metrics()
			res := s.send(t, fmt.Sprintf("invalid-%d.xml", i+1), tt.body)
			r := s.checkFailure(t, res, tt.body, "BadInputError", "invalid")
			wantStates(t, res.Execution, "Init ("+pathLogin+"|"+pathTokenReady+")SendInvoice RecordFailure Failed ")
			wantCaught(t, res.Execution, localrun.Caught{State: "SendInvoice", Error: "BadInputError", Next: "RecordFailure"})
			if len(res.Execution.Retries) != 0 {
				t.Errorf("retries %v, want none: bad input is not retried", res.Execution.Retries)
			}
			details := strings.Join(r.Reason.Details, "\n")
			if r.Reason.Stage != "send" || r.Reason.Code != 0 || !strings.Contains(r.Reason.Message, tt.message) ||
				(tt.detail == "") != (details == "") || !strings.Contains(details, tt.detail) {
				t.Errorf("report reason %+v, want stage send, no code, message with %q, details with %q", r.Reason, tt.message, tt.detail)
			}
			if r.Submission != nil {
				t.Errorf("report submission %+v, want none: nothing was sent", r.Submission)
			}
			after := s.Metrics()
			if n := after.Functions[localrun.FunctionSend].FunctionErrors - before.Functions[localrun.FunctionSend].FunctionErrors; n != 1 {
				t.Errorf("%d send function errors, want 1", n)
			}
			if n, k := requests(after, "POST", sendInvoicePath)-requests(before, "POST", sendInvoicePath), after.KSeFSessions-before.KSeFSessions; n != 0 || k != 0 {
				t.Errorf("%d invoices sent, %d sessions opened for it; want none", n, k)
			}
		})
	}
	// Nothing reached KSeF beyond the login: no session, no invoice.
	m := s.Metrics()
	if n := requests(m, "POST", sendInvoicePath); n != 0 || m.KSeFSessions != 0 || m.KSeFLogins != 1 {
		t.Errorf("%d invoices sent, %d sessions opened, %d logins; want 0, 0, 1", n, m.KSeFSessions, m.KSeFLogins)
	}
}

func TestExpiredAccessToken(t *testing.T) {
	for _, tt := range []struct {
		name   string
		expire func(t *testing.T, s *stack)
	}{
		{"admin", func(t *testing.T, s *stack) {
			var out struct {
				Expired int `json:"expired"`
			}
			s.admin(t, "POST", "/admin/expire-access-tokens", map[string]string{"nip": s.nip}, &out)
			if out.Expired < 1 {
				t.Fatalf("the emulator expired %d access tokens, want at least 1", out.Expired)
			}
		}},
		// The emulator's clock passes the access token's 15 minutes; the functions' clocks do
		// not, so they learn of the expiry from KSeF's 401.
		{"clock", func(t *testing.T, s *stack) {
			s.admin(t, "POST", "/admin/clock", map[string]string{"advance": "16m"}, nil)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := startStack(t, stackOptions{})
			first := invoiceNumbered(t, "EXP/1")
			s.checkAccepted(t, s.send(t, "first.xml", first), first, "EXP/1")
			before := s.Metrics()
			tt.expire(t, s)

			second := invoiceNumbered(t, "EXP/2")
			res := s.send(t, "second.xml", second)
			s.checkAccepted(t, res, second, "EXP/2")
			// Every function still holds the dead token in memory. The send function meets the
			// 401 first: it drops the token and goes back to Authenticate once, then refreshes
			// it and sends. The poll function meets its own 401, drops its copy (the state
			// already holds the refreshed token, which it adopts) and is retried.
			e := res.Execution
			wantStates(t, e, "Init "+pathTokenReady+"SendInvoice ReauthenticateOnce CountReauthentication "+pathTokenReady+"SendInvoice "+pathPoll+"Accepted ")
			wantCaught(t, e, localrun.Caught{State: "SendInvoice", Error: "AuthFailedError", Next: "ReauthenticateOnce"})
			if want := []localrun.Retry{{State: "PollInvoice", Attempt: 1}}; !slices.Equal(e.Retries, want) {
				t.Errorf("retries %v, want %v", e.Retries, want)
			}
			m := s.Metrics()
			if m.KSeFLogins != 1 {
				t.Errorf("%d KSeF logins, want 1: the expired access token must be refreshed, not replaced by a login", m.KSeFLogins)
			}
			if n := requests(m, "POST", refreshPath) - requests(before, "POST", refreshPath); n != 1 {
				t.Errorf("%d access token refreshes after the expiry, want exactly 1", n)
			}
			reqs := s.emulatorRequests(t)
			if n, k := countStatus(reqs, "POST", sendInvoicePath, 401), countStatus(reqs, "GET", invoiceStatusPath, 401); n != 1 || k != 1 {
				t.Errorf("401 answers: %d to sending, %d to status calls; want 1 and 1", n, k)
			}
			if m.KSeFSessions != 1 {
				t.Errorf("%d sessions opened, want 1: the session outlives the access token", m.KSeFSessions)
			}
		})
	}
}

// maxInProcessRetryAfter is the longest Retry-After the functions' KSeF client waits for in
// process (internal/lambdaenv); longer waits are handed to the state machine.
const maxInProcessRetryAfter = 5 * time.Second

func TestRateLimited(t *testing.T) {
	s := startStack(t, stackOptions{})

	t.Run("long Retry-After: the state machine waits", func(t *testing.T) {
		const retryAfter = 8 // seconds, longer than maxInProcessRetryAfter
		s.admin(t, "POST", "/admin/faults", fault{Kind: "rateLimit", Method: "POST", Path: sendInvoicePath, RetryAfter: fmt.Sprintf("%ds", retryAfter), Count: 1}, nil)
		body := invoiceNumbered(t, "RATE/1")
		res := s.send(t, "rate-long.xml", body)
		s.checkAccepted(t, res, body, "RATE/1")
		e := res.Execution
		wantStates(t, e, "Init "+pathLogin+"SendInvoice SendThrottled ParseThrottleReason ThrottleLimit ThrottleWait ResumeAfterThrottle SendInvoice "+pathPoll+"Accepted ")
		wantCaught(t, e, localrun.Caught{State: "SendInvoice", Error: "RateLimitedError", Next: "SendThrottled"})
		var throttle []localrun.WaitEntry
		for _, w := range e.Waits {
			if w.State == "ThrottleWait" {
				throttle = append(throttle, w)
			}
		}
		// KSeF's Retry-After plus up to as long again at random (flow.ThrottleWait), so that
		// executions turned away together do not come back together.
		if len(throttle) != 1 || throttle[0].Seconds < retryAfter || throttle[0].Seconds > 2*retryAfter {
			t.Errorf("throttle waits %v, want one ThrottleWait of %d to %d s (KSeF's Retry-After and the jitter)", throttle, retryAfter, 2*retryAfter)
		}
		reqs := s.emulatorRequests(t)
		if n, k := countStatus(reqs, "POST", sendInvoicePath, 429), countStatus(reqs, "POST", sendInvoicePath, 202); n != 1 || k != 1 {
			t.Errorf("invoice sends answered 429: %d, 202: %d; want 1 and 1", n, k)
		}
		m := s.Metrics()
		if m.KSeFSessions != 1 {
			t.Errorf("%d sessions opened, want 1: the throttled send reuses the session", m.KSeFSessions)
		}
		if got := m.Functions[localrun.FunctionSend]; got.Invocations != 2 || got.FunctionErrors != 1 {
			t.Errorf("send function: %+v, want 2 invocations, 1 function error (the 429)", got)
		}
	})

	t.Run("short Retry-After: the client waits", func(t *testing.T) {
		s.admin(t, "POST", "/admin/faults", fault{Kind: "rateLimit", Method: "POST", Path: sendInvoicePath, RetryAfter: "1s", Count: 1}, nil)
		before, reqsBefore := s.Metrics(), s.emulatorRequests(t)
		body := invoiceNumbered(t, "RATE/2")
		res := s.send(t, "rate-short.xml", body)
		s.checkAccepted(t, res, body, "RATE/2")
		e := res.Execution
		wantStates(t, e, "Init "+pathTokenReady+"SendInvoice "+pathPoll+"Accepted ")
		if len(e.Caught) != 0 || len(e.Retries) != 0 {
			t.Errorf("caught %v, retries %v; want none: the client waits out a short Retry-After itself", e.Caught, e.Retries)
		}
		reqs := s.emulatorRequests(t)
		if n := countStatus(reqs, "POST", sendInvoicePath, 429) - countStatus(reqsBefore, "POST", sendInvoicePath, 429); n != 1 {
			t.Errorf("%d new 429 answers to sending, want 1", n)
		}
		m := s.Metrics()
		if n := requests(m, "POST", sendInvoicePath) - requests(before, "POST", sendInvoicePath); n != 2 {
			t.Errorf("%d invoice sends, want 2 (the 429, then the accepted one)", n)
		}
		if n := m.Functions[localrun.FunctionSend].FunctionErrors - before.Functions[localrun.FunctionSend].FunctionErrors; n != 0 {
			t.Errorf("%d send function errors, want 0", n)
		}
		if busy := m.Functions[localrun.FunctionSend].Busy - before.Functions[localrun.FunctionSend].Busy; busy < time.Second || busy > maxInProcessRetryAfter {
			t.Errorf("the send function was busy %v, want the Retry-After of 1s (and less than %v)", busy, maxInProcessRetryAfter)
		}
	})
}

func TestTransientStatusErrors(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.admin(t, "POST", "/admin/faults", fault{Kind: "httpError", Method: "GET", Path: invoiceStatusPath, Status: 503, Count: 2}, nil)
	body := sample(t)
	res := s.send(t, sampleName, body)
	s.checkAccepted(t, res, body, sampleNumber)
	e := res.Execution
	wantStates(t, e, "Init "+pathLogin+"SendInvoice "+pathPoll+"Accepted ")
	// A status GET is safe to repeat: the client retries it in process.
	if len(e.Retries) != 0 || len(e.Caught) != 0 {
		t.Errorf("retries %v, caught %v; want none: the client retries an idempotent GET itself", e.Retries, e.Caught)
	}
	reqs := s.emulatorRequests(t)
	if n := countStatus(reqs, "GET", invoiceStatusPath, 503); n != 2 {
		t.Errorf("%d status calls answered 503, want 2", n)
	}
	wantFunctions(t, s.Metrics(), map[string]int{localrun.FunctionChallenge: 2, localrun.FunctionSend: 1, localrun.FunctionPoll: -2}, nil)
}

func TestSessionOpenUnavailable(t *testing.T) {
	s := startStack(t, stackOptions{})
	s.admin(t, "POST", "/admin/faults", fault{Kind: "httpError", Method: "POST", Path: openSessionPath, Status: 503, Count: 1}, nil)
	body := sample(t)
	res := s.send(t, sampleName, body)
	s.checkAccepted(t, res, body, sampleNumber)
	e := res.Execution
	// POST /sessions/online may have opened a session before it failed: the client does not
	// repeat it, the state machine retries the whole send.
	wantStates(t, e, "Init "+pathLogin+"SendInvoice "+pathPoll+"Accepted ")
	if want := []localrun.Retry{{State: "SendInvoice", Attempt: 1}}; !slices.Equal(e.Retries, want) {
		t.Errorf("retries %v, want %v", e.Retries, want)
	}
	if e.StateTransitions != len(e.States)+len(e.Retries) {
		t.Errorf("%d state transitions, want %d (states entered + retries)", e.StateTransitions, len(e.States)+len(e.Retries))
	}
	reqs := s.emulatorRequests(t)
	if n, k := countStatus(reqs, "POST", openSessionPath, 503), countStatus(reqs, "POST", openSessionPath, 201); n != 1 || k != 1 {
		t.Errorf("session opens answered 503: %d, 201: %d; want 1 and 1", n, k)
	}
	m := s.Metrics()
	if n := requests(m, "POST", sendInvoicePath); n != 1 {
		t.Errorf("%d invoice sends, want 1", n)
	}
	wantFunctions(t, m, map[string]int{localrun.FunctionSend: 2}, map[string]int{localrun.FunctionSend: 1})
}

func TestDuplicate(t *testing.T) {
	s := startStack(t, stackOptions{})
	body := sample(t)
	first := s.send(t, "first.xml", body)
	orig := s.checkAccepted(t, first, body, sampleNumber)

	// The same invoice under another key: KSeF answers 440 with the original's KSeF number.
	res := s.send(t, "again.xml", body)
	wantStatus(t, res, localrun.StatusSucceeded, "")
	wantStates(t, res.Execution, "Init "+pathTokenReady+"SendInvoice "+pathPoll+"Reconciled ")
	r := s.checkResult(t, res, body, sampleNumber, "duplicate")
	if r.KSeFNumber != orig.KSeFNumber || r.OriginalSessionReferenceNumber != orig.SessionReferenceNumber {
		t.Errorf("duplicate result ksefNumber %s originalSessionReferenceNumber %s, want the original's %s %s",
			r.KSeFNumber, r.OriginalSessionReferenceNumber, orig.KSeFNumber, orig.SessionReferenceNumber)
	}
	if r.StatusCode != 440 || r.InvoiceReferenceNumber == orig.InvoiceReferenceNumber {
		t.Errorf("duplicate result statusCode %d invoiceReferenceNumber %s, want 440 and a reference of its own", r.StatusCode, r.InvoiceReferenceNumber)
	}
	// The UPO stored with the duplicate is the original's.
	checkUPO(t, res.UPO, upoWant{nip: s.nip, ksefNumber: orig.KSeFNumber, invoiceNumber: sampleNumber, hash: sha256Base64(body), session: orig.SessionReferenceNumber})
	if first, err := s.Object(t.Context(), first.ResultKey); err != nil || !bytes.Contains(first, []byte(`"status": "accepted"`)) {
		t.Errorf("the first invoice's result changed (%v)", err)
	}
	m := s.Metrics()
	if m.KSeFLogins != 1 || m.KSeFSessions != 1 || requests(m, "POST", sendInvoicePath) != 2 {
		t.Errorf("%d logins, %d sessions, %d sends; want 1, 1, 2", m.KSeFLogins, m.KSeFSessions, requests(m, "POST", sendInvoicePath))
	}
}

// TestDuplicateOfAnotherInvoice: KSeF answers 440 to an invoice number already used, whatever
// the content. Other content under the number is not in KSeF: the execution fails rejected, and
// no result or UPO says otherwise.
func TestDuplicateOfAnotherInvoice(t *testing.T) {
	s := startStack(t, stackOptions{})
	body := invoiceNumbered(t, "DUP/2")
	orig := s.checkAccepted(t, s.send(t, "first.xml", body), body, "DUP/2")

	const item = "<P_7>wniesienie sprzętu</P_7>"
	if bytes.Count(body, []byte(item)) != 1 {
		t.Fatalf("the sample does not hold %s once", item)
	}
	other := bytes.Replace(body, []byte(item), []byte("<P_7>wniesienie i montaż sprzętu</P_7>"), 1)
	res := s.send(t, "other.xml", other)
	r := s.checkFailure(t, res, other, "RejectedError", "rejected")
	wantStates(t, res.Execution, "Init "+pathTokenReady+"SendInvoice "+pathPollFails+"RecordFailure Failed ")
	want := "invoice number already used by KSeF number " + orig.KSeFNumber + " for a different invoice"
	if r.Reason.Code != 440 || r.Reason.Stage != "ksef" || !strings.HasPrefix(r.Reason.Message, want) || len(r.Reason.Details) == 0 {
		t.Errorf("report reason %+v, want 440: %q with KSeF's details", r.Reason, want)
	}
	if !strings.Contains(r.Reason.Message, sha256Base64(other)) {
		t.Errorf("report reason %q does not name this invoice's hash", r.Reason.Message)
	}
	wantCaught(t, res.Execution, localrun.Caught{State: "PollInvoice", Error: "RejectedError", Next: "RecordFailure"})
	m := s.Metrics()
	if m.KSeFSessions != 1 || requests(m, "POST", sendInvoicePath) != 2 {
		t.Errorf("%d sessions, %d sends; want 1, 2", m.KSeFSessions, requests(m, "POST", sendInvoicePath))
	}
}

func TestSessionExpired(t *testing.T) {
	s := startStack(t, stackOptions{})
	firstBody := invoiceNumbered(t, "SES/1")
	first := s.checkAccepted(t, s.send(t, "first.xml", firstBody), firstBody, "SES/1")

	var out struct {
		Expired int `json:"expired"`
	}
	s.admin(t, "POST", "/admin/expire-sessions", map[string]string{"nip": s.nip}, &out)
	if out.Expired != 1 {
		t.Fatalf("the emulator ended %d sessions, want 1", out.Expired)
	}

	body := invoiceNumbered(t, "SES/2")
	res := s.send(t, "second.xml", body)
	r := s.checkAccepted(t, res, body, "SES/2")
	// The send function meets 21180 in the stored session, opens another and sends again, all
	// in one invocation.
	wantStates(t, res.Execution, "Init "+pathTokenReady+"SendInvoice "+pathPoll+"Accepted ")
	if len(res.Execution.Retries) != 0 || len(res.Execution.Caught) != 0 {
		t.Errorf("retries %v, caught %v; want none", res.Execution.Retries, res.Execution.Caught)
	}
	if r.SessionReferenceNumber == first.SessionReferenceNumber {
		t.Errorf("the second invoice went to the expired session %s", r.SessionReferenceNumber)
	}
	reqs := s.emulatorRequests(t)
	if n, k := countStatus(reqs, "POST", sendInvoicePath, 400), countStatus(reqs, "POST", openSessionPath, 201); n != 1 || k != 2 {
		t.Errorf("invoice sends answered 400: %d, sessions opened: %d; want 1 and 2", n, k)
	}
	replaced := false
	for _, rec := range s.functionLog(t, localrun.FunctionSend) {
		msg, _ := rec["message"].(string)
		errText, _ := rec["error"].(string)
		if strings.HasPrefix(msg, "online session no longer takes invoices") && strings.Contains(errText, "21180") &&
			rec["sessionReferenceNumber"] == first.SessionReferenceNumber {
			replaced = true
		}
	}
	if !replaced {
		t.Errorf("the send function did not log replacing session %s after exception 21180", first.SessionReferenceNumber)
	}
	if st := s.state(t); st.Session == nil || st.Session.Handle == nil || st.Session.Handle.ReferenceNumber != r.SessionReferenceNumber {
		t.Errorf("the state secret does not hold the new session %s", r.SessionReferenceNumber)
	}
	wantFunctions(t, s.Metrics(), map[string]int{localrun.FunctionSend: 2}, nil)
}

func TestConcurrentInvoices(t *testing.T) {
	const n = 10
	s := startStack(t, stackOptions{instances: 2})
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = invoiceNumbered(t, fmt.Sprintf("CONC/%02d", i+1))
	}
	results := make([]*localrun.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i], errs[i] = s.trySend(t.Context(), fmt.Sprintf("conc-%02d.xml", i+1), bodies[i])
		})
	}
	wg.Wait()
	numbers := map[string]bool{}
	for i, res := range results {
		if errs[i] != nil {
			t.Errorf("invoice %d: %v", i+1, errs[i])
			continue
		}
		r := s.checkAccepted(t, res, bodies[i], fmt.Sprintf("CONC/%02d", i+1))
		numbers[r.KSeFNumber] = true
	}
	if len(numbers) != n {
		t.Errorf("%d distinct KSeF numbers, want %d", len(numbers), n)
	}
	m := s.Metrics()
	reqs := s.emulatorRequests(t)
	opened, closed := countStatus(reqs, "POST", openSessionPath, 201), countStatus(reqs, "POST", "/sessions/online/*/close", 204)
	t.Logf("%d invoices at once, 2 instances per function: %d KSeF login, %d sessions opened (%d closed again), %d Secrets Manager writes, %d reads, %.1f state transitions per invoice",
		n, m.KSeFLogins, opened, closed, m.SecretsWrites, m.SecretsReads, float64(m.StateTransitions)/n)
	if m.KSeFLogins != 1 {
		t.Errorf("%d KSeF logins, want 1: concurrent executions must share one login", m.KSeFLogins)
	}
	if opened > 2 || m.KSeFSessions > 2 {
		t.Errorf("%d sessions opened (%d requests), want at most 2: one per send instance racing", opened, m.KSeFSessions)
	}
	if opened-closed != 1 {
		t.Errorf("%d sessions opened, %d closed: want exactly one left open (the losers of the race close theirs)", opened, closed)
	}
}

// TestRevokedAuthentication: the NIP's authentication is revoked in KSeF (as when its user ends
// it in the KSeF portal) and its access token expires, while every function still holds the
// token in memory and believes it valid. The refresh is refused, so the pipeline must log in
// again, once, and send the invoice.
func TestRevokedAuthentication(t *testing.T) {
	s := startStack(t, stackOptions{})
	first := invoiceNumbered(t, "REV/1")
	s.checkAccepted(t, s.send(t, "first.xml", first), first, "REV/1")

	s.revokeAuthentication(t)
	var out struct {
		Expired int `json:"expired"`
	}
	s.admin(t, "POST", "/admin/expire-access-tokens", map[string]string{"nip": s.nip}, &out)
	before, reqsBefore := s.Metrics(), s.emulatorRequests(t)

	body := invoiceNumbered(t, "REV/2")
	res := s.send(t, "second.xml", body)
	s.checkAccepted(t, res, body, "REV/2")
	// The send function meets the 401 and drops the token; back in Authenticate the challenge
	// function reads the state instead of trusting its memory, finds the refresh refused and
	// logs in; the polls follow that login from the state too, so no poll meets a 401.
	e := res.Execution
	wantStates(t, e, "Init "+pathTokenReady+"SendInvoice ReauthenticateOnce CountReauthentication "+pathLogin+"SendInvoice "+pathPoll+"Accepted ")
	wantCaught(t, e, localrun.Caught{State: "SendInvoice", Error: "AuthFailedError", Next: "ReauthenticateOnce"})
	if len(e.Retries) != 0 {
		t.Errorf("retries %v, want none", e.Retries)
	}
	m := s.Metrics()
	if n := m.KSeFLogins - before.KSeFLogins; n != 1 {
		t.Errorf("%d new KSeF logins, want 1", n)
	}
	reqs := s.emulatorRequests(t)
	if n := countStatus(reqs, "POST", refreshPath, 400) - countStatus(reqsBefore, "POST", refreshPath, 400); n != 1 {
		t.Errorf("%d refreshes refused, want 1: the revoked refresh token is tried once, then forgotten", n)
	}
	if n := requests(m, "POST", refreshPath) - requests(before, "POST", refreshPath); n != 1 {
		t.Errorf("%d refreshes, want only the refused one", n)
	}
	if n, k := countStatus(reqs, "POST", sendInvoicePath, 401)-countStatus(reqsBefore, "POST", sendInvoicePath, 401),
		countStatus(reqs, "GET", invoiceStatusPath, 401); n != 1 || k != 0 {
		t.Errorf("401 answers: %d to sending, %d to status calls; want 1 and 0", n, k)
	}
}

// revokeAuthentication ends the NIP's current authentication in KSeF (DELETE
// /auth/sessions/current with its access token), after which KSeF refuses its refresh token.
func (s *stack) revokeAuthentication(t *testing.T) {
	t.Helper()
	st := s.state(t)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, s.EmulatorURL()+"/auth/sessions/current", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+st.AccessToken.Token.Reveal())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("revoke the authentication: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoke the authentication: HTTP %d, want 204", resp.StatusCode)
	}
}
