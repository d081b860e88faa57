package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// Refresher renews a KSeF access token with a refresh token (POST /auth/token/refresh).
// *ksef.Client satisfies it.
type Refresher interface {
	RefreshAccessToken(ctx context.Context, refreshToken ksef.Secret) (*ksef.Token, error)
}

var (
	_ Refresher              = (*ksef.Client)(nil)
	_ ksef.AccessTokenSource = (*TokenSource)(nil)
)

// errRefreshAborted is what waiters get if the goroutine refreshing for them panicked.
var errRefreshAborted = errors.New("secrets: token refresh aborted")

// minRefreshValidity is how long a refresh token must still live to be used.
const minRefreshValidity = 10 * time.Second

// flight is one token refresh in progress in this process; concurrent callers for the same NIP
// wait for it instead of starting their own.
type flight struct {
	done  chan struct{}
	token ksef.Secret
	err   error
}

// AccessToken returns an access token for nip that stays valid for more than a quarter of the
// refresh margin (30 s by default). It reuses the token in memory or in the state secret while
// it is valid beyond this Store's refresh threshold; after that it refreshes it with r and
// stores the result, collapsing concurrent callers in this process into one refresh and
// adopting a token that another process has already refreshed. Without a state, a refresh
// token, or one that is still valid, it returns an error wrapping ErrLoginRequired; a failed
// refresh returns the Refresher's error, wrapped.
func (s *Store) AccessToken(ctx context.Context, nip string, r Refresher) (ksef.Secret, error) {
	if err := checkNIP(nip); err != nil {
		return "", err
	}
	if st, ok := s.cachedState(nip, false); ok && s.reusable(st, s.now()) {
		return st.AccessToken.Token, nil
	}
	// Nothing usable in memory: one goroutine reads the state (and refreshes if needed).
	return s.sharedRefresh(ctx, nip, r)
}

// sharedRefresh runs refresh for nip once at a time per process; callers arriving meanwhile get
// its result. If the leader's context ends, a waiter whose own context is alive tries again.
func (s *Store) sharedRefresh(ctx context.Context, nip string, r Refresher) (ksef.Secret, error) {
	for {
		s.mu.Lock()
		f, running := s.flights[nip]
		if !running {
			f = &flight{done: make(chan struct{})}
			s.flights[nip] = f
		}
		s.mu.Unlock()

		if !running {
			func() {
				defer func() { // even if r panics, release the waiters with an error
					s.mu.Lock()
					delete(s.flights, nip)
					s.mu.Unlock()
					close(f.done)
				}()
				f.err = errRefreshAborted
				f.token, f.err = s.refresh(ctx, nip, r)
			}()
			return f.token, f.err
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("secrets: wait for token refresh of %s: %w", nip, ctx.Err())
		case <-f.done:
		}
		if f.err != nil && ctx.Err() == nil &&
			(errors.Is(f.err, context.Canceled) || errors.Is(f.err, context.DeadlineExceeded)) {
			continue
		}
		return f.token, f.err
	}
}

// refresh is the body of a shared refresh: check the cache (another flight may have just
// finished), re-read the state, and only if it still holds no usable token, refresh and store.
func (s *Store) refresh(ctx context.Context, nip string, r Refresher) (ksef.Secret, error) {
	if st, ok := s.cachedState(nip, false); ok && s.reusable(st, s.now()) {
		return st.AccessToken.Token, nil
	}
	st, err := s.loadState(ctx, nip)
	if err != nil {
		return "", err
	}
	now := s.now()
	if s.reusable(st, now) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "secrets: adopted access token refreshed elsewhere",
			slog.String("nip", nip), slog.Time("validUntil", st.AccessToken.ValidUntil))
		return st.AccessToken.Token, nil
	}
	switch {
	case st.RefreshToken.Token == "":
		return "", fmt.Errorf("%w: no refresh token stored for %s", ErrLoginRequired, nip)
	case st.RefreshToken.ValidUntil.Sub(now) < minRefreshValidity:
		return "", fmt.Errorf("%w: refresh token of %s expired at %s",
			ErrLoginRequired, nip, st.RefreshToken.ValidUntil.UTC().Format(time.RFC3339))
	}

	tok, err := r.RefreshAccessToken(ctx, st.RefreshToken.Token)
	if err != nil {
		if !refreshRejected(err) {
			return "", fmt.Errorf("secrets: refresh access token of %s: %w", nip, err)
		}
		s.forgetTokens(ctx, nip, st)
		return "", fmt.Errorf("%w: KSeF rejected the refresh token of %s: %w", ErrLoginRequired, nip, err)
	}
	now = s.now()
	if tok == nil || tok.Token == "" || !tok.ValidUntil.After(now) {
		return "", fmt.Errorf("secrets: refresh access token of %s: refresher returned no valid token", nip)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "secrets: access token refreshed",
		slog.String("nip", nip), slog.Time("validUntil", tok.ValidUntil))

	saved, err := s.update(ctx, nip, st, func(cur *State) error {
		if s.reusable(cur, s.now()) {
			// Another process stored a fresh token (a refresh or a new login) since st was
			// read: keep it and drop ours, which saves a write.
			return ErrNoChange
		}
		cur.AccessToken = *tok
		cur.TokenIssuedAt = now.UTC()
		cur.TokenOwner = s.id
		return nil
	})
	if err != nil {
		return "", err
	}
	return saved.AccessToken.Token, nil
}

// refreshRejected reports whether KSeF refused a refresh token for good: 401 (expired, revoked
// with its authentication session, or not a refresh token) or exception 21301.
func refreshRejected(err error) bool {
	var apiErr *ksef.APIError
	return errors.Is(err, ksef.ErrUnauthorized) ||
		(errors.As(err, &apiErr) && apiErr.HasCode(ksef.CodeNoAuthorization))
}

// forgetTokens removes the tokens of st from the stored state, unless a new login has replaced
// them meanwhile, so that other processes go straight to ErrLoginRequired instead of each
// trying the dead refresh token. A failure is logged, not returned: the caller is already
// reporting ErrLoginRequired.
func (s *Store) forgetTokens(ctx context.Context, nip string, st *State) {
	dead := st.RefreshToken.Token
	_, err := s.update(ctx, nip, st, func(cur *State) error {
		if cur.RefreshToken.Token != dead {
			return ErrNoChange
		}
		cur.AccessToken, cur.RefreshToken = ksef.Token{}, ksef.Token{}
		cur.TokenIssuedAt, cur.TokenOwner = time.Time{}, ""
		return nil
	})
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "secrets: could not remove rejected tokens",
			slog.String("nip", nip), slog.String("error", err.Error()))
		return
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "secrets: refresh token rejected by KSeF; tokens removed",
		slog.String("nip", nip))
}

// DropAccessToken records that KSeF refused (HTTP 401) the access token this Store last handed
// out for nip. KSeF can end a token before its validUntil (its authentication was revoked, or it
// expired by KSeF's clock before this process's clock says so), and AccessToken would otherwise
// keep handing it out from memory. The token is removed from memory and, unless another process
// has replaced it meanwhile, from the state secret (the refresh token stays), so that the next
// AccessToken, here or in any process, refreshes it or adopts the replacement. A Store holding no
// access token only reads the latest state.
func (s *Store) DropAccessToken(ctx context.Context, nip string) error {
	if err := checkNIP(nip); err != nil {
		return err
	}
	cached, ok := s.cachedState(nip, false)
	if !ok || cached.AccessToken.Token == "" {
		_, err := s.loadState(ctx, nip)
		return err
	}
	refused := cached.AccessToken.Token
	dropped := false
	_, err := s.update(ctx, nip, nil, func(cur *State) error {
		dropped = false
		if cur.AccessToken.Token != refused {
			return ErrNoChange // already replaced by a refresh or a login elsewhere
		}
		cur.AccessToken = ksef.Token{}
		cur.TokenIssuedAt, cur.TokenOwner = time.Time{}, ""
		dropped = true
		return nil
	})
	if err != nil {
		return fmt.Errorf("secrets: drop refused access token of %s: %w", nip, err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "secrets: access token refused by KSeF",
		slog.String("nip", nip), slog.Bool("dropped", dropped))
	return nil
}

// reusable reports whether st holds an access token that this Store may hand out at now
// without refreshing.
func (s *Store) reusable(st *State, now time.Time) bool {
	return st.AccessToken.Token != "" && st.AccessToken.ValidUntil.Sub(now) > s.threshold(st)
}

// threshold is the remaining validity at or below which this Store refreshes st's access token
// (see the package documentation). With m the effective margin and slot this Store's value in
// [0, 1):
//
//	owner of the token:        m
//	no owner (after a login):  m * (1 - slot/2), in (m/2, m]
//	another Store owns it:     m/2 * (1 - slot/2), in (m/4, m/2]
func (s *Store) threshold(st *State) time.Duration {
	m := s.margin
	if !st.TokenIssuedAt.IsZero() {
		if life := st.AccessToken.ValidUntil.Sub(st.TokenIssuedAt); life > 0 && m > life/2 {
			m = life / 2
		}
	}
	stagger := func(d time.Duration) time.Duration { return d - time.Duration(float64(d)*s.slot/2) }
	switch st.TokenOwner {
	case s.id:
		return m
	case "":
		return stagger(m)
	}
	return stagger(m / 2)
}

// SaveTokens stores the tokens redeemed after a successful authentication, clears the pending
// authentication and returns the stored state. No Store owns the new access token, so the first
// refresh is staggered across processes (see the package documentation).
func (s *Store) SaveTokens(ctx context.Context, nip string, tokens ksef.AuthTokens) (*State, error) {
	if err := checkNIP(nip); err != nil {
		return nil, err
	}
	if tokens.AccessToken.Token == "" || tokens.RefreshToken.Token == "" {
		return nil, fmt.Errorf("secrets: save tokens of %s: access and refresh token required", nip)
	}
	return s.update(ctx, nip, nil, func(st *State) error {
		st.AccessToken = tokens.AccessToken
		st.RefreshToken = tokens.RefreshToken
		st.TokenIssuedAt = s.now().UTC()
		st.TokenOwner = ""
		st.PendingAuth = nil
		return nil
	})
}

// TokenSource adapts a Store to the ksef.Client's access token source for one NIP.
type TokenSource struct {
	store     *Store
	nip       string
	refresher Refresher
}

// TokenSource returns a source of access tokens for nip that refreshes them with r; see
// AccessToken.
func (s *Store) TokenSource(nip string, r Refresher) *TokenSource {
	return &TokenSource{store: s, nip: nip, refresher: r}
}

// AccessToken returns a valid access token; see Store.AccessToken.
func (ts *TokenSource) AccessToken(ctx context.Context) (ksef.Secret, error) {
	return ts.store.AccessToken(ctx, ts.nip, ts.refresher)
}
