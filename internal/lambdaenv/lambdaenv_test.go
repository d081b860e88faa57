package lambdaenv_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/lambdaenv"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const (
	nip          = "9999999999"
	accessToken  = "SECRET-access-token-93d0"
	refreshToken = "SECRET-refresh-token-5a77"
	refreshed    = "SECRET-access-token-refreshed-e3f8"
	ksefToken    = "20260301-EC-0A1B2C3D4E-5F6A7B8C9D-11|nip-9999999999|SECRETksefTokenB7E1"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

func TestLoadConfig(t *testing.T) {
	full := map[string]string{
		"KSEF_ENVIRONMENT":        "demo",
		"KSEF_BASE_URL":           "http://127.0.0.1:8080/v2/",
		"KSEF_CREDENTIALS_SECRET": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:ksef/{nip}/credentials-AbCdEf",
		"KSEF_STATE_SECRET":       "ksef/{nip}/session",
		"INVOICE_BUCKET":          "ksef-invoices-123456789012",
		"RESULT_PREFIX":           "out",
		"S3_FORCE_PATH_STYLE":     "true",
		"INBOX_PREFIX":            "in",
		"KSEF_NIP":                "5265877635",
		"STATE_MACHINE_ARN":       "arn:aws:states:eu-central-1:123456789012:stateMachine:invoices",
		"LEDGER_TABLE":            "ksef-ledger",
		"EVENT_BUS_NAME":          "default",
	}
	minimal := map[string]string{
		"KSEF_CREDENTIALS_SECRET": "ksef/{nip}/credentials",
		"KSEF_STATE_SECRET":       "ksef/{nip}/session",
		"INVOICE_BUCKET":          "invoices",
	}
	without := func(m map[string]string, keys ...string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = v
		}
		for _, k := range keys {
			delete(out, k)
		}
		return out
	}
	with := func(m map[string]string, k, v string) map[string]string {
		out := without(m)
		out[k] = v
		return out
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    lambdaenv.Config
		wantErr []string // each in the error message
	}{
		{
			name: "everything set",
			env:  full,
			want: lambdaenv.Config{
				Environment:       ksef.Demo,
				BaseURL:           "http://127.0.0.1:8080/v2",
				CredentialsSecret: full["KSEF_CREDENTIALS_SECRET"],
				StateSecret:       "ksef/{nip}/session",
				Bucket:            "ksef-invoices-123456789012",
				ResultPrefix:      "out/",
				S3PathStyle:       true,
				InboxPrefix:       "in/",
				NIP:               "5265877635",
				StateMachineARN:   "arn:aws:states:eu-central-1:123456789012:stateMachine:invoices",
				LedgerTable:       "ksef-ledger",
				EventBus:          "default",
			},
		},
		{
			name: "defaults: test environment, results/ prefix, virtual-hosted S3",
			env:  minimal,
			want: lambdaenv.Config{
				Environment:       ksef.Test,
				CredentialsSecret: "ksef/{nip}/credentials",
				StateSecret:       "ksef/{nip}/session",
				Bucket:            "invoices",
				ResultPrefix:      "results/",
				InboxPrefix:       "inbox/",
			},
		},
		{
			name: "prefix already ending in a slash",
			env:  with(minimal, "RESULT_PREFIX", "done/"),
			want: lambdaenv.Config{
				Environment:       ksef.Test,
				CredentialsSecret: "ksef/{nip}/credentials",
				StateSecret:       "ksef/{nip}/session",
				Bucket:            "invoices",
				ResultPrefix:      "done/",
				InboxPrefix:       "inbox/",
			},
		},
		{
			name:    "invalid stack NIP",
			env:     with(minimal, "KSEF_NIP", "0123456789"),
			wantErr: []string{`KSEF_NIP "0123456789"`},
		},
		{
			name:    "results under the inbox",
			env:     with(with(minimal, "INBOX_PREFIX", "inbox/"), "RESULT_PREFIX", "inbox/results/"),
			wantErr: []string{"overlap"},
		},
		{
			name:    "the inbox under the results",
			env:     with(minimal, "INBOX_PREFIX", "results/in/"),
			wantErr: []string{"overlap"},
		},
		{
			name:    "unknown environment",
			env:     with(minimal, "KSEF_ENVIRONMENT", "production"),
			wantErr: []string{"KSEF_ENVIRONMENT", `"production"`},
		},
		{
			name:    "every missing variable named at once",
			env:     map[string]string{},
			wantErr: []string{"KSEF_CREDENTIALS_SECRET is not set", "KSEF_STATE_SECRET is not set", "INVOICE_BUCKET is not set"},
		},
		{
			name:    "bucket missing",
			env:     without(full, "INVOICE_BUCKET"),
			wantErr: []string{"INVOICE_BUCKET is not set"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := lambdaenv.LoadConfig(func(k string) string { return tt.env[k] })
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("LoadConfig(%v) = %+v, want an error", tt.env, got)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("LoadConfig(%v) error %q, want it to contain %q", tt.env, err, s)
					}
				}
				if got != (lambdaenv.Config{}) {
					t.Errorf("LoadConfig(%v) = %+v with an error, want the zero Config", tt.env, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig(%v): %v", tt.env, err)
			}
			if got != tt.want {
				t.Errorf("LoadConfig(%v) =\n%+v, want\n%+v", tt.env, got, tt.want)
			}
		})
	}
}

func TestSecretNames(t *testing.T) {
	c := lambdaenv.Config{
		CredentialsSecret: "arn:aws:secretsmanager:eu-central-1:123456789012:secret:ksef/{nip}/credentials-AbCdEf",
		StateSecret:       "ksef/{nip}/session",
	}
	creds, state := c.SecretNames(nip)
	if want := "arn:aws:secretsmanager:eu-central-1:123456789012:secret:ksef/9999999999/credentials-AbCdEf"; creds != want {
		t.Errorf("credentials secret %q, want %q", creds, want)
	}
	if want := "ksef/9999999999/session"; state != want {
		t.Errorf("state secret %q, want %q", state, want)
	}
	// One secret per stack (template.yaml passes the ARNs, without a placeholder).
	c = lambdaenv.Config{CredentialsSecret: "arn:creds", StateSecret: "arn:state"}
	if creds, state := c.SecretNames(nip); creds != "arn:creds" || state != "arn:state" {
		t.Errorf("SecretNames without placeholder = %q, %q; want the names unchanged", creds, state)
	}
}

func TestNew(t *testing.T) {
	lambdaenv.IsolateAWS(t, "")
	for _, pathStyle := range []bool{false, true} {
		cfg := lambdaenv.Config{Environment: ksef.Test, CredentialsSecret: "c", StateSecret: "s", Bucket: "b", ResultPrefix: "results/", S3PathStyle: pathStyle}
		env, err := lambdaenv.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
		if env.Config != cfg || env.S3 == nil || env.Secrets == nil || env.KSeF == nil || env.Log == nil || env.StepFunctions == nil {
			t.Errorf("New(%+v) = %+v, want every field set", cfg, env)
		}
		if env.Ledger != nil || env.Events != nil {
			t.Errorf("New without LEDGER_TABLE and EVENT_BUS_NAME: ledger %v, events %v; want none", env.Ledger, env.Events)
		}
		if o := env.S3.Options(); o.UsePathStyle != pathStyle || o.Region != "eu-central-1" {
			t.Errorf("S3 client path style %t in %s, want %t in eu-central-1", o.UsePathStyle, o.Region, pathStyle)
		}
	}
	cfg := lambdaenv.Config{Environment: ksef.Test, CredentialsSecret: "c", StateSecret: "s", Bucket: "b", LedgerTable: "ksef-ledger", EventBus: "invoices"}
	env, err := lambdaenv.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if env.Ledger == nil || env.Ledger.Table() != "ksef-ledger" || env.Events == nil {
		t.Errorf("New with LEDGER_TABLE and EVENT_BUS_NAME: ledger %v, events %v; want both", env.Ledger, env.Events)
	}
}

var _ secrets.API = (*secretstest.SecretsManager)(nil)

// fakeKSeF answers the KSeF requests a pool's clients make, recording each one.
type fakeKSeF struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (f *fakeKSeF) Do(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r)
	f.mu.Unlock()
	var status int
	var body string
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/auth/challenge"):
		status, body = 200, `{"challenge":"20260302-CR-1111111111-2222222222-33","timestamp":"2026-03-02T10:00:00.000Z","timestampMs":1772445600000,"clientIp":"192.0.2.1"}`
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/auth/token/refresh"):
		if r.Header.Get("Authorization") != "Bearer "+refreshToken {
			status, body = 401, `{"title":"Unauthorized","status":401,"detail":"wrong token"}`
			break
		}
		status, body = 200, `{"accessToken":{"token":"`+refreshed+`","validUntil":"2026-03-02T10:15:00Z"}}`
	case r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/sessions/"):
		status, body = 200, `{"ordinalNumber":1,"referenceNumber":"20260302-EE-2C3E6C8000-1A2B3C4D5E-11","status":{"code":150,"description":"Trwa przetwarzanie"}}`
	default:
		status, body = 404, `{"title":"Not Found","status":404}`
	}
	return &http.Response{
		StatusCode: status,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    r,
	}, nil
}

func (f *fakeKSeF) requests() []*http.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...)
}

func credentials(env ksef.Environment, baseURL string) secrets.Credentials {
	return secrets.Credentials{NIP: nip, Environment: env, BaseURL: baseURL, AuthMethod: secrets.AuthToken, KSeFToken: ksefToken}
}

func newPool(t *testing.T, cfg lambdaenv.Config, creds *secrets.Credentials, log *slog.Logger) (*lambdaenv.ClientPool, *secretstest.SecretsManager, *fakeKSeF) {
	t.Helper()
	sm := secretstest.New()
	if creds != nil {
		sm.SetJSON(t, "ksef/"+nip+"/credentials", creds)
	}
	store := secrets.New(sm, secrets.WithClock(func() time.Time { return t0 }), secrets.WithLogger(log))
	hc := &fakeKSeF{}
	return lambdaenv.NewClientPool(cfg, store, log, hc), sm, hc
}

func TestClientPoolBaseURL(t *testing.T) {
	tests := []struct {
		name     string
		cfg      string // KSEF_BASE_URL
		creds    string // the credentials' baseUrl
		wantBase string
	}{
		{"environment's API", "", "", "https://api-test.ksef.mf.gov.pl/v2"},
		{"the credentials' URL", "", "http://127.0.0.1:9090/v2", "http://127.0.0.1:9090/v2"},
		{"the functions' URL wins", "http://127.0.0.1:8080/v2", "http://127.0.0.1:9090/v2", "http://127.0.0.1:8080/v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := credentials(ksef.Test, tt.creds)
			pool, _, hc := newPool(t, lambdaenv.Config{Environment: ksef.Test, BaseURL: tt.cfg}, &c, slog.New(slog.DiscardHandler))
			client, got, err := pool.Client(t.Context(), nip)
			if err != nil {
				t.Fatalf("Client: %v", err)
			}
			if got.KSeFToken != ksefToken || got.AuthMethod != secrets.AuthToken {
				t.Errorf("credentials %v, want the stored ones", got)
			}
			if client.BaseURL() != tt.wantBase || client.QRBaseURL() != "https://qr-test.ksef.mf.gov.pl" {
				t.Errorf("client base URL %s (QR %s), want %s", client.BaseURL(), client.QRBaseURL(), tt.wantBase)
			}
			if _, err := client.Challenge(t.Context()); err != nil {
				t.Fatalf("Challenge: %v", err)
			}
			reqs := hc.requests()
			if len(reqs) != 1 || reqs[0].URL.String() != tt.wantBase+"/auth/challenge" {
				t.Fatalf("requests %v, want one POST %s/auth/challenge", reqs, tt.wantBase)
			}
			if ua, ef := reqs[0].Header.Get("User-Agent"), reqs[0].Header.Get("X-Error-Format"); ua != "ksef-serverless" || ef != "problem-details" {
				t.Errorf("User-Agent %q, X-Error-Format %q; want ksef-serverless and problem-details", ua, ef)
			}
		})
	}
}

func TestClientPoolOneClientPerNIP(t *testing.T) {
	c := credentials(ksef.Test, "")
	pool, sm, _ := newPool(t, lambdaenv.Config{Environment: ksef.Test}, &c, slog.New(slog.DiscardHandler))
	other := c
	other.NIP = "1111111111"
	sm.SetJSON(t, "ksef/1111111111/credentials", other)

	a1, _, err := pool.Client(t.Context(), nip)
	if err != nil {
		t.Fatal(err)
	}
	a2, _, err := pool.Client(t.Context(), nip)
	if err != nil {
		t.Fatal(err)
	}
	b, creds, err := pool.Client(t.Context(), "1111111111")
	if err != nil {
		t.Fatal(err)
	}
	if a1 != a2 {
		t.Error("two clients for one NIP, want the first one kept")
	}
	if a1 == b || creds.NIP != "1111111111" {
		t.Errorf("NIP 1111111111 got the client of %s (credentials of %s)", nip, creds.NIP)
	}
}

func TestClientPoolErrors(t *testing.T) {
	t.Run("credentials missing", func(t *testing.T) {
		pool, _, _ := newPool(t, lambdaenv.Config{Environment: ksef.Test}, nil, slog.New(slog.DiscardHandler))
		if _, _, err := pool.Client(t.Context(), nip); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("Client error %v, want secrets.ErrNotFound", err)
		}
	})
	t.Run("credentials for another environment", func(t *testing.T) {
		c := credentials(ksef.Demo, "")
		pool, _, hc := newPool(t, lambdaenv.Config{Environment: ksef.Test}, &c, slog.New(slog.DiscardHandler))
		_, _, err := pool.Client(t.Context(), nip)
		if !errors.Is(err, lambdaenv.ErrEnvironmentMismatch) || !strings.Contains(err.Error(), `"demo"`) {
			t.Errorf("Client error %v, want ErrEnvironmentMismatch naming demo", err)
		}
		if n := len(hc.requests()); n != 0 {
			t.Errorf("%d KSeF requests, want none", n)
		}
	})
	t.Run("NIP the store refuses", func(t *testing.T) {
		pool, _, _ := newPool(t, lambdaenv.Config{Environment: ksef.Test}, nil, slog.New(slog.DiscardHandler))
		if _, _, err := pool.Client(t.Context(), "../credentials"); err == nil {
			t.Error("Client accepted a NIP that is not one")
		}
	})
}

// TestClientPoolAccessTokens checks the wiring of the two clients: business calls carry the
// access token from the state secret, and an expired one is refreshed through the
// authentication client with the stored refresh token, then stored.
func TestClientPoolAccessTokens(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := credentials(ksef.Test, "")
	state := "ksef/" + nip + "/session"

	for _, tt := range []struct {
		name       string
		access     ksef.Token
		wantBearer string
		wantPaths  []string
	}{
		{"stored token", ksef.Token{Token: accessToken, ValidUntil: t0.Add(15 * time.Minute)}, accessToken,
			[]string{"/v2/sessions/S/invoices/I"}},
		{"expired token refreshed", ksef.Token{Token: accessToken, ValidUntil: t0.Add(-time.Minute)}, refreshed,
			[]string{"/v2/auth/token/refresh", "/v2/sessions/S/invoices/I"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pool, sm, hc := newPool(t, lambdaenv.Config{Environment: ksef.Test}, &c, log)
			sm.SetJSON(t, state, secrets.State{AccessToken: tt.access, RefreshToken: ksef.Token{Token: refreshToken, ValidUntil: t0.Add(24 * time.Hour)}})
			client, _, err := pool.Client(t.Context(), nip)
			if err != nil {
				t.Fatal(err)
			}
			before := len(hc.requests())
			st, err := client.InvoiceStatus(t.Context(), "S", "I")
			if err != nil {
				t.Fatalf("InvoiceStatus: %v", err)
			}
			if st.Status.Code != 150 {
				t.Errorf("status %+v, want 150", st.Status)
			}
			reqs := hc.requests()[before:]
			var paths []string
			for _, r := range reqs {
				paths = append(paths, r.URL.Path)
			}
			if strings.Join(paths, " ") != strings.Join(tt.wantPaths, " ") {
				t.Fatalf("requests %v, want %v", paths, tt.wantPaths)
			}
			if got := reqs[len(reqs)-1].Header.Get("Authorization"); got != "Bearer "+tt.wantBearer {
				t.Errorf("business call authorised with another token than %.16s...", tt.wantBearer)
			}
			var stored secrets.State
			if err := json.Unmarshal([]byte(sm.Value(t, state)), &stored); err != nil {
				t.Fatal(err)
			}
			if stored.AccessToken.Token.Reveal() != tt.wantBearer {
				t.Errorf("stored access token is not %.16s...", tt.wantBearer)
			}
		})
	}
	for _, s := range []string{accessToken, refreshToken, refreshed, "SECRETksefToken"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("logs reveal a secret (%.12s...): %s", s, logs.String())
		}
	}
	if !strings.Contains(logs.String(), "ksef request") {
		t.Errorf("no KSeF request logged (is the logger passed to the clients?): %s", logs.String())
	}
}
