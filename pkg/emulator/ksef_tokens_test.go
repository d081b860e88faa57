package emulator_test

import (
	"fmt"
	"regexp"
	"slices"
	"testing"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

type generatedToken struct {
	ReferenceNumber string `json:"referenceNumber"`
	Token           string `json:"token"`
}

type tokenStatus struct {
	ReferenceNumber      string            `json:"referenceNumber"`
	AuthorIdentifier     map[string]string `json:"authorIdentifier"`
	ContextIdentifier    map[string]string `json:"contextIdentifier"`
	Description          string            `json:"description"`
	RequestedPermissions []string          `json:"requestedPermissions"`
	LastUseDate          string            `json:"lastUseDate"`
	Status               string            `json:"status"`
}

func (c *kclient) generateToken(access string, perms []string, description string) generatedToken {
	c.t.Helper()
	r := c.do("POST", "/tokens", access, map[string]any{"permissions": perms, "description": description})
	c.expect(r, 202)
	var g generatedToken
	r.decode(c.t, &g)
	return g
}

func (c *kclient) tokenStatus(access, ref string) tokenStatus {
	c.t.Helper()
	r := c.do("GET", "/tokens/"+ref, access, nil)
	c.expect(r, 200)
	var st tokenStatus
	r.decode(c.t, &st)
	return st
}

// tokenOutcome starts a KSeF-token login and returns its final status.
func (c *kclient) tokenOutcome(nip, token string) (authInit, authStatus) {
	c.t.Helper()
	r := c.startTokenAuth(nip, token)
	c.expect(r, 202)
	var ai authInit
	r.decode(c.t, &ai)
	c.srv.Clock.Advance(emulator.DefaultAuthDelay)
	return ai, c.authStatus(ai)
}

func TestGeneratedTokenLifecycle(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	owner := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token

	g := c.generateToken(owner, []string{"InvoiceRead", "InvoiceWrite"}, "Wystawianie faktur")
	shape := regexp.MustCompile(`^(\d{8}-EC-[0-9A-F]{10}-[0-9A-F]{10}-[0-9A-F]{2})\|nip-` + ownerNIP + `\|[0-9a-f]{64}$`)
	if m := shape.FindStringSubmatch(g.Token); m == nil || m[1] != g.ReferenceNumber {
		t.Fatalf("token for %s is not shaped <ref>|nip-<NIP>|<64 hex>", g.ReferenceNumber)
	}
	st := c.tokenStatus(owner, g.ReferenceNumber)
	if st.Status != "Pending" || st.AuthorIdentifier["type"] != "Nip" || st.AuthorIdentifier["value"] != ownerNIP ||
		st.ContextIdentifier["value"] != ownerNIP || !slices.Equal(st.RequestedPermissions, []string{"InvoiceRead", "InvoiceWrite"}) || st.LastUseDate != "" {
		t.Fatalf("new token: %+v", st)
	}
	// Pending: the login fails with 450 "Token nieaktywny".
	if _, as := c.tokenOutcome(ownerNIP, g.Token); as.Status.Code != 450 || !slices.Equal(as.Status.Details, []string{"Token nieaktywny"}) {
		t.Fatalf("login with a pending token: %+v", as.Status)
	}
	srv.Clock.Advance(emulator.TokenActivationDelay)
	if st := c.tokenStatus(owner, g.ReferenceNumber); st.Status != "Active" {
		t.Fatalf("after the activation delay: %s, want Active", st.Status)
	}
	tk := c.loginToken(ownerNIP, g.Token)
	c.openSession(tk.AccessToken.Token)
	if st := c.tokenStatus(owner, g.ReferenceNumber); st.LastUseDate == "" {
		t.Error("lastUseDate not set after a login")
	}
	// A login started before the revocation cannot be redeemed after it.
	r := c.startTokenAuth(ownerNIP, g.Token)
	c.expect(r, 202)
	var pending authInit
	r.decode(t, &pending)

	c.expect(c.do("DELETE", "/tokens/"+g.ReferenceNumber, owner, nil), 204)
	if st := c.tokenStatus(owner, g.ReferenceNumber); st.Status != "Revoking" {
		t.Fatalf("just revoked: %s, want Revoking", st.Status)
	}
	srv.Clock.Advance(emulator.TokenRevocationDelay)
	if st := c.tokenStatus(owner, g.ReferenceNumber); st.Status != "Revoked" {
		t.Fatalf("after the revocation delay: %s, want Revoked", st.Status)
	}
	c.expect(c.do("DELETE", "/tokens/"+g.ReferenceNumber, owner, nil), 204) // again: no change
	if _, as := c.tokenOutcome(ownerNIP, g.Token); as.Status.Code != 450 || !slices.Equal(as.Status.Details, []string{"Token unieważniony"}) {
		t.Fatalf("login with a revoked token: %+v", as.Status)
	}
	c.expectException(c.do("POST", "/auth/token/redeem", pending.AuthenticationToken.Token, nil), 21301)
	c.expectException(c.do("POST", "/auth/token/refresh", tk.RefreshToken.Token, nil), 21301)
}

func TestTokenCarriesOnlyItsPermissions(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	owner := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	g := c.generateToken(owner, []string{"InvoiceRead"}, "Tylko odczyt faktur")
	srv.Clock.Advance(emulator.TokenActivationDelay)
	access := c.loginToken(ownerNIP, g.Token).AccessToken.Token

	p := c.expectForbidden(c.openSessionReply(access, make([]byte, 32), make([]byte, 16)), "missing-permissions")
	if got := stringList(p.Security["requiredAnyOfPermissions"]); !slices.Equal(got, []string{"InvoiceWrite", "PefInvoiceWrite", "EnforcementOperations"}) {
		t.Errorf("requiredAnyOfPermissions %v", got)
	}
	if got := stringList(p.Security["presentPermissions"]); !slices.Equal(got, []string{"InvoiceRead"}) {
		t.Errorf("presentPermissions %v", got)
	}
	// A token login may not generate tokens, whatever its permissions.
	p = c.expectForbidden(c.do("POST", "/tokens", access, map[string]any{"permissions": []string{"InvoiceRead"}, "description": "Kolejny token"}), "auth-method-not-allowed")
	if p.Security["authenticationMethodCategory"] != "Token" {
		t.Errorf("authenticationMethodCategory %v, want Token", p.Security["authenticationMethodCategory"])
	}
	// Nor revoke a token other than its own...
	other := c.generateToken(owner, []string{"InvoiceRead"}, "Drugi token")
	c.expectForbidden(c.do("DELETE", "/tokens/"+other.ReferenceNumber, access, nil), "insufficient-resource-access")
	// ...but it may revoke itself.
	c.expect(c.do("DELETE", "/tokens/"+g.ReferenceNumber, access, nil), 204)
}

func TestGenerateTokenRefused(t *testing.T) {
	const vatUE = ownerNIP + "-DE123456789"
	srv := emutest.NewServerAt(t, testStart, emulator.Config{
		Tokens: map[string][]string{ownerNIP: {"config-token"}},
		Grants: map[string][]string{vatUE: {ownerNIP}},
	})
	c := newClient(t, srv)
	seal := sealOf(t, ownerNIP)
	owner := c.xadesLogin(seal, ownerNIP).AccessToken.Token

	c.expectException(c.do("POST", "/tokens", owner, map[string]any{"permissions": []string{"EnforcementOperations"}, "description": "Egzekucja"}), 26001)
	c.expectException(c.do("POST", "/tokens", owner, map[string]any{"permissions": []string{"InvoiceRead"}, "description": "abc"}, invalid()...), 21405)
	c.expectException(c.do("POST", "/tokens", owner, map[string]any{"permissions": []string{}, "description": "Bez uprawnień"}), 21405)

	vat := c.finishAuth(c.xadesStart(seal, "NipVatUe", vatUE, "certificateSubject", "")).AccessToken.Token
	c.expectException(c.do("POST", "/tokens", vat, map[string]any{"permissions": []string{"InvoiceRead"}, "description": "Kontekst VAT UE"}), 26002)

	configToken := c.loginToken(ownerNIP, "config-token").AccessToken.Token
	c.expectForbidden(c.do("POST", "/tokens", configToken, map[string]any{"permissions": []string{"InvoiceRead"}, "description": "Z tokena"}), "auth-method-not-allowed")
}

func TestListTokens(t *testing.T) {
	srv := emutest.NewServerAt(t, testStart, emulator.Config{})
	c := newClient(t, srv)
	owner := c.xadesLogin(sealOf(t, ownerNIP), ownerNIP).AccessToken.Token
	var refs []string
	for i := range 11 {
		refs = append(refs, c.generateToken(owner, []string{"InvoiceRead"}, fmt.Sprintf("Token numer %02d", i)).ReferenceNumber)
		srv.Clock.Advance(emulator.TokenActivationDelay)
	}
	list := func(access, query string, extra ...string) ([]string, string) {
		t.Helper()
		r := c.do("GET", "/tokens"+query, access, nil, extra...)
		c.expect(r, 200)
		var out struct {
			ContinuationToken string        `json:"continuationToken"`
			Tokens            []tokenStatus `json:"tokens"`
		}
		r.decode(t, &out)
		var got []string
		for _, tk := range out.Tokens {
			got = append(got, tk.ReferenceNumber)
		}
		return got, out.ContinuationToken
	}
	first, next := list(owner, "")
	if len(first) != 10 || next == "" || first[0] != refs[10] {
		t.Fatalf("first page: %d tokens, next %q, first %v; want 10 newest first", len(first), next, first[:1])
	}
	rest, last := list(owner, "", "x-continuation-token", next)
	if !slices.Equal(rest, refs[:1]) || last != "" {
		t.Fatalf("second page %v (next %q), want the oldest token only", rest, last)
	}
	if got, _ := list(owner, "?description=numer+07"); !slices.Equal(got, refs[7:8]) {
		t.Errorf("description filter: %v", got)
	}
	// A person granted InvoiceWrite only (no CredentialsRead) sees just the tokens they made.
	ref := c.grantPerson(owner, "Pesel", peselA, []string{"InvoiceWrite"}, nil)
	c.finishOperation(owner, ref)
	person := c.xadesLogin(personWith(t, "PNOPL-"+peselA), ownerNIP).AccessToken.Token
	mine := c.generateToken(person, []string{"InvoiceWrite"}, "Token osoby")
	if got, _ := list(person, ""); !slices.Equal(got, []string{mine.ReferenceNumber}) {
		t.Errorf("person sees %v, want only their token", got)
	}
	if got, _ := list(owner, "?authorIdentifierType=Pesel&authorIdentifier="+peselA[:5]); !slices.Equal(got, []string{mine.ReferenceNumber}) {
		t.Errorf("author filter: %v", got)
	}
	c.expect(c.do("DELETE", "/tokens/"+refs[0], owner, nil), 204)
	if got, _ := list(owner, "?status=Revoking&status=Revoked"); !slices.Equal(got, refs[:1]) {
		t.Errorf("status filter: %v", got)
	}
	// A token login sees only its own token.
	own := c.generateToken(owner, []string{"InvoiceRead"}, "Token z logowania")
	srv.Clock.Advance(emulator.TokenActivationDelay)
	tokenAccess := c.loginToken(ownerNIP, own.Token).AccessToken.Token
	if got, _ := list(tokenAccess, ""); !slices.Equal(got, []string{own.ReferenceNumber}) {
		t.Errorf("token login sees %v, want only its token", got)
	}
	c.expectException(c.do("GET", "/tokens?description=ab", owner, nil, invalid()...), 21405)
	c.expectException(c.do("GET", "/tokens", owner, nil, "x-continuation-token", "garbage"), 21418)
}
