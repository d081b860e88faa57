package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const (
	nip          = "9999999999"
	stateSecret  = "ksef/9999999999/session"
	bucket       = "ksef-invoices-123456789012"
	resultPrefix = "results/"
	key          = "inbox/2026/02/FA_3_Przyklad_1.xml"
	authRef      = "20260302-AU-1A2B3C4D5E-6F7A8B9C0D-01"
	sessionRef   = "20260302-SO-2C3E6C8000-A1B2C3D4E5-7F"
	invoiceRef   = "20260302-EE-2C3E6C8000-1A2B3C4D5E-11"
	ksefNumber   = "9999999999-20260302-0100001AF629-AF"
	origKSeF     = "9999999999-20260215-010080DD2B5E-26"
	origSession  = "20260215-SO-2C3E6C8000-99AABBCCDD-01"
	upoURL       = "https://ksef-upo.blob.core.windows.net/upo/20260302-EE.xml?sv=2025&sig=SIGNATURE"
	qrBaseURL    = "https://qr-test.ksef.mf.gov.pl"

	// The QR code I link of the official sample FA_3_Przyklad_1.xml on TEST (PROTOCOL.md,
	// self-computed test vectors).
	sampleHash = "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA="
	sampleQR   = "https://qr-test.ksef.mf.gov.pl/invoice/9999999999/15-02-2026/X-wQflQVyRs1fImlI-xDPnWk1V37hys4O1lkx9iJbSA"
)

// The fixtures' secrets: none of them may appear in a log line, a returned error or an output.
const (
	authToken    = "SECRET-authentication-token-41c2"
	accessToken  = "SECRET-access-token-93d0"
	refreshToken = "SECRET-refresh-token-5a77"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

var _ secrets.API = (*secretstest.SecretsManager)(nil)

// fakeS3 records the objects written, in order.
type fakeS3 struct {
	puts []put
	err  error
}

type put struct {
	bucket, key, contentType string
	body                     []byte
}

func (f *fakeS3) PutObject(_ context.Context, in *s3.PutObjectInput, _ ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	b, err := io.ReadAll(in.Body)
	if err != nil {
		return nil, err
	}
	f.puts = append(f.puts, put{aws.ToString(in.Bucket), aws.ToString(in.Key), aws.ToString(in.ContentType), b})
	return &s3.PutObjectOutput{}, nil
}

func (f *fakeS3) keys() []string {
	var ks []string
	for _, p := range f.puts {
		ks = append(ks, p.key)
	}
	return ks
}

func (f *fakeS3) object(t *testing.T, key string) put {
	t.Helper()
	for _, p := range f.puts {
		if p.key == key {
			return p
		}
	}
	t.Fatalf("no object %s written; written: %v", key, f.keys())
	return put{}
}

// fakeKSeF is the KSeF client seen through statusClient. Each call is recorded; a call
// without a behaviour set is a test failure.
type fakeKSeF struct {
	t             *testing.T
	calls         []string
	refresh       func(rt ksef.Secret) (*ksef.Token, error)
	authStatus    func(ref string, at ksef.Secret) (*ksef.AuthStatus, error)
	invoiceStatus func(sessionRef, invoiceRef string) (*ksef.InvoiceStatus, error)
	upoByNumber   func(sessionRef, ksefNumber string) (*ksef.Document, error)
	download      func(url string) (*ksef.Document, error)
}

func (f *fakeKSeF) called(name string, set bool) error {
	f.calls = append(f.calls, name)
	if !set {
		f.t.Errorf("unexpected call to %s", name)
		return errors.New("unexpected call")
	}
	return nil
}

func (f *fakeKSeF) RefreshAccessToken(_ context.Context, rt ksef.Secret) (*ksef.Token, error) {
	if err := f.called("RefreshAccessToken", f.refresh != nil); err != nil {
		return nil, err
	}
	return f.refresh(rt)
}

func (f *fakeKSeF) AuthStatus(_ context.Context, ref string, at ksef.Secret) (*ksef.AuthStatus, error) {
	if err := f.called("AuthStatus", f.authStatus != nil); err != nil {
		return nil, err
	}
	return f.authStatus(ref, at)
}

func (f *fakeKSeF) InvoiceStatus(_ context.Context, sessionRef, invoiceRef string) (*ksef.InvoiceStatus, error) {
	if err := f.called("InvoiceStatus", f.invoiceStatus != nil); err != nil {
		return nil, err
	}
	return f.invoiceStatus(sessionRef, invoiceRef)
}

func (f *fakeKSeF) InvoiceUPOByKSeFNumber(_ context.Context, sessionRef, number string) (*ksef.Document, error) {
	if err := f.called("InvoiceUPOByKSeFNumber", f.upoByNumber != nil); err != nil {
		return nil, err
	}
	return f.upoByNumber(sessionRef, number)
}

func (f *fakeKSeF) Download(_ context.Context, url string) (*ksef.Document, error) {
	if err := f.called("Download", f.download != nil); err != nil {
		return nil, err
	}
	return f.download(url)
}

func (f *fakeKSeF) QRBaseURL() string { return qrBaseURL }

func apiError(op string, status, code int) *ksef.APIError {
	e := &ksef.APIError{Op: op, StatusCode: status, Title: "KSeF error"}
	if code != 0 {
		e.Details = []ksef.ExceptionDetail{{Code: code, Description: "opis błędu"}}
	}
	return e
}

type env struct {
	sm   *secretstest.SecretsManager
	s3   *fakeS3
	ksef *fakeKSeF
	logs bytes.Buffer
	h    *handler
}

// state decodes the session state stored in e.sm; the zero State if there is none.
func (e *env) state(t *testing.T) secrets.State {
	t.Helper()
	var st secrets.State
	e.sm.DecodeJSON(t, stateSecret, &st)
	return st
}

func newEnv(t *testing.T) *env {
	e := &env{sm: secretstest.New(), s3: &fakeS3{}}
	e.ksef = &fakeKSeF{t: t}
	log := slog.New(slog.NewJSONHandler(&e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := func() time.Time { return t0 }
	store := secrets.New(e.sm, secrets.WithClock(now), secrets.WithLogger(log))
	e.h = &handler{
		objects:      e.s3,
		store:        store,
		clients:      func(context.Context, string) (statusClient, error) { return e.ksef, nil },
		bucket:       bucket,
		resultPrefix: resultPrefix,
		now:          now,
		log:          log,
	}
	return e
}

// assertNoSecrets fails if a token shows in the logs, the error, the output or an object
// written.
func assertNoSecrets(t *testing.T, e *env, out any, err error) {
	t.Helper()
	b, jerr := json.Marshal(out)
	if jerr != nil {
		t.Fatal(jerr)
	}
	texts := map[string]string{"logs": e.logs.String(), "output": string(b)}
	if err != nil {
		texts["error"] = err.Error()
	}
	for _, p := range e.s3.puts {
		texts[p.key] = string(p.body)
	}
	for where, text := range texts {
		for _, s := range []string{authToken, accessToken, refreshToken} {
			if strings.Contains(text, s) {
				t.Errorf("%s reveals a secret (%.12s...): %s", where, s, text)
			}
		}
	}
}

func checkError(t *testing.T, err error, wantType, wantStage string, wantCode int) flow.Reason {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want a %s", wantType)
	}
	if et := flow.ErrorType(err); et != wantType {
		t.Errorf("errorType %q (%v), want %q", et, err, wantType)
	}
	r, ok := flow.ReasonOf(err)
	if !ok || r.Stage != wantStage || r.Code != wantCode {
		t.Errorf("reason %+v, want stage %s and code %d", r, wantStage, wantCode)
	}
	return r
}

func TestHandleAuth(t *testing.T) {
	tokens := &secrets.State{
		AccessToken:  ksef.Token{Token: accessToken, ValidUntil: t0.Add(15 * time.Minute)},
		RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(7 * 24 * time.Hour)},
	}
	login := func(ref string) *secrets.State {
		p := &secrets.PendingAuth{StartedAt: t0.Add(-20 * time.Second), Method: secrets.AuthXAdES}
		if ref != "" {
			p.ReferenceNumber = ref
			p.AuthenticationToken = ksef.Token{Token: authToken, ValidUntil: t0.Add(9 * time.Minute)}
		}
		return &secrets.State{PendingAuth: p}
	}
	status := func(code int, details ...string) func(string, ksef.Secret) (*ksef.AuthStatus, error) {
		return func(ref string, at ksef.Secret) (*ksef.AuthStatus, error) {
			if ref != authRef || at != authToken {
				return nil, fmt.Errorf("status of %s asked with another token than the stored one", ref)
			}
			return &ksef.AuthStatus{Status: ksef.Status{Code: code, Description: fmt.Sprintf("status %d", code), Details: details}}, nil
		}
	}
	failing := func(err error) func(string, ksef.Secret) (*ksef.AuthStatus, error) {
		return func(string, ksef.Secret) (*ksef.AuthStatus, error) { return nil, err }
	}
	in := flow.PollInput{Kind: flow.PollAuth, NIP: nip, ReferenceNumber: authRef, Attempt: 6}
	pending := func(code int) flow.AuthState {
		return flow.AuthState{ReferenceNumber: authRef, Method: "xades", WaitSeconds: 1, Attempt: 7, StatusCode: code}
	}
	loginKept := func(t *testing.T, e *env) {
		if p := e.state(t).PendingAuth; p == nil || p.ReferenceNumber != authRef {
			t.Errorf("pending login %+v, want %s kept", p, authRef)
		}
	}
	loginDropped := func(t *testing.T, e *env) {
		if p := e.state(t).PendingAuth; p != nil {
			t.Errorf("pending login %+v, want it dropped", p)
		}
	}

	tests := []struct {
		name      string
		state     *secrets.State
		status    func(string, ksef.Secret) (*ksef.AuthStatus, error)
		want      flow.AuthState
		wantErr   string
		wantCode  int
		wantCalls []string
		check     func(t *testing.T, e *env)
	}{
		{
			name:  "access token stored meanwhile: ready",
			state: tokens,
			want:  flow.AuthState{Ready: true, WaitSeconds: 1, Attempt: 7, StatusCode: 200},
		},
		{
			name: "no login in progress: status 0",
			want: flow.AuthState{WaitSeconds: 1, Attempt: 7, StatusCode: 0},
		},
		{
			name:  "claim without reference: status 100",
			state: login(""),
			want:  flow.AuthState{WaitSeconds: 1, Attempt: 7, StatusCode: 100},
		},
		{
			name:      "status 100: keep polling",
			state:     login(authRef),
			status:    status(100),
			want:      pending(100),
			wantCalls: []string{"AuthStatus"},
			check:     loginKept,
		},
		{
			name:      "status 200: redeem next",
			state:     login(authRef),
			status:    status(200),
			want:      pending(200),
			wantCalls: []string{"AuthStatus"},
			check:     loginKept,
		},
		{
			name:      "status 450: AuthFailedError, login dropped",
			state:     login(authRef),
			status:    status(450, "Nieprawidłowy podpis."),
			wantErr:   "AuthFailedError",
			wantCode:  450,
			wantCalls: []string{"AuthStatus"},
			check:     loginDropped,
		},
		{
			name:      "401 on status: login dropped, status 0",
			state:     login(authRef),
			status:    failing(apiError("AuthStatus", 401, 0)),
			want:      pending(0),
			wantCalls: []string{"AuthStatus"},
			check:     loginDropped,
		},
		{
			name:      "410 on status: login dropped, status 0",
			state:     login(authRef),
			status:    failing(apiError("AuthStatus", 410, 0)),
			want:      pending(0),
			wantCalls: []string{"AuthStatus"},
			check:     loginDropped,
		},
		{
			name:      "429 on status: RateLimitedError, login kept",
			state:     login(authRef),
			status:    failing(apiError("AuthStatus", 429, 0)),
			wantErr:   "RateLimitedError",
			wantCode:  429,
			wantCalls: []string{"AuthStatus"},
			check:     loginKept,
		},
		{
			name:      "503 on status: RetryableError, login kept",
			state:     login(authRef),
			status:    failing(apiError("AuthStatus", 503, 0)),
			wantErr:   "RetryableError",
			wantCode:  503,
			wantCalls: []string{"AuthStatus"},
			check:     loginKept,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.state != nil {
				e.sm.SetJSON(t, stateSecret, tt.state)
			}
			e.ksef.authStatus = tt.status

			out, err := e.h.Handle(t.Context(), in)

			if tt.wantErr != "" {
				r := checkError(t, err, tt.wantErr, map[bool]string{true: "auth", false: "poll"}[tt.wantErr == "AuthFailedError"], tt.wantCode)
				if tt.wantCode == 450 && !slices.Equal(r.Details, []string{"Nieprawidłowy podpis."}) {
					t.Errorf("reason details %q, want KSeF's", r.Details)
				}
				if out != nil {
					t.Errorf("output %+v with an error, want nil", out)
				}
			} else {
				if err != nil {
					t.Fatalf("Handle(%+v) error %v", in, err)
				}
				got, ok := out.(flow.AuthState)
				if !ok {
					t.Fatalf("output %T, want flow.AuthState", out)
				}
				if got != tt.want {
					t.Errorf("Handle(%+v) = %+v, want %+v", in, got, tt.want)
				}
			}
			if !reflect.DeepEqual(e.ksef.calls, tt.wantCalls) && (len(e.ksef.calls) > 0 || len(tt.wantCalls) > 0) {
				t.Errorf("KSeF calls %v, want %v", e.ksef.calls, tt.wantCalls)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
			if len(e.s3.puts) != 0 {
				t.Errorf("authentication poll wrote %v", e.s3.keys())
			}
			assertNoSecrets(t, e, out, err)
		})
	}
}

// TestHandleAuthReadsTheState: this environment still holds in memory an access token that KSeF
// refused; another execution has dropped it and started a login. The authentication poll must
// follow that login, not answer ready from memory.
func TestHandleAuthReadsTheState(t *testing.T) {
	e := newEnv(t)
	e.sm.SetJSON(t, stateSecret, secrets.State{
		AccessToken:  ksef.Token{Token: accessToken, ValidUntil: t0.Add(10 * time.Minute)},
		RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(7 * 24 * time.Hour)},
	})
	if _, err := e.h.store.AccessToken(t.Context(), nip, e.ksef); err != nil { // an earlier poll
		t.Fatal(err)
	}
	e.sm.SetJSON(t, stateSecret, secrets.State{PendingAuth: &secrets.PendingAuth{
		ReferenceNumber:     authRef,
		AuthenticationToken: ksef.Token{Token: authToken, ValidUntil: t0.Add(9 * time.Minute)},
		StartedAt:           t0.Add(-5 * time.Second),
		Method:              secrets.AuthToken,
	}})
	e.ksef.authStatus = func(ref string, at ksef.Secret) (*ksef.AuthStatus, error) {
		if ref != authRef || at != authToken {
			t.Errorf("status of %s, want %s with its authentication token", ref, authRef)
		}
		return &ksef.AuthStatus{Status: ksef.Status{Code: 100, Description: "Uwierzytelnianie w toku"}}, nil
	}

	out, err := e.h.Handle(t.Context(), flow.PollInput{Kind: flow.PollAuth, NIP: nip, Attempt: 1})

	want := flow.AuthState{ReferenceNumber: authRef, Method: "token", WaitSeconds: 1, Attempt: 2, StatusCode: 100}
	if err != nil || out != want {
		t.Errorf("Handle = %+v, %v; want %+v (the login followed)", out, err, want)
	}
	if !slices.Equal(e.ksef.calls, []string{"AuthStatus"}) {
		t.Errorf("KSeF calls %v, want [AuthStatus]", e.ksef.calls)
	}
	assertNoSecrets(t, e, out, err)
}

func submission() *flow.Submission {
	return &flow.Submission{
		SessionReferenceNumber: sessionRef,
		InvoiceReferenceNumber: invoiceRef,
		InvoiceHash:            sampleHash,
		InvoiceSize:            3387,
		InvoiceNumber:          "FV2026/02/150",
		IssueDate:              "2026-02-15",
		SentAt:                 t0.Add(-5 * time.Second),
		WaitSeconds:            1,
	}
}

func upoDoc(t *testing.T) *ksef.Document {
	t.Helper()
	b, ok := official.SampleUPOs()["upo-faktura-kontekst-id-nip.xml"]
	if !ok {
		t.Fatal("official sample UPO missing")
	}
	return &ksef.Document{Content: b, Hash: "dGhlLXVwby1oYXNo", HashVerified: true}
}

// otherHash is the hash of content other than the sample's (an empty file's).
const otherHash = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

// originalUPO is the UPO of the original of a 440 (origKSeF, in origSession) whose content
// has the given hash: the official invoice UPO sample with the original's values.
func originalUPO(t *testing.T, hash string) *ksef.Document {
	t.Helper()
	b := upoDoc(t).Content
	for _, r := range [][2]string{
		{"36950822-93-9D5A28BFDA-47C899773E-5C", origSession},
		{"5265877635-20250916-0200A0D6723E-C2", origKSeF},
		{"GZMGNVzs3krF6URKgvaw77OOeG3nJ+WGziT5xguliQ8=", hash},
	} {
		if bytes.Count(b, []byte(r[0])) != 1 {
			t.Fatalf("the sample UPO does not hold %s once", r[0])
		}
		b = bytes.Replace(b, []byte(r[0]), []byte(r[1]), 1)
	}
	return &ksef.Document{Content: b, Hash: "b3JpZ2luYWwtdXBv", HashVerified: true}
}

func TestHandleInvoicePending(t *testing.T) {
	// Quick at first, then slower up to a minute: attempt is the number of polls before this one
	// (the whole schedule: TestInvoiceWait).
	wantWaits := map[int]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 2, 5: 5, 19: 5, 20: 15, 40: 30, 59: 30, 60: 60, 599: 60}
	for _, code := range []int{100, 150} {
		for attempt, wait := range wantWaits {
			e := newEnv(t)
			e.ksef.invoiceStatus = func(s, i string) (*ksef.InvoiceStatus, error) {
				if s != sessionRef || i != invoiceRef {
					t.Errorf("status of %s/%s, want %s/%s", s, i, sessionRef, invoiceRef)
				}
				return &ksef.InvoiceStatus{Status: ksef.Status{Code: code, Description: "Przetwarzanie"}}, nil
			}
			in := flow.PollInput{Kind: flow.PollInvoice, NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key}, Submission: submission(), Attempt: attempt}
			out, err := e.h.Handle(t.Context(), in)
			want := flow.PollResult{Kind: "invoice", Outcome: "pending", StatusCode: code, StatusDescription: "Przetwarzanie", WaitSeconds: wait, Attempt: attempt + 1}
			if err != nil || out != want {
				t.Errorf("status %d, attempt %d: %+v, %v; want %+v", code, attempt, out, err, want)
			}
			if len(e.s3.puts) != 0 {
				t.Errorf("status %d wrote %v", code, e.s3.keys())
			}
		}
	}
}

func TestHandleInvoiceFinal(t *testing.T) {
	acquired := time.Date(2026, 3, 2, 10, 0, 3, 120_000_000, time.UTC)
	accepted := func(url string) func(string, string) (*ksef.InvoiceStatus, error) {
		return func(string, string) (*ksef.InvoiceStatus, error) {
			return &ksef.InvoiceStatus{
				KSeFNumber:           ksefNumber,
				ReferenceNumber:      invoiceRef,
				AcquisitionDate:      acquired,
				InvoicingDate:        t0.Add(-5 * time.Second),
				PermanentStorageDate: acquired.Add(time.Second),
				UPODownloadURL:       url,
				InvoicingMode:        "Online",
				Status:               ksef.Status{Code: 200, Description: "Sukces"},
			}, nil
		}
	}
	resultKey := resultPrefix + key + ".result.json"
	upoKey := resultPrefix + key + ".upo.xml"
	duplicateDetails := []string{"Duplikat faktury. Faktura o numerze KSeF: " + origKSeF + " została już prawidłowo przesłana do systemu w sesji: " + origSession}
	duplicate := func(string, string) (*ksef.InvoiceStatus, error) {
		return &ksef.InvoiceStatus{ReferenceNumber: invoiceRef, Status: ksef.Status{
			Code: 440, Description: "Duplikat faktury", Details: duplicateDetails,
			Extensions: map[string]string{"originalKsefNumber": origKSeF, "originalSessionReferenceNumber": origSession},
		}}, nil
	}

	tests := []struct {
		name       string
		status     func(string, string) (*ksef.InvoiceStatus, error)
		download   func(string) (*ksef.Document, error)
		byNumber   func(string, string) (*ksef.Document, error)
		putErr     error
		want       flow.PollResult
		wantErr    string
		wantCode   int
		wantReason string // the start of the error's reason message; KSeF's details with a 440
		wantCalls  []string
		wantPuts   []string
		check      func(t *testing.T, e *env)
	}{
		{
			name:   "200: UPO from the pre-signed link, then the result",
			status: accepted(upoURL),
			download: func(url string) (*ksef.Document, error) {
				if url != upoURL {
					return nil, fmt.Errorf("downloaded %s, want the pre-signed link", url)
				}
				return upoDoc(t), nil
			},
			want: flow.PollResult{Kind: "invoice", Outcome: "accepted", StatusCode: 200, StatusDescription: "Sukces", Attempt: 4,
				KSeFNumber: ksefNumber, AcquisitionDate: acquired, ResultKey: resultKey, UPOKey: upoKey},
			wantCalls: []string{"InvoiceStatus", "Download"},
			wantPuts:  []string{upoKey, resultKey},
			check: func(t *testing.T, e *env) {
				upo := e.s3.object(t, upoKey)
				if !bytes.Equal(upo.body, upoDoc(t).Content) || upo.contentType != "application/xml" || upo.bucket != bucket {
					t.Errorf("UPO object in %s (%s), %d bytes: want the downloaded UPO as application/xml in %s", upo.bucket, upo.contentType, len(upo.body), bucket)
				}
				res := e.s3.object(t, resultKey)
				if res.contentType != "application/json" {
					t.Errorf("result content type %s, want application/json", res.contentType)
				}
				var got map[string]any
				if err := json.Unmarshal(res.body, &got); err != nil {
					t.Fatalf("result is not JSON: %v\n%s", err, res.body)
				}
				want := map[string]any{
					"status":                 "accepted",
					"nip":                    nip,
					"ksefNumber":             ksefNumber,
					"invoiceNumber":          "FV2026/02/150",
					"issueDate":              "2026-02-15",
					"acquisitionDate":        "2026-03-02T10:00:03.12Z",
					"invoicingDate":          "2026-03-02T09:59:55Z",
					"permanentStorageDate":   "2026-03-02T10:00:04.12Z",
					"invoicingMode":          "Online",
					"sessionReferenceNumber": sessionRef,
					"invoiceReferenceNumber": invoiceRef,
					"invoiceHash":            sampleHash,
					"invoiceSize":            float64(3387),
					"invoice":                map[string]any{"bucket": bucket, "key": key, "versionId": "v1"},
					"upo":                    map[string]any{"key": upoKey, "hash": "dGhlLXVwby1oYXNo"},
					"qrCodeUrl":              sampleQR,
					"statusCode":             float64(200),
					"statusDescription":      "Sukces",
					"recordedAt":             "2026-03-02T10:00:00Z",
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("result JSON\n%s\nwant\n%v", res.body, want)
				}
			},
		},
		{
			name:   "200: pre-signed link failing, UPO from the API",
			status: accepted(upoURL),
			download: func(string) (*ksef.Document, error) {
				return nil, errors.New("ksef: Download: HTTP 403 AuthenticationFailed")
			},
			byNumber: func(s, n string) (*ksef.Document, error) {
				if s != sessionRef || n != ksefNumber {
					return nil, fmt.Errorf("UPO of %s in %s, want %s in %s", n, s, ksefNumber, sessionRef)
				}
				return upoDoc(t), nil
			},
			want: flow.PollResult{Kind: "invoice", Outcome: "accepted", StatusCode: 200, StatusDescription: "Sukces", Attempt: 4,
				KSeFNumber: ksefNumber, AcquisitionDate: acquired, ResultKey: resultKey, UPOKey: upoKey},
			wantCalls: []string{"InvoiceStatus", "Download", "InvoiceUPOByKSeFNumber"},
			wantPuts:  []string{upoKey, resultKey},
		},
		{
			name:     "200 without a link: UPO from the API",
			status:   accepted(""),
			byNumber: func(string, string) (*ksef.Document, error) { return upoDoc(t), nil },
			want: flow.PollResult{Kind: "invoice", Outcome: "accepted", StatusCode: 200, StatusDescription: "Sukces", Attempt: 4,
				KSeFNumber: ksefNumber, AcquisitionDate: acquired, ResultKey: resultKey, UPOKey: upoKey},
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
			wantPuts:  []string{upoKey, resultKey},
		},
		{
			name:   "200, UPO not generated yet (21178): pending, nothing written",
			status: accepted(""),
			byNumber: func(string, string) (*ksef.Document, error) {
				return nil, apiError("InvoiceUPOByKSeFNumber", 400, ksef.CodeUPONotFound)
			},
			want:      flow.PollResult{Kind: "invoice", Outcome: "pending", StatusCode: 200, StatusDescription: "Sukces", Attempt: 4, WaitSeconds: 2},
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name:      "200, UPO download failing: RetryableError, no result without its UPO",
			status:    accepted(""),
			byNumber:  func(string, string) (*ksef.Document, error) { return nil, apiError("InvoiceUPOByKSeFNumber", 502, 0) },
			wantErr:   "RetryableError",
			wantCode:  502,
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name:      "200, S3 failing: RetryableError",
			status:    accepted(""),
			byNumber:  func(string, string) (*ksef.Document, error) { return upoDoc(t), nil },
			putErr:    &smithy.GenericAPIError{Code: "SlowDown", Message: "Please reduce your request rate."},
			wantErr:   "RetryableError",
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name:   "440 of the same content: reconciled to the original KSeF number",
			status: duplicate,
			byNumber: func(s, n string) (*ksef.Document, error) {
				if s != origSession || n != origKSeF {
					return nil, fmt.Errorf("UPO of %s in %s, want the original's", n, s)
				}
				return originalUPO(t, sampleHash), nil
			},
			want: flow.PollResult{Kind: "invoice", Outcome: "duplicate", StatusCode: 440, StatusDescription: "Duplikat faktury", Attempt: 4,
				KSeFNumber: origKSeF, ResultKey: resultKey, UPOKey: upoKey},
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
			wantPuts:  []string{upoKey, resultKey},
			check: func(t *testing.T, e *env) {
				if upo := e.s3.object(t, upoKey); !bytes.Equal(upo.body, originalUPO(t, sampleHash).Content) || upo.contentType != "application/xml" {
					t.Errorf("UPO object (%s) is not the original's UPO", upo.contentType)
				}
				var got struct {
					Status, KSeFNumber, OriginalSessionReferenceNumber, QRCodeURL, InvoiceHash string
					StatusCode                                                                 int
					UPO                                                                        struct{ Key, Hash string }
				}
				if err := json.Unmarshal(e.s3.object(t, resultKey).body, &got); err != nil {
					t.Fatal(err)
				}
				if got.Status != "duplicate" || got.KSeFNumber != origKSeF || got.OriginalSessionReferenceNumber != origSession || got.InvoiceHash != sampleHash ||
					got.StatusCode != 440 || got.UPO.Key != upoKey || got.UPO.Hash != originalUPO(t, sampleHash).Hash || got.QRCodeURL != sampleQR {
					t.Errorf("duplicate result %+v", got)
				}
			},
		},
		{
			name:       "440 of other content: RejectedError, nothing written",
			status:     duplicate,
			byNumber:   func(string, string) (*ksef.Document, error) { return originalUPO(t, otherHash), nil },
			wantErr:    "RejectedError",
			wantCode:   440,
			wantReason: "invoice number already used by KSeF number " + origKSeF + " for a different invoice",
			wantCalls:  []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name:   "440, the original's UPO not generated yet: pending, nothing written",
			status: duplicate,
			byNumber: func(string, string) (*ksef.Document, error) {
				return nil, apiError("InvoiceUPOByKSeFNumber", 400, ksef.CodeUPONotFound)
			},
			want:      flow.PollResult{Kind: "invoice", Outcome: "pending", StatusCode: 440, StatusDescription: "Duplikat faktury", Attempt: 4, WaitSeconds: 2},
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name:   "440, the original's UPO not available: RejectedError, not reconciled",
			status: duplicate,
			byNumber: func(string, string) (*ksef.Document, error) {
				return nil, apiError("InvoiceUPOByKSeFNumber", 400, 21173)
			},
			wantErr:    "RejectedError",
			wantCode:   440,
			wantReason: "KSeF reported a duplicate of KSeF number " + origKSeF + " that could not be confirmed to be this invoice: the original's UPO is not available",
			wantCalls:  []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name:      "440, the original's UPO failing: RetryableError",
			status:    duplicate,
			byNumber:  func(string, string) (*ksef.Document, error) { return nil, apiError("InvoiceUPOByKSeFNumber", 503, 0) },
			wantErr:   "RetryableError",
			wantCode:  503,
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name:      "440, access token refused for the original's UPO: RetryableError",
			status:    duplicate,
			byNumber:  func(string, string) (*ksef.Document, error) { return nil, apiError("InvoiceUPOByKSeFNumber", 401, 0) },
			wantErr:   "RetryableError",
			wantCode:  401,
			wantCalls: []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"},
		},
		{
			name: "440 without the original KSeF number: RejectedError",
			status: func(string, string) (*ksef.InvoiceStatus, error) {
				return &ksef.InvoiceStatus{Status: ksef.Status{Code: 440, Description: "Duplikat faktury"}}, nil
			},
			wantErr:   "RejectedError",
			wantCode:  440,
			wantCalls: []string{"InvoiceStatus"},
		},
		{
			name: "450: RejectedError with KSeF's code and details",
			status: func(string, string) (*ksef.InvoiceStatus, error) {
				return &ksef.InvoiceStatus{Status: ksef.Status{Code: 450, Description: "Błąd weryfikacji semantyki dokumentu faktury",
					Details: []string{"Element P_13_1: wartość spoza zakresu.", "Element P_15: brak."}}}, nil
			},
			wantErr:   "RejectedError",
			wantCode:  450,
			wantCalls: []string{"InvoiceStatus"},
			check: func(t *testing.T, e *env) {
				if len(e.s3.puts) != 0 {
					t.Errorf("a rejection wrote %v; the failure report is RecordFailure's", e.s3.keys())
				}
			},
		},
		{
			name:      "429 on status: RateLimitedError",
			status:    func(string, string) (*ksef.InvoiceStatus, error) { return nil, apiError("InvoiceStatus", 429, 0) },
			wantErr:   "RateLimitedError",
			wantCode:  429,
			wantCalls: []string{"InvoiceStatus"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.ksef.invoiceStatus, e.ksef.download, e.ksef.upoByNumber = tt.status, tt.download, tt.byNumber
			e.s3.err = tt.putErr
			in := flow.PollInput{Kind: flow.PollInvoice, NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key, VersionID: "v1"}, Submission: submission(), Attempt: 3}

			out, err := e.h.Handle(t.Context(), in)

			if tt.wantErr != "" {
				r := checkError(t, err, tt.wantErr, map[bool]string{true: "ksef", false: "poll"}[tt.wantErr == "RejectedError"], tt.wantCode)
				if tt.wantCode == 450 && !slices.Equal(r.Details, []string{"Element P_13_1: wartość spoza zakresu.", "Element P_15: brak."}) {
					t.Errorf("reason details %q, want KSeF's", r.Details)
				}
				if tt.wantReason != "" && (!strings.HasPrefix(r.Message, tt.wantReason) || !slices.Equal(r.Details, duplicateDetails)) {
					t.Errorf("reason %+v,\nwant message %q... with KSeF's details", r, tt.wantReason)
				}
			} else {
				if err != nil {
					t.Fatalf("Handle error %v", err)
				}
				if got, ok := out.(flow.PollResult); !ok || got != tt.want {
					t.Errorf("Handle = %#v,\nwant %#v", out, tt.want)
				}
			}
			if !slices.Equal(e.ksef.calls, tt.wantCalls) {
				t.Errorf("KSeF calls %v, want %v", e.ksef.calls, tt.wantCalls)
			}
			if !slices.Equal(e.s3.keys(), tt.wantPuts) {
				t.Errorf("objects written %v, want %v (in this order)", e.s3.keys(), tt.wantPuts)
			}
			for _, p := range e.s3.puts {
				if p.bucket != bucket || !strings.HasPrefix(p.key, resultPrefix) {
					t.Errorf("wrote s3://%s/%s, want under s3://%s/%s", p.bucket, p.key, bucket, resultPrefix)
				}
			}
			if tt.check != nil {
				tt.check(t, e)
			}
			assertNoSecrets(t, e, out, err)
		})
	}
}

// TestHandleInvoiceRefusedAccessToken: KSeF refuses an access token that is valid by the
// function's clock (its authentication revoked, or expired by KSeF's clock first). The poll drops
// it, so that the retry the state machine makes refreshes it, and keeps a token that another
// execution has already put in its place.
func TestHandleInvoiceRefusedAccessToken(t *testing.T) {
	tokens := secrets.State{
		AccessToken:  ksef.Token{Token: accessToken, ValidUntil: t0.Add(10 * time.Minute)},
		RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(7 * 24 * time.Hour)},
	}
	const replacement = "SECRET-access-token-replacement-77e1"
	tests := []struct {
		name       string
		upo        bool   // the status call succeeds and the UPO call is refused
		replacedBy string // access token stored by another execution before the drop
		wantCalls  []string
		wantAccess ksef.Secret
	}{
		{"status refused: token dropped", false, "", []string{"InvoiceStatus"}, ""},
		{"UPO refused: token dropped", true, "", []string{"InvoiceStatus", "InvoiceUPOByKSeFNumber"}, ""},
		{"already replaced elsewhere: replacement kept", false, replacement, []string{"InvoiceStatus"}, replacement},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.sm.SetJSON(t, stateSecret, tokens)
			// The client takes its token from the store, as the real one does.
			if tok, err := e.h.store.AccessToken(t.Context(), nip, e.ksef); err != nil || tok != accessToken {
				t.Fatalf("AccessToken: %v", err)
			}
			refused := func() error {
				if tt.replacedBy != "" {
					other := tokens
					other.AccessToken.Token = ksef.Secret(tt.replacedBy)
					e.sm.SetJSON(t, stateSecret, other)
				}
				return apiError("InvoiceStatus", 401, 0)
			}
			e.ksef.invoiceStatus = func(string, string) (*ksef.InvoiceStatus, error) {
				if tt.upo {
					return &ksef.InvoiceStatus{KSeFNumber: ksefNumber, Status: ksef.Status{Code: 200, Description: "Sukces"}}, nil
				}
				return nil, refused()
			}
			e.ksef.upoByNumber = func(string, string) (*ksef.Document, error) { return nil, refused() }
			in := flow.PollInput{Kind: flow.PollInvoice, NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key}, Submission: submission(), Attempt: 2}

			out, err := e.h.Handle(t.Context(), in)

			checkError(t, err, "RetryableError", "poll", 401)
			if !slices.Equal(e.ksef.calls, tt.wantCalls) {
				t.Errorf("KSeF calls %v, want %v", e.ksef.calls, tt.wantCalls)
			}
			st := e.state(t)
			if st.AccessToken.Token != tt.wantAccess {
				t.Errorf("stored access token is not %s", map[bool]string{true: "empty (dropped)", false: "the replacement"}[tt.wantAccess == ""])
			}
			if st.RefreshToken.Token != refreshToken {
				t.Error("the refresh token was dropped with the access token")
			}
			if len(e.s3.puts) != 0 {
				t.Errorf("a refused poll wrote %v", e.s3.keys())
			}
			assertNoSecrets(t, e, out, err)
		})
	}
}

func TestHandleInvoiceWithoutSubmission(t *testing.T) {
	e := newEnv(t)
	// RecordFailure and a broken execution input can both pass the Init state's empty submission.
	var in flow.PollInput
	if err := json.Unmarshal([]byte(`{"kind":"invoice","nip":"9999999999","invoice":{"bucket":"`+bucket+`","key":"`+key+`"},"submission":{},"attempt":0}`), &in); err != nil {
		t.Fatal(err)
	}
	_, err := e.h.Handle(t.Context(), in)
	checkError(t, err, "BadInputError", "poll", 0)
	if len(e.ksef.calls) != 0 {
		t.Errorf("KSeF calls %v, want none", e.ksef.calls)
	}
}

func TestHandleUnknownKind(t *testing.T) {
	e := newEnv(t)
	_, err := e.h.Handle(t.Context(), flow.PollInput{Kind: "upo", NIP: nip})
	checkError(t, err, "BadInputError", "poll", 0)
}

// TestHandleFailure decodes RecordFailure's Parameters as Step Functions passes them. A Lambda
// function's error reaches the Catch as {"Error": errorType, "Cause": the function's error
// payload as a JSON string}; Pass states (AuthTimedOut) put a Reason in the Cause directly, and
// Step Functions' own errors (States.Timeout) carry free text.
func TestHandleFailure(t *testing.T) {
	payload := func(errorType string, r flow.Reason) string {
		msg, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(map[string]any{"errorMessage": string(msg), "errorType": errorType})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	rejected := flow.Reason{Stage: "ksef", Message: "KSeF rejected the invoice: Błąd weryfikacji semantyki", Code: 450, Details: []string{"Element P_15: brak."}}
	invalid := flow.Reason{Stage: "send", Message: "invoice rejected before sending: ksef: invalid invoice: starts with a UTF-8 byte order mark",
		Details: []string{"ksef: invalid invoice: starts with a UTF-8 byte order mark"}}
	authTimeout := `{"stage":"auth","message":"KSeF authentication did not finish within the polling limit"}`
	reportKey := resultPrefix + key + ".error.json"

	tests := []struct {
		name           string
		error          flow.TaskError
		submission     string // JSON of $.run.submission
		wantStatus     string
		wantReason     flow.Reason
		wantSubmission bool
	}{
		{
			name:           "rejected by KSeF",
			error:          flow.TaskError{Error: "RejectedError", Cause: payload("RejectedError", rejected)},
			submission:     `{"sessionReferenceNumber":"` + sessionRef + `","invoiceReferenceNumber":"` + invoiceRef + `","invoiceHash":"` + sampleHash + `","invoiceSize":3387,"invoiceNumber":"FV2026/02/150","issueDate":"2026-02-15","sentAt":"2026-03-02T09:59:55Z","waitSeconds":1}`,
			wantStatus:     "rejected",
			wantReason:     rejected,
			wantSubmission: true,
		},
		{
			name:       "invalid before sending",
			error:      flow.TaskError{Error: "BadInputError", Cause: payload("BadInputError", invalid)},
			submission: `{}`,
			wantStatus: "invalid",
			wantReason: invalid,
		},
		{
			name:       "authentication timed out (Pass state)",
			error:      flow.TaskError{Error: "AuthFailedError", Cause: authTimeout},
			submission: `{}`,
			wantStatus: "failed",
			wantReason: flow.Reason{Stage: "auth", Message: "KSeF authentication did not finish within the polling limit"},
		},
		{
			name:       "Step Functions timeout",
			error:      flow.TaskError{Error: "States.Timeout", Cause: "State 'PollInvoice' timed out."},
			submission: `{}`,
			wantStatus: "failed",
			wantReason: flow.Reason{Message: "State 'PollInvoice' timed out."},
		},
		{
			name:       "panic in a function",
			error:      flow.TaskError{Error: "Lambda.Unknown", Cause: `{"errorMessage":"runtime error: invalid memory address or nil pointer dereference","errorType":"errorString","stackTrace":[]}`},
			submission: `{}`,
			wantStatus: "failed",
			wantReason: flow.Reason{Message: "runtime error: invalid memory address or nil pointer dereference"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			errJSON, err := json.Marshal(tt.error)
			if err != nil {
				t.Fatal(err)
			}
			raw := `{"kind":"failure","nip":"` + nip + `","invoice":{"bucket":"` + bucket + `","key":"` + key + `","versionId":"v1"},` +
				`"submission":` + tt.submission + `,"error":` + string(errJSON) + `,"attempt":0}`
			var in flow.PollInput
			if err := json.Unmarshal([]byte(raw), &in); err != nil {
				t.Fatalf("decode %s: %v", raw, err)
			}

			out, err := e.h.Handle(t.Context(), in)

			if err != nil {
				t.Fatalf("Handle(%s): %v", raw, err)
			}
			want := flow.PollResult{Kind: "failure", Outcome: "recorded", ResultKey: reportKey}
			if got, ok := out.(flow.PollResult); !ok || got != want {
				t.Errorf("Handle = %#v, want %#v", out, want)
			}
			if !slices.Equal(e.s3.keys(), []string{reportKey}) {
				t.Fatalf("objects written %v, want %s", e.s3.keys(), reportKey)
			}
			var rep struct {
				Status     string           `json:"status"`
				Error      string           `json:"error"`
				Reason     flow.Reason      `json:"reason"`
				NIP        string           `json:"nip"`
				Invoice    flow.S3Object    `json:"invoice"`
				Submission *flow.Submission `json:"submission"`
				RecordedAt time.Time        `json:"recordedAt"`
			}
			body := e.s3.object(t, reportKey).body
			if err := json.Unmarshal(body, &rep); err != nil {
				t.Fatalf("report is not JSON: %v\n%s", err, body)
			}
			if rep.Status != tt.wantStatus || rep.Error != tt.error.Error || rep.NIP != nip || !rep.RecordedAt.Equal(t0) ||
				rep.Invoice != (flow.S3Object{Bucket: bucket, Key: key, VersionID: "v1"}) {
				t.Errorf("report %s: want status %s, error %s, the invoice, recorded at %s", body, tt.wantStatus, tt.error.Error, t0)
			}
			if !reflect.DeepEqual(rep.Reason, tt.wantReason) {
				t.Errorf("report reason %+v, want %+v", rep.Reason, tt.wantReason)
			}
			if (rep.Submission != nil) != tt.wantSubmission || (tt.wantSubmission && rep.Submission.InvoiceReferenceNumber != invoiceRef) {
				t.Errorf("report submission %+v, want present: %t", rep.Submission, tt.wantSubmission)
			}
			assertNoSecrets(t, e, out, err)
		})
	}
}

func TestHandleFailureOutsideBucket(t *testing.T) {
	e := newEnv(t)
	in := flow.PollInput{Kind: flow.PollFailure, NIP: nip, Invoice: flow.S3Object{Bucket: "another-bucket", Key: key},
		Error: &flow.TaskError{Error: "BadInputError", Cause: "{}"}}
	_, err := e.h.Handle(t.Context(), in)
	checkError(t, err, "BadInputError", "poll", 0)
	if len(e.s3.puts) != 0 {
		t.Errorf("wrote %v for an invoice outside the bucket", e.s3.keys())
	}
}
