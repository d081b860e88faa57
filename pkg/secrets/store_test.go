package secrets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

const testNIP = "5265877635"

var stateName = "ksef/" + testNIP + "/session"

func TestVersionToken(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]string{}
	for _, tt := range []struct{ name, prev string }{
		{"ksef/5265877635/session", ""},
		{"ksef/5265877635/session", "a1b2c3d4-0000-4000-8000-000000000001"},
		{"ksef/5265877635/session", "a1b2c3d4-0000-4000-8000-000000000002"},
		{"ksef/1111111111/session", ""},
	} {
		got := versionToken(tt.name, tt.prev)
		if !uuid.MatchString(got) {
			t.Errorf("versionToken(%q, %q) = %q, want a version-8 UUID", tt.name, tt.prev, got)
		}
		if again := versionToken(tt.name, tt.prev); again != got {
			t.Errorf("versionToken(%q, %q) is not deterministic: %q then %q", tt.name, tt.prev, got, again)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("versionToken(%q, %q) = %q, same as for %s", tt.name, tt.prev, got, other)
		}
		seen[got] = tt.name + " " + tt.prev
	}
	// Secrets Manager wants 32 to 64 characters.
	if n := len(versionToken("x", "")); n < 32 || n > 64 {
		t.Errorf("token length %d, want 32..64", n)
	}
}

func TestUpdateCreatesMissingSecret(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	s := testStore(sm, c, "c-a", 0, WithKMSKeyID("alias/ksef"))
	ctx := t.Context()

	got, err := s.Update(ctx, testNIP, func(st *State) error {
		st.PendingAuth = &PendingAuth{ReferenceNumber: "20260302-AU-0000000000-0000000000-00", Method: AuthToken, StartedAt: c.Now()}
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got.version != versionToken(stateName, "") {
		t.Errorf("version = %q, want the token after the empty version", got.version)
	}
	if !got.UpdatedAt.Equal(c.Now()) {
		t.Errorf("UpdatedAt = %v, want %v", got.UpdatedAt, c.Now())
	}
	if n := sm.Counts().Creates; n != 1 {
		t.Errorf("CreateSecret calls = %d, want 1", n)
	}
	var stored State
	if err := json.Unmarshal([]byte(sm.Value(t, stateName)), &stored); err != nil {
		t.Fatalf("stored state: %v", err)
	}
	if stored.PendingAuth == nil || stored.PendingAuth.ReferenceNumber != "20260302-AU-0000000000-0000000000-00" {
		t.Errorf("stored PendingAuth = %+v, want the reference number", stored.PendingAuth)
	}

	// A second update puts the version that follows the first.
	got2, err := s.Update(ctx, testNIP, func(st *State) error { st.PendingAuth = nil; return nil })
	if err != nil {
		t.Fatalf("second Update: %v", err)
	}
	if want := versionToken(stateName, got.version); got2.version != want {
		t.Errorf("second version = %q, want %q", got2.version, want)
	}
	if got2.PendingAuth != nil {
		t.Errorf("PendingAuth = %+v, want nil", got2.PendingAuth)
	}
}

func TestUpdateLoserRereadsAndReapplies(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	a, b := testStore(sm, c, "c-a", 0), testStore(sm, c, "c-b", 0)
	ctx := t.Context()
	if _, err := a.Update(ctx, testNIP, func(st *State) error { st.Session = &OnlineSession{InvoicesSent: 1}; return nil }); err != nil {
		t.Fatal(err)
	}

	// b writes just before a's write lands, after a has read.
	sm.BeforePut = func(string) error {
		sm.BeforePut = nil // once; everything here runs on the test's goroutine
		if _, err := b.Update(ctx, testNIP, func(st *State) error { st.Session.InvoicesSent += 10; return nil }); err != nil {
			t.Errorf("competing Update: %v", err)
		}
		return nil
	}
	calls := 0
	got, err := a.Update(ctx, testNIP, func(st *State) error {
		calls++
		st.Session.InvoicesSent++
		return nil
	})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if calls != 2 {
		t.Errorf("fn called %d times, want 2 (lost once, then reapplied)", calls)
	}
	if got.Session.InvoicesSent != 12 {
		t.Errorf("InvoicesSent = %d, want 12 (1 + 10 from the competitor + 1)", got.Session.InvoicesSent)
	}
	if n := sm.Counts().Conflicts; n != 1 {
		t.Errorf("conflicting puts = %d, want 1", n)
	}
}

func TestUpdateGivesUpWithErrConflict(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	a, b := testStore(sm, c, "c-a", 0), testStore(sm, c, "c-b", 0)
	ctx := t.Context()
	if _, err := a.Update(ctx, testNIP, func(*State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	a.wait = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
	inner := false
	sm.BeforePut = func(string) error {
		if inner {
			return nil
		}
		inner = true
		defer func() { inner = false }()
		c.Advance(time.Millisecond) // a different value each time
		if _, err := b.Update(ctx, testNIP, func(*State) error { return nil }); err != nil {
			t.Errorf("competing Update: %v", err)
		}
		return nil
	}
	_, err := a.Update(ctx, testNIP, func(*State) error { return nil })
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("Update: err = %v, want ErrConflict", err)
	}
	if len(waits) != defaultMaxAttempts-1 {
		t.Errorf("waited %d times, want %d", len(waits), defaultMaxAttempts-1)
	}
	for i, d := range waits {
		if d < 0 || d > time.Second {
			t.Errorf("wait %d = %v, want within [0, 1s]", i, d)
		}
	}
}

func TestUpdateNoChangeAndFnError(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	s := testStore(sm, c, "c-a", 0)
	ctx := t.Context()
	first, err := s.Update(ctx, testNIP, func(st *State) error { st.Session = &OnlineSession{InvoicesSent: 3}; return nil })
	if err != nil {
		t.Fatal(err)
	}
	puts := sm.Counts().Puts + sm.Counts().Creates

	got, err := s.Update(ctx, testNIP, func(st *State) error {
		st.Session.InvoicesSent = 99 // discarded
		return ErrNoChange
	})
	if err != nil {
		t.Fatalf("Update with ErrNoChange: %v", err)
	}
	if got.Session.InvoicesSent != 3 || got.version != first.version {
		t.Errorf("Update with ErrNoChange = %d at %q, want 3 at %q", got.Session.InvoicesSent, got.version, first.version)
	}

	boom := errors.New("boom")
	if _, err := s.Update(ctx, testNIP, func(*State) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("Update with a failing fn: err = %v, want it to wrap %v", err, boom)
	}
	if n := sm.Counts().Puts + sm.Counts().Creates; n != puts {
		t.Errorf("writes after ErrNoChange and a failing fn = %d, want %d", n, puts)
	}
}

func TestUpdateSecretWithoutValue(t *testing.T) {
	// Infrastructure code may create the secret without a value; GetSecretValue then answers
	// ResourceNotFoundException and CreateSecret ResourceExistsException.
	sm, c := secretstest.New(), newClock()
	if _, err := sm.CreateSecret(t.Context(), &secretsmanager.CreateSecretInput{Name: aws.String(stateName)}); err != nil {
		t.Fatal(err)
	}
	s := testStore(sm, c, "c-a", 0)
	got, err := s.Update(t.Context(), testNIP, func(st *State) error { st.Session = &OnlineSession{InvoicesSent: 1}; return nil })
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got.version != versionToken(stateName, "") {
		t.Errorf("version = %q, want the token after the empty version", got.version)
	}
	if !strings.Contains(sm.Value(t, stateName), `"invoicesSent":1`) {
		t.Errorf("stored value = %s, want invoicesSent 1", sm.Value(t, stateName))
	}
}

func TestConcurrentWritersLoseNothing(t *testing.T) {
	// Writers in separate Stores (processes) race to create the secret and then to increment a
	// counter; every increment must survive.
	const writers, increments = 8, 5
	sm, c := secretstest.New(), newClock()
	var wg sync.WaitGroup
	errs := make(chan error, writers*increments)
	for w := range writers {
		s := testStore(sm, c, "c-"+string(rune('a'+w)), 0)
		s.maxAttempts = 1000
		wg.Go(func() {
			for range increments {
				_, err := s.Update(t.Context(), testNIP, func(st *State) error {
					if st.Session == nil {
						st.Session = &OnlineSession{}
					}
					st.Session.InvoicesSent++
					return nil
				})
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Update: %v", err)
	}
	var st State
	if err := json.Unmarshal([]byte(sm.Value(t, stateName)), &st); err != nil {
		t.Fatal(err)
	}
	if st.Session == nil || st.Session.InvoicesSent != writers*increments {
		t.Fatalf("final InvoicesSent = %+v, want %d", st.Session, writers*increments)
	}
	if n := sm.Counts().PutsApplied + 1; n != writers*increments { // +1: the CreateSecret
		t.Errorf("successful writes = %d, want %d", n, writers*increments)
	}
	t.Logf("%d increments by %d writers: %d GetSecretValue, %d PutSecretValue (%d lost the race), %d CreateSecret",
		writers*increments, writers, sm.Counts().Gets, sm.Counts().Puts, sm.Counts().Conflicts, sm.Counts().Creates)
}

func TestStateCache(t *testing.T) {
	sm, c := secretstest.New(), newClock()
	sm.Set(stateName, `{"session":{"invoicesSent":4}}`)
	s := testStore(sm, c, "c-a", 0, WithCacheTTL(30*time.Second))
	ctx := t.Context()

	for range 3 {
		st, err := s.State(ctx, testNIP)
		if err != nil {
			t.Fatal(err)
		}
		if st.Session.InvoicesSent != 4 {
			t.Fatalf("InvoicesSent = %d, want 4", st.Session.InvoicesSent)
		}
		st.Session.InvoicesSent = 100 // must not reach the cache
	}
	if n := sm.Counts().Gets; n != 1 {
		t.Errorf("GetSecretValue calls within the TTL = %d, want 1", n)
	}

	sm.Set(stateName, `{"session":{"invoicesSent":5}}`)
	c.Advance(30 * time.Second)
	st, err := s.State(ctx, testNIP)
	if err != nil {
		t.Fatal(err)
	}
	if st.Session.InvoicesSent != 5 || sm.Counts().Gets != 2 {
		t.Errorf("after the TTL: InvoicesSent = %d with %d reads, want 5 with 2", st.Session.InvoicesSent, sm.Counts().Gets)
	}

	sm.Set(stateName, `{"session":{"invoicesSent":6}}`)
	if st, err = s.LatestState(ctx, testNIP); err != nil || st.Session.InvoicesSent != 6 {
		t.Errorf("LatestState = %+v, %v; want invoicesSent 6", st.Session, err)
	}
	if st, _ = s.State(ctx, testNIP); st.Session.InvoicesSent != 6 {
		t.Errorf("State after LatestState = %d, want 6 (LatestState refreshes the cache)", st.Session.InvoicesSent)
	}

	noCache := testStore(sm, c, "c-b", 0, WithCacheTTL(0))
	before := sm.Counts().Gets
	_, _ = noCache.State(ctx, testNIP)
	_, _ = noCache.State(ctx, testNIP)
	if n := sm.Counts().Gets - before; n != 2 {
		t.Errorf("reads with WithCacheTTL(0) = %d, want 2", n)
	}
}

func TestStateMissingSecretIsZero(t *testing.T) {
	s := testStore(secretstest.New(), newClock(), "c-a", 0)
	st, err := s.State(t.Context(), testNIP)
	if err != nil {
		t.Fatalf("State: %v", err)
	}
	if st.AccessToken.Token != "" || st.Session != nil || st.PendingAuth != nil || st.version != "" {
		t.Errorf("State of a missing secret = %+v, want the zero State", st)
	}
}

func TestStateDecodeErrors(t *testing.T) {
	tests := []struct {
		name, value, want string
	}{
		{"syntax", `{"accessToken":{"token":"SECRET-tok` + "\x01" + `"}}`, "malformed JSON at byte"},
		{"type", `{"accessToken":{"token":12345678901234}}`, `field "accessToken.token" has the wrong JSON type`},
		{"time", `{"updatedAt":"SECRET-not-a-time"}`, "invalid date-time value"},
		{"base64", `{"session":{"handle":{"key":"SECRET-not-base64!"}}}`, "invalid base64 value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sm := secretstest.New()
			sm.Set(stateName, tt.value)
			_, err := testStore(sm, newClock(), "c-a", 0).State(t.Context(), testNIP)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("State(%s): err = %v, want it to contain %q", tt.value, err, tt.want)
			}
			for _, leak := range []string{"SECRET", "12345678901234"} {
				if strings.Contains(err.Error(), leak) {
					t.Errorf("error %q quotes the secret value", err)
				}
			}
		})
	}
}

func TestStateBinarySecret(t *testing.T) {
	sm := secretstest.New()
	sm.SetBinary(stateName, []byte{1, 2, 3})
	if _, err := testStore(sm, newClock(), "c-a", 0).State(t.Context(), testNIP); err == nil || !strings.Contains(err.Error(), "binary") {
		t.Fatalf("State of a binary secret: err = %v, want a binary-data error", err)
	}
}

func TestStoreStateKeepsSuccessor(t *testing.T) {
	s := testStore(secretstest.New(), newClock(), "c-a", 0)
	older := &State{version: "v1"}
	newer := &State{version: versionToken(stateName, "v1")}
	s.storeState(testNIP, newer)
	s.storeState(testNIP, older) // a slow read that the write overtook
	if st, _ := s.cachedState(testNIP, false); st.version != newer.version {
		t.Errorf("cached version = %q, want the successor %q", st.version, newer.version)
	}
	other := &State{version: "v9"}
	s.storeState(testNIP, other)
	if st, _ := s.cachedState(testNIP, false); st.version != "v9" {
		t.Errorf("cached version = %q, want v9", st.version)
	}
}

func TestStateCloneIsDeep(t *testing.T) {
	st := &State{
		PendingAuth: &PendingAuth{ReferenceNumber: "r"},
		Session: &OnlineSession{Handle: &ksef.SessionHandle{
			ReferenceNumber: "s", Key: ksef.SecretBytes{1, 2}, IV: []byte{3, 4},
		}},
		version: "v",
	}
	c := st.clone()
	c.PendingAuth.ReferenceNumber = "x"
	c.Session.Handle.ReferenceNumber = "x"
	c.Session.Handle.Key[0] = 9
	c.Session.Handle.IV[0] = 9
	if st.PendingAuth.ReferenceNumber != "r" || st.Session.Handle.ReferenceNumber != "s" ||
		st.Session.Handle.Key[0] != 1 || st.Session.Handle.IV[0] != 3 {
		t.Errorf("changing the clone changed the original: %+v", st.Session.Handle)
	}
	if c.version != "v" {
		t.Errorf("clone version = %q, want v", c.version)
	}
}

func TestMethodsRejectBadNIP(t *testing.T) {
	s := testStore(secretstest.New(), newClock(), "c-a", 0)
	ctx := t.Context()
	for _, nip := range []string{"", "123", "0265877635", "5005877635", "../../etc", "52658776351"} {
		checks := map[string]error{}
		_, checks["State"] = s.State(ctx, nip)
		_, checks["LatestState"] = s.LatestState(ctx, nip)
		_, checks["Update"] = s.Update(ctx, nip, func(*State) error { return nil })
		_, checks["Credentials"] = s.Credentials(ctx, nip)
		_, checks["AccessToken"] = s.AccessToken(ctx, nip, &refresher{now: time.Now})
		_, checks["SaveTokens"] = s.SaveTokens(ctx, nip, ksef.AuthTokens{})
		for m, err := range checks {
			if err == nil || !strings.Contains(err.Error(), "is not a NIP") {
				t.Errorf("%s(%q): err = %v, want a NIP error", m, nip, err)
			}
		}
	}
}

func TestWithNames(t *testing.T) {
	sm := secretstest.New()
	s := testStore(sm, newClock(), "c-a", 0, WithNames(func(nip string) (string, string) {
		return "prod/ksef/" + nip + "/creds", "prod/ksef/" + nip + "/state"
	}))
	if _, err := s.Update(t.Context(), testNIP, func(*State) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if names := sm.Names(); !slices.Contains(names, "prod/ksef/"+testNIP+"/state") {
		t.Errorf("secrets = %v, want prod/ksef/%s/state", names, testNIP)
	}
}

func TestIsAWSError(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"modelled type", &types.ResourceNotFoundException{}, true},
		{"wrapped modelled type", fmt.Errorf("op: %w", &types.ResourceNotFoundException{}), true},
		{"generic API error with the code", &smithy.GenericAPIError{Code: "ResourceNotFoundException"}, true},
		{"other code", &smithy.GenericAPIError{Code: "AccessDeniedException"}, false},
		{"other modelled type", &types.ResourceExistsException{}, false},
		{"plain error", errors.New("ResourceNotFoundException"), false},
	}
	for _, tt := range tests {
		if got := isAWSError[*types.ResourceNotFoundException](tt.err, "ResourceNotFoundException"); got != tt.want {
			t.Errorf("%s: isAWSError(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestSleepCtx(t *testing.T) {
	if err := sleepCtx(t.Context(), 0); err != nil {
		t.Errorf("sleepCtx(0) = %v, want nil", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := sleepCtx(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Errorf("sleepCtx on a cancelled context = %v, want context.Canceled", err)
	}
}

func TestBackoff(t *testing.T) {
	for attempt := 1; attempt <= 20; attempt++ {
		ceiling := min(25*time.Millisecond<<min(attempt, 6), time.Second)
		for range 50 {
			if d := backoff(attempt); d < 0 || d >= ceiling {
				t.Fatalf("backoff(%d) = %v, want in [0, %v)", attempt, d, ceiling)
			}
		}
	}
}

func TestEmptySecretStringIsZeroState(t *testing.T) {
	sm := secretstest.New()
	sm.Set(stateName, " \n")
	st, err := testStore(sm, newClock(), "c-a", 0).State(t.Context(), testNIP)
	if err != nil || st.AccessToken.Token != "" || st.version == "" {
		t.Fatalf("State of a blank secret = %+v, %v; want the zero State at its version", st, err)
	}
}

func TestGetFailureIsReturned(t *testing.T) {
	sm := secretstest.New()
	deny := func(string) error {
		return &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "not allowed"}
	}
	sm.BeforeGet, sm.BeforePut = deny, deny
	s := testStore(sm, newClock(), "c-a", 0)
	_, err := s.State(t.Context(), testNIP)
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode() != "AccessDeniedException" {
		t.Fatalf("State: err = %v, want the AccessDeniedException", err)
	}
	if _, err := s.AccessToken(t.Context(), testNIP, &refresher{now: time.Now}); !errors.As(err, &apiErr) {
		t.Fatalf("AccessToken: err = %v, want the AccessDeniedException", err)
	}
	if _, err := s.Credentials(t.Context(), testNIP); !errors.As(err, &apiErr) || errors.Is(err, ErrNotFound) {
		t.Fatalf("Credentials: err = %v, want the AccessDeniedException, not ErrNotFound", err)
	}
}
