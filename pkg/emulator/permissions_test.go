package emulator_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

// Subjects of the onboarding tests. ownerNIP owns its context; the PESELs and partnerNIP hold
// nothing there until granted.
const (
	ownerNIP   = "5265877635"
	partnerNIP = "7762811692"
	peselA     = "90010112345"
	peselB     = "85121054321"
)

// signer is a key and a certificate to log in with XAdES.
type signer struct {
	key  crypto.Signer
	cert *x509.Certificate
}

func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// sealOf is a self-signed company seal (organizationIdentifier VATPL-<nip>).
func sealOf(t testing.TB, nip string) signer {
	k := newECKey(t)
	return signer{k, selfSigned(t, k, sealSubject(nip), testStart, 365*24*time.Hour)}
}

// personWith is a self-signed personal certificate with serialNumber serial (TINPL-<NIP>,
// PNOPL-<PESEL>, or anything for a fingerprint login).
func personWith(t testing.TB, serial string) signer {
	k := newECKey(t)
	return signer{k, selfSigned(t, k, personSubject(serial), testStart, 365*24*time.Hour)}
}

// xadesStart signs an AuthTokenRequest for the context with s and posts it, expecting 202.
func (c *kclient) xadesStart(s signer, ctxType, ctxValue, subjectType string, query string) authInit {
	c.t.Helper()
	ch := c.challenge()
	doc := signXAdES(c.t, authTokenRequest(ns20, ch.Challenge, ctxType, ctxValue, subjectType), s.key, s.cert, c.srv.Emulator.Now(), signOptions{})
	r := c.do("POST", "/auth/xades-signature"+query, "", doc)
	c.expect(r, 202)
	var ai authInit
	r.decode(c.t, &ai)
	return ai
}

// xadesOutcome starts an XAdES login into a Nip context and returns its final status.
func (c *kclient) xadesOutcome(s signer, nip, subjectType string) authStatus {
	c.t.Helper()
	ai := c.xadesStart(s, "Nip", nip, subjectType, "")
	c.srv.Clock.Advance(emulator.DefaultAuthDelay)
	return c.authStatus(ai)
}

// xadesLogin logs in with XAdES (certificateSubject) into the NIP context and returns the
// tokens.
func (c *kclient) xadesLogin(s signer, nip string) tokens {
	c.t.Helper()
	return c.finishAuth(c.xadesStart(s, "Nip", nip, "certificateSubject", ""))
}

// forbidden decodes a 403 answer: always problem+json.
type forbiddenProblem struct {
	Title      string         `json:"title"`
	Status     int            `json:"status"`
	Detail     string         `json:"detail"`
	ReasonCode string         `json:"reasonCode"`
	Security   map[string]any `json:"security"`
}

func (c *kclient) expectForbidden(r reply, reason string) forbiddenProblem {
	c.t.Helper()
	c.expect(r, 403)
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json; charset=utf-8" {
		c.t.Errorf("403 Content-Type %q, want application/problem+json", ct)
	}
	var p forbiddenProblem
	r.decode(c.t, &p)
	if p.ReasonCode != reason || p.Status != 403 {
		c.t.Fatalf("403 reason %q (status %d), want %q; body %s", p.ReasonCode, p.Status, reason, r.body)
	}
	return p
}

func (c *kclient) expectException(r reply, code int) {
	c.t.Helper()
	c.expect(r, 400)
	if got := r.exceptionCode(c.t); got != code {
		c.t.Fatalf("exception %d, want %d; body %s", got, code, r.body)
	}
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// grantPerson posts a person grant and returns the operation's reference number.
func (c *kclient) grantPerson(access string, subjectType, subject string, perms []string, details map[string]any) string {
	c.t.Helper()
	if details == nil {
		details = map[string]any{"subjectDetailsType": "PersonByIdentifier", "personById": map[string]any{"firstName": "Anna", "lastName": "Nowak"}}
	}
	r := c.do("POST", "/permissions/persons/grants", access, map[string]any{
		"subjectIdentifier": map[string]any{"type": subjectType, "value": subject},
		"permissions":       perms,
		"description":       "Uprawnienia testowe",
		"subjectDetails":    details,
	})
	c.expect(r, 202)
	var out struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	r.decode(c.t, &out)
	return out.ReferenceNumber
}

type operationStatus struct {
	Status struct {
		Code        int      `json:"code"`
		Description string   `json:"description"`
		Details     []string `json:"details"`
	} `json:"status"`
}

func (c *kclient) operation(access, ref string) operationStatus {
	c.t.Helper()
	r := c.do("GET", "/permissions/operations/"+ref, access, nil)
	c.expect(r, 200)
	var st operationStatus
	r.decode(c.t, &st)
	return st
}

// finishOperation checks that the operation is in progress, lets it end and returns its outcome.
func (c *kclient) finishOperation(access, ref string) operationStatus {
	c.t.Helper()
	if st := c.operation(access, ref); st.Status.Code != 100 {
		c.t.Fatalf("fresh operation: %+v, want 100", st.Status)
	}
	c.srv.Clock.Advance(emulator.PermissionOperationDelay)
	return c.operation(access, ref)
}

type personPermission struct {
	ID                   string            `json:"id"`
	AuthorizedIdentifier map[string]string `json:"authorizedIdentifier"`
	AuthorIdentifier     map[string]string `json:"authorIdentifier"`
	PermissionScope      string            `json:"permissionScope"`
	Description          string            `json:"description"`
	SubjectPersonDetails map[string]any    `json:"subjectPersonDetails"`
	SubjectEntityDetails map[string]any    `json:"subjectEntityDetails"`
	PermissionState      string            `json:"permissionState"`
	CanDelegate          bool              `json:"canDelegate"`
	ContextIdentifier    map[string]string `json:"contextIdentifier"`
}

type permissionPage struct {
	Permissions []personPermission `json:"permissions"`
	HasMore     bool               `json:"hasMore"`
}

func (c *kclient) queryPermissions(access, path, query string, body any) permissionPage {
	c.t.Helper()
	r := c.do("POST", path+query, access, body)
	c.expect(r, 200)
	var p permissionPage
	r.decode(c.t, &p)
	return p
}

func scopes(p permissionPage) []string {
	var out []string
	for _, x := range p.Permissions {
		out = append(out, x.PermissionScope)
	}
	slices.Sort(out)
	return out
}

func TestGrantedPersonLogsInAndActs(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	owner := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	person := personWith(t, "PNOPL-"+peselA)

	// Nothing granted yet: 415.
	if st := c.xadesOutcome(person, ownerNIP, "certificateSubject"); st.Status.Code != 415 {
		t.Fatalf("login before the grant: %+v, want 415", st.Status)
	}
	ref := c.grantPerson(owner, "Pesel", peselA, []string{"InvoiceWrite", "CredentialsRead"}, nil)
	if len(ref) != 36 || ref[9:11] != "EG" {
		t.Errorf("operation reference %q, want an EG reference number", ref)
	}
	// In force only when the operation has ended (a login is judged when it is submitted).
	if st := c.operation(owner, ref); st.Status.Code != 100 || st.Status.Description != "Operacja przyjęta do realizacji" {
		t.Fatalf("fresh grant: %+v, want 100", st.Status)
	}
	if st := c.xadesOutcome(person, ownerNIP, "certificateSubject"); st.Status.Code != 415 {
		t.Fatalf("login while the grant is in progress: %+v, want 415", st.Status)
	}
	if st := c.operation(owner, ref); st.Status.Code != 200 || st.Status.Description != "Operacja zakończona sukcesem" {
		t.Fatalf("grant: %+v, want 200", st.Status)
	}
	tk := c.xadesLogin(person, ownerNIP)
	access := tk.AccessToken.Token
	c.openSession(access) // InvoiceWrite

	// Granted permissions are listed in the context and as the person's own.
	all := c.queryPermissions(access, "/permissions/query/persons/grants", "", map[string]any{"queryType": "PermissionsInCurrentContext"})
	if got := scopes(all); !slices.Equal(got, []string{"CredentialsRead", "InvoiceWrite"}) {
		t.Fatalf("persons query scopes %v", got)
	}
	p := all.Permissions[0]
	if p.AuthorizedIdentifier["value"] != peselA || p.AuthorIdentifier["type"] != "Nip" || p.AuthorIdentifier["value"] != ownerNIP ||
		p.SubjectPersonDetails["firstName"] != "Anna" || p.PermissionState != "Active" || len(p.ID) != 36 {
		t.Errorf("permission %+v", p)
	}
	mine := c.queryPermissions(access, "/permissions/query/personal/grants", "", nil)
	if got := scopes(mine); !slices.Equal(got, []string{"CredentialsRead", "InvoiceWrite"}) {
		t.Errorf("personal query scopes %v", got)
	}
	// Without CredentialsManage the person may not grant.
	r := c.do("POST", "/permissions/persons/grants", access, map[string]any{
		"subjectIdentifier": map[string]any{"type": "Pesel", "value": peselB}, "permissions": []string{"InvoiceRead"},
		"description": "Uprawnienia testowe", "subjectDetails": map[string]any{"subjectDetailsType": "PersonByIdentifier", "personById": map[string]any{"firstName": "Jan", "lastName": "Kowal"}},
	})
	prob := c.expectForbidden(r, "missing-permissions")
	if got := stringList(prob.Security["requiredAnyOfPermissions"]); !slices.Equal(got, []string{"CredentialsManage"}) {
		t.Errorf("requiredAnyOfPermissions %v", got)
	}
	if got := stringList(prob.Security["presentPermissions"]); !slices.Equal(got, []string{"CredentialsRead", "InvoiceWrite"}) {
		t.Errorf("presentPermissions %v", got)
	}

	// The owner revokes InvoiceWrite. The person's access token keeps what it had; a refreshed
	// one does not.
	var writeID string
	for _, x := range all.Permissions {
		if x.PermissionScope == "InvoiceWrite" {
			writeID = x.ID
		}
	}
	rev := c.do("DELETE", "/permissions/common/grants/"+writeID, owner, nil)
	c.expect(rev, 202)
	var revOp struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	rev.decode(t, &revOp)
	if st := c.finishOperation(owner, revOp.ReferenceNumber); st.Status.Code != 200 {
		t.Fatalf("revoke: %+v", st.Status)
	}
	c.openSession(access)
	rr := c.do("POST", "/auth/token/refresh", tk.RefreshToken.Token, nil)
	c.expect(rr, 200)
	var refreshed tokens
	rr.decode(t, &refreshed)
	c.expectForbidden(c.openSessionReply(refreshed.AccessToken.Token, make([]byte, 32), make([]byte, 16)), "missing-permissions")

	// Revoking it again fails asynchronously.
	again := c.do("DELETE", "/permissions/common/grants/"+writeID, owner, nil)
	c.expect(again, 202)
	again.decode(t, &revOp)
	if st := c.finishOperation(owner, revOp.ReferenceNumber); st.Status.Code != 400 {
		t.Errorf("second revoke: %+v, want 400", st.Status)
	}
}

func TestGrantOutcomes(t *testing.T) {
	fingerprintDetails := map[string]any{"subjectDetailsType": "PersonByFingerprintWithIdentifier",
		"personByFpWithId": map[string]any{"firstName": "Anna", "lastName": "Nowak", "identifier": map[string]any{"type": "Pesel", "value": peselA}}}
	tests := []struct {
		name        string
		subjectType string
		subject     string
		perms       []string
		details     map[string]any
		want        int
	}{
		{"person by PESEL", "Pesel", peselA, []string{"InvoiceRead"}, nil, 200},
		{"fingerprint with identifier", "Fingerprint", "ab" + fmt.Sprintf("%062d", 7), []string{"InvoiceRead"}, fingerprintDetails, 200},
		{"fingerprint without identifier", "Fingerprint", fmt.Sprintf("%064d", 9), []string{"InvoiceWrite"}, map[string]any{
			"subjectDetailsType": "PersonByFingerprintWithoutIdentifier",
			"personByFpNoId": map[string]any{"firstName": "Hans", "lastName": "Muster", "birthDate": "1980-02-29",
				"idDocument": map[string]any{"type": "Paszport", "number": "C01X00T47", "country": "DE"}}}, 200},
		{"details do not fit the identifier", "Pesel", peselA, []string{"InvoiceRead"}, fingerprintDetails, 410},
		{"enforcement outside an enforcement authority", "Pesel", peselA, []string{"EnforcementOperations"}, nil, 430},
		{"grant to the owner", "Nip", ownerNIP, []string{"InvoiceRead"}, nil, 440},
	}
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	owner := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, srv)
			ref := c.grantPerson(owner, tt.subjectType, tt.subject, tt.perms, tt.details)
			if st := c.finishOperation(owner, ref); st.Status.Code != tt.want {
				t.Errorf("status %+v, want %d", st.Status, tt.want)
			}
		})
	}
	// Entity grants to the context's own NIP are refused the same way.
	r := c.do("POST", "/permissions/entities/grants", owner, map[string]any{
		"subjectIdentifier": map[string]any{"type": "Nip", "value": ownerNIP},
		"permissions":       []map[string]any{{"type": "InvoiceRead", "canDelegate": false}},
		"description":       "Biuro rachunkowe",
		"subjectDetails":    map[string]any{"fullName": "Firma Testowa"},
	})
	c.expect(r, 202)
	var op struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	r.decode(t, &op)
	if st := c.finishOperation(owner, op.ReferenceNumber); st.Status.Code != 440 {
		t.Errorf("entity grant to the context: %+v, want 440", st.Status)
	}
	// Malformed requests: 21405 at once.
	bad := []map[string]any{
		{"subjectIdentifier": map[string]any{"type": "Pesel", "value": "123"}, "permissions": []string{"InvoiceRead"}, "description": "Opis uprawnienia",
			"subjectDetails": map[string]any{"subjectDetailsType": "PersonByIdentifier", "personById": map[string]any{"firstName": "Anna", "lastName": "Nowak"}}},
		{"subjectIdentifier": map[string]any{"type": "Pesel", "value": peselA}, "permissions": []string{"InvoiceRead", "InvoiceRead"}, "description": "Opis uprawnienia",
			"subjectDetails": map[string]any{"subjectDetailsType": "PersonByIdentifier", "personById": map[string]any{"firstName": "Anna", "lastName": "Nowak"}}},
		{"subjectIdentifier": map[string]any{"type": "Pesel", "value": peselA}, "permissions": []string{"InvoiceRead"}, "description": "Opis uprawnienia",
			"subjectDetails": map[string]any{"subjectDetailsType": "PersonByIdentifier"}},
	}
	for _, body := range bad {
		c.expectException(c.do("POST", "/permissions/persons/grants", owner, body, invalid()...), 21405)
	}
	// Operations are visible only in their context and expire after 30 days.
	srv.Clock.Advance(30 * 24 * time.Hour)
	fresh := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	gone := c.do("GET", "/permissions/operations/"+op.ReferenceNumber, fresh, nil)
	c.expect(gone, 410)
	other := c.xadesLogin(sealOf(t, partnerNIP), partnerNIP).AccessToken.Token
	c.expectException(c.do("GET", "/permissions/operations/"+op.ReferenceNumber, other, nil), 21405)
}

func TestQueryPersonPermissionsPaging(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	owner := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	for i := range 12 {
		perm := "InvoiceRead"
		if i%3 == 0 {
			perm = "Introspection"
		}
		ref := c.grantPerson(owner, "Pesel", fmt.Sprintf("900101%05d", i), []string{perm}, nil)
		c.finishOperation(owner, ref)
	}
	q := map[string]any{"queryType": "PermissionsInCurrentContext"}
	first := c.queryPermissions(owner, "/permissions/query/persons/grants", "?pageOffset=0&pageSize=10", q)
	second := c.queryPermissions(owner, "/permissions/query/persons/grants", "?pageOffset=1&pageSize=10", q)
	if len(first.Permissions) != 10 || !first.HasMore || len(second.Permissions) != 2 || second.HasMore {
		t.Fatalf("pages of %d (more %v) and %d (more %v), want 10 (true) and 2 (false)",
			len(first.Permissions), first.HasMore, len(second.Permissions), second.HasMore)
	}
	// Newest first: the last grant (PESEL ...11) heads the first page.
	if got := first.Permissions[0].AuthorizedIdentifier["value"]; got != "90010100011" {
		t.Errorf("first item for %s, want the newest grant (90010100011)", got)
	}
	filtered := c.queryPermissions(owner, "/permissions/query/persons/grants", "?pageSize=100",
		map[string]any{"queryType": "PermissionsInCurrentContext", "permissionTypes": []string{"Introspection"}})
	if len(filtered.Permissions) != 4 {
		t.Errorf("Introspection filter: %d permissions, want 4", len(filtered.Permissions))
	}
	byPerson := c.queryPermissions(owner, "/permissions/query/persons/grants", "",
		map[string]any{"queryType": "PermissionsGrantedInCurrentContext", "authorizedIdentifier": map[string]any{"type": "Pesel", "value": "90010100005"}})
	if len(byPerson.Permissions) != 1 || byPerson.Permissions[0].PermissionScope != "InvoiceRead" {
		t.Errorf("authorizedIdentifier filter: %+v", byPerson.Permissions)
	}
	c.expectException(c.do("POST", "/permissions/query/persons/grants?pageSize=101", owner, q, invalid()...), 21405)
	c.expectException(c.do("POST", "/permissions/query/persons/grants", owner, map[string]any{}, invalid()...), 21405)
}

func TestEntityGrant(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	owner := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	partnerSeal := sealOf(t, partnerNIP)
	if st := c.xadesOutcome(partnerSeal, ownerNIP, "certificateSubject"); st.Status.Code != 415 {
		t.Fatalf("partner before the grant: %+v, want 415", st.Status)
	}
	r := c.do("POST", "/permissions/entities/grants", owner, map[string]any{
		"subjectIdentifier": map[string]any{"type": "Nip", "value": partnerNIP},
		"permissions":       []map[string]any{{"type": "InvoiceWrite", "canDelegate": true}, {"type": "InvoiceRead"}},
		"description":       "Biuro rachunkowe",
		"subjectDetails":    map[string]any{"fullName": "Biuro Rachunkowe sp. z o.o."},
	})
	c.expect(r, 202)
	var op struct {
		ReferenceNumber string `json:"referenceNumber"`
	}
	r.decode(t, &op)
	if st := c.finishOperation(owner, op.ReferenceNumber); st.Status.Code != 200 {
		t.Fatalf("entity grant: %+v", st.Status)
	}
	// The partner's seal may now issue invoices in the owner's context...
	c.openSession(c.xadesLogin(partnerSeal, ownerNIP).AccessToken.Token)
	// ...and the partner's owner sees the grant among its own permissions in its own context.
	partner := c.xadesLogin(partnerSeal, partnerNIP).AccessToken.Token
	mine := c.queryPermissions(partner, "/permissions/query/personal/grants", "", map[string]any{"permissionTypes": []string{"InvoiceWrite"}})
	if len(mine.Permissions) != 1 {
		t.Fatalf("personal permissions of the partner: %+v", mine.Permissions)
	}
	p := mine.Permissions[0]
	if p.ContextIdentifier["value"] != ownerNIP || !p.CanDelegate || p.SubjectEntityDetails["fullName"] != "Biuro Rachunkowe sp. z o.o." {
		t.Errorf("personal permission %+v", p)
	}
}
