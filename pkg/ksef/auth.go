package ksef

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Challenge is KSeF's answer to POST /auth/challenge. A challenge lives 10 minutes and is used
// once, by AuthenticateWithKSeFToken or in a signed AuthTokenRequest.
type Challenge struct {
	Challenge   string    // 36 characters, e.g. 20250514-CR-226FB7B000-3ACF9BE4C0-10
	Timestamp   time.Time // server time of the challenge
	TimestampMs int64     // the same instant in Unix milliseconds: the suffix of the encrypted KSeF token
	ClientIP    string    // the caller's IP address as KSeF sees it
}

type challengeWire struct {
	Challenge   string  `json:"challenge"`
	Timestamp   apiTime `json:"timestamp"`
	TimestampMs int64   `json:"timestampMs"`
	ClientIP    string  `json:"clientIp"`
}

// Challenge starts an authentication (POST /auth/challenge, no token needed).
func (c *Client) Challenge(ctx context.Context) (*Challenge, error) {
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/auth/challenge"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: Challenge: %w", err)
	}
	// A repeated challenge request only yields another challenge: safe to retry.
	req.op, req.auth, req.repeatable = "Challenge", authNone, true
	var w challengeWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	if w.Challenge == "" {
		return nil, errors.New("ksef: Challenge: response has no challenge")
	}
	return &Challenge{Challenge: w.Challenge, Timestamp: w.Timestamp.Time, TimestampMs: w.TimestampMs, ClientIP: w.ClientIP}, nil
}

// unixMilli is the challenge time to put after the token: timestampMs, or, from a server that
// does not send it, timestamp truncated to milliseconds. Never the local clock.
func (ch *Challenge) unixMilli() (int64, error) {
	switch {
	case ch.TimestampMs > 0:
		return ch.TimestampMs, nil
	case !ch.Timestamp.IsZero():
		return ch.Timestamp.UnixMilli(), nil
	}
	return 0, errors.New("challenge has no timestamp")
}

// KSeFTokenAuth is a login with a KSeF token.
type KSeFTokenAuth struct {
	Challenge  *Challenge        // from Challenge, at most 10 minutes old
	Context    ContextIdentifier // usually NipContext(nip)
	Token      Secret            // the KSeF token, as generated (it contains '|' characters)
	AllowedIPs *AllowedIPs       // optional: restrict where the resulting tokens may be used from
}

// AuthInit is KSeF's acknowledgement of a login request. The login runs asynchronously: poll
// AuthStatus with the authentication token until its status is 200, then call RedeemTokens.
type AuthInit struct {
	ReferenceNumber     string // the authentication operation, e.g. 20250514-AU-...
	AuthenticationToken Token  // the operation token for AuthStatus and RedeemTokens
}

type tokenWire struct {
	Token      Secret  `json:"token"`
	ValidUntil apiTime `json:"validUntil"`
}

func (w tokenWire) token() Token { return Token{Token: w.Token, ValidUntil: w.ValidUntil.Time} }

type authInitWire struct {
	ReferenceNumber     string    `json:"referenceNumber"`
	AuthenticationToken tokenWire `json:"authenticationToken"`
}

func (w authInitWire) authInit(op string) (*AuthInit, error) {
	if w.ReferenceNumber == "" || w.AuthenticationToken.Token == "" {
		return nil, fmt.Errorf("ksef: %s: response lacks reference number or authentication token", op)
	}
	return &AuthInit{ReferenceNumber: w.ReferenceNumber, AuthenticationToken: w.AuthenticationToken.token()}, nil
}

type authorizationPolicy struct {
	AllowedIPs *AllowedIPs `json:"allowedIps,omitempty"`
}

type ksefTokenRequest struct {
	Challenge           string               `json:"challenge"`
	ContextIdentifier   ContextIdentifier    `json:"contextIdentifier"`
	EncryptedToken      []byte               `json:"encryptedToken"`
	PublicKeyID         string               `json:"publicKeyId,omitempty"`
	AuthorizationPolicy *authorizationPolicy `json:"authorizationPolicy,omitempty"`
}

// AuthenticateWithKSeFToken submits a KSeF-token login (POST /auth/ksef-token). The token is
// sent as "<token>|<challenge timestampMs>" encrypted with RSA-OAEP (SHA-256) under the MF key
// for KsefTokenEncryption; if KSeF no longer accepts that key (code 21470) the client fetches
// the keys again and resubmits once.
func (c *Client) AuthenticateWithKSeFToken(ctx context.Context, a KSeFTokenAuth) (*AuthInit, error) {
	const op = "AuthenticateWithKSeFToken"
	if a.Challenge == nil || a.Challenge.Challenge == "" {
		return nil, fmt.Errorf("ksef: %s: no challenge", op)
	}
	ms, err := a.Challenge.unixMilli()
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if err := checkContext(a.Context); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	if a.Token == "" {
		return nil, fmt.Errorf("ksef: %s: empty KSeF token", op)
	}
	var policy *authorizationPolicy
	if a.AllowedIPs != nil {
		policy = &authorizationPolicy{AllowedIPs: a.AllowedIPs}
	}
	var out *AuthInit
	err = c.withEncryptionKey(ctx, KeyUsageKSeFToken, func(key encryptionKey) error {
		plain := []byte(a.Token.Reveal() + "|" + strconv.FormatInt(ms, 10))
		encrypted, err := encryptOAEP(key.pub, plain)
		clear(plain)
		if err != nil {
			return fmt.Errorf("ksef: %s: encrypt token: %w", op, err)
		}
		req, err := c.newRequest(ctx, http.MethodPost, pathOf("/auth/ksef-token"), ksefTokenRequest{
			Challenge:           a.Challenge.Challenge,
			ContextIdentifier:   a.Context,
			EncryptedToken:      encrypted,
			PublicKeyID:         key.id,
			AuthorizationPolicy: policy,
		})
		if err != nil {
			return fmt.Errorf("ksef: %s: %w", op, err)
		}
		req.op, req.auth = op, authNone
		var w authInitWire
		if err := c.do(req, &w); err != nil {
			return err
		}
		out, err = w.authInit(op)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AuthenticateWithXAdES submits a signed AuthTokenRequest document (POST
// /auth/xades-signature, application/xml), as built by BuildAuthTokenRequest and SignXAdES.
// verifyCertificateChain asks environments that accept self-signed certificates (Test) to
// check the chain and revocation anyway.
func (c *Client) AuthenticateWithXAdES(ctx context.Context, signedRequest []byte, verifyCertificateChain bool) (*AuthInit, error) {
	const op = "AuthenticateWithXAdES"
	if len(signedRequest) == 0 {
		return nil, fmt.Errorf("ksef: %s: empty signed request", op)
	}
	p := pathOf("/auth/xades-signature")
	if verifyCertificateChain {
		p = p.withQuery(url.Values{"verifyCertificateChain": {"true"}})
	}
	req, err := c.newRequest(ctx, http.MethodPost, p, xmlBody(signedRequest))
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.auth = op, authNone
	var w authInitWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	return w.authInit(op)
}

// AuthenticateWithCertificate logs in with a certificate and its private key: it fetches a
// challenge, builds the AuthTokenRequest for the context with SubjectIdentifierType
// certificateSubject (identity taken from the certificate's subject: NIP, PESEL or seal),
// signs it with XAdES-BES (signing time one minute before now, as the official signer does)
// and submits it. For a certificate without NIP or PESEL (SubjectFingerprint), an IP policy
// or chain verification on Test, use BuildAuthTokenRequest, SignXAdES and
// AuthenticateWithXAdES directly.
func (c *Client) AuthenticateWithCertificate(ctx context.Context, id ContextIdentifier, key crypto.Signer, cert *x509.Certificate) (*AuthInit, error) {
	const op = "AuthenticateWithCertificate"
	if key == nil || cert == nil {
		return nil, fmt.Errorf("ksef: %s: key and certificate are required", op)
	}
	if err := checkContext(id); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	ch, err := c.Challenge(ctx)
	if err != nil {
		return nil, err
	}
	doc, err := BuildAuthTokenRequest(AuthTokenRequest{
		Challenge:             ch.Challenge,
		Context:               id,
		SubjectIdentifierType: SubjectCertificate,
	})
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	signingTime := c.now().Add(-time.Minute)
	if signingTime.Before(cert.NotBefore) {
		signingTime = cert.NotBefore // a certificate made a moment ago
	}
	signed, err := SignXAdES(doc, key, cert, signingTime)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	return c.AuthenticateWithXAdES(ctx, signed, false)
}

// AuthStatus is the state of an authentication operation (GET /auth/{referenceNumber}). HTTP
// 200 carries failures too: Status.Code is 100 while in progress, 200 on success (redeem the
// tokens now) and 4xx/5xx when the login failed (415 no permissions, 450 bad token or
// challenge, 460 certificate error, ...).
type AuthStatus struct {
	Status                 Status
	StartDate              time.Time
	Method                 string // deprecated authenticationMethod: Token, QualifiedSeal, ...
	MethodCategory         string // XadesSignature, NationalNode, Token or Other
	MethodCode             string // e.g. "xades.qualified-seal"
	MethodDisplayName      string
	IsTokenRedeemed        bool
	LastTokenRefreshDate   time.Time
	RefreshTokenValidUntil time.Time
}

type authStatusWire struct {
	StartDate                apiTime `json:"startDate"`
	AuthenticationMethod     string  `json:"authenticationMethod"`
	AuthenticationMethodInfo struct {
		Category    string `json:"category"`
		Code        string `json:"code"`
		DisplayName string `json:"displayName"`
	} `json:"authenticationMethodInfo"`
	Status                 Status  `json:"status"`
	IsTokenRedeemed        bool    `json:"isTokenRedeemed"`
	LastTokenRefreshDate   apiTime `json:"lastTokenRefreshDate"`
	RefreshTokenValidUntil apiTime `json:"refreshTokenValidUntil"`
}

func (w authStatusWire) status() AuthStatus {
	return AuthStatus{
		Status:                 w.Status,
		StartDate:              w.StartDate.Time,
		Method:                 w.AuthenticationMethod,
		MethodCategory:         w.AuthenticationMethodInfo.Category,
		MethodCode:             w.AuthenticationMethodInfo.Code,
		MethodDisplayName:      w.AuthenticationMethodInfo.DisplayName,
		IsTokenRedeemed:        w.IsTokenRedeemed,
		LastTokenRefreshDate:   w.LastTokenRefreshDate.Time,
		RefreshTokenValidUntil: w.RefreshTokenValidUntil.Time,
	}
}

// AuthStatus makes one status call for an authentication operation, with its authentication
// token. Waiting between calls is the caller's business (a Step Functions Wait state).
func (c *Client) AuthStatus(ctx context.Context, referenceNumber string, authToken Secret) (*AuthStatus, error) {
	const op = "AuthStatus"
	if err := required("reference number", referenceNumber, "authentication token", string(authToken)); err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req, err := c.newRequest(ctx, http.MethodGet, pathOf("/auth/{referenceNumber}", referenceNumber), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.auth, req.token = op, authExplicit, authToken
	var w authStatusWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	s := w.status()
	return &s, nil
}

type authTokensWire struct {
	AccessToken  tokenWire `json:"accessToken"`
	RefreshToken tokenWire `json:"refreshToken"`
}

// RedeemTokens exchanges the authentication token of a successful login for the access and
// refresh tokens (POST /auth/token/redeem). It works once per login: a second call fails with
// code 21301, so a failed attempt is never repeated blindly.
func (c *Client) RedeemTokens(ctx context.Context, authToken Secret) (*AuthTokens, error) {
	const op = "RedeemTokens"
	if authToken == "" {
		return nil, fmt.Errorf("ksef: %s: empty authentication token", op)
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/auth/token/redeem"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.auth, req.token = op, authExplicit, authToken
	var w authTokensWire
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	if w.AccessToken.Token == "" || w.RefreshToken.Token == "" {
		return nil, fmt.Errorf("ksef: %s: response lacks a token", op)
	}
	return &AuthTokens{AccessToken: w.AccessToken.token(), RefreshToken: w.RefreshToken.token()}, nil
}

// RefreshAccessToken gets a new access token with the refresh token (POST
// /auth/token/refresh). The refresh token itself is not renewed.
func (c *Client) RefreshAccessToken(ctx context.Context, refreshToken Secret) (*Token, error) {
	const op = "RefreshAccessToken"
	if refreshToken == "" {
		return nil, fmt.Errorf("ksef: %s: empty refresh token", op)
	}
	req, err := c.newRequest(ctx, http.MethodPost, pathOf("/auth/token/refresh"), nil)
	if err != nil {
		return nil, fmt.Errorf("ksef: %s: %w", op, err)
	}
	// Refreshing twice only yields two access tokens: safe to retry.
	req.op, req.auth, req.token, req.repeatable = op, authExplicit, refreshToken, true
	var w struct {
		AccessToken tokenWire `json:"accessToken"`
	}
	if err := c.do(req, &w); err != nil {
		return nil, err
	}
	if w.AccessToken.Token == "" {
		return nil, fmt.Errorf("ksef: %s: response lacks the access token", op)
	}
	t := w.AccessToken.token()
	return &t, nil
}

// RevokeCurrentSession ends the authentication session that token (an access or a refresh
// token) belongs to (DELETE /auth/sessions/current): its refresh token stops working; access
// tokens already issued stay valid until they expire.
func (c *Client) RevokeCurrentSession(ctx context.Context, token Secret) error {
	const op = "RevokeCurrentSession"
	if token == "" {
		return fmt.Errorf("ksef: %s: empty token", op)
	}
	req, err := c.newRequest(ctx, http.MethodDelete, pathOf("/auth/sessions/current"), nil)
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op, req.auth, req.token = op, authExplicit, token
	return c.do(req, nil)
}

// RevokeSession ends another authentication session of the context, by its reference number
// (DELETE /auth/sessions/{referenceNumber}), with the client's access token.
func (c *Client) RevokeSession(ctx context.Context, referenceNumber string) error {
	const op = "RevokeSession"
	if referenceNumber == "" {
		return fmt.Errorf("ksef: %s: empty reference number", op)
	}
	req, err := c.newRequest(ctx, http.MethodDelete, pathOf("/auth/sessions/{referenceNumber}", referenceNumber), nil)
	if err != nil {
		return fmt.Errorf("ksef: %s: %w", op, err)
	}
	req.op = op
	return c.do(req, nil)
}

// AuthSession is one entry of the authentication session list.
type AuthSession struct {
	ReferenceNumber string
	IsCurrent       bool // the session of the token making the call
	AuthStatus
}

// AuthSessionPage is one page of authentication sessions, newest first. An empty
// ContinuationToken means it is the last page.
type AuthSessionPage struct {
	Sessions          []AuthSession
	ContinuationToken string
}

// AuthSessions lists the context's active authentication sessions (GET /auth/sessions) with
// the client's access token. PageSize, if set, must be 10-100.
func (c *Client) AuthSessions(ctx context.Context, opts *ListOptions) (*AuthSessionPage, error) {
	const op = "AuthSessions"
	var w struct {
		ContinuationToken string `json:"continuationToken"`
		Items             []struct {
			ReferenceNumber string `json:"referenceNumber"`
			IsCurrent       bool   `json:"isCurrent"`
			authStatusWire
		} `json:"items"`
	}
	if err := c.list(ctx, op, pathOf("/auth/sessions"), opts, 10, 100, &w); err != nil {
		return nil, err
	}
	page := &AuthSessionPage{ContinuationToken: w.ContinuationToken, Sessions: make([]AuthSession, len(w.Items))}
	for i, it := range w.Items {
		page.Sessions[i] = AuthSession{ReferenceNumber: it.ReferenceNumber, IsCurrent: it.IsCurrent, AuthStatus: it.status()}
	}
	return page, nil
}

// checkContext validates a context identifier enough to catch a forgotten one.
func checkContext(id ContextIdentifier) error {
	if id.Type == "" || id.Value == "" {
		return errors.New("empty context identifier")
	}
	return nil
}
