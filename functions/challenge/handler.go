package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
	"github.com/ksef-serverless/ksef-serverless/pkg/secrets"
)

// Timings of the login protocol between executions.
const (
	// leaseTTL is how long a login claimed by one execution (challenge not yet answered) keeps
	// the others waiting for it; after that the claim is considered abandoned.
	leaseTTL = time.Minute
	// maxLoginAge is how long a started login is worth polling; the challenge it answered lives
	// 10 minutes.
	maxLoginAge = 10 * time.Minute
	// redeemGrace is how long after a login started the tokens it redeemed may still be on
	// their way to the state secret (another execution redeemed them and is saving them).
	redeemGrace = 2 * time.Minute
	// authPollSeconds is the wait between authentication status calls (the official SDKs poll
	// every second).
	authPollSeconds = 1
)

// store is the part of the secrets store the handler uses.
type store interface {
	AccessToken(ctx context.Context, nip string, r secrets.Refresher) (ksef.Secret, error)
	LatestState(ctx context.Context, nip string) (*secrets.State, error)
	Update(ctx context.Context, nip string, fn func(*secrets.State) error) (*secrets.State, error)
	SaveTokens(ctx context.Context, nip string, tokens ksef.AuthTokens) (*secrets.State, error)
}

// authClient is the part of the KSeF client the handler uses.
type authClient interface {
	RefreshAccessToken(ctx context.Context, refreshToken ksef.Secret) (*ksef.Token, error)
	Challenge(ctx context.Context) (*ksef.Challenge, error)
	AuthenticateWithKSeFToken(ctx context.Context, a ksef.KSeFTokenAuth) (*ksef.AuthInit, error)
	AuthenticateWithCertificate(ctx context.Context, c ksef.ContextIdentifier, key crypto.Signer, cert *x509.Certificate) (*ksef.AuthInit, error)
	RedeemTokens(ctx context.Context, authToken ksef.Secret) (*ksef.AuthTokens, error)
}

// clientFor returns the KSeF client and the credentials of a NIP.
type clientFor func(ctx context.Context, nip string) (authClient, *secrets.Credentials, error)

type handler struct {
	store   store
	clients clientFor
	now     func() time.Time
	log     *slog.Logger
}

// Handle makes sure a usable access token is stored for the NIP. In order: reuse or refresh the
// stored tokens; redeem a login that the state machine saw finish; join a login another
// execution started; or start a login and let the state machine poll it. One execution logs in
// while the others wait for it, so that a burst of invoices does not become a burst of logins.
func (h *handler) Handle(ctx context.Context, in flow.ChallengeInput) (flow.AuthState, error) {
	out, err := h.handle(ctx, in)
	if err != nil {
		err = flow.Classify("challenge", err)
		h.log.ErrorContext(ctx, "challenge failed", slog.String("nip", in.NIP), slog.String("error", err.Error()))
		return flow.AuthState{}, err
	}
	h.log.InfoContext(ctx, "challenge done", slog.String("nip", in.NIP), slog.Bool("ready", out.Ready),
		slog.String("referenceNumber", out.ReferenceNumber))
	return out, nil
}

func (h *handler) handle(ctx context.Context, in flow.ChallengeInput) (flow.AuthState, error) {
	if !ksef.ValidNIP(in.NIP) {
		return flow.AuthState{}, &flow.BadInputError{Reason: flow.Reason{Stage: "challenge", Message: fmt.Sprintf("invalid NIP %q", in.NIP)}}
	}
	client, creds, err := h.clients(ctx, in.NIP)
	if err != nil {
		return flow.AuthState{}, flow.AuthFailure("challenge", "load credentials", err)
	}
	ready := flow.AuthState{Ready: true, Attempt: in.Attempt, StatusCode: 200}

	if in.StatusCode == 200 {
		// Back after a finished login, or after KSeF refused the access token
		// (ReauthenticateOnce): this environment's memory may hold a token that KSeF no longer
		// takes and that is gone from the state. Read the state; AccessToken answers from it.
		if _, err := h.store.LatestState(ctx, in.NIP); err != nil {
			return flow.AuthState{}, fmt.Errorf("read session state: %w", err)
		}
	}
	_, err = h.store.AccessToken(ctx, in.NIP, client)
	if err == nil {
		return ready, nil
	}
	if !errors.Is(err, secrets.ErrLoginRequired) {
		return flow.AuthState{}, fmt.Errorf("reuse or refresh access token: %w", err)
	}

	st, err := h.store.LatestState(ctx, in.NIP)
	if err != nil {
		return flow.AuthState{}, fmt.Errorf("read session state: %w", err)
	}
	if st.AccessToken.Token != "" {
		// Tokens stored since AccessToken looked: another execution has just redeemed the login
		// (and cleared it from the state). The fresh read is in the Store's memory now.
		_, err := h.store.AccessToken(ctx, in.NIP, client)
		if err == nil {
			return ready, nil
		}
		if !errors.Is(err, secrets.ErrLoginRequired) {
			return flow.AuthState{}, fmt.Errorf("reuse or refresh access token: %w", err)
		}
	}
	now := h.now()
	if p := st.PendingAuth; p != nil && !h.stale(p, now) {
		if p.ReferenceNumber == "" {
			// Another execution is starting a login: wait for it.
			return pending("", p.Method, in.Attempt), nil
		}
		if in.StatusCode != 200 {
			// A login is running: poll it rather than start another.
			return pending(p.ReferenceNumber, p.Method, in.Attempt), nil
		}
		return h.redeem(ctx, in, client, p)
	}
	return h.login(ctx, in, client, creds)
}

// stale reports whether a pending login is not worth waiting for any more.
func (h *handler) stale(p *secrets.PendingAuth, now time.Time) bool {
	if p.ReferenceNumber == "" {
		return now.Sub(p.StartedAt) > leaseTTL
	}
	return now.Sub(p.StartedAt) > maxLoginAge || !now.Before(p.AuthenticationToken.ValidUntil)
}

// redeem exchanges a finished login for tokens, once. If another execution redeemed it first,
// its tokens are already stored (or about to be).
func (h *handler) redeem(ctx context.Context, in flow.ChallengeInput, client authClient, p *secrets.PendingAuth) (flow.AuthState, error) {
	tokens, err := client.RedeemTokens(ctx, p.AuthenticationToken.Token)
	var apiErr *ksef.APIError
	if errors.As(err, &apiErr) && apiErr.HasCode(ksef.CodeNoAuthorization) {
		// Already redeemed (by another execution) or not finished after all: look again.
		h.log.InfoContext(ctx, "login already redeemed elsewhere or not finished", slog.String("nip", in.NIP),
			slog.String("referenceNumber", p.ReferenceNumber))
		if _, err := h.store.AccessToken(ctx, in.NIP, client); err == nil {
			return flow.AuthState{Ready: true, Attempt: in.Attempt, StatusCode: 200}, nil
		}
		if h.now().Sub(p.StartedAt) > redeemGrace {
			// Redeemed long ago yet no tokens stored: whoever redeemed them died before saving.
			// The login is spent; start another.
			h.dropLogin(ctx, in.NIP, p.ReferenceNumber)
			return flow.AuthState{Attempt: in.Attempt, WaitSeconds: authPollSeconds}, nil
		}
		return pending(p.ReferenceNumber, p.Method, in.Attempt), nil
	}
	if err != nil {
		return flow.AuthState{}, flow.AuthFailure("challenge", "redeem tokens", err)
	}
	if _, err := h.store.SaveTokens(ctx, in.NIP, *tokens); err != nil {
		return flow.AuthState{}, fmt.Errorf("store tokens: %w", err)
	}
	h.log.InfoContext(ctx, "logged in to KSeF", slog.String("nip", in.NIP), slog.String("referenceNumber", p.ReferenceNumber),
		slog.Time("accessTokenValidUntil", tokens.AccessToken.ValidUntil))
	return flow.AuthState{Ready: true, Attempt: in.Attempt, StatusCode: 200, ReferenceNumber: p.ReferenceNumber}, nil
}

// login claims the NIP's login (so that concurrent executions wait for this one), then answers
// a challenge with the configured credentials and records the login for polling.
func (h *handler) login(ctx context.Context, in flow.ChallengeInput, client authClient, creds *secrets.Credentials) (flow.AuthState, error) {
	now := h.now()
	lease := &secrets.PendingAuth{StartedAt: now.UTC(), Method: creds.AuthMethod}
	claimed := false
	st, err := h.store.Update(ctx, in.NIP, func(st *secrets.State) error {
		claimed = false
		if st.PendingAuth != nil && !h.stale(st.PendingAuth, now) {
			return secrets.ErrNoChange // someone else got there first
		}
		st.PendingAuth = lease
		claimed = true
		return nil
	})
	if err != nil {
		return flow.AuthState{}, fmt.Errorf("claim login: %w", err)
	}
	if !claimed {
		p := st.PendingAuth
		return pending(p.ReferenceNumber, p.Method, in.Attempt), nil
	}

	init, err := h.authenticate(ctx, in.NIP, client, creds)
	if err != nil {
		h.release(ctx, in.NIP, lease)
		return flow.AuthState{}, flow.AuthFailure("challenge", "start KSeF authentication", err)
	}
	started := &secrets.PendingAuth{
		ReferenceNumber:     init.ReferenceNumber,
		AuthenticationToken: init.AuthenticationToken,
		StartedAt:           lease.StartedAt,
		Method:              creds.AuthMethod,
	}
	recorded := false
	st, err = h.store.Update(ctx, in.NIP, func(st *secrets.State) error {
		recorded = false
		if !holds(st.PendingAuth, lease) {
			// KSeF took longer than the lease: another execution found it stale and claimed the
			// login (and may have started or even finished its own). Theirs stands.
			return secrets.ErrNoChange
		}
		st.PendingAuth = started
		recorded = true
		return nil
	})
	if err != nil {
		return flow.AuthState{}, fmt.Errorf("record login: %w", err)
	}
	if !recorded {
		h.log.WarnContext(ctx, "login claim lost while starting; following the login that took over", slog.String("nip", in.NIP),
			slog.String("abandonedReferenceNumber", init.ReferenceNumber))
		if p := st.PendingAuth; p != nil {
			return pending(p.ReferenceNumber, p.Method, in.Attempt), nil
		}
		// No login pending any more (the winner's was redeemed, or given up): polling finds none
		// and sends the execution back here, to use the stored tokens or start again.
		return pending("", creds.AuthMethod, in.Attempt), nil
	}
	h.log.InfoContext(ctx, "KSeF authentication started", slog.String("nip", in.NIP),
		slog.String("referenceNumber", init.ReferenceNumber), slog.String("method", string(creds.AuthMethod)))
	return pending(init.ReferenceNumber, creds.AuthMethod, in.Attempt), nil
}

func (h *handler) authenticate(ctx context.Context, nip string, client authClient, creds *secrets.Credentials) (*ksef.AuthInit, error) {
	switch creds.AuthMethod {
	case secrets.AuthToken:
		ch, err := client.Challenge(ctx)
		if err != nil {
			return nil, fmt.Errorf("get challenge: %w", err)
		}
		return client.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{Challenge: ch, Context: ksef.NipContext(nip), Token: creds.KSeFToken})
	case secrets.AuthXAdES:
		cert, key, err := ksef.ParsePEM([]byte(creds.CertificatePEM), []byte(creds.PrivateKeyPEM.Reveal()))
		if err != nil {
			return nil, &secrets.CredentialsError{Field: "certificatePem", Reason: "cannot use certificate and key: " + err.Error()}
		}
		return client.AuthenticateWithCertificate(ctx, ksef.NipContext(nip), key, cert)
	}
	return nil, &secrets.CredentialsError{Field: "authMethod", Reason: fmt.Sprintf("unsupported method %q", creds.AuthMethod)}
}

// dropLogin forgets a login whose tokens were redeemed but never stored. Best effort.
func (h *handler) dropLogin(ctx context.Context, nip, ref string) {
	_, err := h.store.Update(ctx, nip, func(st *secrets.State) error {
		if st.PendingAuth == nil || st.PendingAuth.ReferenceNumber != ref {
			return secrets.ErrNoChange
		}
		st.PendingAuth = nil
		return nil
	})
	if err != nil {
		h.log.WarnContext(ctx, "could not drop spent login", slog.String("nip", nip), slog.String("error", err.Error()))
	}
}

// release gives up a claimed login that could not be started, so that the next execution
// tries at once instead of waiting for the lease to expire. Best effort.
func (h *handler) release(ctx context.Context, nip string, lease *secrets.PendingAuth) {
	_, err := h.store.Update(ctx, nip, func(st *secrets.State) error {
		if !holds(st.PendingAuth, lease) {
			return secrets.ErrNoChange
		}
		st.PendingAuth = nil
		return nil
	})
	if err != nil {
		h.log.WarnContext(ctx, "could not release login claim", slog.String("nip", nip), slog.String("error", err.Error()))
	}
}

// holds reports whether the pending login p is still the claim lease: not taken over by another
// execution once the lease expired, and not yet started.
func holds(p, lease *secrets.PendingAuth) bool {
	return p != nil && p.ReferenceNumber == "" && p.StartedAt.Equal(lease.StartedAt)
}

func pending(ref string, method secrets.AuthMethod, attempt int) flow.AuthState {
	return flow.AuthState{ReferenceNumber: ref, Method: string(method), WaitSeconds: authPollSeconds, Attempt: attempt, StatusCode: 100}
}
