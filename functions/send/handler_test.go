package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/internal/official"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const (
	nip         = "9999999999" // the seller of the official sample invoice FA_3_Przyklad_1.xml
	stateSecret = "ksef/9999999999/session"
	bucket      = "ksef-invoices-123456789012"
	key         = "inbox/2026/02/FA_3_Przyklad_1.xml"
	version     = "3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY"
	sessionA    = "20260302-SO-2C3E6C8000-A1B2C3D4E5-7F"
	sessionB    = "20260302-SO-2C3E6C8000-B1B2C3D4E5-0A"
	sessionW    = "20260302-SO-2C3E6C8000-C1B2C3D4E5-3D"
	invoiceRef  = "20260302-EE-2C3E6C8000-1A2B3C4D5E-11"

	// The sample's invoiceHash (PROTOCOL.md, self-computed test vectors).
	sampleHash = "X+wQflQVyRs1fImlI+xDPnWk1V37hys4O1lkx9iJbSA="
)

// The fixtures' secrets: none of them may appear in a log line, a returned error or an output.
const (
	accessToken  = "SECRET-access-token-93d0"
	refreshToken = "SECRET-refresh-token-5a77"
)

var (
	t0         = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	sessionKey = ksef.SecretBytes(bytes.Repeat([]byte("K3y!"), 8)) // 32 bytes, AES-256
)

func sample(t *testing.T) []byte {
	t.Helper()
	b, ok := official.SampleInvoices()["FA_3_Przyklad_1.xml"]
	if !ok {
		t.Fatal("official sample FA_3_Przyklad_1.xml missing")
	}
	return b
}

func handle(ref string, validFor time.Duration) *ksef.SessionHandle {
	return &ksef.SessionHandle{
		ReferenceNumber: ref,
		FormCode:        ksef.FormCodeFA3(),
		ValidUntil:      t0.Add(validFor),
		Key:             sessionKey,
		IV:              bytes.Repeat([]byte{7}, 16),
	}
}

var _ secrets.API = (*secretstest.SecretsManager)(nil)

// fakeS3 serves invoice objects by key and version; a version "" is the latest.
type fakeS3 struct {
	objects   map[string][]byte // key + "@" + version -> body
	length    *int64            // overrides ContentLength when set
	err       error             // returned by every GetObject when set
	inputs    []*s3.GetObjectInput
	bytesRead int
}

func (f *fakeS3) GetObject(_ context.Context, in *s3.GetObjectInput, _ ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.inputs = append(f.inputs, in)
	if f.err != nil {
		return nil, f.err
	}
	v := aws.ToString(in.VersionId)
	body, ok := f.objects[aws.ToString(in.Key)+"@"+v]
	switch {
	case !ok && v != "":
		return nil, &smithy.GenericAPIError{Code: "NoSuchVersion", Message: "The specified version does not exist."}
	case !ok:
		return nil, &s3types.NoSuchKey{Message: aws.String("The specified key does not exist.")}
	}
	n := int64(len(body))
	if f.length != nil {
		n = *f.length
	}
	return &s3.GetObjectOutput{Body: io.NopCloser(&countingReader{r: bytes.NewReader(body), n: &f.bytesRead}), ContentLength: aws.Int64(n), VersionId: aws.String(v)}, nil
}

type countingReader struct {
	r io.Reader
	n *int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += n
	return n, err
}

// fakeKSeF is the KSeF client seen through sessionClient. Each call is recorded as
// "Method(session)"; a call without a behaviour set is a test failure.
type fakeKSeF struct {
	t     *testing.T
	calls []string
	open  func() (*ksef.SessionHandle, error)
	send  func(s *ksef.SessionHandle, invoice []byte) (*ksef.SentInvoice, error)
	close func(ref string) error
	sent  [][]byte
}

func (f *fakeKSeF) OpenOnlineSession(_ context.Context, form ksef.FormCode) (*ksef.SessionHandle, error) {
	f.calls = append(f.calls, "Open")
	if form != ksef.FormCodeFA3() {
		f.t.Errorf("session opened for form %+v, want FA (3)", form)
	}
	if f.open == nil {
		f.t.Error("unexpected OpenOnlineSession")
		return nil, errors.New("unexpected call")
	}
	return f.open()
}

func (f *fakeKSeF) SendInvoice(_ context.Context, s *ksef.SessionHandle, invoice []byte, opts *ksef.SendOptions) (*ksef.SentInvoice, error) {
	f.calls = append(f.calls, "Send("+s.ReferenceNumber+")")
	f.sent = append(f.sent, invoice)
	if opts != nil && opts.OfflineMode {
		f.t.Error("online invoice sent in offline mode")
	}
	if f.send == nil {
		f.t.Error("unexpected SendInvoice")
		return nil, errors.New("unexpected call")
	}
	return f.send(s, invoice)
}

func (f *fakeKSeF) CloseOnlineSession(_ context.Context, ref string) error {
	f.calls = append(f.calls, "Close("+ref+")")
	if f.close == nil {
		return nil
	}
	return f.close(ref)
}

// accept answers a send as KSeF does: a reference number, the hash and size of the bytes sent.
func accept(_ *ksef.SessionHandle, invoice []byte) (*ksef.SentInvoice, error) {
	sum := sha256.Sum256(invoice)
	return &ksef.SentInvoice{ReferenceNumber: invoiceRef, InvoiceHash: base64.StdEncoding.EncodeToString(sum[:]), InvoiceSize: len(invoice)}, nil
}

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
	e := &env{
		sm: secretstest.New(),
		s3: &fakeS3{objects: map[string][]byte{key + "@" + version: sample(t), key + "@": sample(t)}},
	}
	e.ksef = &fakeKSeF{t: t, send: accept, open: func() (*ksef.SessionHandle, error) { return handle(sessionB, 12*time.Hour), nil }}
	log := slog.New(slog.NewJSONHandler(&e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	now := func() time.Time { return t0 }
	store := secrets.New(e.sm, secrets.WithClock(now), secrets.WithLogger(log))
	e.h = &handler{
		objects: e.s3,
		store:   store,
		clients: func(context.Context, string) (sessionClient, error) { return e.ksef, nil },
		bucket:  bucket,
		now:     now,
		log:     log,
	}
	return e
}

// assertNoSecrets fails if a token or the session key shows in the logs, the error or the
// output.
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
	forbidden := []string{accessToken, refreshToken, string(sessionKey), base64.StdEncoding.EncodeToString(sessionKey), fmt.Sprintf("%x", []byte(sessionKey))}
	for where, text := range texts {
		for _, s := range forbidden {
			if strings.Contains(text, s) {
				t.Errorf("%s reveal a secret (%.12s...): %s", where, s, text)
			}
		}
		if strings.Contains(text, "<Faktura") || strings.Contains(text, "ABC AGD") {
			t.Errorf("%s reveal the invoice content: %s", where, text)
		}
	}
}

func TestHandle(t *testing.T) {
	in := flow.SendInput{NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key, VersionID: version}}
	tokens := secrets.State{
		AccessToken:  ksef.Token{Token: accessToken, ValidUntil: t0.Add(15 * time.Minute)},
		RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(7 * 24 * time.Hour)},
	}
	withSession := func(h *ksef.SessionHandle) *secrets.State {
		st := tokens
		st.Session = &secrets.OnlineSession{Handle: h, OpenedAt: t0.Add(-time.Hour)}
		return &st
	}
	sent := func(session string) flow.Submission {
		return flow.Submission{
			SessionReferenceNumber: session,
			InvoiceReferenceNumber: invoiceRef,
			InvoiceHash:            sampleHash,
			InvoiceSize:            len(sample(t)),
			InvoiceNumber:          "FV2026/02/150",
			IssueDate:              "2026-02-15",
			SentAt:                 t0,
			WaitSeconds:            1,
		}
	}
	storedSession := func(ref string) func(t *testing.T, e *env) {
		return func(t *testing.T, e *env) {
			st := e.state(t)
			if st.Session == nil || st.Session.Handle == nil || st.Session.Handle.ReferenceNumber != ref {
				t.Fatalf("stored session %+v, want %s", st.Session, ref)
			}
			if !bytes.Equal(st.Session.Handle.Key, sessionKey) || len(st.Session.Handle.IV) != 16 {
				t.Errorf("stored session %s lacks its key or IV", ref)
			}
			if st.AccessToken.Token != accessToken || st.RefreshToken.Token != refreshToken {
				t.Errorf("storing the session changed the tokens")
			}
		}
	}
	tooBig := int64(maxInvoiceBytes + 1)

	tests := []struct {
		name      string
		in        flow.SendInput
		state     *secrets.State
		setup     func(t *testing.T, e *env)
		want      flow.Submission
		wantErr   string // errorType of the returned error
		wantMsg   string // in the error's Reason.Message
		wantCode  int    // the error's Reason.Code
		wantCalls []string
		check     func(t *testing.T, e *env)
	}{
		{
			name:      "stored session reused",
			in:        in,
			state:     withSession(handle(sessionA, 10*time.Hour)),
			want:      sent(sessionA),
			wantCalls: []string{"Send(" + sessionA + ")"},
			check:     storedSession(sessionA),
		},
		{
			name:      "no session: open one and store it",
			in:        in,
			state:     &tokens,
			want:      sent(sessionB),
			wantCalls: []string{"Open", "Send(" + sessionB + ")"},
			check: func(t *testing.T, e *env) {
				storedSession(sessionB)(t, e)
				if got := e.state(t).Session.OpenedAt; !got.Equal(t0) {
					t.Errorf("session opened at %s, want %s", got, t0)
				}
			},
		},
		{
			name:      "no state secret yet: open a session and create the secret",
			in:        in,
			want:      sent(sessionB),
			wantCalls: []string{"Open", "Send(" + sessionB + ")"},
			check: func(t *testing.T, e *env) {
				if st := e.state(t); st.Session == nil || st.Session.Handle.ReferenceNumber != sessionB {
					t.Errorf("stored session %+v, want %s", st.Session, sessionB)
				}
			},
		},
		{
			name:      "session near expiry: replace it and close the old one",
			in:        in,
			state:     withSession(handle(sessionA, 30*time.Minute)),
			want:      sent(sessionB),
			wantCalls: []string{"Open", "Close(" + sessionA + ")", "Send(" + sessionB + ")"},
			check:     storedSession(sessionB),
		},
		{
			name:  "concurrent open lost: close ours, use the winner's",
			in:    in,
			state: &tokens,
			setup: func(t *testing.T, e *env) {
				e.ksef.open = func() (*ksef.SessionHandle, error) {
					// While this execution opens a session, another one (its own Store) stores its own.
					other := secrets.New(e.sm, secrets.WithClock(func() time.Time { return t0 }))
					if _, err := other.Update(t.Context(), nip, func(st *secrets.State) error {
						st.Session = &secrets.OnlineSession{Handle: handle(sessionW, 12*time.Hour), OpenedAt: t0}
						return nil
					}); err != nil {
						t.Fatalf("other execution: %v", err)
					}
					return handle(sessionB, 12*time.Hour), nil
				}
			},
			want:      sent(sessionW),
			wantCalls: []string{"Open", "Close(" + sessionB + ")", "Send(" + sessionW + ")"},
			check:     storedSession(sessionW),
		},
		{
			name:  "21180 on send: replace the session, send once more",
			in:    in,
			state: withSession(handle(sessionA, 10*time.Hour)),
			setup: func(t *testing.T, e *env) {
				e.ksef.send = func(s *ksef.SessionHandle, b []byte) (*ksef.SentInvoice, error) {
					if s.ReferenceNumber == sessionA {
						return nil, apiError("SendInvoice", 400, ksef.CodeSessionStatus)
					}
					return accept(s, b)
				}
			},
			want:      sent(sessionB),
			wantCalls: []string{"Send(" + sessionA + ")", "Open", "Close(" + sessionA + ")", "Send(" + sessionB + ")"},
			check:     storedSession(sessionB),
		},
		{
			name:  "21180 on the second send as well: RejectedError, no third send",
			in:    in,
			state: withSession(handle(sessionA, 10*time.Hour)),
			setup: func(t *testing.T, e *env) {
				e.ksef.send = func(*ksef.SessionHandle, []byte) (*ksef.SentInvoice, error) {
					return nil, apiError("SendInvoice", 400, ksef.CodeSessionStatus)
				}
			},
			wantErr:   "RejectedError",
			wantCode:  ksef.CodeSessionStatus,
			wantCalls: []string{"Send(" + sessionA + ")", "Open", "Close(" + sessionA + ")", "Send(" + sessionB + ")"},
		},
		{
			name:  "401 on send: AuthFailedError, access token dropped",
			in:    in,
			state: withSession(handle(sessionA, 10*time.Hour)),
			setup: func(t *testing.T, e *env) {
				e.ksef.send = func(*ksef.SessionHandle, []byte) (*ksef.SentInvoice, error) {
					return nil, apiError("SendInvoice", 401, 0)
				}
			},
			wantErr:   "AuthFailedError",
			wantCode:  401,
			wantCalls: []string{"Send(" + sessionA + ")"},
			check: func(t *testing.T, e *env) {
				st := e.state(t)
				if st.AccessToken.Token != "" {
					t.Error("the refused access token is still stored")
				}
				if st.RefreshToken.Token != refreshToken {
					t.Error("the refresh token was dropped with the access token")
				}
				if st.Session == nil || st.Session.Handle.ReferenceNumber != sessionA {
					t.Errorf("session %+v dropped with the access token", st.Session)
				}
			},
		},
		{
			name:  "429 on open: RateLimitedError",
			in:    in,
			state: &tokens,
			setup: func(t *testing.T, e *env) {
				e.ksef.open = func() (*ksef.SessionHandle, error) {
					err := apiError("OpenOnlineSession", 429, 0)
					err.RetryAfter = 30 * time.Second
					return nil, err
				}
			},
			wantErr:   "RateLimitedError",
			wantCode:  429,
			wantCalls: []string{"Open"},
		},
		{
			name:  "503 on send: RetryableError, not sent again",
			in:    in,
			state: withSession(handle(sessionA, 10*time.Hour)),
			setup: func(t *testing.T, e *env) {
				e.ksef.send = func(*ksef.SessionHandle, []byte) (*ksef.SentInvoice, error) {
					return nil, apiError("SendInvoice", 503, 0)
				}
			},
			wantErr:   "RetryableError",
			wantCode:  503,
			wantCalls: []string{"Send(" + sessionA + ")"},
		},
		{
			name:    "object missing: BadInputError",
			in:      flow.SendInput{NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: "inbox/none.xml"}},
			wantErr: "BadInputError",
			wantMsg: "cannot read invoice s3://" + bucket + "/inbox/none.xml",
		},
		{
			name:    "version missing: BadInputError",
			in:      flow.SendInput{NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key, VersionID: "gone"}},
			wantErr: "BadInputError",
			wantMsg: `(version "gone")`,
		},
		{
			name: "S3 failing: RetryableError",
			in:   in,
			setup: func(t *testing.T, e *env) {
				e.s3.err = &smithy.GenericAPIError{Code: "InternalError", Message: "We encountered an internal error."}
			},
			wantErr: "RetryableError",
		},
		{
			name:    "bucket other than the configured one: BadInputError, nothing read",
			in:      flow.SendInput{NIP: nip, Invoice: flow.S3Object{Bucket: "someone-elses-bucket", Key: key}},
			wantErr: "BadInputError",
			wantMsg: `bucket "` + bucket + `"`,
			check: func(t *testing.T, e *env) {
				if len(e.s3.inputs) != 0 {
					t.Errorf("read %d objects from S3, want none", len(e.s3.inputs))
				}
			},
		},
		{
			name:    "invalid NIP: BadInputError",
			in:      flow.SendInput{NIP: "12345", Invoice: in.Invoice},
			wantErr: "BadInputError",
		},
		{
			name: "object over 3 MB: refused before reading",
			in:   in,
			setup: func(t *testing.T, e *env) {
				e.s3.length = &tooBig
			},
			wantErr: "BadInputError",
			wantMsg: "3000001 bytes",
			check: func(t *testing.T, e *env) {
				if e.s3.bytesRead != 0 {
					t.Errorf("read %d bytes of an oversized object, want 0", e.s3.bytesRead)
				}
			},
		},
		{
			name: "object longer than its Content-Length: read stops after the limit",
			in:   in,
			setup: func(t *testing.T, e *env) {
				e.s3.objects[key+"@"+version] = bytes.Repeat([]byte("a"), 2*maxInvoiceBytes)
				e.s3.length = aws.Int64(100)
			},
			wantErr: "BadInputError",
			wantMsg: "over 3000000 bytes",
			check: func(t *testing.T, e *env) {
				if e.s3.bytesRead > maxInvoiceBytes+1 {
					t.Errorf("read %d bytes, want at most %d", e.s3.bytesRead, maxInvoiceBytes+1)
				}
			},
		},
		{
			name: "byte order mark: BadInputError",
			in:   in,
			setup: func(t *testing.T, e *env) {
				e.s3.objects[key+"@"+version] = append([]byte("\xef\xbb\xbf"), sample(t)...)
			},
			wantErr: "BadInputError",
			wantMsg: "invoice rejected before sending: ksef: invalid invoice: starts with a UTF-8 byte order mark",
		},
		{
			name:    "seller NIP other than the context's: BadInputError",
			in:      flow.SendInput{NIP: "1111111111", Invoice: in.Invoice},
			wantErr: "BadInputError",
			wantMsg: "seller NIP differs from the context NIP",
		},
		{
			name: "malformed XML: BadInputError",
			in:   in,
			setup: func(t *testing.T, e *env) {
				b := sample(t)
				e.s3.objects[key+"@"+version] = b[:len(b)/2]
			},
			wantErr: "BadInputError",
			wantMsg: "malformed XML",
		},
		{
			name: "invoice with attachment: BadInputError",
			in:   in,
			setup: func(t *testing.T, e *env) {
				b := bytes.Replace(sample(t), []byte("</Faktura>"),
					[]byte("<Zalacznik><BlokDanych><ZNaglowek>Dane</ZNaglowek></BlokDanych></Zalacznik></Faktura>"), 1)
				e.s3.objects[key+"@"+version] = b
			},
			wantErr: "BadInputError",
			wantMsg: "attachments",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			if tt.state != nil {
				e.sm.SetJSON(t, stateSecret, tt.state)
			}
			if tt.setup != nil {
				tt.setup(t, e)
			}

			got, err := e.h.Handle(t.Context(), tt.in)

			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Handle(%+v) error %v (%s)", tt.in, err, flow.ErrorType(err))
				}
				if got != tt.want {
					t.Errorf("Handle(%+v) =\n%+v, want\n%+v", tt.in, got, tt.want)
				}
				if len(e.ksef.sent) == 0 || !bytes.Equal(e.ksef.sent[len(e.ksef.sent)-1], sample(t)) {
					t.Error("the bytes sent are not the S3 object's, byte for byte")
				}
			} else {
				if err == nil {
					t.Fatalf("Handle(%+v) = %+v, want a %s", tt.in, got, tt.wantErr)
				}
				if et := flow.ErrorType(err); et != tt.wantErr {
					t.Errorf("Handle(%+v) errorType %q (%v), want %q", tt.in, et, err, tt.wantErr)
				}
				r, ok := flow.ReasonOf(err)
				if !ok || r.Stage != "send" || !strings.Contains(r.Message, tt.wantMsg) || r.Code != tt.wantCode {
					t.Errorf("reason %+v, want stage send, code %d, message containing %q", r, tt.wantCode, tt.wantMsg)
				}
				if got != (flow.Submission{}) {
					t.Errorf("output %+v with an error, want the zero Submission", got)
				}
			}
			if !reflect.DeepEqual(e.ksef.calls, tt.wantCalls) && (len(e.ksef.calls) > 0 || len(tt.wantCalls) > 0) {
				t.Errorf("KSeF calls %v, want %v", e.ksef.calls, tt.wantCalls)
			}
			for _, gi := range e.s3.inputs {
				if aws.ToString(gi.Bucket) != tt.in.Invoice.Bucket || aws.ToString(gi.Key) != tt.in.Invoice.Key || aws.ToString(gi.VersionId) != tt.in.Invoice.VersionID {
					t.Errorf("GetObject(%s/%s@%s), want exactly %+v", aws.ToString(gi.Bucket), aws.ToString(gi.Key), aws.ToString(gi.VersionId), tt.in.Invoice)
				}
			}
			if tt.check != nil {
				tt.check(t, e)
			}
			assertNoSecrets(t, e, got, err)
		})
	}
}

// TestHandleInspectionDetails checks that an inspection failure carries KSeF-independent
// detail (which rule, where) for the failure report, and never the invoice's text.
func TestHandleInspectionDetails(t *testing.T) {
	e := newEnv(t)
	_, err := e.h.Handle(t.Context(), flow.SendInput{NIP: "1111111111", Invoice: flow.S3Object{Bucket: bucket, Key: key, VersionID: version}})
	var bad *flow.BadInputError
	if !errors.As(err, &bad) {
		t.Fatalf("error %v, want a BadInputError", err)
	}
	if !errors.Is(err, ksef.ErrInvoiceSellerNIP) {
		t.Errorf("error %v does not wrap ksef.ErrInvoiceSellerNIP", err)
	}
	want := []string{"ksef: invalid invoice: seller NIP differs from the context NIP: Podmiot1/DaneIdentyfikacyjne/NIP is not the context NIP"}
	if !reflect.DeepEqual(bad.Details, want) {
		t.Errorf("details %q, want %q", bad.Details, want)
	}
	if strings.Contains(err.Error(), nip) {
		t.Errorf("error %q quotes the invoice's seller NIP", err)
	}
	if len(e.ksef.calls) != 0 {
		t.Errorf("KSeF called for an invalid invoice: %v", e.ksef.calls)
	}
}

// TestHandleLatestVersion reads the latest version when the input names none.
func TestHandleLatestVersion(t *testing.T) {
	e := newEnv(t)
	e.sm.SetJSON(t, stateSecret, secrets.State{Session: &secrets.OnlineSession{Handle: handle(sessionA, 10*time.Hour)}})
	in := flow.SendInput{NIP: nip, Invoice: flow.S3Object{Bucket: bucket, Key: key}}
	if _, err := e.h.Handle(t.Context(), in); err != nil {
		t.Fatalf("Handle(%+v): %v", in, err)
	}
	if len(e.s3.inputs) != 1 || e.s3.inputs[0].VersionId != nil {
		t.Errorf("GetObject inputs %+v, want one without a VersionId", e.s3.inputs)
	}
}
