package secrets

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
	"github.com/aws/smithy-go"
)

// API is the part of the AWS Secrets Manager client that a Store uses, with the exact
// aws-sdk-go-v2 signatures: *secretsmanager.Client satisfies it, and tests pass a fake.
type API interface {
	GetSecretValue(ctx context.Context, in *secretsmanager.GetSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error)
	PutSecretValue(ctx context.Context, in *secretsmanager.PutSecretValueInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error)
	CreateSecret(ctx context.Context, in *secretsmanager.CreateSecretInput, optFns ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error)
}

var _ API = (*secretsmanager.Client)(nil)

// Sentinel errors, tested with errors.Is. Errors returned by a Store wrap them with context.
var (
	// ErrNotFound means that the credentials secret of a NIP does not exist (or that the state
	// secret disappeared while it was being written; a state secret that does not exist yet is
	// not an error).
	ErrNotFound = errors.New("secrets: secret not found")
	// ErrLoginRequired means that no usable access token can be had without a new KSeF
	// authentication: there is no state yet, no tokens in it, or the refresh token has expired.
	ErrLoginRequired = errors.New("secrets: ksef login required")
	// ErrConflict means that the session state kept changing under an Update until its attempts
	// ran out. Retrying later is safe.
	ErrConflict = errors.New("secrets: concurrent update conflict")
	// ErrNoChange, returned by the function given to Update, ends the update without writing.
	ErrNoChange = errors.New("secrets: no change")
	// ErrInvalidCredentials means that a credentials secret is malformed or incomplete; the
	// error is a *CredentialsError that names the field.
	ErrInvalidCredentials = errors.New("secrets: invalid credentials")
)

// Defaults of the Store options.
const (
	DefaultCacheTTL      = 30 * time.Second // how long State and Credentials answer from memory
	DefaultRefreshMargin = 2 * time.Minute  // how long before expiry the owner refreshes a token
	defaultMaxAttempts   = 8                // writes an Update tries before ErrConflict
)

// Store reads KSeF credentials and reads and writes the KSeF session state of each NIP in AWS
// Secrets Manager. Build one per process (one per Lambda execution environment) and share it: it
// caches what it reads and collapses concurrent token refreshes. It is safe for concurrent use.
type Store struct {
	api         API
	now         func() time.Time
	log         *slog.Logger
	names       func(nip string) (credentials, state string)
	ttl         time.Duration
	margin      time.Duration
	kmsKeyID    string
	maxAttempts int
	// wait pauses between the attempts of a conflicting update; tests replace it.
	wait func(ctx context.Context, d time.Duration) error
	// id names this Store in the state (TokenOwner); slot in [0, 1) is derived from it and
	// staggers the refreshes of the Stores that do not own the token.
	id     string
	slot   float64
	writes atomic.Uint64 // sequence number of this Store's write attempts, for UpdatedBy

	mu      sync.Mutex
	creds   map[string]credsEntry
	states  map[string]stateEntry
	flights map[string]*flight
}

type credsEntry struct {
	c      *Credentials
	readAt time.Time
}

type stateEntry struct {
	st     *State // never modified once cached; callers get clones
	readAt time.Time
}

// Option configures a Store.
type Option func(*Store)

// WithClock sets the clock used for token expiry and cache ages (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) {
		if now != nil {
			s.now = now
		}
	}
}

// WithLogger sets the logger (default: discard). Nothing secret is ever logged.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// WithNames sets how secret names are derived from a NIP. The default gives
// "ksef/<NIP>/credentials" and "ksef/<NIP>/session".
func WithNames(names func(nip string) (credentials, state string)) Option {
	return func(s *Store) {
		if names != nil {
			s.names = names
		}
	}
}

// WithCacheTTL sets how long State and Credentials answer from memory (default
// DefaultCacheTTL); 0 disables that cache. AccessToken does not depend on it: a cached access
// token is reused for as long as it is valid beyond the refresh margin.
func WithCacheTTL(d time.Duration) Option {
	return func(s *Store) { s.ttl = max(d, 0) }
}

// WithRefreshMargin sets how long before its expiry an access token is refreshed (default
// DefaultRefreshMargin). For tokens that live less than twice the margin, half their lifetime
// is used instead.
func WithRefreshMargin(d time.Duration) Option {
	return func(s *Store) { s.margin = max(d, 0) }
}

// WithKMSKeyID sets the KMS key (ID, ARN or alias) used when the Store creates a state secret.
// Without it Secrets Manager uses the account's aws/secretsmanager key.
func WithKMSKeyID(id string) Option {
	return func(s *Store) { s.kmsKeyID = id }
}

// New returns a Store that calls Secrets Manager through api, which must not be nil.
func New(api API, opts ...Option) *Store {
	s := &Store{
		api:         api,
		now:         time.Now,
		log:         slog.New(slog.DiscardHandler),
		names:       defaultNames,
		ttl:         DefaultCacheTTL,
		margin:      DefaultRefreshMargin,
		maxAttempts: defaultMaxAttempts,
		wait:        sleepCtx,
		creds:       make(map[string]credsEntry),
		states:      make(map[string]stateEntry),
		flights:     make(map[string]*flight),
	}
	for _, o := range opts {
		o(s)
	}
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand documents a fatal error instead)
	s.setID("c-" + hex.EncodeToString(b[:]))
	return s
}

func defaultNames(nip string) (credentials, state string) {
	return "ksef/" + nip + "/credentials", "ksef/" + nip + "/session"
}

// setID sets the instance id and the refresh slot derived from it.
func (s *Store) setID(id string) {
	s.id = id
	h := sha256.Sum256([]byte(id))
	s.slot = float64(binary.BigEndian.Uint64(h[:8])>>11) / (1 << 53)
}

// State returns the session state of nip, from memory if it was read less than the cache TTL
// ago. A state secret that does not exist yet reads as the zero State. To see a change that
// another process made a moment ago, use LatestState.
func (s *Store) State(ctx context.Context, nip string) (*State, error) {
	if err := checkNIP(nip); err != nil {
		return nil, err
	}
	if st, ok := s.cachedState(nip, true); ok {
		return st.clone(), nil
	}
	st, err := s.loadState(ctx, nip)
	if err != nil {
		return nil, err
	}
	return st.clone(), nil
}

// LatestState reads the session state of nip from Secrets Manager, bypassing the cache (and
// refreshing it).
func (s *Store) LatestState(ctx context.Context, nip string) (*State, error) {
	if err := checkNIP(nip); err != nil {
		return nil, err
	}
	st, err := s.loadState(ctx, nip)
	if err != nil {
		return nil, err
	}
	return st.clone(), nil
}

// Update changes the session state of nip with compare-and-swap semantics and returns the state
// as stored. It reads the latest state, passes a copy to fn and writes the result as a new
// secret version only if no other writer got in first; otherwise it reads again and calls fn
// again (so fn must be a function of its argument alone), at most a few times before giving up
// with ErrConflict. If fn returns ErrNoChange nothing is written and the state read is returned;
// any other error from fn is returned wrapped. UpdatedAt is set on every write. The state secret
// is created if it does not exist.
func (s *Store) Update(ctx context.Context, nip string, fn func(*State) error) (*State, error) {
	if err := checkNIP(nip); err != nil {
		return nil, err
	}
	return s.update(ctx, nip, nil, fn)
}

// update is Update starting from cur, a state already read (nil to read it first).
func (s *Store) update(ctx context.Context, nip string, cur *State, fn func(*State) error) (*State, error) {
	_, name := s.names(nip)
	for attempt := 1; ; attempt++ {
		if cur == nil {
			var err error
			if cur, err = s.loadState(ctx, nip); err != nil {
				return nil, err
			}
		}
		next := cur.clone()
		if err := fn(next); err != nil {
			if errors.Is(err, ErrNoChange) {
				return cur.clone(), nil
			}
			return nil, fmt.Errorf("secrets: update state of %s: %w", nip, err)
		}
		next.UpdatedAt = s.now().UTC()
		next.UpdatedBy = s.id + "/" + strconv.FormatUint(s.writes.Add(1), 10)
		body, err := next.marshal()
		if err != nil {
			return nil, fmt.Errorf("secrets: update state of %s: %w", nip, err)
		}
		version, err := s.write(ctx, name, cur.version, body)
		if err == nil {
			next.version = version
			s.storeState(nip, next)
			s.log.LogAttrs(ctx, slog.LevelDebug, "secrets: state written",
				slog.String("nip", nip), slog.String("versionId", version), slog.Int("attempt", attempt))
			return next.clone(), nil
		}
		if !errors.Is(err, errVersionTaken) {
			return nil, fmt.Errorf("secrets: update state of %s: %w", nip, err)
		}
		s.log.LogAttrs(ctx, slog.LevelDebug, "secrets: state changed concurrently, retrying",
			slog.String("nip", nip), slog.String("readVersionId", cur.version), slog.Int("attempt", attempt))
		if attempt >= s.maxAttempts {
			return nil, fmt.Errorf("%w: state of %s changed under each of %d attempts", ErrConflict, nip, attempt)
		}
		if err := s.wait(ctx, backoff(attempt)); err != nil {
			return nil, fmt.Errorf("secrets: update state of %s: %w", nip, err)
		}
		cur = nil
	}
}

// errVersionTaken means the version a write would create already exists with other content:
// another writer that read the same version won.
var errVersionTaken = errors.New("secrets: version already written")

// write stores body as the version that follows prev (the VersionId that was read, "" if the
// secret had no value). The version's ClientRequestToken is derived from prev, so of all
// writers that read prev exactly one can create it; the others get errVersionTaken.
func (s *Store) write(ctx context.Context, name, prev string, body string) (string, error) {
	token := versionToken(name, prev)
	if prev == "" {
		in := &secretsmanager.CreateSecretInput{
			Name:               aws.String(name),
			ClientRequestToken: aws.String(token),
			SecretString:       aws.String(body),
			Description:        aws.String("KSeF session state (tokens, pending authentication, online session), managed by ksef-serverless"),
		}
		if s.kmsKeyID != "" {
			in.KmsKeyId = aws.String(s.kmsKeyID)
		}
		out, err := s.api.CreateSecret(ctx, in)
		if err == nil {
			s.log.LogAttrs(ctx, slog.LevelInfo, "secrets: state secret created", slog.String("secret", name))
			return versionOr(out.VersionId, token), nil
		}
		if !isAWSError[*types.ResourceExistsException](err, "ResourceExistsException") {
			return "", fmt.Errorf("create secret %s: %w", name, err)
		}
		// The secret exists: either another writer has just created it (then the version below
		// exists too and this write loses) or it exists without a value (created by
		// infrastructure code, say), and the version below becomes its first.
	}
	out, err := s.api.PutSecretValue(ctx, &secretsmanager.PutSecretValueInput{
		SecretId:           aws.String(name),
		ClientRequestToken: aws.String(token),
		SecretString:       aws.String(body),
	})
	switch {
	case err == nil:
		return versionOr(out.VersionId, token), nil
	case isAWSError[*types.ResourceExistsException](err, "ResourceExistsException"):
		return "", errVersionTaken
	case isAWSError[*types.ResourceNotFoundException](err, "ResourceNotFoundException"):
		return "", fmt.Errorf("%w: put secret value %s: %w", ErrNotFound, name, err)
	}
	return "", fmt.Errorf("put secret value %s: %w", name, err)
}

// versionOr returns the VersionId of a write's response, or the token it was written with (which
// Secrets Manager uses as the VersionId) if the response lacks one.
func versionOr(id *string, token string) string {
	if v := aws.ToString(id); v != "" {
		return v
	}
	return token
}

// versionToken derives the ClientRequestToken (and so the VersionId) of the version that
// follows prev in secret name: a UUID-shaped string (version 8, RFC 9562) made of the first 16
// bytes of SHA-256 over a fixed label, name and prev.
func versionToken(name, prev string) string {
	h := sha256.Sum256([]byte("ksef-serverless/secrets/v1\x00" + name + "\x00" + prev))
	u := h[:16]
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// loadState reads the state secret of nip, bypassing the cache, and caches the result.
func (s *Store) loadState(ctx context.Context, nip string) (*State, error) {
	_, name := s.names(nip)
	out, err := s.api.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(name)})
	var st *State
	switch {
	case err == nil:
		if out.SecretString == nil {
			return nil, fmt.Errorf("secrets: read state of %s: secret %s holds binary data, want a JSON string", nip, name)
		}
		if st, err = decodeState(*out.SecretString); err != nil {
			return nil, fmt.Errorf("secrets: read state of %s from %s: %w", nip, name, err)
		}
		st.version = aws.ToString(out.VersionId)
	case isAWSError[*types.ResourceNotFoundException](err, "ResourceNotFoundException"):
		// No secret yet, or a secret without a current value: both read as the zero State, and
		// the first Update creates the value.
		st = &State{}
	default:
		return nil, fmt.Errorf("secrets: read state of %s: get secret value %s: %w", nip, name, err)
	}
	s.storeState(nip, st)
	return st, nil
}

// cachedState returns the cached state of nip; with fresh set, only if younger than the TTL.
func (s *Store) cachedState(nip string, fresh bool) (*State, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.states[nip]
	if !ok || (fresh && s.now().Sub(e.readAt) >= s.ttl) {
		return nil, false
	}
	return e.st, true
}

// storeState caches st, unless the cache already holds the version that follows it: a read
// that was overtaken by a write in this process must not replace what the writer stored.
func (s *Store) storeState(nip string, st *State) {
	_, name := s.names(nip)
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.states[nip]; ok && e.st.version == versionToken(name, st.version) {
		return
	}
	s.states[nip] = stateEntry{st: st, readAt: s.now()}
}

// isAWSError reports whether err is the modelled SDK error T or, failing that, any smithy API
// error with the given code (as a fake or an older SDK may return).
func isAWSError[T error](err error, code string) bool {
	var target T
	if errors.As(err, &target) {
		return true
	}
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}

// backoff returns a full-jitter delay before attempt+1 of a conflicting update: random in
// [0, min(25ms*2^attempt, 1s)).
func backoff(attempt int) time.Duration {
	ceiling := min(25*time.Millisecond<<min(attempt, 6), time.Second)
	return mrand.N(ceiling)
}

// sleepCtx waits for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
