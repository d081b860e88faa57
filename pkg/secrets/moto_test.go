package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ksef-serverless/ksef-serverless/internal/motoserver"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// The tests in this file run against a local moto server (see internal/motoserver); they are
// skipped when moto_server is not installed, and fail then if CI is set.

func TestMain(m *testing.M) { motoserver.Main(m) }

// motoClient returns a Secrets Manager client of a freshly reset moto server.
func motoClient(t *testing.T) *secretsmanager.Client {
	t.Helper()
	srv := motoserver.Start(t)
	srv.Reset(t)
	return secretsmanager.NewFromConfig(motoserver.AWSConfig(t, srv.Endpoint))
}

// countingAPI counts calls and can run a hook before each write.
type countingAPI struct {
	API
	gets, puts, creates atomic.Int64
	mu                  sync.Mutex
	beforeWrite         func()
}

func (c *countingAPI) GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, o ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	c.gets.Add(1)
	return c.API.GetSecretValue(ctx, in, o...)
}

func (c *countingAPI) PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, o ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	c.puts.Add(1)
	c.hook()
	return c.API.PutSecretValue(ctx, in, o...)
}

func (c *countingAPI) CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, o ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	c.creates.Add(1)
	c.hook()
	return c.API.CreateSecret(ctx, in, o...)
}

func (c *countingAPI) hook() {
	c.mu.Lock()
	h := c.beforeWrite
	c.beforeWrite = nil // once
	c.mu.Unlock()
	if h != nil {
		h()
	}
}

// TestMotoVersioningSemantics checks, against moto, the Secrets Manager behaviour the
// compare-and-swap is built on.
func TestMotoVersioningSemantics(t *testing.T) {
	sm := motoClient(t)
	ctx := t.Context()
	name := aws.String("cas-check")
	const v0, v1 = "00000000-0000-8000-8000-000000000000", "11111111-1111-8111-8111-111111111111"

	if _, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: name}); !isAWSError[*types.ResourceNotFoundException](err, "ResourceNotFoundException") {
		t.Fatalf("get missing secret: err = %v, want ResourceNotFoundException", err)
	}
	out, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: name, ClientRequestToken: aws.String(v0), SecretString: aws.String("a")})
	if err != nil || aws.ToString(out.VersionId) != v0 {
		t.Fatalf("create: version %q, err %v; want %s", aws.ToString(out.VersionId), err, v0)
	}
	_, err = sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: name, ClientRequestToken: aws.String(v1), SecretString: aws.String("z")})
	if !isAWSError[*types.ResourceExistsException](err, "ResourceExistsException") {
		t.Fatalf("create again: err = %v, want ResourceExistsException", err)
	}
	for i, tt := range []struct {
		token, value string
		wantErr      bool
	}{
		{v1, "b", false}, // new version
		{v1, "b", false}, // same token, same value: idempotent
		{v1, "c", true},  // same token, other value: the loser of a race
		{v0, "d", true},  // a stale writer's token
	} {
		_, err := sm.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{SecretId: name, ClientRequestToken: aws.String(tt.token), SecretString: aws.String(tt.value)})
		var exists *types.ResourceExistsException
		if got := errors.As(err, &exists); got != tt.wantErr || (!tt.wantErr && err != nil) {
			t.Errorf("put %d (%s, %q): err = %v, want ResourceExistsException %v", i, tt.token, tt.value, err, tt.wantErr)
		}
	}
	got, err := sm.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: name})
	if err != nil || aws.ToString(got.SecretString) != "b" || aws.ToString(got.VersionId) != v1 {
		t.Fatalf("current = %q at %q (%v), want \"b\" at %s", aws.ToString(got.SecretString), aws.ToString(got.VersionId), err, v1)
	}
}

func TestMotoStore(t *testing.T) {
	sm := motoClient(t)
	ctx := t.Context()
	c := newClock()
	s := testStore(sm, c, "c-a", 0)

	// Credentials written by the onboarding tool.
	if _, err := s.Credentials(ctx, testNIP); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing credentials: err = %v, want ErrNotFound", err)
	}
	doc := credsJSON(t, map[string]any{"nip": testNIP, "environment": "test", "baseUrl": "http://127.0.0.1:8080/v2", "authMethod": "token", "ksefToken": testKSeFToken})
	if _, err := sm.CreateSecret(ctx, &secretsmanager.CreateSecretInput{Name: aws.String("ksef/" + testNIP + "/credentials"), SecretString: aws.String(string(doc))}); err != nil {
		t.Fatal(err)
	}
	creds, err := s.Credentials(ctx, testNIP)
	if err != nil || creds.KSeFToken != testKSeFToken || creds.APIBaseURL() != "http://127.0.0.1:8080/v2" {
		t.Fatalf("Credentials = %+v, %v", creds, err)
	}

	// The state secret does not exist: it reads as zero and the first write creates it.
	if st, err := s.State(ctx, testNIP); err != nil || st.version != "" {
		t.Fatalf("State of a missing secret = %+v, %v; want the zero State", st, err)
	}
	st, err := s.Update(ctx, testNIP, func(st *State) error {
		st.PendingAuth = &PendingAuth{ReferenceNumber: "20260302-AU-0000000000-0000000000-00", Method: AuthToken, StartedAt: c.Now()}
		return nil
	})
	if err != nil {
		t.Fatalf("first Update: %v", err)
	}
	if want := versionToken(stateName, ""); st.version != want {
		t.Errorf("first version = %q, want %q", st.version, want)
	}
	st2, err := s.SaveTokens(ctx, testNIP, ksef.AuthTokens{
		AccessToken:  ksef.Token{Token: "SECRET-access", ValidUntil: c.Now().Add(tokenLife)},
		RefreshToken: ksef.Token{Token: "SECRET-refresh", ValidUntil: c.Now().Add(refreshLife)},
	})
	if err != nil {
		t.Fatalf("SaveTokens: %v", err)
	}
	if want := versionToken(stateName, st.version); st2.version != want {
		t.Errorf("second version = %q, want %q", st2.version, want)
	}

	// Another process sees it all.
	other := testStore(sm, c, "c-b", 0)
	got, err := other.State(ctx, testNIP)
	if err != nil {
		t.Fatal(err)
	}
	if got.PendingAuth != nil || got.AccessToken.Token != "SECRET-access" || got.version != st2.version {
		t.Errorf("State from another Store = %+v", got)
	}
	tok, err := other.AccessToken(ctx, testNIP, &refresher{now: c.Now, life: tokenLife})
	if err != nil || tok != "SECRET-access" {
		t.Errorf("AccessToken = %q, %v; want the saved token", tok.Reveal(), err)
	}
}

func TestMotoLostRaceIsRetried(t *testing.T) {
	sm := motoClient(t)
	ctx := t.Context()
	c := newClock()
	api := &countingAPI{API: sm}
	a, b := testStore(api, c, "c-a", 0), testStore(sm, c, "c-b", 0)
	if _, err := a.Update(ctx, testNIP, func(st *State) error { st.Session = &OnlineSession{InvoicesSent: 1}; return nil }); err != nil {
		t.Fatal(err)
	}
	api.beforeWrite = func() {
		if _, err := b.Update(ctx, testNIP, func(st *State) error { st.Session.InvoicesSent += 10; return nil }); err != nil {
			t.Errorf("competing Update: %v", err)
		}
	}
	calls := 0
	got, err := a.Update(ctx, testNIP, func(st *State) error { calls++; st.Session.InvoicesSent++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || got.Session.InvoicesSent != 12 {
		t.Errorf("fn calls %d, InvoicesSent %d; want 2, 12", calls, got.Session.InvoicesSent)
	}
}

func TestMotoConcurrentWriters(t *testing.T) {
	// Writers in 4 Stores race to create the missing secret and then to count; nothing is lost.
	sm := motoClient(t)
	const writers, increments = 4, 5
	c := newClock()
	api := &countingAPI{API: sm}
	var wg sync.WaitGroup
	for w := range writers {
		s := testStore(api, c, "c-"+string(rune('a'+w)), 0)
		s.maxAttempts = 100
		wg.Go(func() {
			for range increments {
				if _, err := s.Update(t.Context(), testNIP, func(st *State) error {
					if st.Session == nil {
						st.Session = &OnlineSession{}
					}
					st.Session.InvoicesSent++
					return nil
				}); err != nil {
					t.Errorf("Update: %v", err)
				}
			}
		})
	}
	wg.Wait()
	st, err := testStore(sm, c, "c-z", 0).LatestState(t.Context(), testNIP)
	if err != nil {
		t.Fatal(err)
	}
	if st.Session == nil || st.Session.InvoicesSent != writers*increments {
		t.Fatalf("InvoicesSent = %+v, want %d", st.Session, writers*increments)
	}
	t.Logf("%d increments by %d writers on moto: %d GetSecretValue, %d PutSecretValue, %d CreateSecret",
		writers*increments, writers, api.gets.Load(), api.puts.Load(), api.creates.Load())
}

func TestMotoSecretWithoutValue(t *testing.T) {
	// Infrastructure code may create the state secret without a value.
	sm := motoClient(t)
	if _, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(stateName)}); err != nil {
		t.Fatal(err)
	}
	s := testStore(sm, newClock(), "c-a", 0)
	if _, err := s.Update(t.Context(), testNIP, func(st *State) error { st.Session = &OnlineSession{InvoicesSent: 7}; return nil }); err != nil {
		t.Fatalf("Update: %v", err)
	}
	st, err := s.LatestState(t.Context(), testNIP)
	if err != nil || st.Session == nil || st.Session.InvoicesSent != 7 {
		t.Fatalf("LatestState = %+v, %v; want invoicesSent 7", st, err)
	}
}

func TestMotoTokenLifetimeCalls(t *testing.T) {
	// One access-token lifetime for 5 Stores x 4 goroutines on moto; count the calls.
	sm := motoClient(t)
	const stores, perStore = 5, 4
	c := newClock()
	api := &countingAPI{API: sm}
	var fleet []*Store
	for i := range stores {
		fleet = append(fleet, testStore(api, c, "c-"+string(rune('a'+i)), float64(i)/stores))
	}
	if _, err := fleet[0].SaveTokens(t.Context(), testNIP, ksef.AuthTokens{
		AccessToken:  ksef.Token{Token: "SECRET-access-0", ValidUntil: c.Now().Add(tokenLife)},
		RefreshToken: ksef.Token{Token: "SECRET-refresh-0", ValidUntil: c.Now().Add(refreshLife)},
	}); err != nil {
		t.Fatal(err)
	}
	r := &refresher{now: c.Now, life: tokenLife}
	run := func() {
		var wg sync.WaitGroup
		for _, s := range fleet {
			for range perStore {
				wg.Go(func() {
					if _, err := s.AccessToken(t.Context(), testNIP, r); err != nil {
						t.Errorf("AccessToken: %v", err)
					}
				})
			}
		}
		wg.Wait()
	}
	run() // warm-up
	expiry := c.Now().Add(tokenLife)
	for lifetime := 1; lifetime <= 2; lifetime++ {
		g0, p0, r0 := api.gets.Load(), api.puts.Load(), r.calls.Load()
		for left := margin; left > margin/4; left -= time.Second {
			c.Set(expiry.Add(-left))
			run()
		}
		if n := r.calls.Load() - r0; n != 1 {
			t.Errorf("lifetime %d: refresh calls = %d, want 1", lifetime, n)
		}
		if n := api.puts.Load() - p0; n != 1 {
			t.Errorf("lifetime %d: PutSecretValue calls = %d, want 1", lifetime, n)
		}
		if n := api.gets.Load() - g0; n != stores {
			t.Errorf("lifetime %d: GetSecretValue calls = %d, want %d", lifetime, n, stores)
		}
		t.Logf("lifetime %d on moto, %d stores: %d refresh, %d GetSecretValue, %d PutSecretValue",
			lifetime, stores, r.calls.Load()-r0, api.gets.Load()-g0, api.puts.Load()-p0)
		var st State
		out, err := sm.GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: aws.String(stateName)})
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &st); err != nil {
			t.Fatal(err)
		}
		expiry = st.AccessToken.ValidUntil
	}
}
