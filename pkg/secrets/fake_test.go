package secrets

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets/secretstest"
)

var _ API = (*secretstest.SecretsManager)(nil)

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
