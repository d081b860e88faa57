package secrets

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// fakeSM is an in-memory Secrets Manager with the versioning rules Store relies on: a
// PutSecretValue whose ClientRequestToken names an existing version succeeds without effect if
// the value is the same and fails with ResourceExistsException otherwise; a missing secret, or
// one without a current value, is ResourceNotFoundException.
type fakeSM struct {
	mu      sync.Mutex
	secrets map[string]*fakeSecret

	gets, puts, putsOK, conflicts, creates atomic.Int64

	// beforePut, if set, runs at the start of every PutSecretValue and CreateSecret, outside
	// the lock; tests use it to slip in a competing write.
	beforePut func(name string)
}

type fakeSecret struct {
	versions map[string]string // VersionId -> SecretString
	current  string            // VersionId labelled AWSCURRENT; "" if none
	binary   []byte
}

func newFakeSM() *fakeSM { return &fakeSM{secrets: make(map[string]*fakeSecret)} }

var _ API = (*fakeSM)(nil)

func notFound() error {
	return &types.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret.")}
}

func (f *fakeSM) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	f.gets.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	sec, ok := f.secrets[aws.ToString(in.SecretId)]
	if !ok {
		return nil, notFound()
	}
	if sec.binary != nil {
		return &secretsmanager.GetSecretValueOutput{Name: in.SecretId, SecretBinary: sec.binary, VersionId: aws.String("binary")}, nil
	}
	if sec.current == "" {
		return nil, notFound()
	}
	return &secretsmanager.GetSecretValueOutput{
		Name:          in.SecretId,
		SecretString:  aws.String(sec.versions[sec.current]),
		VersionId:     aws.String(sec.current),
		VersionStages: []string{"AWSCURRENT"},
	}, nil
}

func (f *fakeSM) PutSecretValue(_ context.Context, in *secretsmanager.PutSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	f.puts.Add(1)
	name := aws.ToString(in.SecretId)
	if f.beforePut != nil {
		f.beforePut(name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	sec, ok := f.secrets[name]
	if !ok {
		return nil, notFound()
	}
	token, value := aws.ToString(in.ClientRequestToken), aws.ToString(in.SecretString)
	if token == "" {
		return nil, &types.InvalidParameterException{Message: aws.String("the fake wants a ClientRequestToken")}
	}
	if old, exists := sec.versions[token]; exists {
		if old != value {
			f.conflicts.Add(1)
			return nil, &types.ResourceExistsException{Message: aws.String("You can't modify an existing version, you can only create a new version.")}
		}
		return &secretsmanager.PutSecretValueOutput{Name: in.SecretId, VersionId: aws.String(token)}, nil
	}
	sec.versions[token] = value
	sec.current = token
	f.putsOK.Add(1)
	return &secretsmanager.PutSecretValueOutput{Name: in.SecretId, VersionId: aws.String(token)}, nil
}

func (f *fakeSM) CreateSecret(_ context.Context, in *secretsmanager.CreateSecretInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	f.creates.Add(1)
	name := aws.ToString(in.Name)
	if f.beforePut != nil {
		f.beforePut(name)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.secrets[name]; ok {
		return nil, &types.ResourceExistsException{Message: aws.String("the secret already exists")}
	}
	sec := &fakeSecret{versions: make(map[string]string)}
	f.secrets[name] = sec
	if in.SecretString == nil {
		return &secretsmanager.CreateSecretOutput{Name: in.Name}, nil
	}
	token := aws.ToString(in.ClientRequestToken)
	sec.versions[token] = *in.SecretString
	sec.current = token
	return &secretsmanager.CreateSecretOutput{Name: in.Name, VersionId: aws.String(token)}, nil
}

// set stores value as a new current version with a random-looking VersionId, as a user or a
// tool outside the Store would.
func (f *fakeSM) set(name, value string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sec, ok := f.secrets[name]
	if !ok {
		sec = &fakeSecret{versions: make(map[string]string)}
		f.secrets[name] = sec
	}
	id := fmt.Sprintf("external-%d", len(sec.versions)+1)
	sec.versions[id] = value
	sec.current = id
}

// value returns the current value of a secret.
func (f *fakeSM) value(t *testing.T, name string) string {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	sec, ok := f.secrets[name]
	if !ok || sec.current == "" {
		t.Fatalf("secret %s has no value", name)
	}
	return sec.versions[sec.current]
}

// clock is a settable clock shared by the Stores of a test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// refresher is a fake KSeF refresh endpoint. Each call returns a new token valid for life.
type refresher struct {
	now   func() time.Time
	life  time.Duration
	calls atomic.Int64
	err   error
	// gate, if set, runs before the token is issued; it may block.
	gate   func(ctx context.Context) error
	mu     sync.Mutex
	seen   []ksef.Secret             // refresh tokens presented
	issued map[ksef.Secret]time.Time // access tokens issued, with their expiry
}

func (r *refresher) RefreshAccessToken(ctx context.Context, refreshToken ksef.Secret) (*ksef.Token, error) {
	n := r.calls.Add(1)
	r.mu.Lock()
	r.seen = append(r.seen, refreshToken)
	r.mu.Unlock()
	if r.gate != nil {
		if err := r.gate(ctx); err != nil {
			return nil, err
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	tok := &ksef.Token{Token: ksef.Secret(fmt.Sprintf("SECRET-access-refreshed-%d", n)), ValidUntil: r.now().Add(r.life)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.issued == nil {
		r.issued = make(map[ksef.Secret]time.Time)
	}
	r.issued[tok.Token] = tok.ValidUntil
	return tok, nil
}

// validUntil returns the expiry of an access token the refresher issued.
func (r *refresher) validUntil(tok ksef.Secret) (time.Time, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.issued[tok]
	return t, ok
}

// testStore returns a Store on api with the test clock, no real waiting between conflicting
// attempts, and a fixed id and slot.
func testStore(api API, c *clock, id string, slot float64, opts ...Option) *Store {
	s := New(api, append([]Option{WithClock(c.Now)}, opts...)...)
	s.wait = func(context.Context, time.Duration) error { return nil }
	s.id, s.slot = id, slot
	return s
}
