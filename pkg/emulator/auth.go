package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

type challengeResponse struct {
	Challenge   string  `json:"challenge"`
	Timestamp   apiTime `json:"timestamp"`
	TimestampMs int64   `json:"timestampMs"`
	ClientIP    string  `json:"clientIp"`
}

// POST /auth/challenge
func (e *Emulator) handleChallenge(q *request) {
	c := &challenge{
		value:   newReferenceNumber(q.now, refChallenge),
		issued:  q.now.Truncate(time.Millisecond),
		expires: q.now.Add(e.cfg.ChallengeTTL),
	}
	e.mu.Lock()
	e.pruneChallengesLocked(q.now)
	e.st.challenges[c.value] = c
	e.mu.Unlock()
	q.json(http.StatusOK, challengeResponse{
		Challenge:   c.value,
		Timestamp:   apiTime(c.issued),
		TimestampMs: c.issued.UnixMilli(),
		ClientIP:    q.ip,
	})
}

func (e *Emulator) pruneChallengesLocked(now time.Time) {
	for k, c := range e.st.challenges {
		if !now.Before(c.expires) {
			delete(e.st.challenges, k)
		}
	}
}

// takeChallengeLocked marks the challenge used and returns it, or returns 21111 if it is unknown,
// expired or already used.
func (e *Emulator) takeChallengeLocked(value string, now time.Time) (*challenge, *apiError) {
	c := e.st.challenges[value]
	if c == nil || c.used || !now.Before(c.expires) {
		return nil, newAPIError(codeInvalidChallenge)
	}
	c.used = true
	return c, nil
}

type contextIdentifierJSON struct {
	Type  *string `json:"type"`
	Value *string `json:"value"`
}

type allowedIPsJSON struct {
	IP4Addresses []string `json:"ip4Addresses"`
	IP4Ranges    []string `json:"ip4Ranges"`
	IP4Masks     []string `json:"ip4Masks"`
}

type initTokenAuthRequest struct {
	Challenge           *string                `json:"challenge"`
	ContextIdentifier   *contextIdentifierJSON `json:"contextIdentifier"`
	EncryptedToken      *[]byte                `json:"encryptedToken"`
	PublicKeyID         *string                `json:"publicKeyId"`
	AuthorizationPolicy *struct {
		AllowedIPs *allowedIPsJSON `json:"allowedIps"`
	} `json:"authorizationPolicy"`
}

type tokenInfoJSON struct {
	Token      string  `json:"token"`
	ValidUntil apiTime `json:"validUntil"`
}

type authInitResponse struct {
	ReferenceNumber     string        `json:"referenceNumber"`
	AuthenticationToken tokenInfoJSON `json:"authenticationToken"`
}

// validateContext checks a contextIdentifier of a request body.
func validateContext(ci *contextIdentifierJSON) (contextID, *apiError) {
	if ci == nil || ci.Type == nil || ci.Value == nil {
		return contextID{}, newAPIError(codeValidation, "Pole 'contextIdentifier' (type, value) jest wymagane.")
	}
	re, ok := contextPatterns[*ci.Type]
	if !ok {
		return contextID{}, newAPIError(codeValidation, fmt.Sprintf("Nieznany typ identyfikatora kontekstu '%s'.", *ci.Type))
	}
	if !re.MatchString(*ci.Value) {
		return contextID{}, newAPIError(codeValidation, fmt.Sprintf("Nieprawidłowa wartość identyfikatora kontekstu typu %s.", *ci.Type))
	}
	return contextID{Type: *ci.Type, Value: *ci.Value}, nil
}

func policyFromJSON(p *allowedIPsJSON) (*ipPolicy, *apiError) {
	if p == nil {
		return nil, nil
	}
	pol, err := parseIPPolicy(p.IP4Addresses, p.IP4Ranges, p.IP4Masks)
	if err != nil {
		return nil, newAPIError(codeValidation, err.Error())
	}
	return pol, nil
}

// POST /auth/ksef-token
func (e *Emulator) handleKSeFToken(q *request) {
	var req initTokenAuthRequest
	if !q.decodeJSON(&req) {
		return
	}
	if req.Challenge == nil || req.EncryptedToken == nil {
		q.fail(codeValidation, "Pola 'challenge', 'contextIdentifier' i 'encryptedToken' są wymagane.")
		return
	}
	ctx, aerr := validateContext(req.ContextIdentifier)
	if aerr != nil {
		q.failWith(aerr)
		return
	}
	var policy *ipPolicy
	if req.AuthorizationPolicy != nil {
		if policy, aerr = policyFromJSON(req.AuthorizationPolicy.AllowedIPs); aerr != nil {
			q.failWith(aerr)
			return
		}
	}
	keyID := ""
	if req.PublicKeyID != nil {
		keyID = *req.PublicKeyID
	}
	keys, ok := e.candidateKeys(usageToken, keyID)
	if !ok {
		q.fail(codeUnknownKey, fmt.Sprintf("Klucz o identyfikatorze %s nie jest wspierany.", keyID))
		return
	}

	// Decrypt before taking the lock: RSA is the slow part.
	plaintext, decrypted := decryptOAEP(keys, *req.EncryptedToken)

	e.mu.Lock()
	defer e.mu.Unlock()
	ch, aerr := e.takeChallengeLocked(*req.Challenge, q.now)
	if aerr != nil {
		q.failWith(aerr)
		return
	}
	a := e.newAuthOpLocked(q.now, ctx, policy)
	a.legacy = "Token"
	a.info = methodInfo{Category: "Token", Code: "token.ksef", DisplayName: "Token KSeF"}
	a.outcome = e.checkTokenLocked(plaintext, decrypted, ch, ctx, a)
	q.json(http.StatusAccepted, e.authInitResponse(a))
}

// checkTokenLocked decides the outcome of a KSeF-token authentication.
func (e *Emulator) checkTokenLocked(plaintext []byte, decrypted bool, ch *challenge, ctx contextID, a *authOp) statusInfo {
	bad := func(detail string) statusInfo {
		return statusInfo{Code: 450, Description: "Uwierzytelnianie zakończone niepowodzeniem z powodu błędnego tokenu", Details: []string{detail}}
	}
	if !decrypted {
		return bad("Nieprawidłowe szyfrowanie tokena")
	}
	if !utf8.Valid(plaintext) {
		return bad("Nieprawidłowe kodowanie tokena")
	}
	s := string(plaintext)
	i := strings.LastIndexByte(s, '|')
	if i < 0 {
		return bad("Nieprawidłowy token")
	}
	token, stamp := s[:i], s[i+1:]
	info := e.st.tokens[token]
	if info == nil {
		return bad("Nieprawidłowy token")
	}
	a.tokenRef = info.ref
	if ms, err := strconv.ParseInt(stamp, 10, 64); err != nil || ms != ch.issued.UnixMilli() {
		return bad("Nieprawidłowy czas tokena")
	}
	if info.context != ctx.Value || (ctx.Type != "Nip" && ctx.Type != "InternalId") {
		return bad("Token nie może być użyty w kontekście " + ctx.Value)
	}
	if detail := info.unusable(a.started); detail != "" {
		return bad(detail) // a token from POST /tokens: not yet Active, or revoked
	}
	a.principal = e.tokenPrincipalLocked(ctx, info, a.started)
	return statusInfo{Code: 200, Description: "Uwierzytelnianie zakończone sukcesem"}
}

func (e *Emulator) newAuthOpLocked(now time.Time, ctx contextID, policy *ipPolicy) *authOp {
	a := &authOp{
		ref:        newReferenceNumber(now, refAuth),
		context:    ctx,
		started:    now,
		readyAt:    now.Add(e.cfg.AuthDelay),
		tokenUntil: now.Add(e.cfg.AuthTokenTTL),
		allowedIPs: policy,
	}
	e.st.auths[a.ref] = a
	e.st.authList = append(e.st.authList, a)
	return a
}

func (e *Emulator) authInitResponse(a *authOp) authInitResponse {
	token := e.mintJWT(claims{
		Type: typOperation, AuthRef: a.ref, ContextType: a.context.Type, ContextValue: a.context.Value,
		ID: newTraceID(), IssuedAt: a.started.Unix(), Expires: a.tokenUntil.Unix(),
	})
	return authInitResponse{
		ReferenceNumber:     a.ref,
		AuthenticationToken: tokenInfoJSON{Token: token, ValidUntil: apiTime(a.tokenUntil)},
	}
}

type authStatusResponse struct {
	StartDate                apiTime    `json:"startDate"`
	AuthenticationMethod     string     `json:"authenticationMethod"`
	AuthenticationMethodInfo methodInfo `json:"authenticationMethodInfo"`
	Status                   statusInfo `json:"status"`
	IsTokenRedeemed          *bool      `json:"isTokenRedeemed,omitempty"`
	LastTokenRefreshDate     *apiTime   `json:"lastTokenRefreshDate,omitempty"`
	RefreshTokenValidUntil   *apiTime   `json:"refreshTokenValidUntil,omitempty"`
}

func (a *authOp) statusResponse(now time.Time) authStatusResponse {
	r := authStatusResponse{
		StartDate:                apiTime(a.started),
		AuthenticationMethod:     a.legacy,
		AuthenticationMethodInfo: a.info,
		Status:                   a.status(now),
	}
	if a.redeemed {
		t := true
		r.IsTokenRedeemed = &t
		r.LastTokenRefreshDate = optTime(a.lastRefresh)
		r.RefreshTokenValidUntil = optTime(a.refreshUntil)
	}
	return r
}

// GET /auth/{referenceNumber} with the authentication token.
func (e *Emulator) handleAuthStatus(q *request) {
	ref := q.r.PathValue("referenceNumber")
	e.mu.Lock()
	a := e.st.auths[ref]
	var resp authStatusResponse
	gone := false
	if a != nil && a.ref == q.claims.AuthRef {
		gone = !q.now.Before(a.started.Add(authRetention))
		resp = a.statusResponse(q.now)
	}
	e.mu.Unlock()
	switch {
	case a == nil || a.ref != q.claims.AuthRef:
		q.fail(codeAuthNotFound, fmt.Sprintf("Operacja uwierzytelniania o numerze referencyjnym %s nie została znaleziona.", ref))
	case gone:
		writeProblem(q.w, q.r, http.StatusGone, "Gone", "Operacja wygasła i nie jest już dostępna.", q.now, nil)
	default:
		q.json(http.StatusOK, resp)
	}
}

type tokensResponse struct {
	AccessToken  tokenInfoJSON  `json:"accessToken"`
	RefreshToken *tokenInfoJSON `json:"refreshToken,omitempty"`
}

// POST /auth/token/redeem with the authentication token.
func (e *Emulator) handleRedeem(q *request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.st.auths[q.claims.AuthRef]
	if a == nil {
		q.fail(codeAuthNotFound, fmt.Sprintf("Operacja uwierzytelniania o numerze referencyjnym %s nie została znaleziona.", q.claims.AuthRef))
		return
	}
	if a.redeemed {
		q.fail(codeNoAuthorization, fmt.Sprintf("Tokeny dla operacji uwierzytelniania %s zostały już pobrane.", a.ref))
		return
	}
	if st := a.status(q.now); st.Code != 200 {
		q.fail(codeNoAuthorization, fmt.Sprintf("Status uwierzytelniania (%d) nie pozwala na pobranie tokenów.", st.Code))
		return
	}
	if a.principal.tokenRevoked(q.now) {
		q.fail(codeNoAuthorization, "Token KSeF użyty do uwierzytelnienia został unieważniony.")
		return
	}
	a.redeemed = true
	a.refreshUntil = q.now.Add(e.cfg.RefreshTokenTTL)
	a.refreshID = newTraceID()
	refresh := e.mintJWT(claims{
		Type: typRefresh, AuthRef: a.ref, ContextType: a.context.Type, ContextValue: a.context.Value,
		ID: a.refreshID, IssuedAt: q.now.Unix(), Expires: a.refreshUntil.Unix(),
	})
	q.json(http.StatusOK, tokensResponse{
		AccessToken:  e.issueAccessTokenLocked(a, q.now),
		RefreshToken: &tokenInfoJSON{Token: refresh, ValidUntil: apiTime(a.refreshUntil)},
	})
}

func (e *Emulator) issueAccessTokenLocked(a *authOp, now time.Time) tokenInfoJSON {
	at := &accessToken{id: newTraceID(), context: a.context, validUntil: now.Add(e.cfg.AccessTokenTTL),
		permissions: e.permissionsLocked(a, now)} // fixed for the token's life; a refresh sees changes
	e.st.accessTokens[at.id] = at
	token := e.mintJWT(claims{
		Type: typAccess, AuthRef: a.ref, ContextType: a.context.Type, ContextValue: a.context.Value,
		ID: at.id, IssuedAt: now.Unix(), Expires: at.validUntil.Unix(),
	})
	return tokenInfoJSON{Token: token, ValidUntil: apiTime(at.validUntil)}
}

// POST /auth/token/refresh with the refresh token.
func (e *Emulator) handleRefresh(q *request) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := e.st.auths[q.claims.AuthRef]
	if a == nil {
		q.fail(codeAuthNotFound, fmt.Sprintf("Operacja uwierzytelniania o numerze referencyjnym %s nie została znaleziona.", q.claims.AuthRef))
		return
	}
	if st := a.status(q.now); st.Code != 200 {
		q.fail(codeNoAuthorization, fmt.Sprintf("Status uwierzytelniania (%d) nie pozwala na odświeżenie tokenu dostępowego.", st.Code))
		return
	}
	if a.principal.tokenRevoked(q.now) {
		q.fail(codeNoAuthorization, "Token KSeF użyty do uwierzytelnienia został unieważniony.")
		return
	}
	a.lastRefresh = q.now
	q.json(http.StatusOK, tokensResponse{AccessToken: e.issueAccessTokenLocked(a, q.now)})
}

type authListItem struct {
	ReferenceNumber string `json:"referenceNumber"`
	IsCurrent       bool   `json:"isCurrent"`
	authStatusResponse
}

type authListResponse struct {
	ContinuationToken string         `json:"continuationToken,omitempty"`
	Items             []authListItem `json:"items"`
}

// GET /auth/sessions: the active authentication sessions of the caller's context, newest first.
func (e *Emulator) handleAuthSessions(q *request) {
	page, ok := q.paging(10, 100)
	if !ok {
		return
	}
	ctx := q.context()
	e.mu.Lock()
	var items []authListItem
	for _, a := range slices.Backward(e.st.authList) {
		if a.context == ctx && a.active(q.now) {
			items = append(items, authListItem{ReferenceNumber: a.ref, IsCurrent: a.ref == q.claims.AuthRef, authStatusResponse: a.statusResponse(q.now)})
		}
	}
	e.mu.Unlock()
	from, to, next := page.bounds(len(items))
	q.json(http.StatusOK, authListResponse{ContinuationToken: next, Items: nonNil(items[from:to])})
}

// DELETE /auth/sessions/current with an access or refresh token.
func (e *Emulator) handleRevokeCurrent(q *request) {
	e.mu.Lock()
	if a := e.st.auths[q.claims.AuthRef]; a != nil {
		a.revoked = true
	}
	e.mu.Unlock()
	q.noContent()
}

// DELETE /auth/sessions/{referenceNumber}
func (e *Emulator) handleRevokeSession(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	a := e.st.auths[ref]
	found := a != nil && a.context == q.context()
	if found {
		a.revoked = true
	}
	e.mu.Unlock()
	if !found {
		q.fail(codeAuthNotFound, fmt.Sprintf("Operacja uwierzytelniania o numerze referencyjnym %s nie została znaleziona.", ref))
		return
	}
	q.noContent()
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
