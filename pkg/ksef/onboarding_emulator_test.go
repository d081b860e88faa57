package ksef_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
	"github.com/ksef-serverless/ksef-serverless/pkg/ksef"
)

// Onboarding through the client against the emulator, which checks every request and response
// against the official API description: KSeF tokens, permissions and KSeF certificates.

const (
	onbCompanyNIP = "5265877635"
	onbPESEL      = "90010112345"
)

var onbStart = time.Date(2026, 10, 5, 9, 0, 0, 0, time.UTC)

// onbSession is a logged-in client of the emulator.
type onbSession struct {
	*ksef.Client
	tokens *ksef.AuthTokens
}

func onbClient(tb testing.TB, srv *emutest.Server, opts ...ksef.Option) *ksef.Client {
	tb.Helper()
	c, err := ksef.NewClient(append([]ksef.Option{
		ksef.WithBaseURL(srv.URL), ksef.WithHTTPClient(srv.Client()), ksef.WithClock(srv.Emulator.Now),
	}, opts...)...)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// onbFinish waits (on the fake clock) for a login to end and returns its status and, when it
// succeeded, a client holding its access token.
func onbFinish(tb testing.TB, srv *emutest.Server, anon *ksef.Client, init *ksef.AuthInit) (*ksef.AuthStatus, *onbSession) {
	tb.Helper()
	ctx := tb.Context()
	srv.Clock.Advance(emulator.DefaultAuthDelay)
	st, err := anon.AuthStatus(ctx, init.ReferenceNumber, init.AuthenticationToken.Token)
	if err != nil {
		tb.Fatalf("AuthStatus: %v", err)
	}
	if st.Status.Code != 200 {
		return st, nil
	}
	tokens, err := anon.RedeemTokens(ctx, init.AuthenticationToken.Token)
	if err != nil {
		tb.Fatalf("RedeemTokens: %v", err)
	}
	return st, &onbSession{onbClient(tb, srv, ksef.WithAccessToken(ksef.StaticAccessToken(tokens.AccessToken.Token))), tokens}
}

// onbCertLogin logs in with a certificate (XAdES, certificateSubject).
func onbCertLogin(tb testing.TB, srv *emutest.Server, nip string, key crypto.Signer, cert *x509.Certificate) (*ksef.AuthStatus, *onbSession) {
	tb.Helper()
	anon := onbClient(tb, srv)
	init, err := anon.AuthenticateWithCertificate(tb.Context(), ksef.NipContext(nip), key, cert)
	if err != nil {
		tb.Fatalf("AuthenticateWithCertificate: %v", err)
	}
	return onbFinish(tb, srv, anon, init)
}

// onbTokenLogin logs in with a KSeF token.
func onbTokenLogin(tb testing.TB, srv *emutest.Server, nip string, token ksef.Secret) (*ksef.AuthStatus, *onbSession) {
	tb.Helper()
	ctx := tb.Context()
	anon := onbClient(tb, srv)
	ch, err := anon.Challenge(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	init, err := anon.AuthenticateWithKSeFToken(ctx, ksef.KSeFTokenAuth{Challenge: ch, Context: ksef.NipContext(nip), Token: token})
	if err != nil {
		tb.Fatalf("AuthenticateWithKSeFToken: %v", err)
	}
	return onbFinish(tb, srv, anon, init)
}

// onbMust takes the result of a login that must succeed: onbMust(t)(onbCertLogin(...)).
func onbMust(tb testing.TB) func(*ksef.AuthStatus, *onbSession) *onbSession {
	return func(st *ksef.AuthStatus, s *onbSession) *onbSession {
		tb.Helper()
		if s == nil {
			tb.Fatalf("login failed: %+v", st.Status)
		}
		return s
	}
}

func onbTestCert(tb testing.TB, srv *emutest.Server, opts ksef.TestCertificateOptions) (*x509.Certificate, crypto.Signer) {
	tb.Helper()
	opts.KeyType, opts.Now = ksef.KeyECDSA, srv.Emulator.Now()
	cert, key, err := ksef.NewTestCertificate(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return cert, key
}

func TestKSeFTokensWithEmulator(t *testing.T) {
	ctx := t.Context()
	srv := emutest.NewServerAt(t, onbStart, emulator.Config{})
	sealCert, sealKey := onbTestCert(t, srv, ksef.TestCertificateOptions{Seal: true, NIP: onbCompanyNIP})
	owner := onbMust(t)(onbCertLogin(t, srv, onbCompanyNIP, sealKey, sealCert))

	gen, err := owner.GenerateToken(ctx, ksef.TokenRequest{Permissions: []ksef.Permission{ksef.PermissionInvoiceRead}, Description: "Pobieranie faktur"})
	if err != nil {
		t.Fatalf("GenerateToken: %v", err)
	}
	info, err := owner.TokenStatus(ctx, gen.ReferenceNumber)
	if err != nil || info.Status != ksef.TokenPending || info.Author != ksef.NipSubject(onbCompanyNIP) || info.Context != ksef.NipContext(onbCompanyNIP) {
		t.Fatalf("new token: %+v, %v", info, err)
	}
	srv.Clock.Advance(emulator.TokenActivationDelay)
	reader := onbMust(t)(onbTokenLogin(t, srv, onbCompanyNIP, gen.Token))

	// The token holds InvoiceRead only: opening an online session is forbidden.
	_, err = reader.OpenOnlineSession(ctx, ksef.FormCodeFA3())
	var apiErr *ksef.APIError
	if !errors.Is(err, ksef.ErrForbidden) || !errors.As(err, &apiErr) || apiErr.ReasonCode != "missing-permissions" {
		t.Fatalf("OpenOnlineSession with an InvoiceRead token: %v, want 403 missing-permissions", err)
	}
	if got := apiErr.Security["presentPermissions"]; !slices.Equal(toStrings(got), []string{"InvoiceRead"}) {
		t.Errorf("presentPermissions %v", got)
	}
	// Nor may a token login generate tokens.
	if _, err := reader.GenerateToken(ctx, ksef.TokenRequest{Permissions: []ksef.Permission{ksef.PermissionInvoiceRead}, Description: "Kolejny token"}); !errors.As(err, &apiErr) || apiErr.ReasonCode != "auth-method-not-allowed" {
		t.Errorf("GenerateToken after a token login: %v, want 403 auth-method-not-allowed", err)
	}
	// It sees only itself.
	page, err := reader.Tokens(ctx, nil)
	if err != nil || len(page.Tokens) != 1 || page.Tokens[0].ReferenceNumber != gen.ReferenceNumber || page.Tokens[0].LastUseDate.IsZero() {
		t.Fatalf("Tokens after a token login: %+v, %v", page, err)
	}

	if err := owner.RevokeToken(ctx, gen.ReferenceNumber); err != nil {
		t.Fatalf("RevokeToken: %v", err)
	}
	active, err := owner.Tokens(ctx, &ksef.TokenListOptions{Statuses: []ksef.TokenState{ksef.TokenActive}})
	if err != nil || len(active.Tokens) != 0 {
		t.Errorf("active tokens after the revocation: %+v, %v", active, err)
	}
	if st, s := onbTokenLogin(t, srv, onbCompanyNIP, gen.Token); s != nil || st.Status.Code != 450 || !slices.Equal(st.Status.Details, []string{"Token unieważniony"}) {
		t.Errorf("login with the revoked token: %+v", st.Status)
	}
}

func TestPermissionsWithEmulator(t *testing.T) {
	ctx := t.Context()
	srv := emutest.NewServerAt(t, onbStart, emulator.Config{})
	sealCert, sealKey := onbTestCert(t, srv, ksef.TestCertificateOptions{Seal: true, NIP: onbCompanyNIP})
	owner := onbMust(t)(onbCertLogin(t, srv, onbCompanyNIP, sealKey, sealCert))
	personCert, personKey := onbTestCert(t, srv, ksef.TestCertificateOptions{PESEL: onbPESEL, GivenName: "Anna", Surname: "Nowak"})
	if st, s := onbCertLogin(t, srv, onbCompanyNIP, personKey, personCert); s != nil || st.Status.Code != 415 {
		t.Fatalf("person before the grant: %+v, want 415", st.Status)
	}

	op, err := owner.GrantPersonPermissions(ctx, ksef.PersonGrant{
		Subject:        ksef.PeselSubject(onbPESEL),
		Permissions:    []ksef.Permission{ksef.PermissionInvoiceWrite, ksef.PermissionCredentialsRead},
		Description:    "Księgowa",
		SubjectDetails: ksef.PersonDetails{FirstName: "Anna", LastName: "Nowak"},
	})
	if err != nil {
		t.Fatalf("GrantPersonPermissions: %v", err)
	}
	onbWaitOperation(t, srv, owner.Client, op, 200)

	person := onbMust(t)(onbCertLogin(t, srv, onbCompanyNIP, personKey, personCert))
	if _, err := person.OpenOnlineSession(ctx, ksef.FormCodeFA3()); err != nil {
		t.Fatalf("OpenOnlineSession as the granted person: %v", err)
	}
	mine, err := person.QueryPersonalPermissions(ctx, ksef.PersonalPermissionQuery{}, ksef.PageRequest{})
	if err != nil || len(mine.Permissions) != 2 || mine.HasMore {
		t.Fatalf("QueryPersonalPermissions: %+v, %v", mine, err)
	}
	all, err := person.QueryPersonPermissions(ctx, ksef.PersonPermissionQuery{
		Type: ksef.PermissionsInCurrentContext, PermissionTypes: []ksef.Permission{ksef.PermissionInvoiceWrite},
	}, ksef.PageRequest{PageSize: 10})
	if err != nil || len(all.Permissions) != 1 {
		t.Fatalf("QueryPersonPermissions: %+v, %v", all, err)
	}
	p := all.Permissions[0]
	if p.Authorized != ksef.PeselSubject(onbPESEL) || p.Author != ksef.NipSubject(onbCompanyNIP) || p.Person == nil ||
		p.Person.FirstName != "Anna" || p.State != ksef.PermissionActive || p.StartDate.IsZero() {
		t.Errorf("permission %+v", p)
	}
	// Without CredentialsManage the person may not grant.
	if _, err := person.GrantEntityPermissions(ctx, ksef.EntityGrant{NIP: "7762811692", FullName: "Biuro Rachunkowe",
		Permissions: []ksef.EntityPermission{{Type: ksef.PermissionInvoiceRead}}, Description: "Biuro rachunkowe"}); !errors.Is(err, ksef.ErrForbidden) {
		t.Errorf("GrantEntityPermissions without CredentialsManage: %v, want 403", err)
	}

	// Granting to the context's owner is refused asynchronously (440).
	self, err := owner.GrantPersonPermissions(ctx, ksef.PersonGrant{Subject: ksef.NipSubject(onbCompanyNIP),
		Permissions: []ksef.Permission{ksef.PermissionInvoiceRead}, Description: "Właściciel", SubjectDetails: ksef.PersonDetails{FirstName: "Jan", LastName: "Nowak"}})
	if err != nil {
		t.Fatal(err)
	}
	onbWaitOperation(t, srv, owner.Client, self, 440)

	revoke, err := owner.RevokePermission(ctx, p.ID)
	if err != nil {
		t.Fatalf("RevokePermission: %v", err)
	}
	onbWaitOperation(t, srv, owner.Client, revoke, 200)
	left, err := owner.QueryPersonPermissions(ctx, ksef.PersonPermissionQuery{Type: ksef.PermissionsGrantedInCurrentContext}, ksef.PageRequest{})
	if err != nil || len(left.Permissions) != 1 || left.Permissions[0].Scope != ksef.PermissionCredentialsRead {
		t.Errorf("after revoking InvoiceWrite: %+v, %v", left, err)
	}
}

// onbWaitOperation checks that a permission operation runs (100), then ends with want.
func onbWaitOperation(tb testing.TB, srv *emutest.Server, c *ksef.Client, op *ksef.OperationRef, want int) {
	tb.Helper()
	st, err := c.PermissionOperationStatus(tb.Context(), op.ReferenceNumber)
	if err != nil || st.Status.Code != 100 {
		tb.Fatalf("operation %s: %+v, %v; want 100", op.ReferenceNumber, st, err)
	}
	srv.Clock.Advance(emulator.PermissionOperationDelay)
	if st, err = c.PermissionOperationStatus(tb.Context(), op.ReferenceNumber); err != nil || st.Status.Code != want {
		tb.Fatalf("operation %s: %+v, %v; want %d", op.ReferenceNumber, st, err, want)
	}
}

func TestKSeFCertificateWithEmulator(t *testing.T) {
	ctx := t.Context()
	srv := emutest.NewServerAt(t, onbStart, emulator.Config{})
	personCert, personKey := onbTestCert(t, srv, ksef.TestCertificateOptions{NIP: onbCompanyNIP, GivenName: "Łukasz", Surname: "Żółć"})
	s := onbMust(t)(onbCertLogin(t, srv, onbCompanyNIP, personKey, personCert))

	limits, err := s.CertificateLimits(ctx)
	if err != nil || !limits.CanRequest || limits.Certificate.Limit != 100 || limits.Enrollment.Remaining != 300 {
		t.Fatalf("CertificateLimits: %+v, %v", limits, err)
	}
	data, err := s.EnrollmentData(ctx)
	if err != nil {
		t.Fatalf("EnrollmentData: %v", err)
	}
	if data.SerialNumber != "TINPL-"+onbCompanyNIP || data.GivenName != "Łukasz" || data.Surname != "Żółć" || data.CommonName != "Łukasz Żółć" {
		t.Fatalf("enrollment data %+v", data)
	}
	// One certificate per kind of key KSeF accepts.
	for _, certType := range []ksef.CertificateType{ksef.CertificateAuthentication, ksef.CertificateOffline} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		csr, err := ksef.NewCSR(data, key)
		if err != nil {
			t.Fatalf("NewCSR: %v", err)
		}
		op, err := s.Enroll(ctx, ksef.EnrollmentRequest{CertificateName: "Certyfikat " + string(certType), CertificateType: certType, CSR: csr})
		if err != nil {
			t.Fatalf("Enroll: %v", err)
		}
		if st, err := s.EnrollmentStatus(ctx, op.ReferenceNumber); err != nil || st.Status.Code != 100 {
			t.Fatalf("fresh enrollment: %+v, %v", st, err)
		}
		srv.Clock.Advance(emulator.CertificateEnrollmentDelay)
		st, err := s.EnrollmentStatus(ctx, op.ReferenceNumber)
		if err != nil || st.Status.Code != 200 || len(st.CertificateSerialNumber) != 16 {
			t.Fatalf("enrollment: %+v, %v", st, err)
		}
		got, err := s.RetrieveCertificates(ctx, []string{st.CertificateSerialNumber})
		if err != nil || len(got) != 1 || got[0].Type != certType {
			t.Fatalf("RetrieveCertificates: %+v, %v", got, err)
		}
		cert, err := got[0].X509()
		if err != nil {
			t.Fatal(err)
		}
		wantUsage := x509.KeyUsageDigitalSignature
		if certType == ksef.CertificateOffline {
			wantUsage = x509.KeyUsageContentCommitment
		}
		if cert.KeyUsage != wantUsage || cert.Subject.SerialNumber != "TINPL-"+onbCompanyNIP {
			t.Errorf("%s certificate: key usage %v, subject %s", certType, cert.KeyUsage, cert.Subject)
		}
		status, login := onbCertLogin(t, srv, onbCompanyNIP, key, cert)
		switch {
		case certType == ksef.CertificateAuthentication && (login == nil || status.Method != "InternalCertificate"):
			t.Fatalf("login with the Authentication certificate: %+v", status)
		case certType == ksef.CertificateOffline && status.Status.Code != 460:
			t.Fatalf("login with the Offline certificate: %+v, want 460", status.Status)
		}
		if certType != ksef.CertificateAuthentication {
			continue
		}
		if err := s.RevokeCertificate(ctx, st.CertificateSerialNumber, ksef.RevocationSuperseded); err != nil {
			t.Fatalf("RevokeCertificate: %v", err)
		}
		if status, _ := onbCertLogin(t, srv, onbCompanyNIP, key, cert); status.Status.Code != 460 {
			t.Errorf("login with the revoked certificate: %+v, want 460", status.Status)
		}
		var apiErr *ksef.APIError
		if err := s.RevokeCertificate(ctx, st.CertificateSerialNumber, ""); !errors.As(err, &apiErr) || !apiErr.HasCode(25009) {
			t.Errorf("second revocation: %v, want 25009", err)
		}
	}
	page, err := s.QueryCertificates(ctx, ksef.CertificateQuery{Type: ksef.CertificateOffline}, ksef.PageRequest{})
	if err != nil || len(page.Certificates) != 1 || page.Certificates[0].Status != ksef.CertificateActive ||
		page.Certificates[0].Subject != ksef.NipSubject(onbCompanyNIP) || page.HasMore {
		t.Errorf("QueryCertificates: %+v, %v", page, err)
	}

	// A CSR naming someone else is refused with 25003.
	other := *data
	other.CommonName = "Ktoś Inny"
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ksef.NewCSR(&other, key)
	if err != nil {
		t.Fatal(err)
	}
	var apiErr *ksef.APIError
	if _, err := s.Enroll(ctx, ksef.EnrollmentRequest{CertificateName: "Cudzy certyfikat", CertificateType: ksef.CertificateAuthentication, CSR: csr}); !errors.As(err, &apiErr) || !apiErr.HasCode(25003) {
		t.Errorf("Enroll with another subject: %v, want 25003", err)
	}
}

// A certificate signing request for the enrollment data of a person: exactly the attributes
// KSeF gave, signed with an ECDSA P-256 key.
func ExampleNewCSR() {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	data := &ksef.EnrollmentData{ // as returned by Client.EnrollmentData
		CommonName: "Anna Nowak", CountryName: "PL", GivenName: "Anna", Surname: "Nowak",
		SerialNumber: "PNOPL-90010112345", UniqueIdentifier: "9b6d3a4e-52c1-4f0a-8e2b-7d5c1a9f3e60",
	}
	der, err := ksef.NewCSR(data, key)
	if err != nil {
		panic(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		panic(err)
	}
	fmt.Println(csr.SignatureAlgorithm, csr.CheckSignature() == nil)
	for _, a := range csr.Subject.Names {
		fmt.Println(a.Type, a.Value)
	}
	// Output:
	// ECDSA-SHA256 true
	// 2.5.4.3 Anna Nowak
	// 2.5.4.4 Nowak
	// 2.5.4.42 Anna
	// 2.5.4.6 PL
	// 2.5.4.5 PNOPL-90010112345
	// 2.5.4.45 9b6d3a4e-52c1-4f0a-8e2b-7d5c1a9f3e60
}

func toStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}
