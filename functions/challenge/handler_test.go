package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const (
	nip               = "9999999999"
	credentialsSecret = "ksef/9999999999/credentials"
	stateSecret       = "ksef/9999999999/session"
	authRef           = "20260302-AU-1A2B3C4D5E-6F7A8B9C0D-01"
	otherRef          = "20260302-AU-0F0E0D0C0B-0A09080706-02"
)

// The fixtures' secrets: none of them may appear in a log line, a returned error or an output.
const (
	ksefToken     = "20260301-EC-0A1B2C3D4E-5F6A7B8C9D-11|nip-9999999999|SECRETksefTokenB7E1"
	authToken     = "SECRET-authentication-token-41c2"
	accessToken   = "SECRET-access-token-93d0"
	refreshToken  = "SECRET-refresh-token-5a77"
	newAccess     = "SECRET-access-token-refreshed-e3f8"
	redeemed      = "SECRET-access-token-redeemed-0c19"
	redeemedRenew = "SECRET-refresh-token-redeemed-7d42"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// testCert is one XAdES test certificate and key for the whole test binary (RSA key generation
// is slow).
var testCert = sync.OnceValues(func() (certKey, error) {
	cert, key, err := ksef.NewTestCertificate(ksef.TestCertificateOptions{NIP: nip, Seal: true, Now: t0})
	if err != nil {
		return certKey{}, err
	}
	certPEM, keyPEM, err := ksef.EncodePEM(cert, key)
	return certKey{cert: cert, key: key, certPEM: string(certPEM), keyPEM: string(keyPEM)}, err
})

type certKey struct {
	cert            *x509.Certificate
	key             crypto.Signer
	certPEM, keyPEM string
}

var _ secrets.API = (*secretstest.SecretsManager)(nil)

// fakeAuth is the KSeF client seen through authClient. Each call is recorded; a call without a
// behaviour set is a test failure.
type fakeAuth struct {
	t         *testing.T
	calls     []string
	refresh   func(refreshToken ksef.Secret) (*ksef.Token, error)
	challenge func() (*ksef.Challenge, error)
	withToken func(a ksef.KSeFTokenAuth) (*ksef.AuthInit, error)
	withCert  func(id ksef.ContextIdentifier, key crypto.Signer, cert *x509.Certificate) (*ksef.AuthInit, error)
	redeem    func(authToken ksef.Secret) (*ksef.AuthTokens, error)
}

var errUnexpected = errors.New("unexpected call")

func (f *fakeAuth) called(name string, set bool) error {
	f.calls = append(f.calls, name)
	if !set {
		f.t.Errorf("unexpected call to %s", name)
		return errUnexpected
	}
	return nil
}

func (f *fakeAuth) RefreshAccessToken(_ context.Context, rt ksef.Secret) (*ksef.Token, error) {
	if err := f.called("RefreshAccessToken", f.refresh != nil); err != nil {
		return nil, err
	}
	return f.refresh(rt)
}

func (f *fakeAuth) Challenge(context.Context) (*ksef.Challenge, error) {
	if err := f.called("Challenge", f.challenge != nil); err != nil {
		return nil, err
	}
	return f.challenge()
}

func (f *fakeAuth) AuthenticateWithKSeFToken(_ context.Context, a ksef.KSeFTokenAuth) (*ksef.AuthInit, error) {
	if err := f.called("AuthenticateWithKSeFToken", f.withToken != nil); err != nil {
		return nil, err
	}
	return f.withToken(a)
}

func (f *fakeAuth) AuthenticateWithCertificate(_ context.Context, id ksef.ContextIdentifier, key crypto.Signer, cert *x509.Certificate) (*ksef.AuthInit, error) {
	if err := f.called("AuthenticateWithCertificate", f.withCert != nil); err != nil {
		return nil, err
	}
	return f.withCert(id, key, cert)
}

func (f *fakeAuth) RedeemTokens(_ context.Context, at ksef.Secret) (*ksef.AuthTokens, error) {
	if err := f.called("RedeemTokens", f.redeem != nil); err != nil {
		return nil, err
	}
	return f.redeem(at)
}

// env is one handler over the real secrets.Store, an in-memory Secrets Manager and a fake KSeF.
type env struct {
	sm    *secretstest.SecretsManager
	now   time.Time
	logs  bytes.Buffer
	store *secrets.Store
	ksef  *fakeAuth
	h     *handler
	cert  certKey
}

// state decodes the session state stored in e.sm; the zero State if there is none.
func (e *env) state(t *testing.T) secrets.State {
	t.Helper()
	var st secrets.State
	e.sm.DecodeJSON(t, stateSecret, &st)
	return st
}

func newEnv(t *testing.T, method secrets.AuthMethod) *env {
	t.Helper()
	e := &env{sm: secretstest.New(), now: t0}
	ck, err := testCert()
	if err != nil {
		t.Fatalf("test certificate: %v", err)
	}
	e.cert = ck
	creds := secrets.Credentials{NIP: nip, Environment: ksef.Test, AuthMethod: method}
	switch method {
	case secrets.AuthToken:
		creds.KSeFToken = ksefToken
	case secrets.AuthXAdES:
		creds.CertificatePEM, creds.PrivateKeyPEM = ck.certPEM, ksef.Secret(ck.keyPEM)
	}
	e.sm.SetJSON(t, credentialsSecret, creds)

	log := slog.New(slog.NewJSONHandler(&e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := func() time.Time { return e.now }
	e.store = secrets.New(e.sm, secrets.WithClock(clock), secrets.WithLogger(log))
	e.ksef = &fakeAuth{
		t: t,
		challenge: func() (*ksef.Challenge, error) {
			return &ksef.Challenge{Challenge: "20260302-CR-1111111111-2222222222-33", Timestamp: t0, TimestampMs: t0.UnixMilli()}, nil
		},
		withToken: func(ksef.KSeFTokenAuth) (*ksef.AuthInit, error) { return authInit(), nil },
		withCert: func(ksef.ContextIdentifier, crypto.Signer, *x509.Certificate) (*ksef.AuthInit, error) {
			return authInit(), nil
		},
	}
	e.h = &handler{
		store: e.store,
		clients: func(ctx context.Context, nip string) (authClient, *secrets.Credentials, error) {
			c, err := e.store.Credentials(ctx, nip)
			if err != nil {
				return nil, nil, err
			}
			return e.ksef, c, nil
		},
		now: clock,
		log: log,
	}
	return e
}

func authInit() *ksef.AuthInit {
	return &ksef.AuthInit{ReferenceNumber: authRef, AuthenticationToken: ksef.Token{Token: authToken, ValidUntil: t0.Add(10 * time.Minute)}}
}

func apiError(op string, status, code int, details ...string) *ksef.APIError {
	e := &ksef.APIError{Op: op, StatusCode: status, Title: "KSeF error"}
	if code != 0 {
		e.Details = []ksef.ExceptionDetail{{Code: code, Description: "opis błędu", Details: details}}
	}
	return e
}

// assertNoSecrets fails if a fixture secret shows in the logs, the error or the output.
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
	keyBody := strings.Split(strings.TrimSpace(e.cert.keyPEM), "\n")[3] // a line of the key's Base64
	for where, text := range texts {
		for _, s := range []string{ksefToken, "SECRETksefToken", authToken, accessToken, refreshToken, newAccess, redeemed, redeemedRenew, "PRIVATE KEY", keyBody} {
			if strings.Contains(text, s) {
				t.Errorf("%s reveal a secret (%.12s...): %s", where, s, text)
			}
		}
	}
}

func TestHandle(t *testing.T) {
	validTokens := &secrets.State{
		AccessToken:  ksef.Token{Token: accessToken, ValidUntil: t0.Add(15 * time.Minute)},
		RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(7 * 24 * time.Hour)},
	}
	pendingAuth := func(ref string, started time.Time, authValid time.Duration) *secrets.State {
		p := &secrets.PendingAuth{StartedAt: started, Method: secrets.AuthToken}
		if ref != "" {
			p.ReferenceNumber = ref
			p.AuthenticationToken = ksef.Token{Token: authToken, ValidUntil: t0.Add(authValid)}
		}
		return &secrets.State{PendingAuth: p}
	}
	pending := func(ref string, attempt int) flow.AuthState {
		return flow.AuthState{ReferenceNumber: ref, Method: "token", WaitSeconds: 1, Attempt: attempt, StatusCode: 100}
	}
	wantPendingStored := func(ref string) func(t *testing.T, e *env) {
		return func(t *testing.T, e *env) {
			p := e.state(t).PendingAuth
			if p == nil || p.ReferenceNumber != ref || p.AuthenticationToken.Token != authToken || !p.StartedAt.Equal(t0) {
				t.Errorf("stored pending login %+v, want %s with its authentication token, started %s", p, ref, t0)
			}
		}
	}
	wantNoPending := func(t *testing.T, e *env) {
		if p := e.state(t).PendingAuth; p != nil {
			t.Errorf("stored pending login %+v, want none (the claim released)", p)
		}
	}

	tests := []struct {
		name      string
		method    secrets.AuthMethod // default token
		state     *secrets.State     // stored before the call
		in        flow.ChallengeInput
		setup     func(t *testing.T, e *env)
		want      flow.AuthState
		wantErr   string // errorType of the returned error
		wantCode  int    // the error's Reason.Code
		wantCalls []string
		check     func(t *testing.T, e *env)
	}{
		{
			name:  "stored access token reused",
			state: validTokens,
			in:    flow.ChallengeInput{NIP: nip, Attempt: 3},
			want:  flow.AuthState{Ready: true, Attempt: 3, StatusCode: 200},
		},
		{
			name: "expired access token refreshed",
			state: &secrets.State{
				AccessToken:  ksef.Token{Token: accessToken, ValidUntil: t0.Add(-time.Minute)},
				RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(24 * time.Hour)},
			},
			in: flow.ChallengeInput{NIP: nip},
			setup: func(t *testing.T, e *env) {
				e.ksef.refresh = func(rt ksef.Secret) (*ksef.Token, error) {
					if rt != refreshToken {
						t.Errorf("refreshed with another token than the stored refresh token")
					}
					return &ksef.Token{Token: newAccess, ValidUntil: t0.Add(15 * time.Minute)}, nil
				}
			},
			want:      flow.AuthState{Ready: true, StatusCode: 200},
			wantCalls: []string{"RefreshAccessToken"},
			check: func(t *testing.T, e *env) {
				if got := e.state(t).AccessToken.Token; got != newAccess {
					t.Errorf("stored access token is not the refreshed one")
				}
			},
		},
		{
			name: "no state: login with the KSeF token",
			in:   flow.ChallengeInput{NIP: nip, Attempt: 1},
			setup: func(t *testing.T, e *env) {
				e.ksef.withToken = func(a ksef.KSeFTokenAuth) (*ksef.AuthInit, error) {
					if a.Token != ksefToken || a.Context != ksef.NipContext(nip) || a.Challenge == nil || a.Challenge.TimestampMs != t0.UnixMilli() {
						t.Errorf("token login with context %+v, challenge %+v, the credentials' token: %t", a.Context, a.Challenge, a.Token == ksefToken)
					}
					return authInit(), nil
				}
			},
			want:      pending(authRef, 1),
			wantCalls: []string{"Challenge", "AuthenticateWithKSeFToken"},
			check:     wantPendingStored(authRef),
		},
		{
			name:   "no state: login with a certificate (XAdES)",
			method: secrets.AuthXAdES,
			in:     flow.ChallengeInput{NIP: nip},
			setup: func(t *testing.T, e *env) {
				e.ksef.withCert = func(id ksef.ContextIdentifier, key crypto.Signer, cert *x509.Certificate) (*ksef.AuthInit, error) {
					if id != ksef.NipContext(nip) {
						t.Errorf("XAdES login in context %+v, want the NIP's", id)
					}
					if !cert.Equal(e.cert.cert) {
						t.Errorf("XAdES login with certificate %s, want the stored one", cert.Subject)
					}
					if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(e.cert.key.Public()) {
						t.Errorf("XAdES login with another key than the stored one")
					}
					return authInit(), nil
				}
			},
			want:      flow.AuthState{ReferenceNumber: authRef, Method: "xades", WaitSeconds: 1, StatusCode: 100},
			wantCalls: []string{"AuthenticateWithCertificate"},
			check: func(t *testing.T, e *env) {
				if p := e.state(t).PendingAuth; p == nil || p.Method != secrets.AuthXAdES || p.ReferenceNumber != authRef {
					t.Errorf("stored pending login %+v, want %s by xades", p, authRef)
				}
			},
		},
		{
			name: "tokens without a refresh token: login",
			state: &secrets.State{
				AccessToken: ksef.Token{Token: accessToken, ValidUntil: t0.Add(-time.Second)},
			},
			in:        flow.ChallengeInput{NIP: nip},
			want:      pending(authRef, 0),
			wantCalls: []string{"Challenge", "AuthenticateWithKSeFToken"},
			check:     wantPendingStored(authRef),
		},
		{
			name:  "login of another execution running: poll it, no second login",
			state: pendingAuth(otherRef, t0.Add(-30*time.Second), 9*time.Minute),
			in:    flow.ChallengeInput{NIP: nip, Attempt: 2, StatusCode: 100},
			want:  pending(otherRef, 2),
			check: func(t *testing.T, e *env) {
				if p := e.state(t).PendingAuth; p == nil || p.ReferenceNumber != otherRef {
					t.Errorf("pending login %+v changed, want %s untouched", p, otherRef)
				}
			},
		},
		{
			name:  "fresh claim without reference: wait for its owner",
			state: pendingAuth("", t0.Add(-10*time.Second), 0),
			in:    flow.ChallengeInput{NIP: nip},
			want:  pending("", 0),
		},
		{
			name:      "stale claim without reference: take over",
			state:     pendingAuth("", t0.Add(-2*time.Minute), 0),
			in:        flow.ChallengeInput{NIP: nip},
			want:      pending(authRef, 0),
			wantCalls: []string{"Challenge", "AuthenticateWithKSeFToken"},
			check:     wantPendingStored(authRef),
		},
		{
			name:      "pending login older than the challenge: start another",
			state:     pendingAuth(otherRef, t0.Add(-11*time.Minute), 5*time.Minute),
			in:        flow.ChallengeInput{NIP: nip},
			want:      pending(authRef, 0),
			wantCalls: []string{"Challenge", "AuthenticateWithKSeFToken"},
			check:     wantPendingStored(authRef),
		},
		{
			name:      "pending login whose authentication token expired: start another",
			state:     pendingAuth(otherRef, t0.Add(-time.Minute), -time.Second),
			in:        flow.ChallengeInput{NIP: nip, StatusCode: 200},
			want:      pending(authRef, 0),
			wantCalls: []string{"Challenge", "AuthenticateWithKSeFToken"},
			check:     wantPendingStored(authRef),
		},
		{
			name:  "status 200: redeem and store the tokens",
			state: pendingAuth(authRef, t0.Add(-20*time.Second), 9*time.Minute),
			in:    flow.ChallengeInput{NIP: nip, Attempt: 4, StatusCode: 200},
			setup: func(t *testing.T, e *env) {
				e.ksef.redeem = func(at ksef.Secret) (*ksef.AuthTokens, error) {
					if at != authToken {
						t.Errorf("redeemed with another token than the pending login's authentication token")
					}
					return &ksef.AuthTokens{
						AccessToken:  ksef.Token{Token: redeemed, ValidUntil: t0.Add(15 * time.Minute)},
						RefreshToken: ksef.Token{Token: redeemedRenew, ValidUntil: t0.Add(7 * 24 * time.Hour)},
					}, nil
				}
			},
			want:      flow.AuthState{Ready: true, ReferenceNumber: authRef, Attempt: 4, StatusCode: 200},
			wantCalls: []string{"RedeemTokens"},
			check: func(t *testing.T, e *env) {
				st := e.state(t)
				if st.AccessToken.Token != redeemed || st.RefreshToken.Token != redeemedRenew || st.PendingAuth != nil {
					t.Errorf("stored state after redeem: pending %+v, redeemed tokens stored: %t", st.PendingAuth,
						st.AccessToken.Token == redeemed && st.RefreshToken.Token == redeemedRenew)
				}
			},
		},
		{
			name:  "redeem 21301 after another execution stored the tokens: ready",
			state: pendingAuth(authRef, t0.Add(-20*time.Second), 9*time.Minute),
			in:    flow.ChallengeInput{NIP: nip, StatusCode: 200},
			setup: func(t *testing.T, e *env) {
				e.ksef.redeem = func(ksef.Secret) (*ksef.AuthTokens, error) {
					other := secrets.New(e.sm, secrets.WithClock(func() time.Time { return e.now }))
					if _, err := other.SaveTokens(t.Context(), nip, ksef.AuthTokens{
						AccessToken:  ksef.Token{Token: redeemed, ValidUntil: t0.Add(15 * time.Minute)},
						RefreshToken: ksef.Token{Token: redeemedRenew, ValidUntil: t0.Add(7 * 24 * time.Hour)},
					}); err != nil {
						t.Fatalf("other execution: %v", err)
					}
					return nil, apiError("RedeemTokens", 400, ksef.CodeNoAuthorization)
				}
			},
			want:      flow.AuthState{Ready: true, StatusCode: 200},
			wantCalls: []string{"RedeemTokens"},
		},
		{
			name:  "redeem 21301 with nothing stored: keep polling",
			state: pendingAuth(authRef, t0.Add(-20*time.Second), 9*time.Minute),
			in:    flow.ChallengeInput{NIP: nip, Attempt: 5, StatusCode: 200},
			setup: func(t *testing.T, e *env) {
				e.ksef.redeem = func(ksef.Secret) (*ksef.AuthTokens, error) {
					return nil, apiError("RedeemTokens", 400, ksef.CodeNoAuthorization)
				}
			},
			want:      pending(authRef, 5),
			wantCalls: []string{"RedeemTokens"},
		},
		{
			name:  "redeem 21301 long after the login started, nothing stored: login dropped, start over",
			state: pendingAuth(authRef, t0.Add(-3*time.Minute), 9*time.Minute),
			in:    flow.ChallengeInput{NIP: nip, Attempt: 7, StatusCode: 200},
			setup: func(t *testing.T, e *env) {
				e.ksef.redeem = func(ksef.Secret) (*ksef.AuthTokens, error) {
					return nil, apiError("RedeemTokens", 400, ksef.CodeNoAuthorization)
				}
			},
			want:      flow.AuthState{Attempt: 7, WaitSeconds: authPollSeconds},
			wantCalls: []string{"RedeemTokens"},
			check: func(t *testing.T, e *env) {
				if st := e.state(t); st.PendingAuth != nil {
					t.Errorf("spent login still pending: %+v", st.PendingAuth)
				}
			},
		},
		{
			name:  "redeem refused for good: AuthFailedError",
			state: pendingAuth(authRef, t0.Add(-20*time.Second), 9*time.Minute),
			in:    flow.ChallengeInput{NIP: nip, StatusCode: 200},
			setup: func(t *testing.T, e *env) {
				e.ksef.redeem = func(ksef.Secret) (*ksef.AuthTokens, error) {
					return nil, apiError("RedeemTokens", 400, ksef.CodeAuthNotFound)
				}
			},
			wantErr:   "AuthFailedError",
			wantCode:  ksef.CodeAuthNotFound,
			wantCalls: []string{"RedeemTokens"},
		},
		{
			name: "KSeF 400 on login: AuthFailedError, claim released",
			in:   flow.ChallengeInput{NIP: nip},
			setup: func(t *testing.T, e *env) {
				e.ksef.withToken = func(ksef.KSeFTokenAuth) (*ksef.AuthInit, error) {
					return nil, apiError("AuthenticateWithKSeFToken", 400, ksef.CodeValidation, "token: nieprawidłowy format")
				}
			},
			wantErr:   "AuthFailedError",
			wantCode:  ksef.CodeValidation,
			wantCalls: []string{"Challenge", "AuthenticateWithKSeFToken"},
			check:     wantNoPending,
		},
		{
			name: "KSeF 429 on challenge: RateLimitedError with the wait, claim released",
			in:   flow.ChallengeInput{NIP: nip},
			setup: func(t *testing.T, e *env) {
				e.ksef.challenge = func() (*ksef.Challenge, error) {
					err := apiError("Challenge", 429, 0)
					err.RetryAfter = 7 * time.Second
					return nil, err
				}
			},
			wantErr:   "RateLimitedError",
			wantCode:  429,
			wantCalls: []string{"Challenge"},
			check: func(t *testing.T, e *env) {
				wantNoPending(t, e)
			},
		},
		{
			name: "KSeF 503 on login: RetryableError, claim released",
			in:   flow.ChallengeInput{NIP: nip},
			setup: func(t *testing.T, e *env) {
				e.ksef.withToken = func(ksef.KSeFTokenAuth) (*ksef.AuthInit, error) {
					return nil, apiError("AuthenticateWithKSeFToken", 503, 0)
				}
			},
			wantErr:   "RetryableError",
			wantCode:  503,
			wantCalls: []string{"Challenge", "AuthenticateWithKSeFToken"},
			check:     wantNoPending,
		},
		{
			name:  "KSeF 503 on refresh: RetryableError, no login",
			state: &secrets.State{RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(time.Hour)}},
			in:    flow.ChallengeInput{NIP: nip},
			setup: func(t *testing.T, e *env) {
				e.ksef.refresh = func(ksef.Secret) (*ksef.Token, error) {
					return nil, apiError("RefreshAccessToken", 503, 0)
				}
			},
			wantErr:   "RetryableError",
			wantCode:  503,
			wantCalls: []string{"RefreshAccessToken"},
		},
		{
			name:    "invalid NIP: BadInputError",
			in:      flow.ChallengeInput{NIP: "0123456789"},
			wantErr: "BadInputError",
		},
		{
			name: "no credentials secret: AuthFailedError",
			in:   flow.ChallengeInput{NIP: "1111111111"},
			// The fake only holds the credentials of nip.
			wantErr: "AuthFailedError",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = secrets.AuthToken
			}
			e := newEnv(t, method)
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
					t.Errorf("Handle(%+v) = %+v, want %+v", tt.in, got, tt.want)
				}
			} else {
				if err == nil {
					t.Fatalf("Handle(%+v) = %+v, want a %s", tt.in, got, tt.wantErr)
				}
				if et := flow.ErrorType(err); et != tt.wantErr {
					t.Errorf("Handle(%+v) errorType %q (%v), want %q", tt.in, et, err, tt.wantErr)
				}
				r, ok := flow.ReasonOf(err)
				if !ok || r.Stage != "challenge" || r.Code != tt.wantCode {
					t.Errorf("reason %+v, want stage challenge and code %d", r, tt.wantCode)
				}
				if got != (flow.AuthState{}) {
					t.Errorf("output %+v with an error, want the zero AuthState", got)
				}
			}
			if !reflect.DeepEqual(e.ksef.calls, tt.wantCalls) && (len(e.ksef.calls) > 0 || len(tt.wantCalls) > 0) {
				t.Errorf("KSeF calls %v, want %v", e.ksef.calls, tt.wantCalls)
			}
			if tt.check != nil {
				tt.check(t, e)
			}
			if !strings.Contains(e.logs.String(), `"nip":"`+tt.in.NIP+`"`) {
				t.Errorf("logs do not name the NIP: %s", e.logs.String())
			}
			assertNoSecrets(t, e, got, err)
		})
	}
}

// TestHandleRateLimitWait checks that a 429 carries KSeF's Retry-After, in whole seconds rounded
// up, plus at most as much again of jitter (flow.ThrottleWait), to the state machine's Wait state.
func TestHandleRateLimitWait(t *testing.T) {
	for _, tt := range []struct {
		retryAfter time.Duration
		want       int // the least wait; the jitter adds up to as much again
	}{
		{7 * time.Second, 7},
		{1500 * time.Millisecond, 2},
		{0, 1},
	} {
		e := newEnv(t, secrets.AuthToken)
		e.ksef.challenge = func() (*ksef.Challenge, error) {
			err := apiError("Challenge", 429, 0)
			err.RetryAfter = tt.retryAfter
			return nil, err
		}
		_, err := e.h.Handle(t.Context(), flow.ChallengeInput{NIP: nip})
		var rl *flow.RateLimitedError
		if !errors.As(err, &rl) || rl.RetryAfterSeconds < tt.want || rl.RetryAfterSeconds > 2*tt.want {
			t.Errorf("Retry-After %s: error %v, want a RateLimitedError with retryAfterSeconds %d to %d", tt.retryAfter, err, tt.want, 2*tt.want)
			continue
		}
		var back flow.Reason
		if err := json.Unmarshal([]byte(rl.Error()), &back); err != nil || back.RetryAfterSeconds != rl.RetryAfterSeconds {
			t.Errorf("Retry-After %s: message %s does not carry retryAfterSeconds %d", tt.retryAfter, rl.Error(), rl.RetryAfterSeconds)
		}
	}
}

// TestHandleBurstOneLogin runs executions for one NIP one after another in separate execution
// environments (each with its own Store): the first logs in, the others join its login, and
// once the login is redeemed every one of them is ready without another KSeF call.
func TestHandleBurstOneLogin(t *testing.T) {
	e := newEnv(t, secrets.AuthToken)
	newExecution := func() (*handler, *fakeAuth) {
		store := secrets.New(e.sm, secrets.WithClock(func() time.Time { return e.now }))
		fk := &fakeAuth{t: t, challenge: e.ksef.challenge, withToken: e.ksef.withToken}
		return &handler{
			store: store,
			clients: func(ctx context.Context, nip string) (authClient, *secrets.Credentials, error) {
				c, err := store.Credentials(ctx, nip)
				return fk, c, err
			},
			now: func() time.Time { return e.now },
			log: slog.New(slog.DiscardHandler),
		}, fk
	}
	type execution struct {
		h *handler
		f *fakeAuth
	}
	var execs []execution
	for range 3 {
		h, f := newExecution()
		execs = append(execs, execution{h, f})
	}

	for i, x := range execs {
		got, err := x.h.Handle(t.Context(), flow.ChallengeInput{NIP: nip})
		if err != nil || got.Ready || got.ReferenceNumber != authRef || got.StatusCode != 100 {
			t.Fatalf("execution %d: %+v, %v; want pending on %s", i, got, err, authRef)
		}
	}
	if n := len(execs[0].f.calls) + len(execs[1].f.calls) + len(execs[2].f.calls); n != 2 || len(execs[0].f.calls) != 2 {
		t.Errorf("KSeF calls %v %v %v, want one login (challenge and token) by the first execution",
			execs[0].f.calls, execs[1].f.calls, execs[2].f.calls)
	}

	// The last execution sees status 200 and redeems; the others then find the tokens stored.
	e.now = t0.Add(5 * time.Second)
	execs[2].f.redeem = func(ksef.Secret) (*ksef.AuthTokens, error) {
		return &ksef.AuthTokens{
			AccessToken:  ksef.Token{Token: redeemed, ValidUntil: t0.Add(15 * time.Minute)},
			RefreshToken: ksef.Token{Token: redeemedRenew, ValidUntil: t0.Add(7 * 24 * time.Hour)},
		}, nil
	}
	if got, err := execs[2].h.Handle(t.Context(), flow.ChallengeInput{NIP: nip, StatusCode: 200}); err != nil || !got.Ready {
		t.Fatalf("redeeming execution: %+v, %v; want ready", got, err)
	}
	for i, x := range execs[:2] {
		before := len(x.f.calls)
		got, err := x.h.Handle(t.Context(), flow.ChallengeInput{NIP: nip, StatusCode: 200})
		if err != nil || !got.Ready {
			t.Errorf("execution %d after the redeem: %+v, %v; want ready", i, got, err)
		}
		if calls := x.f.calls[before:]; len(calls) != 0 {
			t.Errorf("execution %d after the redeem called KSeF: %v", i, calls)
		}
	}
}

// TestHandleLeaseLostWhileStarting: KSeF answers the challenge and the login request more slowly
// than the claim lease lasts; meanwhile another execution finds the lease stale and takes the
// login over. Recording this execution's login must not overwrite the other's: it follows the
// login that took over instead.
func TestHandleLeaseLostWhileStarting(t *testing.T) {
	winner := &secrets.PendingAuth{
		ReferenceNumber:     otherRef,
		AuthenticationToken: ksef.Token{Token: authToken, ValidUntil: t0.Add(11 * time.Minute)},
		StartedAt:           t0.Add(leaseTTL + time.Second),
		Method:              secrets.AuthToken,
	}
	tests := []struct {
		name     string
		takeOver func(st *secrets.State) // what the other execution did to the state meanwhile
		want     flow.AuthState
		wantKept func(st secrets.State) bool
	}{
		{
			name:     "the other execution started its login",
			takeOver: func(st *secrets.State) { st.PendingAuth = winner },
			want:     flow.AuthState{ReferenceNumber: otherRef, Method: "token", WaitSeconds: 1, StatusCode: 100},
			wantKept: func(st secrets.State) bool { return reflect.DeepEqual(st.PendingAuth, winner) },
		},
		{
			name: "the other execution claimed the login",
			takeOver: func(st *secrets.State) {
				st.PendingAuth = &secrets.PendingAuth{StartedAt: winner.StartedAt, Method: secrets.AuthToken}
			},
			want: flow.AuthState{Method: "token", WaitSeconds: 1, StatusCode: 100},
			wantKept: func(st secrets.State) bool {
				return st.PendingAuth != nil && st.PendingAuth.ReferenceNumber == "" && st.PendingAuth.StartedAt.Equal(winner.StartedAt)
			},
		},
		{
			name: "the other execution finished its login",
			takeOver: func(st *secrets.State) {
				st.PendingAuth = nil
				st.AccessToken = ksef.Token{Token: redeemed, ValidUntil: t0.Add(20 * time.Minute)}
				st.RefreshToken = ksef.Token{Token: redeemedRenew, ValidUntil: t0.Add(7 * 24 * time.Hour)}
			},
			want:     flow.AuthState{Method: "token", WaitSeconds: 1, StatusCode: 100},
			wantKept: func(st secrets.State) bool { return st.PendingAuth == nil && st.AccessToken.Token == redeemed },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, secrets.AuthToken)
			other := secrets.New(e.sm, secrets.WithClock(func() time.Time { return e.now }))
			e.ksef.withToken = func(ksef.KSeFTokenAuth) (*ksef.AuthInit, error) {
				e.now = t0.Add(leaseTTL + 2*time.Second)
				if _, err := other.Update(t.Context(), nip, func(st *secrets.State) error {
					tt.takeOver(st)
					return nil
				}); err != nil {
					t.Errorf("other execution: %v", err)
				}
				return authInit(), nil
			}

			got, err := e.h.Handle(t.Context(), flow.ChallengeInput{NIP: nip})

			if err != nil || got != tt.want {
				t.Errorf("Handle = %+v, %v; want %+v", got, err, tt.want)
			}
			if st := e.state(t); !tt.wantKept(st) {
				t.Errorf("stored pending login %+v (tokens stored: %t): the other execution's state was overwritten",
					st.PendingAuth, st.AccessToken.Token != "")
			}
			if want := []string{"Challenge", "AuthenticateWithKSeFToken"}; !reflect.DeepEqual(e.ksef.calls, want) {
				t.Errorf("KSeF calls %v, want %v", e.ksef.calls, want)
			}
			if !strings.Contains(e.logs.String(), "login claim lost") || !strings.Contains(e.logs.String(), authRef) {
				t.Errorf("logs do not tell that the login %s was abandoned: %s", authRef, e.logs.String())
			}
			assertNoSecrets(t, e, got, err)
		})
	}
}

// TestHandleTokensSavedDuringTheCall: a new execution finds no tokens, and before it reads the
// state again another execution redeems the login in progress and stores the tokens (which
// clears the pending login). It must be ready with those tokens, not start a second login.
func TestHandleTokensSavedDuringTheCall(t *testing.T) {
	e := newEnv(t, secrets.AuthToken)
	e.sm.SetJSON(t, stateSecret, &secrets.State{PendingAuth: &secrets.PendingAuth{
		ReferenceNumber:     otherRef,
		AuthenticationToken: ksef.Token{Token: authToken, ValidUntil: t0.Add(9 * time.Minute)},
		StartedAt:           t0.Add(-3 * time.Second),
		Method:              secrets.AuthToken,
	}})
	other := secrets.New(e.sm, secrets.WithClock(func() time.Time { return t0 }))
	reads, saved := 0, false
	e.sm.BeforeGet = func(name string) error {
		if name != stateSecret || saved {
			return nil
		}
		if reads++; reads == 2 {
			saved = true
			if _, err := other.SaveTokens(t.Context(), nip, ksef.AuthTokens{
				AccessToken:  ksef.Token{Token: redeemed, ValidUntil: t0.Add(15 * time.Minute)},
				RefreshToken: ksef.Token{Token: redeemedRenew, ValidUntil: t0.Add(7 * 24 * time.Hour)},
			}); err != nil {
				t.Errorf("other execution: %v", err)
			}
		}
		return nil
	}

	got, err := e.h.Handle(t.Context(), flow.ChallengeInput{NIP: nip})

	if err != nil || got != (flow.AuthState{Ready: true, StatusCode: 200}) {
		t.Errorf("Handle = %+v, %v; want ready", got, err)
	}
	if !saved {
		t.Fatal("the other execution never saved its tokens: the handler read the state fewer than twice")
	}
	if len(e.ksef.calls) != 0 {
		t.Errorf("KSeF calls %v, want none: the other execution's login is done", e.ksef.calls)
	}
	if st := e.state(t); st.PendingAuth != nil || st.AccessToken.Token != redeemed {
		t.Errorf("stored state: pending %+v, the redeemed token kept %t; want no pending login and the redeemed token", st.PendingAuth, st.AccessToken.Token == redeemed)
	}
	assertNoSecrets(t, e, got, err)
}

// TestHandleReauthenticationReadsTheState: KSeF refused the access token this environment holds
// in memory; the send function dropped it, a refresh proved the refresh token dead too, and the
// state now holds no tokens. Sent back to Authenticate (statusCode 200 from its last result),
// the function must not answer ready from memory: it logs in.
func TestHandleReauthenticationReadsTheState(t *testing.T) {
	e := newEnv(t, secrets.AuthToken)
	e.sm.SetJSON(t, stateSecret, &secrets.State{
		AccessToken:  ksef.Token{Token: accessToken, ValidUntil: t0.Add(15 * time.Minute)},
		RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(7 * 24 * time.Hour)},
	})
	got, err := e.h.Handle(t.Context(), flow.ChallengeInput{NIP: nip})
	if err != nil || !got.Ready {
		t.Fatalf("first Handle = %+v, %v; want ready", got, err)
	}
	// Another execution environment removes the dead tokens.
	other := secrets.New(e.sm, secrets.WithClock(func() time.Time { return t0 }))
	if _, err := other.Update(t.Context(), nip, func(st *secrets.State) error {
		st.AccessToken, st.RefreshToken = ksef.Token{}, ksef.Token{}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e.ksef.withToken = func(ksef.KSeFTokenAuth) (*ksef.AuthInit, error) { return authInit(), nil }

	got, err = e.h.Handle(t.Context(), flow.ChallengeInput{NIP: nip, Attempt: 0, StatusCode: 200})

	want := flow.AuthState{ReferenceNumber: authRef, Method: "token", WaitSeconds: 1, StatusCode: 100}
	if err != nil || got != want {
		t.Errorf("Handle after the tokens were removed = %+v, %v; want %+v (a login started)", got, err, want)
	}
	if want := []string{"Challenge", "AuthenticateWithKSeFToken"}; !reflect.DeepEqual(e.ksef.calls, want) {
		t.Errorf("KSeF calls %v, want %v", e.ksef.calls, want)
	}
	assertNoSecrets(t, e, got, err)
}
