package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// TokenActivationDelay is how long a KSeF token made by POST /tokens stays Pending before it
// becomes Active and can be used to log in.
const TokenActivationDelay = time.Second

// TokenRevocationDelay is how long a revoked KSeF token stays Revoking before it is Revoked. It
// cannot be used to log in from the moment it is revoked.
const TokenRevocationDelay = time.Second

// KSeF token statuses (AuthenticationTokenStatus).
const (
	tokenPending  = "Pending"
	tokenActive   = "Active"
	tokenRevoking = "Revoking"
	tokenRevoked  = "Revoked"
	tokenFailed   = "Failed"
)

// tokenPermissionTypes is the TokenPermissionType enumeration.
var tokenPermissionTypes = []string{
	permInvoiceRead, permInvoiceWrite, permCredentialsRead, permCredentialsManage,
	permSubunitManage, permEnforcementOperations, permIntrospection,
}

// ksefToken is a KSeF token made by POST /tokens.
type ksefToken struct {
	ref         string
	context     contextID
	author      subjectID
	description string
	permissions []string
	created     time.Time
	lastUse     time.Time
	revoked     time.Time // zero, or when DELETE /tokens/{ref} was called
}

func (t *ksefToken) status(now time.Time) string {
	switch {
	case !t.revoked.IsZero() && now.Before(t.revoked.Add(TokenRevocationDelay)):
		return tokenRevoking
	case !t.revoked.IsZero():
		return tokenRevoked
	case now.Before(t.created.Add(TokenActivationDelay)):
		return tokenPending
	}
	return tokenActive
}

// unusable returns the status detail of a KSeF-token login with this token at now ("" if the
// token may be used): only tokens made by POST /tokens have a life cycle.
func (t *tokenInfo) unusable(now time.Time) string {
	if t.managed == nil {
		return ""
	}
	switch t.managed.status(now) {
	case tokenPending, tokenFailed:
		return "Token nieaktywny"
	case tokenRevoking, tokenRevoked:
		return "Token unieważniony"
	}
	return ""
}

type tokenStatusJSON struct {
	ReferenceNumber      string    `json:"referenceNumber"`
	AuthorIdentifier     subjectID `json:"authorIdentifier"`
	ContextIdentifier    contextID `json:"contextIdentifier"`
	Description          string    `json:"description"`
	RequestedPermissions []string  `json:"requestedPermissions"`
	DateCreated          apiTime   `json:"dateCreated"`
	LastUseDate          *apiTime  `json:"lastUseDate,omitempty"`
	Status               string    `json:"status"`
	StatusDetails        []string  `json:"statusDetails"`
}

func (t *ksefToken) statusJSON(now time.Time) tokenStatusJSON {
	return tokenStatusJSON{
		ReferenceNumber:      t.ref,
		AuthorIdentifier:     t.author,
		ContextIdentifier:    t.context,
		Description:          t.description,
		RequestedPermissions: slices.Clone(t.permissions),
		DateCreated:          apiTime(t.created),
		LastUseDate:          optTime(t.lastUse),
		Status:               t.status(now),
		StatusDetails:        []string{},
	}
}

type generateTokenRequest struct {
	Permissions []string `json:"permissions"`
	Description *string  `json:"description"`
}

// POST /tokens: only after an XAdES login, in a Nip or InternalId context, with permissions the
// caller holds.
func (e *Emulator) handleGenerateToken(q *request) {
	author, ok := q.xadesOnly()
	if !ok {
		return
	}
	var req generateTokenRequest
	if !q.decodeJSON(&req) {
		return
	}
	if msg := checkPermissionList(req.Permissions, tokenPermissionTypes); msg != "" {
		q.fail(codeValidation, msg)
		return
	}
	if req.Description == nil || !lengthBetween(*req.Description, 5, 256) {
		q.fail(codeValidation, "Pole 'description' musi mieć od 5 do 256 znaków.")
		return
	}
	ctx := q.context()
	kind := map[string]string{"Nip": "nip", "InternalId": "internalId"}[ctx.Type]
	if kind == "" {
		q.fail(codeTokenContextType, fmt.Sprintf("Bieżący typ kontekstu: %s. Dozwolone typy kontekstu: Nip, InternalId.", ctx.Type))
		return
	}
	have := q.permissions()
	var missing []string
	for _, p := range req.Permissions {
		if !slices.Contains(have, p) {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		q.fail(codeTokenPermissions, "Brakujące uprawnienia: "+strings.Join(missing, ", ")+".")
		return
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	t := &ksefToken{
		ref:         newReferenceNumber(q.now, refKSeFToken),
		context:     ctx,
		author:      author.subject,
		description: *req.Description,
		permissions: slices.Clone(req.Permissions),
		created:     q.now,
	}
	secret := t.ref + "|" + kind + "-" + ctx.Value + "|" + strings.ToLower(randomHex(64))
	e.st.creds.tokens[t.ref] = t
	e.st.creds.tokenList = append(e.st.creds.tokenList, t)
	e.st.tokens[secret] = &tokenInfo{context: ctx.Value, ref: t.ref, managed: t}
	q.json(http.StatusAccepted, struct {
		ReferenceNumber string `json:"referenceNumber"`
		Token           string `json:"token"`
	}{t.ref, secret})
}

// tokenInContextLocked returns the token with the reference number if it belongs to ctx.
func (e *Emulator) tokenInContextLocked(ref string, ctx contextID) *ksefToken {
	if t := e.st.creds.tokens[ref]; t != nil && t.context == ctx {
		return t
	}
	return nil
}

// GET /tokens/{referenceNumber}
func (e *Emulator) handleTokenStatus(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	t := e.tokenInContextLocked(ref, q.context())
	var out tokenStatusJSON
	if t != nil {
		out = t.statusJSON(q.now)
	}
	e.mu.Unlock()
	if t == nil {
		q.fail(codeValidation, fmt.Sprintf("Token o numerze referencyjnym %s nie istnieje.", ref))
		return
	}
	q.json(http.StatusOK, out)
}

// GET /tokens: the tokens of the context the caller may see, newest first. With CredentialsManage
// or CredentialsRead every token of the context; after a token login only that token; otherwise
// the tokens the caller made.
func (e *Emulator) handleListTokens(q *request) {
	page, ok := q.paging(10, 100)
	if !ok {
		return
	}
	query := q.r.URL.Query()
	statuses := query["status"]
	for _, s := range statuses {
		if !slices.Contains([]string{tokenPending, tokenActive, tokenRevoking, tokenRevoked, tokenFailed}, s) {
			q.fail(codeValidation, fmt.Sprintf("Nieznany status tokena '%s'.", s))
			return
		}
	}
	description, authorValue, authorType := query.Get("description"), query.Get("authorIdentifier"), query.Get("authorIdentifierType")
	if (query.Has("description") && utf8.RuneCountInString(description) < 3) || (query.Has("authorIdentifier") && utf8.RuneCountInString(authorValue) < 3) {
		q.fail(codeValidation, "Parametry 'description' i 'authorIdentifier' muszą mieć co najmniej 3 znaki.")
		return
	}
	if authorType != "" && authorType != subjectNip && authorType != subjectPesel && authorType != subjectFingerprint {
		q.fail(codeValidation, fmt.Sprintf("Nieznany typ identyfikatora '%s'.", authorType))
		return
	}
	seeAll := slices.ContainsFunc(q.permissions(), func(p string) bool { return p == permCredentialsManage || p == permCredentialsRead })
	caller := q.principal()
	ctx := q.context()

	e.mu.Lock()
	var items []tokenStatusJSON
	for _, t := range slices.Backward(e.st.creds.tokenList) {
		switch {
		case t.context != ctx:
		case !seeAll && caller != nil && caller.method == methodToken && caller.token != t:
		case !seeAll && (caller == nil || (caller.method != methodToken && !t.author.is(caller.subject))):
		case len(statuses) > 0 && !slices.Contains(statuses, t.status(q.now)):
		case description != "" && !strings.Contains(strings.ToLower(t.description), strings.ToLower(description)):
		case authorValue != "" && !strings.Contains(strings.ToLower(t.author.Value), strings.ToLower(authorValue)):
		case authorType != "" && t.author.Type != authorType:
		default:
			items = append(items, t.statusJSON(q.now))
		}
	}
	e.mu.Unlock()
	from, to, next := page.bounds(len(items))
	q.json(http.StatusOK, struct {
		ContinuationToken string            `json:"continuationToken,omitempty"`
		Tokens            []tokenStatusJSON `json:"tokens"`
	}{next, nonNil(items[from:to])})
}

// DELETE /tokens/{referenceNumber}: with CredentialsManage any token of the context; after a
// token login only that token; otherwise the tokens the caller made. The token goes Revoking,
// then Revoked; revoking it again changes nothing.
func (e *Emulator) handleRevokeToken(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	manage := slices.Contains(q.permissions(), permCredentialsManage)
	caller := q.principal()
	ctx := q.context()

	e.mu.Lock()
	defer e.mu.Unlock()
	t := e.tokenInContextLocked(ref, ctx)
	if t == nil {
		q.fail(codeValidation, fmt.Sprintf("Token o numerze referencyjnym %s nie istnieje.", ref))
		return
	}
	allowed := manage
	if !allowed && caller != nil {
		if caller.method == methodToken {
			allowed = caller.token == t
		} else {
			allowed = t.author.is(caller.subject)
		}
	}
	if !allowed {
		q.forbidden("insufficient-resource-access", "Brak dostępu do wskazanego zasobu.", nil)
		return
	}
	if t.revoked.IsZero() {
		t.revoked = q.now
	}
	q.noContent()
}

// tokenRoutes registers the KSeF token endpoints.
func (e *Emulator) tokenRoutes(mux *http.ServeMux) {
	e.route(mux, "POST /tokens", groupOther, authAccess, e.handleGenerateToken)
	e.route(mux, "GET /tokens", groupOther, authAccess, e.handleListTokens)
	e.route(mux, "GET /tokens/{referenceNumber}", groupOther, authAccess, e.handleTokenStatus)
	e.route(mux, "DELETE /tokens/{referenceNumber}", groupOther, authAccess, e.handleRevokeToken)
}
