package emulator

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Token types, in the typ claim.
const (
	typOperation = "OperationToken"
	typAccess    = "AccessToken"
	typRefresh   = "RefreshToken"
)

// claims of the emulator's JWTs. KSeF's own claim names differ between documents and releases;
// clients must treat tokens as opaque, and so may anybody reading these.
type claims struct {
	Type         string `json:"typ"`
	AuthRef      string `json:"arn"`
	ContextType  string `json:"cit"`
	ContextValue string `json:"civ"`
	ID           string `json:"jti"`
	IssuedAt     int64  `json:"iat"`
	Expires      int64  `json:"exp"`
	Issuer       string `json:"iss"`
	Audience     string `json:"aud"`
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// mintJWT returns an HS256 JWT for c, signed with the emulator's own secret.
func (e *Emulator) mintJWT(c claims) string {
	c.Issuer = "ksef-api-" + strings.ToLower(e.cfg.EnvironmentName)
	c.Audience = c.Issuer
	payload, err := json.Marshal(c)
	if err != nil {
		panic("emulator: marshal claims: " + err.Error()) // plain strings and integers only
	}
	unsigned := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return unsigned + "." + e.jwtSignature(unsigned)
}

func (e *Emulator) jwtSignature(unsigned string) string {
	m := hmac.New(sha256.New, e.jwtKey)
	m.Write([]byte(unsigned))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

var errBadToken = errors.New("malformed or forged token")

// parseJWT verifies the signature of an emulator JWT and returns its claims; it does not look at
// the expiry.
func (e *Emulator) parseJWT(token string) (*claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != jwtHeader {
		return nil, errBadToken
	}
	want := e.jwtSignature(parts[0] + "." + parts[1])
	if !hmac.Equal([]byte(want), []byte(parts[2])) {
		return nil, errBadToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errBadToken
	}
	var c claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, errBadToken
	}
	return &c, nil
}

// authenticate checks the bearer token for an endpoint taking kind; on failure it answers 401
// (or 403 for an IP outside the authorisation policy) and returns false.
func (q *request) authenticate(kind authKind) bool {
	e := q.e
	raw, ok := strings.CutPrefix(q.r.Header.Get("Authorization"), "Bearer ")
	raw = strings.TrimSpace(raw)
	if !ok || raw == "" {
		q.unauthorized("Wymagane jest uwierzytelnienie.", "")
		return false
	}
	c, err := e.parseJWT(raw)
	if err != nil {
		q.unauthorized("Przekazany token jest nieprawidłowy.", `error="invalid_token"`)
		return false
	}
	if !tokenTypeAllowed(kind, c.Type) {
		q.unauthorized("Przekazany token nie jest właściwym typem tokena dla tej operacji.", `error="invalid_token"`)
		return false
	}
	e.mu.Lock()
	validUntil, policy, known := e.tokenValidityLocked(c)
	e.mu.Unlock()
	if !known {
		q.unauthorized("Przekazany token jest nieprawidłowy.", `error="invalid_token"`)
		return false
	}
	if !q.now.Before(validUntil) {
		q.unauthorized("Przekazany token wygasł.", `error="invalid_token", error_description="The token expired at '`+validUntil.UTC().Format(time.RFC3339)+`'"`)
		return false
	}
	if policy != nil && !policy.allows(q.ip) {
		writeProblem(q.w, q.r, http.StatusForbidden, "Forbidden",
			"Żądanie pochodzi z adresu IP innego niż wskazany podczas uwierzytelnienia.", q.now, func(p *problem) {
				p.ReasonCode = "ip-not-allowed"
				p.Security = map[string]any{"clientIp": q.ip}
			})
		return false
	}
	q.claims = c
	return true
}

func tokenTypeAllowed(kind authKind, typ string) bool {
	switch kind {
	case authOperation:
		return typ == typOperation
	case authAccess:
		return typ == typAccess
	case authRefresh:
		return typ == typRefresh
	case authAny:
		return typ == typAccess || typ == typRefresh
	}
	return false
}

// tokenValidityLocked returns when the token c stops being valid and the IP policy of its
// authentication; known is false for tokens the emulator never issued (e.g. after Reset).
func (e *Emulator) tokenValidityLocked(c *claims) (validUntil time.Time, policy *ipPolicy, known bool) {
	a := e.st.auths[c.AuthRef]
	if a == nil {
		return time.Time{}, nil, false
	}
	switch c.Type {
	case typOperation:
		return a.tokenUntil, nil, true
	case typRefresh:
		if c.ID != a.refreshID {
			return time.Time{}, nil, false
		}
		return a.refreshUntil, a.allowedIPs, true
	case typAccess:
		at := e.st.accessTokens[c.ID]
		if at == nil {
			return time.Time{}, nil, false
		}
		return at.validUntil, a.allowedIPs, true
	}
	return time.Time{}, nil, false
}

func (q *request) unauthorized(detail, bearerError string) {
	challenge := "Bearer"
	if bearerError != "" {
		challenge += " " + bearerError
	}
	q.w.Header().Set("WWW-Authenticate", challenge)
	writeProblem(q.w, q.r, http.StatusUnauthorized, "Unauthorized", detail, q.now, nil)
}

// context returns the context of the authenticated caller.
func (q *request) context() contextID {
	return contextID{Type: q.claims.ContextType, Value: q.claims.ContextValue}
}

// ipPolicy is an authorizationPolicy.allowedIps: the IPv4 addresses allowed to use the tokens.
type ipPolicy struct {
	addrs  []netip.Addr
	ranges [][2]netip.Addr
	masks  []netip.Prefix
}

func (p *ipPolicy) allows(ip string) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, x := range p.addrs {
		if x == a {
			return true
		}
	}
	for _, r := range p.ranges {
		if r[0].Compare(a) <= 0 && a.Compare(r[1]) <= 0 {
			return true
		}
	}
	for _, m := range p.masks {
		if m.Contains(a) {
			return true
		}
	}
	return false
}

// parseIPPolicy parses allowedIps lists; an empty policy (no entries) is nil, i.e. no restriction.
func parseIPPolicy(addrs, ranges, masks []string) (*ipPolicy, error) {
	if len(addrs)+len(ranges)+len(masks) == 0 {
		return nil, nil
	}
	if len(addrs) > 10 || len(ranges) > 10 || len(masks) > 10 {
		return nil, errors.New("lista adresów IP może zawierać najwyżej 10 pozycji")
	}
	p := &ipPolicy{}
	for _, s := range addrs {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return nil, errors.New("nieprawidłowy adres IPv4: " + s)
		}
		p.addrs = append(p.addrs, a)
	}
	for _, s := range ranges {
		from, to, ok := strings.Cut(s, "-")
		a, err1 := netip.ParseAddr(from)
		b, err2 := netip.ParseAddr(to)
		if !ok || err1 != nil || err2 != nil || !a.Is4() || !b.Is4() || b.Less(a) {
			return nil, errors.New("nieprawidłowy zakres adresów IPv4: " + s)
		}
		p.ranges = append(p.ranges, [2]netip.Addr{a, b})
	}
	for _, s := range masks {
		m, err := netip.ParsePrefix(s)
		if err != nil || !m.Addr().Is4() {
			return nil, errors.New("nieprawidłowa maska adresów IPv4: " + s)
		}
		p.masks = append(p.masks, m.Masked())
	}
	return p, nil
}
