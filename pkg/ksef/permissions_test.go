package ksef

import (
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testPermissionOp = "20250626-EG-333C814000-C529F710D8-D2"

func TestGrantPersonPermissions(t *testing.T) {
	fingerprint := strings.Repeat("A1", 32)
	tests := []struct {
		golden string
		grant  PersonGrant
	}{
		{"grant_person_pesel", PersonGrant{
			Subject:        PeselSubject("15062788702"),
			Permissions:    []Permission{PermissionInvoiceRead, PermissionInvoiceWrite, PermissionIntrospection, PermissionCredentialsRead},
			Description:    "Opis uprawnienia",
			SubjectDetails: PersonDetails{FirstName: "Adam", LastName: "Abacki"},
		}},
		{"grant_person_fingerprint_with_id", PersonGrant{
			Subject:        SubjectIdentifier{Type: IdentifierFingerprint, Value: fingerprint},
			Permissions:    []Permission{PermissionInvoiceWrite},
			Description:    "Certyfikat bez numeru PESEL",
			SubjectDetails: PersonDetails{FirstName: "Adam", LastName: "Abacki", Identifier: &SubjectIdentifier{Type: IdentifierNip, Value: "7762811692"}},
		}},
		{"grant_person_fingerprint_without_id", PersonGrant{
			Subject:     SubjectIdentifier{Type: IdentifierFingerprint, Value: fingerprint},
			Permissions: []Permission{PermissionInvoiceRead},
			Description: "Osoba z zagranicy",
			SubjectDetails: PersonDetails{FirstName: "Hans", LastName: "Muster", BirthDate: time.Date(1980, 2, 29, 0, 0, 0, 0, time.UTC),
				IDDocument: &IDDocument{Type: "Paszport", Number: "C01X00T47", Country: "DE"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			ts := newTestServer(t)
			ts.mux.HandleFunc("/v2/permissions/persons/grants", func(w http.ResponseWriter, r *http.Request) {
				testMethod(t, r, http.MethodPost)
				testBearer(t, r, testAccessToken)
				checkGoldenJSON(t, tt.golden, readBody(t, r))
				serveFile(t, w, http.StatusAccepted, "permission_operation.json")
			})
			got, err := ts.client.GrantPersonPermissions(t.Context(), tt.grant)
			if err != nil {
				t.Fatalf("GrantPersonPermissions: %v", err)
			}
			if got.ReferenceNumber != testPermissionOp {
				t.Errorf("reference %q, want %q", got.ReferenceNumber, testPermissionOp)
			}
		})
	}
}

func TestGrantPersonPermissionsChecksRequest(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/permissions/persons/grants", func(w http.ResponseWriter, r *http.Request) {
		t.Error("request sent for an invalid grant")
	})
	ok := PersonGrant{Subject: PeselSubject("15062788702"), Permissions: []Permission{PermissionInvoiceRead},
		Description: "Opis uprawnienia", SubjectDetails: PersonDetails{FirstName: "Adam", LastName: "Abacki"}}
	tests := []struct {
		name   string
		modify func(*PersonGrant)
		want   string
	}{
		{"bad PESEL", func(g *PersonGrant) { g.Subject = PeselSubject("1506278870") }, "not a PESEL"},
		{"bad fingerprint", func(g *PersonGrant) { g.Subject = SubjectIdentifier{Type: IdentifierFingerprint, Value: "abc"} }, "64 hexadecimal"},
		{"System subject", func(g *PersonGrant) { g.Subject = SubjectIdentifier{Type: IdentifierSystem} }, "not Nip, Pesel or Fingerprint"},
		{"VatUeManage", func(g *PersonGrant) { g.Permissions = []Permission{PermissionVatUeManage} }, "not allowed"},
		{"long description", func(g *PersonGrant) { g.Description = strings.Repeat("x", 257) }, "5-256"},
		{"short first name", func(g *PersonGrant) { g.SubjectDetails.FirstName = "A" }, "first name"},
		{"identifier for a PESEL subject", func(g *PersonGrant) {
			g.SubjectDetails.Identifier = &SubjectIdentifier{Type: IdentifierNip, Value: "7762811692"}
		},
			"name only"},
		{"fingerprint without document", func(g *PersonGrant) {
			g.Subject = SubjectIdentifier{Type: IdentifierFingerprint, Value: strings.Repeat("0", 64)}
		}, "birth date"},
		{"document with a bad country", func(g *PersonGrant) {
			g.Subject = SubjectIdentifier{Type: IdentifierFingerprint, Value: strings.Repeat("0", 64)}
			g.SubjectDetails.BirthDate = time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)
			g.SubjectDetails.IDDocument = &IDDocument{Type: "Paszport", Number: "X1", Country: "Deutschland"}
		}, "country"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := ok
			tt.modify(&g)
			if _, err := ts.client.GrantPersonPermissions(t.Context(), g); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestGrantEntityPermissions(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/permissions/entities/grants", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		checkGoldenJSON(t, "grant_entity", readBody(t, r))
		serveFile(t, w, http.StatusAccepted, "permission_operation.json")
	})
	got, err := ts.client.GrantEntityPermissions(t.Context(), EntityGrant{
		NIP:         "7762811692",
		Permissions: []EntityPermission{{Type: PermissionInvoiceRead, CanDelegate: true}, {Type: PermissionInvoiceWrite}},
		Description: "Opis uprawnienia",
		FullName:    "Firma sp. z o.o.",
	})
	if err != nil || got.ReferenceNumber != testPermissionOp {
		t.Fatalf("GrantEntityPermissions: %+v, %v", got, err)
	}
	if _, err := ts.client.GrantEntityPermissions(t.Context(), EntityGrant{NIP: "7762811692",
		Permissions: []EntityPermission{{Type: PermissionCredentialsManage}}, Description: "Opis uprawnienia", FullName: "Firma sp. z o.o."}); err == nil {
		t.Error("entity grant of CredentialsManage: no error")
	}
}

func TestRevokePermission(t *testing.T) {
	ts := newTestServer(t)
	const id = "0c9a72e8-f344-457f-9c16-7c640eb60242"
	calls := 0
	ts.mux.HandleFunc("/v2/permissions/common/grants/"+id, func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodDelete)
		testBearer(t, r, testAccessToken)
		if calls++; calls == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		serveFile(t, w, http.StatusAccepted, "permission_operation.json")
	})
	// A revocation may have started before a 5xx: not retried.
	if _, err := ts.client.RevokePermission(t.Context(), id); err == nil || calls != 1 {
		t.Fatalf("502: got %v after %d calls, want the error after one", err, calls)
	}
	got, err := ts.client.RevokePermission(t.Context(), id)
	if err != nil || got.ReferenceNumber != testPermissionOp {
		t.Fatalf("RevokePermission: %+v, %v", got, err)
	}
	if _, err := ts.client.RevokePermission(t.Context(), "42"); err == nil {
		t.Error("RevokePermission(\"42\"): no error")
	}
}

func TestPermissionOperationStatus(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/permissions/operations/"+testPermissionOp, func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodGet)
		testBearer(t, r, testAccessToken)
		serveFile(t, w, http.StatusOK, "permission_operation_status.json")
	})
	ts.mux.HandleFunc("/v2/permissions/operations/"+testSessionRef, func(w http.ResponseWriter, r *http.Request) {
		serveFile(t, w, http.StatusGone, "error_problem_410.json")
	})
	got, err := ts.client.PermissionOperationStatus(t.Context(), testPermissionOp)
	if err != nil {
		t.Fatalf("PermissionOperationStatus: %v", err)
	}
	want := Status{Code: 440, Description: "Operacja niedozwolona dla wskazanych powiązań identyfikatorów", Details: []string{"Podmiot jest właścicielem kontekstu."}}
	if !reflect.DeepEqual(got.Status, want) {
		t.Errorf("got %+v, want %+v", got.Status, want)
	}
	if _, err := ts.client.PermissionOperationStatus(t.Context(), testSessionRef); !errors.Is(err, ErrGone) {
		t.Errorf("expired operation: got %v, want ErrGone", err)
	}
}

func TestQueryPersonPermissions(t *testing.T) {
	ts := newTestServer(t)
	ts.mux.HandleFunc("/v2/permissions/query/persons/grants", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testBearer(t, r, testAccessToken)
		testQuery(t, r, "pageOffset=1&pageSize=20")
		checkGoldenJSON(t, "query_person_permissions", readBody(t, r))
		serveFile(t, w, http.StatusOK, "person_permissions.json")
	})
	author := NipSubject("7762811692")
	page, err := ts.client.QueryPersonPermissions(t.Context(), PersonPermissionQuery{
		Type:            PermissionsInCurrentContext,
		Author:          &author,
		PermissionTypes: []Permission{PermissionCredentialsManage, PermissionCredentialsRead, PermissionInvoiceWrite},
		State:           PermissionActive,
	}, PageRequest{PageOffset: 1, PageSize: 20})
	if err != nil {
		t.Fatalf("QueryPersonPermissions: %v", err)
	}
	want := &PersonPermissionPage{HasMore: true, Permissions: []PersonPermission{
		{
			ID:          "0c9a72e8-f344-457f-9c16-7c640eb60242",
			Authorized:  NipSubject("7762811692"),
			Target:      &TargetIdentifier{Type: TargetNip, Value: "9786214922"},
			Author:      PeselSubject("15062788702"),
			Scope:       PermissionInvoiceWrite,
			Description: "praca dla klienta 9786214922; uprawniony NIP: 7762811692, Adam Abacki; pośrednik 3936518395",
			State:       PermissionActive,
			StartDate:   time.Date(2025, 6, 22, 10, 41, 11, 0, time.UTC),
		},
		{
			ID:          "5b0c0d8e-2f61-4d67-9d3c-6a1f1c2b3d4e",
			Authorized:  SubjectIdentifier{Type: IdentifierFingerprint, Value: "70A9A2B0C8D4E5F60718293A4B5C6D7E8F9012A3B4C5D6E7F8091A2B3C4D5E6F"},
			Author:      SubjectIdentifier{Type: IdentifierSystem},
			Scope:       PermissionCredentialsRead,
			Description: "Przeglądanie uprawnień",
			Person: &PermissionPersonDetails{DetailsType: "PersonByFingerprintWithoutIdentifier", FirstName: "Hans", LastName: "Muster",
				BirthDate: time.Date(1980, 2, 29, 0, 0, 0, 0, time.UTC), IDDocument: &IDDocument{Type: "Paszport", Number: "C01X00T47", Country: "DE"}},
			State:     PermissionActive,
			StartDate: time.Date(2025, 6, 23, 8, 0, 0, 0, time.UTC),
		},
	}}
	if !reflect.DeepEqual(page, want) {
		t.Errorf("got  %+v\nwant %+v", page, want)
	}
	if _, err := ts.client.QueryPersonPermissions(t.Context(), PersonPermissionQuery{}, PageRequest{}); err == nil {
		t.Error("query without a type: no error")
	}
	if _, err := ts.client.QueryPersonPermissions(t.Context(), PersonPermissionQuery{Type: PermissionsInCurrentContext}, PageRequest{PageSize: 101}); err == nil {
		t.Error("page size 101: no error")
	}
}

func TestQueryPersonalPermissions(t *testing.T) {
	ts := newTestServer(t)
	calls := 0
	ts.mux.HandleFunc("/v2/permissions/query/personal/grants", func(w http.ResponseWriter, r *http.Request) {
		testMethod(t, r, http.MethodPost)
		testQuery(t, r, "pageOffset=0")
		if string(readBody(t, r)) != "{}" {
			t.Error("the zero query is not sent as {}")
		}
		// A read-only query: a 503 is retried.
		if calls++; calls == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		serveFile(t, w, http.StatusOK, "personal_permissions.json")
	})
	page, err := ts.client.QueryPersonalPermissions(t.Context(), PersonalPermissionQuery{}, PageRequest{})
	if err != nil {
		t.Fatalf("QueryPersonalPermissions: %v", err)
	}
	ctx := NipContext("3568707925")
	want := &PersonalPermissionPage{Permissions: []PersonalPermission{{
		ID:          "0c9a72e8-f344-457f-9c16-7c640eb60242",
		Context:     &ctx,
		Authorized:  &SubjectIdentifier{Type: IdentifierNip, Value: "5247677742"},
		Scope:       PermissionInvoiceWrite,
		Description: "Opis uprawnienia",
		Entity:      &PermissionEntityDetails{DetailsType: "EntityByIdentifier", FullName: "Biuro Rachunkowe sp. z o.o.", Address: "ul. Prosta 1, Warszawa"},
		State:       PermissionActive,
		StartDate:   time.Date(2025, 6, 22, 10, 41, 11, 0, time.UTC),
	}}}
	if !reflect.DeepEqual(page, want) || calls != 2 {
		t.Errorf("after %d calls got %+v\nwant %+v", calls, page, want)
	}
}

func TestFingerprintSubject(t *testing.T) {
	cert, err := parseCertificatePEM(loadTestdata(t, "testcert_rsa.crt"))
	if err != nil {
		t.Fatal(err)
	}
	s := FingerprintSubject(cert)
	if s.Type != IdentifierFingerprint || !fingerprintPattern.MatchString(s.Value) || strings.ToUpper(s.Value) != s.Value {
		t.Errorf("got %+v, want 64 upper-case hex characters", s)
	}
	if err := s.check(); err != nil {
		t.Errorf("check: %v", err)
	}
}
