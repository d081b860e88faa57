package emulator_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ksef-serverless/ksef-serverless/pkg/emulator"
	"github.com/ksef-serverless/ksef-serverless/pkg/emulator/emutest"
)

const (
	otherNIP = "5265877635"
	token1   = "20251010-EC-1DCE3E3000-12ECB5B36E-45|nip-9999999999|919f0b5c4c1ad4e1bb8f1e1d4d7a0c3c2b1a09f8e7d6c5b4a39281706f5e4d3c"
)

func tokenServer(t *testing.T, cfg emulator.Config) (*emutest.Server, *kclient) {
	t.Helper()
	if cfg.Tokens == nil {
		cfg.Tokens = map[string][]string{sellerNIP: {token1}, otherNIP: {"other-token"}}
	}
	srv := emutest.NewServerAt(t, testStart, cfg)
	return srv, newClient(t, srv)
}

// TestTokenAuthOutcomes sends KSeF-token authentications that KSeF accepts (202) and then fails
// with status 450, each the way a faulty client gets it wrong.
func TestTokenAuthOutcomes(t *testing.T) {
	tests := []struct {
		name       string
		nip        string
		plaintext  func(ch challengeReply) string
		sha1       bool // encrypt with OAEP SHA-1 (the default of many libraries)
		wantCode   int
		wantDetail string
	}{
		{"valid", sellerNIP, func(ch challengeReply) string { return token1 + "|" + strconv.FormatInt(ch.TimestampMs, 10) }, false, 200, ""},
		{"OAEP with SHA-1", sellerNIP, func(ch challengeReply) string { return token1 + "|" + strconv.FormatInt(ch.TimestampMs, 10) }, true, 450, "Nieprawidłowe szyfrowanie tokena"},
		{"timestamp in seconds", sellerNIP, func(ch challengeReply) string { return token1 + "|" + strconv.FormatInt(ch.TimestampMs/1000, 10) }, false, 450, "Nieprawidłowy czas tokena"},
		{"ISO timestamp", sellerNIP, func(ch challengeReply) string { return token1 + "|" + ch.Timestamp.Format(time.RFC3339Nano) }, false, 450, "Nieprawidłowy czas tokena"},
		{"local clock", sellerNIP, func(ch challengeReply) string { return token1 + "|" + strconv.FormatInt(ch.TimestampMs+1500, 10) }, false, 450, "Nieprawidłowy czas tokena"},
		{"no timestamp", sellerNIP, func(challengeReply) string { return "just-a-token" }, false, 450, "Nieprawidłowy token"},
		{"unknown token", sellerNIP, func(ch challengeReply) string { return "not-a-token|" + strconv.FormatInt(ch.TimestampMs, 10) }, false, 450, "Nieprawidłowy token"},
		{"token of another context", otherNIP, func(ch challengeReply) string { return token1 + "|" + strconv.FormatInt(ch.TimestampMs, 10) }, false, 450, "Token nie może być użyty w kontekście " + otherNIP},
		{"not UTF-8", sellerNIP, func(challengeReply) string { return "\xff\xfe|1" }, false, 450, "Nieprawidłowe kodowanie tokena"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, c := tokenServer(t, emulator.Config{})
			ch := c.challenge()
			pub, keyID := c.mfKey("KsefTokenEncryption")
			msg := []byte(tt.plaintext(ch))
			var enc []byte
			if tt.sha1 {
				var err error
				if enc, err = rsa.EncryptOAEP(sha1.New(), rand.Reader, pub, msg, nil); err != nil {
					t.Fatal(err)
				}
			} else {
				enc = oaepSHA256(t, pub, msg)
			}
			r := c.do("POST", "/auth/ksef-token", "", ksefTokenReq{
				Challenge: ch.Challenge, ContextIdentifier: map[string]any{"type": "Nip", "value": tt.nip},
				EncryptedToken: enc, PublicKeyID: keyID,
			})
			c.expect(r, 202)
			var ai authInit
			r.decode(t, &ai)
			if st := c.authStatus(ai); st.Status.Code != 100 {
				t.Fatalf("status before AuthDelay: %d, want 100", st.Status.Code)
			}
			c.srv.Clock.Advance(emulator.DefaultAuthDelay)
			st := c.authStatus(ai)
			if st.Status.Code != tt.wantCode || (tt.wantDetail != "" && !contains(st.Status.Details, tt.wantDetail)) {
				t.Fatalf("status %+v, want %d with detail %q", st.Status, tt.wantCode, tt.wantDetail)
			}
			if st.AuthenticationMethod != "Token" {
				t.Errorf("authenticationMethod %q, want Token", st.AuthenticationMethod)
			}
			redeem := c.do("POST", "/auth/token/redeem", ai.AuthenticationToken.Token, nil)
			if tt.wantCode == 200 {
				c.expect(redeem, 200)
				return
			}
			c.expect(redeem, 400)
			if code := redeem.exceptionCode(t); code != 21301 {
				t.Errorf("redeem after a failed authentication: code %d, want 21301", code)
			}
		})
	}
}

func TestChallenge(t *testing.T) {
	_, c := tokenServer(t, emulator.Config{})
	ch := c.challenge()
	if len(ch.Challenge) != 36 || ch.Challenge[9:11] != "CR" {
		t.Errorf("challenge %q is not a 36-character CR reference", ch.Challenge)
	}
	if want := fmt.Sprintf("%02X", crc8(ch.Challenge[:33])); ch.Challenge[34:] != want {
		t.Errorf("challenge %q: checksum %s, want %s", ch.Challenge, ch.Challenge[34:], want)
	}
	if ch.Timestamp.UnixMilli() != ch.TimestampMs || !ch.Timestamp.Equal(testStart) {
		t.Errorf("timestamp %v / timestampMs %d disagree or are not the emulator time %v", ch.Timestamp, ch.TimestampMs, testStart)
	}
	if ch.ClientIP != "127.0.0.1" {
		t.Errorf("clientIp %q, want 127.0.0.1", ch.ClientIP)
	}
}

// TestChallengeRejected covers the synchronous 21111: unknown, expired (10 minutes) and reused
// challenges.
func TestChallengeRejected(t *testing.T) {
	srv, c := tokenServer(t, emulator.Config{})
	pub, keyID := c.mfKey("KsefTokenEncryption")
	post := func(challenge string, ms int64) reply {
		return c.do("POST", "/auth/ksef-token", "", ksefTokenReq{
			Challenge: challenge, ContextIdentifier: map[string]any{"type": "Nip", "value": sellerNIP},
			EncryptedToken: oaepSHA256(t, pub, []byte(token1+"|"+strconv.FormatInt(ms, 10))), PublicKeyID: keyID,
		})
	}
	expect21111 := func(name string, r reply) {
		t.Helper()
		c.expect(r, 400)
		if code := r.exceptionCode(t); code != 21111 {
			t.Errorf("%s: code %d, want 21111", name, code)
		}
	}
	expect21111("unknown", post("20250625-CR-2FDC223000-C2BFC98A9C-4E", 1))

	ch := c.challenge()
	srv.Clock.Advance(emulator.DefaultChallengeTTL)
	expect21111("expired", post(ch.Challenge, ch.TimestampMs))

	ch = c.challenge()
	srv.Clock.Advance(emulator.DefaultChallengeTTL - time.Millisecond)
	c.expect(post(ch.Challenge, ch.TimestampMs), 202)
	expect21111("reused", post(ch.Challenge, ch.TimestampMs))
}

// TestKeyRotation: a planned rotation lists both keys and accepts both; an emergency rotation
// drops the old key, whose publicKeyId then answers 21470.
func TestKeyRotation(t *testing.T) {
	srv, c := tokenServer(t, emulator.Config{})
	if keys := c.publicKeys(); len(keys) != 2 {
		t.Fatalf("%d keys listed, want one per usage", len(keys))
	}
	oldPub, oldID := c.mfKey("KsefTokenEncryption")
	oldSymPub, oldSymID := c.mfKey("SymmetricKeyEncryption")
	for _, k := range c.publicKeys() {
		checkPublicKeyCertificate(t, k)
	}
	if err := srv.Emulator.RotateKeys(false); err != nil {
		t.Fatal(err)
	}
	keys := c.publicKeys()
	if len(keys) != 4 {
		t.Fatalf("after a planned rotation %d keys listed, want old and new for each usage", len(keys))
	}
	newPub, newID := c.mfKey("KsefTokenEncryption")
	if newID == oldID {
		t.Fatal("rotation kept the key id")
	}
	login := func(pub *rsa.PublicKey, keyID string) reply {
		ch := c.challenge()
		return c.do("POST", "/auth/ksef-token", "", ksefTokenReq{
			Challenge: ch.Challenge, ContextIdentifier: map[string]any{"type": "Nip", "value": sellerNIP},
			EncryptedToken: oaepSHA256(t, pub, []byte(token1+"|"+strconv.FormatInt(ch.TimestampMs, 10))), PublicKeyID: keyID,
		})
	}
	c.expect(login(oldPub, oldID), 202)
	c.expect(login(newPub, newID), 202)

	// The overlap ends: the old keys go.
	srv.Clock.Advance(emulator.DefaultKeyOverlap)
	if keys := c.publicKeys(); len(keys) != 2 {
		t.Fatalf("after the overlap %d keys listed, want 2", len(keys))
	}
	r := login(oldPub, oldID)
	if c.expect(r, 400); r.exceptionCode(t) != 21470 {
		t.Fatalf("key retired after the overlap: code %d, want 21470", r.exceptionCode(t))
	}

	if err := srv.Emulator.RotateKeys(true); err != nil {
		t.Fatal(err)
	}
	if keys := c.publicKeys(); len(keys) != 2 {
		t.Fatalf("after an emergency rotation %d keys listed, want 2", len(keys))
	}
	r = login(newPub, newID)
	c.expect(r, 400)
	if code := r.exceptionCode(t); code != 21470 {
		t.Fatalf("retired key: code %d, want 21470", code)
	}
	if d := r.exceptionDetails(t); !contains(d, newID) {
		t.Errorf("details %v do not name the key", d)
	}
	// A session opened with a retired symmetric key gets 21470 too; the current key works.
	access := c.loginToken(sellerNIP, token1).AccessToken.Token
	key, iv := make([]byte, 32), make([]byte, 16)
	r = c.do("POST", "/sessions/online", access, map[string]any{
		"formCode":   formCodeFA3(),
		"encryption": map[string]any{"encryptedSymmetricKey": oaepSHA256(t, oldSymPub, key), "initializationVector": iv, "publicKeyId": oldSymID},
	})
	if c.expect(r, 400); r.exceptionCode(t) != 21470 {
		t.Errorf("session with a retired key: code %d, want 21470", r.exceptionCode(t))
	}
	c.expect(c.openSessionReply(access, key, iv), 201)
}

func checkPublicKeyCertificate(t *testing.T, k publicKey) {
	t.Helper()
	cert, err := x509.ParseCertificate(k.Certificate)
	if err != nil {
		t.Fatalf("certificate is not Base64 DER: %v", err)
	}
	if got := b64sha256(cert.Raw); got != k.CertificateID {
		t.Errorf("certificateId %s, want SHA-256 of the DER certificate %s", k.CertificateID, got)
	}
	if got := b64sha256(cert.RawSubjectPublicKeyInfo); got != k.PublicKeyID {
		t.Errorf("publicKeyId %s, want SHA-256 of the SubjectPublicKeyInfo %s", k.PublicKeyID, got)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok || pub.N.BitLen() < 2048 {
		t.Errorf("key is not RSA 2048+")
	}
	if !cert.NotBefore.Equal(k.ValidFrom) || !cert.NotAfter.Equal(k.ValidTo) {
		t.Errorf("validFrom/validTo %v/%v differ from the certificate %v/%v", k.ValidFrom, k.ValidTo, cert.NotBefore, cert.NotAfter)
	}
}

func TestBearerRequired(t *testing.T) {
	_, c := tokenServer(t, emulator.Config{})
	tests := []struct{ method, path string }{
		{"GET", "/sessions?sessionType=Online"},
		{"POST", "/sessions/online"},
		{"GET", "/auth/20250514-AU-2DFC46C000-3AC6D5877F-D4"},
		{"POST", "/auth/token/redeem"},
		{"POST", "/auth/token/refresh"},
		{"GET", "/rate-limits"},
	}
	for _, tt := range tests {
		r := c.do(tt.method, tt.path, "", nil, invalid()...)
		checkUnauthorized(t, r, tt.method+" "+tt.path)
	}
	// A forged token is no better.
	r := c.do("GET", "/rate-limits", "eyJhbGciOiJIUzI1NiJ9.eyJ0eXAiOiJBY2Nlc3NUb2tlbiJ9.c2ln", nil)
	checkUnauthorized(t, r, "forged token")
}

func checkUnauthorized(t *testing.T, r reply, what string) {
	t.Helper()
	if r.status != http.StatusUnauthorized {
		t.Errorf("%s: HTTP %d, want 401", what, r.status)
		return
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
		t.Errorf("%s: content type %q, want problem+json", what, ct)
	}
	var p struct {
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != 401 || p.Title != "Unauthorized" || p.Detail == "" {
		t.Errorf("%s: body %s is not a 401 problem", what, r.body)
	}
}

// TestTokenLifecycle: redeem once, access token expiry (401), refresh with the refresh token only,
// revocation of the authentication session.
func TestTokenLifecycle(t *testing.T) {
	srv, c := tokenServer(t, emulator.Config{})
	r := c.startTokenAuth(sellerNIP, token1)
	c.expect(r, 202)
	var ai authInit
	r.decode(t, &ai)

	// Not ready yet: 21301.
	early := c.do("POST", "/auth/token/redeem", ai.AuthenticationToken.Token, nil)
	if c.expect(early, 400); early.exceptionCode(t) != 21301 {
		t.Errorf("redeem before 200: code %d, want 21301", early.exceptionCode(t))
	}
	tk := c.finishAuth(ai)
	if !tk.AccessToken.ValidUntil.Equal(srv.Clock.Now().Add(emulator.DefaultAccessTokenTTL)) ||
		!tk.RefreshToken.ValidUntil.Equal(srv.Clock.Now().Add(emulator.DefaultRefreshTokenTTL)) {
		t.Errorf("validUntil %v / %v, want now+15m / now+7d", tk.AccessToken.ValidUntil, tk.RefreshToken.ValidUntil)
	}
	again := c.do("POST", "/auth/token/redeem", ai.AuthenticationToken.Token, nil)
	if c.expect(again, 400); again.exceptionCode(t) != 21301 {
		t.Errorf("second redeem: code %d, want 21301", again.exceptionCode(t))
	}
	if st := c.authStatus(ai); st.IsTokenRedeemed == nil || !*st.IsTokenRedeemed {
		t.Errorf("isTokenRedeemed not set after redeem")
	}

	// Wrong token types.
	checkUnauthorized(t, c.do("POST", "/auth/token/refresh", tk.AccessToken.Token, nil), "refresh with the access token")
	checkUnauthorized(t, c.do("GET", "/rate-limits", tk.RefreshToken.Token, nil), "business call with the refresh token")
	checkUnauthorized(t, c.do("GET", "/rate-limits", ai.AuthenticationToken.Token, nil), "business call with the authentication token")

	c.expect(c.do("GET", "/rate-limits", tk.AccessToken.Token, nil), 200)
	srv.Clock.Advance(emulator.DefaultAccessTokenTTL)
	checkUnauthorized(t, c.do("GET", "/rate-limits", tk.AccessToken.Token, nil), "expired access token")

	r = c.do("POST", "/auth/token/refresh", tk.RefreshToken.Token, nil)
	c.expect(r, 200)
	var refreshed tokens
	r.decode(t, &refreshed)
	c.expect(c.do("GET", "/rate-limits", refreshed.AccessToken.Token, nil), 200)

	// The authentication session is listed, then revoked: refresh fails, the access token lives on.
	r = c.do("GET", "/auth/sessions", refreshed.AccessToken.Token, nil)
	c.expect(r, 200)
	var list struct {
		Items []struct {
			ReferenceNumber string `json:"referenceNumber"`
			IsCurrent       bool   `json:"isCurrent"`
		} `json:"items"`
	}
	r.decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ReferenceNumber != ai.ReferenceNumber || !list.Items[0].IsCurrent {
		t.Errorf("auth sessions %+v, want the current one", list.Items)
	}
	c.expect(c.do("DELETE", "/auth/sessions/current", tk.RefreshToken.Token, nil), 204)
	r = c.do("POST", "/auth/token/refresh", tk.RefreshToken.Token, nil)
	if c.expect(r, 400); r.exceptionCode(t) != 21301 {
		t.Errorf("refresh after revocation: code %d, want 21301", r.exceptionCode(t))
	}
	if st := c.authStatus(ai); st.Status.Code != 425 {
		t.Errorf("revoked authentication: status %d, want 425", st.Status.Code)
	}
	c.expect(c.do("GET", "/rate-limits", refreshed.AccessToken.Token, nil), 200)
}

func TestAuthorizationPolicy(t *testing.T) {
	_, c := tokenServer(t, emulator.Config{})
	login := func(allowed string) tokens {
		ch := c.challenge()
		pub, keyID := c.mfKey("KsefTokenEncryption")
		r := c.do("POST", "/auth/ksef-token", "", ksefTokenReq{
			Challenge: ch.Challenge, ContextIdentifier: map[string]any{"type": "Nip", "value": sellerNIP},
			EncryptedToken: oaepSHA256(t, pub, []byte(token1+"|"+strconv.FormatInt(ch.TimestampMs, 10))), PublicKeyID: keyID,
			AuthPolicy: map[string]any{"allowedIps": map[string]any{"ip4Masks": []string{allowed}}},
		})
		c.expect(r, 202)
		var ai authInit
		r.decode(t, &ai)
		return c.finishAuth(ai)
	}
	c.expect(c.do("GET", "/rate-limits", login("127.0.0.0/8").AccessToken.Token, nil), 200)
	r := c.do("GET", "/rate-limits", login("10.0.0.0/8").AccessToken.Token, nil)
	c.expect(r, 403)
	var p struct {
		ReasonCode string         `json:"reasonCode"`
		Security   map[string]any `json:"security"`
	}
	r.decode(t, &p)
	if p.ReasonCode != "ip-not-allowed" || p.Security["clientIp"] != "127.0.0.1" {
		t.Errorf("403 body %s, want reasonCode ip-not-allowed with the client IP", r.body)
	}
}

// TestErrorFormats: the default exception body, problem details on request and by default.
func TestErrorFormats(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     emulator.Config
		headers []string
		problem bool
	}{
		{"default", emulator.Config{}, nil, false},
		{"requested", emulator.Config{}, []string{"X-Error-Format", "problem-details"}, true},
		{"configured", emulator.Config{ProblemDetailsByDefault: true}, nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, c := tokenServer(t, tt.cfg)
			r := c.do("POST", "/auth/ksef-token", "", ksefTokenReq{
				Challenge: "20250625-CR-2FDC223000-C2BFC98A9C-4E", ContextIdentifier: map[string]any{"type": "Nip", "value": sellerNIP},
				EncryptedToken: []byte("x"),
			}, tt.headers...)
			c.expect(r, 400)
			ct := r.header.Get("Content-Type")
			var body map[string]json.RawMessage
			r.decode(t, &body)
			if tt.problem {
				if !strings.HasPrefix(ct, "application/problem+json") || body["errors"] == nil || body["traceId"] == nil {
					t.Errorf("content type %q, body %s: want problem details", ct, r.body)
				}
			} else if !strings.HasPrefix(ct, "application/json") || body["exception"] == nil {
				t.Errorf("content type %q, body %s: want the exception body", ct, r.body)
			}
			if code := r.exceptionCode(t); code != 21111 {
				t.Errorf("code %d, want 21111", code)
			}
		})
	}
}

// TestAuthSessionsRevokeAndRetention: DELETE /auth/sessions/{ref} revokes another
// authentication of the context; an authentication status is gone (410) after 7 days.
func TestAuthSessionsRevokeAndRetention(t *testing.T) {
	srv, c := tokenServer(t, emulator.Config{AuthTokenTTL: 8 * 24 * time.Hour, AccessTokenTTL: 8 * 24 * time.Hour})
	r := c.startTokenAuth(sellerNIP, token1)
	c.expect(r, 202)
	var first authInit
	r.decode(t, &first)
	firstTokens := c.finishAuth(first)
	second := c.loginToken(sellerNIP, token1)

	c.expect(c.do("DELETE", "/auth/sessions/"+first.ReferenceNumber, second.AccessToken.Token, nil), 204)
	r = c.do("POST", "/auth/token/refresh", firstTokens.RefreshToken.Token, nil)
	if c.expect(r, 400); r.exceptionCode(t) != 21301 {
		t.Errorf("refresh of a revoked authentication: code %d, want 21301", r.exceptionCode(t))
	}
	r = c.do("DELETE", "/auth/sessions/20250514-AU-2DFC46C000-3AC6D5877F-D4", second.AccessToken.Token, nil)
	if c.expect(r, 400); r.exceptionCode(t) != 21304 {
		t.Errorf("revoking an unknown authentication: code %d, want 21304", r.exceptionCode(t))
	}

	srv.Clock.Advance(7 * 24 * time.Hour)
	r = c.do("GET", "/auth/"+first.ReferenceNumber, first.AuthenticationToken.Token, nil)
	c.expect(r, 410)
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/problem+json") {
		t.Errorf("410 content type %q", r.header.Get("Content-Type"))
	}
}

func TestSystemWarningEcho(t *testing.T) {
	_, c := tokenServer(t, emulator.Config{})
	r := c.do("POST", "/auth/challenge", "", nil, "X-Test-System-Warning", "[W1]: Przerwa techniczna o 16:00 | [W2]: Zażółć")
	c.expect(r, 200)
	if got, want := r.header.Get("X-System-Warning"), "[W1]: Przerwa techniczna o 16:00 | [W2]: Zazolc"; got != want {
		t.Errorf("X-System-Warning %q, want %q", got, want)
	}
}

// TestTokenEncryptedWithWrongKey: the token encrypted with the SymmetricKeyEncryption key, named
// by its publicKeyId (21470: not a token key) or not named (status 450).
func TestTokenEncryptedWithWrongKey(t *testing.T) {
	srv, c := tokenServer(t, emulator.Config{})
	symPub, symID := c.mfKey("SymmetricKeyEncryption")
	post := func(keyID string) reply {
		ch := c.challenge()
		return c.do("POST", "/auth/ksef-token", "", ksefTokenReq{
			Challenge: ch.Challenge, ContextIdentifier: map[string]any{"type": "Nip", "value": sellerNIP},
			EncryptedToken: oaepSHA256(t, symPub, []byte(token1+"|"+strconv.FormatInt(ch.TimestampMs, 10))), PublicKeyID: keyID,
		})
	}
	r := post(symID)
	if c.expect(r, 400); r.exceptionCode(t) != 21470 {
		t.Errorf("symmetric key id for a token: code %d, want 21470", r.exceptionCode(t))
	}
	r = post("")
	c.expect(r, 202)
	var ai authInit
	r.decode(t, &ai)
	srv.Clock.Advance(emulator.DefaultAuthDelay)
	if st := c.authStatus(ai); st.Status.Code != 450 || !contains(st.Status.Details, "Nieprawidłowe szyfrowanie tokena") {
		t.Errorf("token encrypted with the wrong key: %+v, want 450", st.Status)
	}
}
