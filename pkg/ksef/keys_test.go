package ksef

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPublicKeyCertificates(t *testing.T) {
	ts := newTestServer(t)
	certs, err := ts.client.PublicKeyCertificates(t.Context())
	if err != nil {
		t.Fatalf("PublicKeyCertificates: %v", err)
	}
	if len(certs) != 2 {
		t.Fatalf("got %d certificates, want 2", len(certs))
	}
	tok := certs[0]
	if string(tok.Certificate) != string(ts.tokenKey.cert.Raw) {
		t.Error("certificate is not the DER of the listed certificate")
	}
	if tok.PublicKeyID != ts.tokenKey.id || !tok.HasUsage(KeyUsageKSeFToken) || tok.HasUsage(KeyUsageSymmetricKey) {
		t.Errorf("certificate 0: got id %s usage %v", tok.PublicKeyID, tok.Usage)
	}
	if want := testNow.AddDate(-1, 0, 0); !tok.ValidFrom.Equal(want) || !tok.ValidTo.Equal(testNow.AddDate(2, 0, 0)) {
		t.Errorf("validity: got %s - %s", tok.ValidFrom, tok.ValidTo)
	}
	pub, err := tok.PublicKey()
	if err != nil || !pub.Equal(&ts.tokenKey.priv.PublicKey) {
		t.Errorf("PublicKey: got %v, %v", pub, err)
	}
	certs[0].Certificate[0] ^= 0xff // the caller's copy; the cache must not change
	if _, err := ts.client.encryptionKey(t.Context(), KeyUsageKSeFToken, false); err != nil {
		t.Errorf("cached key damaged by the caller: %v", err)
	}
	if ts.keyFetches() != 1 {
		t.Errorf("fetches: got %d, want 1", ts.keyFetches())
	}
}

func TestPickKey(t *testing.T) {
	tok, sym, rot := loadMFKey(t, "token"), loadMFKey(t, "symmetric"), loadMFKey(t, "rotated")
	entry := func(k mfKey, from, to time.Time, usage ...KeyUsage) PublicKeyCertificate {
		return PublicKeyCertificate{Certificate: k.cert.Raw, PublicKeyID: k.id, ValidFrom: from, ValidTo: to, Usage: usage}
	}
	past, future := testNow.Add(-48*time.Hour), testNow.Add(48*time.Hour)
	tests := []struct {
		name  string
		certs []PublicKeyCertificate
		usage KeyUsage
		want  string // publicKeyId, or "" for an error
	}{
		{"by usage", []PublicKeyCertificate{entry(tok, past, future, KeyUsageKSeFToken), entry(sym, past, future, KeyUsageSymmetricKey)}, KeyUsageSymmetricKey, sym.id},
		{"both usages on one key", []PublicKeyCertificate{entry(tok, past, future, KeyUsageSymmetricKey, KeyUsageKSeFToken)}, KeyUsageKSeFToken, tok.id},
		{"newest validFrom during a rotation", []PublicKeyCertificate{
			entry(tok, past, future, KeyUsageKSeFToken), entry(rot, testNow.Add(-time.Hour), future, KeyUsageKSeFToken)}, KeyUsageKSeFToken, rot.id},
		{"not yet valid is skipped", []PublicKeyCertificate{
			entry(tok, past, future, KeyUsageKSeFToken), entry(rot, testNow.Add(time.Hour), future, KeyUsageKSeFToken)}, KeyUsageKSeFToken, tok.id},
		{"expired is skipped", []PublicKeyCertificate{
			entry(rot, past, testNow, KeyUsageKSeFToken), entry(tok, past.Add(-time.Hour), future, KeyUsageKSeFToken)}, KeyUsageKSeFToken, tok.id},
		{"no end date", []PublicKeyCertificate{entry(tok, past, time.Time{}, KeyUsageKSeFToken)}, KeyUsageKSeFToken, tok.id},
		{"none for the usage", []PublicKeyCertificate{entry(tok, past, future, KeyUsageKSeFToken)}, KeyUsageSymmetricKey, ""},
		{"none valid", []PublicKeyCertificate{entry(tok, future, future.Add(time.Hour), KeyUsageKSeFToken)}, KeyUsageKSeFToken, ""},
		{"unparsable certificate", []PublicKeyCertificate{{Certificate: []byte("junk"), ValidFrom: past, Usage: []KeyUsage{KeyUsageKSeFToken}}}, KeyUsageKSeFToken, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := pickKey(tt.certs, tt.usage, testNow)
			if tt.want == "" {
				if err == nil {
					t.Errorf("got key %s, want an error", k.id)
				}
				return
			}
			if err != nil || k.id != tt.want || k.pub == nil {
				t.Errorf("got %s, %v; want %s", k.id, err, tt.want)
			}
		})
	}
}

func TestPublicKeyFormats(t *testing.T) {
	tok := loadMFKey(t, "token")
	spki := PublicKeyCertificate{Certificate: tok.cert.RawSubjectPublicKeyInfo}
	if pub, err := spki.PublicKey(); err != nil || !pub.Equal(&tok.priv.PublicKey) {
		t.Errorf("bare SubjectPublicKeyInfo: got %v, %v", pub, err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ec"}, NotBefore: testNow, NotAfter: testNow.Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ecKey.PublicKey, ecKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (PublicKeyCertificate{Certificate: der}).PublicKey(); err == nil || !strings.Contains(err.Error(), "want RSA") {
		t.Errorf("EC certificate: got %v, want an RSA-only error", err)
	}
	pemText := "-----BEGIN CERTIFICATE-----\n" + base64.StdEncoding.EncodeToString(tok.cert.Raw) + "\n-----END CERTIFICATE-----\n"
	if _, err := (PublicKeyCertificate{Certificate: []byte(pemText)}).PublicKey(); err == nil {
		t.Error("PEM text accepted as DER")
	}
}

func TestKeyCache(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := testNow
	now.Store(&start)
	ts := newTestServer(t, WithClock(func() time.Time { return *now.Load() }))
	get := func() string {
		t.Helper()
		k, err := ts.client.encryptionKey(t.Context(), KeyUsageKSeFToken, false)
		if err != nil {
			t.Fatal(err)
		}
		return k.id
	}
	get()
	get()
	if ts.keyFetches() != 1 {
		t.Errorf("fetches after two uses: got %d, want 1", ts.keyFetches())
	}
	later := testNow.Add(keyCacheTTL + time.Minute)
	now.Store(&later)
	get()
	if ts.keyFetches() != 2 {
		t.Errorf("fetches after the cache TTL: got %d, want 2", ts.keyFetches())
	}
	// The cached key expires before the TTL: a new key is fetched at once.
	ts.setKeys(
		ts.tokenKey.listing(later.Add(-time.Hour), later.Add(time.Minute), KeyUsageKSeFToken),
		ts.rotatedKey.listing(later, later.AddDate(1, 0, 0), KeyUsageKSeFToken))
	if _, err := ts.client.PublicKeyCertificates(t.Context()); err != nil { // refresh the cache with the new list
		t.Fatal(err)
	}
	if id := get(); id != ts.rotatedKey.id {
		t.Errorf("key during the rotation: got %s, want the newer %s", id, ts.rotatedKey.id)
	}
	ts.setKeys(ts.tokenKey.listing(later.Add(-time.Hour), later.Add(time.Minute), KeyUsageKSeFToken))
	if _, err := ts.client.PublicKeyCertificates(t.Context()); err != nil {
		t.Fatal(err)
	}
	fetches := ts.keyFetches()
	expired := later.Add(2 * time.Minute)
	now.Store(&expired)
	ts.setKeys(ts.rotatedKey.listing(later, later.AddDate(1, 0, 0), KeyUsageKSeFToken))
	if id := get(); id != ts.rotatedKey.id || ts.keyFetches() != fetches+1 {
		t.Errorf("after the cached key expired: got %s after %d fetches, want %s after %d", id, ts.keyFetches(), ts.rotatedKey.id, fetches+1)
	}
}

func TestKeyFetchFailure(t *testing.T) {
	ts := newTestServer(t)
	ts.setKeys() // an empty list
	_, err := ts.client.OpenOnlineSession(t.Context(), FormCodeFA3())
	if err == nil || !strings.Contains(err.Error(), "no MF public key for SymmetricKeyEncryption") {
		t.Errorf("got %v, want a missing key error", err)
	}
}

// TestUnknownPublicKeyRefetch covers code 21470: the key was rotated after it was cached. The
// client fetches the list again and repeats the call once with the new key.
func TestUnknownPublicKeyRefetch(t *testing.T) {
	tests := []struct {
		name  string
		path  string
		usage KeyUsage
		field string
		idFld string
		reply string
		ok    int
		call  func(*testServer, *testing.T) error
	}{
		{"KSeF token", "/v2/auth/ksef-token", KeyUsageKSeFToken, "encryptedToken", "publicKeyId", "auth_init.json", http.StatusAccepted, func(ts *testServer, t *testing.T) error {
			_, err := ts.client.AuthenticateWithKSeFToken(t.Context(), KSeFTokenAuth{
				Challenge: &Challenge{Challenge: "20250514-CR-226FB7B000-3ACF9BE4C0-10", TimestampMs: 1752236636015},
				Context:   NipContext(testNIP), Token: testKSeFToken})
			return err
		}},
		{"session key", "/v2/sessions/online", KeyUsageSymmetricKey, "encryption.encryptedSymmetricKey", "encryption.publicKeyId", "session_open.json", http.StatusCreated, func(ts *testServer, t *testing.T) error {
			_, err := ts.client.OpenOnlineSession(t.Context(), FormCodeFA3())
			return err
		}},
	}
	for _, tt := range tests {
		for _, rejectTwice := range []bool{false, true} {
			name := tt.name
			if rejectTwice {
				name += ", rejected again"
			}
			t.Run(name, func(t *testing.T) {
				ts := newTestServer(t)
				old := ts.tokenKey
				if tt.usage == KeyUsageSymmetricKey {
					old = ts.symKey
				}
				if _, err := ts.client.PublicKeyCertificates(t.Context()); err != nil { // warm the cache
					t.Fatal(err)
				}
				from, to := testNow.Add(-time.Hour), testNow.AddDate(1, 0, 0)
				ts.setKeys(ts.rotatedKey.listing(from, to, tt.usage)) // emergency rotation: the old key is gone
				var mu sync.Mutex
				var ids []string
				ts.mux.HandleFunc(tt.path, func(w http.ResponseWriter, r *http.Request) {
					body := decodeBody(t, readBody(t, r))
					id := field(t, body, tt.idFld)
					mu.Lock()
					ids = append(ids, id.(string))
					n := len(ids)
					mu.Unlock()
					if n == 1 || rejectTwice {
						if id != old.id && !rejectTwice {
							t.Errorf("first attempt used %v, want the cached key %s", id, old.id)
						}
						writeJSON(w, http.StatusBadRequest, exceptionBody(CodeUnknownPublicKey, "Nieznany klucz publiczny."))
						return
					}
					if id != ts.rotatedKey.id {
						t.Errorf("second attempt used %v, want the rotated key %s", id, ts.rotatedKey.id)
					}
					decryptOAEP(t, ts.rotatedKey, b64Field(t, body, tt.field))
					serveFile(t, w, tt.ok, tt.reply)
				})
				err := tt.call(ts, t)
				if rejectTwice {
					var apiErr *APIError
					if !errors.As(err, &apiErr) || !apiErr.HasCode(CodeUnknownPublicKey) {
						t.Errorf("got %v, want the 21470 *APIError", err)
					}
				} else if err != nil {
					t.Fatalf("call after rotation: %v", err)
				}
				if len(ids) != 2 || ts.keyFetches() != 2 {
					t.Errorf("got %d submissions and %d key fetches, want 2 and 2", len(ids), ts.keyFetches())
				}
			})
		}
	}
}
