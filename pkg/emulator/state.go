package emulator

import (
	"regexp"
	"time"
)

// state is everything the emulator remembers; guarded by Emulator.mu.
type state struct {
	tokens         map[string]*tokenInfo   // KSeF token -> binding
	challenges     map[string]*challenge   // challenge -> challenge
	auths          map[string]*authOp      // AU reference -> authentication
	authList       []*authOp               // in start order
	accessTokens   map[string]*accessToken // jti -> access token
	sessions       map[string]*session     // SO reference -> session
	sessionList    []*session              // in creation order
	invoicesByKSeF map[string]*invoice     // KSeF number -> accepted invoice
	accepted       map[dupKey]*invoice     // duplicate detection
	limiter        *rateLimiter
	creds          credentials // KSeF tokens, permission grants, KSeF certificates
}

func newState() state {
	return state{
		tokens:         map[string]*tokenInfo{},
		challenges:     map[string]*challenge{},
		auths:          map[string]*authOp{},
		accessTokens:   map[string]*accessToken{},
		sessions:       map[string]*session{},
		invoicesByKSeF: map[string]*invoice{},
		accepted:       map[dupKey]*invoice{},
		limiter:        newRateLimiter(),
		creds:          newCredentials(),
	}
}

// contextID is the context an authentication is bound to.
type contextID struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// nip returns the NIP the context belongs to: the value of a Nip context, the NIP part of an
// InternalId or NipVatUe; empty for a PeppolId.
func (c contextID) nip() string {
	switch c.Type {
	case "Nip":
		return c.Value
	case "InternalId", "NipVatUe":
		if len(c.Value) > 10 {
			return c.Value[:10]
		}
	}
	return ""
}

var contextPatterns = map[string]*regexp.Regexp{
	"Nip":        reNIP,
	"InternalId": reInternalID,
	"NipVatUe":   reNipVatUE,
	"PeppolId":   rePeppolID,
}

// tokenInfo binds a KSeF token to its context and to the reference number UPOs quote for it.
type tokenInfo struct {
	context string
	ref     string
	managed *ksefToken // tokens made by POST /tokens: status and permissions
}

var reTokenRef = regexp.MustCompile(`^(\d{8}-EC-[0-9A-F]{10}-[0-9A-F]{10}-[0-9A-F]{2})\|`)

func (e *Emulator) addTokenLocked(contextValue, token string) {
	ref := newReferenceNumber(e.nowLocked(), refKSeFToken)
	if m := reTokenRef.FindStringSubmatch(token); m != nil {
		ref = m[1]
	}
	e.st.tokens[token] = &tokenInfo{context: contextValue, ref: ref}
}

type challenge struct {
	value   string
	issued  time.Time
	expires time.Time
	used    bool
}

// statusInfo is the status object of asynchronous operations.
type statusInfo struct {
	Code        int               `json:"code"`
	Description string            `json:"description"`
	Details     []string          `json:"details,omitempty"`
	Extensions  map[string]string `json:"extensions,omitempty"`
}

type methodInfo struct {
	Category    string `json:"category"`
	Code        string `json:"code"`
	DisplayName string `json:"displayName"`
}

// authOp is one authentication operation (AU reference number).
type authOp struct {
	ref        string
	context    contextID
	legacy     string     // deprecated authenticationMethod enum value
	info       methodInfo // authenticationMethodInfo
	started    time.Time
	readyAt    time.Time  // status 100 until then
	outcome    statusInfo // final status, decided at submission
	tokenUntil time.Time  // the authentication token's expiry
	allowedIPs *ipPolicy
	// UPO data: the KSeF token reference, or the hash of the signed XAdES document.
	tokenRef string
	docHash  string

	redeemed     bool
	refreshUntil time.Time
	refreshID    string // jti of the refresh token
	lastRefresh  time.Time
	revoked      bool

	principal *principal // who authenticated, decided at submission
}

const authRetention = 7 * 24 * time.Hour

func (a *authOp) status(now time.Time) statusInfo {
	switch {
	case a.revoked:
		return statusInfo{Code: 425, Description: "Uwierzytelnienie unieważnione",
			Details: []string{"Uwierzytelnienie i powiązane refresh tokeny zostały unieważnione przez użytkownika"}}
	case now.Before(a.readyAt):
		return statusInfo{Code: 100, Description: "Uwierzytelnianie w toku"}
	}
	return a.outcome
}

// active reports whether the authentication is an active authentication session: redeemed, not
// revoked, its refresh token still valid.
func (a *authOp) active(now time.Time) bool {
	return a.redeemed && !a.revoked && now.Before(a.refreshUntil)
}

type accessToken struct {
	id          string
	context     contextID
	validUntil  time.Time
	permissions []string // the permissions held when it was issued
}
