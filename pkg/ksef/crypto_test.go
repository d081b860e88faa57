package ksef

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

func TestEncryptOAEPRoundTrip(t *testing.T) {
	k := loadMFKey(t, "token")
	msg := []byte(testKSeFToken + "|1752236636015")
	ct, err := encryptOAEP(&k.priv.PublicKey, msg)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != k.priv.Size() {
		t.Errorf("ciphertext length: got %d, want the modulus size %d", len(ct), k.priv.Size())
	}
	if got := decryptOAEP(t, k, ct); !bytes.Equal(got, msg) {
		t.Errorf("round trip: got %q, want %q", got, msg)
	}
	// SHA-256 for OAEP and MGF1: a SHA-1 OAEP decryption must fail.
	if _, err := rsa.DecryptOAEP(sha256.New224(), nil, k.priv, ct, nil); err == nil {
		t.Error("ciphertext decrypts with another OAEP hash")
	}
	ct2, err := encryptOAEP(&k.priv.PublicKey, msg)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ct, ct2) {
		t.Error("OAEP encryption is not randomized")
	}
	if _, err := encryptOAEP(&k.priv.PublicKey, make([]byte, 300)); err == nil {
		t.Error("encrypting more than the key allows: got no error")
	}
}

func TestEncryptAESCBCTestVector(t *testing.T) {
	invoice := sampleInvoice(t)
	if got := sha256Base64(invoice); got != vectorInvoiceHash {
		t.Errorf("invoiceHash: got %s, want %s", got, vectorInvoiceHash)
	}
	ct, err := encryptAESCBC(sequence(32), sequence(16), invoice)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) != vectorEncryptedSize {
		t.Errorf("ciphertext length: got %d, want %d", len(ct), vectorEncryptedSize)
	}
	if got := hex.EncodeToString(ct[:16]); got != vectorFirstBlockHex {
		t.Errorf("first block: got %s, want %s", got, vectorFirstBlockHex)
	}
	if got := sha256Base64(ct); got != vectorEncryptedInvoiceHash {
		t.Errorf("encryptedInvoiceHash: got %s, want %s", got, vectorEncryptedInvoiceHash)
	}
}

func TestEncryptAESCBCRoundTrip(t *testing.T) {
	key, iv := randomBytes(t, 32), randomBytes(t, 16)
	for n := range 50 {
		plain := bytes.Repeat([]byte{'a'}, n)
		ct, err := encryptAESCBC(key, iv, plain)
		if err != nil {
			t.Fatal(err)
		}
		if want := 16 * (n/16 + 1); len(ct) != want {
			t.Errorf("length of %d bytes encrypted: got %d, want %d", n, len(ct), want)
		}
		got, err := decryptAESCBC(key, iv, ct)
		if err != nil || !bytes.Equal(got, plain) {
			t.Errorf("round trip of %d bytes: got %q, %v", n, got, err)
		}
	}
	if _, err := encryptAESCBC(key, iv, nil); err != nil {
		t.Errorf("empty plaintext: %v", err)
	}
}

func TestEncryptAESCBCRejectsBadKeys(t *testing.T) {
	tests := []struct {
		name    string
		key, iv []byte
		want    string
	}{
		{"AES-128 key", sequence(16), sequence(16), "key must be 32 bytes"},
		{"short IV", sequence(32), sequence(12), "IV must be 16 bytes"},
	}
	for _, tt := range tests {
		if _, err := encryptAESCBC(tt.key, tt.iv, []byte("x")); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestNewSessionKey(t *testing.T) {
	k1, iv1, err := newSessionKey()
	if err != nil {
		t.Fatal(err)
	}
	k2, iv2, err := newSessionKey()
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != 32 || len(iv1) != 16 || cap(k1) != 32 {
		t.Errorf("sizes: key %d (cap %d), IV %d; want 32, 16", len(k1), cap(k1), len(iv1))
	}
	if bytes.Equal(k1, k2) || bytes.Equal(iv1, iv2) {
		t.Error("two session keys are equal")
	}
}

func TestValidSHA256Base64(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{vectorInvoiceHash, true},
		{"X-wQflQVyRs1fImlI-xDPnWk1V37hys4O1lkx9iJbSA", false}, // Base64URL, as in QR links
		{strings.TrimSuffix(vectorInvoiceHash, "="), false},
		{strings.Repeat("A", 44), false},
		{"", false},
	}
	for _, tt := range tests {
		if got := validSHA256Base64(tt.in); got != tt.want {
			t.Errorf("validSHA256Base64(%q): got %v, want %v", tt.in, got, tt.want)
		}
	}
}
