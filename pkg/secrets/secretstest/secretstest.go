package secretstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"
)

// SecretsManager is an in-memory AWS Secrets Manager. Its methods are safe for concurrent use;
// the zero value is not usable, call New.
type SecretsManager struct {
	// BeforeGet, if set, runs at the start of every GetSecretValue with the secret's name,
	// outside the fake's lock, so it may call the fake. A non-nil error is the call's result.
	// Set it before the calls start, or only from the goroutine that makes them.
	BeforeGet func(name string) error
	// BeforePut is BeforeGet for PutSecretValue and CreateSecret.
	BeforePut func(name string) error

	mu       sync.Mutex
	secrets  map[string]*secret
	external int // versions written by Set, SetJSON and SetBinary

	gets, puts, putsApplied, conflicts, creates atomic.Int64
}

type secret struct {
	versions map[string]content // VersionId -> content
	current  string             // VersionId labelled AWSCURRENT; "" if none
}

// content is one version's content: SecretString, or SecretBinary when binary is not nil.
type content struct {
	str    string
	binary []byte
}

func (v content) equal(w content) bool {
	return v.str == w.str && (v.binary == nil) == (w.binary == nil) && bytes.Equal(v.binary, w.binary)
}

// Counts is how many calls a SecretsManager has answered, failed ones included.
type Counts struct {
	Gets    int64 // GetSecretValue calls
	Puts    int64 // PutSecretValue calls
	Creates int64 // CreateSecret calls
	// PutsApplied is the PutSecretValue calls that stored a new version.
	PutsApplied int64
	// Conflicts is the PutSecretValue calls refused because their ClientRequestToken names a
	// version with another value.
	Conflicts int64
}

// New returns an empty SecretsManager.
func New() *SecretsManager { return &SecretsManager{secrets: make(map[string]*secret)} }

// begin counts a call to the fake and runs its hook, if any: a non-nil error is the call's
// result.
func begin(calls *atomic.Int64, hook func(name string) error, name string) error {
	calls.Add(1)
	if hook == nil {
		return nil
	}
	return hook(name)
}

func notFound() error {
	return &types.ResourceNotFoundException{Message: aws.String("Secrets Manager can't find the specified secret.")}
}

// GetSecretValue returns the current version of a secret.
func (m *SecretsManager) GetSecretValue(_ context.Context, in *secretsmanager.GetSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.GetSecretValueOutput, error) {
	name := aws.ToString(in.SecretId)
	if err := begin(&m.gets, m.BeforeGet, name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sec, ok := m.secrets[name]
	if !ok || sec.current == "" {
		return nil, notFound()
	}
	out := &secretsmanager.GetSecretValueOutput{
		Name:          in.SecretId,
		VersionId:     aws.String(sec.current),
		VersionStages: []string{"AWSCURRENT"},
	}
	if v := sec.versions[sec.current]; v.binary != nil {
		out.SecretBinary = bytes.Clone(v.binary)
	} else {
		out.SecretString = aws.String(v.str)
	}
	return out, nil
}

// PutSecretValue stores a new version of an existing secret, named by its ClientRequestToken.
func (m *SecretsManager) PutSecretValue(_ context.Context, in *secretsmanager.PutSecretValueInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.PutSecretValueOutput, error) {
	name := aws.ToString(in.SecretId)
	if err := begin(&m.puts, m.BeforePut, name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	sec, ok := m.secrets[name]
	if !ok {
		return nil, notFound()
	}
	v, err := input(in.SecretString, in.SecretBinary)
	if err != nil {
		return nil, err
	}
	token := aws.ToString(in.ClientRequestToken)
	if token == "" {
		return nil, noToken()
	}
	if old, ok := sec.versions[token]; ok {
		if !old.equal(v) {
			m.conflicts.Add(1)
			return nil, &types.ResourceExistsException{Message: aws.String("You can't modify an existing version, you can only create a new version.")}
		}
	} else {
		sec.versions[token] = v
		sec.current = token
		m.putsApplied.Add(1)
	}
	return &secretsmanager.PutSecretValueOutput{Name: in.SecretId, VersionId: aws.String(token)}, nil
}

// CreateSecret creates a secret, with a first version if the input has a value.
func (m *SecretsManager) CreateSecret(_ context.Context, in *secretsmanager.CreateSecretInput, _ ...func(*secretsmanager.Options)) (*secretsmanager.CreateSecretOutput, error) {
	name := aws.ToString(in.Name)
	if err := begin(&m.creates, m.BeforePut, name); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.secrets[name]; ok {
		return nil, &types.ResourceExistsException{Message: aws.String("the secret already exists")}
	}
	if in.SecretString == nil && in.SecretBinary == nil {
		m.secrets[name] = &secret{versions: make(map[string]content)}
		return &secretsmanager.CreateSecretOutput{Name: in.Name}, nil
	}
	v, err := input(in.SecretString, in.SecretBinary)
	if err != nil {
		return nil, err
	}
	token := aws.ToString(in.ClientRequestToken)
	if token == "" {
		return nil, noToken()
	}
	m.secrets[name] = &secret{versions: map[string]content{token: v}, current: token}
	return &secretsmanager.CreateSecretOutput{Name: in.Name, VersionId: aws.String(token)}, nil
}

// input is the value of a PutSecretValue or CreateSecret input, which must have exactly one of
// SecretString and SecretBinary.
func input(str *string, binary []byte) (content, error) {
	if (str == nil) == (binary == nil) {
		return content{}, &types.InvalidParameterException{Message: aws.String("You must provide either SecretString or SecretBinary, but not both.")}
	}
	if binary != nil {
		return content{binary: bytes.Clone(binary)}, nil
	}
	return content{str: *str}, nil
}

// noToken is the fake's answer to a write without a ClientRequestToken. The SDK would generate
// one, but secrets.Store derives its own, so a missing token is a bug in the code under test.
func noToken() error {
	return &types.InvalidParameterException{Message: aws.String("the fake wants a ClientRequestToken")}
}

// Set stores value as the new current version of the secret name, creating the secret if
// needed, with a VersionId of its own, as a user or a tool outside the code under test would.
// It counts as no call.
func (m *SecretsManager) Set(name, value string) { m.setValue(name, content{str: value}) }

// SetJSON is Set with v encoded as JSON; an encoding failure fails tb.
func (m *SecretsManager) SetJSON(tb testing.TB, name string, v any) {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatalf("secretstest: encode %s: %v", name, err)
	}
	m.Set(name, string(b))
}

// SetBinary is Set with a SecretBinary value.
func (m *SecretsManager) SetBinary(name string, b []byte) {
	m.setValue(name, content{binary: append([]byte{}, b...)}) // not nil, even for an empty b
}

func (m *SecretsManager) setValue(name string, v content) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sec, ok := m.secrets[name]
	if !ok {
		sec = &secret{versions: make(map[string]content)}
		m.secrets[name] = sec
	}
	m.external++
	id := fmt.Sprintf("external-%d", m.external)
	sec.versions[id] = v
	sec.current = id
}

// Value returns the SecretString of the current version of name. A missing secret, one
// without a current version or one holding SecretBinary fails tb.
func (m *SecretsManager) Value(tb testing.TB, name string) string {
	tb.Helper()
	v, ok := m.current(name)
	if !ok || v.binary != nil {
		tb.Fatalf("secretstest: secret %s has no current SecretString", name)
	}
	return v.str
}

// DecodeJSON decodes the current SecretString of name into v. It leaves v as it is when the
// secret does not exist or has no current version; a SecretBinary value, or one that does not
// decode, fails tb.
func (m *SecretsManager) DecodeJSON(tb testing.TB, name string, v any) {
	tb.Helper()
	cur, ok := m.current(name)
	if !ok {
		return
	}
	if cur.binary != nil {
		tb.Fatalf("secretstest: secret %s holds SecretBinary, not JSON", name)
	}
	if err := json.Unmarshal([]byte(cur.str), v); err != nil {
		tb.Fatalf("secretstest: decode %s: %v", name, err)
	}
}

func (m *SecretsManager) current(name string) (content, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sec, ok := m.secrets[name]
	if !ok || sec.current == "" {
		return content{}, false
	}
	return sec.versions[sec.current], true
}

// Names returns the names of the secrets that exist, sorted.
func (m *SecretsManager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.secrets))
	for name := range m.secrets {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// Counts returns how many calls the fake has answered so far.
func (m *SecretsManager) Counts() Counts {
	return Counts{
		Gets:        m.gets.Load(),
		Puts:        m.puts.Load(),
		Creates:     m.creates.Load(),
		PutsApplied: m.putsApplied.Load(),
		Conflicts:   m.conflicts.Load(),
	}
}
