package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const (
	tokenLife   = 15 * time.Minute
	refreshLife = 7 * 24 * time.Hour
	margin      = DefaultRefreshMargin
)

// seedState stores a state whose access token was issued at issued and lives tokenLife.
func seedState(t *testing.T, sm *secretstest.SecretsManager, issued time.Time, owner string) State {
	t.Helper()
	st := State{
		AccessToken:   ksef.Token{Token: "SECRET-access-0", ValidUntil: issued.Add(tokenLife)},
		RefreshToken:  ksef.Token{Token: "SECRET-refresh-0", ValidUntil: issued.Add(refreshLife)},
		TokenIssuedAt: issued,
		TokenOwner:    owner,
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	sm.Set(stateName, string(b))
	return st
}

func TestAccessTokenDecisions(t *testing.T) {
	start := newClock().Now()
	expiry := start.Add(tokenLife)
	tests := []struct {
		name        string
		owner       string        // TokenOwner of the stored state; "me" is the Store under test
		slot        float64       // of the Store under test
		left        time.Duration // validity left on the stored access token at the call
		noRefresh   bool          // no refresh token stored
		refreshLeft time.Duration // if non-zero, validity left on the refresh token
		refreshErr  error
		wantToken   ksef.Secret
		wantErr     error // matched with errors.Is
		wantOther   bool  // want the refresher's error, not ErrLoginRequired
		wantCalls   int64
		wantPuts    int64
	}{
		{name: "fresh token reused", owner: "me", left: 10 * time.Minute, wantToken: "SECRET-access-0"},
		{name: "owner refreshes within the margin", owner: "me", left: margin, wantToken: "SECRET-access-refreshed-1", wantCalls: 1, wantPuts: 1},
		{name: "other owner: non-owner keeps the old token above m/2", owner: "c-other", left: margin/2 + time.Second, wantToken: "SECRET-access-0"},
		{name: "other owner: non-owner refreshes at m/2 with slot 0", owner: "c-other", left: margin / 2, wantToken: "SECRET-access-refreshed-1", wantCalls: 1, wantPuts: 1},
		{name: "other owner: slot 0.99 waits below m/2", owner: "c-other", slot: 0.99, left: margin/2 - time.Second, wantToken: "SECRET-access-0"},
		{name: "other owner: slot 0.99 refreshes just above m/4", owner: "c-other", slot: 0.99, left: margin/4 + 200*time.Millisecond, wantToken: "SECRET-access-refreshed-1", wantCalls: 1, wantPuts: 1},
		{name: "no owner: slot 0 refreshes at m", owner: "", left: margin, wantToken: "SECRET-access-refreshed-1", wantCalls: 1, wantPuts: 1},
		{name: "no owner: slot 0.5 waits until 3m/4", owner: "", slot: 0.5, left: 3*margin/4 + time.Second, wantToken: "SECRET-access-0"},
		{name: "expired access token refreshed", owner: "me", left: -time.Minute, wantToken: "SECRET-access-refreshed-1", wantCalls: 1, wantPuts: 1},
		{name: "no refresh token", owner: "me", left: time.Minute, noRefresh: true, wantErr: ErrLoginRequired},
		{name: "refresh token expired", owner: "me", left: time.Minute, refreshLeft: -time.Second, wantErr: ErrLoginRequired},
		{name: "refresh token about to expire", owner: "me", left: time.Minute, refreshLeft: 5 * time.Second, wantErr: ErrLoginRequired},
		{name: "refresh fails transiently", owner: "me", left: time.Minute, refreshErr: &ksef.APIError{StatusCode: http.StatusServiceUnavailable}, wantOther: true, wantCalls: 1},
		{name: "refresh rejected with 401", owner: "me", left: time.Minute, refreshErr: &ksef.APIError{StatusCode: http.StatusUnauthorized}, wantErr: ErrLoginRequired, wantCalls: 1, wantPuts: 1},
		{name: "refresh rejected with 21301", owner: "me", left: time.Minute, refreshErr: &ksef.APIError{StatusCode: http.StatusBadRequest, Details: []ksef.ExceptionDetail{{Code: ksef.CodeNoAuthorization}}}, wantErr: ErrLoginRequired, wantCalls: 1, wantPuts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm, c := secretstest.New(), newClock()
			owner := tt.owner
			if owner == "me" {
				owner = "c-me"
			}
			st := seedState(t, sm, start, owner)
			if tt.noRefresh || tt.refreshLeft != 0 {
				st.RefreshToken = ksef.Token{}
				if tt.refreshLeft != 0 {
					st.RefreshToken = ksef.Token{Token: "SECRET-refresh-0", ValidUntil: expiry.Add(-tt.left).Add(tt.refreshLeft)}
				}
				b, _ := json.Marshal(st)
				sm.Set(stateName, string(b))
			}
			c.Set(expiry.Add(-tt.left))
			r := &refresher{now: c.Now, life: tokenLife, err: tt.refreshErr}
			s := testStore(sm, c, "c-me", tt.slot)

			got, err := s.AccessToken(t.Context(), testNIP, r)
			switch {
			case tt.wantOther:
				if err == nil || errors.Is(err, ErrLoginRequired) || !errors.Is(err, tt.refreshErr) {
					t.Errorf("err = %v, want the refresher's error, not ErrLoginRequired", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want %v", err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("err = %v, want nil", err)
			}
			if got != tt.wantToken {
				t.Errorf("token = %q, want %q", got.Reveal(), tt.wantToken.Reveal())
			}
			if n := r.calls.Load(); n != tt.wantCalls {
				t.Errorf("refresh calls = %d, want %d", n, tt.wantCalls)
			}
			if n := sm.Counts().PutsApplied; n != tt.wantPuts {
				t.Errorf("successful writes = %d, want %d", n, tt.wantPuts)
			}
			if tt.wantCalls == 1 && tt.wantErr == nil && !tt.wantOther {
				var saved State
				_ = json.Unmarshal([]byte(sm.Value(t, stateName)), &saved)
				if saved.AccessToken.Token != tt.wantToken || saved.TokenOwner != "c-me" || !saved.TokenIssuedAt.Equal(c.Now()) {
					t.Errorf("stored token %q owner %q issued %v, want %q, c-me, %v",
						saved.AccessToken.Token.Reveal(), saved.TokenOwner, saved.TokenIssuedAt, tt.wantToken.Reveal(), c.Now())
				}
				if saved.RefreshToken.Token != "SECRET-refresh-0" {
					t.Errorf("stored refresh token changed to %q", saved.RefreshToken.Token.Reveal())
				}
			}
		})
	}
}

func TestAccessTokenWithoutState(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	r := &refresher{now: c.Now, life: tokenLife}
	_, err := testStore(sm, c, "c-me", 0).AccessToken(t.Context(), testNIP, r)
	if !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("err = %v, want ErrLoginRequired", err)
	}
	if r.calls.Load() != 0 || sm.Counts().Creates != 0 {
		t.Errorf("refresh calls %d, creates %d; want 0, 0", r.calls.Load(), sm.Counts().Creates)
	}
}

func TestAccessTokenRejectedRefreshIsForgotten(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	seedState(t, sm, c.Now(), "c-a")
	c.Advance(tokenLife - time.Minute)
	rejected := &ksef.APIError{StatusCode: http.StatusUnauthorized}
	r := &refresher{now: c.Now, life: tokenLife, err: rejected}

	_, err := testStore(sm, c, "c-a", 0).AccessToken(t.Context(), testNIP, r)
	if !errors.Is(err, ErrLoginRequired) || !errors.Is(err, ksef.ErrUnauthorized) {
		t.Fatalf("err = %v, want ErrLoginRequired wrapping ksef.ErrUnauthorized", err)
	}
	// Another process now fails at once, without calling KSeF.
	c.Advance(30 * time.Second)
	_, err = testStore(sm, c, "c-b", 0).AccessToken(t.Context(), testNIP, r)
	if !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("second store: err = %v, want ErrLoginRequired", err)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("refresh calls = %d, want 1", n)
	}
}

func TestAccessTokenRejectedRefreshKeepsNewLogin(t *testing.T) {
	// A login that lands while the dead refresh token is being tried must survive.
	sm, c := secretstest.New(), newClock()
	seedState(t, sm, c.Now(), "c-a")
	c.Advance(tokenLife - time.Minute)
	login := testStore(sm, c, "c-login", 0)
	r := &refresher{now: c.Now, life: tokenLife, err: &ksef.APIError{StatusCode: http.StatusUnauthorized}}
	r.gate = func(ctx context.Context) error {
		_, err := login.SaveTokens(ctx, testNIP, ksef.AuthTokens{
			AccessToken:  ksef.Token{Token: "SECRET-access-login", ValidUntil: c.Now().Add(tokenLife)},
			RefreshToken: ksef.Token{Token: "SECRET-refresh-login", ValidUntil: c.Now().Add(refreshLife)},
		})
		return err
	}
	if _, err := testStore(sm, c, "c-a", 0).AccessToken(t.Context(), testNIP, r); !errors.Is(err, ErrLoginRequired) {
		t.Fatalf("err = %v, want ErrLoginRequired", err)
	}
	var st State
	_ = json.Unmarshal([]byte(sm.Value(t, stateName)), &st)
	if st.RefreshToken.Token != "SECRET-refresh-login" || st.AccessToken.Token != "SECRET-access-login" {
		t.Errorf("tokens after the rejected refresh = %q/%q, want the new login's",
			st.AccessToken.Token.Reveal(), st.RefreshToken.Token.Reveal())
	}
}

func TestAccessTokenShortLivedTokens(t *testing.T) {
	// Tokens living 60 s with a 2-minute margin: the effective margin is 30 s, so a token with
	// 45 s left is reused instead of being refreshed on every call.
	sm, c := secretstest.New(), newClock()
	seedState(t, sm, c.Now(), "c-me")
	var st State
	_ = json.Unmarshal([]byte(sm.Value(t, stateName)), &st)
	st.AccessToken.ValidUntil = c.Now().Add(time.Minute)
	b, _ := json.Marshal(st)
	sm.Set(stateName, string(b))

	r := &refresher{now: c.Now, life: time.Minute}
	s := testStore(sm, c, "c-me", 0)
	c.Advance(15 * time.Second)
	if _, err := s.AccessToken(t.Context(), testNIP, r); err != nil || r.calls.Load() != 0 {
		t.Fatalf("at 45 s left: err %v, %d refreshes; want nil, 0", err, r.calls.Load())
	}
	c.Advance(15 * time.Second)
	if _, err := s.AccessToken(t.Context(), testNIP, r); err != nil || r.calls.Load() != 1 {
		t.Fatalf("at 30 s left: err %v, %d refreshes; want nil, 1", err, r.calls.Load())
	}
	for range 5 {
		if _, err := s.AccessToken(t.Context(), testNIP, r); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("refresh calls after the refresh = %d, want 1", n)
	}
}

func TestAccessTokenOneRefreshPerProcess(t *testing.T) {
	// 50 goroutines of one process: one refresh, one write, the same token for all.
	sm, c := secretstest.New(), newClock()
	seedState(t, sm, c.Now(), "c-me")
	c.Advance(tokenLife - time.Minute)
	r := &refresher{now: c.Now, life: tokenLife}
	s := testStore(sm, c, "c-me", 0)

	tokens := make(chan ksef.Secret, 50)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			tok, err := s.AccessToken(t.Context(), testNIP, r)
			if err != nil {
				t.Error(err)
			}
			tokens <- tok
		})
	}
	wg.Wait()
	close(tokens)
	for tok := range tokens {
		if tok != "SECRET-access-refreshed-1" {
			t.Errorf("token = %q, want the refreshed one", tok.Reveal())
		}
	}
	if r.calls.Load() != 1 || sm.Counts().PutsApplied != 1 {
		t.Errorf("refreshes %d, writes %d; want 1, 1", r.calls.Load(), sm.Counts().PutsApplied)
	}
}

func TestAccessTokenWaiterOutlivesCancelledLeader(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	seedState(t, sm, c.Now(), "c-me")
	c.Advance(tokenLife - time.Minute)
	s := testStore(sm, c, "c-me", 0)

	leaderCtx, cancel := context.WithCancel(t.Context())
	inRefresh := make(chan struct{})
	r := &refresher{now: c.Now, life: tokenLife}
	r.gate = func(ctx context.Context) error {
		if r.calls.Load() == 1 {
			close(inRefresh)
			<-ctx.Done() // the leader's invocation times out mid-refresh
			return ctx.Err()
		}
		return nil
	}
	leaderErr := make(chan error)
	go func() {
		_, err := s.AccessToken(leaderCtx, testNIP, r)
		leaderErr <- err
	}()
	<-inRefresh
	waiter := make(chan ksef.Secret)
	go func() {
		tok, err := s.AccessToken(t.Context(), testNIP, r)
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		waiter <- tok
	}()
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Errorf("leader: err = %v, want context.Canceled", err)
	}
	if tok := <-waiter; tok != "SECRET-access-refreshed-2" {
		t.Errorf("waiter token = %q, want the second refresh's", tok.Reveal())
	}
}

// fleet is a set of Stores sharing one fake Secrets Manager and clock: one per simulated Lambda
// execution environment.
type fleet struct {
	sm     *secretstest.SecretsManager
	clock  *clock
	stores []*Store
}

func newFleet(n int) *fleet {
	f := &fleet{sm: secretstest.New(), clock: newClock()}
	for i := range n {
		f.stores = append(f.stores, testStore(f.sm, f.clock, fmt.Sprintf("c-%02d", i), float64(i)/float64(n)))
	}
	return f
}

// burst has every store ask for a token from perStore goroutines at once and returns the
// tokens handed out.
func (f *fleet) burst(t *testing.T, perStore int, r Refresher) []ksef.Secret {
	t.Helper()
	start := make(chan struct{})
	var (
		mu     sync.Mutex
		tokens []ksef.Secret
		wg     sync.WaitGroup
	)
	for _, s := range f.stores {
		for range perStore {
			wg.Go(func() {
				<-start
				tok, err := s.AccessToken(t.Context(), testNIP, r)
				if err != nil {
					t.Errorf("store %s: %v", s.id, err)
				}
				mu.Lock()
				tokens = append(tokens, tok)
				mu.Unlock()
			})
		}
	}
	close(start)
	wg.Wait()
	return tokens
}

func (f *fleet) counts() (gets, puts, putsOK int64) {
	return f.sm.Counts().Gets, f.sm.Counts().Puts + f.sm.Counts().Creates, f.sm.Counts().PutsApplied
}

func TestFleetSteadyState(t *testing.T) {
	// 20 execution environments x 10 goroutines, over three access-token lifetimes, with the
	// token owned by store 7 (which refreshed it last). Bursts of calls sweep the refresh
	// window second by second; every token handed out must have more than m/4 left.
	const stores, perStore = 20, 10
	f := newFleet(stores)
	seed := seedState(t, f.sm, f.clock.Now(), "c-07")
	r := &refresher{now: f.clock.Now, life: tokenLife}
	calls := 0
	burst := func() {
		t.Helper()
		for _, tok := range f.burst(t, perStore, r) {
			calls++
			until, ok := r.validUntil(tok)
			if tok == seed.AccessToken.Token {
				until, ok = seed.AccessToken.ValidUntil, true
			}
			if left := until.Sub(f.clock.Now()); !ok || left <= margin/4 {
				t.Errorf("token %q handed out with %v left, want more than %v", tok.Reveal(), left, margin/4)
			}
		}
	}
	stored := func() State {
		var st State
		if err := json.Unmarshal([]byte(f.sm.Value(t, stateName)), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}

	burst() // warm-up: every store reads the state once
	if gets, _, _ := f.counts(); gets != stores {
		t.Errorf("warm-up reads = %d, want %d (one per store)", gets, stores)
	}

	for lifetime := 1; lifetime <= 3; lifetime++ {
		g0, p0, ok0 := f.counts()
		c0, calls0 := r.calls.Load(), calls
		expiry := stored().AccessToken.ValidUntil
		// From the owner's threshold (m) down to the lowest one possible (just above m/4).
		for left := margin; left > margin/4; left -= time.Second {
			f.clock.Set(expiry.Add(-left))
			burst()
		}
		g1, p1, ok1 := f.counts()
		if n := r.calls.Load() - c0; n != 1 {
			t.Errorf("lifetime %d: KSeF refresh calls = %d, want 1", lifetime, n)
		}
		if p1-p0 != 1 || ok1-ok0 != 1 {
			t.Errorf("lifetime %d: PutSecretValue calls = %d (%d successful), want 1 (1)", lifetime, p1-p0, ok1-ok0)
		}
		if g1-g0 != stores {
			t.Errorf("lifetime %d: GetSecretValue calls = %d, want %d (one per store)", lifetime, g1-g0, stores)
		}
		if owner := stored().TokenOwner; owner != "c-07" {
			t.Errorf("lifetime %d: owner = %q, want c-07 to keep the token", lifetime, owner)
		}
		t.Logf("lifetime %d: %d AccessToken calls in %d stores -> %d KSeF refresh, %d GetSecretValue, %d PutSecretValue",
			lifetime, calls-calls0, stores, r.calls.Load()-c0, g1-g0, p1-p0)
	}
}

func TestFleetAfterLoginStaggers(t *testing.T) {
	// After a login nobody owns the token. The thresholds of the 20 stores are spread over
	// m/2..m (slots i/20), so the one with the earliest threshold refreshes and the others adopt.
	const stores = 20
	f := newFleet(stores)
	if _, err := f.stores[3].SaveTokens(t.Context(), testNIP, ksef.AuthTokens{
		AccessToken:  ksef.Token{Token: "SECRET-access-0", ValidUntil: f.clock.Now().Add(tokenLife)},
		RefreshToken: ksef.Token{Token: "SECRET-refresh-0", ValidUntil: f.clock.Now().Add(refreshLife)},
	}); err != nil {
		t.Fatal(err)
	}
	expiry := f.clock.Now().Add(tokenLife)
	r := &refresher{now: f.clock.Now, life: tokenLife}
	for left := margin; left > margin/4; left -= time.Second {
		f.clock.Set(expiry.Add(-left))
		f.burst(t, 3, r)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("KSeF refresh calls = %d, want 1", n)
	}
	st, _ := f.stores[0].LatestState(t.Context(), testNIP)
	if st.TokenOwner != "c-00" {
		t.Errorf("owner = %q, want c-00 (slot 0 has the earliest threshold)", st.TokenOwner)
	}
}

func TestFleetOwnerGoneWorstCase(t *testing.T) {
	// The owner has disappeared and all 20 stores reach their thresholds within one refresh's
	// round trip (the refresh blocks until all have called KSeF). That is the worst case: one
	// refresh per store, yet one successful write, and every store ends up with the winner's
	// token.
	const stores = 20
	f := newFleet(stores)
	seedState(t, f.sm, f.clock.Now(), "c-gone")
	f.clock.Set(f.clock.Now().Add(tokenLife - margin/4))

	arrived, release := make(chan struct{}, stores), make(chan struct{})
	r := &refresher{now: f.clock.Now, life: tokenLife}
	r.gate = func(ctx context.Context) error {
		arrived <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	done := make(chan []ksef.Secret)
	go func() { done <- f.burst(t, 5, r) }()
	for range stores {
		<-arrived
	}
	close(release)
	tokens := <-done

	_, _, putsOK := f.counts()
	if putsOK != 1 {
		t.Errorf("successful writes = %d, want 1", putsOK)
	}
	if n := r.calls.Load(); n != stores {
		t.Errorf("KSeF refresh calls = %d, want %d (one per store, the worst case)", n, stores)
	}
	st, _ := f.stores[0].LatestState(t.Context(), testNIP)
	for _, tok := range tokens {
		if tok != st.AccessToken.Token {
			t.Errorf("token %q, want the stored winner %q", tok.Reveal(), st.AccessToken.Token.Reveal())
		}
	}
	t.Logf("worst case, %d stores: %d KSeF refreshes, %d PutSecretValue (%d successful, %d lost the race)",
		stores, r.calls.Load(), f.sm.Counts().Puts, putsOK, f.sm.Counts().Conflicts)
}

func TestSaveTokens(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	s := testStore(sm, c, "c-a", 0)
	ctx := t.Context()
	if _, err := s.Update(ctx, testNIP, func(st *State) error {
		st.PendingAuth = &PendingAuth{ReferenceNumber: "ref", Method: AuthXAdES}
		st.TokenOwner = "c-old"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tokens := ksef.AuthTokens{
		AccessToken:  ksef.Token{Token: "SECRET-a", ValidUntil: c.Now().Add(tokenLife)},
		RefreshToken: ksef.Token{Token: "SECRET-r", ValidUntil: c.Now().Add(refreshLife)},
	}
	st, err := s.SaveTokens(ctx, testNIP, tokens)
	if err != nil {
		t.Fatal(err)
	}
	if st.PendingAuth != nil || st.TokenOwner != "" || st.AccessToken != tokens.AccessToken ||
		st.RefreshToken != tokens.RefreshToken || !st.TokenIssuedAt.Equal(c.Now()) {
		t.Errorf("state after SaveTokens = %+v", st)
	}
	if _, err := s.SaveTokens(ctx, testNIP, ksef.AuthTokens{AccessToken: tokens.AccessToken}); err == nil {
		t.Error("SaveTokens without a refresh token: err = nil, want an error")
	}
	tok, err := s.TokenSource(testNIP, &refresher{now: c.Now, life: tokenLife}).AccessToken(ctx)
	if err != nil || tok != "SECRET-a" {
		t.Errorf("TokenSource.AccessToken = %q, %v; want the saved token", tok.Reveal(), err)
	}
}

type panickingRefresher struct{}

func (panickingRefresher) RefreshAccessToken(context.Context, ksef.Secret) (*ksef.Token, error) {
	panic("refresher bug")
}

func TestAccessTokenRefresherPanicReleasesFlight(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	seedState(t, sm, c.Now(), "c-me")
	c.Advance(tokenLife - time.Minute)
	s := testStore(sm, c, "c-me", 0)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the refresher's panic did not propagate")
			}
		}()
		_, _ = s.AccessToken(t.Context(), testNIP, panickingRefresher{})
	}()
	if len(s.flights) != 0 {
		t.Fatalf("flights after a panic = %d, want 0", len(s.flights))
	}
	r := &refresher{now: c.Now, life: tokenLife}
	if tok, err := s.AccessToken(t.Context(), testNIP, r); err != nil || tok != "SECRET-access-refreshed-1" {
		t.Errorf("AccessToken after a panic = %q, %v; want a refreshed token", tok.Reveal(), err)
	}
}

func TestWithRefreshMargin(t *testing.T) {
	// With a 5-minute margin the owner refreshes a token that has 4 minutes left; with the
	// default it does not.
	for _, tt := range []struct {
		opts      []Option
		wantCalls int64
	}{
		{nil, 0},
		{[]Option{WithRefreshMargin(5 * time.Minute)}, 1},
	} {
		sm, c := secretstest.New(), newClock()
		seedState(t, sm, c.Now(), "c-me")
		c.Advance(tokenLife - 4*time.Minute)
		r := &refresher{now: c.Now, life: tokenLife}
		if _, err := testStore(sm, c, "c-me", 0, tt.opts...).AccessToken(t.Context(), testNIP, r); err != nil {
			t.Fatal(err)
		}
		if n := r.calls.Load(); n != tt.wantCalls {
			t.Errorf("options %d: refresh calls = %d, want %d", len(tt.opts), n, tt.wantCalls)
		}
	}
}

func TestDropAccessToken(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	seedState(t, sm, c.Now(), "")
	c.Advance(time.Minute)
	r := &refresher{now: c.Now, life: tokenLife}
	a, b := testStore(sm, c, "c-a", 0), testStore(sm, c, "c-b", 0)
	for _, s := range []*Store{a, b} {
		if tok, err := s.AccessToken(t.Context(), testNIP, r); err != nil || tok != "SECRET-access-0" {
			t.Fatalf("AccessToken = %q, %v; want the stored token", tok.Reveal(), err)
		}
	}

	// KSeF refuses the token (revoked, or expired by its clock) long before its validUntil.
	if err := a.DropAccessToken(t.Context(), testNIP); err != nil {
		t.Fatal(err)
	}
	var st State
	_ = json.Unmarshal([]byte(sm.Value(t, stateName)), &st)
	if st.AccessToken.Token != "" || st.RefreshToken.Token != "SECRET-refresh-0" {
		t.Errorf("stored tokens after the drop = %q/%q, want no access token and the refresh token kept",
			st.AccessToken.Token.Reveal(), st.RefreshToken.Token.Reveal())
	}
	if tok, err := a.AccessToken(t.Context(), testNIP, r); err != nil || tok != "SECRET-access-refreshed-1" {
		t.Fatalf("AccessToken after the drop = %q, %v; want a refreshed token", tok.Reveal(), err)
	}

	// The other process met the same 401 with the same token: it adopts the replacement and
	// neither writes nor refreshes.
	puts := sm.Counts().PutsApplied
	if err := b.DropAccessToken(t.Context(), testNIP); err != nil {
		t.Fatal(err)
	}
	if tok, err := b.AccessToken(t.Context(), testNIP, r); err != nil || tok != "SECRET-access-refreshed-1" {
		t.Fatalf("second store: AccessToken = %q, %v; want the replacement", tok.Reveal(), err)
	}
	if n := sm.Counts().PutsApplied - puts; n != 0 {
		t.Errorf("second store wrote %d times, want 0", n)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("refresh calls = %d, want 1", n)
	}

	// A Store that handed out nothing only reads.
	puts = sm.Counts().PutsApplied
	if err := testStore(sm, c, "c-c", 0).DropAccessToken(t.Context(), testNIP); err != nil {
		t.Fatal(err)
	}
	if n := sm.Counts().PutsApplied - puts; n != 0 {
		t.Errorf("a Store without a token wrote %d times, want 0", n)
	}
}
