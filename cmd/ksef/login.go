package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// tokenEnv is the environment variable holding the KSeF token. A token is never a flag: flags
// show in shell history and in the process list.
const tokenEnv = "KSEF_TOKEN"

const (
	authPollInterval = time.Second     // between authentication status calls
	authPollTimeout  = 2 * time.Minute // give up on a login still in progress after this
	refreshMargin    = 30 * time.Second
)

// errTimedOut means the command's --timeout would pass before the next poll.
var errTimedOut = errors.New("timed out")

// credentials are what a login uses: a KSeF token, or a certificate and its key (XAdES).
type credentials struct {
	token ksef.Secret
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate // the issuers of cert that came with it (PKCS #12), if any
}

// method names the login method for progress messages.
func (c *credentials) method() string {
	if c.cert != nil {
		return "XAdES signature, certificate " + c.cert.Subject.CommonName
	}
	return "KSeF token from " + tokenEnv
}

// loadCredentials reads the certificate and key named by --cert and --key or, without them,
// the KSeF token from the environment. Problems are usage errors: nothing was tried yet.
func loadCredentials(getenv func(string) string, certFile, keyFile string) (*credentials, error) {
	switch {
	case (certFile == "") != (keyFile == ""):
		return nil, usagef("--cert and --key go together")
	case certFile != "":
		certPEM, err := os.ReadFile(certFile)
		if err != nil {
			return nil, usagef("read --cert: %v", err)
		}
		keyPEM, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, usagef("read --key: %v", err)
		}
		cert, key, err := ksef.ParsePEM(certPEM, keyPEM)
		if err != nil {
			return nil, usagef("load --cert and --key: %v", err)
		}
		return &credentials{cert: cert, key: key}, nil
	}
	token := strings.TrimSpace(getenv(tokenEnv))
	if token == "" {
		return nil, usagef("no credentials: set the environment variable %s to a KSeF token, or give --cert and --key for an XAdES login", tokenEnv)
	}
	return &credentials{token: ksef.Secret(token)}, nil
}

// pacer waits between polls on the command's clock and refuses to wait past its deadline.
type pacer struct {
	now      func() time.Time
	wait     func(ctx context.Context, d time.Duration) error
	deadline time.Time
}

// sleep waits d, or returns errTimedOut at once if that would pass the deadline.
func (p *pacer) sleep(ctx context.Context, d time.Duration) error {
	if p.now().Add(d).After(p.deadline) {
		return errTimedOut
	}
	return p.wait(ctx, d)
}

// login authenticates in the context of nip: challenge, KSeF token or XAdES signature, status
// polled every second for at most authPollTimeout, then the tokens redeemed.
func login(ctx context.Context, c *ksef.Client, nip string, cred *credentials, p *pacer, progressf func(string, ...any)) (*ksef.AuthTokens, error) {
	r, err := authenticate(ctx, c, nip, cred, p, progressf)
	if err != nil {
		return nil, err
	}
	return r.tokens, nil
}

// loginResult is a finished login: the authentication operation, its final status (with the
// method KSeF recognised) and the redeemed tokens.
type loginResult struct {
	referenceNumber string
	status          *ksef.AuthStatus
	tokens          *ksef.AuthTokens
}

// authenticate is login, returning the authentication's reference number and final status too.
func authenticate(ctx context.Context, c *ksef.Client, nip string, cred *credentials, p *pacer, progressf func(string, ...any)) (*loginResult, error) {
	var init *ksef.AuthInit
	var err error
	if cred.cert != nil {
		init, err = c.AuthenticateWithCertificate(ctx, ksef.NipContext(nip), cred.key, cred.cert)
	} else {
		var ch *ksef.Challenge
		if ch, err = c.Challenge(ctx); err != nil {
			return nil, fmt.Errorf("get challenge: %w", err)
		}
		init, err = c.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{Challenge: ch, Context: ksef.NipContext(nip), Token: cred.token})
	}
	if err != nil {
		return nil, fmt.Errorf("submit authentication: %w", err)
	}
	start := p.now()
	for waited := false; ; waited = true {
		st, err := c.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token)
		if err != nil {
			return nil, fmt.Errorf("authentication %s status: %w", init.ReferenceNumber, err)
		}
		switch code := st.Status.Code; {
		case code == 200:
			tokens, err := c.RedeemTokens(ctx, init.AuthenticationToken.Token)
			if err != nil {
				return nil, fmt.Errorf("redeem tokens of authentication %s: %w", init.ReferenceNumber, err)
			}
			progressf("logged in (authentication %s)", init.ReferenceNumber)
			return &loginResult{referenceNumber: init.ReferenceNumber, status: st, tokens: tokens}, nil
		case code > 200:
			return nil, fmt.Errorf("authentication %s failed: %s", init.ReferenceNumber, describeStatus(st.Status))
		}
		if p.now().Sub(start) >= authPollTimeout {
			return nil, fmt.Errorf("authentication %s still in progress after %v (status %s)", init.ReferenceNumber, authPollTimeout, describeStatus(st.Status))
		}
		if !waited {
			progressf("waiting for KSeF to confirm authentication %s", init.ReferenceNumber)
		}
		if err := p.sleep(ctx, authPollInterval); err != nil {
			return nil, fmt.Errorf("authentication %s: %w", init.ReferenceNumber, err)
		}
	}
}

// describeStatus formats a KSeF status as "CODE DESCRIPTION: details" on one line.
func describeStatus(s ksef.Status) string {
	text := fmt.Sprintf("%d %s", s.Code, oneLine([]string{s.Description}))
	if len(s.Details) > 0 {
		text += ": " + oneLine(s.Details)
	}
	return text
}

// tokenSource is the client's AccessTokenSource after a login: it hands out the access token
// and refreshes it with the refresh token shortly before it expires, so that long runs outlive
// the access token's lifetime (about 15 minutes).
type tokenSource struct {
	now    func() time.Time
	client *ksef.Client // set once the client exists; the client needs the source first

	mu     sync.Mutex
	tokens *ksef.AuthTokens
}

var _ ksef.AccessTokenSource = (*tokenSource)(nil)

// set installs the tokens of a login.
func (t *tokenSource) set(tokens *ksef.AuthTokens) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tokens = tokens
}

// refreshToken returns the refresh token, or "" before a login.
func (t *tokenSource) refreshToken() ksef.Secret {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tokens == nil {
		return ""
	}
	return t.tokens.RefreshToken.Token
}

// AccessToken implements ksef.AccessTokenSource.
func (t *tokenSource) AccessToken(ctx context.Context) (ksef.Secret, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tokens == nil {
		return "", errors.New("not logged in")
	}
	if t.now().Add(refreshMargin).Before(t.tokens.AccessToken.ValidUntil) {
		return t.tokens.AccessToken.Token, nil
	}
	tok, err := t.client.RefreshAccessToken(ctx, t.tokens.RefreshToken.Token)
	if err != nil {
		return "", fmt.Errorf("refresh access token: %w", err)
	}
	t.tokens.AccessToken = *tok
	return tok.Token, nil
}
