package ksef

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Sizes of the session key material: AES-256 key and CBC IV.
const (
	sessionKeySize = 32
	sessionIVSize  = aes.BlockSize
)

// encryptOAEP encrypts msg for the MF public key with RSAES-OAEP, SHA-256 as both the OAEP
// digest and the MGF1 hash, empty label: what KSeF expects for the KSeF token and for the
// session's AES key.
func encryptOAEP(pub *rsa.PublicKey, msg []byte) ([]byte, error) {
	out, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, msg, nil)
	if err != nil {
		return nil, fmt.Errorf("RSA-OAEP encryption: %w", err)
	}
	return out, nil
}

// newSessionKey returns a fresh random AES-256 key and CBC IV.
func newSessionKey() (key, iv []byte, err error) {
	buf := make([]byte, sessionKeySize+sessionIVSize)
	if _, err := rand.Read(buf); err != nil {
		return nil, nil, fmt.Errorf("generate session key: %w", err)
	}
	return buf[:sessionKeySize:sessionKeySize], buf[sessionKeySize:], nil
}

// encryptAESCBC encrypts plaintext with AES-256-CBC and PKCS#7 padding. The result is the raw
// ciphertext, without the IV in front; its length is 16*(len(plaintext)/16+1).
func encryptAESCBC(key, iv, plaintext []byte) ([]byte, error) {
	if len(key) != sessionKeySize {
		return nil, fmt.Errorf("AES key must be %d bytes, got %d", sessionKeySize, len(key))
	}
	if len(iv) != sessionIVSize {
		return nil, fmt.Errorf("AES IV must be %d bytes, got %d", sessionIVSize, len(iv))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("AES key: %w", err)
	}
	pad := aes.BlockSize - len(plaintext)%aes.BlockSize
	out := make([]byte, len(plaintext)+pad)
	copy(out, plaintext)
	for i := len(plaintext); i < len(out); i++ {
		out[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, out)
	return out, nil
}

// sha256Base64 is the standard-Base64 SHA-256 of b, the form of every KSeF document hash.
func sha256Base64(b []byte) string {
	sum := sha256.Sum256(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// validSHA256Base64 reports whether s is a padded standard-Base64 SHA-256 digest (44 chars).
func validSHA256Base64(s string) bool {
	if len(s) != base64.StdEncoding.EncodedLen(sha256.Size) {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	return err == nil && len(b) == sha256.Size
}
