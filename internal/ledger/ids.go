package ledger

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"

	"github.com/ksef-serverless/ksef-serverless/internal/flow"
)

// Source is the entry point through which an invoice came in.
type Source string

// Sources. SourceManual marks an invoice whose execution was started by hand (without an entry
// point writing the ledger first); its item is created by the first step that records it.
const (
	SourceS3     Source = "s3"
	SourceAPI    Source = "api"
	SourceBatch  Source = "batch"
	SourceManual Source = "manual"
)

// idEncoding is lower-case base32 without padding: 16 bytes make 26 characters of [a-z2-7],
// valid in a Step Functions execution name and in a URL path segment.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

var idPattern = regexp.MustCompile(`^(s3|api|batch|manual)-[a-z2-7]{26}$`)

// ObjectID is the invoice id of an S3 object version: "s3-" and the first 16 bytes of
// SHA-256(bucket NUL key NUL versionId) in lower-case base32. The same object version always has
// the same id, which is also the name of its Step Functions execution, so that a second delivery
// of its event starts nothing new.
func ObjectID(bucket, key, versionID string) string {
	return string(SourceS3) + "-" + digestID(bucket, key, versionID)
}

// RequestID is the invoice id of an API request carrying an Idempotency-Key: "api-" and the
// same construction as ObjectID over the NIP and the key. A retried request gets the same id.
func RequestID(nip, idempotencyKey string) string {
	return string(SourceAPI) + "-" + digestID(nip, idempotencyKey)
}

// NewID returns a random invoice id for the source (16 random bytes), for requests without an
// idempotency key.
func NewID(src Source) (string, error) {
	if !src.valid() {
		return "", fmt.Errorf("ledger: unknown source %q", src)
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("ledger: random id: %w", err)
	}
	return string(src) + "-" + idEncoding.EncodeToString(b), nil
}

// ValidID reports whether id has the form of an invoice id.
func ValidID(id string) bool { return idPattern.MatchString(id) }

// IDFor returns the invoice id of an execution: its name when the name is an invoice id (the
// entry points name executions after the invoice), else the ObjectID of the invoice's object (an
// execution started by hand with a name of its own).
func IDFor(executionName string, obj flow.S3Object) string {
	if ValidID(executionName) {
		return executionName
	}
	return ObjectID(obj.Bucket, obj.Key, obj.VersionID)
}

func digestID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return idEncoding.EncodeToString(sum[:16])
}

func (s Source) valid() bool {
	switch s {
	case SourceS3, SourceAPI, SourceBatch, SourceManual:
		return true
	}
	return false
}

// Item keys of the single table.
func invoiceKey(id string) string { return "INV#" + id }

func contentKey(nip, invoiceHash string) string { return "HASH#" + nip + "#" + invoiceHash }

func idempotencyKey(nip, key string) string {
	sum := sha256.Sum256([]byte(key))
	return "IDEM#" + nip + "#" + hex.EncodeToString(sum[:])
}
