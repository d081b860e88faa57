package emulator

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ksef-serverless/ksef-serverless/internal/official"
)

// Permission names, as the official description spells them in PersonPermissionType,
// TokenPermissionType and x-required-permissions.
const (
	permCredentialsManage     = "CredentialsManage"
	permCredentialsRead       = "CredentialsRead"
	permInvoiceWrite          = "InvoiceWrite"
	permInvoiceRead           = "InvoiceRead"
	permIntrospection         = "Introspection"
	permSubunitManage         = "SubunitManage"
	permEnforcementOperations = "EnforcementOperations"
)

// Authentication method categories (authenticationMethodInfo.category).
const (
	methodXAdES = "XadesSignature"
	methodToken = "Token"
)

// Subject identifier types (PersonPermissionsSubjectIdentifierType, TokenAuthorIdentifierType,
// CertificateSubjectIdentifierType).
const (
	subjectNip         = "Nip"
	subjectPesel       = "Pesel"
	subjectFingerprint = "Fingerprint"
)

// PermissionOperationDelay is how long a permission grant or revocation stays in status 100
// before it ends (and, if it succeeded, takes effect).
const PermissionOperationDelay = time.Second

// permissionOperationRetention is how long GET /permissions/operations/{ref} answers before 410.
const permissionOperationRetention = 30 * 24 * time.Hour

// ownerPermissions are the permissions of a context's owner (the subject whose NIP is the
// context's NIP) and of the subjects Config.Grants names: every permission a person can be
// granted except EnforcementOperations, which only enforcement authorities hold.
func ownerPermissions() []string {
	return []string{permCredentialsManage, permCredentialsRead, permInvoiceRead, permInvoiceWrite, permIntrospection, permSubunitManage}
}

// reCountry is an ISO 3166-1 alpha-2 country code.
var reCountry = regexp.MustCompile(`^[A-Z]{2}$`)

// personPermissionTypes is the PersonPermissionType enumeration.
var personPermissionTypes = []string{
	permCredentialsManage, permCredentialsRead, permInvoiceWrite, permInvoiceRead,
	permIntrospection, permSubunitManage, permEnforcementOperations,
}

// subjectID identifies a person or an entity: a NIP, a PESEL or the SHA-256 fingerprint of a
// certificate (upper-case hex).
type subjectID struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

func (s subjectID) is(o subjectID) bool {
	if s.Type != o.Type {
		return false
	}
	if s.Type == subjectFingerprint {
		return strings.EqualFold(s.Value, o.Value)
	}
	return s.Value == o.Value
}

// validSubject checks an identifier of a request body: NIP, PESEL or a hex SHA-256 fingerprint.
func validSubject(s subjectID) bool {
	switch s.Type {
	case subjectNip:
		return reNIP.MatchString(s.Value)
	case subjectPesel:
		return rePESEL.MatchString(s.Value)
	case subjectFingerprint:
		return reFingerprint.MatchString(s.Value)
	}
	return false
}

// subjectOf is the identifier KSeF records for a certificate identity: its NIP, its PESEL, or the
// certificate's fingerprint.
func subjectOf(id certIdentity) subjectID {
	switch {
	case id.nip != "":
		return subjectID{Type: subjectNip, Value: id.nip}
	case id.pesel != "":
		return subjectID{Type: subjectPesel, Value: id.pesel}
	}
	return subjectID{Type: subjectFingerprint, Value: strings.ToUpper(id.fingerprint)}
}

// principal is who an authentication authenticated.
type principal struct {
	method  string            // methodXAdES or methodToken
	subject subjectID         // the signer; for a KSeF token, the token's author
	cert    *x509.Certificate // XAdES: the signing certificate
	token   *ksefToken        // token logins with a token made by POST /tokens
}

// tokenRevoked reports whether the principal logged in with a KSeF token that has since been
// revoked.
func (p *principal) tokenRevoked(now time.Time) bool {
	if p == nil || p.token == nil {
		return false
	}
	st := p.token.status(now)
	return st == tokenRevoking || st == tokenRevoked
}

// noteXAdESLoginLocked records who signed an XAdES authentication and, for a successful login
// with a KSeF certificate, the certificate's last use.
func (e *Emulator) noteXAdESLoginLocked(a *authOp, id certIdentity, cert *x509.Certificate, now time.Time) {
	a.principal = &principal{method: methodXAdES, subject: subjectOf(id), cert: cert}
	if kc := e.issuedCertificateLocked(cert); kc != nil && a.outcome.Code == 200 {
		kc.lastUse = now
	}
}

// tokenPrincipalLocked returns the principal of a successful KSeF-token login and records the
// token's last use. A token from Config.Tokens or AddToken has no recorded author: the context's
// owner stands for it.
func (e *Emulator) tokenPrincipalLocked(ctx contextID, info *tokenInfo, now time.Time) *principal {
	if info.managed != nil {
		info.managed.lastUse = now
		return &principal{method: methodToken, subject: info.managed.author, token: info.managed}
	}
	return &principal{method: methodToken, subject: subjectID{Type: subjectNip, Value: ctx.nip()}}
}

// owns reports whether the subject owns the context: its NIP is the context's NIP.
func owns(ctx contextID, s subjectID) bool {
	return s.Type == subjectNip && (ctx.Type == "Nip" || ctx.Type == "InternalId") && s.Value == ctx.nip()
}

// configGranted reports whether Config.Grants names the subject in the context.
func (e *Emulator) configGranted(ctx contextID, s subjectID) bool {
	for _, g := range e.cfg.Grants[ctx.Value] {
		if g != "" && (g == s.Value || (s.Type == subjectFingerprint && strings.EqualFold(g, s.Value))) {
			return true
		}
	}
	return false
}

// grantedLocked reports whether a permission granted through the API is in force for the
// identity in the context now.
func (e *Emulator) grantedLocked(ctx contextID, id certIdentity) bool {
	s, now := subjectOf(id), e.nowLocked()
	for _, g := range e.st.creds.grants {
		if g.context == ctx && g.authorized.is(s) && g.active(now) {
			return true
		}
	}
	return false
}

// permissionsLocked returns the permissions the authentication a holds in its context now,
// sorted: a KSeF token's own permissions; for an XAdES login the owner's set (owner or
// Config.Grants) plus every permission granted through the API and in force.
func (e *Emulator) permissionsLocked(a *authOp, now time.Time) []string {
	p := a.principal
	switch {
	case p == nil:
		return nil
	case p.method == methodToken && p.token != nil:
		return slices.Clone(p.token.permissions)
	case p.method == methodToken:
		return ownerPermissions()
	}
	var perms []string
	if owns(a.context, p.subject) || e.configGranted(a.context, p.subject) {
		perms = ownerPermissions()
	}
	for _, g := range e.st.creds.grants {
		if g.context == a.context && g.authorized.is(p.subject) && g.active(now) {
			perms = append(perms, g.scope)
		}
	}
	slices.Sort(perms)
	return slices.Compact(perms)
}

// credentials is the state of KSeF tokens, permission grants and KSeF certificates.
type credentials struct {
	tokens      map[string]*ksefToken // EC reference -> token
	tokenList   []*ksefToken          // in creation order
	grants      []*grant              // in creation order
	grantByID   map[string]*grant
	operations  map[string]*permissionOperation // EG reference -> operation
	enrollments map[string]*enrollment          // enrollment reference -> enrollment
	enrollList  []*enrollment                   // in submission order
	certs       map[string]*ksefCert            // serial number (16 hex) -> certificate
	ca          *certAuthority                  // made at the first enrollment
}

func newCredentials() credentials {
	return credentials{
		tokens:      map[string]*ksefToken{},
		grantByID:   map[string]*grant{},
		operations:  map[string]*permissionOperation{},
		enrollments: map[string]*enrollment{},
		certs:       map[string]*ksefCert{},
	}
}

// requiredPermissions maps each operation ("POST /sessions/online") of the official description
// to its x-required-permissions: the caller needs any one of them.
var requiredPermissions = sync.OnceValue(func() map[string][]string {
	var doc struct {
		Paths map[string]map[string]struct {
			Required []string `json:"x-required-permissions"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(official.OpenAPI(), &doc); err != nil {
		panic("emulator: decode the embedded OpenAPI description: " + err.Error()) // cannot happen: tested
	}
	out := map[string][]string{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if len(op.Required) > 0 {
				out[strings.ToUpper(method)+" "+path] = op.Required
			}
		}
	}
	return out
})

// permissions returns the permissions of the caller's access token, fixed when it was issued.
func (q *request) permissions() []string {
	if q.claims == nil || q.claims.Type != typAccess {
		return nil
	}
	q.e.mu.Lock()
	defer q.e.mu.Unlock()
	if at := q.e.st.accessTokens[q.claims.ID]; at != nil {
		return at.permissions
	}
	return nil
}

// principal returns who the caller authenticated as, or nil.
func (q *request) principal() *principal {
	if q.claims == nil {
		return nil
	}
	q.e.mu.Lock()
	defer q.e.mu.Unlock()
	if a := q.e.st.auths[q.claims.AuthRef]; a != nil {
		return a.principal
	}
	return nil
}

// authorize enforces the endpoint's x-required-permissions: without any of them it answers 403
// missing-permissions and returns false.
func (q *request) authorize() bool {
	need := requiredPermissions()[q.pattern]
	if len(need) == 0 {
		return true
	}
	have := q.permissions()
	for _, p := range need {
		if slices.Contains(have, p) {
			return true
		}
	}
	q.forbidden("missing-permissions", "Brak wymaganych uprawnień do wykonania operacji w bieżącym kontekście.",
		map[string]any{"requiredAnyOfPermissions": need, "presentPermissions": nonNil(have)})
	return false
}

// forbidden answers 403 with a ForbiddenProblemDetails body.
func (q *request) forbidden(reason, detail string, security map[string]any) {
	writeProblem(q.w, q.r, http.StatusForbidden, "Forbidden", detail, q.now, func(p *problem) {
		p.ReasonCode = reason
		p.Security = security
	})
}

// xadesOnly answers 403 auth-method-not-allowed unless the caller logged in with XAdES, and
// returns the principal.
func (q *request) xadesOnly() (*principal, bool) {
	p := q.principal()
	if p != nil && p.method == methodXAdES {
		return p, true
	}
	category := methodToken
	if p != nil {
		category = p.method
	}
	q.forbidden("auth-method-not-allowed", "Ta operacja nie jest dostępna dla użytej metody uwierzytelnienia.",
		map[string]any{"authenticationMethodCategory": category})
	return nil, false
}

// decodeOptionalJSON reads a JSON body that may be absent; an absent or empty body leaves v as
// it is.
func (q *request) decodeOptionalJSON(v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(q.w, q.r.Body, maxJSONBody))
	if err != nil {
		q.fail(codeValidation, "Nie można odczytać treści żądania: "+err.Error())
		return false
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return true
	}
	if err := json.Unmarshal(body, v); err != nil {
		q.fail(codeValidation, "Nieprawidłowy format JSON: "+jsonErrorText(err))
		return false
	}
	return true
}

// offsetPage is a page of a list paged with pageOffset (page index) and pageSize.
type offsetPage struct{ index, size int }

// offsetPaging reads pageOffset (default 0) and pageSize (default 10, at most maxSize); bad
// values give 21405.
func (q *request) offsetPaging(maxSize int) (offsetPage, bool) {
	p := offsetPage{size: 10}
	query := q.r.URL.Query()
	if s := query.Get("pageOffset"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 || n > 1<<31-1 {
			q.fail(codeValidation, "Parametr 'pageOffset' musi być liczbą nieujemną.")
			return offsetPage{}, false
		}
		p.index = n
	}
	if s := query.Get("pageSize"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 10 || n > maxSize {
			q.fail(codeValidation, fmt.Sprintf("Parametr 'pageSize' musi być liczbą z zakresu 10-%d.", maxSize))
			return offsetPage{}, false
		}
		p.size = n
	}
	return p, true
}

// bounds returns the slice bounds of the page in a list of n items and whether more follow.
func (p offsetPage) bounds(n int) (from, to int, hasMore bool) {
	from = min(p.index*p.size, n)
	to = min(from+p.size, n)
	return from, to, to < n
}

// lengthBetween reports whether s has between lo and hi characters.
func lengthBetween(s string, lo, hi int) bool {
	n := utf8.RuneCountInString(s)
	return n >= lo && n <= hi
}

// newUUID returns a random version-4 UUID, the shape of KSeF's permission identifiers.
func newUUID() string {
	b := randomBytes(16)
	b[6] = b[6]&0x0F | 0x40
	b[8] = b[8]&0x3F | 0x80
	h := fmt.Sprintf("%x", b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// stableUUID derives a UUID-shaped identifier from s, the same for the same s.
func stableUUID(s string) string {
	sum := sha256.Sum256([]byte(s))
	h := fmt.Sprintf("%x", sum[:16])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Permission grants and their asynchronous operations.

// refPermissionOperation is the type code of permission operations (EG, as in the examples).
const refPermissionOperation = "EG"

// grant is one permission granted through the API to a person or an entity in a context.
type grant struct {
	id          string
	context     contextID
	authorized  subjectID
	author      subjectID
	scope       string
	description string
	person      *permissionPersonDetails // person grants
	entity      *permissionEntityDetails // entity grants
	canDelegate bool
	start       time.Time // the grant operation's end: in force from then
	end         time.Time // zero, or the end of the revocation operation
}

func (g *grant) active(now time.Time) bool {
	return !now.Before(g.start) && (g.end.IsZero() || now.Before(g.end))
}

// pending reports whether the grant is in force now or will be once its operation ends.
func (g *grant) pending(now time.Time) bool {
	return g.end.IsZero() || now.Before(g.end)
}

type permissionPersonDetails struct {
	SubjectDetailsType string          `json:"subjectDetailsType"`
	FirstName          string          `json:"firstName"`
	LastName           string          `json:"lastName"`
	PersonIdentifier   *subjectID      `json:"personIdentifier,omitempty"`
	BirthDate          string          `json:"birthDate,omitempty"`
	IDDocument         *idDocumentJSON `json:"idDocument,omitempty"`
}

type permissionEntityDetails struct {
	SubjectDetailsType string `json:"subjectDetailsType"`
	FullName           string `json:"fullName"`
}

// permissionOperation is a grant or revocation in progress (EG reference).
type permissionOperation struct {
	ref     string
	context contextID
	created time.Time
	readyAt time.Time
	outcome statusInfo
}

func (o *permissionOperation) status(now time.Time) statusInfo {
	if now.Before(o.readyAt) {
		return statusInfo{Code: 100, Description: "Operacja przyjęta do realizacji"}
	}
	return o.outcome
}

var (
	permissionsSucceeded = statusInfo{Code: 200, Description: "Operacja zakończona sukcesem"}
	permissionsFailed    = func(detail string) statusInfo {
		return statusInfo{Code: 400, Description: "Operacja zakończona niepowodzeniem", Details: []string{detail}}
	}
	permissionsBadIdentifiers = func(detail string) statusInfo {
		return statusInfo{Code: 410, Description: "Podane identyfikatory są niezgodne lub pozostają w niewłaściwej relacji", Details: []string{detail}}
	}
	permissionsRoleMismatch = func(detail string) statusInfo {
		return statusInfo{Code: 430, Description: "Kontekst identyfikatora nie odpowiada wymaganej roli lub uprawnieniom", Details: []string{detail}}
	}
	permissionsRelationNotAllowed = func(detail string) statusInfo {
		return statusInfo{Code: 440, Description: "Operacja niedozwolona dla wskazanych powiązań identyfikatorów", Details: []string{detail}}
	}
)

func (e *Emulator) newPermissionOperationLocked(ctx contextID, now time.Time, outcome statusInfo) *permissionOperation {
	op := &permissionOperation{
		ref:     newReferenceNumber(now, refPermissionOperation),
		context: ctx,
		created: now,
		readyAt: now.Add(PermissionOperationDelay),
		outcome: outcome,
	}
	e.st.creds.operations[op.ref] = op
	return op
}

type identifierJSON struct {
	Type  *string `json:"type"`
	Value *string `json:"value"`
}

func (i *identifierJSON) subject() (subjectID, bool) {
	if i == nil || i.Type == nil || i.Value == nil {
		return subjectID{}, false
	}
	s := subjectID{Type: *i.Type, Value: *i.Value}
	if s.Type == subjectFingerprint {
		s.Value = strings.ToUpper(s.Value)
	}
	return s, validSubject(s)
}

type personNameJSON struct {
	FirstName string `json:"firstName"`
	LastName  string `json:"lastName"`
}

func (n *personNameJSON) valid() bool {
	return n != nil && lengthBetween(n.FirstName, 2, 30) && lengthBetween(n.LastName, 2, 81)
}

type idDocumentJSON struct {
	Type    string `json:"type"`
	Number  string `json:"number"`
	Country string `json:"country"`
}

type personGrantRequest struct {
	SubjectIdentifier *identifierJSON `json:"subjectIdentifier"`
	Permissions       []string        `json:"permissions"`
	Description       *string         `json:"description"`
	SubjectDetails    *struct {
		SubjectDetailsType string          `json:"subjectDetailsType"`
		PersonByID         *personNameJSON `json:"personById"`
		PersonByFpWithID   *struct {
			personNameJSON
			Identifier *identifierJSON `json:"identifier"`
		} `json:"personByFpWithId"`
		PersonByFpNoID *struct {
			personNameJSON
			BirthDate  string          `json:"birthDate"`
			IDDocument *idDocumentJSON `json:"idDocument"`
		} `json:"personByFpNoId"`
	} `json:"subjectDetails"`
}

// personDetails validates subjectDetails and returns what the permission queries show.
func (r *personGrantRequest) personDetails() (*permissionPersonDetails, string) {
	d := r.SubjectDetails
	if d == nil {
		return nil, "Pole 'subjectDetails' jest wymagane."
	}
	out := &permissionPersonDetails{SubjectDetailsType: d.SubjectDetailsType}
	switch d.SubjectDetailsType {
	case "PersonByIdentifier":
		if !d.PersonByID.valid() {
			return nil, "Pole 'personById' (firstName 2-30, lastName 2-81 znaków) jest wymagane dla PersonByIdentifier."
		}
		out.FirstName, out.LastName = d.PersonByID.FirstName, d.PersonByID.LastName
	case "PersonByFingerprintWithIdentifier":
		p := d.PersonByFpWithID
		if p == nil || !p.valid() {
			return nil, "Pole 'personByFpWithId' (firstName, lastName, identifier) jest wymagane dla PersonByFingerprintWithIdentifier."
		}
		id, ok := p.Identifier.subject()
		if !ok || (id.Type != subjectNip && id.Type != subjectPesel) {
			return nil, "Pole 'personByFpWithId.identifier' musi zawierać NIP lub PESEL."
		}
		out.FirstName, out.LastName, out.PersonIdentifier = p.FirstName, p.LastName, &id
	case "PersonByFingerprintWithoutIdentifier":
		p := d.PersonByFpNoID
		if p == nil || !p.valid() || p.IDDocument == nil {
			return nil, "Pole 'personByFpNoId' (firstName, lastName, birthDate, idDocument) jest wymagane dla PersonByFingerprintWithoutIdentifier."
		}
		if _, err := time.Parse(time.DateOnly, p.BirthDate); err != nil {
			return nil, "Pole 'personByFpNoId.birthDate' musi być datą RRRR-MM-DD."
		}
		doc := p.IDDocument
		if !lengthBetween(doc.Type, 1, 20) || !lengthBetween(doc.Number, 1, 20) || !reCountry.MatchString(doc.Country) {
			return nil, "Pole 'personByFpNoId.idDocument' (type, number do 20 znaków, country ISO 3166-1 alpha-2) jest nieprawidłowe."
		}
		out.FirstName, out.LastName, out.BirthDate, out.IDDocument = p.FirstName, p.LastName, p.BirthDate, doc
	default:
		return nil, fmt.Sprintf("Nieznany typ danych podmiotu '%s'.", d.SubjectDetailsType)
	}
	return out, ""
}

// POST /permissions/persons/grants
func (e *Emulator) handleGrantPersonPermissions(q *request) {
	var req personGrantRequest
	if !q.decodeJSON(&req) {
		return
	}
	subject, ok := req.SubjectIdentifier.subject()
	if !ok {
		q.fail(codeValidation, "Pole 'subjectIdentifier' musi zawierać prawidłowy NIP, PESEL lub odcisk palca certyfikatu (SHA-256).")
		return
	}
	if msg := checkPermissionList(req.Permissions, personPermissionTypes); msg != "" {
		q.fail(codeValidation, msg)
		return
	}
	if req.Description == nil || !lengthBetween(*req.Description, 5, 256) {
		q.fail(codeValidation, "Pole 'description' musi mieć od 5 do 256 znaków.")
		return
	}
	details, msg := req.personDetails()
	if msg != "" {
		q.fail(codeValidation, msg)
		return
	}
	author := q.principal()
	ctx := q.context()

	e.mu.Lock()
	defer e.mu.Unlock()
	outcome := permissionsSucceeded
	byFingerprint := details.SubjectDetailsType != "PersonByIdentifier"
	switch {
	case byFingerprint != (subject.Type == subjectFingerprint):
		outcome = permissionsBadIdentifiers(fmt.Sprintf("Typ danych podmiotu %s nie odpowiada identyfikatorowi typu %s.", details.SubjectDetailsType, subject.Type))
	case slices.Contains(req.Permissions, permEnforcementOperations):
		outcome = permissionsRoleMismatch("Uprawnienie EnforcementOperations może być nadane wyłącznie w kontekście organu egzekucyjnego lub komornika sądowego.")
	case owns(ctx, subject):
		outcome = permissionsRelationNotAllowed("Podmiot jest właścicielem kontekstu i posiada wszystkie uprawnienia.")
	}
	op := e.newPermissionOperationLocked(ctx, q.now, outcome)
	if outcome.Code == 200 {
		for _, scope := range req.Permissions {
			e.addGrantLocked(&grant{context: ctx, authorized: subject, author: authorOf(author), scope: scope,
				description: *req.Description, person: details, start: op.readyAt}, q.now)
		}
	}
	q.json(http.StatusAccepted, permissionsOperationResponse{ReferenceNumber: op.ref})
}

type entityGrantRequest struct {
	SubjectIdentifier *identifierJSON `json:"subjectIdentifier"`
	Permissions       []struct {
		Type        string `json:"type"`
		CanDelegate bool   `json:"canDelegate"`
	} `json:"permissions"`
	Description    *string `json:"description"`
	SubjectDetails *struct {
		FullName string `json:"fullName"`
	} `json:"subjectDetails"`
}

// POST /permissions/entities/grants
func (e *Emulator) handleGrantEntityPermissions(q *request) {
	var req entityGrantRequest
	if !q.decodeJSON(&req) {
		return
	}
	subject, ok := req.SubjectIdentifier.subject()
	if !ok || subject.Type != subjectNip {
		q.fail(codeValidation, "Pole 'subjectIdentifier' musi zawierać prawidłowy NIP podmiotu.")
		return
	}
	scopes := make([]string, len(req.Permissions))
	for i, p := range req.Permissions {
		scopes[i] = p.Type
	}
	if msg := checkPermissionList(scopes, []string{permInvoiceWrite, permInvoiceRead}); msg != "" {
		q.fail(codeValidation, msg)
		return
	}
	if req.Description == nil || !lengthBetween(*req.Description, 5, 256) {
		q.fail(codeValidation, "Pole 'description' musi mieć od 5 do 256 znaków.")
		return
	}
	if req.SubjectDetails == nil || !lengthBetween(req.SubjectDetails.FullName, 5, 90) {
		q.fail(codeValidation, "Pole 'subjectDetails.fullName' musi mieć od 5 do 90 znaków.")
		return
	}
	author := q.principal()
	ctx := q.context()

	e.mu.Lock()
	defer e.mu.Unlock()
	outcome := permissionsSucceeded
	if owns(ctx, subject) {
		outcome = permissionsRelationNotAllowed("Nie można nadać uprawnień podmiotowi kontekstu.")
	}
	op := e.newPermissionOperationLocked(ctx, q.now, outcome)
	if outcome.Code == 200 {
		details := &permissionEntityDetails{SubjectDetailsType: "EntityByIdentifier", FullName: req.SubjectDetails.FullName}
		for _, p := range req.Permissions {
			e.addGrantLocked(&grant{context: ctx, authorized: subject, author: authorOf(author), scope: p.Type,
				description: *req.Description, entity: details, canDelegate: p.CanDelegate, start: op.readyAt}, q.now)
		}
	}
	q.json(http.StatusAccepted, permissionsOperationResponse{ReferenceNumber: op.ref})
}

// checkPermissionList checks a non-empty list of distinct permissions from allowed.
func checkPermissionList(perms, allowed []string) string {
	if len(perms) == 0 {
		return "Pole 'permissions' musi zawierać co najmniej jedno uprawnienie."
	}
	for i, p := range perms {
		if !slices.Contains(allowed, p) {
			return fmt.Sprintf("Nieznane lub niedozwolone uprawnienie '%s'.", p)
		}
		if slices.Contains(perms[:i], p) {
			return fmt.Sprintf("Uprawnienie '%s' występuje więcej niż raz.", p)
		}
	}
	return ""
}

// authorOf is the author recorded for what the principal grants or creates.
func authorOf(p *principal) subjectID {
	if p == nil {
		return subjectID{}
	}
	return p.subject
}

// addGrantLocked records g unless the same permission is already granted (or being granted) to
// the same subject in the context.
func (e *Emulator) addGrantLocked(g *grant, now time.Time) {
	for _, old := range e.st.creds.grants {
		if old.context == g.context && old.authorized.is(g.authorized) && old.scope == g.scope && old.pending(now) {
			return
		}
	}
	g.id = newUUID()
	e.st.creds.grants = append(e.st.creds.grants, g)
	e.st.creds.grantByID[g.id] = g
}

type permissionsOperationResponse struct {
	ReferenceNumber string `json:"referenceNumber"`
}

// GET /permissions/operations/{referenceNumber}
func (e *Emulator) handlePermissionOperation(q *request) {
	ref, ok := q.referenceParam("referenceNumber")
	if !ok {
		return
	}
	e.mu.Lock()
	op := e.st.creds.operations[ref]
	var st statusInfo
	if op != nil {
		st = op.status(q.now)
	}
	e.mu.Unlock()
	switch {
	case op == nil || op.context != q.context():
		q.fail(codeValidation, fmt.Sprintf("Operacja o numerze referencyjnym %s nie istnieje.", ref))
	case !q.now.Before(op.created.Add(permissionOperationRetention)):
		writeProblem(q.w, q.r, http.StatusGone, "Gone", "Operacja wygasła i nie jest już dostępna.", q.now, nil)
	default:
		q.json(http.StatusOK, struct {
			Status statusInfo `json:"status"`
		}{st})
	}
}

// DELETE /permissions/common/grants/{permissionId}
func (e *Emulator) handleRevokePermission(q *request) {
	id := q.r.PathValue("permissionId")
	if len(id) != 36 {
		q.fail(codeValidation, "Parametr 'permissionId' musi mieć 36 znaków.")
		return
	}
	ctx := q.context()
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.st.creds.grantByID[id]
	outcome := permissionsSucceeded
	if g == nil || g.context != ctx || !g.pending(q.now) {
		outcome = permissionsFailed(fmt.Sprintf("Uprawnienie o identyfikatorze %s nie istnieje lub zostało już odebrane.", id))
	}
	op := e.newPermissionOperationLocked(ctx, q.now, outcome)
	if outcome.Code == 200 {
		g.end = op.readyAt
	}
	q.json(http.StatusAccepted, permissionsOperationResponse{ReferenceNumber: op.ref})
}

type personPermissionsQuery struct {
	AuthorIdentifier     *identifierJSON `json:"authorIdentifier"`
	AuthorizedIdentifier *identifierJSON `json:"authorizedIdentifier"`
	ContextIdentifier    *identifierJSON `json:"contextIdentifier"`
	TargetIdentifier     *identifierJSON `json:"targetIdentifier"`
	PermissionTypes      []string        `json:"permissionTypes"`
	PermissionState      *string         `json:"permissionState"`
	QueryType            *string         `json:"queryType"`
}

type personPermissionJSON struct {
	ID                   string                   `json:"id"`
	AuthorizedIdentifier subjectID                `json:"authorizedIdentifier"`
	ContextIdentifier    *contextID               `json:"contextIdentifier,omitempty"`
	AuthorIdentifier     subjectID                `json:"authorIdentifier"`
	PermissionScope      string                   `json:"permissionScope"`
	Description          string                   `json:"description"`
	SubjectPersonDetails *permissionPersonDetails `json:"subjectPersonDetails,omitempty"`
	SubjectEntityDetails *permissionEntityDetails `json:"subjectEntityDetails,omitempty"`
	PermissionState      string                   `json:"permissionState"`
	StartDate            apiTime                  `json:"startDate"`
	CanDelegate          bool                     `json:"canDelegate"`
}

// matchIdentifier applies an optional identifier filter of a permission query.
func matchIdentifier(filter *identifierJSON, s subjectID) bool {
	if filter == nil || filter.Type == nil {
		return true
	}
	if *filter.Type != s.Type {
		return false
	}
	return filter.Value == nil || strings.EqualFold(*filter.Value, s.Value)
}

// POST /permissions/query/persons/grants
func (e *Emulator) handleQueryPersonPermissions(q *request) {
	page, ok := q.offsetPaging(100)
	if !ok {
		return
	}
	var req personPermissionsQuery
	if !q.decodeJSON(&req) {
		return
	}
	if req.QueryType == nil || (*req.QueryType != "PermissionsInCurrentContext" && *req.QueryType != "PermissionsGrantedInCurrentContext") {
		q.fail(codeValidation, "Pole 'queryType' musi mieć wartość PermissionsInCurrentContext lub PermissionsGrantedInCurrentContext.")
		return
	}
	if msg := checkFilterPermissions(req.PermissionTypes, personPermissionTypes); msg != "" {
		q.fail(codeValidation, msg)
		return
	}
	caller := authorOf(q.principal())
	ctx := q.context()
	e.mu.Lock()
	var out []personPermissionJSON
	for _, g := range e.sortedGrantsLocked() {
		switch {
		case g.context != ctx || !g.active(q.now):
		case *req.QueryType == "PermissionsGrantedInCurrentContext" && !g.author.is(caller):
		case !matchIdentifier(req.AuthorIdentifier, g.author), !matchIdentifier(req.AuthorizedIdentifier, g.authorized):
		case req.ContextIdentifier != nil && req.ContextIdentifier.Value != nil && *req.ContextIdentifier.Value != g.context.Value:
		case req.TargetIdentifier != nil: // every grant here is direct: none has a target
		case len(req.PermissionTypes) > 0 && !slices.Contains(req.PermissionTypes, g.scope):
		case req.PermissionState != nil && *req.PermissionState != "Active":
		default:
			out = append(out, personPermissionJSON{
				ID: g.id, AuthorizedIdentifier: g.authorized, AuthorIdentifier: g.author, PermissionScope: g.scope,
				Description: g.description, SubjectPersonDetails: g.person, SubjectEntityDetails: g.entity,
				PermissionState: "Active", StartDate: apiTime(g.start), CanDelegate: g.canDelegate,
			})
		}
	}
	e.mu.Unlock()
	from, to, more := page.bounds(len(out))
	q.json(http.StatusOK, struct {
		Permissions []personPermissionJSON `json:"permissions"`
		HasMore     bool                   `json:"hasMore"`
	}{nonNil(out[from:to]), more})
}

type personalPermissionsQuery struct {
	ContextIdentifier *identifierJSON `json:"contextIdentifier"`
	TargetIdentifier  *identifierJSON `json:"targetIdentifier"`
	PermissionTypes   []string        `json:"permissionTypes"`
	PermissionState   *string         `json:"permissionState"`
}

type personalPermissionJSON struct {
	ID                   string                   `json:"id"`
	ContextIdentifier    *contextID               `json:"contextIdentifier,omitempty"`
	AuthorizedIdentifier *subjectID               `json:"authorizedIdentifier,omitempty"`
	PermissionScope      string                   `json:"permissionScope"`
	Description          string                   `json:"description"`
	SubjectPersonDetails *permissionPersonDetails `json:"subjectPersonDetails,omitempty"`
	SubjectEntityDetails *permissionEntityDetails `json:"subjectEntityDetails,omitempty"`
	PermissionState      string                   `json:"permissionState"`
	StartDate            apiTime                  `json:"startDate"`
	CanDelegate          bool                     `json:"canDelegate"`
}

// POST /permissions/query/personal/grants: the caller's own permissions granted in the current
// context and, for the context's owner, the permissions other contexts granted to the context's
// NIP as an entity.
func (e *Emulator) handleQueryPersonalPermissions(q *request) {
	page, ok := q.offsetPaging(100)
	if !ok {
		return
	}
	var req personalPermissionsQuery
	if !q.decodeOptionalJSON(&req) {
		return
	}
	if msg := checkFilterPermissions(req.PermissionTypes, append(slices.Clone(personPermissionTypes), "VatUeManage")); msg != "" {
		q.fail(codeValidation, msg)
		return
	}
	caller := authorOf(q.principal())
	ctx := q.context()
	ownerOfContext := owns(ctx, caller)
	e.mu.Lock()
	var out []personalPermissionJSON
	for _, g := range e.sortedGrantsLocked() {
		mine := g.context == ctx && g.authorized.is(caller)
		forContext := ownerOfContext && g.entity != nil && g.authorized.Type == subjectNip && g.authorized.Value == ctx.nip()
		switch {
		case !g.active(q.now) || !(mine || forContext):
		case req.ContextIdentifier != nil && req.ContextIdentifier.Value != nil && *req.ContextIdentifier.Value != g.context.Value:
		case req.TargetIdentifier != nil:
		case len(req.PermissionTypes) > 0 && !slices.Contains(req.PermissionTypes, g.scope):
		case req.PermissionState != nil && *req.PermissionState != "Active":
		default:
			item := personalPermissionJSON{
				ID: g.id, PermissionScope: g.scope, Description: g.description,
				SubjectPersonDetails: g.person, SubjectEntityDetails: g.entity,
				PermissionState: "Active", StartDate: apiTime(g.start), CanDelegate: g.canDelegate,
			}
			if g.context.Type == "Nip" || g.context.Type == "InternalId" {
				c := g.context
				item.ContextIdentifier = &c
			}
			if !g.authorized.is(caller) {
				a := g.authorized
				item.AuthorizedIdentifier = &a
			}
			out = append(out, item)
		}
	}
	e.mu.Unlock()
	from, to, more := page.bounds(len(out))
	q.json(http.StatusOK, struct {
		Permissions []personalPermissionJSON `json:"permissions"`
		HasMore     bool                     `json:"hasMore"`
	}{nonNil(out[from:to]), more})
}

// checkFilterPermissions checks the permissionTypes filter of a query.
func checkFilterPermissions(perms, allowed []string) string {
	for _, p := range perms {
		if !slices.Contains(allowed, p) {
			return fmt.Sprintf("Nieznany rodzaj uprawnienia '%s'.", p)
		}
	}
	return ""
}

// sortedGrantsLocked returns the grants as the queries sort them: startDate descending, then id.
func (e *Emulator) sortedGrantsLocked() []*grant {
	gs := slices.Clone(e.st.creds.grants)
	slices.SortStableFunc(gs, func(a, b *grant) int {
		if c := b.start.Compare(a.start); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	return gs
}

// permissionRoutes registers the permission endpoints. Their x-required-permissions are
// enforced by route.
func (e *Emulator) permissionRoutes(mux *http.ServeMux) {
	e.route(mux, "POST /permissions/persons/grants", groupOther, authAccess, e.handleGrantPersonPermissions)
	e.route(mux, "POST /permissions/entities/grants", groupOther, authAccess, e.handleGrantEntityPermissions)
	e.route(mux, "GET /permissions/operations/{referenceNumber}", groupOther, authAccess, e.handlePermissionOperation)
	e.route(mux, "POST /permissions/query/persons/grants", groupOther, authAccess, e.handleQueryPersonPermissions)
	e.route(mux, "POST /permissions/query/personal/grants", groupOther, authAccess, e.handleQueryPersonalPermissions)
	e.route(mux, "DELETE /permissions/common/grants/{permissionId}", groupOther, authAccess, e.handleRevokePermission)
}
